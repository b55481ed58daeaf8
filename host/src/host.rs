//! The long-running host: [`run`] connects to NATS, loads every plugin in
//! the directory, serves them, reloads them as their files change, and when
//! `shutdown` resolves drains every plugin before it returns.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use tokio::sync::oneshot;

pub use crate::runtime::DEFAULT_COMPILE_TIMEOUT;

use crate::bus;
use crate::health::Readiness;
use crate::lane::cores;
use crate::listener::Endpoints;
use crate::metrics::Metrics;
use crate::nats_connection::NatsConnection;
use crate::plugin_defaults::PluginDefaults;
use crate::plugin_load::Loads;
use crate::plugin_status::PluginBoard;
use crate::registry::Registry;
use crate::replicas::Replicas;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::shard::Shards;
use crate::watcher::{self, DirWatcher, Settling};

/// How long a stopping host waits for NATS to take its last outputs, after
/// the drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How `evhost run` is configured.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The plugin directory.
    pub plugins: PathBuf,
    /// The NATS servers, credentials and TLS files.
    pub nats: NatsConnection,
    /// How long shutdown waits for messages in flight.
    pub drain_timeout: Duration,
    /// The longest a plugin may take to compile.
    pub compile_timeout: Duration,
    /// Keep compiled plugins in wasmtime's on-disk cache.
    pub compile_cache: bool,
    /// Where that cache lives (default: wasmtime's).
    pub cache_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`.
    pub metrics: Option<String>,
    /// Keep every plugin's dead letters in a stream, created where none
    /// captures them (`evhost dev`).
    pub dead_letter_streams: bool,
    /// The `[limits]`, `[delivery]` and `[jetstream]` every plugin gets where its
    /// manifest says nothing (the configuration file's).
    pub plugin_defaults: PluginDefaults,
    /// How many replicas the streams and key-value buckets the host creates
    /// get (`replicas.rs`).
    pub replicas: Replicas,
}

/// Runs the host until `shutdown` resolves, then stops taking messages,
/// finishes those in flight (publishing their outputs) and returns.
pub async fn run(options: HostOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let dir = options.plugins.clone();
    let meta = std::fs::metadata(&dir)
        .with_context(|| format!("cannot read the plugin directory {}", dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "the plugin directory {} is not a directory",
        dir.display()
    );

    let runtime = Runtime::new(RuntimeOptions {
        compile_cache: options.compile_cache,
        cache_dir: options.cache_dir.clone(),
        compile_timeout: options.compile_timeout,
    })?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let board = Arc::new(PluginBoard::default());
    let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
    if let Some(addr) = &options.metrics {
        let listener = crate::listener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr().context("metrics address")?, "serving /metrics, /healthz, /readyz and /plugins");
        let endpoints = Endpoints {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            plugins: board.clone(),
        };
        tokio::spawn(crate::listener::serve(listener, endpoints, async {
            let _ = metrics_stopped.await;
        }));
    }
    let client = bus::connect(&options.nats, "evhost").await?;
    let shards = Arc::new(Shards::start(&options.nats, cores()).await?);
    readiness.watch("main", client.clone());
    for (i, shard_client) in shards.clients().enumerate() {
        readiness.watch(&format!("shard-{}", i + 1), shard_client.clone());
    }
    // Watch before the first scan, so a file written in between is not missed.
    let mut watcher = DirWatcher::start(&dir)?;
    let mut registry = Registry::new(
        dir.clone(),
        runtime,
        client.clone(),
        shards.clone(),
        metrics,
        options.replicas,
    )
    .keep_dead_letters(options.dead_letter_streams)
    .report_to(board)
    .plugin_defaults(options.plugin_defaults.clone());
    let names = registry.scan()?;
    if names.is_empty() {
        tracing::warn!(dir = %dir.display(), "no plugins in the folder yet: drop NAME.wasm files there (they are loaded as they arrive)");
    }
    for manifest in registry.orphan_manifests() {
        tracing::warn!(file = %manifest.display(), "a manifest with no .wasm beside it: nothing to serve");
    }
    // Loads run as tasks, several at once (a Python or JavaScript component
    // compiles for seconds): the loop keeps reacting to files and signals
    // meanwhile, and a shutdown asked during a load is acted on at once,
    // leaving the load unfinished.
    tokio::pin!(shutdown);
    let mut loads = Loads::new(cores().max(2));
    for name in names {
        let load = registry.begin(&name);
        loads.start(&name, load);
    }
    let mut stopped = false;
    while !loads.is_empty() {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                stopped = true;
                break;
            }
            Some(loaded) = loads.next() => {
                tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        stopped = true;
                        break;
                    }
                    () = registry.finish(loaded) => {}
                }
            }
            else => break,
        }
    }
    readiness.waiting_to_bind(registry.waiting_to_bind());
    if !stopped {
        readiness.loaded();
        tracing::info!(plugins = registry.len(), nats = %options.nats.servers, dir = %dir.display(), "host ready");
    }

    let mut settling = Settling::default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    if !stopped {
        loop {
            readiness.waiting_to_bind(registry.waiting_to_bind());
            // A plugin whose NATS side could not be set up is loaded again
            // when its delay is over (`unbound.rs`).
            let retry = registry.next_retry();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(loaded) = loads.next(), if !loads.is_empty() => {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = registry.finish(loaded) => {}
                    }
                }
                Some(name) = watcher.next() => settling.touch(name, Instant::now()),
                () = async {
                    match retry {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                } => {
                    for (name, load) in registry.retry_due(tokio::time::Instant::now()) {
                        loads.start(&name, load);
                    }
                }
                _ = tick.tick(), if !settling.is_empty() => {
                    for name in settling.ready(Instant::now(), |n| watcher::fingerprint(&dir, n)) {
                        let load = registry.begin(&name);
                        loads.start(&name, load);
                    }
                }
            }
        }
    }
    drop(loads);

    readiness.draining();
    tracing::info!(
        plugins = registry.len(),
        "shutting down: finishing messages in flight"
    );
    let started = Instant::now();
    if tokio::time::timeout(options.drain_timeout, registry.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = options.drain_timeout.as_millis() as u64,
            "drain timed out; messages still in flight were not finished"
        );
    }
    let _ = stop_metrics.send(());
    // A lost connection must not keep a stopping host alive: the client
    // would wait for a reconnect that may never come.
    let flushed = tokio::time::timeout(FLUSH_TIMEOUT, async {
        shards.stop().await?;
        client
            .flush()
            .await
            .context("cannot flush the last outputs to NATS")
    })
    .await;
    if matches!(flushed, Ok(Ok(()))) {
        bus::close(&client, Duration::from_secs(1)).await;
    }
    tracing::info!(drain_ms = started.elapsed().as_millis() as u64, "stopped");
    match flushed {
        Ok(result) => result,
        Err(_) => anyhow::bail!(
            "stopped without flushing the last outputs: NATS did not take them within {FLUSH_TIMEOUT:?} (disconnected?)"
        ),
    }
}
