//! JetStream delivery: a plugin's durable pull consumers (one per subject,
//! explicit acks), and the life of one message on them. Outputs are published
//! with a stable `Nats-Msg-Id` and their publish acks awaited, the handled id
//! is recorded, and only then is the input acked; failures are NAKed with the
//! backoff delay or dead-lettered and TERMed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use async_nats::jetstream::{self, AckKind, kv, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SelectAll;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::bus;
use crate::config::JetStreamSettings;
use crate::deadletter::DeadLetter;
use crate::dedup;
use crate::dispatch::{Control, Slot};
use crate::outcome::{Decision, Failure, FailureKind, decide};
use crate::plugin::Plugin;

/// The JetStream side of one plugin: context, consumers, dedup bucket.
struct Binding {
    js: jetstream::Context,
    consumers: Vec<PullConsumer>,
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

/// The consumer name for the `index`-th of `count` subjects.
pub fn consumer_name(durable: &str, index: usize, count: usize) -> String {
    if count == 1 {
        durable.to_string()
    } else {
        format!("{durable}-{index}")
    }
}

/// Finds (or, where the manifest asks, creates) the plugin's stream, dead
/// letter stream and dedup bucket, and binds one durable consumer per subject.
/// A consumer takes one `filter_subject`, which every server version honours.
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
    let mut consumers = Vec::new();
    let count = plugin.subjects.len();
    for (index, subject) in plugin.subjects.iter().enumerate() {
        let name = consumer_name(&settings.durable, index, count);
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    deliver_policy: DeliverPolicy::All,
                    max_deliver: -1,
                    max_ack_pending: (plugin.settings.concurrency * 64).max(1000) as i64,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| {
                format!("cannot bind consumer {name} on stream {}", settings.stream)
            })?;
        consumers.push(consumer);
    }
    let dedup = match &settings.dedup {
        None => None,
        Some(_) => Some(dedup_bucket(&js, &settings.dedup_bucket, settings.dedup_ttl).await?),
    };
    Ok(Binding {
        js,
        consumers,
        dedup,
        captures: Captures::default(),
    })
}

/// Binds the key-value bucket of handled ids, creating it when missing. It is
/// created as its backing stream (the layout `create_key_value` uses), since
/// async-nats' account query does not parse nats-server 2.9's answer.
async fn dedup_bucket(
    js: &jetstream::Context,
    bucket: &str,
    ttl: Duration,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: ttl.min(Duration::from_secs(120)),
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create key-value bucket {bucket}"))?;
    js.get_key_value(bucket)
        .await
        .with_context(|| format!("cannot open key-value bucket {bucket}"))
}

type Messages = SelectAll<pull::Stream>;

/// How long one pull request waits on the server. Bounds how long a
/// stopped host's last requests can still swallow a redelivery.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

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

/// Serves one JetStream plugin until told to stop: pulls only when a handler
/// slot is free, handles each message in its own task, and on `Stop` stops
/// pulling, finishes what it took (acking it) and returns. A reload keeps the
/// consumers; new subjects bind new ones.
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
    let concurrency = plugin.settings.concurrency;
    let started = async {
        let binding = bind(&client, &plugin, &settings).await?;
        let messages = pull_all(&binding, concurrency).await?;
        anyhow::Ok((binding, messages))
    };
    let (binding, messages) = match started.await {
        Ok(started) => started,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut server = JsServer {
        client,
        slot,
        settings,
        binding: Arc::new(binding),
        messages,
        subjects: plugin.subjects.clone(),
        concurrency,
        limit: Arc::new(Semaphore::new(concurrency)),
    };
    let in_flight = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = server.limit.clone().acquire_owned() => permit.expect("semaphore never closes"),
            order = control.recv() => match order {
                Some(Control::Resubscribe) => { server.rebind().await; continue; }
                Some(Control::Stop) | None => break,
            },
        };
        let msg = tokio::select! {
            next = server.messages.next() => match next {
                Some(Ok(msg)) => msg,
                Some(Err(err)) => {
                    // Missed heartbeats and the like while NATS is away: the
                    // pull stream recovers by itself once it is back.
                    tracing::warn!(plugin = %server.slot.current().name, error = %err, "JetStream pull interrupted");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(m) = pull_all(&server.binding, server.concurrency).await {
                        server.messages = m;
                    }
                    continue;
                }
            },
            order = control.recv() => match order {
                Some(Control::Resubscribe) => { drop(permit); server.rebind().await; continue; }
                Some(Control::Stop) | None => break,
            },
        };
        let client = server.client.clone();
        let slot = server.slot.clone();
        let binding = server.binding.clone();
        in_flight.spawn(async move {
            handle(&client, &binding, &slot, msg).await;
            drop(permit);
        });
    }
    // Stop pulling. Messages already pulled but not started are handed back
    // (NAK) with a delay that outlasts this host's open pull requests, so the
    // server redelivers them to another host rather than to this one.
    // At most one batch (`concurrency` messages) can be waiting in the client.
    let mut returned = 0;
    for _ in 0..server.concurrency {
        match tokio::time::timeout(Duration::from_millis(50), server.messages.next()).await {
            Ok(Some(Ok(msg))) => {
                if msg
                    .ack_with(AckKind::Nak(Some(PULL_EXPIRES + Duration::from_secs(1))))
                    .await
                    .is_ok()
                {
                    returned += 1;
                }
            }
            _ => break,
        }
    }
    if returned > 0 {
        tracing::info!(plugin = %server.slot.current().name, returned, "returned pulled messages not yet started");
    }
    drop(server);
    in_flight.close();
    in_flight.wait().await;
}

