//! The plugins a host serves, by name: loading a plugin from its files,
//! swapping a new version in without losing or doubling a message, and
//! removing one after draining it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::Client;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core_delivery::CoreNats;
use crate::dead_letter_prefixes::DeadLetterPrefixes;
use crate::jetstream_delivery::JetStream;
use crate::manifest::Manifest;
use crate::metrics::{Metrics, Reload};
use crate::plugin::{Plugin, Surroundings};
use crate::plugin_defaults::PluginDefaults;
use crate::plugin_file::{self, PluginFileError};
use crate::plugin_load::{Load, Loaded};
use crate::plugin_status::PluginBoard;
use crate::replicas::Replicas;
use crate::runtime::Runtime;
use crate::serve::serve;
use crate::shard::Shards;
use crate::slot::{Control, Slot};
use crate::unbound::Unbound;

/// How long a reload waits for the serve task to bind a changed plugin's
/// new subjects before it says "plugin reloaded" anyway.
const RESUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// One served plugin: its current version and its serve task.
struct Entry {
    slot: Arc<Slot>,
    manifest: Manifest,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

/// Every plugin loaded from one directory.
pub struct Registry {
    dir: PathBuf,
    runtime: Runtime,
    /// The plugins' key-value buckets, opened once and shared.
    kv: crate::keyvalue::Backend,
    /// The replica count of the streams and buckets the host creates.
    replicas: Replicas,
    client: Client,
    shards: Arc<Shards>,
    metrics: Arc<Metrics>,
    plugins: HashMap<String, Entry>,
    /// Keep every plugin's dead letters in a stream, made when none does
    /// (`evhost dev`).
    dead_letter_streams: bool,
    /// Plugins whose files were last rejected, so the fix is logged even
    /// when it brings back the version still serving.
    rejected: std::collections::HashSet<String>,
    /// What `/plugins` shows.
    board: Arc<PluginBoard>,
    /// The host's `[limits]`, `[delivery]` and `[jetstream]` for every plugin.
    defaults: PluginDefaults,
    /// Every served plugin's dead-letter prefix: no plugin publishes there.
    reserved: DeadLetterPrefixes,
    /// Plugins with no version serving whose NATS side could not be set up:
    /// loaded again after a delay.
    unbound: Unbound,
}

/// The files of plugin `name` in `dir`.
pub fn wasm_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

/// The manifest beside the `.wasm`.
pub fn manifest_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// The plugin a file in the plugin directory belongs to: the stem of a
/// `.wasm` or `.toml` file with a usable name.
pub fn plugin_name(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if ext != "wasm" && ext != "toml" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let usable = !stem.is_empty()
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    usable.then(|| stem.to_string())
}

impl Registry {
    /// An empty registry serving plugins from `dir`: core NATS plugins on
    /// `shards`, JetStream plugins over `client`; counting into `metrics`;
    /// the streams and buckets it creates get `replicas` copies.
    pub fn new(
        dir: PathBuf,
        runtime: Runtime,
        client: Client,
        shards: Arc<Shards>,
        metrics: Arc<Metrics>,
        replicas: Replicas,
    ) -> Self {
        Registry {
            dir,
            runtime,
            kv: crate::keyvalue::Backend::nats(
                client.clone(),
                shards.clients().cloned().collect(),
                replicas,
            ),
            replicas,
            client,
            shards,
            metrics,
            plugins: HashMap::new(),
            dead_letter_streams: false,
            rejected: Default::default(),
            board: Default::default(),
            defaults: PluginDefaults::default(),
            reserved: DeadLetterPrefixes::default(),
            unbound: Unbound::default(),
        }
    }

    /// Reports every load, reload, rejection and removal to `board`.
    pub fn report_to(mut self, board: Arc<PluginBoard>) -> Self {
        self.board = board;
        self
    }

