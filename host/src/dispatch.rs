//! Moving messages from a plugin's subscriptions into its handler: a bounded
//! number at once (backpressure), each attempt classified, retried with
//! backoff, published or dead-lettered. One [`serve`] task per plugin runs a
//! few [`lane`]s, each on a [`shard`](crate::shard) of its own: a lane has
//! its own queue subscriptions on its shard's connection and keeps its
//! messages in flight inside its own task, so a message costs no task spawn
//! and no hand-off between threads.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_nats::Client;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::backoff::Backoff;
use crate::bus;
use crate::deadletter::DeadLetter;
use crate::idempotency::{self, KeySource};
use crate::lane::{InFlight, cores, lane_limits};
use crate::metrics::Counters;
use crate::outcome::{Decision, Failure, FailureKind, decide};
use crate::plugin::Plugin;
use crate::shard::Shards;

/// The current version of a plugin. A reload stores a new one; messages
/// already started keep the version they loaded.
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

/// Orders for a plugin's [`serve`] task.
pub enum Control {
    /// The subjects, queue group or concurrency changed: subscribe anew, then
    /// drain the old subscriptions, so no message is lost or doubled.
    Resubscribe,
    /// Stop taking messages, finish those in flight, then return.
    Stop,
}

/// Lanes serving one set of subjects, queue group and concurrency.
struct Lanes {
    serving: Serving,
    stop: CancellationToken,
}

/// What a set of lanes was made for.
#[derive(PartialEq)]
struct Serving {
    subjects: Vec<String>,
    queue_group: String,
    concurrency: usize,
}

impl Serving {
    fn of(plugin: &Plugin) -> Self {
        Serving {
            subjects: plugin.subjects.clone(),
            queue_group: plugin.settings.queue_group.clone(),
            concurrency: plugin.settings.concurrency,
        }
    }
}

impl Lanes {
    /// Subscribes every lane on the connection of the shard it will run on
    /// (all in the plugin's queue group, so the server spreads messages over
    /// them), then starts each on its shard, tracked by `tracker`.
    async fn start(
        shards: &Shards,
        slot: &Arc<Slot>,
        tracker: &TaskTracker,
    ) -> anyhow::Result<Self> {
        let serving = Serving::of(&slot.current());
        let limits = lane_limits(serving.concurrency, cores());
        let mut subscribed = Vec::with_capacity(limits.len());
        for shard in shards.deal(limits.len()) {
            let subs =
                bus::subscribe(&shard.client, &serving.subjects, &serving.queue_group).await?;
            subscribed.push((shard, subs));
        }
        let stop = CancellationToken::new();
        for ((shard, subs), limit) in subscribed.into_iter().zip(limits) {
            tracker.spawn_on(
                lane(
                    shard.client.clone(),
                    slot.clone(),
                    subs,
                    limit,
                    // A child token per lane: `is_cancelled` locks the
                    // token's node, and one node shared by lanes on two
                    // shards would bounce between the cores every message.
                    stop.child_token(),
                ),
                &shard.handle,
            );
        }
        Ok(Lanes { serving, stop })
    }
}

/// Serves `slot`'s plugin until told to stop. `ready` learns whether the
/// subscriptions are in place. A reload that changes the subjects, queue
/// group or concurrency starts new lanes before the old ones drain, so no
/// message is lost. Returns once every message taken has been handled.
pub async fn serve(
    shards: Arc<Shards>,
    slot: Arc<Slot>,
    mut control: mpsc::Receiver<Control>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let tracker = TaskTracker::new();
    let mut lanes = match Lanes::start(&shards, &slot, &tracker).await {
        Ok(lanes) => lanes,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(Control::Resubscribe) = control.recv().await {
        if Serving::of(&slot.current()) == lanes.serving {
            continue;
        }
        match Lanes::start(&shards, &slot, &tracker).await {
            Ok(fresh) => std::mem::replace(&mut lanes, fresh).stop.cancel(),
            Err(err) => tracing::error!(
                plugin = %slot.current().name, error = format!("{err:#}"),
                "cannot subscribe to the new subjects; keeping the old ones"
            ),
        }
    }
    lanes.stop.cancel();
    tracker.close();
    tracker.wait().await;
}

/// One lane: takes a message from `subs` only while fewer than `limit` are in
/// flight (backpressure), and drives those in flight inside this task. On
/// `stop` it drains its subscriptions, finishes what it took, and returns.
async fn lane(
    client: Client,
    slot: Arc<Slot>,
    mut subs: bus::Subscriptions,
    limit: usize,
    stop: CancellationToken,
) {
    let mut in_flight = InFlight::default();
    let mut stopping = false;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        // Read from the token here (its node's lock, which only this lane
        // takes until the stop order comes): under load a message is always
        // ready and the `stopped` arm below is never reached.
        if !stopping && stop.is_cancelled() {
            stopping = true;
            bus::drain(&mut subs).await;
        }
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            msg = subs.next(), if in_flight.len() < limit => match msg {
                Some(msg) => in_flight.start(Box::pin(handle(&client, &slot, msg))).await,
                None => break, // drained: nothing more will arrive
            },
            // Wakes a lane that is waiting when the order to stop comes.
            () = &mut stopped, if !stopping => {}
        }
    }
    in_flight.finish().await;
}

