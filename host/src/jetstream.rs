//! JetStream delivery: a plugin's durable pull consumers (one per subject,
//! explicit acks), and the life of one message on them. Outputs are published
//! with a stable `Nats-Msg-Id` and their publish acks awaited, the handled id
//! is recorded, and only then is the input acked; failures are NAKed with the
//! backoff delay or dead-lettered and TERMed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use async_nats::jetstream::{self, AckKind, kv, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SelectAll;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::bus;
use crate::config::JetStreamSettings;
use crate::consumers;
use crate::deadletter::DeadLetter;
use crate::dedup;
use crate::dispatch::{Control, Slot};
use crate::idempotency::KeySource;
use crate::lane::{InFlight, cores, lane_limits};
use crate::outcome::{Decision, Failure, FailureKind, decide};
use crate::plugin::Plugin;

/// The JetStream side of one plugin: context, consumers, dedup bucket.
struct Binding {
    js: jetstream::Context,
    stream: stream::Stream,
    consumers: Vec<PullConsumer>,
    /// The consumers' `ack_wait` as the server holds it: the pace of
    /// in-progress acks.
    ack_wait: Duration,
    /// Consumers of subjects the manifest no longer names: deleted once the
    /// lanes that pulled from them have finished.
    remove: Vec<String>,
    dedup: Option<kv::Store>,
    captures: Captures,
}

/// How long the answer to "does a stream capture this subject?" is trusted.
const CAPTURE_TTL: Duration = Duration::from_secs(10);
/// Most subjects remembered; past that the memory starts over.
const CAPTURE_MAX: usize = 10_000;

/// Which subjects a stream captures, asked of the server and remembered for
/// [`CAPTURE_TTL`]. Publishing a JetStream message to a subject no stream
/// captures would be delivered to plain subscribers and then wait for an
/// ack that never comes, so the host asks first.
#[derive(Default)]
pub struct Captures {
    known: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Captures {
    /// Whether some stream captures `subject`.
    pub async fn captured(&self, js: &jetstream::Context, subject: &str) -> Result<bool, String> {
        if let Some((captured, at)) = self.known.lock().unwrap().get(subject)
            && at.elapsed() < CAPTURE_TTL
        {
            return Ok(*captured);
        }
        let captured = match js.stream_by_subject(subject).await {
            Ok(_) => true,
            Err(err) if err.kind() == GetStreamByNameErrorKind::NotFound => false,
            Err(err) => return Err(format!("cannot ask which stream captures {subject}: {err}")),
        };
        let mut known = self.known.lock().unwrap();
        if known.len() >= CAPTURE_MAX {
            known.clear();
        }
        known.insert(subject.to_string(), (captured, Instant::now()));
        Ok(captured)
    }
}

/// Finds (or, where the manifest asks, creates) the plugin's stream, dead
/// letter stream and dedup bucket, and creates or updates one durable consumer
/// per subject (see `consumers.rs`). A consumer takes one `filter_subject`,
/// which every server version honours.
async fn bind(
    client: &Client,
    plugin: &Plugin,
    settings: &JetStreamSettings,
) -> anyhow::Result<Binding> {
    let js = jetstream::new(client.clone());
    let stream = match &settings.create_stream {
        Some(subjects) => js
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: subjects.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create stream {}", settings.stream))?,
        None => js.get_stream(&settings.stream).await.with_context(|| {
            format!(
                "stream {} not found (create it, or set delivery.create_stream = true with stream_subjects)",
                settings.stream
            )
        })?,
    };
    if let Some((name, true)) = &settings.dead_letter_stream {
        js.get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}>", plugin.settings.dead_letter_prefix)],
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create dead-letter stream {name}"))?;
    }
    let bound = consumers::reconcile(
        &stream,
        &plugin.name,
        &plugin.subjects,
        &consumers::Wanted {
            durable: settings.durable.clone(),
            ack_wait: settings.ack_wait,
            max_ack_pending: (plugin.settings.concurrency * 64).max(1000) as i64,
            max_deliver: consumers::max_deliver(plugin.settings.max_attempts),
            start: settings.start,
        },
    )
    .await?;
    let dedup = match &settings.dedup {
        None => None,
        Some(_) => Some(
            crate::kv_bucket::open_or_create(&js, &settings.dedup_bucket, Some(settings.dedup_ttl))
                .await?,
        ),
    };
    Ok(Binding {
        js,
        stream,
        consumers: bound.consumers,
        ack_wait: bound.ack_wait,
        remove: bound.remove,
        dedup,
        captures: Captures::default(),
    })
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

/// Lanes pulling from one binding with one concurrency.
struct Lanes {
    binding: Arc<Binding>,
    /// What the binding was made for: a change of any rebinds.
    subjects: Vec<String>,
    settings: JetStreamSettings,
    /// The consumers' `max_deliver` follows it.
    max_attempts: u32,
    concurrency: usize,
    stop: CancellationToken,
    running: TaskTracker,
}

impl Lanes {
    /// Opens each lane's pull streams on `binding` (several pullers share a
    /// consumer, the server splits its messages), then starts the lanes.
    async fn start(
        client: &Client,
        slot: &Arc<Slot>,
        binding: Arc<Binding>,
        settings: &JetStreamSettings,
        leaving: &Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let plugin = slot.current();
        let concurrency = plugin.settings.concurrency;
        let pull_batch = settings.pull_batch;
        let limits = lane_limits(concurrency, cores());
        let mut pulls = Vec::with_capacity(limits.len());
        for &limit in &limits {
            // Each lane asks for its share of the batch, and for at least as
            // many messages as it may run at once.
            let batch = (pull_batch / limits.len()).max(limit).max(1);
            pulls.push((pull_all(&binding, batch).await?, batch));
        }
        let stop = CancellationToken::new();
        let running = TaskTracker::new();
        for ((messages, batch), limit) in pulls.into_iter().zip(limits) {
            running.spawn(lane(
                client.clone(),
                slot.clone(),
                binding.clone(),
                messages,
                Share { limit, batch },
                stop.clone(),
                leaving.clone(),
            ));
        }
        running.close();
        Ok(Lanes {
            binding,
            subjects: plugin.subjects.clone(),
            settings: settings.clone(),
            max_attempts: plugin.settings.max_attempts,
            concurrency,
            stop,
            running,
        })
    }

