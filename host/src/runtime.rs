//! The WebAssembly runtime: the one `bindgen!` of the `handler` world, the
//! wasmtime engine (pooling allocator, epoch interruption, compiled-code
//! cache), the linker with WASI, `wasi:http` (sent by `outbound_http`), the
//! one-call `evhost:plugin/http` (`http_call`),
//! `wasi:keyvalue` (served by `keyvalue`) and the host imports, and the
//! per-store state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, HasSelf, Instance, Linker, Lower,
    ResourceTable, TypedFunc,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::idempotency::KeySource;
use crate::keyvalue::KvAccess;
use crate::outbound_http::{Hooks, HttpPolicy};

use crate::guest_log::GuestLog;
use crate::memory_cap::MemoryCap;
use crate::sandbox::{self, StderrTail};

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    exports: { default: async },
    imports: { "wasi:keyvalue": async | trappable, "evhost:plugin/http.send": async },
    with: {
        "wasi:keyvalue/store.bucket": crate::keyvalue::Handle,
        "wasi:keyvalue/atomics.cas": crate::keyvalue::Cas,
    },
});

pub use self::evhost::plugin::host::Level;

/// The handler's `message` record as the host passes it in: borrowed from
/// the NATS message it describes, so subject and payload are copied once,
/// straight into the guest's memory, with no owned copy on the way. Its
/// layout is checked against the WIT `message` record for every instance
/// ([`HandleExport::of`]).
#[derive(ComponentType, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct MessageRef<'a> {
    /// The NATS subject the message was published to.
    pub subject: &'a str,
    /// The message's headers, in order, repeated names kept.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body, exactly as published.
    pub payload: &'a [u8],
    /// The requester's reply subject, if any.
    #[component(name = "reply-to")]
    pub reply_to: Option<&'a str>,
    /// Which delivery this is: 1 on the first.
    pub attempt: u32,
}

/// What `handle` returns.
pub type HandleResult = Result<Vec<Outgoing>, HandlerError>;

/// The `handle` export of one instance, called with a [`MessageRef`] (the
/// generated `call_handle` takes the owned `Message`, which would cost a
/// copy and an allocation of subject and payload per message).
#[derive(Clone, Copy)]
pub struct HandleExport(TypedFunc<(&'static MessageRef<'static>,), (HandleResult,)>);

impl HandleExport {
    /// The `handle` export of `instance` (`index` from [`Runtime::handle_index`]),
    /// type-checked against [`MessageRef`] and [`HandleResult`].
    pub fn of(
        store: &mut Store<State>,
        instance: &Instance,
        index: &ComponentExportIndex,
    ) -> anyhow::Result<Self> {
        let typed = instance
            .get_typed_func::<(&MessageRef<'static>,), (HandleResult,)>(store, index)
            .map_err(anyhow::Error::from)
            .context("the handle export does not match the evhost:plugin message record")?;
        Ok(HandleExport(typed))
    }

    /// Calls `handle` with `message`; the error is a trap or an interruption.
    pub async fn call(
        self,
        store: &mut Store<State>,
        message: &MessageRef<'_>,
    ) -> wasmtime::Result<HandleResult> {
        // SAFETY: `of` type-checked this function with these same types.
        // Lifetimes play no part in that check (nor in the canonical ABI):
        // the message is only read while it is lowered, during this call.
        let typed = unsafe {
            TypedFunc::<(&MessageRef<'_>,), (HandleResult,)>::new_unchecked(*self.0.func())
        };
        let (result,) = typed.call_async(store, (message,)).await?;
        Ok(result)
    }
}

/// How often the epoch advances: the granularity of timeouts, and how long a
/// busy guest may hold a tokio worker before it yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each linear-memory slot the pooling allocator keeps mapped when an
/// instance is dropped, so the next instance does not fault them back in.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Bytes of each table slot kept mapped between instances.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The shared wasmtime engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<State>>,
    ticker: Arc<EpochTicker>,
    /// Whether instances come from the pooling allocator's fixed pool.
    pooled: bool,
    /// The longest a component may take to compile.
    compile_timeout: std::time::Duration,
}

/// Linear memories in the pooling allocator's pool, shared by every plugin.
pub const POOL_MEMORIES: usize = 1000;
/// Component instances in the pool.
pub const POOL_INSTANCES: usize = 1000;

/// The epoch as the host counts it: how many [`EPOCH_TICK`]s have passed,
/// advanced together with the engine's epoch. Deadlines are tick numbers, so
/// setting one per call is an atomic load rather than a clock read.
#[derive(Clone, Default)]
pub struct Ticks(Arc<AtomicU64>);

impl Ticks {
    /// The current tick.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The tick by which `timeout` has surely passed: a partly elapsed tick
    /// does not count, so a call is never cut short, and at most one tick
    /// ([`EPOCH_TICK`]) late.
    pub fn deadline(&self, timeout: Duration) -> u64 {
        self.now() + ticks_in(timeout) + 1
    }

