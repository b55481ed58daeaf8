//! What evhost costs on top of NATS, measured in one run on this machine.
//!
//! Starts its own `nats-server`, builds the `noop`, `payment`, `bench-http`
//! and `bench-kv` plugins, and measures, for 128-byte and 1-KiB payloads, on
//! core NATS and on JetStream:
//! (a) a bare async-nats consumer that only counts (the ceiling); (b) a native
//! Rust handler doing the payment plugin's work; (c) evhost with `noop`;
//! (d) evhost with `payment`. Then plugin load and reload times and host RSS.
//! On core NATS also (a″), a bare client answering each message's reply
//! subject: noop's latency is timed through such an answer, an extra hop
//! through nats-server that (a) does not make, and (a″) − (a) is that hop's
//! share of (c) − (a) with no host in it.
//! Then the capability rows: throughput of a handler making one HTTP POST
//! per message (to a local server) and of one doing one key-value get and
//! compare-and-swap per message, each native and as a plugin (`bench-http`,
//! `bench-kv`, in `host/benches/plugins/`); `--capabilities` runs only those
//! and writes nothing (with `--rounds` and `--compare`, as below).
//! On core NATS with 128-byte payloads, each round also runs noop and payment
//! written in Python and in JavaScript (`noop-py`, `noop-js`, `payment-js` in
//! `host/benches/plugins/`, `plugins/payment-py`), built with componentize-py
//! and componentize-js (a missing tool fails the run, naming how to install
//! it) and kept by the digest of their inputs in `target/python-wasm` and
//! `target/js-wasm`. Then, per language, what a plugin costs to start and to
//! keep (the "Plugin size and start-up, per language" table): the `.wasm`'s
//! size, a cold compile, a load from the compiled-code cache, the host's RSS
//! with the plugin idle, the memory of one more instance, the cost of a fresh
//! instance per message, and whether the default `[limits]` serve it.
//!
//! `cargo bench -p evhost --bench overhead [-- --duration SECS]` prints the
//! table and writes BENCHMARKS.md; `-- --compare OTHER_EVHOST --rounds N`
//! measures every case N times with this build's evhost and N times with
//! another (an earlier commit's release binary), rounds alternating, and
//! prints both tables, each with its own baselines, writing nothing; `cargo test -p evhost --bench overhead --
//! --smoke` runs each case for a moment and checks only that messages flowed.
//!
//! Throughput is closed-loop: the publisher keeps at most `WINDOW` messages
//! outstanding (published, not yet handled), so the consumer always has work
//! and never overflows (core NATS would drop), and the rate is what the
//! consumer side completes per second over the window. On JetStream,
//! "completed" is the consumer's ack floor. For the evhost cases the host's
//! CPU time per message (user + system, from /proc) is reported as well: it
//! moves far less than the rates when other work shares the machine.
//! Latency is publish → output received, stamped in a `traceparent` header
//! (which evhost copies onto outputs), sampled twice from a paced publisher
//! on a thread of its own: at a light 10 000 msgs/s, and at half the
//! measured rate.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use evhost_nats_process::{NatsServer, component_cache, poll, wasm_build};
use futures::StreamExt;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::io::TokioIo;

/// Where the generated part of BENCHMARKS.md ends and the hand-written
/// analysis, which a run keeps, begins.
const NOTES_MARKER: &str = "<!-- written by hand below this line; the benchmark keeps it -->";

/// Messages in flight at most during throughput runs.
const WINDOW: u64 = 4096;

/// The light load at which latency is also sampled: well under what every
/// case sustains, so it shows each hop's cost with no queue.
const LIGHT_RATE: f64 = 10_000.0;

/// How long latency is sampled at a fixed rate.
const LATENCY_RUN: Duration = Duration::from_secs(5);

/// How often the paced publisher of a latency run sends what is due.
const PACE: Duration = Duration::from_micros(100);

/// How often a throughput run asks how many messages were completed.
const POLL: Duration = Duration::from_millis(1);

/// The evhost binary that `--compare` measures against, and whether the
/// current round runs it instead of this build's.
static COMPARE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static COMPARE_TURN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--native-in-process`: the capability rows' native handlers run inside
/// this process (sharing its runtime with the HTTP server, the publisher and
/// the output counter), as they did before 2026-12-06, instead of in a
/// process of their own ([`NativeProcess`]).
static NATIVE_IN_PROCESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The evhost binary the current round starts.
fn evhost_bin() -> PathBuf {
    match COMPARE.get() {
        Some(other) if COMPARE_TURN.load(Ordering::Relaxed) => other.clone(),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_evhost")),
    }
}

/// The longest the benchmark waits for a line of the host's log (`host
/// ready`): a cold compile of a Python or JavaScript component takes tens of
/// seconds, minutes on a busy machine. The compile time limit the benchmark's
/// hosts get ([`COMPILE_TIMEOUT`]) is shorter, so a compile that never ends
/// fails first, with its reason.
const LOG_WAIT: Duration = Duration::from_secs(660);

/// The compile time limit of the benchmark's hosts (`EVHOST_COMPILE_TIMEOUT`),
/// far above the default of 2 min, which a cold compile of a Python
/// component exceeds when the machine is busy.
const COMPILE_TIMEOUT: &str = "10m";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Core,
    JetStream,
}

/// The language a handler plugin is written in.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Language {
    Rust,
    Python,
    JavaScript,
}

impl Language {
    const ALL: [Language; 3] = [Language::Rust, Language::Python, Language::JavaScript];

    /// What the plugin's name has after the handler's (`noop-py`).
    fn suffix(self) -> &'static str {
        match self {
            Language::Rust => "",
            Language::Python => "-py",
            Language::JavaScript => "-js",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Bare,
    /// A bare client that answers each message's reply subject with an
    /// empty message carrying its headers, as `noop` does in the latency
    /// runs: the floor of what any consumer that answers costs, which
    /// separates the reply's extra hop through nats-server from the host.
    Echo,
    Native,
    /// `noop` (`noop-py`, `noop-js`): does nothing, answers a reply subject.
    Noop(Language),
    /// `noop` with `isolation = "message"`: a fresh instance per message.
    NoopFresh,
    /// `payment` (`payment-py`, `payment-js`): the order flow's payment.
    Payment(Language),
}

impl Case {
    fn named(name: &str) -> anyhow::Result<Case> {
        let language = |suffix: &str| {
            Language::ALL
                .into_iter()
                .find(|l| l.suffix() == suffix)
                .with_context(|| format!("unknown language suffix {suffix:?}: -py or -js"))
        };
        Ok(match name {
            "bare" => Case::Bare,
            "echo" => Case::Echo,
            "native" => Case::Native,
            "fresh" => Case::NoopFresh,
            other => match other.split_once('-').unwrap_or((other, "")) {
                ("noop", "") => Case::Noop(Language::Rust),
                ("payment", "") => Case::Payment(Language::Rust),
                ("noop", l) => Case::Noop(language(&format!("-{l}"))?),
                ("payment", l) => Case::Payment(language(&format!("-{l}"))?),
                _ => bail!(
                    "unknown case {other:?}: bare, echo, native, noop, fresh, payment, \
                     noop-py, noop-js, payment-py or payment-js"
                ),
            },
        })
    }

    /// What the table calls the case.
    fn label(self) -> String {
        match self {
            Case::Bare => "(a) bare client".into(),
            Case::Echo => "(a″) bare client answering (the reply hop alone)".into(),
            Case::Native => "(b) native handler".into(),
            Case::Noop(Language::Rust) => "(c) evhost noop".into(),
            Case::NoopFresh => "(c') evhost noop, isolation = message".into(),
            Case::Payment(Language::Rust) => "(d) evhost payment".into(),
            Case::Noop(l) => format!("(c{0}) evhost noop{0}, {1}", l.suffix(), l.name()),
            Case::Payment(l) => format!("(d{0}) evhost payment{0}, {1}", l.suffix(), l.name()),
        }
    }

    /// The plugin evhost runs for this case (`noop-py.wasm`), if any.
    fn plugin(self) -> Option<String> {
        match self {
            Case::Noop(l) => Some(format!("noop{}", l.suffix())),
            Case::NoopFresh => Some("noop".into()),
            Case::Payment(l) => Some(format!("payment{}", l.suffix())),
            Case::Bare | Case::Echo | Case::Native => None,
        }
    }
}

/// The Python and JavaScript cases, run on core NATS with 128-byte payloads
/// in every round, after the Rust ones.
const LANGUAGE_CASES: [Case; 4] = [
    Case::Noop(Language::Python),
    Case::Noop(Language::JavaScript),
    Case::Payment(Language::Python),
    Case::Payment(Language::JavaScript),
];

#[derive(Clone)]
struct Row {
    mode: Mode,
    payload: usize,
    case: Case,
    rate: f64,
    latency: Option<[Duration; 3]>,
    latency_rate: f64,
    /// Latency at [`LIGHT_RATE`].
    light_latency: Option<[Duration; 3]>,
    /// CPU time the evhost process spent per message during the throughput
    /// run (user + system), for the evhost cases.
    host_cpu: Option<Duration>,
    /// The same during the latency run at half load, where messages arrive
    /// paced, a few at a time, rather than in the closed loop's batches.
    paced_cpu: Option<Duration>,
    /// The share of the machine's CPU time (all cores) left idle during the
    /// latency run at half load: near zero means everything on the machine
    /// (nats-server, the benchmark, the host) queued for a core.
    paced_idle: Option<f64>,
}

struct Bench {
    url: String,
    duration: Duration,
    smoke: bool,
    plugins: PathBuf,
    epoch: Instant,
}

#[derive(Deserialize, Serialize)]
struct OrderCreated {
    event_id: String,
    order_id: String,
    customer_id: String,
    items: Vec<Item>,
    total_cents: u64,
    created_at: String,
}

#[derive(Deserialize, Serialize)]
struct Item {
    product_id: String,
    quantity: u32,
    price_cents: u64,
}

#[derive(Serialize)]
struct PaymentCompleted<'a> {
    event_id: String,
    order_id: &'a str,
    customer_id: &'a str,
    amount_cents: u64,
    causation_id: &'a str,
    created_at: String,
}

/// An order event of about `size` bytes (more items for larger sizes).
fn order_payload(size: usize) -> Bytes {
    let mut items = Vec::new();
    loop {
        items.push(Item {
            product_id: format!("p-{:04}", items.len()),
            quantity: 1,
            price_cents: 100,
        });
        let total = items.len() as u64 * 100;
        let order = OrderCreated {
            event_id: "7b0c7a64-0f5e-4c59-a3c3-1f1e8a3a9d10".into(),
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            total_cents: total,
            created_at: "2026-11-22T10:00:00Z".into(),
            items: std::mem::take(&mut items),
        };
        let bytes = serde_json::to_vec(&order).unwrap();
        if bytes.len() + 48 > size || order.items.len() > 200 {
            return Bytes::from(bytes);
        }
        items = order.items;
    }
}

