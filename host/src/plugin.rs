//! One loaded version of a plugin: its compiled, pre-linked component, its
//! settings and subjects, and its warm instances (a pool per shard).
//! [`Plugin::load`] compiles and validates; [`Plugin::call`] runs one message
//! under the plugin's limits and classifies what happened.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance};

use crate::dead_letter_prefixes::DeadLetterPrefixes;
use crate::errors::one_line;
use crate::guest_log::{GuestLog, clean};
use crate::idempotency::KeySource;
use crate::keyvalue::{Backend, KvAccess};
use crate::manifest::Isolation;
use crate::outbound_http::HttpPolicy;
use crate::outcome::{Failure, FailureKind};
use crate::plugin_settings::PluginSettings;
use crate::runtime::{
    EPOCH_TICK, HandleExport, Handler, HandlerError, HandlerPre, MessageRef, Outgoing, Runtime,
    State,
};
use crate::{lane, output_rules, shard, subject};

/// What the host loads every plugin version into.
#[derive(Clone)]
pub struct Surroundings {
    /// The engine.
    pub runtime: Runtime,
    /// The plugins folder: relative paths in a manifest start there.
    pub dir: std::path::PathBuf,
    /// The key-value backend the granted buckets are opened on.
    pub kv: Backend,
    /// The dead-letter prefixes in use on the host.
    pub reserved: DeadLetterPrefixes,
}

/// A plugin version, ready to handle messages. Shared by every message that
/// started while it was current; a reload makes a new one.
pub struct Plugin {
    /// The plugin's name: its file stem.
    pub name: Arc<str>,
    /// A digest of the `.wasm` (16 hex digits of its SHA-256).
    pub version: String,
    /// The manifest with defaults filled in.
    pub settings: PluginSettings,
    /// The subjects served: the manifest's, else the plugin's own.
    pub subjects: Vec<String>,
    /// The compiled component, reused when only the manifest changes.
    pub component: Component,
    /// How long compilation took (zero when the component was reused).
    pub compile_time: Duration,
    /// Linear memories one instance makes (counted at load).
    pub memories: usize,
    config: Arc<BTreeMap<String, String>>,
    runtime: Runtime,
    /// What its outbound HTTP may reach (every instance shares it).
    http: Arc<HttpPolicy>,
    /// The dead-letter prefixes in use on the host: no output under them.
    reserved: DeadLetterPrefixes,
    /// The key-value buckets it may open.
    kv: KvAccess,
    /// Where its instances log (one rate limit for all of them).
    log: GuestLog,
    pre: HandlerPre<State>,
    handle_index: ComponentExportIndex,
    /// Warm instances in `reuse` isolation, one pool per shard (the last
    /// also serves the threads that are not shards). A call takes from and
    /// gives back to its own shard's pool, so the lanes of two shards do not
    /// contend for one lock on every message, and an instance is mostly run
    /// by one thread, whose caches hold its memory.
    warm: Box<[Mutex<Vec<Warm>>]>,
}

/// The capability interfaces a component imports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityImports {
    /// `wasi:http`.
    pub http: bool,
    /// `evhost:plugin/http`, the one-call HTTP import (the same grant).
    pub one_call_http: bool,
    pub keyvalue: bool,
}

/// An instance kept between messages in `reuse` isolation.
struct Warm {
    store: Store<State>,
    instance: Instance,
    handle: HandleExport,
    served: u64,
}