    /// Gives every plugin `defaults` where its manifest says nothing.
    pub fn plugin_defaults(mut self, defaults: PluginDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// Logs that `name`'s `file` was refused for `error`, and remembers it
    /// (for `/plugins`, and to log the fix); a version serving keeps serving.
    fn reject(&mut self, name: &str, file: &Path, error: String) {
        self.unbound.clear(name);
        self.rejected_because(name, file, &error, None);
    }

    /// Reports that `name`'s NATS side could not be set up (`error`, about
    /// `file`). With a version serving, that version keeps serving, as for
    /// any rejection; with none, the plugin is loaded again after a delay
    /// (`unbound.rs`).
    fn not_bound(&mut self, name: &str, file: &Path, error: String) {
        if self.plugins.contains_key(name) {
            self.reject(name, file, error);
        } else {
            let retry_in = self.unbound.failed(name, tokio::time::Instant::now());
            self.rejected_because(name, file, &error, Some(retry_in));
        }
    }

    /// The `plugin rejected` line (with when it is tried again, if it is),
    /// `/plugins` and the reload counter.
    fn rejected_because(
        &mut self,
        name: &str,
        file: &Path,
        error: &str,
        retry_in: Option<std::time::Duration>,
    ) {
        let retry_in_ms = retry_in.map(|d| d.as_millis() as u64);
        tracing::error!(plugin = name, file = %file.display(), error = %error, retry_in_ms, "plugin rejected");
        self.rejected.insert(name.to_string());
        self.board.rejected(name, file, error);
        self.metrics.reload(name, Reload::Rejected, None);
    }

    /// The plugins with no version serving that wait to bind, in name
    /// order (`unbound.rs`).
    pub fn waiting_to_bind(&self) -> Vec<String> {
        self.unbound.names()
    }

    /// When the next plugin waiting to bind is due to be loaded again.
    pub fn next_retry(&self) -> Option<tokio::time::Instant> {
        self.unbound.next_due()
    }

    /// Loads every plugin whose retry is due at `now` (see
    /// [`Registry::begin`]); returns each with its load, if any.
    pub fn retry_due(&mut self, now: tokio::time::Instant) -> Vec<(String, Option<Load>)> {
        let due = self.unbound.due(now);
        due.into_iter()
            .map(|name| {
                tracing::info!(plugin = %name, "loading the plugin again: its NATS side could not be set up");
                let load = self.begin(&name);
                (name, load)
            })
            .collect()
    }

    /// Has every plugin's dead letters kept in a stream, created where none
    /// captures them (what `evhost dev` does, so `evhost dlq list` shows
    /// letters written before it ran).
    pub fn keep_dead_letters(mut self, on: bool) -> Self {
        self.dead_letter_streams = on;
        self
    }

    /// Makes sure the stream that keeps `plugin`'s dead letters is there:
    /// the one its manifest names on core NATS (the JetStream binding sees
    /// to its own), or in dev any, made when missing.
    async fn ensure_dead_letter_stream(&self, plugin: &Plugin) -> anyhow::Result<()> {
        let settings = &plugin.settings;
        let js = async_nats::jetstream::new(self.client.clone());
        let prefix = &settings.dead_letter_prefix;
        match &settings.dead_letter_stream {
            Some((name, create)) if settings.jetstream.is_none() => {
                crate::dead_letter_stream::ensure(&js, name, prefix, *create, self.replicas).await
            }
            Some(_) => Ok(()),
            None if self.dead_letter_streams => {
                match crate::dead_letter_stream::ensure_any(&js, prefix, self.replicas).await {
                    Ok(stream) => {
                        tracing::debug!(plugin = %plugin.name, %stream, "dead letters kept in a stream");
                    }
                    // dev serves the plugin all the same.
                    Err(err) => tracing::warn!(
                        plugin = %plugin.name,
                        error = crate::errors::one_line(&format!("{err:#}")),
                        "its dead letters are not kept in a stream"
                    ),
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// How many plugins are served.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Names of every `.wasm` in the directory, sorted.
    pub fn scan(&self) -> anyhow::Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read the plugin directory {}", self.dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .filter_map(|p| plugin_name(&p))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Manifests with no `.wasm` beside them (a misspelt name, a file not
    /// yet copied).
    pub fn orphan_manifests(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut orphans: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| !p.with_extension("wasm").exists())
            .collect();
        orphans.sort();
        orphans
    }

    /// Brings plugin `name` in line with its files, in two steps: this one
    /// reads and checks them (quick), then a [`Load`] compiles and
    /// instantiates the version (slow; the host runs several at once, see
    /// `plugin_load.rs`) and [`Registry::finish`] installs it. Here the
    /// plugin is removed when its `.wasm` is gone, files that are wrong are
    /// reported (one error line; the old version keeps serving), and nothing
    /// is done when they are what serves; otherwise the load is returned.
    pub fn begin(&mut self, name: &str) -> Option<Load> {
        let wasm_file = wasm_path(&self.dir, name);
        let wasm = match plugin_file::read(&wasm_file, plugin_file::MAX_WASM_BYTES) {
            Ok(bytes) => bytes,
            Err(PluginFileError::NotFound) => {
                if !self.plugins.contains_key(name) && manifest_path(&self.dir, name).exists() {
                    tracing::warn!(
                        plugin = name,
                        file = %manifest_path(&self.dir, name).display(),
                        "a manifest with no {name}.wasm beside it: nothing to serve"
                    );
                }
                self.remove(name);
                return None;
            }
            Err(e) => {
                self.reject(name, &wasm_file, e.to_string());
                return None;
            }
        };
        let manifest_file = manifest_path(&self.dir, name);
        let manifest = match read_manifest(&manifest_file) {
            Ok(m) => m,
            Err(e) => {
                self.reject(
                    name,
                    &manifest_file,
                    crate::errors::one_line(&format!("{e:#}")),
                );
                return None;
            }
        };
        let settings = match self.defaults.apply(&manifest).resolve(name) {
            Ok(s) => s,
            Err(e) => {
                let e = match plugin_file::read(&manifest_file, plugin_file::MAX_MANIFEST_BYTES) {
                    Ok(bytes) => e.located(&String::from_utf8_lossy(&bytes)),
                    Err(_) => e,
                };
                self.reject(name, &manifest_file, e.to_string());
                return None;
            }
        };
        let previous = self
            .plugins
            .get(name)
            .map(|e| (e.slot.current(), e.manifest.clone()));
        if let Some((old, old_manifest)) = &previous
            && old.version == crate::plugin::version_of(&wasm)
            && *old_manifest == manifest
        {
            // Touched, not changed; or put back as it was after a rejection.
            if self.rejected.remove(name) {
                self.board.files_valid(name);
                tracing::info!(plugin = name, version = %old.version, "plugin files valid again; the version serving is unchanged");
            }
            return None;
        }
        self.rejected.remove(name);
        let changed = match &previous {
            None => "new",
            Some((old, old_manifest)) => {
                match (
                    old.version == crate::plugin::version_of(&wasm),
                    *old_manifest == manifest,
                ) {
                    (true, _) => "manifest",
                    (false, true) => "code",
                    (false, false) => "code and manifest",
                }
            }
        };
        Some(Load {
            name: name.to_string(),
            wasm,
            manifest,
            settings,
            changed,
            previous: previous.map(|(p, _)| p),
            host: Surroundings {
                runtime: self.runtime.clone(),
                dir: self.dir.clone(),
                kv: self.kv.clone(),
                reserved: self.reserved.clone(),
            },
        })
    }

    /// Makes the reserved dead-letter prefixes those of the plugins served.
    fn reserve_prefixes(&self) {
        let versions: Vec<_> = self.plugins.values().map(|e| e.slot.current()).collect();
        self.reserved.set(
            versions
                .iter()
                .map(|p| p.settings.dead_letter_prefix.as_str()),
        );
    }

    /// Installs what a [`Load`] made: the new version serves, or its file
    /// is reported and the version serving (if any) keeps serving.
    pub async fn finish(&mut self, loaded: Loaded) {
        let Loaded {
            name,
            manifest,
            changed,
            plugin,
        } = loaded;
        let plugin = match plugin {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let wasm_file = wasm_path(&self.dir, &name);
                self.reject(
                    &name,
                    &wasm_file,
                    crate::errors::one_line(&format!("{e:#}")),
                );
                return;
            }
        };
        if let Err(err) = self.ensure_dead_letter_stream(&plugin).await {
            let manifest_file = manifest_path(&self.dir, &name);
            self.not_bound(
                &name,
                &manifest_file,
                crate::errors::one_line(&format!("{err:#}")),
            );
            return;
        }
        self.install(plugin, manifest, changed).await;
    }

    /// `changed` says what differs from the version served: `code`,
    /// `manifest` or `code and manifest` (`new` for a first load).
    async fn install(&mut self, plugin: Arc<Plugin>, manifest: Manifest, changed: &'static str) {
        let name = plugin.name.to_string();
        let compile_ms = plugin.compile_time.as_secs_f64() * 1000.0;
        // Same delivery: swap the version in the slot; the serve task keeps
        // its subscriptions or consumers and resubscribes only if needed.
        if let Some(entry) = self.plugins.get_mut(&name)
            && same_consumers(
                entry.slot.current().settings.jetstream.as_ref(),
                plugin.settings.jetstream.as_ref(),
            )
        {
            let started = Instant::now();
            let old = entry.slot.swap(plugin.clone());
            entry.manifest = manifest;
            self.board.serving(&plugin, self.metrics.plugin(&name));
            self.metrics
                .reload(&name, Reload::Reloaded, Some(&plugin.version));
            let (done, resubscribed) = oneshot::channel();
            let _ = entry.control.try_send(Control::Resubscribe(done));
            // "plugin reloaded" means the new subjects are served: a
            // publisher reading it may count on a `deliver = "new"` consumer
            // being there. A serve task that cannot bind in time is logged
            // by the task itself.
            let _ = tokio::time::timeout(RESUBSCRIBE_WAIT, resubscribed).await;
            tracing::info!(
                plugin = %name,
                version = %plugin.version,
                previous_version = %old.version,
                changed,
                subjects = ?plugin.subjects,
                compile_ms,
                swap_ms = started.elapsed().as_secs_f64() * 1000.0,
                "plugin reloaded"
            );
            self.reserve_prefixes();
            return;
        }
        // New, or a change of delivery (core to JetStream, another stream or
        // durable): start a serve task, and only once it is subscribed
        // retire the old one, which drains first.
        let started = Instant::now();
        let slot = Arc::new(Slot::new(plugin.clone(), self.metrics.plugin(&name)));
        let (control, orders) = mpsc::channel(16);
        let (ready, subscribed) = oneshot::channel();
        let task = if plugin.settings.jetstream.is_some() {
            tokio::spawn(serve(
                JetStream::new(self.client.clone(), self.replicas),
                slot.clone(),
                orders,
                ready,
            ))
        } else {
            let shards = self.shards.clone();
            tokio::spawn(serve(CoreNats { shards }, slot.clone(), orders, ready))
        };
        match subscribed.await {
            Ok(Ok(())) => self.unbound.clear(&name),
            Ok(Err(err)) => {
                let file = manifest_path(&self.dir, &name);
                self.not_bound(&name, &file, crate::errors::one_line(&format!("{err:#}")));
                return;
            }
            Err(_) => {
                tracing::error!(plugin = %name, "plugin rejected: its serve task ended at start");
                let file = wasm_path(&self.dir, &name);
                self.board
                    .rejected(&name, &file, "its serve task ended at start");
                self.metrics.reload(&name, Reload::Rejected, None);
                return;
            }
        }
        let previous = self
            .plugins
            .get(&name)
            .map(|e| e.slot.current().version.clone());
        if previous.is_some() {
            // The old serve task drains in the background; the plugin is
            // still served (by the new task), so this is no removal.
            self.retire(&name, false);
        }
        self.board.serving(&plugin, self.metrics.plugin(&name));
        let result = if previous.is_some() {
            Reload::Reloaded
        } else {
            Reload::Loaded
        };
        self.metrics.reload(&name, result, Some(&plugin.version));
        self.plugins.insert(
            name.clone(),
            Entry {
                slot,
                manifest,
                control,
                task,
            },
        );
        self.reserve_prefixes();
        if let Some(previous_version) = previous {
            tracing::info!(
                plugin = %name, version = %plugin.version, previous_version = %previous_version,
                changed, subjects = ?plugin.subjects, compile_ms,
                swap_ms = started.elapsed().as_secs_f64() * 1000.0, "plugin reloaded"
            );
        } else {
            tracing::info!(plugin = %name, version = %plugin.version, subjects = ?plugin.subjects, compile_ms, memories = plugin.memories, "plugin loaded");
        }
    }

    /// Stops serving `name`: its subscriptions are drained and the messages
    /// it took are finished in the background.
    pub fn remove(&mut self, name: &str) {
        self.unbound.clear(name);
        self.board.removed(name);
        if self.plugins.contains_key(name) {
            self.metrics.reload(name, Reload::Removed, None);
        }
        self.retire(name, true);
    }

    /// Stops `name`'s serve task; logs `plugin removed` once it has drained
    /// when `removed` (the plugin is gone, not replaced by a new task), and
    /// then, for a JetStream plugin, that its durable consumers are kept on
    /// the server and how to delete them (`consumer_admin.rs`).
    fn retire(&mut self, name: &str, removed: bool) {
        if let Some(entry) = self.plugins.remove(name) {
            self.reserve_prefixes();
            let _ = entry.control.try_send(Control::Stop);
            let name = name.to_string();
            let kept = if removed {
                entry.slot.current().settings.jetstream.clone()
            } else {
                None
            };
            let client = self.client.clone();
            tokio::spawn(async move {
                let _ = entry.task.await;
                if removed {
                    tracing::info!(plugin = %name, "plugin removed");
                } else {
                    tracing::debug!(plugin = %name, "the previous serve task has drained");
                }
                if let Some(js) = kept {
                    crate::consumer_admin::report_kept(&client, &name, &js.stream, &js.durable)
                        .await;
                }
            });
        }
    }

    /// Stops every plugin and waits until all messages in flight are done.
    pub async fn shutdown(&mut self) {
        let entries: Vec<Entry> = self.plugins.drain().map(|(_, e)| e).collect();
        for entry in &entries {
            let _ = entry.control.send(Control::Stop).await;
        }
        for entry in entries {
            let _ = entry.task.await;
        }
    }
}

/// Whether two versions' delivery is served by the same task: both core
/// NATS, or JetStream on the same stream with the same durable. Other
/// JetStream settings (subjects, `ack_wait`, `deliver`, …) are applied by that
/// task's rebind, which updates the consumers in place.
fn same_consumers(
    old: Option<&crate::plugin_settings::JetStreamSettings>,
    new: Option<&crate::plugin_settings::JetStreamSettings>,
) -> bool {
    match (old, new) {
        (None, None) => true,
        (Some(a), Some(b)) => a.stream == b.stream && a.durable == b.durable,
        _ => false,
    }
}

/// The manifest at `file` (the defaults when there is none), read as a
/// plugin file (`plugin_file`).
fn read_manifest(file: &Path) -> anyhow::Result<Manifest> {
    match plugin_file::read(file, plugin_file::MAX_MANIFEST_BYTES) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", file.display()))?;
            Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", file.display()))
        }
        Err(PluginFileError::NotFound) => Ok(Manifest::default()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_come_from_wasm_and_toml_stems() {
        assert_eq!(
            plugin_name(Path::new("/p/payment.wasm")).as_deref(),
            Some("payment")
        );
        assert_eq!(
            plugin_name(Path::new("/p/payment.toml")).as_deref(),
            Some("payment")
        );
        assert_eq!(
            plugin_name(Path::new("/p/my-plugin_2.wasm")).as_deref(),
            Some("my-plugin_2")
        );
        assert_eq!(plugin_name(Path::new("/p/payment.wasm.tmp")), None);
        assert_eq!(plugin_name(Path::new("/p/.payment.wasm")), None);
        assert_eq!(plugin_name(Path::new("/p/pay ment.wasm")), None);
        assert_eq!(plugin_name(Path::new("/p/README.md")), None);
    }
}
