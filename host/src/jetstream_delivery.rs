//! JetStream delivery: lanes pulling from a plugin's durable consumers
//! (explicit acks), and the life of one message on them. A message whose
//! dedup id was already handled is acked without a call. While the handler
//! runs, the server is told the message is in progress. Outputs are published
//! with a stable `Nats-Msg-Id` and their publish acks awaited, the handled id
//! is recorded, and only then is the input acked; a failed attempt is NAKed
//! with its backoff delay, a dead letter is stored and the input TERMed. A
//! lane that stops hands back what it pulled and did not start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{self, AckKind};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SelectAll;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus;
use crate::consumers;
use crate::deadletter::DeadLetter;
use crate::dedup;
use crate::delivery::{Delivery, Lettered, Retried, Screened, Settled};
use crate::driver;
use crate::durable_publish::publish_durably;
use crate::idempotency::KeySource;
use crate::jetstream_binding::{BindPlan, Binding, bind};
use crate::lane::{self, AfterStop, Intake, cores, lane_limits};
use crate::outcome::Failure;
use crate::plugin::Plugin;
use crate::replicas::Replicas;
use crate::runtime::Outgoing;
use crate::serve::Mode;
use crate::slot::Slot;

/// JetStream as a [`Mode`]: lanes pulling from durable consumers.
pub struct JetStream {
    client: Client,
    /// The replica count of the streams and buckets a binding creates.
    replicas: Replicas,
    /// Set when the plugin leaves this host: messages handed back then come
    /// back after a delay, so the server gives them to another host.
    leaving: Arc<AtomicBool>,
}

