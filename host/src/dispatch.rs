//! Moving messages from a plugin's subscriptions into its handler: a bounded
//! number at once (backpressure), each attempt classified, retried with
//! backoff, published or dead-lettered. One [`serve`] task per plugin.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_nats::Client;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::bus;
use crate::deadletter::DeadLetter;
use crate::metrics::Counters;
use crate::outcome::{Decision, Failure, FailureKind, decide};
use crate::plugin::Plugin;

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

/// Reads `slot`'s subscriptions until told to stop, handling each message in
/// a task of its own with at most `concurrency` at once. `ready` learns
/// whether the subscriptions are in place. Returns once every message it took
/// has been handled.
pub async fn serve(
    client: Client,
    slot: Arc<Slot>,
    mut control: mpsc::Receiver<Control>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let plugin = slot.current();
    let subs = match bus::subscribe(&client, &plugin.subjects, &plugin.settings.queue_group).await {
        Ok(subs) => subs,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut server = Server {
        limit: Arc::new(Semaphore::new(plugin.settings.concurrency)),
        serving: Serving::of(&plugin),
        client,
        slot,
        subs,
        stopping: false,
    };
    let in_flight = TaskTracker::new();
    loop {
        // Backpressure: take a message only when a handler slot is free.
        let permit = tokio::select! {
            permit = server.limit.clone().acquire_owned() => permit.expect("semaphore never closes"),
            order = control.recv(), if !server.stopping => {
                server.obey(order).await;
                continue;
            }
        };
        let msg = tokio::select! {
            msg = server.subs.next() => match msg {
                Some(msg) => msg,
                None => break, // drained: nothing more will arrive
            },
            order = control.recv(), if !server.stopping => {
                drop(permit);
                server.obey(order).await;
                continue;
            }
        };
        let client = server.client.clone();
        let slot = server.slot.clone();
        in_flight.spawn(async move {
            handle(&client, &slot, msg).await;
            drop(permit);
        });
    }
    in_flight.close();
    in_flight.wait().await;
}

/// The state of one plugin's [`serve`] loop.
struct Server {
    client: Client,
    slot: Arc<Slot>,
    subs: bus::Subscriptions,
    limit: Arc<Semaphore>,
    serving: Serving,
    stopping: bool,
}

/// What the current subscriptions were made for.
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

impl Server {
    async fn obey(&mut self, order: Option<Control>) {
        match order {
            Some(Control::Resubscribe) => {
                let wanted = Serving::of(&self.slot.current());
                if (&wanted.subjects, &wanted.queue_group)
                    != (&self.serving.subjects, &self.serving.queue_group)
                {
                    // Subscribe anew before draining the old ones: both are in
                    // a queue group, so the server hands each message to one.
                    match bus::subscribe(&self.client, &wanted.subjects, &wanted.queue_group).await
                    {
                        Ok(fresh) => {
                            bus::drain(&mut self.subs).await;
                            self.subs.extend(fresh);
                        }
                        Err(err) => {
                            tracing::error!(
                                plugin = %self.slot.current().name, error = format!("{err:#}"),
                                "cannot subscribe to the new subjects; keeping the old ones"
                            );
                            return;
                        }
                    }
                }
                if wanted.concurrency != self.serving.concurrency {
                    self.limit = Arc::new(Semaphore::new(wanted.concurrency));
                }
                self.serving = wanted;
            }
            Some(Control::Stop) | None => {
                self.stopping = true;
                bus::drain(&mut self.subs).await;
            }
        }
    }
}

/// Handles one message to the end: attempts with backoff until it succeeds
/// or is dead-lettered. Each attempt uses the plugin's current version.
pub async fn handle(client: &Client, slot: &Slot, msg: async_nats::Message) {
    let started = Instant::now();
    let mut plugin = slot.current();
    let span = tracing::debug_span!(
        "message",
        plugin = %plugin.name,
        subject = %msg.subject,
        attempt = field::Empty,
        outcome = field::Empty,
        duration_us = field::Empty,
    );
    async {
        let mut attempt = 1;
        loop {
            let input = bus::to_message(&msg, attempt);
            let failure = match plugin.call(&input).await {
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
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    plugin = slot.current();
                }
                Decision::DeadLetter(kind) => {
                    let letter =
                        DeadLetter::of(&plugin, &msg, kind, &failure.message, attempt, None);
                    let subject = letter.subject(&plugin.settings.dead_letter_prefix);
                    if publish_dead_letter(client, subject, &letter, &msg).await {
                        slot.counters.dead_lettered(kind);
                    }
                    finish(&span, attempt, kind.as_str(), started);
                    return;
                }
            }
        }
    }
    .instrument(span.clone())
    .await
}

/// Publishes a dead letter, trying again while the connection is down: a
/// dead letter is never dropped silently. Returns whether it was published.
async fn publish_dead_letter(
    client: &Client,
    subject: String,
    letter: &DeadLetter<'_>,
    msg: &async_nats::Message,
) -> bool {
    let mut delay = std::time::Duration::from_millis(50);
    for _ in 0..10 {
        match client
            .publish_with_headers(subject.clone(), letter.headers(), msg.payload.clone())
            .await
        {
            Ok(()) => return true,
            Err(err) => {
                tracing::warn!(error = %err, dead_letter = %subject, "cannot publish dead letter; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
    tracing::error!(dead_letter = %subject, subject = %msg.subject, "dead letter lost: NATS refused it ten times");
    false
}

fn finish(span: &tracing::Span, attempt: u32, outcome: &str, started: Instant) {
    span.record("attempt", attempt);
    span.record("outcome", outcome);
    span.record("duration_us", started.elapsed().as_micros() as u64);
}
