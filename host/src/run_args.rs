//! `evhost run`'s flags, and how they layer over the configuration file:
//! a value given as a flag wins, then one from the environment (clap reads
//! both, and says which through `ArgMatches::value_source`), then the file's
//! (`--config FILE`, `EVHOST_CONFIG`), then the built-in default. The
//! credentials are one choice: any credentials given as a flag or in the
//! environment replace the file's altogether, as a client certificate and
//! its key do.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::host::HostOptions;
use crate::host_config::HostConfig;
use crate::logging::LogFormat;
use crate::nats_args::{NatsArgs, NatsAuthArgs};
use crate::replicas::Replicas;

/// The flags of `evhost run`.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// A configuration file (evhost.toml) setting any of these flags and
    /// every plugin's default [limits], [delivery] and [jetstream]; flags and environment
    /// variables override it.
    #[arg(long, env = "EVHOST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of NAME.wasm plugins and their NAME.toml manifests.
    #[arg(long, env = "EVHOST_PLUGINS", value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// How long shutdown waits for messages in flight.
    #[arg(long, env = "EVHOST_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// The longest a plugin may take to compile; one that takes longer is
    /// refused (the version serving, if any, keeps serving).
    #[arg(long, env = "EVHOST_COMPILE_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    pub compile_timeout: Duration,
    /// Do not keep compiled plugins in the on-disk cache.
    #[arg(long, env = "EVHOST_NO_COMPILE_CACHE")]
    pub no_compile_cache: bool,
    /// Keep compiled plugins in this folder (default: wasmtime's, under
    /// $XDG_CACHE_HOME or ~/.cache).
    #[arg(long, env = "EVHOST_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, the health probes
    /// /healthz and /readyz, and the plugins' state at /plugins, e.g.
    /// 127.0.0.1:9464.
    #[arg(long, env = "EVHOST_METRICS", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// How many replicas the streams and key-value buckets the host creates
    /// get (a manifest's create_stream and create_dead_letter_stream, the
    /// dedup bucket, the [capabilities] keyvalue buckets): 3 on a
    /// three-server cluster. Existing streams are used as they are.
    #[arg(long, env = "EVHOST_REPLICAS", value_name = "N", default_value = "1")]
    pub replicas: Replicas,
}

/// What `evhost run` runs with, every layer applied.
#[derive(Debug)]
pub struct Resolved {
    /// The host's options.
    pub options: HostOptions,
    /// The log line format.
    pub log_format: LogFormat,
}

/// The ids of the credentials flags: one choice, taken whole from one layer.
const CREDENTIALS: [&str; 5] = ["creds", "nkey", "user", "password", "token"];

/// Whether clap's value of `id` was given (as a flag or in the environment)
/// rather than its default or nothing.
pub fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

impl RunArgs {
    /// Reads the configuration file, if any, and layers these flags over
    /// it. `matches` are `run`'s; `log_format` and `log_format_given` are
    /// the global `--log-format`'s value and whether it was given.
    pub fn resolve(
        self,
        matches: &ArgMatches,
        log_format: LogFormat,
        log_format_given: bool,
    ) -> anyhow::Result<Resolved> {
        let file = match &self.config {
            Some(path) => Some(HostConfig::load(path)?),
            None => None,
        };
        self.layer(file.as_ref(), log_format, log_format_given, |id| {
            given(matches, id)
        })
    }

    /// These flags over `file`; `given(id)` says whether the flag `id` was
    /// given (as a flag or in the environment).
    pub fn layer(
        self,
        file: Option<&HostConfig>,
        log_format: LogFormat,
        log_format_given: bool,
        given: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Resolved> {
        let empty = HostConfig::default();
        let file = file.unwrap_or(&empty);
        // The flag's value when given, else the file's, else the flag's
        // default.
        fn pick<T>(given: bool, flag: T, file: Option<T>) -> T {
            match file {
                Some(value) if !given => value,
                _ => flag,
            }
        }
        let plugins = match (self.plugins, &file.plugins) {
            (Some(dir), _) => dir,
            (None, Some(dir)) => dir.clone(),
            (None, None) => return Err(MissingPlugins.into()),
        };
        let n = &file.nats;
        let servers = pick(given("nats"), self.nats.nats, n.servers.clone());
        let auth = if CREDENTIALS.iter().any(|id| given(id)) || !n.has_credentials() {
            self.nats.auth.clone()
        } else {
            NatsAuthArgs {
                creds: n.creds.clone(),
                nkey: n.nkey.clone(),
                user: n.user.clone(),
                password: n.password.as_ref().map(|p| p.0.clone()),
                token: n.token.as_ref().map(|t| t.0.clone()),
                ..self.nats.auth.clone()
            }
        };
        let tls_ca = if given("tls_ca") {
            self.nats.auth.tls_ca.clone()
        } else {
            n.tls_ca.clone().or(self.nats.auth.tls_ca.clone())
        };
        let (tls_cert, tls_key) = if given("tls_cert") || n.tls_cert.is_none() {
            (
                self.nats.auth.tls_cert.clone(),
                self.nats.auth.tls_key.clone(),
            )
        } else {
            (n.tls_cert.clone(), n.tls_key.clone())
        };
        let auth = NatsAuthArgs {
            tls_ca,
            tls_cert,
            tls_key,
            ..auth
        };
        let nats = NatsArgs {
            nats: servers,
            auth,
        }
        .connection()?;
        let compile_cache = pick(
            given("no_compile_cache"),
            !self.no_compile_cache,
            file.compile_cache,
        );
        let cache_dir = pick(
            given("cache_dir"),
            self.cache_dir,
            file.cache_dir.clone().map(Some),
        );
        let cache_dir = match cache_dir {
            // wasmtime takes only an absolute folder.
            Some(dir) => Some(
                std::path::absolute(&dir)
                    .with_context(|| format!("the cache folder {}", dir.display()))?,
            ),
            None => None,
        };
        Ok(Resolved {
            options: HostOptions {
                plugins,
                nats,
                drain_timeout: pick(
                    given("drain_timeout"),
                    self.drain_timeout,
                    file.drain_timeout,
                ),
                compile_timeout: pick(
                    given("compile_timeout"),
                    self.compile_timeout,
                    file.compile_timeout,
                ),
                compile_cache,
                cache_dir,
                metrics: pick(
                    given("metrics"),
                    self.metrics,
                    file.metrics.clone().map(Some),
                ),
                dead_letter_streams: false,
                plugin_defaults: file.plugin_defaults.clone(),
                replicas: pick(given("replicas"), self.replicas, file.replicas),
            },
            log_format: pick(log_format_given, log_format, file.log_format),
        })
    }
}

/// No plugins folder from a flag, the environment or the file: a usage
/// mistake (`main` exits with 2 for it, as for clap's own).
#[derive(Debug, thiserror::Error)]
#[error(
    "no plugins folder: give --plugins DIR, EVHOST_PLUGINS, or plugins = \"DIR\" in the configuration file (--config)"
)]
pub struct MissingPlugins;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    use super::*;
    use crate::nats_connection::Credentials;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    const FILE: &str = r#"