impl JetStream {
    /// Serving on `client`'s connection; what a binding creates gets
    /// `replicas` copies.
    pub fn new(client: Client, replicas: Replicas) -> Self {
        JetStream {
            client,
            replicas,
            leaving: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Mode for JetStream {
    type Plan = BindPlan;
    type Shared = Binding;

    fn plan(&self, plugin: &Plugin) -> Option<BindPlan> {
        BindPlan::of(plugin)
    }

    /// A plan differs from the last in what the server holds (subjects,
    /// settings, `max_deliver`, `max_ack_pending`): always bind anew.
    async fn share(
        &self,
        plugin: &Plugin,
        plan: &BindPlan,
        _: Option<(&BindPlan, &Arc<Binding>)>,
    ) -> anyhow::Result<(Arc<Binding>, bool)> {
        Ok((
            Arc::new(bind(&self.client, plugin, plan, self.replicas).await?),
            true,
        ))
    }

    /// Opens each lane's pull streams (several pullers share a consumer, the
    /// server splits its messages), then starts the lanes.
    async fn start_lanes(
        &self,
        slot: &Arc<Slot>,
        plan: &BindPlan,
        binding: &Arc<Binding>,
        stop: &CancellationToken,
        running: &TaskTracker,
    ) -> anyhow::Result<()> {
        let limits = lane_limits(plan.concurrency, cores());
        let mut pulls = Vec::with_capacity(limits.len());
        for &limit in &limits {
            // Each lane asks for its share of the batch, and for at least as
            // many messages as it may run at once.
            let batch = (plan.settings.pull_batch / limits.len()).max(limit).max(1);
            let leaving = self.leaving.clone();
            pulls.push(Pulls::open(&slot.current().name, binding.clone(), batch, leaving).await?);
        }
        let pending = Arc::new(Pending::of(slot, binding));
        for (pulls, limit) in pulls.into_iter().zip(limits) {
            let (client, slot, binding) = (self.client.clone(), slot.clone(), binding.clone());
            let (stop, pending) = (stop.clone(), pending.clone());
            running.spawn(async move {
                lane::run(pulls, limit, stop, |msg| {
                    let pulled = Pulled::new(&client, &binding, msg, &pending);
                    Box::pin(driver::handle(&slot, pulled))
                })
                .await
            });
        }
        Ok(())
    }

    /// Deletes the consumers of subjects the manifest no longer names.
    async fn tidy(&self, plugin: &str, binding: Arc<Binding>) {
        if !binding.remove.is_empty() {
            consumers::remove(&binding.stream, plugin, &binding.remove).await;
        }
    }

    fn leaving(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }
}

/// The pending-messages gauge of each consumer of a binding, set from the
/// count the server sends with every message (and, at bind, from the
/// consumer's info). Lanes pull at once, so messages reach `note` out of
/// order: only the count sent with the latest delivery (the highest
/// consumer sequence seen) is kept, or a slow lane would leave the count of
/// an earlier one behind.
struct Pending(Vec<(String, Gauge, Mutex<u64>)>);

impl Pending {
    fn of(slot: &Slot, binding: &Binding) -> Self {
        let stream = &binding.stream.cached_info().config.name;
        Pending(
            binding
                .consumers
                .iter()
                .map(|c| {
                    let info = c.cached_info();
                    let gauge = slot.counters.consumer_pending(stream, &info.name);
                    gauge.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    (info.name.clone(), gauge, Mutex::new(0))
                })
                .collect(),
        )
    }

    /// The server's `pending` count sent with delivery `sequence` (the
    /// consumer's) of `consumer`.
    fn note(&self, consumer: &str, sequence: u64, pending: u64) {
        if let Some((_, gauge, latest)) = self.0.iter().find(|(name, ..)| name == consumer) {
            let mut latest = latest.lock().unwrap_or_else(|e| e.into_inner());
            if sequence > *latest {
                *latest = sequence;
                gauge.set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
    }
}

type Messages = SelectAll<pull::Stream>;

/// How long one pull request waits on the server. Bounds how long a
/// stopped host's last requests can still swallow a redelivery.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Pull streams on every consumer of `binding`, asking for `batch` messages
/// per request.
async fn pull_all(binding: &Binding, batch: usize) -> anyhow::Result<Messages> {
    let mut all = SelectAll::new();
    for consumer in &binding.consumers {
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_EXPIRES / 3)
            .messages()
            .await
            .context("cannot pull from the consumer")?;
        all.push(messages);
    }
    Ok(all)
}

/// A lane's pull streams as its [`Intake`]. After an error it pauses pulling
/// (the handlers keep running); a stream that ended is opened again.
struct Pulls {
    plugin: String,
    binding: Arc<Binding>,
    messages: Messages,
    batch: usize,
    /// Until when pulling pauses, if it does.
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The streams ended: open them again after the pause.
    ended: bool,
    leaving: Arc<AtomicBool>,
}

impl Pulls {
    async fn open(
        plugin: &str,
        binding: Arc<Binding>,
        batch: usize,
        leaving: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        Ok(Pulls {
            plugin: plugin.to_string(),
            messages: pull_all(&binding, batch).await?,
            binding,
            batch,
            pause: None,
            ended: false,
            leaving,
        })
    }

    fn pause_for(&mut self, d: Duration) {
        self.pause = Some(Box::pin(tokio::time::sleep(d)));
    }
}

impl Intake for Pulls {
    type Message = jetstream::Message;

    /// Cancel-safe: the pause is kept in `self`, and a reopening cut short
    /// is tried again.
    async fn next(&mut self) -> Option<jetstream::Message> {
        loop {
            if let Some(pause) = &mut self.pause {
                pause.as_mut().await;
                self.pause = None;
            }
            if self.ended {
                match pull_all(&self.binding, self.batch).await {
                    Ok(messages) => {
                        self.messages = messages;
                        self.ended = false;
                    }
                    Err(_) => {
                        self.pause_for(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            match self.messages.next().await {
                Some(Ok(msg)) => return Some(msg),
                Some(Err(err)) => {
                    // Missed heartbeats and the like while NATS is away: the
                    // pull stream recovers by itself once it is back.
                    tracing::warn!(plugin = %self.plugin, error = %err, "JetStream pull interrupted");
                    self.pause_for(Duration::from_millis(200));
                }
                None => {
                    self.ended = true;
                    self.pause_for(Duration::from_millis(500));
                }
            }
        }
    }

    async fn stop(&mut self) -> AfterStop {
        AfterStop::Leave
    }

    /// NAKs the messages pulled but not started. When the plugin is leaving
    /// (removed, or the host stopping) they come back after a delay that
    /// outlasts this host's open pull requests, so the server gives them to
    /// another host; after a reload they come back at once, to the new lanes.
    /// The stream holds at most a batch and its refill.
    async fn hand_back(mut self) {
        let leaving = self.leaving.load(Ordering::Relaxed);
        let delay = leaving.then_some(PULL_EXPIRES + Duration::from_secs(1));
        let mut returned = 0;
        for _ in 0..2 * self.batch {
            match tokio::time::timeout(Duration::from_millis(50), self.messages.next()).await {
                Ok(Some(Ok(msg))) => {
                    if msg.ack_with(AckKind::Nak(delay)).await.is_ok() {
                        returned += 1;
                    }
                }
                _ => break,
            }
        }
        if returned > 0 {
            tracing::info!(plugin = %self.plugin, returned, "returned pulled messages not yet started");
        }
    }
}

/// One JetStream delivery of a message.
pub struct Pulled<'a> {
    client: &'a Client,
    binding: &'a Binding,
    msg: jetstream::Message,
    /// The stream, sequence and delivery count the server sent with it.
    at: Option<(String, u64, u32)>,
    /// The message's dedup id, where the manifest names one and it has it.
    dedup_id: Option<String>,
}

impl<'a> Pulled<'a> {
    fn new(
        client: &'a Client,
        binding: &'a Binding,
        msg: jetstream::Message,
        pending: &Pending,
    ) -> Self {
        let at = msg.info().ok().map(|i| {
            pending.note(i.consumer, i.consumer_sequence, i.pending);
            (
                i.stream.to_string(),
                i.stream_sequence,
                i.delivered.max(1) as u32,
            )
        });
        Pulled {
            client,
            binding,
            msg,
            at,
            dedup_id: None,
        }
    }

    /// The message as the handler sees it. A JetStream message's reply
    /// subject is its ack subject, not a requester: the handler must not see
    /// it (or be allowed to publish there).
    fn input(&self) -> crate::runtime::MessageRef<'_> {
        let mut input = bus::to_message(&self.msg.message, self.attempt());
        input.reply_to = None;
        input
    }

    async fn nak(&self, delay: Duration) {
        if let Err(err) = self.msg.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(error = %err, "cannot NAK; the server redelivers after ack_wait");
        }
    }
}

impl Delivery for Pulled<'_> {
    const RETRY_LOG: &'static str = "attempt failed; NAK with delay";

    fn message(&self) -> &async_nats::Message {
        &self.msg.message
    }

    fn attempt(&self) -> u32 {
        self.at.as_ref().map_or(1, |at| at.2)
    }

    fn stored_at(&self) -> Option<(&str, u64)> {
        self.at
            .as_ref()
            .map(|(stream, seq, _)| (stream.as_str(), *seq))
    }

    /// Terminates a message without metadata; acks one whose dedup id is
    /// recorded as handled.
    async fn screen(&mut self, plugin: &Plugin) -> Screened {
        if self.at.is_none() {
            tracing::warn!(plugin = %plugin.name, "JetStream message without metadata; terminating it");
            let _ = self.msg.ack_with(AckKind::Term).await;
            return Screened::Settled(Settled::Terminated);
        }
        let Some(settings) = plugin.settings.jetstream.as_ref() else {
            return Screened::Call;
        };
        let id = settings.dedup.as_ref().and_then(|k| {
            let input = self.input();
            k.extract(&input.headers, input.payload)
        });
        self.dedup_id = id;
        let (Some(store), Some(id)) = (&self.binding.dedup, &self.dedup_id) else {
            return Screened::Call;
        };
        match store
            .get(dedup::bucket_key(&plugin.name, id).as_str())
            .await
        {
            Ok(Some(_)) => {
                tracing::info!(plugin = %plugin.name, id = %id, "duplicate: already handled; acking");
                ack(&self.msg).await;
                Screened::Settled(Settled::Duplicate)
            }
            Ok(None) => Screened::Call,
            Err(err) => {
                let delay = plugin
                    .settings
                    .backoff
                    .delay(self.attempt(), rand::random::<f64>());
                tracing::warn!(plugin = %plugin.name, error = %err, "cannot read the dedup bucket; retrying later");
                let _ = self.msg.ack_with(AckKind::Nak(Some(delay))).await;
                Screened::Settled(Settled::Redelivered)
            }
        }
    }

    async fn call(&self, plugin: &Plugin) -> Result<Vec<Outgoing>, Failure> {
        let (stream, seq) = self.stored_at().unwrap_or(("", 0));
        let key = KeySource::jetstream(self.dedup_id.clone(), stream, seq);
        with_progress(
            &self.msg,
            self.binding.ack_wait,
            plugin.call(&self.input(), &key),
        )
        .await
    }

    /// Publishes the outputs (each stored before the next), records the
    /// handled id, then acks the input.
    async fn complete(&self, plugin: &Plugin, outputs: Vec<Outgoing>) -> Result<(), String> {
        let (stream, seq) = self.stored_at().unwrap_or(("", 0));
        let msg_id_base = match &self.dedup_id {
            _ if outputs.is_empty() => String::new(),
            Some(id) => format!("{}:{id}", plugin.name),
            None => format!("{}:{stream}:{seq}", plugin.name),
        };
        // Each payload moved into `Bytes` once: a try again clones a
        // reference, not the bytes.
        let outputs: Vec<(Outgoing, Bytes)> = outputs
            .into_iter()
            .map(|mut out| {
                let payload = Bytes::from(std::mem::take(&mut out.payload));
                (out, payload)
            })
            .collect();
        let publish = store_outputs(
            self.client,
            self.binding,
            &outputs,
            self.msg.headers.as_ref(),
            &msg_id_base,
            &plugin.name,
        );
        with_progress(&self.msg, self.binding.ack_wait, publish).await?;
        if let (Some(store), Some(id)) = (&self.binding.dedup, &self.dedup_id)
            && let Err(err) = store
                .put(
                    dedup::bucket_key(&plugin.name, id).as_str(),
                    Bytes::from_static(b"1"),
                )
                .await
        {
            // The outputs carry stable ids: a redelivery re-publishes them as
            // duplicates the stream drops.
            tracing::warn!(plugin = %plugin.name, error = %err, "cannot record the handled id");
        }
        ack(&self.msg).await;
        Ok(())
    }

    /// NAKs with the delay: the server delivers it again.
    async fn retry(&mut self, delay: Duration) -> Retried {
        self.nak(delay).await;
        Retried::Later
    }

    /// Stores the dead letter, then TERMs the input; if the letter cannot be
    /// stored, NAKs the input instead, so nothing is lost.
    async fn dead_letter(
        &self,
        plugin: &Plugin,
        letter: &DeadLetter<'_>,
        subject: String,
    ) -> Lettered {
        let (headers, payload) =
            letter.message(&self.msg.payload, self.client.server_info().max_payload);
        let stored = publish_durably(
            self.client,
            &self.binding.js,
            &self.binding.captures,
            subject.clone(),
            headers,
            payload,
        )
        .await;
        match stored {
            Ok(()) => {
                if let Err(err) = self.msg.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %err, "cannot TERM a dead-lettered message");
                }
                Lettered::Published
            }
            Err(err) => {
                let delay = plugin
                    .settings
                    .backoff
                    .delay(self.attempt(), rand::random::<f64>());
                tracing::error!(error = %err, dead_letter = %subject, "cannot publish the dead letter; NAK");
                self.nak(delay).await;
                Lettered::Redelivered
            }
        }
    }
}

/// Acks the input. Its outputs are already stored (publish acks awaited) and
/// its id recorded, so an ack lost with the connection costs only a
/// redelivery, which the dedup bucket or the outputs' `Nats-Msg-Id`s absorb.
/// A plain ack keeps the hot path to one message on the wire.
async fn ack(msg: &jetstream::Message) {
    if let Err(err) = msg.ack().await {
        tracing::warn!(error = %err, "cannot ack; the message will be redelivered");
    }
}

/// Runs `work`, telling the server the message is in progress every third of
/// `ack_wait`, so a long handler is not redelivered under its feet.
async fn with_progress<T>(
    msg: &jetstream::Message,
    ack_wait: Duration,
    work: impl Future<Output = T>,
) -> T {
    let keep_alive = async {
        loop {
            tokio::time::sleep(ack_wait / 3).await;
            let _ = msg.ack_with(AckKind::Progress).await;
        }
    };
    // The work first: most calls finish on their first poll, and then the
    // keep-alive timer is never armed.
    tokio::select! {
        biased;
        out = work => out,
        never = keep_alive => never,
    }
}

/// How long a handled message's outputs are published again when storing
/// them fails (a stream without a leader while its servers elect one took up
/// to 8.5 s on a three-server cluster; a server restarting): the handler
/// succeeded, so its outputs are sent again, under the same `Nats-Msg-Id`s
/// (the stream drops what it already has), instead of the message being
/// handled again and spending its attempts. Past this, the failure is the
/// attempt's, as before.
const OUTPUT_STORE_PATIENCE: Duration = Duration::from_secs(20);

/// [`publish_outputs`], tried again with a growing pause (100 ms doubling
/// to 2 s) for up to [`OUTPUT_STORE_PATIENCE`].
async fn store_outputs(
    client: &Client,
    binding: &Binding,
    outputs: &[(Outgoing, Bytes)],
    input: Option<&HeaderMap>,
    msg_id_base: &str,
    plugin: &str,
) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut first = true;
    loop {
        match publish_outputs(client, binding, outputs, input, msg_id_base).await {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() + pause < OUTPUT_STORE_PATIENCE => {
                if std::mem::take(&mut first) {
                    tracing::info!(
                        plugin, error = %err,
                        "cannot store the outputs yet; publishing them again for up to {}s",
                        OUTPUT_STORE_PATIENCE.as_secs()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Publishes outputs (with their payloads as `Bytes`) in order, each with `Nats-Msg-Id` = `<base>:<index>`,
/// through JetStream (awaiting the ack) where a stream captures the subject.
async fn publish_outputs(
    client: &Client,
    binding: &Binding,
    outputs: &[(Outgoing, Bytes)],
    input: Option<&HeaderMap>,
    msg_id_base: &str,
) -> Result<(), String> {
    for (index, (out, payload)) in outputs.iter().enumerate() {
        let mut headers = bus::output_headers(out, input);
        headers.insert("Nats-Msg-Id", format!("{msg_id_base}:{index}").as_str());
        publish_durably(
            client,
            &binding.js,
            &binding.captures,
            out.subject.clone(),
            headers,
            payload.clone(),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_count_of_the_latest_delivery_wins_whatever_the_order_noted() {
        let gauge = Gauge::default();
        let pending = Pending(vec![("c".to_string(), gauge.clone(), Mutex::new(0))]);
        // Deliveries 4 (1 left) and 5 (none left), noted by two lanes in the
        // wrong order: the count stays that of delivery 5.
        pending.note("c", 5, 0);
        pending.note("c", 4, 1);
        assert_eq!(gauge.get(), 0);
        // A redelivery is a later delivery: its count replaces it.
        pending.note("c", 6, 3);
        assert_eq!(gauge.get(), 3);
        // Another consumer's deliveries leave this one's gauge alone.
        pending.note("other", 9, 7);
        assert_eq!(gauge.get(), 3);
    }
}