/// Handles one message to the end: attempts with backoff until it succeeds
/// or is dead-lettered. Each attempt uses the plugin's current version.
/// A plain function returning the future (rather than an `async fn` around
/// an instrumented block): the future is built once, where the caller boxes
/// it, instead of being moved through two more layers for every message.
pub fn handle<'a>(
    client: &'a Client,
    slot: &'a Slot,
    msg: async_nats::Message,
) -> impl Future<Output = ()> + Send + 'a {
    let plugin = slot.current();
    let span = tracing::debug_span!(
        "message",
        plugin = %plugin.name,
        subject = %msg.subject,
        attempt = field::Empty,
        outcome = field::Empty,
        duration_us = field::Empty,
    );
    attempts(client, slot, msg, plugin, span.clone()).instrument(span)
}

async fn attempts(
    client: &Client,
    slot: &Slot,
    msg: async_nats::Message,
    mut plugin: Arc<Plugin>,
    span: tracing::Span,
) {
    // Timed only when someone listens: a clock read per message is not free.
    let started = (!span.is_disabled()).then(Instant::now);
    let mut attempt = 1;
    let key = KeySource::core(idempotency::nats_msg_id(msg.headers.as_ref()));
    loop {
        let input = bus::to_message(&msg, attempt);
        let failure = match plugin.call(&input, &key).await {
            Ok(outputs) => {
                match bus::publish_outputs(client, outputs, msg.headers.as_ref()).await {
                    Ok(()) => {
                        slot.counters.handled();
                        finish(&span, attempt, "ok", started);
                        return;
                    }
                    Err(err) => Failure::new(
                        FailureKind::Transient,
                        format!("cannot publish outputs: {err}"),
                    ),
                }
            }
            Err(failure) => failure,
        };
        match decide(failure.kind, attempt, plugin.settings.max_attempts) {
            Decision::Retry => {
                slot.counters.retry();
                let delay = plugin.retry_delay(attempt, &failure, "attempt failed; retrying");
                // Boxed, like the dead letter below: the rare paths stay
                // out of every message's future.
                Box::pin(tokio::time::sleep(delay)).await;
                attempt += 1;
                plugin = slot.current();
            }
            Decision::DeadLetter(kind) => {
                let letter = DeadLetter::of(&plugin, &msg, kind, &failure.message, attempt, None);
                let subject = letter.subject(&plugin.settings.dead_letter_prefix);
                if Box::pin(publish_dead_letter(client, subject, &letter, &msg)).await {
                    slot.counters.dead_lettered(kind);
                }
                finish(&span, attempt, kind.as_str(), started);
                return;
            }
        }
    }
}

/// How many times a dead letter is offered to NATS before it is logged as
/// lost.
const DEAD_LETTER_TRIES: u32 = 10;

/// Publishes a dead letter, trying again while the connection is down: a
/// dead letter is never dropped silently. Returns whether it was published.
async fn publish_dead_letter(
    client: &Client,
    subject: String,
    letter: &DeadLetter<'_>,
    msg: &async_nats::Message,
) -> bool {
    let (headers, payload) = letter.message(&msg.payload, client.server_info().max_payload);
    // 50 ms doubling to 5 s (jittered): about 25 s in all over ten tries.
    let backoff = Backoff::exponential(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(5),
    );
    for attempt in 1..=DEAD_LETTER_TRIES {
        match client
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await
        {
            Ok(()) => return true,
            Err(err) => {
                tracing::warn!(error = %err, dead_letter = %subject, "cannot publish dead letter; trying again");
                tokio::time::sleep(backoff.delay(attempt, rand::random::<f64>())).await;
            }
        }
    }
    tracing::error!(dead_letter = %subject, subject = %msg.subject, "dead letter lost: NATS refused it ten times");
    false
}

fn finish(span: &tracing::Span, attempt: u32, outcome: &str, started: Option<Instant>) {
    let Some(started) = started else {
        return;
    };
    span.record("attempt", attempt);
    span.record("outcome", outcome);
    span.record("duration_us", started.elapsed().as_micros() as u64);
}