    fn advance(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whole ticks in `timeout`, rounded up.
fn ticks_in(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    timeout.as_nanos().div_ceil(tick) as u64
}

/// Options for [`Runtime::new`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Keep compiled code in wasmtime's on-disk cache, so a restart with the
    /// same plugins skips compilation.
    pub compile_cache: bool,
    /// The cache's folder, absolute (default: wasmtime's, under
    /// `$XDG_CACHE_HOME` or `~/.cache`).
    pub cache_dir: Option<std::path::PathBuf>,
    /// The longest a component may take to compile before it is refused
    /// (the compile itself cannot be stopped; it finishes in the
    /// background, and its result is dropped).
    pub compile_timeout: std::time::Duration,
}

/// How long a component may compile by default: a large Python component
/// compiles in 10 to 30 s here.
pub const DEFAULT_COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Runtime {
    /// Builds the engine. Tries the pooling allocator first and falls back to
    /// on-demand allocation where the machine cannot reserve the pool.
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let (engine, pooled) = match Engine::new(&engine_config(&options, true)) {
            Ok(engine) => (engine, true),
            Err(err) => {
                tracing::warn!(error = %err, "pooling allocator unavailable; allocating instances on demand");
                let engine = Engine::new(&engine_config(&options, false))
                    .map_err(anyhow::Error::from)
                    .context("cannot create the wasm engine")?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link wasi:http")?;
        Handler::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("cannot link the evhost host functions")?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            ticker: Arc::new(ticker),
            pooled,
            compile_timeout: options.compile_timeout,
        })
    }

    /// Whether instances come from a fixed pool ([`POOL_MEMORIES`],
    /// [`POOL_INSTANCES`]) that all plugins share.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// The host's count of epoch ticks, for call deadlines.
    pub fn ticks(&self) -> &Ticks {
        &self.ticker.ticks
    }

    /// The engine, for compiling components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The longest a component may take to compile.
    pub fn compile_timeout(&self) -> std::time::Duration {
        self.compile_timeout
    }

    /// Compiles a component. CPU-heavy: call it off the async runtime.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Component> {
        Component::new(&self.engine, wasm).map_err(anyhow::Error::from)
    }

    /// Links a compiled component once, so each instantiation is cheap.
    pub fn prepare(&self, component: &Component) -> anyhow::Result<HandlerPre<State>> {
        let pre = self.linker.instantiate_pre(component)?;
        Ok(HandlerPre::new(pre)?)
    }

    /// Where `handle` is among `pre`'s exports, for [`HandleExport::of`].
    pub fn handle_index(pre: &HandlerPre<State>) -> anyhow::Result<ComponentExportIndex> {
        pre.instance_pre()
            .component()
            .get_export_index(None, "handle")
            .context("the component exports no handle function")
    }

    /// A fresh store for one instance of plugin `plugin`.
    pub fn store(
        &self,
        log: GuestLog,
        config: Arc<BTreeMap<String, String>>,
        memory: usize,
        http: Arc<HttpPolicy>,
        kv: KvAccess,
    ) -> Store<State> {
        let stderr = StderrTail::default();
        let state = State {
            wasi: sandbox::wasi_ctx(&log, &stderr),
            plugin: log.plugin().clone(),
            log,
            stderr,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            http_hooks: Hooks { policy: http },
            kv,
            memory: MemoryCap::new(memory),
            config,
            deadline: None,
            timed_out: false,
            key: KeySource::None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        let ticks = self.ticks().clone();
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            match state.deadline {
                Some(deadline) if ticks.now() >= deadline => {
                    state.timed_out = true;
                    Ok(UpdateDeadline::Interrupt)
                }
                // Let other tasks run on this worker, then come back.
                _ => Ok(UpdateDeadline::Yield(1)),
            }
        });
        store
    }
}