    /// Stops the lanes; once they have finished what they started, deletes
    /// the consumers `fresh` no longer uses (subjects removed from the
    /// manifest), in a task tracked by `retiring`.
    fn retire(self, plugin: &Plugin, remove: Vec<String>, retiring: &TaskTracker) {
        self.stop.cancel();
        let name = plugin.name.to_string();
        retiring.spawn(async move {
            self.running.wait().await;
            if !remove.is_empty() {
                consumers::remove(&self.binding.stream, &name, &remove).await;
            }
        });
    }
}

/// Serves one JetStream plugin until told to stop, in lanes that each pull
/// and run their share of the plugin's `concurrency`. A reload that changes
/// the subjects or any JetStream setting rebinds (creating or updating the
/// consumers on the server) and starts new lanes before the old ones stop; the
/// consumers of removed subjects are deleted once the old lanes have finished.
/// A reload that changes only `concurrency` starts new lanes on the same
/// consumers. On `Stop` every lane stops pulling, hands back what it pulled but
/// did not start, finishes (and acks) what it started, and this returns.
pub async fn serve(
    client: Client,
    slot: Arc<Slot>,
    mut control: mpsc::Receiver<Control>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let plugin = slot.current();
    let Some(settings) = plugin.settings.jetstream.clone() else {
        return;
    };
    let retiring = TaskTracker::new();
    let leaving = Arc::new(AtomicBool::new(false));
    let started = async {
        let binding = Arc::new(bind(&client, &plugin, &settings).await?);
        Lanes::start(&client, &slot, binding, &settings, &leaving).await
    };
    let mut lanes = match started.await {
        Ok(lanes) => lanes,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // Subjects removed while this task was not running (a restart, or an
    // earlier version of the host) have no lanes: delete their consumers now.
    if !lanes.binding.remove.is_empty() {
        consumers::remove(&lanes.binding.stream, &plugin.name, &lanes.binding.remove).await;
    }
    while let Some(Control::Resubscribe) = control.recv().await {
        let current = slot.current();
        let Some(settings) = current.settings.jetstream.clone() else {
            continue;
        };
        let rebind = current.subjects != lanes.subjects
            || settings != lanes.settings
            || current.settings.max_attempts != lanes.max_attempts;
        if !rebind && current.settings.concurrency == lanes.concurrency {
            continue;
        }
        let fresh = async {
            let binding = if rebind {
                Arc::new(bind(&client, &current, &settings).await?)
            } else {
                lanes.binding.clone()
            };
            Lanes::start(&client, &slot, binding, &settings, &leaving).await
        };
        match fresh.await {
            Ok(fresh) => {
                let remove = if rebind {
                    fresh.binding.remove.clone()
                } else {
                    Vec::new()
                };
                std::mem::replace(&mut lanes, fresh).retire(&current, remove, &retiring);
            }
            Err(err) => tracing::error!(
                plugin = %current.name, error = crate::errors::one_line(&format!("{err:#}")),
                "cannot bind the new subjects; keeping the old ones"
            ),
        }
    }
    leaving.store(true, Ordering::Relaxed);
    lanes.stop.cancel();
    lanes.running.wait().await;
    retiring.close();
    retiring.wait().await;
}

/// A lane's part of its plugin's work.
#[derive(Clone, Copy)]
struct Share {
    /// Messages in flight at most.
    limit: usize,
    /// Messages asked for per pull request.
    batch: usize,
}

/// One lane: takes a pulled message only while fewer than `limit` are in
/// flight, and drives those in flight inside this task. On `stop` it hands
/// back the messages it pulled but did not start and finishes the others.
async fn lane(
    client: Client,
    slot: Arc<Slot>,
    binding: Arc<Binding>,
    mut messages: Messages,
    Share { limit, batch }: Share,
    stop: CancellationToken,
    leaving: Arc<AtomicBool>,
) {
    let mut in_flight = InFlight::default();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    // After an error the lane pauses pulling (the handlers keep running).
    let pause = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(pause);
    let mut paused = false;
    let mut ended = false;
    loop {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            () = &mut stopped => break,
            () = &mut pause, if paused => {
                paused = false;
                if ended {
                    match pull_all(&binding, batch).await {
                        Ok(m) => { messages = m; ended = false; }
                        Err(_) => pause_for(&mut pause, &mut paused, Duration::from_millis(500)),
                    }
                }
            }
            next = messages.next(), if !paused && in_flight.len() < limit => match next {
                Some(Ok(msg)) => in_flight.start(Box::pin(handle(&client, &binding, &slot, msg))).await,
                Some(Err(err)) => {
                    // Missed heartbeats and the like while NATS is away: the
                    // pull stream recovers by itself once it is back.
                    tracing::warn!(plugin = %slot.current().name, error = %err, "JetStream pull interrupted");
                    pause_for(&mut pause, &mut paused, Duration::from_millis(200));
                }
                None => {
                    ended = true;
                    pause_for(&mut pause, &mut paused, Duration::from_millis(500));
                }
            },
        }
    }
    let finish = in_flight.finish();
    let hand_back = async {
        let returned = hand_back(&mut messages, batch, leaving.load(Ordering::Relaxed)).await;
        drop(messages);
        if returned > 0 {
            tracing::info!(plugin = %slot.current().name, returned, "returned pulled messages not yet started");
        }
    };
    tokio::join!(finish, hand_back);
}

fn pause_for(pause: &mut std::pin::Pin<&mut tokio::time::Sleep>, paused: &mut bool, d: Duration) {
    pause.as_mut().reset(tokio::time::Instant::now() + d);
    *paused = true;
}

/// NAKs the messages pulled but not started. When the plugin is `leaving`
/// (removed, or the host stopping) they come back after a delay that outlasts
/// this host's open pull requests, so the server gives them to another host;
/// after a reload they come back at once, to the new lanes. The stream holds
/// at most a batch and its refill. Returns how many were handed back.
async fn hand_back(messages: &mut Messages, batch: usize, leaving: bool) -> usize {
    let delay = leaving.then_some(PULL_EXPIRES + Duration::from_secs(1));
    let mut returned = 0;
    for _ in 0..2 * batch {
        match tokio::time::timeout(Duration::from_millis(50), messages.next()).await {
            Ok(Some(Ok(msg))) => {
                if msg.ack_with(AckKind::Nak(delay)).await.is_ok() {
                    returned += 1;
                }
            }
            _ => break,
        }
    }
    returned
}

/// Handles one delivery: dedup check, the handler call (with in-progress acks
/// while it runs), then publish + record + ack, or NAK, or dead letter + TERM.
async fn handle(client: &Client, binding: &Binding, slot: &Slot, msg: jetstream::Message) {
    let plugin = slot.current();
    let Some(settings) = plugin.settings.jetstream.as_ref() else {
        return;
    };
    let (stream, seq, attempt) = match msg.info() {
        Ok(info) => (
            info.stream,
            info.stream_sequence,
            info.delivered.max(1) as u32,
        ),
        Err(err) => {
            tracing::warn!(plugin = %plugin.name, error = %err, "JetStream message without metadata; terminating it");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let span = tracing::debug_span!(
        "message",
        plugin = %plugin.name,
        subject = %msg.subject,
        attempt,
        stream = %stream,
        seq,
        outcome = field::Empty,
        duration_us = field::Empty,
    );
    // Timed only when someone listens, as on core NATS.
    let started = (!span.is_disabled()).then(Instant::now);
    let outcome: &'static str = async {
        // A JetStream message's reply subject is its ack subject, not a
        // requester: the handler must not see it (or be allowed to publish there).
        // The key is made from the dedup id, read from the message as the
        // handler sees it: the headers are listed once, for both.
        let mut input = bus::to_message(&msg.message, attempt);
        input.reply_to = None;
        let id = settings.dedup.as_ref().and_then(|k| k.extract(&input.headers, input.payload));
        let idempotency = KeySource::jetstream(id.clone(), stream, seq);
        let key = id.as_deref().map(|id| dedup::bucket_key(&plugin.name, id));
        if let (Some(store), Some(key)) = (&binding.dedup, &key) {
            match store.get(key.as_str()).await {
                Ok(Some(_)) => {
                    tracing::info!(plugin = %plugin.name, id = id.as_deref().unwrap_or(""), "duplicate: already handled; acking");
                    ack(&msg).await;
                    slot.counters.duplicate();
                    return "duplicate";
                }
                Ok(None) => {}
                Err(err) => {
                    let delay = plugin.settings.backoff.delay(attempt, rand::random::<f64>());
                    tracing::warn!(plugin = %plugin.name, error = %err, "cannot read the dedup bucket; retrying later");
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                    return "nak";
                }
            }
        }

        let result = with_progress(&msg, binding.ack_wait, plugin.call(&input, &idempotency)).await;
        let failure = match result {
            Ok(outputs) => {
                let msg_id_base = match &id {
                    _ if outputs.is_empty() => String::new(),
                    Some(id) => format!("{}:{id}", plugin.name),
                    None => format!("{}:{stream}:{seq}", plugin.name),
                };
                match publish_outputs(client, binding, outputs, msg.headers.as_ref(), &msg_id_base).await {
                    Ok(()) => {
                        if let (Some(store), Some(key)) = (&binding.dedup, &key)
                            && let Err(err) = store.put(key.as_str(), Bytes::from_static(b"1")).await
                        {
                            // The outputs carry stable ids: a redelivery re-publishes
                            // them as duplicates the stream drops.
                            tracing::warn!(plugin = %plugin.name, error = %err, "cannot record the handled id");
                        }
                        ack(&msg).await;
                        slot.counters.handled();
                        return "ok";
                    }
                    Err(err) => Failure::new(FailureKind::Transient, format!("cannot publish outputs: {err}")),
                }
            }
            Err(failure) => failure,
        };
        match decide(failure.kind, attempt, plugin.settings.max_attempts) {
            Decision::Retry => {
                slot.counters.retry();
                let delay = plugin.retry_delay(attempt, &failure, "attempt failed; NAK with delay");
                if let Err(err) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(error = %err, "cannot NAK; the server redelivers after ack_wait");
                }
                "retry"
            }
            Decision::DeadLetter(kind) => {
                let letter = DeadLetter::of(&plugin, &msg.message, kind, &failure.message, attempt, Some((stream, seq)));
                let subject = letter.subject(&plugin.settings.dead_letter_prefix);
                let (headers, payload) = letter.message(&msg.payload, client.server_info().max_payload);
                match Box::pin(publish_durably(client, &binding.js, &binding.captures, subject.clone(), headers, payload)).await {
                    Ok(()) => {
                        if let Err(err) = msg.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %err, "cannot TERM a dead-lettered message");
                        }
                        slot.counters.dead_lettered(kind);
                        kind.as_str()
                    }
                    Err(err) => {
                        // Never lose it: leave it to be delivered again.
                        let delay = plugin.settings.backoff.delay(attempt, rand::random::<f64>());
                        tracing::error!(error = %err, dead_letter = %subject, "cannot publish the dead letter; NAK");
                        let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                        "nak"
                    }
                }
            }
        }
    }
    .instrument(span.clone())
    .await;
    if let Some(started) = started {
        span.record("outcome", outcome);
        span.record("duration_us", started.elapsed().as_micros() as u64);
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

/// Publishes outputs in order, each with `Nats-Msg-Id` = `<base>:<index>`,
/// through JetStream (awaiting the ack) where a stream captures the subject.
async fn publish_outputs(
    client: &Client,
    binding: &Binding,
    outputs: Vec<crate::runtime::Outgoing>,
    input: Option<&HeaderMap>,
    msg_id_base: &str,
) -> Result<(), String> {
    for (index, out) in outputs.into_iter().enumerate() {
        let mut headers = bus::output_headers(&out, input);
        headers.insert("Nats-Msg-Id", format!("{msg_id_base}:{index}").as_str());
        publish_durably(
            client,
            &binding.js,
            &binding.captures,
            out.subject,
            headers,
            Bytes::from(out.payload),
        )
        .await?;
    }
    Ok(())
}

/// Publishes through JetStream and waits for the ack where a stream captures
/// the subject; elsewhere publishes on core NATS and flushes.
pub async fn publish_durably(
    client: &Client,
    js: &jetstream::Context,
    captures: &Captures,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<(), String> {
    if captures.captured(js, &subject).await? {
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|e| format!("{subject}: {e}"))?;
        ack.await.map(|_| ()).map_err(|e| format!("{subject}: {e}"))
    } else {
        client
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())
    }
}