/// The state of one JetStream plugin's [`serve`] loop.
struct JsServer {
    client: Client,
    slot: Arc<Slot>,
    settings: JetStreamSettings,
    binding: Arc<Binding>,
    messages: Messages,
    subjects: Vec<String>,
    concurrency: usize,
    limit: Arc<Semaphore>,
}

impl JsServer {
    /// After a reload: bind consumers for changed subjects (the old ones
    /// stay on the server, untouched) and adopt a changed concurrency.
    async fn rebind(&mut self) {
        let current = self.slot.current();
        if current.subjects != self.subjects {
            let rebound = async {
                let binding = bind(&self.client, &current, &self.settings).await?;
                let messages = pull_all(&binding, current.settings.concurrency).await?;
                anyhow::Ok((binding, messages))
            };
            match rebound.await {
                Ok((binding, messages)) => {
                    self.binding = Arc::new(binding);
                    self.messages = messages;
                    self.subjects = current.subjects.clone();
                }
                Err(err) => tracing::error!(
                    plugin = %current.name, error = crate::errors::one_line(&format!("{err:#}")),
                    "cannot bind the new subjects; keeping the old ones"
                ),
            }
        }
        if current.settings.concurrency != self.concurrency {
            self.concurrency = current.settings.concurrency;
            self.limit = Arc::new(Semaphore::new(self.concurrency));
        }
    }
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
            info.stream.to_string(),
            info.stream_sequence,
            info.delivered.max(1) as u32,
        ),
        Err(err) => {
            tracing::warn!(plugin = %plugin.name, error = %err, "JetStream message without metadata; terminating it");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let span = tracing::debug_span!("message", plugin = %plugin.name, subject = %msg.subject, attempt, stream = %stream, seq);
    async {
        // A JetStream message's reply subject is its ack subject, not a
        // requester: the handler must not see it (or be allowed to publish there).
        let mut input = bus::to_message(&msg.message, attempt);
        input.reply_to = None;
        let id = settings.dedup.as_ref().and_then(|k| k.extract(&input.headers, &input.payload));
        let key = id.as_deref().map(|id| dedup::bucket_key(&plugin.name, id));
        if let (Some(store), Some(key)) = (&binding.dedup, &key) {
            match store.get(key.as_str()).await {
                Ok(Some(_)) => {
                    tracing::info!(plugin = %plugin.name, id = id.as_deref().unwrap_or(""), "duplicate: already handled; acking");
                    ack(&msg).await;
                    slot.counters.duplicate();
                    return;
                }
                Ok(None) => {}
                Err(err) => {
                    let delay = plugin.settings.backoff.delay(attempt, rand::random::<f64>());
                    tracing::warn!(plugin = %plugin.name, error = %err, "cannot read the dedup bucket; retrying later");
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                    return;
                }
            }
        }

        let result = with_progress(&msg, settings.ack_wait, plugin.call(&input)).await;
        let failure = match result {
            Ok(outputs) => {
                let msg_id_base = match &id {
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
                        return;
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
            }
            Decision::DeadLetter(kind) => {
                let letter = DeadLetter::of(&plugin, &msg.message, kind, &failure.message, attempt, Some((&stream, seq)));
                let subject = letter.subject(&plugin.settings.dead_letter_prefix);
                match publish_durably(client, &binding.js, &binding.captures, subject.clone(), letter.headers(), msg.payload.clone()).await {
                    Ok(()) => {
                        if let Err(err) = msg.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %err, "cannot TERM a dead-lettered message");
                        }
                        slot.counters.dead_lettered(kind);
                    }
                    Err(err) => {
                        // Never lose it: leave it to be delivered again.
                        let delay = plugin.settings.backoff.delay(attempt, rand::random::<f64>());
                        tracing::error!(error = %err, dead_letter = %subject, "cannot publish the dead letter; NAK");
                        let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
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
    tokio::select! {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_stable_per_subject() {
        assert_eq!(consumer_name("evhost-payment", 0, 1), "evhost-payment");
        assert_eq!(consumer_name("evhost-audit", 0, 3), "evhost-audit-0");
        assert_eq!(consumer_name("evhost-audit", 2, 3), "evhost-audit-2");
    }
}