/// The native handler: the payment plugin's work without the host.
fn native_payment(payload: &[u8]) -> Option<Vec<u8>> {
    let order: OrderCreated = serde_json::from_slice(payload).ok()?;
    let sum: u64 = order
        .items
        .iter()
        .map(|i| u64::from(i.quantity) * i.price_cents)
        .sum();
    if order.items.is_empty() || sum != order.total_cents {
        return None;
    }
    // Like the plugin: a fresh event id and the time of handling.
    let done = PaymentCompleted {
        event_id: uuid::Uuid::new_v4().to_string(),
        order_id: &order.order_id,
        customer_id: &order.customer_id,
        amount_cents: order.total_cents,
        causation_id: &order.event_id,
        created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    };
    serde_json::to_vec(&done).ok()
}

/// Headers stamping a message with its send time, as nanoseconds since
/// `epoch` in the trace id of a `traceparent` (which evhost carries over).
fn stamp(epoch: Instant) -> HeaderMap {
    let nanos = epoch.elapsed().as_nanos() as u64;
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-{nanos:032x}-00f067aa0ba902b7-01").as_str(),
    );
    h
}

/// Publishes `payload` at `rate` messages/s for `run`, each stamped with its
/// send time. It runs on a thread of its own and sends what is due every
/// [`PACE`], so the load arrives in small bursts rather than in the
/// millisecond lumps an async timer would make.
fn paced(
    client: &Client,
    input: &'static str,
    reply: Option<&'static str>,
    payload: &Bytes,
    rate: f64,
    run: Duration,
    epoch: Instant,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut sent = 0f64;
    while started.elapsed() < run {
        let due = started.elapsed().as_secs_f64() * rate;
        // What is due goes out in one go: one hand-off to the client's
        // connection task per burst, not one per message.
        futures::executor::block_on(async {
            while sent < due {
                publish(client, input, reply, stamp(epoch), payload.clone()).await?;
                sent += 1.0;
            }
            anyhow::Ok(())
        })?;
        std::thread::sleep(PACE);
    }
    futures::executor::block_on(client.flush())?;
    Ok(())
}

impl Bench {
    /// Subject the input goes to and subject the outputs are counted on.
    fn subjects(case: Case) -> (&'static str, &'static str) {
        match case {
            Case::Bare => ("bench.bare", "bench.bare"),
            Case::Native | Case::Payment(_) => {
                ("orders.order.created", "payments.payment.completed")
            }
            Case::Echo | Case::Noop(_) | Case::NoopFresh => ("bench.noop", "bench.done"),
        }
    }

