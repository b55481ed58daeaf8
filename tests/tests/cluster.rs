//! A NATS cluster as production runs one: three `nats-server` processes
//! clustered on loopback with JetStream, every stream replicated on all three
//! (created here with `num_replicas = 3`), and three hosts given the server
//! list.
//!
//! - A host run with `--replicas 3` creates every stream and bucket it makes
//!   on all three servers, and uses a stream made before with one replica as
//!   it is, warning once.
//! - A server and a host are killed while orders flow: every order's answer
//!   is stored once, nothing is dead-lettered, and the hosts left serve.
//! - A plugin upgrade is rolled across the three hosts under load, as the
//!   README's "Rolling a plugin upgrade across hosts" says: nothing is lost
//!   or handled twice, and the new version serves on every host.
//!
//! Outputs are read back from a stream that captures them, so a test client
//! riding out the killed server misses nothing. The two tests take turns:
//! six `nats-server`s and six hosts at once on a two-core machine would slow
//! the clusters' elections to a crawl.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream};
use evhost_tests::*;
use futures::{StreamExt as _, TryFutureExt as _};
use serde_json::Value;

/// One cluster test at a time.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a test waits for every output once the load has stopped: a
/// killed host's messages come back after `ack_wait`, and a killed server's
/// streams and consumers elect new leaders first.
const SETTLE: Duration = Duration::from_secs(40);

/// A stream `name` capturing `subject`.
fn capturing(name: &str, subject: &str) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        ..Default::default()
    }
}

/// The stream of key-value bucket `bucket`, laid out as evhost lays out a
/// dedup bucket it creates (`kv_bucket.rs`), entries kept an hour.
fn bucket(bucket: &str) -> stream::Config {
    stream::Config {
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(3600),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120),
        ..capturing(&format!("KV_{bucket}"), &format!("$KV.{bucket}.>"))
    }
}

/// Creates `configs` with a replica on every server of `cluster`.
async fn streams(cluster: &Cluster, js: &jetstream::Context, configs: Vec<stream::Config>) {
    for config in configs {
        cluster.create_stream(js, config).await;
    }
}

