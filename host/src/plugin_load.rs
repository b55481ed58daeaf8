//! Loading plugins off the host's main loop. A [`Load`] is the slow part of
//! taking a plugin's files (compiling, bounded by the compile time limit,
//! and instantiating), made by `Registry::begin` and installed by
//! `Registry::finish`. [`Loads`] runs several at once as tasks, so the main
//! loop keeps reacting to file changes and signals while a large component
//! compiles, and drops the result of a load that a newer change of the same
//! plugin has overtaken.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::manifest::Manifest;
use crate::plugin::{Plugin, Surroundings};
use crate::plugin_settings::PluginSettings;

/// A plugin version to compile and instantiate.
pub struct Load {
    pub(crate) name: String,
    pub(crate) wasm: Vec<u8>,
    pub(crate) manifest: Manifest,
    pub(crate) settings: PluginSettings,
    /// What differs from the version serving (`new` for a first load).
    pub(crate) changed: &'static str,
    /// The version serving, whose compiled code is reused when the `.wasm`
    /// is the same.
    pub(crate) previous: Option<Arc<Plugin>>,
    /// What the version is loaded into.
    pub(crate) host: Surroundings,
}

/// What a [`Load`] made.
pub struct Loaded {
    pub(crate) name: String,
    pub(crate) manifest: Manifest,
    pub(crate) changed: &'static str,
    pub(crate) plugin: anyhow::Result<Plugin>,
}

impl Load {
    /// Compiles and instantiates the version.
    pub async fn run(self) -> Loaded {
        let plugin = Plugin::load(
            &self.host,
            &self.name,
            self.wasm,
            self.settings,
            self.previous.as_deref(),
        )
        .await;
        Loaded {
            name: self.name,
            manifest: self.manifest,
            changed: self.changed,
            plugin,
        }
    }
}

/// Loads running as tasks, at most `limit` compiling at once.
pub struct Loads {
    running: JoinSet<(u64, Loaded)>,
    /// The newest load of each plugin: only its result is installed.
    newest: HashMap<String, u64>,
    next: u64,
    permits: Arc<Semaphore>,
}

impl Loads {
    /// No loads yet; at most `limit` at once.
    pub fn new(limit: usize) -> Self {
        Loads {
            running: JoinSet::new(),
            newest: HashMap::new(),
            next: 0,
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }

    /// Marks what `name`'s files are now: a load of it still running is
    /// overtaken (its result will be dropped), and `load`, if any, starts.
    pub fn start(&mut self, name: &str, load: Option<Load>) {
        self.next += 1;
        let generation = self.next;
        self.newest.insert(name.to_string(), generation);
        if let Some(load) = load {
            let permits = self.permits.clone();
            self.running.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (generation, load.run().await)
            });
        }
    }

    /// Whether no load is running.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The next load to finish that is the newest of its plugin; `None`
    /// once none is running.
    pub async fn next(&mut self) -> Option<Loaded> {
        while let Some(joined) = self.running.join_next().await {
            let Ok((generation, loaded)) = joined else {
                // A load that panicked: its plugin's next change loads it.
                continue;
            };
            if is_newest(&self.newest, &loaded.name, generation) {
                return Some(loaded);
            }
            tracing::debug!(plugin = %loaded.name, "a load overtaken by a newer change is dropped");
        }
        None
    }
}

/// Whether load `generation` of `name` is the newest started.
fn is_newest(newest: &HashMap<String, u64>, name: &str, generation: u64) -> bool {
    newest.get(name) == Some(&generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_load_of_a_plugin_counts() {
        let mut loads = Loads::new(2);
        loads.start("a", None);
        loads.start("b", None);
        loads.start("a", None);
        assert!(!is_newest(&loads.newest, "a", 1));
        assert!(is_newest(&loads.newest, "b", 2));
        assert!(is_newest(&loads.newest, "a", 3));
        assert!(!is_newest(&loads.newest, "c", 3));
        assert!(loads.is_empty());
    }
}