/// The `tracing` level of a guest's log level.
fn tracing_level(level: Level) -> tracing::Level {
    match level {
        Level::Trace => tracing::Level::TRACE,
        Level::Debug => tracing::Level::DEBUG,
        Level::Info => tracing::Level::INFO,
        Level::Warn => tracing::Level::WARN,
        Level::Error => tracing::Level::ERROR,
    }
}

fn engine_config(options: &RuntimeOptions, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    // `EVHOST_PROFILER=perfmap` writes /tmp/perf-<pid>.map, so `perf report`
    // names the guests' functions instead of bare addresses.
    if std::env::var("EVHOST_PROFILER").is_ok_and(|p| p == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if options.compile_cache {
        let mut cache_config = wasmtime::CacheConfig::new();
        if let Some(dir) = &options.cache_dir {
            cache_config.with_directory(dir);
        }
        match wasmtime::Cache::new(cache_config) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(err) => tracing::warn!(error = %err, "compiled-code cache unavailable"),
        }
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES as u32)
            .total_core_instances(4000)
            .total_memories(POOL_MEMORIES as u32)
            .total_tables(4000)
            .total_stacks(1000)
            .max_memory_size(crate::manifest_resolve::MAX_MEMORY_MB as usize * 1024 * 1024)
            .max_core_instances_per_component(50)
            .max_memories_per_component(10)
            .max_tables_per_component(50)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            // A slot keeps its first pages mapped between instances, and
            // PAGEMAP_SCAN (Linux 6.7+) resets only the pages an instance
            // dirtied: a fresh instance per message then costs a few
            // microseconds instead of a round of madvise and page faults.
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch (and [`Ticks`]) every [`EPOCH_TICK`] on a
/// thread of its own.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    ticks: Ticks,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Ticks::default();
        let (flag, count) = (stop.clone(), ticks.clone());
        std::thread::Builder::new()
            .name("evhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    // The count first: a guest interrupted by this epoch sees
                    // a tick number that has already moved on.
                    count.advance();
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch thread");
        EpochTicker { stop, ticks }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The data of one plugin instance's store.
pub struct State {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: Hooks,
    /// The key-value buckets the plugin may open (`keyvalue.rs`).
    pub(crate) kv: KvAccess,
    /// The memory cap; `exceeded` tells a trap came from it.
    pub memory: MemoryCap,
    pub(crate) plugin: Arc<str>,
    /// Where its `log()` calls and output lines go.
    log: GuestLog,
    config: Arc<BTreeMap<String, String>>,
    /// The tick ([`Ticks`]) at which the current call must stop; `None`
    /// between calls.
    pub deadline: Option<u64>,
    /// Set when the epoch callback interrupted the current call.
    pub timed_out: bool,
    /// What the idempotency key of the message being handled is made of.
    pub key: KeySource,
    stderr: StderrTail,
}

impl State {
    /// The guest's last panic message, read from its stderr.
    pub fn last_panic(&self) -> Option<String> {
        self.stderr.panic_message()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl self::evhost::plugin::types::Host for State {}

impl self::evhost::plugin::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        self.log.write(tracing_level(level), None, &message);
    }

    fn log_enabled(&mut self, level: Level) -> bool {
        GuestLog::enabled(tracing_level(level))
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn idempotency_key(&mut self) -> String {
        self.key.key(&self.plugin)
    }
}

impl self::evhost::plugin::http::Host for State {
    async fn send(
        &mut self,
        request: self::evhost::plugin::http::Request,
    ) -> Result<self::evhost::plugin::http::Response, self::evhost::plugin::http::Failure> {
        let policy = self.http_hooks.policy.clone();
        crate::http_call::send(&policy, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_never_early_and_at_most_a_tick_late() {
        let ticks = Ticks::default();
        assert_eq!(ticks_in(Duration::ZERO), 0);
        assert_eq!(ticks_in(EPOCH_TICK), 1);
        assert_eq!(ticks_in(EPOCH_TICK + Duration::from_nanos(1)), 2);
        assert_eq!(ticks_in(Duration::from_secs(1)), 200);
        // At tick 7, possibly just before tick 8: 10 ms (two ticks) have
        // surely passed once tick 10 is reached, not before.
        for _ in 0..7 {
            ticks.advance();
        }
        assert_eq!(ticks.deadline(Duration::from_millis(10)), 10);
        assert_eq!(ticks.deadline(Duration::from_millis(11)), 11);
    }
}