/// The digest that names a plugin version.
pub fn version_of(wasm: &[u8]) -> String {
    let digest = Sha256::digest(wasm);
    let mut hex = String::with_capacity(16);
    for byte in &digest[..8] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl Plugin {
    /// Compiles (off the async runtime), links, instantiates once and asks
    /// for the plugin's subscriptions. `previous` is the version being
    /// replaced: its compiled component is reused when the bytes are the same.
    /// Any failure is an error naming the cause; nothing is swapped in.
    /// `host` is what every version is loaded into.
    pub async fn load(
        host: &Surroundings,
        name: &str,
        wasm: Vec<u8>,
        settings: PluginSettings,
        previous: Option<&Plugin>,
    ) -> anyhow::Result<Plugin> {
        let Surroundings {
            runtime,
            dir,
            kv,
            reserved,
        } = host;
        let reserved = reserved.clone();
        let kv = KvAccess {
            backend: kv.clone(),
            granted: settings.capabilities.keyvalue.clone().into(),
            max_value_bytes: settings.capabilities.kv_max_value_bytes,
            refused: Arc::default(),
        };
        let version = version_of(&wasm);
        let http = Arc::new(HttpPolicy::new(
            Arc::from(name),
            settings.capabilities.http.as_ref(),
            dir,
        )?);
        let started = Instant::now();
        let (component, compile_time) = match previous.filter(|p| p.version == version) {
            Some(p) => (p.component.clone(), Duration::ZERO),
            None => {
                let rt = runtime.clone();
                let limit = runtime.compile_timeout();
                let compiling = tokio::task::spawn_blocking(move || rt.compile(&wasm));
                let component = tokio::time::timeout(limit, compiling)
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "compiling took longer than {} (the compile time limit: --compile-timeout, EVHOST_COMPILE_TIMEOUT or compile_timeout in the configuration file)",
                            humantime::format_duration(limit)
                        )
                    })?
                    .context("compiler task failed")?
                    .map_err(|e| anyhow::anyhow!(not_a_component(&one_line(&format!("{e:#}")))))?;
                (component, started.elapsed())
            }
        };
        let pre = runtime
            .prepare(&component)
            .context("the component does not fit the evhost:plugin/handler world")?;
        let handle_index = Runtime::handle_index(&pre)?;
        let name: Arc<str> = Arc::from(name);
        let plugin = Plugin {
            name: name.clone(),
            version,
            config: Arc::new(settings.config.clone()),
            log: GuestLog::new(name.clone(), settings.log_lines_per_second),
            settings,
            subjects: Vec::new(),
            component,
            compile_time,
            memories: 0,
            runtime: runtime.clone(),
            http,
            reserved,
            kv,
            pre,
            handle_index,
            warm: (0..lane::cores()).map(|_| Mutex::default()).collect(),
        };
        let mut warm = plugin.instantiate().await.context("instantiation failed")?;
        let memories = warm.store.data().memory.memories();
        if runtime.pooled() {
            crate::memory_cap::check_pool_share(
                memories,
                plugin.settings.concurrency,
                crate::runtime::POOL_MEMORIES,
                crate::runtime::POOL_INSTANCES,
            )
            .map_err(|e| anyhow::anyhow!(e))?;
        }
        warm.store.data_mut().deadline = Some(runtime.ticks().deadline(plugin.settings.timeout));
        let own = Handler::new(&mut warm.store, &warm.instance)?
            .call_subscriptions(&mut warm.store)
            .await
            .map_err(anyhow::Error::from)
            .context("subscriptions() failed")?;
        warm.store.data_mut().deadline = None;
        let subjects = plugin.settings.subjects.clone().unwrap_or(own);
        if subjects.is_empty() {
            anyhow::bail!(
                "the plugin subscribes to nothing: subscriptions() is empty and the manifest sets no subjects"
            );
        }
        if let Err(denied) = subject::check_subscriptions(&subjects) {
            anyhow::bail!("subscriptions: {denied}");
        }
        let plugin = Plugin {
            subjects,
            memories,
            ..plugin
        };
        if plugin.settings.isolation == Isolation::Reuse {
            plugin.own_pool().lock().unwrap().push(warm);
        }
        Ok(plugin)
    }

    /// Which capability interfaces the component imports.
    pub fn capability_imports(&self) -> CapabilityImports {
        let engine = self.runtime.engine();
        let mut found = CapabilityImports::default();
        for (name, _) in self.component.component_type().imports(engine) {
            found.http |= name.starts_with("wasi:http/");
            found.one_call_http |= name.starts_with("evhost:plugin/http");
            found.keyvalue |= name.starts_with("wasi:keyvalue/");
        }
        found
    }

    /// The calling thread's pool of warm instances.
    fn own_pool(&self) -> &Mutex<Vec<Warm>> {
        let last = self.warm.len() - 1;
        &self.warm[shard::current().map_or(last, |i| i.min(last))]
    }

    /// A warm instance: from this thread's pool, else taken from another
    /// (the instance made at load, or one a shard no longer needs) before
    /// a new one is made.
    fn take_warm(&self) -> Option<Warm> {
        let own = self.own_pool();
        if let Some(warm) = own.lock().unwrap().pop() {
            return Some(warm);
        }
        self.warm
            .iter()
            .filter(|pool| !std::ptr::eq(*pool, own))
            .find_map(|pool| pool.lock().unwrap().pop())
    }

    async fn instantiate(&self) -> anyhow::Result<Warm> {
        let mut store = self.runtime.store(
            self.log.clone(),
            self.config.clone(),
            self.settings.memory_bytes,
            self.http.clone(),
            self.kv.clone(),
        );
        // A start function runs under the same deadline as a call: one
        // that loops forever is interrupted instead of hanging its caller.
        store.data_mut().deadline = Some(self.runtime.ticks().deadline(self.settings.timeout));
        store.set_epoch_deadline(1);
        let instance = self.pre.instance_pre().instantiate_async(&mut store).await;
        if store.data().timed_out {
            anyhow::bail!(
                "the component's start-up ran past limits.timeout_ms ({} ms)",
                self.settings.timeout.as_millis()
            );
        }
        let instance = instance?;
        store.data_mut().deadline = None;
        let handle = HandleExport::of(&mut store, &instance, &self.handle_index)?;
        Ok(Warm {
            store,
            instance,
            handle,
            served: 0,
        })
    }

    /// Runs `message` through the handler once and classifies the result.
    /// Outputs are checked against the plugin's limits and publish rules; a
    /// success means every output may be published.
    /// `key` is what the message's idempotency key is made of, handed to the
    /// guest only if it asks.
    pub async fn call(
        &self,
        message: &MessageRef<'_>,
        key: &KeySource,
    ) -> Result<Vec<Outgoing>, Failure> {
        let pooled = match self.settings.isolation {
            Isolation::Reuse => self.take_warm(),
            Isolation::Message => None,
        };
        let mut warm = match pooled {
            Some(warm) => warm,
            // Boxed: instantiation's future is large, and most calls reuse
            // a warm instance and would carry it for nothing.
            None => Box::pin(self.instantiate()).await.map_err(|e| {
                Failure::new(
                    FailureKind::Transient,
                    format!("cannot instantiate the plugin: {e:#}"),
                )
            })?,
        };
        let state = warm.store.data_mut();
        state.deadline = Some(self.runtime.ticks().deadline(self.settings.timeout));
        state.timed_out = false;
        state.key.clone_from(key);
        warm.store.set_epoch_deadline(1);
        let result = if self.settings.capabilities.waits_on_io() {
            // Epoch interruption stops a guest that computes, not one whose
            // host call awaits I/O (an HTTP server that never answers): a
            // timer bounds the whole call too. Dropping the call's future
            // abandons the instance, which is then thrown away.
            let call = warm.handle.call(&mut warm.store, message);
            match tokio::time::timeout(self.settings.timeout + EPOCH_TICK, call).await {
                Ok(result) => result,
                Err(_) => return Err(self.timeout_failure()),
            }
        } else {
            warm.handle.call(&mut warm.store, message).await
        };
        warm.store.data_mut().deadline = None;
        warm.served += 1;

        let outcome = match result {
            Ok(Ok(outputs)) => {
                let reserved = self.reserved.current();
                output_rules::check(&self.settings, &outputs, message.reply_to, &reserved)
                    .map(|()| outputs)
            }
            // The guest's words go into log lines and dead-letter headers:
            // one line, control characters escaped, bounded.
            Ok(Err(HandlerError::Transient(m))) => {
                Err(Failure::new(FailureKind::Transient, clean(&m)))
            }
            Ok(Err(HandlerError::Permanent(m))) => {
                Err(Failure::new(FailureKind::Permanent, clean(&m)))
            }
            Err(err) => {
                let state = warm.store.data();
                return Err(if state.timed_out {
                    self.timeout_failure()
                } else {
                    Failure::new(FailureKind::Trap, trap_message(&err, state))
                });
                // The instance is dropped: a trapped instance never serves again.
            }
        };
        if self.settings.isolation == Isolation::Reuse && warm.served < self.settings.recycle_after
        {
            let mut pool = self.own_pool().lock().unwrap();
            if pool.len() < self.settings.concurrency {
                pool.push(warm);
            }
        }
        outcome
    }

    fn timeout_failure(&self) -> Failure {
        Failure::new(
            FailureKind::Timeout,
            format!(
                "handler interrupted after its {} ms time limit",
                self.settings.timeout.as_millis()
            ),
        )
    }
}