plugins = "/srv/plugins"
metrics = "127.0.0.1:9000"
drain_timeout = "5s"
compile_timeout = "45s"
log_format = "json"
compile_cache = false
[nats]
servers = "nats://file:4222"
user = "from-file"
password = "file-secret"
tls_ca = "ca.pem"
[limits]
timeout_ms = 100
"#;

    /// Layers `args` over the file `text` (a variable in the environment
    /// counts as given, as a flag does; `resolve` asks clap which).
    fn layered(text: Option<&str>, args: &[&str]) -> anyhow::Result<Resolved> {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let matches = Cli::command()
            .try_get_matches_from(all)
            .expect("the test's flags parse");
        let run = Cli::from_arg_matches(&matches).unwrap().run;
        // The files the connection checks are readable.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not checked here").unwrap();
        let file = text.map(|t| HostConfig::parse(t, dir.path()).unwrap());
        run.layer(file.as_ref(), LogFormat::Text, false, |id| {
            matches!(matches.value_source(id), Some(ValueSource::CommandLine))
        })
    }

    #[test]
    fn the_file_fills_what_the_flags_leave_out() {
        let r = layered(Some(FILE), &[]).unwrap();
        let o = &r.options;
        assert_eq!(o.plugins, Path::new("/srv/plugins"));
        assert_eq!(o.metrics.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(o.drain_timeout, Duration::from_secs(5));
        assert_eq!(o.compile_timeout, Duration::from_secs(45));
        assert!(!o.compile_cache);
        assert_eq!(r.log_format, LogFormat::Json);
        assert_eq!(o.nats.servers.to_string(), "nats://file:4222");
        assert!(matches!(
            &o.nats.credentials,
            Credentials::UserPassword { user, .. } if user == "from-file"
        ));
        assert!(o.nats.tls.ca.as_ref().unwrap().ends_with("ca.pem"));
        assert_eq!(o.plugin_defaults.limits.timeout_ms, Some(100));
    }

    #[test]
    fn flags_and_the_environment_win_over_the_file() {
        let r = layered(
            Some(FILE),
            &[
                "--plugins",
                "/flag/plugins",
                "--metrics",
                "127.0.0.1:1",
                "--drain-timeout",
                "2s",
                "--compile-timeout",
                "3m",
                "--nats",
                "nats://flag:4222",
                "--token",
                "flag-token",
            ],
        )
        .unwrap();
        let o = &r.options;
        assert_eq!(o.plugins, Path::new("/flag/plugins"));
        assert_eq!(o.metrics.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(o.drain_timeout, Duration::from_secs(2));
        assert_eq!(o.compile_timeout, Duration::from_secs(180));
        assert_eq!(o.nats.servers.to_string(), "nats://flag:4222");
        // Credentials given as a flag replace the file's altogether.
        assert!(matches!(o.nats.credentials, Credentials::Token(_)));
        // What the flags leave out still comes from the file.
        assert!(o.nats.tls.ca.as_ref().unwrap().ends_with("ca.pem"));
        assert!(!o.compile_cache);
    }

    #[test]
    fn without_a_file_the_defaults_hold_and_a_plugins_folder_is_required() {
        let r = layered(None, &["--plugins", "p"]).unwrap();
        let o = &r.options;
        assert_eq!(o.drain_timeout, Duration::from_secs(30));
        assert_eq!(o.compile_timeout, crate::runtime::DEFAULT_COMPILE_TIMEOUT);
        assert!(o.compile_cache);
        assert!(o.metrics.is_none());
        assert_eq!(o.nats.credentials, Credentials::None);
        assert_eq!(r.log_format, LogFormat::Text);
        let err = layered(None, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("no plugins folder: give --plugins DIR"),
            "{err}"
        );
        // The file given, but with no plugins key.
        let err = layered(Some("metrics = \"x:1\""), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no plugins folder"), "{err}");
    }
}
