//! A plugin's serve task, the same for core NATS and JetStream: starts the
//! plugin's lanes, follows reloads, and stops. A reload that changes what the
//! lanes were started for (their [`Mode::Plan`]) starts new lanes before the
//! old ones stop, so no message is lost or doubled; once the old lanes have
//! finished, what the new ones replaced is tidied (JetStream: the consumers
//! of removed subjects). What differs between the modes (subscribing or
//! binding consumers, spawning lanes) is behind [`Mode`].

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plugin::Plugin;
use crate::slot::{Control, Slot};

/// How one delivery mode starts and retires lanes.
pub trait Mode: Send + Sync + 'static {
    /// What a set of lanes is started for (subjects, settings, concurrency):
    /// a reload that changes it starts new lanes.
    type Plan: PartialEq + Send + Sync + 'static;
    /// What the lanes of a plan share (JetStream: the stream, consumers and
    /// dedup bucket), kept across plans that still fit it.
    type Shared: Send + Sync + 'static;

    /// What `plugin` wants served; `None` if this mode cannot serve it.
    fn plan(&self, plugin: &Plugin) -> Option<Self::Plan>;

    /// The shared part for `plan`: `previous`'s (its plan and shared part)
    /// when it still fits, or a new one. Says whether it is new.
    fn share(
        &self,
        plugin: &Plugin,
        plan: &Self::Plan,
        previous: Option<(&Self::Plan, &Arc<Self::Shared>)>,
    ) -> impl Future<Output = anyhow::Result<(Arc<Self::Shared>, bool)>> + Send;

    /// Opens the lanes' intakes (subscriptions, pull requests) and spawns
    /// the lanes into `running`, each stopping on `stop`. Returns once every
    /// intake is open, so the plan is being served.
    fn start_lanes(
        &self,
        slot: &Arc<Slot>,
        plan: &Self::Plan,
        shared: &Arc<Self::Shared>,
        stop: &CancellationToken,
        running: &TaskTracker,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Once no lane of an earlier shared part runs: tidies what a new one
    /// replaced.
    fn tidy(&self, plugin: &str, shared: Arc<Self::Shared>) -> impl Future<Output = ()> + Send;

    /// The plugin is leaving this host (removed, or the host stopping), as
    /// opposed to being replaced by new lanes here.
    fn leaving(&self) {}
}

/// Lanes started for one plan.
struct Lanes<M: Mode> {
    plan: M::Plan,
    shared: Arc<M::Shared>,
    stop: CancellationToken,
    running: TaskTracker,
}

impl<M: Mode> Lanes<M> {
    async fn start(
        mode: &M,
        slot: &Arc<Slot>,
        plan: M::Plan,
        previous: Option<&Lanes<M>>,
    ) -> anyhow::Result<(Self, bool)> {
        let (shared, new) = mode
            .share(
                &slot.current(),
                &plan,
                previous.map(|p| (&p.plan, &p.shared)),
            )
            .await?;
        let stop = CancellationToken::new();
        let running = TaskTracker::new();
        let started = mode
            .start_lanes(slot, &plan, &shared, &stop, &running)
            .await;
        running.close();
        if let Err(err) = started {
            // Lanes already spawned stop; what they took they finish.
            stop.cancel();
            return Err(err);
        }
        Ok((
            Lanes {
                plan,
                shared,
                stop,
                running,
            },
            new,
        ))
    }
}

/// Serves `slot`'s plugin in `mode` until told to stop. `ready` learns
/// whether its lanes are in place. Returns once every message taken has been
/// handled (or handed back).
pub async fn serve<M: Mode>(
    mode: M,
    slot: Arc<Slot>,
    mut control: mpsc::Receiver<Control>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let mode = Arc::new(mode);
    let name = slot.current().name.to_string();
    let Some(plan) = mode.plan(&slot.current()) else {
        let _ = ready.send(Err(anyhow::anyhow!(
            "the plugin's delivery settings do not fit this serve mode"
        )));
        return;
    };
    let mut lanes = match Lanes::start(&*mode, &slot, plan, None).await {
        Ok((lanes, _)) => lanes,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // No earlier lanes here: what the first shared part replaced (a restart,
    // an earlier version of the host) is tidied at once.
    mode.tidy(&name, lanes.shared.clone()).await;
    let retiring = TaskTracker::new();
    while let Some(Control::Resubscribe(done)) = control.recv().await {
        let current = slot.current();
        let Some(plan) = mode.plan(&current) else {
            continue;
        };
        if plan == lanes.plan {
            continue;
        }
        match Lanes::start(&*mode, &slot, plan, Some(&lanes)).await {
            Ok((fresh, new)) => {
                let tidy = new.then(|| fresh.shared.clone());
                let old = std::mem::replace(&mut lanes, fresh);
                old.stop.cancel();
                let (mode, name) = (mode.clone(), name.clone());
                retiring.spawn(async move {
                    old.running.wait().await;
                    drop(old);
                    if let Some(shared) = tidy {
                        mode.tidy(&name, shared).await;
                    }
                });
            }
            Err(err) => tracing::error!(
                plugin = %current.name, error = crate::errors::one_line(&format!("{err:#}")),
                "cannot serve the new subjects; keeping the old ones"
            ),
        }
        let _ = done.send(());
    }
    mode.leaving();
    lanes.stop.cancel();
    lanes.running.wait().await;
    retiring.close();
    retiring.wait().await;
}