    /// Measures one case. Latency is taken at `latency_rate` messages/s, or
    /// at half the measured rate when none is given.
    async fn run(
        &self,
        mode: Mode,
        case: Case,
        size: usize,
        latency_rate: Option<f64>,
    ) -> anyhow::Result<Row> {
        let payload = match case {
            Case::Native | Case::Payment(_) => order_payload(size),
            Case::Bare | Case::Echo | Case::Noop(_) | Case::NoopFresh => {
                Bytes::from(vec![b'x'; size])
            }
        };
        let (input, output) = Self::subjects(case);
        let client = async_nats::connect(&self.url).await?;
        let js = jetstream::new(client.clone());
        let stream_name = "BENCH";
        let _ = js.delete_stream(stream_name).await;
        if mode == Mode::JetStream {
            js.create_stream(stream::Config {
                name: stream_name.into(),
                subjects: vec![input.into()],
                max_messages: 200_000,
                ..Default::default()
            })
            .await?;
        }
        // The consumer side: bare counter, native handler, or evhost.
        let completed = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
        let mut host: Option<HostProcess> = None;
        let mut tasks = Vec::new();
        match case {
            Case::Bare | Case::Echo | Case::Native => {
                if case == Case::Echo && mode == Mode::JetStream {
                    bail!("echo answers reply subjects: core NATS only");
                }
                let consumer_client = async_nats::connect(&self.url).await?;
                let out_client = consumer_client.clone();
                let completed = completed.clone();
                let epoch = self.epoch;
                let native = case == Case::Native;
                let echo = case == Case::Echo;
                // The bare client times and counts what it receives; the
                // others are timed and counted where their outputs arrive.
                let bare = case == Case::Bare;
                let seen = latencies.clone();
                let record = move |msg: &async_nats::Message, done: &AtomicU64| {
                    if bare {
                        if let Some(l) = latency(epoch, msg) {
                            seen.lock().unwrap().push(l);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                };
                if !bare {
                    tasks.push(
                        self.count_outputs(output, completed.clone(), latencies.clone())
                            .await?,
                    );
                }
                match mode {
                    Mode::Core => {
                        let mut sub = consumer_client.subscribe(input).await?;
                        consumer_client.flush().await?;
                        tasks.push(tokio::spawn(async move {
                            while let Some(msg) = sub.next().await {
                                record(&msg, &completed);
                                if native && let Some(out) = native_payment(&msg.payload) {
                                    let headers = msg.headers.clone().unwrap_or_default();
                                    let _ = out_client
                                        .publish_with_headers(output, headers, out.into())
                                        .await;
                                }
                                if echo && let Some(reply) = msg.reply {
                                    let headers = msg.headers.unwrap_or_default();
                                    let _ = out_client
                                        .publish_with_headers(reply, headers, Bytes::new())
                                        .await;
                                }
                            }
                        }));
                    }
                    Mode::JetStream => {
                        let js = jetstream::new(consumer_client.clone());
                        let stream = js.get_stream(stream_name).await?;
                        let consumer: consumer::PullConsumer = stream
                            .create_consumer(consumer::pull::Config {
                                durable_name: Some("bare".into()),
                                ack_policy: consumer::AckPolicy::Explicit,
                                max_ack_pending: 10_000,
                                ..Default::default()
                            })
                            .await?;
                        let mut messages = consumer
                            .stream()
                            .max_messages_per_batch(256)
                            .messages()
                            .await?;
                        tasks.push(tokio::spawn(async move {
                            while let Some(Ok(msg)) = messages.next().await {
                                record(&msg.message, &completed);
                                if native && let Some(out) = native_payment(&msg.payload) {
                                    let headers = msg.headers.clone().unwrap_or_default();
                                    let _ = out_client
                                        .publish_with_headers(output, headers, out.into())
                                        .await;
                                }
                                let _ = msg.ack().await;
                            }
                        }));
                    }
                }
            }
            Case::Noop(_) | Case::NoopFresh | Case::Payment(_) => {
                tasks.push(
                    self.count_outputs(output, completed.clone(), latencies.clone())
                        .await?,
                );
                let name = case.plugin().expect("an evhost case has a plugin");
                let mut manifest = "[limits]\nconcurrency = 256\n".to_string();
                if case == Case::NoopFresh {
                    manifest.push_str("isolation = \"message\"\n");
                }
                if mode == Mode::JetStream {
                    manifest.push_str("[jetstream]\nstream = \"BENCH\"\ndurable = \"bench\"\n");
                }
                host = Some(HostProcess::start(
                    &self.url,
                    &self.plugins,
                    &[&name],
                    &manifest,
                    None,
                )?);
            }
        }
        // With JetStream, count acks; noop on core NATS is counted by the
        // host's own metrics, so it publishes nothing the bare client does not.
        let noop_metrics = host
            .as_ref()
            .filter(|_| mode == Mode::Core && matches!(case, Case::Noop(_) | Case::NoopFresh))
            .map(|h| h.metrics);
        let progress = {
            let completed = completed.clone();
            let js = js.clone();
            let durable = if matches!(case, Case::Bare | Case::Native) {
                "bare"
            } else {
                "bench"
            };
            // The consumer is looked up once; each poll is one info request.
            let consumer = Arc::new(tokio::sync::Mutex::new(None));
            move || {
                let completed = completed.clone();
                let js = js.clone();
                let consumer = consumer.clone();
                async move {
                    if let Some(addr) = noop_metrics {
                        return handled(addr).await;
                    }
                    if mode == Mode::Core {
                        return completed.load(Ordering::Relaxed);
                    }
                    let mut consumer = consumer.lock().await;
                    if consumer.is_none() {
                        let Ok(stream) = js.get_stream(stream_name).await else {
                            return 0;
                        };
                        // evhost names its consumer after the durable and
                        // a digest of the subject (`bench-<hex>`).
                        let names: Vec<String> = stream
                            .consumer_names()
                            .filter_map(|n| async move { n.ok() })
                            .collect()
                            .await;
                        let Some(name) = names
                            .into_iter()
                            .find(|n| n == durable || n.starts_with(&format!("{durable}-")))
                        else {
                            return 0;
                        };
                        *consumer = stream
                            .get_consumer::<consumer::pull::Config>(&name)
                            .await
                            .ok();
                    }
                    let Some(c) = consumer.as_mut() else {
                        return 0;
                    };
                    c.info()
                        .await
                        .map(|i| i.ack_floor.stream_sequence)
                        .unwrap_or(0)
                }
            }
        };

        // Throughput, closed loop.
        let publisher = async_nats::connect(&self.url).await?;
        let warmup = if self.smoke {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        let cpu_before = host.as_ref().map(HostProcess::cpu_time);
        let done_before = progress().await;
        // echo is measured answering: what it completes is its answers.
        let (rate, mut published) = closed_loop(
            &publisher,
            input,
            (case == Case::Echo).then_some(output),
            &payload,
            warmup + self.duration,
            warmup,
            &progress,
        )
        .await?;
        let handled = progress().await.saturating_sub(done_before).max(1);
        let host_cpu = host.as_ref().zip(cpu_before).map(|(h, before)| {
            h.cpu_time().saturating_sub(before) / u32::try_from(handled).unwrap_or(u32::MAX)
        });
        // noop answers only a reply subject, and the latency run needs an
        // answer to time: on core NATS its latency rate is half of what it
        // sustains while replying, measured here the same way, unless a rate
        // was given (echo's closed loop above already answers).
        let reply = (matches!(case, Case::Echo | Case::Noop(_) | Case::NoopFresh)
            && mode == Mode::Core)
            .then_some("bench.done");
        let measure_replying = reply.is_some() && case != Case::Echo && latency_rate.is_none();
        let mut latency_rate = latency_rate.unwrap_or(rate / 2.0);
        if measure_replying && !self.smoke {
            let replies = || {
                let completed = completed.clone();
                async move { completed.load(Ordering::Relaxed) }
            };
            let (replying, _) = closed_loop(
                &publisher,
                input,
                reply,
                &payload,
                warmup + self.duration / 2,
                warmup,
                &replies,
            )
            .await?;
            latency_rate = latency_rate.min(replying / 2.0);
            // Let the host finish what that run left outstanding.
            tokio::time::sleep(Duration::from_millis(500)).await;
            published = progress().await;
        }

        // Latency at half that rate (core NATS only: on JetStream the
        // publish → output path includes the stream and is reported as such).
        // Latency: first at a light fixed rate (the cost of each hop with
        // no queue), then at half the measured rate.
        let mut paced_cpu = None;
        let mut paced_idle = None;
        let (light_latency, latency) = if self.smoke {
            (None, None)
        } else {
            poll::until(Duration::MAX, Duration::from_millis(20), || async {
                (progress().await >= published).then_some(())
            })
            .await;
            let sample = |rate: f64| {
                let (client, payload, epoch) = (publisher.clone(), payload.clone(), self.epoch);
                let latencies = latencies.clone();
                async move {
                    latencies.lock().unwrap().clear();
                    let before = MachineCpu::now();
                    tokio::task::spawn_blocking(move || {
                        paced(&client, input, reply, &payload, rate, LATENCY_RUN, epoch)
                    })
                    .await??;
                    let idle = idle_share(before, MachineCpu::now());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let mut l = std::mem::take(&mut *latencies.lock().unwrap());
                    l.sort();
                    let percentiles = (l.len() > 100).then(|| {
                        let p = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
                        [p(0.5), p(0.99), p(0.999)]
                    });
                    anyhow::Ok((percentiles, idle))
                }
            };
            // The light rate is light only for a case that sustains at least
            // twice as much (not so for a handler in Python or JavaScript
            // doing the payment's work): else it is left out.
            let light = if latency_rate >= LIGHT_RATE {
                sample(LIGHT_RATE).await?.0
            } else {
                None
            };
            let cpu_before = host.as_ref().map(HostProcess::cpu_time);
            let (half, idle) = sample(latency_rate).await?;
            paced_idle = idle;
            paced_cpu = host.as_ref().zip(cpu_before).map(|(h, before)| {
                let sent = (latency_rate * LATENCY_RUN.as_secs_f64()).max(1.0);
                h.cpu_time().saturating_sub(before).div_f64(sent)
            });
            (light, half)
        };
        for t in tasks {
            t.abort();
        }
        if let Some(mut h) = host {
            h.stop();
        }
        let _ = js.delete_stream(stream_name).await;
        Ok(Row {
            mode,
            payload: size,
            case,
            rate,
            latency,
            latency_rate,
            light_latency,
            host_cpu,
            paced_cpu,
            paced_idle,
        })
    }

    async fn count_outputs(
        &self,
        subject: &'static str,
        completed: Arc<AtomicU64>,
        latencies: Arc<std::sync::Mutex<Vec<Duration>>>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let client = async_nats::connect(&self.url).await?;
        let mut sub = client.subscribe(subject).await?;
        client.flush().await?;
        let epoch = self.epoch;
        Ok(tokio::spawn(async move {
            let _client = client;
            while let Some(msg) = sub.next().await {
                if let Some(l) = latency(epoch, &msg) {
                    latencies.lock().unwrap().push(l);
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
        }))
    }
}

fn latency(epoch: Instant, msg: &async_nats::Message) -> Option<Duration> {
    let headers = msg.headers.as_ref()?;
    let tp = headers.get("traceparent")?.as_str();
    let sent = u64::from_str_radix(tp.get(3..35)?, 16).ok()?;
    Some(epoch.elapsed().saturating_sub(Duration::from_nanos(sent)))
}

/// The text of the host's `/metrics` at `addr`; empty when it cannot be read.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let mut text = String::new();
    if stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: evhost\r\n\r\n")
        .await
        .is_err()
        || stream.read_to_string(&mut text).await.is_err()
    {
        return String::new();
    }
    text
}

/// The sum of the samples in `text` (`/metrics`) of the metric `name` whose
/// labels contain `label` (any, when empty).
fn metric_sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Messages the host at `addr` has handled (`outcome="ok"`), from `/metrics`.
async fn handled(addr: std::net::SocketAddr) -> u64 {
    metric_sum(
        &scrape(addr).await,
        "evhost_messages_total",
        "outcome=\"ok\"",
    )
}

/// Messages the host at `addr` has taken and not yet finished, from `/metrics`.
async fn in_flight(addr: std::net::SocketAddr) -> u64 {
    metric_sum(&scrape(addr).await, "evhost_messages_in_flight", "")
}

/// Publishes `payload` to `input` for `run`, keeping at most [`WINDOW`]
/// messages outstanding by `progress` (messages completed so far), and
/// returns the rate completed after `warmup`, and how many were published.
async fn closed_loop<F, Fut>(
    publisher: &Client,
    input: &'static str,
    reply: Option<&'static str>,
    payload: &Bytes,
    run: Duration,
    warmup: Duration,
    progress: &F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn() -> Fut,
    Fut: Future<Output = u64>,
{
    let base = progress().await;
    let mut published = 0u64;
    let started = Instant::now();
    let mut window_start: Option<(Instant, u64)> = None;
    let mut done = 0;
    let mut polled = Instant::now();
    while started.elapsed() < run {
        // Progress is asked at most every POLL: asking costs the consumer
        // side (an HTTP request to the host, a consumer info request to the
        // server), and the window is far larger than a POLL's worth.
        if polled.elapsed() >= POLL || published == 0 {
            done = progress().await - base;
            polled = Instant::now();
        }
        if window_start.is_none() && started.elapsed() >= warmup {
            window_start = Some((Instant::now(), done));
        }
        let room = (WINDOW + done).saturating_sub(published).min(1024);
        if room == 0 {
            tokio::time::sleep(POLL).await;
            continue;
        }
        for _ in 0..room {
            publish(publisher, input, reply, HeaderMap::new(), payload.clone()).await?;
        }
        published += room;
        publisher.flush().await?;
    }
    let (t0, d0) = window_start.context("run too short")?;
    if done == 0 {
        bail!("no message completed");
    }
    Ok((
        (done - d0) as f64 / t0.elapsed().as_secs_f64(),
        base + published,
    ))
}

async fn publish(
    client: &Client,
    subject: &'static str,
    reply: Option<&'static str>,
    headers: HeaderMap,
    payload: Bytes,
) -> anyhow::Result<()> {
    match reply {
        Some(reply) => {
            client
                .publish_with_reply_and_headers(subject, reply, headers, payload)
                .await?
        }
        None => {
            client
                .publish_with_headers(subject, headers, payload)
                .await?
        }
    }
    Ok(())
}

/// An `evhost run` child with its log lines.
struct HostProcess {
    child: Child,
    /// The plugin folder [`HostProcess::start`] made, removed with it.
    _dir: Option<tempfile::TempDir>,
    /// Where the host serves `/metrics`.
    metrics: std::net::SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl HostProcess {
    /// Copies `names` into a fresh plugin folder with `manifest`, starts
    /// evhost (with `cache_home` as its cache directory, if given) and waits
    /// for `host ready`.
    fn start(
        url: &str,
        plugins: &Path,
        names: &[&str],
        manifest: &str,
        cache_home: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        for name in names {
            let wasm = plugins.join(format!("{name}.wasm"));
            std::fs::copy(&wasm, dir.path().join(format!("{name}.wasm")))
                .with_context(|| format!("copy {}", wasm.display()))?;
            std::fs::write(dir.path().join(format!("{name}.toml")), manifest)?;
        }
        let mut host = Self::start_dir(url, dir.path(), cache_home)?;
        host._dir = Some(dir);
        Ok(host)
    }

    fn start_dir(url: &str, dir: &Path, cache_home: Option<&Path>) -> anyhow::Result<Self> {
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut cmd = Command::new(evhost_bin());
        cmd.args(["run", "--log-format", "json", "--nats", url, "--plugins"])
            .arg(dir)
            .arg("--metrics")
            .arg(metrics.to_string())
            .env("EVHOST_LOG", "info")
            .env(
                "EVHOST_PROFILER",
                std::env::var("EVHOST_PROFILER").unwrap_or_default(),
            )
            .env_remove("RUST_BACKTRACE")
            .env("EVHOST_COMPILE_TIMEOUT", COMPILE_TIMEOUT)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // `EVHOST_BENCH_WORKERS=N` runs the host's main runtime (JetStream
        // lanes; core NATS lanes run on the shards) with N tokio workers (the
        // benchmark's own runtime keeps the default).
        if let Ok(workers) = std::env::var("EVHOST_BENCH_WORKERS") {
            cmd.env("TOKIO_WORKER_THREADS", workers);
        }
        if let Some(home) = cache_home {
            cmd.env("HOME", home)
                .env("XDG_CACHE_HOME", home.join(".cache"));
        }
        let mut child = cmd.spawn().context("start evhost")?;
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut host = HostProcess {
            child,
            _dir: None,
            metrics,
            lines,
            seen: Vec::new(),
        };
        host.wait_for("host ready")?;
        host.check_none_rejected()?;
        Ok(host)
    }

    /// Fails, quoting the host's reason, when a plugin was rejected at load
    /// (it would then handle nothing, and its rows measure nothing).
    fn check_none_rejected(&self) -> anyhow::Result<()> {
        for line in &self.seen {
            let json: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if json["fields"]["message"] == "plugin rejected" {
                bail!(
                    "evhost rejected the plugin {}: {}",
                    json["fields"]["plugin"],
                    json["fields"]["error"]
                );
            }
        }
        Ok(())
    }

    /// Waits for a log line whose message is `message`; returns it as JSON.
    fn wait_for(&mut self, message: &str) -> anyhow::Result<serde_json::Value> {
        use std::sync::mpsc::TryRecvError;
        let found = poll::blocking(LOG_WAIT, Duration::from_millis(10), || {
            loop {
                match self.lines.try_recv() {
                    Ok(line) => {
                        let json: serde_json::Value =
                            serde_json::from_str(&line).unwrap_or_default();
                        self.seen.push(line);
                        if json["fields"]["message"] == message {
                            return Some(Some(json));
                        }
                    }
                    Err(TryRecvError::Empty) => return None,
                    // The host closed its stderr: it has exited.
                    Err(TryRecvError::Disconnected) => return Some(None),
                }
            }
        });
        found
            .flatten()
            .with_context(|| format!("evhost never logged {message:?}:\n{}", self.seen.join("\n")))
    }

    /// The `plugin loaded` line the host logged at start, as JSON.
    fn loaded(&self) -> anyhow::Result<serde_json::Value> {
        self.seen
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_default())
            .find(|json| json["fields"]["message"] == "plugin loaded")
            .with_context(|| {
                format!(
                    "evhost never logged \"plugin loaded\":\n{}",
                    self.seen.join("\n")
                )
            })
    }

    /// Moves the log lines the host has written so far into `seen`.
    fn read_log(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// User and system CPU time the host has used so far.
    fn cpu_time(&self) -> Duration {
        process_cpu(self.child.id())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User and system CPU time process `pid` has used so far (0 once it is gone).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Messages (and HTTP requests) in flight at once in the HTTP rows, on both
/// sides: evhost's `[limits] concurrency` (its default `http_max_in_flight`
/// is 32 too) and the requests the native handler keeps open.
const HTTP_CONCURRENCY: usize = 32;

/// What the small JSON answer of the benchmark's HTTP server says.
const HTTP_ANSWER: &[u8] = br#"{"status":"accepted","id":"bench"}"#;

/// A capability plugins have, measured per message in the capability rows.
#[derive(Clone, Copy, PartialEq)]
enum Capability {
    /// One HTTP POST of the payload to a local server, then one output.
    Http,
    /// One key-value get and compare-and-swap of a counter, then one output.
    Kv,
}

impl Capability {
    /// Subject the input goes to and subject the outputs are counted on (the
    /// `bench-http` and `bench-kv` plugins' own).
    fn subjects(self) -> (&'static str, &'static str) {
        match self {
            Capability::Http => ("bench.http", "bench.http.done"),
            Capability::Kv => ("bench.kv", "bench.kv.done"),
        }
    }

    /// The plugin's name (its `.wasm` as built) and messages handled at once.
    fn plugin(self) -> (&'static str, usize) {
        match self {
            Capability::Http => ("bench_http", HTTP_CONCURRENCY),
            Capability::Kv => ("bench_kv", 1),
        }
    }
}

/// One capability row: a native handler or evhost, and what it sustained.
struct CapabilityRow {
    capability: Capability,
    evhost: bool,
    /// The HTTP plugin sent over `wasi:http` rather than the one-call import.
    over_wasi_http: bool,
    /// Measured with the `--compare` binary instead of this build's.
    other_build: bool,
    rate: f64,
    /// Messages handled (outputs received) over the whole case.
    handled: u64,
    /// CPU time (user + system) of the handler's process per message
    /// handled while measuring: evhost's host, or the native handler's own
    /// process (none with `--native-in-process`).
    handler_cpu: Option<Duration>,
}

/// The benchmark's HTTP server on 127.0.0.1: answers every request, once
/// its body is read, with 200 and [`HTTP_ANSWER`], keeping connections open
/// for as long as the client does.
struct HttpServer {
    addr: std::net::SocketAddr,
    /// Requests answered so far.
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let answered = Arc::new(AtomicU64::new(0));
        let counter = answered.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, say: let connections close.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counter = counter.clone();
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let counter = counter.clone();
                        async move {
                            request.into_body().collect().await?;
                            counter.fetch_add(1, Ordering::Relaxed);
                            let response = http::Response::builder()
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from_static(HTTP_ANSWER)))
                                .expect("a valid response");
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(HttpServer {
            addr,
            answered,
            task,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/charges", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The native HTTP handler's client: hyper-util's pooling client, as
/// evhost's host uses one per plugin, so both keep their connections.
type NativeHttp = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// The native HTTP handler's request: a POST of `body` to `addr` through
/// the pooling `client`, with an idempotency key as the SDK sends one;
/// returns the response body.
async fn native_post(
    client: &NativeHttp,
    addr: std::net::SocketAddr,
    key: u64,
    body: Bytes,
) -> anyhow::Result<Bytes> {
    let request = http::Request::post(format!("http://{addr}/charges"))
        .header("idempotency-key", key.to_string())
        .body(Full::new(body))?;
    let response = client.request(request).await?;
    anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
    Ok(response.into_body().collect().await?.to_bytes())
}

/// The native key-value handler's work, what `Bucket::update` does through
/// the host: reads `counter`, writes it plus one at the revision read (or
/// creates it), and reads again and retries when another writer won.
/// Returns the count written.
async fn native_increment(store: &kv::Store) -> anyhow::Result<u64> {
    loop {
        let entry = store.entry("counter").await?;
        let (revision, count) = match entry.filter(|e| matches!(e.operation, kv::Operation::Put)) {
            Some(e) => (Some(e.revision), serde_json::from_slice::<u64>(&e.value)?),
            None => (None, 0),
        };
        let next = count + 1;
        let value = Bytes::from(serde_json::to_vec(&next)?);
        let won = match revision {
            Some(revision) => match store.update("counter", value, revision).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                Err(e) => return Err(e.into()),
            },
            None => match store.create("counter", value).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                Err(e) => return Err(e.into()),
            },
        };
        if won {
            return Ok(next);
        }
    }
}

impl Bench {
    /// Throughput, closed loop on core NATS with 128-byte payloads, of a
    /// handler that makes one HTTP POST per message and of one that does one
    /// key-value get and compare-and-swap per message, each native (async-nats
    /// and hyper in this process) and through evhost (the `bench-http` and
    /// `bench-kv` plugins). The key-value bucket `bench` is created afresh.
    /// `rounds` times in a row, each round measuring every case once (with
    /// `--compare`, the other build's host right after this build's).
    async fn capability_rows(&self, rounds: usize) -> anyhow::Result<Vec<CapabilityRow>> {
        let server = HttpServer::start().await?;
        let client = async_nats::connect(&self.url).await?;
        let js = jetstream::new(client);
        // The bucket's stream as the host lays it out (async-nats's
        // `create_key_value` does not parse nats-server 2.9's answer).
        let _ = js.delete_stream("KV_bench").await;
        evhost::kv_bucket::open_or_create(&js, "bench", None, Default::default()).await?;
        let mut rows = Vec::new();
        let builds: &[bool] = if COMPARE.get().is_some() {
            &[false, true]
        } else {
            &[false]
        };
        for _ in 0..rounds {
            for capability in [Capability::Http, Capability::Kv] {
                rows.push(self.capability_row(capability, false, &server).await?);
                // HTTP goes through evhost twice: the SDK's one-call import
                // and the standard wasi:http.
                let transports: &[bool] = match capability {
                    Capability::Http => &[false, true],
                    Capability::Kv => &[false],
                };
                for &over_wasi_http in transports {
                    for &other_build in builds {
                        COMPARE_TURN.store(other_build, Ordering::Relaxed);
                        let mut row = self
                            .capability_row_over(capability, true, over_wasi_http, &server)
                            .await?;
                        row.other_build = other_build;
                        rows.push(row);
                    }
                }
                COMPARE_TURN.store(false, Ordering::Relaxed);
            }
        }
        let http: u64 = rows
            .iter()
            .filter(|r| r.capability == Capability::Http)
            .map(|r| r.handled)
            .sum();
        let kv: u64 = rows
            .iter()
            .filter(|r| r.capability == Capability::Kv)
            .map(|r| r.handled)
            .sum();
        let counter = js
            .get_key_value("bench")
            .await?
            .get("counter")
            .await?
            .and_then(|v| serde_json::from_slice::<u64>(&v).ok())
            .unwrap_or(0);
        eprintln!(
            "capabilities: {http} HTTP outputs, {} requests answered; {kv} key-value outputs, counter at {counter}",
            server.answered.load(Ordering::Relaxed)
        );
        let _ = js.delete_stream("KV_bench").await;
        Ok(rows)
    }

    /// Measures one capability row, native or through evhost.
    async fn capability_row(
        &self,
        capability: Capability,
        evhost: bool,
        server: &HttpServer,
    ) -> anyhow::Result<CapabilityRow> {
        self.capability_row_over(capability, evhost, false, server)
            .await
    }

    /// [`Bench::capability_row`], the HTTP plugin sending over `wasi:http`
    /// when `over_wasi_http` (else the SDK's one-call import).
    async fn capability_row_over(
        &self,
        capability: Capability,
        evhost: bool,
        over_wasi_http: bool,
        server: &HttpServer,
    ) -> anyhow::Result<CapabilityRow> {
        let (input, output) = capability.subjects();
        let (name, concurrency) = capability.plugin();
        let completed = Arc::new(AtomicU64::new(0));
        let mut tasks = vec![
            self.count_outputs(output, completed.clone(), Arc::default())
                .await?,
        ];
        let mut host = None;
        let mut native = None;
        if evhost {
            let grant = match capability {
                Capability::Http => format!(
                    "[config]\nurl = \"{}\"\n{}[capabilities]\nhttp = [\"http://127.0.0.1:*\"]\n",
                    server.url(),
                    if over_wasi_http {
                        "transport = \"wasi-http\"\n"
                    } else {
                        ""
                    }
                ),
                Capability::Kv => "[capabilities]\nkeyvalue = [\"bench\"]\n".to_string(),
            };
            let manifest = format!("{grant}[limits]\nconcurrency = {concurrency}\n");
            host = Some(HostProcess::start(
                &self.url,
                &self.plugins,
                &[name],
                &manifest,
                None,
            )?);
        } else if NATIVE_IN_PROCESS.load(Ordering::Relaxed) {
            tasks.push(native_handler(&self.url, capability, server.addr).await?);
        } else {
            native = Some(NativeProcess::start(&self.url, capability, server.addr)?);
        }
        // The handler's own process: evhost's host, or the native handler's.
        let handler_pid = match (&host, &native) {
            (Some(h), _) => Some(h.child.id()),
            (_, Some(n)) => Some(n.child.id()),
            _ => None,
        };
        let publisher = async_nats::connect(&self.url).await?;
        let payload = Bytes::from(vec![b'x'; 128]);
        let warmup = if self.smoke {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        let progress = || {
            let completed = completed.clone();
            async move { completed.load(Ordering::Relaxed) }
        };
        let cpu_before = handler_pid.map(process_cpu);
        let done_before = progress().await;
        let (rate, published) = closed_loop(
            &publisher,
            input,
            None,
            &payload,
            warmup + self.duration,
            warmup,
            &progress,
        )
        .await?;
        let done = progress().await.saturating_sub(done_before).max(1);
        let handler_cpu = handler_pid.zip(cpu_before).map(|(pid, before)| {
            process_cpu(pid).saturating_sub(before) / u32::try_from(done).unwrap_or(u32::MAX)
        });
        // Let the handler finish what is outstanding, so that nothing of
        // this case is counted in the next.
        poll::until(
            Duration::from_secs(60),
            Duration::from_millis(20),
            || async { (progress().await >= published).then_some(()) },
        )
        .await;
        let handled = progress().await;
        if handled < published {
            eprintln!(
                "{} {}: {} of {published} messages never handled",
                if evhost { "evhost" } else { "native" },
                name,
                published - handled
            );
        }
        for t in tasks {
            t.abort();
        }
        if let Some(mut h) = host {
            h.stop();
        }
        drop(native);
        Ok(CapabilityRow {
            capability,
            evhost,
            over_wasi_http,
            other_build: false,
            rate,
            handled,
            handler_cpu,
        })
    }
}

/// The native handler of `capability`: an async-nats subscriber on
/// `input` that does the plugin's work and publishes its output.
/// HTTP: up to [`HTTP_CONCURRENCY`] requests at once, through one
/// pooling client. Key-value: one message at a time.
async fn native_handler(
    url: &str,
    capability: Capability,
    http: std::net::SocketAddr,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (input, output) = capability.subjects();
    let client = async_nats::connect(url).await?;
    let mut sub = client.subscribe(input).await?;
    client.flush().await?;
    Ok(match capability {
        Capability::Http => {
            let slots = Arc::new(tokio::sync::Semaphore::new(HTTP_CONCURRENCY));
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            let http_client: NativeHttp =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_max_idle_per_host(HTTP_CONCURRENCY)
                    .build(connector);
            tokio::spawn(async move {
                let mut key = 0u64;
                while let Some(msg) = sub.next().await {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    key += 1;
                    let client = client.clone();
                    let http_client = http_client.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        match native_post(&http_client, http, key, msg.payload).await {
                            Ok(body) => {
                                let _ = client.publish(output, body).await;
                            }
                            Err(e) => eprintln!("native HTTP handler: {e:#}"),
                        }
                    });
                }
            })
        }
        Capability::Kv => {
            let js = jetstream::new(client.clone());
            let store = js.get_key_value("bench").await?;
            tokio::spawn(async move {
                while let Some(_msg) = sub.next().await {
                    match native_increment(&store).await {
                        Ok(count) => {
                            let _ = client.publish(output, count.to_string().into()).await;
                        }
                        Err(e) => eprintln!("native key-value handler: {e:#}"),
                    }
                }
            })
        }
    })
}

/// A native handler in a process of its own, as a hand-rolled NATS consumer
/// runs (and as evhost's host does): this benchmark's binary started with
/// `--native-handler http|kv NATS_URL HTTP_ADDR`. Killed when dropped.
struct NativeProcess {
    child: Child,
}

impl NativeProcess {
    /// Starts the handler of `capability` and waits until it is subscribed.
    fn start(
        url: &str,
        capability: Capability,
        http: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let kind = match capability {
            Capability::Http => "http",
            Capability::Kv => "kv",
        };
        let child = Command::new(std::env::current_exe()?)
            .args(["--native-handler", kind, url, &http.to_string()])
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .spawn()
            .context("start the native handler process")?;
        let mut native = NativeProcess { child };
        let stdout = native.child.stdout.take().expect("piped");
        let mut ready = String::new();
        BufReader::new(stdout).read_line(&mut ready)?;
        anyhow::ensure!(
            ready.trim() == "ready",
            "the native {kind} handler exited before it was ready"
        );
        Ok(native)
    }
}

impl Drop for NativeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process [`NativeProcess`] starts: `args` are `http|kv NATS_URL
/// HTTP_ADDR`. Prints `ready` once subscribed, then handles until killed.
async fn native_handler_process(args: &[String]) -> anyhow::Result<()> {
    let [kind, url, http] = args else {
        bail!("usage: --native-handler http|kv NATS_URL HTTP_ADDR");
    };
    let capability = match kind.as_str() {
        "http" => Capability::Http,
        "kv" => Capability::Kv,
        other => bail!("--native-handler {other}: not http or kv"),
    };
    let handler = native_handler(url, capability, http.parse()?).await?;
    println!("ready");
    handler.await?;
    Ok(())
}

/// The capability rows as a markdown table, with evhost's rate over the
/// native handler's of the same round (the last native row before it) on
/// each evhost row.
fn capability_table(rows: &[CapabilityRow]) -> String {
    let mut t = String::from(
        "| capability | case | in flight | msgs/s | evhost/native | handler CPU µs/msg |\n|---|---|---:|---:|---:|---:|\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let native = rows[..i]
            .iter()
            .rfind(|n| n.capability == r.capability && !n.evhost);
        let ratio = native
            .filter(|_| r.evhost)
            .map(|n| format!("{:.2}", r.rate / n.rate))
            .unwrap_or_default();
        let (what, case) = match (r.capability, r.evhost) {
            (Capability::Http, false) => (
                "HTTP POST per message",
                "native: async-nats + hyper-util pooling client",
            ),
            (Capability::Http, true) if r.over_wasi_http => (
                "HTTP POST per message",
                "evhost `bench-http` over wasi:http",
            ),
            (Capability::Http, true) => (
                "HTTP POST per message",
                "evhost `bench-http` (the SDK's default: one-call `evhost:plugin/http`)",
            ),
            (Capability::Kv, false) => (
                "key-value get + CAS per message",
                "native: async-nats `kv::Store` entry + update",
            ),
            (Capability::Kv, true) => ("key-value get + CAS per message", "evhost `bench-kv`"),
        };
        let case = if r.other_build {
            format!("{case}, the `--compare` build")
        } else {
            case.to_string()
        };
        let cpu = r
            .handler_cpu
            .map(|c| format!("{:.1}", c.as_secs_f64() * 1e6))
            .unwrap_or_default();
        t.push_str(&format!(
            "| {what} | {case} | {} | {:.0} | {ratio} | {cpu} |\n",
            r.capability.plugin().1,
            r.rate,
        ));
    }
    t
}

/// What the capability table measures, for BENCHMARKS.md and the console.
fn capability_notes() -> String {
    format!(
        "Closed loop on core NATS (at most {WINDOW} messages outstanding), 128-byte payloads, each\n\
         handler publishing one output per message. HTTP: a POST of the payload to a hyper server the\n\
         benchmark runs on 127.0.0.1 (200 with a {}-byte JSON body); evhost's host keeps its\n\
         connections in a pool (`http_pool.rs`), and so does the native handler (hyper-util's\n\
         pooling client), both with at most {HTTP_CONCURRENCY} requests in flight\n\
         (evhost: `concurrency = {HTTP_CONCURRENCY}`). evhost runs `bench-http` twice: as the Rust\n\
         SDK sends by default, through the one-call `evhost:plugin/http`, and over the standard\n\
         `wasi:http` (`Request::over_wasi_http`, the path of every other client). Key-value: on each message a get and a\n\
         compare-and-swap of one counter in the bucket `bench` (JetStream, stream `KV_bench`), one\n\
         message at a time on both sides (evhost: `concurrency = 1`; native: a sequential\n\
         subscriber), so both measure the same uncontended round trips to nats-server.\n\
         {} The last column is the CPU time (user + system) of the\n\
         handler's process per message handled, from /proc.",
        HTTP_ANSWER.len(),
        if NATIVE_IN_PROCESS.load(Ordering::Relaxed) {
            "The native handlers run inside the benchmark's process (`--native-in-process`), on\n\
             the runtime of the HTTP server, the publisher and the output counter."
        } else {
            "Each handler runs in a process of its own, the native ones as this benchmark's binary\n\
             started with `--native-handler` (a tokio runtime with a worker per core), evhost as\n\
             `evhost run`; the HTTP server, the publisher and the output counter share the\n\
             benchmark's process."
        }
    )
}

/// Builds the plugins the benchmark runs and gathers them, as `NAME.wasm`,
/// in `target/bench-wasm/plugins`: the Rust ones in a target directory of
/// their own (the nested build the end-to-end tests' build script runs too),
/// the Python and JavaScript ones with their own tools ([`build_components`]).
fn build_plugins() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    wasm_build::check_target_installed()?;
    let rust = wasm_build::build(
        root,
        &root.join("target/bench-wasm"),
        &["noop", "payment", "bench-http", "bench-kv", "bench-spin"],
        &[],
    )?;
    let components = build_components(root)?;
    let dir = root.join("target/bench-wasm/plugins");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let rust_plugins = ["noop", "payment", "bench_http", "bench_kv", "bench_spin"]
        .map(|name| (name.to_string(), rust.join(format!("{name}.wasm"))));
    for (name, built) in rust_plugins.into_iter().chain(components) {
        let to = dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &to)
            .with_context(|| format!("copy {} to {}", built.display(), to.display()))?;
    }
    Ok(dir)
}

/// A plugin of the language rows built by a tool other than cargo, from a
/// folder of the workspace.
struct ComponentBuild {
    /// The plugin's name: the `.wasm` is `NAME.wasm`.
    name: &'static str,
    language: Language,
    /// Its folder, relative to the workspace: `app.py` (the module `app`)
    /// or `app.js` (the entry module) is in it.
    folder: &'static str,
}

/// The Python and JavaScript plugins: noop and payment, and the spinners
/// that hold messages in flight for the per-instance memory.
const COMPONENT_BUILDS: &[ComponentBuild] = &[
    ComponentBuild {
        name: "noop-py",
        language: Language::Python,
        folder: "host/benches/plugins/noop-py",
    },
    ComponentBuild {
        name: "payment-py",
        language: Language::Python,
        folder: "plugins/payment-py",
    },
    ComponentBuild {
        name: "spin-py",
        language: Language::Python,
        folder: "host/benches/plugins/spin-py",
    },
    ComponentBuild {
        name: "noop-js",
        language: Language::JavaScript,
        folder: "host/benches/plugins/noop-js",
    },
    ComponentBuild {
        name: "payment-js",
        language: Language::JavaScript,
        folder: "host/benches/plugins/payment-js",
    },
    ComponentBuild {
        name: "spin-js",
        language: Language::JavaScript,
        folder: "host/benches/plugins/spin-js",
    },
];

/// How to get componentize-py, for error messages.
const INSTALL_PY: &str = "install it with `pip install -r python-sdk/requirements-build.txt` \
     (componentize-py==0.25.1)";

/// How to get componentize-js, for error messages.
const INSTALL_JS: &str = component_cache::COMPONENTIZE_JS_INSTALL;

/// Builds [`COMPONENT_BUILDS`] (each unless a build of the same inputs is
/// kept), in parallel, with the commands the end-to-end tests use
/// (`tests/src/python.rs`, `tests/src/javascript.rs`); returns each one's
/// name and path. A missing or different tool fails, naming how to install
/// it.
fn build_components(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    check_componentize_py()?;
    check_componentize_js(root)?;
    std::thread::scope(|scope| {
        let builds: Vec<_> = COMPONENT_BUILDS
            .iter()
            .map(|b| scope.spawn(move || build_component(root, b)))
            .collect();
        builds
            .into_iter()
            .map(|b| b.join().expect("a build thread"))
            .collect()
    })
}

/// Builds `b` unless a build of the same inputs is kept; returns its name
/// and path.
fn build_component(root: &Path, b: &ComponentBuild) -> anyhow::Result<(String, PathBuf)> {
    let built = match b.language {
        Language::Python => build_python(root, b),
        Language::JavaScript => build_javascript(root, b),
        Language::Rust => unreachable!("Rust plugins are built with cargo"),
    }
    .with_context(|| format!("build the benchmark plugin {}", b.name))?;
    Ok((b.name.to_string(), built))
}

/// `componentize-py -d wit -w handler componentize -p python-sdk/src -p
/// FOLDER app -o NAME.wasm`, in FOLDER, kept in `target/python-wasm/<digest>`
/// (the digest as the tests compute it: they share `payment-py`).
fn build_python(root: &Path, b: &ComponentBuild) -> Result<PathBuf, component_cache::Error> {
    let version = evhost::plugin_build::COMPONENTIZE_PY_VERSION;
    let digest = component_cache::digest(
        root,
        &[version, b.name],
        &["python-sdk/src", b.folder, "wit"],
        &["__pycache__"],
    )?;
    component_cache::cached(root, "python-wasm", &digest, b.name, |out| {
        let app = root.join(b.folder);
        let mut cmd = Command::new("componentize-py");
        cmd.current_dir(&app)
            .arg("-d")
            .arg(root.join("wit"))
            .args(["-w", "handler", "componentize", "-p"])
            .arg(root.join("python-sdk/src"))
            .arg("-p")
            .arg(&app)
            .args(["app", "-o"])
            .arg(out);
        component_cache::run_build(cmd, b.name, "componentize-py", INSTALL_PY)
    })
}

/// `FOLDER/app.js` built by [`component_cache::componentize_js`] (from the
/// workspace's root, which componentize-js maps into the build: the plugins
/// import the SDK by its path), kept in `target/js-wasm/<digest>`.
fn build_javascript(root: &Path, b: &ComponentBuild) -> Result<PathBuf, component_cache::Error> {
    let version = evhost::plugin_build::COMPONENTIZE_JS_VERSION;
    let entry = format!("{}/app.js", b.folder);
    let digest = component_cache::digest(
        root,
        &[version, b.name, &entry],
        &["js-sdk/src", b.folder, "wit"],
        &["node_modules"],
    )?;
    component_cache::cached(root, "js-wasm", &digest, b.name, |out| {
        component_cache::componentize_js(root, &entry, b.name, out, false)
    })
}

/// Fails unless `componentize-py --version` is the release the SDK is built
/// with.
fn check_componentize_py() -> anyhow::Result<()> {
    let wanted = evhost::plugin_build::COMPONENTIZE_PY_VERSION;
    let output = Command::new("componentize-py")
        .arg("--version")
        .output()
        .with_context(|| {
            format!("componentize-py is needed to build the Python benchmark plugins: {INSTALL_PY}")
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().last().unwrap_or_default();
    if !output.status.success() || version != wanted {
        bail!(
            "componentize-py {wanted} builds the Python benchmark plugins, and `componentize-py \
             --version` says {:?} ({}): {INSTALL_PY}",
            text.trim(),
            output.status
        );
    }
    Ok(())
}

/// Fails unless Node.js runs and the componentize-js under
/// `js-sdk/node_modules` is the release the SDK is built with.
fn check_componentize_js(root: &Path) -> anyhow::Result<()> {
    let wanted = evhost::plugin_build::COMPONENTIZE_JS_VERSION;
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        bail!(
            "Node.js (`node`) is needed to build the JavaScript benchmark plugins ({}); \
             then componentize-js: {INSTALL_JS}",
            match node {
                Ok(o) => format!("`node --version` failed: {}", o.status),
                Err(e) => e.to_string(),
            }
        );
    }
    let manifest = root.join("js-sdk/node_modules/@bytecodealliance/componentize-js/package.json");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "componentize-js is needed to build the JavaScript benchmark plugins, and {} \
             cannot be read: {INSTALL_JS}",
            manifest.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON: {INSTALL_JS}", manifest.display()))?;
    let version = json["version"].as_str().unwrap_or_default();
    if version != wanted {
        bail!(
            "componentize-js {version:?} is installed in js-sdk/node_modules, the JavaScript \
             benchmark plugins are built with {wanted}: {INSTALL_JS}"
        );
    }
    Ok(())
}

fn field_ms(json: &serde_json::Value, name: &str) -> f64 {
    json["fields"][name].as_f64().unwrap_or(f64::NAN)
}

/// Load, reload and memory figures.
fn extras(url: &str, plugins: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let cache = tempfile::tempdir()?;
    let mut cold = HostProcess::start(url, plugins, &["payment"], "", Some(cache.path()))?;
    let loaded = cold
        .seen
        .iter()
        .find(|l| l.contains("plugin loaded"))
        .cloned()
        .unwrap_or_default();
    let loaded: serde_json::Value = serde_json::from_str(&loaded).unwrap_or_default();
    out.push((
        "payment load, cold compile (ms)".into(),
        format!("{:.1}", field_ms(&loaded, "compile_ms")),
    ));
    cold.stop();
    let warm = HostProcess::start(url, plugins, &["payment"], "", Some(cache.path()))?;
    let loaded = warm
        .seen
        .iter()
        .find(|l| l.contains("plugin loaded"))
        .cloned()
        .unwrap_or_default();
    let loaded: serde_json::Value = serde_json::from_str(&loaded).unwrap_or_default();
    out.push((
        "payment load, restart with the compiled-code cache (ms)".into(),
        format!("{:.1}", field_ms(&loaded, "compile_ms")),
    ));
    drop(warm);

    // Reload: a manifest change swaps a new version in.
    let dir = tempfile::tempdir()?;
    std::fs::copy(plugins.join("noop.wasm"), dir.path().join("noop.wasm"))?;
    let mut host = HostProcess::start_dir(url, dir.path(), None)?;
    let mut swaps = Vec::new();
    for i in 0..5 {
        std::fs::write(
            dir.path().join("noop.toml"),
            format!("[config]\nround = {i}\n"),
        )?;
        let line = host.wait_for("plugin reloaded")?;
        swaps.push(field_ms(&line, "swap_ms"));
    }
    swaps.sort_by(f64::total_cmp);
    out.push((
        "hot-reload swap, median of 5 (ms)".into(),
        format!("{:.3}", swaps[2]),
    ));
    out.push((
        "host RSS, 1 plugin idle (MiB)".into(),
        format!("{:.1}", host.rss_kib() as f64 / 1024.0),
    ));
    drop(host);

    let dir = tempfile::tempdir()?;
    for i in 0..100 {
        std::fs::copy(
            plugins.join("noop.wasm"),
            dir.path().join(format!("noop{i}.wasm")),
        )?;
        std::fs::write(
            dir.path().join(format!("noop{i}.toml")),
            format!("subjects = [\"bench.idle.{i}\"]\n"),
        )?;
    }
    let host = HostProcess::start_dir(url, dir.path(), None)?;
    std::thread::sleep(Duration::from_secs(1));
    out.push((
        "host RSS, 100 plugins idle (MiB)".into(),
        format!("{:.1}", host.rss_kib() as f64 / 1024.0),
    ));
    Ok(out)
}

/// The host's default `[limits] concurrency` (`manifest_resolve.rs`): how
/// many messages the per-instance measure holds in flight at once.
const DEFAULT_CONCURRENCY: u64 = 16;

/// Messages sent to a spinner at once: more than [`DEFAULT_CONCURRENCY`],
/// because the host splits `concurrency` between its lanes (one per core),
/// each a member of the plugin's queue group, and nats-server hands each
/// message to one of them at random: with four times as many, every lane
/// gets its share.
const HOLD_MESSAGES: u64 = 4 * DEFAULT_CONCURRENCY;

/// The `memory_mb` values tried, smallest first, for the smallest with
/// which a noop loads and answers [`PROBE_REQUESTS`] requests.
const MEMORY_PROBES: [u32; 4] = [8, 16, 32, 64];

/// Requests a noop must answer under a `memory_mb` probe.
const PROBE_REQUESTS: usize = 500;

/// What a plugin in one language costs to start and to keep: one column of
/// the "Plugin size and start-up, per language" table. Measured with the
/// language's noop (`noop`, `noop-py`, `noop-js`) and spinner (`bench-spin`,
/// `spin-py`, `spin-js`) under the default `[limits]` unless said otherwise.
struct LanguageCost {
    language: Language,
    /// The noop's `.wasm`, in bytes.
    wasm_bytes: u64,
    /// `compile_ms` of `plugin loaded` with an empty compiled-code cache.
    cold_compile_ms: f64,
    /// The same on a restart, the code loaded from that cache.
    cached_load_ms: f64,
    /// Linear memories one instance makes (`memories` of `plugin loaded`).
    memories: u64,
    /// Host RSS, KiB, with the noop loaded (one warm instance) and idle.
    idle_rss_kib: u64,
    /// What holding messages in flight showed.
    held: Held,
    /// The noop's closed loop with the default isolation (`reuse`): msgs/s
    /// and host CPU per message.
    reuse: (f64, Duration),
    /// The same with `isolation = "message"`: a fresh instance per message.
    fresh: (f64, Duration),
    /// The smallest of [`MEMORY_PROBES`] with which the noop loads and
    /// answers; `None` when none does.
    smallest_memory_mb: Option<u32>,
}

/// The spinner with [`HOLD_MESSAGES`] messages sent at once, `concurrency`
/// of them computing, each in an instance of its own, until the time limit.
struct Held {
    /// Messages in flight at once (at most `concurrency`).
    in_flight: u64,
    /// Host RSS, KiB, before the messages and with them in flight.
    idle_kib: u64,
    busy_kib: u64,
    /// Whether the host said it could not make an instance.
    failed: bool,
}

impl Held {
    /// Host RSS growth per instance made for the messages (all but the one
    /// made at load), in KiB.
    fn per_instance_kib(&self) -> Option<f64> {
        let made = self.in_flight.checked_sub(1).filter(|&n| n > 0)?;
        Some(self.busy_kib.saturating_sub(self.idle_kib) as f64 / made as f64)
    }
}

impl Bench {
    /// [`LanguageCost`] for Rust, Python and JavaScript.
    async fn language_costs(&self) -> anyhow::Result<Vec<LanguageCost>> {
        let mut costs = Vec::new();
        for language in Language::ALL {
            let cost = self
                .language_cost(language)
                .await
                .with_context(|| format!("measure what a {} plugin costs", language.name()))?;
            eprint!("{}", language_table(std::slice::from_ref(&cost)));
            costs.push(cost);
        }
        Ok(costs)
    }

    /// Measures [`LanguageCost`] for `language`, every host of it sharing
    /// one compiled-code cache, empty at first.
    async fn language_cost(&self, language: Language) -> anyhow::Result<LanguageCost> {
        let noop = format!("noop{}", language.suffix());
        let wasm = self.plugins.join(format!("{noop}.wasm"));
        let wasm_bytes = std::fs::metadata(&wasm)
            .with_context(|| format!("read {}", wasm.display()))?
            .len();
        let cache = tempfile::tempdir()?;
        let cold = HostProcess::start(&self.url, &self.plugins, &[&noop], "", Some(cache.path()))?;
        let loaded = cold.loaded()?;
        let (cold_compile_ms, memories) = (
            field_ms(&loaded, "compile_ms"),
            loaded["fields"]["memories"].as_u64().unwrap_or(0),
        );
        drop(cold);
        // The RSS of a restarted host, which loaded the code from the cache
        // (a host that compiled keeps some of the compiler's memory).
        let cached =
            HostProcess::start(&self.url, &self.plugins, &[&noop], "", Some(cache.path()))?;
        let cached_load_ms = field_ms(&cached.loaded()?, "compile_ms");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_kib = cached.rss_kib();
        drop(cached);
        let reuse = self.noop_throughput(&noop, "", cache.path()).await?;
        let fresh = self
            .noop_throughput(&noop, "[limits]\nisolation = \"message\"\n", cache.path())
            .await?;
        let held = self.hold_in_flight(language, cache.path()).await?;
        let smallest_memory_mb = self.smallest_memory_mb(&noop, cache.path()).await?;
        Ok(LanguageCost {
            language,
            wasm_bytes,
            cold_compile_ms,
            cached_load_ms,
            memories,
            idle_rss_kib,
            held,
            reuse,
            fresh,
            smallest_memory_mb,
        })
    }

    /// The closed-loop rate of the noop `name` under `manifest` on core NATS
    /// (128-byte payloads, no reply subject, counted by the host's metrics)
    /// and the host's CPU time per message.
    async fn noop_throughput(
        &self,
        name: &str,
        manifest: &str,
        cache: &Path,
    ) -> anyhow::Result<(f64, Duration)> {
        let host = HostProcess::start(&self.url, &self.plugins, &[name], manifest, Some(cache))?;
        let publisher = async_nats::connect(&self.url).await?;
        let metrics = host.metrics;
        let progress = || handled(metrics);
        let warmup = Duration::from_secs(1);
        let (cpu_before, done_before) = (host.cpu_time(), progress().await);
        let (rate, _) = closed_loop(
            &publisher,
            "bench.noop",
            None,
            &Bytes::from(vec![b'x'; 128]),
            warmup + self.duration,
            warmup,
            &progress,
        )
        .await?;
        let done = progress().await.saturating_sub(done_before).max(1);
        let cpu =
            host.cpu_time().saturating_sub(cpu_before) / u32::try_from(done).unwrap_or(u32::MAX);
        Ok((rate, cpu))
    }

    /// Sends [`HOLD_MESSAGES`] messages at once to `language`'s spinner
    /// under the default `[limits]`, and reads the host's RSS before and once
    /// `concurrency` of them are in flight, each computing in an instance of
    /// its own (a guest that computes yields its thread at every epoch tick,
    /// and the next message takes another instance).
    async fn hold_in_flight(&self, language: Language, cache: &Path) -> anyhow::Result<Held> {
        let spinner = match language {
            Language::Rust => "bench_spin",
            Language::Python => "spin-py",
            Language::JavaScript => "spin-js",
        };
        let mut host = HostProcess::start(&self.url, &self.plugins, &[spinner], "", Some(cache))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_kib = host.rss_kib();
        let client = async_nats::connect(&self.url).await?;
        for _ in 0..HOLD_MESSAGES {
            client.publish("bench.spin", Bytes::new()).await?;
        }
        client.flush().await?;
        let metrics = host.metrics;
        poll::until(
            Duration::from_secs(3),
            Duration::from_millis(20),
            || async { (in_flight(metrics).await >= DEFAULT_CONCURRENCY).then_some(()) },
        )
        .await;
        // Each message's instance made and computing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let in_flight = in_flight(metrics).await;
        let busy_kib = host.rss_kib();
        host.read_log();
        let failed = host.seen.iter().any(|l| l.contains("cannot instantiate"));
        Ok(Held {
            in_flight,
            idle_kib,
            busy_kib,
            failed,
        })
    }

    /// The smallest of [`MEMORY_PROBES`] as `memory_mb` with which the noop
    /// `name` loads and answers [`PROBE_REQUESTS`] requests in turn.
    async fn smallest_memory_mb(&self, name: &str, cache: &Path) -> anyhow::Result<Option<u32>> {
        let client = async_nats::connect(&self.url).await?;
        for mb in MEMORY_PROBES {
            let manifest = format!("[limits]\nmemory_mb = {mb}\n");
            let host =
                match HostProcess::start(&self.url, &self.plugins, &[name], &manifest, Some(cache))
                {
                    Ok(host) => host,
                    Err(e) => {
                        eprintln!("{name} with memory_mb = {mb}: {e:#}");
                        continue;
                    }
                };
            let mut answered = 0;
            for _ in 0..PROBE_REQUESTS {
                let request = client.request("bench.noop", Bytes::from_static(b"x"));
                match tokio::time::timeout(Duration::from_secs(5), request).await {
                    Ok(Ok(_)) => answered += 1,
                    _ => break,
                }
            }
            drop(host);
            if answered == PROBE_REQUESTS {
                return Ok(Some(mb));
            }
            eprintln!(
                "{name} with memory_mb = {mb}: {answered} of {PROBE_REQUESTS} requests answered"
            );
        }
        Ok(None)
    }
}

/// The per-language costs as a markdown table, a column per language.
fn language_table(costs: &[LanguageCost]) -> String {
    let mut t = String::from("| measure |");
    for c in costs {
        t.push_str(&format!(" {} |", c.language.name()));
    }
    t.push_str("\n|---|");
    t.push_str(&"---:|".repeat(costs.len()));
    t.push('\n');
    for (measure, value) in LANGUAGE_MEASURES {
        t.push_str(&format!("| {measure} |"));
        for c in costs {
            t.push_str(&format!(" {} |", value(c)));
        }
        t.push('\n');
    }
    t
}

/// KiB as MiB, to one place.
fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// A row of the per-language table: what it shows, and its cell.
type LanguageMeasure = (&'static str, fn(&LanguageCost) -> String);

/// The rows of the per-language table.
const LANGUAGE_MEASURES: [LanguageMeasure; 12] = [
    ("noop `.wasm` (MB)", |c| {
        format!("{:.2}", c.wasm_bytes as f64 / 1e6)
    }),
    ("cold compile, `compile_ms` (s)", |c| {
        format!("{:.1}", c.cold_compile_ms / 1000.0)
    }),
    ("restart, load from the compiled-code cache (ms)", |c| {
        format!("{:.0}", c.cached_load_ms)
    }),
    ("linear memories per instance", |c| c.memories.to_string()),
    ("host RSS, noop loaded and idle (MiB)", |c| {
        mib(c.idle_rss_kib as f64)
    }),
    (
        "host RSS per further instance, messages held in flight (MiB)",
        |c| {
            c.held
                .per_instance_kib()
                .map(|kib| format!("{:.2}", kib / 1024.0))
                .unwrap_or_else(|| "-".into())
        },
    ),
    (
        "messages in flight at once under the defaults (`concurrency` 16)",
        |c| {
            let failed = if c.held.failed {
                ", an instance failed"
            } else {
                ""
            };
            format!("{}{failed}", c.held.in_flight)
        },
    ),
    ("noop msgs/s, reuse (defaults)", |c| {
        format!("{:.0}", c.reuse.0)
    }),
    ("noop msgs/s, isolation = message", |c| {
        format!("{:.0}", c.fresh.0)
    }),
    ("noop host CPU µs/msg, reuse / message", |c| {
        format!("{} / {}", micros(Some(c.reuse.1)), micros(Some(c.fresh.1)))
    }),
    ("a fresh instance: CPU µs/msg, message − reuse", |c| {
        format!(
            "{:.1}",
            (c.fresh.1.as_secs_f64() - c.reuse.1.as_secs_f64()) * 1e6
        )
    }),
    (
        "smallest `memory_mb` of 8/16/32/64 that serves the noop",
        |c| {
            c.smallest_memory_mb
                .map(|mb| mb.to_string())
                .unwrap_or_else(|| "none".into())
        },
    ),
];

/// What the per-language table measures, for BENCHMARKS.md and the console.
fn language_notes() -> String {
    format!(
        "Each language's noop (`noop`, `noop-py`, `noop-js`), each host with a compiled-code cache of\n\
         its own, empty at first, and the default `[limits]` (`memory_mb = 64`, `concurrency =\n\
         {DEFAULT_CONCURRENCY}`, `isolation = \"reuse\"`) unless said. Cold compile is `compile_ms` of the host's\n\
         `plugin loaded` line with the empty cache (the engine compiles on every core); a restart loads\n\
         the code from the cache. The host's RSS idle is that restarted host's, one second after it\n\
         loaded the noop (one warm instance). The RSS per further instance is the host's RSS with up to\n\
         `concurrency` messages in flight at once, less its RSS idle, over the instances made for them\n\
         (all but the one made at load): the language's spinner (`bench-spin`, `spin-py`, `spin-js`: the\n\
         same runtime and SDK as the noop) computes on each message until the time limit, yielding its\n\
         thread at every epoch tick, so each message holds an instance of its own; {HOLD_MESSAGES} messages are sent\n\
         at once, as the host splits `concurrency` between its lanes (one per core, each taking its share\n\
         of the queue group's messages). It counts what an instance touches (linear memory, stack, store).\n\
         The noop's rates are closed loops on core NATS, 128-byte payloads, no reply subject; \"a fresh\n\
         instance\" is the difference in host CPU per message between `isolation = \"message\"` and\n\
         `reuse`. The `memory_mb` probe loads the noop with each value in turn and sends it {PROBE_REQUESTS} requests\n\
         one after the other; the smallest with which it loads and answers them all is shown."
    )
}

/// For each case (the same position in every round), the round whose rate
/// is the median (for an even number of rounds, the upper of the middle two).
fn medians(rounds: Vec<Vec<Row>>) -> Vec<Row> {
    let cases = rounds.first().map_or(0, Vec::len);
    (0..cases)
        .map(|i| {
            let mut runs: Vec<&Row> = rounds.iter().map(|round| &round[i]).collect();
            runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            runs[runs.len() / 2].clone()
        })
        .collect()
}

/// The whole machine's CPU time so far (all cores, in clock ticks), from
/// the first line of `/proc/stat`.
#[derive(Clone, Copy)]
struct MachineCpu {
    idle: u64,
    total: u64,
}

impl MachineCpu {
    fn now() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        let total = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
        Some(MachineCpu { idle, total })
    }
}

/// The share of the machine's CPU time between `before` and `after` that was idle.
fn idle_share(before: Option<MachineCpu>, after: Option<MachineCpu>) -> Option<f64> {
    let (before, after) = (before?, after?);
    let total = after.total.checked_sub(before.total).filter(|&t| t > 0)?;
    Some(after.idle.saturating_sub(before.idle) as f64 / total as f64)
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

/// A CPU time per message, in µs to two places; empty when not measured.
fn micros(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64() * 1e6))
        .unwrap_or_default()
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| mode | payload | case | msgs/s | ratio | evhost CPU µs/msg | latency µs at 10 000 msgs/s: p50 / p99 / p99.9 | half load msgs/s | latency µs at half load: p50 / p99 / p99.9 | evhost CPU µs/msg at half load | machine idle at half load | p99 added µs: light / half |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let triple = |l: Option<[Duration; 3]>| match l {
        Some([a, b, c]) => format!("{} / {} / {}", us(a), us(b), us(c)),
        None => "-".into(),
    };
    let added = |l: Option<[Duration; 3]>, base: Option<[Duration; 3]>| match (l, base) {
        (Some(l), Some(b)) => format!("{:.0}", (l[1].as_secs_f64() - b[1].as_secs_f64()) * 1e6),
        _ => "-".into(),
    };
    for r in rows {
        let base = match r.case {
            Case::Echo | Case::Noop(_) | Case::NoopFresh => Some(Case::Bare),
            Case::Payment(_) => Some(Case::Native),
            Case::Bare | Case::Native => None,
        }
        .and_then(|case| {
            rows.iter()
                .find(|x| x.mode == r.mode && x.payload == r.payload && x.case == case)
        });
        // echo's rate is of answers, which the bare client does not make.
        let ratio = base.filter(|_| r.case != Case::Echo).map(|b| {
            let name = match r.case {
                Case::Payment(_) => "d",
                _ => "c",
            };
            let suffix = match r.case {
                Case::Noop(l) | Case::Payment(l) => l.suffix(),
                _ => "",
            };
            let base = if matches!(r.case, Case::Payment(_)) {
                "b"
            } else {
                "a"
            };
            format!("{name}{suffix}/{base} = {:.2}", r.rate / b.rate)
        });
        // At half load, only against a baseline sampled at the same rate
        // (the Python and JavaScript rows have none).
        let added = base.map(|b| {
            let same_rate = (r.latency_rate - b.latency_rate).abs() < 1.0;
            format!(
                "{} / {}",
                added(r.light_latency, b.light_latency),
                if same_rate {
                    added(r.latency, b.latency)
                } else {
                    "-".into()
                }
            )
        });
        t.push_str(&format!(
            "| {} | {} B | {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
            if r.mode == Mode::Core {
                "core"
            } else {
                "jetstream"
            },
            r.payload,
            r.case.label(),
            r.rate,
            ratio.unwrap_or_default(),
            micros(r.host_cpu),
            triple(r.light_latency),
            r.latency_rate,
            triple(r.latency),
            micros(r.paced_cpu),
            r.paced_idle
                .map(|i| format!("{:.0} %", i * 100.0))
                .unwrap_or_default(),
            added.unwrap_or_default(),
        ));
    }
    t
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--native-handler") {
        return native_handler_process(&args[i + 1..]).await;
    }
    NATIVE_IN_PROCESS.store(
        args.iter().any(|a| a == "--native-in-process"),
        Ordering::Relaxed,
    );
    let smoke = args.iter().any(|a| a == "--smoke");
    // `--capabilities`: only the HTTP and key-value rows; writes nothing.
    // With `--rounds N`, N rounds in a row; with `--compare OTHER_EVHOST`,
    // each round measures the other build's host right after this one's.
    let capabilities_only = args.iter().any(|a| a == "--capabilities");
    // `--languages`: only the per-language size and start-up table; writes
    // nothing.
    let languages_only = args.iter().any(|a| a == "--languages");
    let duration = args
        .iter()
        .position(|a| a == "--duration")
        .and_then(|i| args.get(i + 1))
        .and_then(|d| d.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(if smoke {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(10)
        });
    // `--only core-128` (or `jetstream-1024`, `core`, ...) runs just those
    // configurations and writes nothing; `--only core-128:payment` runs one
    // case of one configuration (bare, native, noop, fresh, payment): for
    // profiling.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // `--rounds N`: measure every case N times, interleaved, and report each
    // case's median round (the machine's noise moves single runs a lot).
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    // `--latency-rate N` (with `--only CONFIG:CASE`): take latency at N
    // messages/s instead of half the measured rate.
    let latency_rate = args
        .iter()
        .position(|a| a == "--latency-rate")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse::<f64>().ok());
    // `--compare OTHER_EVHOST`: alternate rounds between this build and
    // another; print both tables, write nothing.
    if let Some(other) = args
        .iter()
        .position(|a| a == "--compare")
        .and_then(|i| args.get(i + 1))
    {
        let other = std::fs::canonicalize(other).with_context(|| format!("--compare {other}"))?;
        COMPARE.set(other).expect("set once");
    }
    let comparing = COMPARE.get().is_some();
    let (only, only_case) = match only.as_deref().map(|o| o.split_once(':')) {
        Some(Some((label, case))) => (Some(label.to_string()), Some(Case::named(case)?)),
        _ => (only, None),
    };
    let server = NatsServer::start(evhost_nats_process::Options::default())?;
    let plugins = build_plugins()?;
    let bench = Bench {
        url: server.url(),
        duration,
        smoke,
        plugins,
        epoch: Instant::now(),
    };
    if capabilities_only {
        let rows = bench.capability_rows(rounds).await?;
        println!("{}\n\n{}", capability_notes(), capability_table(&rows));
        return Ok(());
    }
    if languages_only {
        let costs = bench.language_costs().await?;
        println!("{}\n\n{}", language_notes(), language_table(&costs));
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut compared_rows = Vec::new();
    for mode in [Mode::Core, Mode::JetStream] {
        for size in [128, 1024] {
            let label = format!(
                "{}-{size}",
                if mode == Mode::Core {
                    "core"
                } else {
                    "jetstream"
                }
            );
            if only
                .as_ref()
                .is_some_and(|o| !label.starts_with(o.as_str()))
            {
                continue;
            }
            if let Some(case) = only_case {
                let row = bench.run(mode, case, size, latency_rate).await?;
                eprint!("{}", table(std::slice::from_ref(&row)));
                rows.push(row);
                continue;
            }
            // Each round measures every case once, evhost first: each pair's
            // latency is taken at the same rate, half of what evhost
            // sustained. With several rounds, each case reports its median.
            // With `--compare`, rounds alternate between the two builds.
            let mut rounds_run = Vec::with_capacity(rounds);
            let mut compared_rounds = Vec::with_capacity(rounds);
            for round in 0..rounds * if comparing { 2 } else { 1 } {
                let other_turn = comparing && round % 2 == 1;
                COMPARE_TURN.store(other_turn, Ordering::Relaxed);
                let noop = bench
                    .run(mode, Case::Noop(Language::Rust), size, None)
                    .await?;
                let bare = bench
                    .run(mode, Case::Bare, size, Some(noop.latency_rate))
                    .await?;
                // On core NATS, a bare client answering at noop's rate: how
                // much of (c) − (a) is the reply's hop, whatever answers.
                let echo = if mode == Mode::Core {
                    Some(
                        bench
                            .run(mode, Case::Echo, size, Some(noop.latency_rate))
                            .await?,
                    )
                } else {
                    None
                };
                let payment = bench
                    .run(mode, Case::Payment(Language::Rust), size, None)
                    .await?;
                let native = bench
                    .run(mode, Case::Native, size, Some(payment.latency_rate))
                    .await?;
                let mut group = vec![bare];
                group.extend(echo);
                group.extend([native, noop, payment]);
                if mode == Mode::Core && size == 128 {
                    group.push(bench.run(mode, Case::NoopFresh, size, None).await?);
                    // The same handlers in Python and JavaScript, in the
                    // same round as the Rust ones (not when comparing two
                    // builds of the host: their guests' costs are the same).
                    for case in LANGUAGE_CASES.into_iter().filter(|_| !comparing) {
                        group.push(bench.run(mode, case, size, None).await?);
                    }
                }
                if comparing {
                    eprintln!(
                        "{}",
                        if other_turn {
                            "the other build:"
                        } else {
                            "this build:"
                        }
                    );
                }
                eprint!("{}", table(&group));
                if other_turn {
                    compared_rounds.push(group);
                } else {
                    rounds_run.push(group);
                }
            }
            rows.extend(medians(rounds_run));
            if comparing {
                compared_rows.extend(medians(compared_rounds));
            }
        }
    }
    let table = table(&rows);
    if let Some(other) = COMPARE.get() {
        println!(
            "This build ({}):\n\n{table}\nThe other build ({}):\n\n{}",
            env!("CARGO_BIN_EXE_evhost"),
            other.display(),
            self::table(&compared_rows)
        );
        return Ok(());
    }
    println!("{table}");
    if only.is_some() {
        return Ok(());
    }
    let capability_table = capability_table(&bench.capability_rows(1).await?);
    println!("{capability_table}");
    if smoke {
        println!("smoke run: messages flowed in every case");
        return Ok(());
    }
    let extras = extras(&bench.url, &bench.plugins)?;
    let mut extra_table = String::from("| measure | value |\n|---|---:|\n");
    for (k, v) in &extras {
        extra_table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{extra_table}");
    let language_table = language_table(&bench.language_costs().await?);
    println!("{language_table}");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let doc = format!(
        "# Benchmarks\n\nMeasured {date} on this machine ({cores} cores, {:.1} GiB memory), {}, with\n\
         `RUST_BACKTRACE` unset:\n\n    cargo bench -p evhost --bench overhead -- --duration {}{}\n\n\
         Each throughput figure is sustained over {} s after a warm-up, closed loop (at most {WINDOW} messages\n\
         outstanding). \"evhost CPU\" is the host process's user + system CPU time per message over that run.\n\
         Latency is publish → output received over 5 s at a fixed rate, from a publisher that sends what\n\
         is due every 100 µs: once at 10 000 msgs/s (light load), once at half of what evhost sustained in\n\
         that configuration (the same rate for the baseline it is compared with). \"p99 added\" is the\n\
         evhost case's p99 minus its baseline's, (c) − (a) and (d) − (b). On core NATS, noop answers a\n\
         reply subject in the latency runs (there is nothing else to time), so its CPU at half load\n\
         includes publishing one reply per message, which its closed-loop figure does not; (a″) is a\n\
         bare client answering the same way at the same rates (its msgs/s are answers received, its\n\
         \"p99 added\" is (a″) − (a): the reply's hop through nats-server with no host). \"Machine\n\
         idle\" is the share of the machine's CPU time (all cores) left idle during the half-load\n\
         run: near 0 %, the host, nats-server and the benchmark's own publisher and counter queue for\n\
         the cores, and the half-load latency is that queue.\n\
         On JetStream, \"completed\" means acked (the consumer's ack floor); (a) and (b) use a bare durable\n\
         pull consumer with explicit acks. A message read from a stream carries no reply subject, so on\n\
         JetStream noop has no output to time and its latency cells are empty; (a) there is timed to\n\
         its receipt and payment to its output. evhost runs the plugin with `concurrency = 256`, default\n\
         isolation (`reuse`).\n\
         On core NATS with 128-byte payloads, (c-py) and (c-js) are noop, (d-py) and (d-js) payment, written\n\
         in Python (`noop-py`, `plugins/payment-py`; componentize-py {}, CPython) and JavaScript (`noop-js`,\n\
         `payment-js`; componentize-js {}, StarlingMonkey), measured in the same rounds as the Rust ones with\n\
         the same manifest and events, counted the same way (noop by the host's metrics, payment by its\n\
         `payments.payment.completed` outputs). Their latency at 10 000 msgs/s is left out where that is more\n\
         than half of what they sustain, and at half load they have no baseline sampled at their rate.\n\n{table}\n## Capabilities: HTTP and key-value per message\n\n{}\n\n\
         {capability_table}\n## Load, reload and memory\n\n{extra_table}\n\
         ## Plugin size and start-up, per language\n\n{}\n\n{language_table}",
        mem as f64 / 1024.0 / 1024.0,
        if rounds == 1 {
            "one run".to_string()
        } else {
            format!("one run of {rounds} interleaved rounds, each case's median round shown")
        },
        duration.as_secs(),
        if rounds == 1 {
            String::new()
        } else {
            format!(" --rounds {rounds}")
        },
        duration.as_secs(),
        evhost::plugin_build::COMPONENTIZE_PY_VERSION,
        evhost::plugin_build::COMPONENTIZE_JS_VERSION,
        capability_notes(),
        language_notes(),
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("BENCHMARKS.md");
    // The analysis written by hand below the marker survives a new run.
    let kept = std::fs::read_to_string(&path)
        .ok()
        .and_then(|old| old.find(NOTES_MARKER).map(|at| old[at..].to_string()))
        .unwrap_or_else(|| format!("{NOTES_MARKER}\n"));
    std::fs::write(&path, format!("{doc}\n{kept}"))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
