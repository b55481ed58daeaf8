//! The `evhost` command line: `run`, `status`, `dev`, `invoke`, `check`,
//! `pub`, `dlq`, `consumers`, `build` and `new`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use evhost::consumer_admin::{self, Deletion};
use evhost::dlq;
use evhost::host::{self, HostOptions};
use evhost::invoke::{self, Invocation};
use evhost::logging::{self, LogFormat};
use evhost::nats_args::{NatsArgs, NatsAuthArgs};
use evhost::nats_connection::NatsConnection;
use evhost::run_args::RunArgs;
use evhost::signals::StopSignals;

/// mimalloc: the host allocates and frees small buffers for every message
/// (the handler's input record, its outputs, NATS headers); glibc's malloc
/// spent about a tenth of the host's time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A host for NATS event handlers written as WebAssembly components.
#[derive(Parser)]
#[command(name = "evhost", version, about)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "EVHOST_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every plugin in a directory from NATS, reloading them as they change.
    Run(RunArgs),
    /// Show the plugins a running host serves (from its /plugins).
    Status {
        /// The host's listener (its --metrics address).
        #[arg(
            long,
            env = "EVHOST_METRICS",
            value_name = "ADDR",
            default_value = "127.0.0.1:9464"
        )]
        listen: String,
        /// Print the JSON as the host serves it.
        #[arg(long)]
        json: bool,
    },
    /// Start a throwaway nats-server and serve a plugin directory against it.
    Dev {
        /// Directory of NAME.wasm plugins and their NAME.toml manifests.
        #[arg(long, value_name = "DIR")]
        plugins: PathBuf,
        /// The nats-server to start (default: the one on PATH).
        #[arg(long, value_name = "PATH")]
        nats_server: Option<PathBuf>,
        /// How long shutdown waits for messages in flight.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        drain_timeout: Duration,
        /// The server's port (taken: a free one; 0: any free one).
        #[arg(long, default_value_t = evhost::dev::DEFAULT_PORT)]
        port: u16,
    },
    /// Publish one message (or, with --request, send a request and print the reply).
    Pub(PubArgs),
    /// Run one message through a plugin, without a broker, and print the outcome as JSON.
    Invoke {
        /// The plugin's .wasm file.
        wasm: PathBuf,
        /// The message's subject.
        #[arg(long)]
        subject: String,
        /// The payload: inline text, `@FILE` for a file's bytes, or `-` for
        /// stdin (default: empty).
        #[arg(long, value_name = "TEXT|@FILE|-")]
        payload: Option<String>,
        /// A header, K=V; may repeat.
        #[arg(long = "header", value_name = "K=V", value_parser = evhost::cli_args::key_value)]
        headers: Vec<(String, String)>,
        /// A [config] value, K=V; may repeat; overrides the manifest.
        #[arg(long = "config", value_name = "K=V", value_parser = evhost::cli_args::key_value)]
        config: Vec<(String, String)>,
        /// The plugin's manifest.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// The delivery number the handler sees.
        #[arg(long, default_value_t = 1)]
        attempt: u32,
        /// Keep the plugin's key-value buckets on these NATS servers
        /// (default: in memory, for this one call).
        #[arg(long, value_name = "URL[,URL...]")]
        nats: Option<String>,
        #[command(flatten)]
        nats_auth: NatsAuthArgs,
    },
    /// List or replay dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// List or delete the durable consumers evhost made on a stream.
    Consumers {
        #[command(subcommand)]
        action: ConsumersAction,
    },
    /// Validate a plugin (and its manifest) and print the subjects it serves.
    Check {
        /// The plugin's .wasm file.
        wasm: PathBuf,
        /// The plugin's manifest.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
    },
    /// Build a handler project (Rust crate, Python app, JavaScript package) into NAME.wasm.
    Build {
        /// The project's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the component here (default: DIR/NAME.wasm).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Start a handler project from a template.
    New {
        /// The plugin's name (lowercase letters, digits, - and _).
        name: String,
        /// The handler's language.
        #[arg(long, value_enum)]
        lang: evhost::scaffold::Lang,
        /// Create the project in this folder.
        #[arg(long, value_name = "PARENT", default_value = ".")]
        dir: PathBuf,
        /// The evhost repository whose SDK the project uses (default:
        /// EVHOST_SDK_PATH, else the clone this evhost was built in).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct PubArgs {
    /// The subject to publish to.
    subject: String,
    /// The payload: inline text, `@FILE` for a file's bytes, or `-` for
    /// stdin (default: empty).
    #[arg(long, value_name = "TEXT|@FILE|-")]
    payload: Option<String>,
    /// A header, K=V; may repeat.
    #[arg(long = "header", value_name = "K=V", value_parser = evhost::cli_args::key_value)]
    headers: Vec<(String, String)>,
    /// Wait for a reply and print its headers and body.
    #[arg(long)]
    request: bool,
    /// How long --request waits for the reply.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(clap::Args)]
struct DlqListArgs {
    #[command(flatten)]
    common: DlqArgs,
    /// Print each letter's payload under its line.
    #[arg(long)]
    payloads: bool,
    /// Print the letters as a JSON array (with headers and payloads).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DlqAction {
    /// Print dead letters, one per line, with their error kinds.
    List(DlqListArgs),
    /// Republish dead letters to their original subjects, without the
    /// Evhost-* headers, where the publish rules allow.
    Replay(DlqArgs),
}

#[derive(clap::Args)]
struct DlqArgs {
    /// The dead-letter prefix of the plugins that wrote them; a letter is
    /// replayed only from PREFIX + its original subject.
    #[arg(long, default_value = "dlq.")]
    prefix: String,
    /// Dead-letter subjects to read (default: PREFIX>).
    #[arg(long)]
    subject: Option<String>,
    /// Read from this stream, from its start (default: the stream that
    /// captures the subjects; when none does, listen live).
    #[arg(long)]
    stream: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
    /// Stop after this long without a dead letter.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    wait: Duration,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Subcommand)]
enum ConsumersAction {
    /// Print the consumers evhost made on a stream (found by their
    /// description or their name), one a line, with what they hold.
    List(ConsumersListArgs),
    /// Delete every consumer evhost made on a stream for a durable; refused
    /// while any of them has a pull request waiting or a message unacked.
    Delete(ConsumersDeleteArgs),
}

#[derive(clap::Args)]
struct ConsumersListArgs {
    /// The stream.
    #[arg(long)]
    stream: String,
    /// Only the consumers of this durable (a plugin's `delivery.durable`).
    #[arg(long)]
    durable: Option<String>,
    /// Print them as a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(clap::Args)]
struct ConsumersDeleteArgs {
    /// The stream.
    #[arg(long)]
    stream: String,
    /// The durable whose consumers to delete (a plugin's `delivery.durable`).
    #[arg(long)]
    durable: String,
    /// Delete them even while a host may be serving them (a pull request
    /// waiting, a message unacked).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

fn main() -> ExitCode {
    // A bug of ours is reported in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("evhost: internal error: {info}");
    }));
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) if !err.use_stderr() => {
            let _ = err.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // clap's message spans lines (tips, usage); keep what is wrong.
            let text = err.to_string();
            let what: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{} (see `evhost --help`)", what.join(" "));
            return ExitCode::from(2);
        }
    };
    // The host logs what it does; one-shot commands only what goes wrong
    // (and, for invoke, what the plugin logs).
    let default_filter = match cli.command {
        Command::Run { .. } | Command::Dev { .. } => "info",
        _ => "warn,evhost::guest=info",
    };
    // `run` reads its configuration file first: it may set the log format.
    let mut log_format = cli.log_format;
    let run = match &cli.command {
        Command::Run(args) => {
            let run_matches = matches
                .subcommand_matches("run")
                .expect("the run command has its matches");
            let log_format_given = evhost::run_args::given(run_matches, "log_format");
            match args
                .clone()
                .resolve(run_matches, cli.log_format, log_format_given)
            {
                Ok(resolved) => {
                    log_format = resolved.log_format;
                    Some(resolved.options)
                }
                Err(err) if err.is::<evhost::run_args::MissingPlugins>() => {
                    eprintln!("{err} (see `evhost --help`)");
                    return ExitCode::from(2);
                }
                Err(err) => {
                    eprintln!("error: {}", evhost::errors::one_line(&format!("{err:#}")));
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    // Traces are exported by `run` and `dev` only.
    let exporter = match cli.command {
        Command::Run { .. } | Command::Dev { .. } => {
            match evhost::trace_context::Exporter::from_env() {
                Ok(exporter) => exporter,
                Err(err) => {
                    eprintln!("error: {}", evhost::errors::one_line(&format!("{err:#}")));
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    logging::init(
        log_format,
        default_filter,
        exporter.as_ref().map(|e| e.tracer()),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(execute(cli.command, run));
    // Whatever is still running (a blocking compile, a task waiting on a lost
    // connection) must not keep a finished command from exiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", evhost::errors::one_line(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Runs `command`; `run` is `evhost run`'s options, resolved before the
/// log was set up.
async fn execute(command: Command, run: Option<HostOptions>) -> anyhow::Result<u8> {
    match command {
        Command::Run(_) => {
            let options = run.expect("run's options are resolved before it starts");
            let stop = StopSignals::install()?.spawn(|| {});
            host::run(options, stop).await?;
            Ok(0)
        }
        Command::Status { listen, json } => {
            let text = evhost::status::fetch(&listen).await?;
            if json {
                print!("{text}");
            } else {
                print!("{}", evhost::status::table(&text)?);
            }
            Ok(0)
        }
        Command::Dev {
            plugins,
            nats_server,
            drain_timeout,
            port,
        } => {
            let signals = StopSignals::install()?;
            let server = evhost::dev::DevServer::start(nats_server, port)?;
            eprintln!("evhost dev: nats-server listening at {}", server.url);
            eprintln!(
                "evhost dev: JetStream store in {}",
                server.store.path().display()
            );
            let nats = if server.port == evhost::dev::DEFAULT_PORT {
                String::new()
            } else {
                eprintln!(
                    "evhost dev: port {} was taken; in other terminals: export NATS_URL={}",
                    evhost::dev::DEFAULT_PORT,
                    server.url
                );
                format!(" --nats {}", server.url)
            };
            eprintln!(
                "evhost dev: publish with e.g. `evhost pub orders.order.created --payload @examples/events/orders.order.created.json{nats}`; see dead letters with `evhost dlq list{nats}`"
            );
            let options = HostOptions {
                plugins,
                nats: NatsConnection::plain(&server.url)?,
                drain_timeout,
                compile_timeout: host::DEFAULT_COMPILE_TIMEOUT,
                compile_cache: true,
                cache_dir: None,
                metrics: None,
                dead_letter_streams: true,
                plugin_defaults: Default::default(),
                // dev's server is a single one.
                replicas: Default::default(),
            };
            // Shared with the second-signal path, which must stop the server
            // and remove its store before the process exits.
            let server = Arc::new(Mutex::new(Some(server)));
            let forced = server.clone();
            let stop = signals.spawn(move || {
                if let Some(server) = forced.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    eprintln!("evhost dev: {}", server.stop());
                }
            });
            let served = host::run(options, stop).await;
            if let Some(server) = server.lock().unwrap_or_else(|e| e.into_inner()).take() {
                eprintln!("evhost dev: {}", server.stop());
            }
            served?;
            Ok(0)
        }
        Command::Invoke {
            wasm,
            subject,
            payload,
            headers,
            config,
            manifest,
            attempt,
            nats,
            nats_auth,
        } => {
            let nats = match nats {
                Some(servers) => Some(nats_auth.connection(&servers)?),
                None => None,
            };
            invoke::invoke(Invocation {
                wasm,
                manifest,
                subject,
                payload,
                headers,
                config,
                attempt,
                nats,
            })
            .await
        }
        Command::Pub(args) => {
            evhost::publish::publish(evhost::publish::Publication {
                subject: args.subject,
                payload: args.payload,
                headers: args.headers,
                request: args.request.then_some(args.timeout),
                nats: args.nats.connection()?,
            })
            .await?;
            Ok(0)
        }
        Command::Dlq { action } => {
            let (args, list) = match action {
                DlqAction::List(list) => (list.common, Some((list.payloads, list.json))),
                DlqAction::Replay(args) => (args, None),
            };
            let client = evhost::bus::connect(&args.nats.connection()?, "evhost dlq").await?;
            let source = dlq::Source {
                subject: args.subject.unwrap_or_else(|| format!("{}>", args.prefix)),
                prefix: args.prefix,
                stream: args.stream,
                limit: args.limit,
                idle: args.wait,
            };
            let source = dlq::locate(&client, &source).await?;
            let letters = dlq::read(&client, &source).await?;
            match list {
                None => {
                    let done = dlq::replay(&client, &source, &letters).await?;
                    println!("replayed {} dead letter(s)", done.replayed);
                    if done.refused > 0 {
                        eprintln!(
                            "refused {} dead letter(s), left where they are",
                            done.refused
                        );
                        return Ok(1);
                    }
                }
                Some((_, true)) => {
                    let all: Vec<serde_json::Value> = letters.iter().map(|l| l.to_json()).collect();
                    println!("{}", serde_json::to_string_pretty(&all)?);
                }
                Some((payloads, false)) => {
                    for letter in &letters {
                        println!("{}", letter.describe());
                        if payloads {
                            println!("  payload: {}", letter.payload_text());
                        }
                    }
                    eprintln!("{} dead letter(s)", letters.len());
                }
            }
            Ok(0)
        }
        Command::Consumers { action } => consumers(action).await,
        Command::Check { wasm, manifest } => {
            invoke::check(&wasm, manifest.as_deref()).await?;
            Ok(0)
        }
        Command::Build { dir, out } => {
            let built = tokio::task::spawn_blocking(move || {
                evhost::plugin_build::build(&dir, out.as_deref())
            })
            .await??;
            eprintln!("built {}", built.display());
            Ok(0)
        }
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let made = evhost::scaffold::new_project(&name, lang, &dir, sdk.as_deref())?;
            eprintln!(
                "created {}: `evhost build {}`, then `evhost invoke {}/{name}.wasm --subject {} --payload @{}/events/{}.json`",
                made.display(),
                made.display(),
                made.display(),
                evhost::scaffold::SAMPLE_SUBJECT,
                made.display(),
                evhost::scaffold::SAMPLE_SUBJECT,
            );
            Ok(0)
        }
    }
}

/// `evhost consumers list` and `evhost consumers delete`.
async fn consumers(action: ConsumersAction) -> anyhow::Result<u8> {
    match action {
        ConsumersAction::List(args) => {
            let client = evhost::bus::connect(&args.nats.connection()?, "evhost consumers").await?;
            let listing = consumer_admin::list(&client, &args.stream).await?;
            let shown = match &args.durable {
                Some(durable) => listing.of_durable(durable),
                None => listing.evhost.clone(),
            };
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&consumer_admin::to_json(&args.stream, &shown))?
                );
            } else if shown.is_empty() {
                println!("no consumers made by evhost");
            } else {
                print!("{}", consumer_admin::table(&shown));
            }
            let of = match &args.durable {
                Some(durable) => format!(" of durable {durable}"),
                None => String::new(),
            };
            eprintln!(
                "{} consumer(s){of} made by evhost on stream {} ({} other consumer(s) not shown)",
                shown.len(),
                args.stream,
                listing.evhost.len() - shown.len() + listing.others
            );
            Ok(0)
        }
        ConsumersAction::Delete(args) => {
            let client = evhost::bus::connect(&args.nats.connection()?, "evhost consumers").await?;
            match consumer_admin::delete(&client, &args.stream, &args.durable, args.yes).await? {
                Deletion::Refused(in_use) => {
                    eprintln!("{}", in_use.refusal());
                    Ok(1)
                }
                Deletion::Deleted { deleted, in_use } => {
                    if let Some(in_use) = in_use {
                        eprintln!("deleting anyway (--yes): {in_use}");
                    }
                    for consumer in &deleted {
                        println!("deleted consumer {} ({})", consumer.name, consumer.filter);
                    }
                    eprintln!(
                        "deleted {} consumer(s) of durable {} on stream {}",
                        deleted.len(),
                        args.durable,
                        args.stream
                    );
                    Ok(0)
                }
            }
        }
    }
}
