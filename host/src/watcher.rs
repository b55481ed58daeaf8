//! Watching the plugin directory. File events name a plugin; a plugin is
//! passed on for reloading only once its files have stopped changing, so a
//! file still being written is not loaded half-written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::registry::{manifest_path, plugin_name, wasm_path};

/// How long a plugin's files must stay unchanged before it is reloaded.
pub const QUIET: Duration = Duration::from_millis(150);

/// A running watch on one directory; dropping it stops the watch.
pub struct DirWatcher {
    _inner: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<String>,
}

impl DirWatcher {
    /// Starts watching `dir` (not its subdirectories).
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut inner =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                // Reads (ours included) raise access events: only changes count.
                Ok(event) if is_change(&event.kind) => {
                    for path in event.paths {
                        if let Some(name) = plugin_name(&path) {
                            let _ = tx.send(name);
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "file watcher error"),
            })
            .context("cannot start the file watcher")?;
        inner
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        Ok(DirWatcher {
            _inner: inner,
            events,
        })
    }

    /// The next plugin whose files changed.
    pub async fn next(&mut self) -> Option<String> {
        self.events.recv().await
    }
}

/// Whether an event may have changed a file's content or existence.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind::*;
    matches!(kind, Any | Create(_) | Modify(_) | Remove(_))
}

/// What a plugin's files look like on disk: size and modification time of
/// its `.wasm` and manifest (`None` where a file is absent).
pub type Fingerprint = [Option<(u64, SystemTime)>; 2];

/// Reads the fingerprint of plugin `name` in `dir`.
pub fn fingerprint(dir: &Path, name: &str) -> Fingerprint {
    let stat = |p: PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
    };
    [stat(wasm_path(dir, name)), stat(manifest_path(dir, name))]
}

/// Plugins with recent file events, waiting for their files to settle.
#[derive(Default)]
pub struct Settling {
    pending: HashMap<String, (Instant, Option<Fingerprint>)>,
}

impl Settling {
    /// Notes a file event for `name` at `now`.
    pub fn touch(&mut self, name: String, now: Instant) {
        let entry = self.pending.entry(name).or_insert((now, None));
        entry.0 = now;
    }

    /// Whether any plugin is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The plugins that are ready: quiet for [`QUIET`] and with the same
    /// fingerprint as at the previous check. `look` reads a fingerprint.
    pub fn ready(
        &mut self,
        now: Instant,
        mut look: impl FnMut(&str) -> Fingerprint,
    ) -> Vec<String> {
        let mut ready = Vec::new();
        for (name, (last, seen)) in self.pending.iter_mut() {
            if now.duration_since(*last) < QUIET {
                continue;
            }
            let current = look(name);
            if seen.as_ref() == Some(&current) {
                ready.push(name.clone());
            } else {
                *seen = Some(current);
                *last = now;
            }
        }
        for name in &ready {
            self.pending.remove(name);
        }
        ready.sort();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(size: u64) -> Fingerprint {
        [Some((size, SystemTime::UNIX_EPOCH)), None]
    }

    #[test]
    fn a_plugin_is_ready_once_its_files_stop_changing() {
        let start = Instant::now();
        let mut s = Settling::default();
        s.touch("echo".into(), start);
        assert!(s.ready(start + QUIET / 2, |_| fp(1)).is_empty(), "too soon");
        // First look records the fingerprint and waits another quiet period.
        assert!(s.ready(start + QUIET, |_| fp(1)).is_empty());
        // Still being written: the size moved.
        assert!(s.ready(start + QUIET * 2, |_| fp(2)).is_empty());
        assert_eq!(
            s.ready(start + QUIET * 3, |_| fp(2)),
            vec!["echo".to_string()]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        assert!(!is_change(&notify::EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_change(&notify::EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_change(&notify::EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&notify::EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn new_events_restart_the_quiet_period() {
        let start = Instant::now();
        let mut s = Settling::default();
        s.touch("a".into(), start);
        s.ready(start + QUIET, |_| fp(1));
        s.touch("a".into(), start + QUIET + QUIET / 2);
        assert!(s.ready(start + QUIET * 2, |_| fp(1)).is_empty());
        assert_eq!(s.ready(start + QUIET * 3, |_| fp(1)), vec!["a".to_string()]);
    }
}