/// Why a file is not a component, with the fix when it is a core module (a
/// `wasm32-unknown-unknown` or `wasm32-wasip1` build).
fn not_a_component(cause: &str) -> String {
    if cause.contains("parse a wasm module with a component parser") {
        "a core WebAssembly module, not a component: build the plugin for the wasm32-wasip2 target \
         (`rustup target add wasm32-wasip2`, then `cargo build --release --target wasm32-wasip2`)"
            .to_string()
    } else {
        format!("not a valid WebAssembly component: {cause}")
    }
}

/// One line saying why the guest trapped.
fn trap_message(err: &wasmtime::Error, state: &State) -> String {
    if state.memory.exceeded {
        return format!("memory limit of {} MiB exceeded", state.memory.limit_mb());
    }
    let mut text = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => err.to_string().lines().next().unwrap_or("trap").to_string(),
    };
    if let Some(panic) = state.last_panic() {
        let _ = write!(text, "; {panic}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_module_is_told_which_target_to_build_for() {
        let m = not_a_component(
            "failed to parse WebAssembly module: attempted to parse a wasm module with a component parser",
        );
        assert!(m.contains("wasm32-wasip2") && !m.contains("parser"), "{m}");
        assert!(not_a_component("unexpected end").contains("unexpected end"));
    }
}
