//! A served plugin's current version and the orders its serve task takes.
//! A reload stores a new version in the [`Slot`]; messages already started
//! keep the version they loaded. [`Control`] tells the serve task to follow a
//! change of subjects or delivery settings, or to stop.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::Counters;
use crate::plugin::Plugin;

/// The current version of a plugin.
pub struct Slot {
    current: ArcSwap<Plugin>,
    /// What happened to the plugin's messages; shared by every version.
    pub counters: Arc<Counters>,
}

impl Slot {
    /// A slot holding `plugin`, counting into `counters`.
    pub fn new(plugin: Arc<Plugin>, counters: Arc<Counters>) -> Self {
        Slot {
            current: ArcSwap::new(plugin),
            counters,
        }
    }

    /// The version new messages go to.
    pub fn current(&self) -> Arc<Plugin> {
        self.current.load_full()
    }

    /// Makes `plugin` the version new messages go to; returns the old one.
    pub fn swap(&self, plugin: Arc<Plugin>) -> Arc<Plugin> {
        self.current.swap(plugin)
    }
}

/// Orders for a plugin's serve task.
pub enum Control {
    /// The plugin's current version may want other subjects or delivery
    /// settings: start lanes for them (if they differ) before the old ones
    /// stop, so no message is lost or doubled. The sender is answered once
    /// the new lanes are in place (dropped when nothing had to change).
    Resubscribe(tokio::sync::oneshot::Sender<()>),
    /// Stop taking messages, finish those in flight, then return.
    Stop,
}