/// Publishes through JetStream with `Nats-Msg-Id` = `id` and waits for the
/// ack, trying again (the same id, so the stream keeps one copy) while the
/// cluster elects a leader or the client reconnects.
async fn publish_durably(js: &jetstream::Context, subject: &str, id: &str, payload: Vec<u8>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let error = match js
            .publish_with_headers(subject.to_string(), headers, payload.clone().into())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(_) => return,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "publishing {id} to {subject} failed for {WAIT:?}: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `attempt` until it succeeds, for at most [`WAIT`]: the cluster
/// does not answer while a stream elects a leader or the client reconnects.
async fn retrying<T, F>(
    what: &str,
    context: &dyn Fn() -> String,
    mut attempt: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => assert!(
                Instant::now() < deadline,
                "{what} failed for {WAIT:?}: {error}\n{}",
                context()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stream read from its first message on, one message at a time from the
/// stream's leader, and only what was added since the last read: no consumer
/// of the test's own, which the cluster could place on the killed server.
struct StreamReader {
    name: String,
    messages: Vec<StreamMessage>,
}

impl StreamReader {
    fn new(name: &str) -> Self {
        StreamReader {
            name: name.to_string(),
            messages: Vec::new(),
        }
    }

    /// Reads what the stream has added since the last call; returns every
    /// message read so far.
    async fn catch_up(
        &mut self,
        js: &jetstream::Context,
        context: &dyn Fn() -> String,
    ) -> &[StreamMessage] {
        let name = &self.name;
        let (stream, last) = retrying(
            &format!("asking stream {name} its size"),
            context,
            || async {
                let mut stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
                let last = stream
                    .info()
                    .await
                    .map_err(|e| e.to_string())?
                    .state
                    .last_sequence;
                Ok((stream, last))
            },
        )
        .await;
        for sequence in self.messages.len() as u64 + 1..=last {
            let message = retrying(
                &format!("reading {name}'s message {sequence}"),
                context,
                || stream.get_raw_message(sequence).map_err(|e| e.to_string()),
            )
            .await;
            self.messages.push(message);
        }
        &self.messages
    }
}

/// How many messages stream `name` holds now.
async fn count(js: &jetstream::Context, name: &str, context: &dyn Fn() -> String) -> u64 {
    retrying(
        &format!("asking stream {name} its size"),
        context,
        || async {
            let mut stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
            let info = stream.info().await.map_err(|e| e.to_string())?;
            Ok(info.state.messages)
        },
    )
    .await
}

/// What a test checks of the outputs: which ids got none, which got more
/// than one, which were never sent.
#[derive(Debug, Default)]
struct Tally {
    missing: Vec<String>,
    doubled: Vec<(String, usize)>,
    strangers: Vec<String>,
}

impl Tally {
    /// Tallies the outputs' ids against the ids sent.
    fn of<'a>(sent: &[String], outputs: impl IntoIterator<Item = &'a str>) -> Tally {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for id in outputs {
            *seen.entry(id).or_default() += 1;
        }
        let missing = sent
            .iter()
            .filter(|id| !seen.contains_key(id.as_str()))
            .cloned()
            .collect();
        let mut doubled: Vec<(String, usize)> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (id.to_string(), *n))
            .collect();
        doubled.sort();
        let sent: std::collections::HashSet<&str> = sent.iter().map(String::as_str).collect();
        let mut strangers: Vec<String> = seen
            .keys()
            .filter(|id| !sent.contains(*id))
            .map(|id| id.to_string())
            .collect();
        strangers.sort();
        Tally {
            missing,
            doubled,
            strangers,
        }
    }

    fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.doubled.is_empty() && self.strangers.is_empty()
    }

    fn describe(&self, sent: usize) -> String {
        format!(
            "of {sent} sent, {} got no output (first: {:?}), {} got more than one (first: {:?}), \
             {} outputs answer nothing sent (first: {:?})",
            self.missing.len(),
            self.missing.iter().take(5).collect::<Vec<_>>(),
            self.doubled.len(),
            self.doubled.iter().take(5).collect::<Vec<_>>(),
            self.strangers.len(),
            self.strangers.iter().take(5).collect::<Vec<_>>(),
        )
    }
}

/// Waits until every order sent has its answer in `outputs` (stream `OUT`)
/// or a dead letter in stream `DLQ`, then looks once more for a late
/// duplicate. Fails on any dead letter, saying which orders and why; else
/// returns the tally of the answers.
async fn settled(
    js: &jetstream::Context,
    outputs: &mut StreamReader,
    sent: &[String],
    context: impl Fn() -> String,
) -> Tally {
    let mut dead = StreamReader::new("DLQ");
    let deadline = Instant::now() + SETTLE;
    loop {
        let answered: Vec<String> = outputs
            .catch_up(js, &context)
            .await
            .iter()
            .map(echoed_event_id)
            .collect();
        let tally = Tally::of(sent, answered.iter().map(String::as_str));
        let letters = dead.catch_up(js, &context).await;
        let lettered: Vec<String> = letters.iter().map(echoed_event_id).collect();
        let unsettled: Vec<&String> = tally
            .missing
            .iter()
            .filter(|id| !lettered.contains(id))
            .collect();
        if unsettled.is_empty() {
            assert_no_dead_letters(letters, &context);
            // A late duplicate would be stored by now; look once more.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let answered: Vec<String> = outputs
                .catch_up(js, &context)
                .await
                .iter()
                .map(echoed_event_id)
                .collect();
            return Tally::of(sent, answered.iter().map(String::as_str));
        }
        assert!(
            Instant::now() < deadline,
            "orders neither answered nor dead-lettered within {SETTLE:?}: {}; {} dead letters\n{}",
            tally.describe(sent.len()),
            letters.len(),
            context()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fails when there are dead letters: how many, of which orders, by kind
/// and error.
fn assert_no_dead_letters(letters: &[StreamMessage], context: &dyn Fn() -> String) {
    if letters.is_empty() {
        return;
    }
    let mut causes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for letter in letters {
        let header = |name: &str| {
            letter
                .headers
                .get(name)
                .map_or_else(|| "?".to_string(), |v| v.as_str().to_string())
        };
        let cause = format!(
            "{} after {} attempts: {}",
            header("Evhost-Error-Kind"),
            header("Evhost-Attempts"),
            header("Evhost-Error")
        );
        causes
            .entry(cause)
            .or_default()
            .push(echoed_event_id(letter));
    }
    panic!(
        "{} orders dead-lettered: {:#?}\n{}",
        letters.len(),
        causes,
        context()
    );
}

/// A host with a `--metrics` listener, and that listener's address.
struct Served {
    host: Host,
    listen: String,
}

impl Served {
    /// Starts `evhost run` on `dir` against every server of `cluster`, and
    /// waits until it is ready.
    async fn start(dir: &std::path::Path, cluster: &Cluster) -> Served {
        let listen = format!("127.0.0.1:{}", free_port());
        let host = Host::start(dir, &cluster.urls(), &["--metrics", &listen]);
        host.wait_for_log("host ready", None, WAIT).await;
        Served { host, listen }
    }

    /// `plugin`'s entry in the host's `/plugins`.
    async fn entry(&self, plugin: &str) -> Value {
        let plugins = plugins_json(&self.listen, &self.host).await;
        plugin_entry(&plugins, plugin)
            .cloned()
            .unwrap_or_else(|| panic!("{plugin} not in /plugins: {plugins:#}"))
    }

    /// How many messages `plugin` has handled on this host.
    async fn handled(&self, plugin: &str) -> u64 {
        self.entry(plugin).await["counters"]["ok"]
            .as_u64()
            .unwrap_or_else(|| panic!("no counters.ok for {plugin}"))
    }

    /// How many messages `plugin` has dead-lettered on this host, of any kind.
    async fn dead_lettered(&self, plugin: &str) -> u64 {
        let entry = self.entry(plugin).await;
        entry["counters"]["dead_letters"]
            .as_object()
            .unwrap_or_else(|| panic!("no counters.dead_letters for {plugin}: {entry:#}"))
            .values()
            .filter_map(Value::as_u64)
            .sum()
    }

    /// Waits until `plugin` has handled more than `than` messages here.
    async fn wait_handled_more(&self, plugin: &str, than: u64, what: &str) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let handled = self.handled(plugin).await;
            if handled > than {
                return handled;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {plugin} handled {handled} messages, never more than {than}\n{}",
                self.host.log_report()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = http_get(&self.listen, "/readyz").await;
            if answer.as_ref().is_some_and(|(code, _)| *code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered 200; last: {answer:?}\n{}",
                self.host.log_report()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every host's log, for a failure message.
fn logs(hosts: &[Served]) -> String {
    hosts
        .iter()
        .map(|s| s.host.log_report())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The echo plugin on JetStream, fed orders: `IN` (made by the test) feeds
/// it, it sleeps `sleep_ms` a call (logging `echo: sleeping` as it starts)
/// and answers on `test.echo.out`, which `OUT` keeps.
fn echo_manifest(sleep_ms: u64, concurrency: usize, jetstream: &str) -> String {
    format!(
        "[config]\nsleep_ms = {sleep_ms}\n[limits]\nconcurrency = {concurrency}\n\
         [jetstream]\nstream = \"IN\"\n{jetstream}"
    )
}

/// Calls of echo on `host` (one `echo: sleeping` line each).
fn echo_calls(host: &Host) -> usize {
    host.find_logs(|l| l.message().is_some_and(|m| m.starts_with("echo: sleeping")))
        .len()
}

/// The order an echo answers: the `event_id` of the payload it echoed.
fn echoed_event_id(msg: &StreamMessage) -> String {
    let order: Value = serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
        panic!(
            "an echo that is not an order ({e}): {:?}",
            String::from_utf8_lossy(&msg.payload)
        )
    });
    order["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("an echo without event_id: {order}"))
        .to_string()
}

/// How many orders flow while a server and a host are killed.
const ORDERS: usize = 300;

/// Echo as an order handler that takes its time, so a host killed while
/// orders flow dies with orders in its hands: 50 ms a call, two at a time,
/// an unacked order back after two seconds, handled ids in the
/// `evhost-dedup` bucket (made by the test, on every server).
///
/// (`payment` handles an order in microseconds and has no setting to slow
/// it, so a `kill -9` would rarely catch one in flight.)
fn slow_echo_manifest() -> String {
    echo_manifest(50, 2, "ack_wait = \"2s\"\ndedup = \"json:/event_id\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_survive_a_killed_server_and_a_killed_host() {
    let _turn = CLUSTER.lock().await;
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let js = jetstream::new(client.clone());
    streams(
        &cluster,
        &js,
        vec![
            capturing("IN", "test.echo"),
            capturing("OUT", "test.echo.out"),
            capturing("DLQ", "dlq.>"),
            bucket("evhost-dedup"),
        ],
    )
    .await;
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", &slow_echo_manifest());
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(Served::start(&dir.path(), &cluster).await);
    }

    // Orders flow, paced, each stored in IN before the next.
    let sent: Vec<OrderCreated> = (0..ORDERS)
        .map(|i| OrderCreated::new(&format!("ord-{i:04}"), &format!("c-{}", i % 7)))
        .collect();
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (js, sent, published) = (js.clone(), sent.clone(), published.clone());
        tokio::spawn(async move {
            for order in &sent {
                publish_durably(&js, "test.echo", &order.event_id, order.to_bytes()).await;
                published.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let reached = |n: usize, what: &str| {
        let published = published.clone();
        let what = what.to_string();
        async move {
            eventually(
                &what,
                WAIT,
                || (published.load(Ordering::SeqCst) >= n).then_some(()),
                String::new,
            )
            .await
        }
    };

    // A third of the way: kill the server leading OUT, where the answers
    // are stored: until OUT has a new leader no host can store one.
    reached(ORDERS / 3, "a third of the orders published").await;
    let killed_server = cluster.stream_leader(&js, "OUT").await;
    cluster.stop(killed_server);

    // Two thirds of the way: kill -9 the first host seen starting an order
    // (it is then 50 ms from answering it). Not a host chosen beforehand: a
    // host whose consumer leader was on the killed server pulls nothing for
    // some seconds, and the others may take the rest meanwhile.
    reached(2 * ORDERS / 3, "two thirds of the orders published").await;
    let started: Vec<usize> = hosts.iter().map(|s| echo_calls(&s.host)).collect();
    let busy = eventually(
        "a host to start an order",
        WAIT,
        || {
            hosts
                .iter()
                .zip(&started)
                .position(|(s, n)| echo_calls(&s.host) > *n)
        },
        || logs(&hosts),
    )
    .await;
    let victim = hosts.remove(busy);
    victim.host.sigkill();
    victim.host.wait_exit(WAIT).await;

    publisher.await.expect("the publisher task");
    let report = || {
        format!(
            "killed server {} and host pid {}\n--- the killed host ---\n{}\n--- the others ---\n{}\n{}",
            cluster.name(killed_server),
            victim.host.pid(),
            victim.host.log_report(),
            logs(&hosts),
            cluster.log_report()
        )
    };
    assert_eq!(
        count(&js, "IN", &report).await,
        ORDERS as u64,
        "every order stored once in IN\n{}",
        report()
    );

    // Every order answered exactly once, nothing dead-lettered.
    let ids: Vec<String> = sent.iter().map(|o| o.event_id.clone()).collect();
    let mut outputs = StreamReader::new("OUT");
    let tally = settled(&js, &mut outputs, &ids, report).await;
    assert!(
        tally.is_clean(),
        "{}\n{}",
        tally.describe(ids.len()),
        report()
    );
    // The killed host's orders were taken over: the server delivered some
    // order again (usually a call cut off by the kill is made again too).
    let delivered = retrying("the consumer's delivery count", &report, || async {
        let stream = js.get_stream("IN").await.map_err(|e| e.to_string())?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| e.to_string())?;
            if info.config.filter_subject == "test.echo" {
                return Ok(info.delivered.consumer_sequence);
            }
        }
        Err("no consumer filters on test.echo".to_string())
    })
    .await;
    let calls: usize =
        echo_calls(&victim.host) + hosts.iter().map(|s| echo_calls(&s.host)).sum::<usize>();
    assert!(
        delivered > ORDERS as u64,
        "the kills caught no order in flight ({delivered} deliveries, {calls} calls for \
         {ORDERS} orders): the test proved nothing\n{}",
        report()
    );

    // The hosts left still serve: ready, and each answers some of the fresh
    // orders, sent one at a time until both have.
    let mut before = Vec::new();
    for served in &hosts {
        served.wait_ready().await;
        assert_eq!(served.dead_lettered("echo").await, 0, "{}", report());
        before.push(served.handled("echo").await);
    }
    let mut fresh = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let order = OrderCreated::new(&format!("fresh-{:03}", fresh.len()), "c-fresh");
        publish_durably(&js, "test.echo", &order.event_id, order.to_bytes()).await;
        fresh.push(order.event_id);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut grown = true;
        for (served, before) in hosts.iter().zip(&before) {
            grown &= served.handled("echo").await > *before;
        }
        if grown {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {} fresh orders, not every host left has answered one (before: {before:?})\n{}",
            fresh.len(),
            report()
        );
    }
    let all: Vec<String> = ids.into_iter().chain(fresh).collect();
    let tally = settled(&js, &mut outputs, &all, report).await;
    assert!(
        tally.is_clean(),
        "{}\n{}",
        tally.describe(all.len()),
        report()
    );
}

/// Echo under a steady load: 2 ms a call, four at a time.
fn steady_echo_manifest() -> String {
    echo_manifest(2, 4, "ack_wait = \"5s\"\n")
}

/// Puts `wasm` in place of `NAME.wasm` in `dir` as the README says: written
/// beside under a name the host ignores (`.NAME.wasm.new`), then renamed over
/// the old file.
fn roll_out(dir: &PluginDir, name: &str, wasm: &std::path::Path) {
    let staged = dir.path().join(format!(".{name}.wasm.new"));
    std::fs::copy(wasm, &staged)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", wasm.display(), staged.display()));
    std::fs::rename(&staged, dir.wasm_path(name))
        .unwrap_or_else(|e| panic!("rename {} over {name}.wasm: {e}", staged.display()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_upgrade_under_load_loses_and_doubles_nothing() {
    let _turn = CLUSTER.lock().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let js = jetstream::new(client.clone());
    streams(
        &cluster,
        &js,
        vec![
            capturing("IN", "test.echo"),
            capturing("OUT", "test.echo.out"),
            capturing("DLQ", "dlq.>"),
        ],
    )
    .await;
    // Each host its own plugins folder, as on three machines.
    let dirs: Vec<PluginDir> = (0..3).map(|_| PluginDir::new()).collect();
    let mut hosts = Vec::new();
    for dir in &dirs {
        dir.add_with_manifest("echo", &steady_echo_manifest());
        hosts.push(Served::start(&dir.path(), &cluster).await);
    }
    let old_version = hosts[0]
        .host
        .wait_for_log("plugin loaded", Some("echo"), WAIT)
        .await
        .field_str("version")
        .expect("`plugin loaded` names the version");

    // The load: orders, paced, each stored in IN before the next, until told
    // to stop; the ids in the order sent.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (js, stop, published) = (js.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) && ids.len() < 20_000 {
                let order = OrderCreated::new(&format!("ord-{:05}", ids.len()), "c-1");
                publish_durably(&js, "test.echo", &order.event_id, order.to_bytes()).await;
                ids.push(order.event_id);
                published.store(ids.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            ids
        })
    };
    let report = || format!("{}\n{}", logs(&hosts), cluster.log_report());
    for served in &hosts {
        served
            .wait_handled_more("echo", 0, "every host serves before the upgrade")
            .await;
    }

    // One host at a time: the new file in place, the host checked (the
    // README's `evhost status`: the new version serves, no error), and the
    // host serving messages on it, before the next.
    let mut new_versions = Vec::new();
    for (served, dir) in hosts.iter().zip(&dirs) {
        roll_out(dir, "echo", &wasm("echo-v2"));
        let reloaded = served
            .host
            .wait_for_log("plugin reloaded", Some("echo"), WAIT)
            .await;
        let version = reloaded
            .field_str("version")
            .expect("`plugin reloaded` names the version");
        let status = evhost(&["status", "--listen", &served.listen, "--json"], None);
        assert_eq!(status.code, Some(0), "evhost status\n{status}");
        let plugins = status.json();
        let echo = plugin_entry(&plugins, "echo").expect("echo in evhost status");
        assert_eq!(echo["version"], version.as_str(), "{echo:#}\n{}", report());
        assert_eq!(echo["last_error"], Value::Null, "{echo:#}\n{}", report());
        assert_eq!(echo["status"], "serving", "{echo:#}\n{}", report());
        let handled = served.handled("echo").await;
        served
            .wait_handled_more("echo", handled, "the upgraded host serves")
            .await;
        new_versions.push(version);
    }
    assert!(
        new_versions
            .iter()
            .all(|v| *v == new_versions[0] && *v != old_version),
        "every host runs the one new version, not the old {old_version}: {new_versions:?}"
    );

    // The last orders, after every host upgraded: each host takes some.
    // Orders past `mark` were published after this point (the one at `mark`
    // may be on its way already).
    let mark = published.load(Ordering::SeqCst);
    let calls_at_mark: Vec<usize> = hosts.iter().map(|s| echo_calls(&s.host)).collect();
    eventually(
        "every host to handle orders after the upgrade",
        WAIT,
        || {
            hosts
                .iter()
                .zip(&calls_at_mark)
                .all(|(s, at)| echo_calls(&s.host) > *at)
                .then_some(())
        },
        report,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let ids = publisher.await.expect("the publisher task");
    assert!(ids.len() > mark + 1, "orders published after the upgrade");

    let mut outputs = StreamReader::new("OUT");
    let tally = settled(&js, &mut outputs, &ids, report).await;
    assert!(
        tally.is_clean(),
        "{}\n{}",
        tally.describe(ids.len()),
        report()
    );
    // Handled once: no message was called twice on any host (the stream
    // would drop a second output as a duplicate, so count the calls).
    let calls: Vec<usize> = hosts.iter().map(|s| echo_calls(&s.host)).collect();
    assert_eq!(
        calls.iter().sum::<usize>(),
        ids.len(),
        "calls per host {calls:?} for {} orders\n{}",
        ids.len(),
        report()
    );
    for served in &hosts {
        assert_eq!(served.dead_lettered("echo").await, 0, "{}", report());
    }

    // Both versions served during the upgrade; only the new one after it.
    let position: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut old_after_mark = Vec::new();
    for msg in &outputs.messages {
        let version = msg
            .headers
            .get("echo-version")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let id = echoed_event_id(msg);
        if position[id.as_str()] > mark && version != "2" {
            old_after_mark.push(id);
        }
        *versions.entry(version).or_default() += 1;
    }
    assert!(
        versions.get("1").is_some_and(|n| *n > 0) && versions.get("2").is_some_and(|n| *n > 0),
        "both versions answered during the upgrade: {versions:?}"
    );
    assert!(
        old_after_mark.is_empty(),
        "orders sent after every host upgraded answered by the old version: {old_after_mark:?}\n{}",
        report()
    );
}

/// With `--replicas 3`, everything the host creates in JetStream is kept on
/// every server of the cluster: a JetStream plugin's stream, its dead-letter
/// stream and its dedup bucket, and a core plugin's key-value bucket. A
/// stream that was there before is used as it is, with one warning.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_host_creates_has_the_replicas_it_is_told() {
    let _turn = CLUSTER.lock().await;
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let js = jetstream::new(client.clone());
    // Made by the test with one replica, before the host starts.
    let single = js
        .create_stream(stream::Config {
            name: "TALLY_DLQ".into(),
            subjects: vec!["dlq.tally.>".into()],
            ..Default::default()
        })
        .await
        .expect("create TALLY_DLQ");
    assert_eq!(single.cached_info().config.num_replicas, 1);

    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        "[delivery]\ndead_letter_prefix = \"dlq.echo.\"\ndead_letter_stream = \"ECHO_DLQ\"\n\
         create_dead_letter_stream = true\n\
         [jetstream]\nstream = \"IN\"\ncreate_stream = true\nstream_subjects = [\"test.echo\"]\n\
         dedup = \"json:/event_id\"\n",
    );
    dir.add_with_manifest(
        "tally",
        "[capabilities]\nkeyvalue = [\"tally\"]\n\
         [delivery]\ndead_letter_prefix = \"dlq.tally.\"\ndead_letter_stream = \"TALLY_DLQ\"\n\
         create_dead_letter_stream = true\n",
    );
    let host = Host::start(&dir.path(), &cluster.urls(), &["--replicas", "3"]);
    host.wait_for_log("host ready", None, WAIT).await;
    let context = || format!("{}\n{}", host.log_report(), cluster.log_report());
    assert_eq!(host.count_logs("plugin rejected", None), 0, "{}", context());

    // Both plugins serve: tally opens (and so creates) its bucket.
    let mut tallies = subscribe(&client, "test.tally.out").await;
    publish(&client, "test.tally", &[], b"apples").await;
    let msg = next_message(&mut tallies, WAIT, "tally's count", &host).await;
    assert_eq!(msg.payload.as_ref(), b"1");
    let mut echoes = subscribe(&client, "test.echo.out").await;
    publish_durably(&js, "test.echo", "o-1", br#"{"event_id":"o-1"}"#.to_vec()).await;
    let msg = next_message(&mut echoes, WAIT, "echo's answer", &host).await;
    assert_eq!(msg.payload.as_ref(), br#"{"event_id":"o-1"}"#);

    for name in ["IN", "ECHO_DLQ", "KV_evhost-dedup", "KV_tally"] {
        let info = retrying(&format!("stream {name}'s info"), &context, || async {
            let mut stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
            stream.info().await.cloned().map_err(|e| e.to_string())
        })
        .await;
        assert_eq!(info.config.num_replicas, 3, "{name}: {:?}", info.config);
        let placed = info.cluster.as_ref().map_or(0, |c| c.replicas.len() + 1);
        assert_eq!(
            placed, 3,
            "{name} is not on every server: {:?}",
            info.cluster
        );
    }

    // The stream that was there is not touched, and said so once.
    let mut single = js.get_stream("TALLY_DLQ").await.expect("TALLY_DLQ");
    let info = single.info().await.expect("TALLY_DLQ info");
    assert_eq!(info.config.num_replicas, 1);
    let warnings = host.find_logs(|l| {
        l.message()
            .is_some_and(|m| m.starts_with("the stream has fewer replicas"))
    });
    assert_eq!(warnings.len(), 1, "{}", context());
    assert_eq!(
        warnings[0].field_str("stream").as_deref(),
        Some("TALLY_DLQ")
    );
    assert_eq!(warnings[0].level(), Some("WARN"));
}
