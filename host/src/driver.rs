//! The life of one message, the same on core NATS and JetStream: screened,
//! handled by the plugin's current version, and then made final, retried with
//! backoff or dead-lettered, as [`decide`] says. One span per message
//! (`message`: plugin, subject, attempt, outcome, duration, and the stream
//! and sequence on JetStream), one place that counts and logs outcomes. What
//! differs between the two modes is behind [`Delivery`].

use std::time::Instant;

use tracing::{Instrument, field};

use crate::bus;
use crate::deadletter::DeadLetter;
use crate::delivery::{Delivery, Lettered, Retried, Screened};
use crate::outcome::{Decision, Failure, FailureKind, decide};
use crate::slot::Slot;
use crate::trace_context;

/// Handles `delivery` to the end of its part: until it is handled,
/// dead-lettered, or handed back for a later delivery. Each attempt uses the
/// plugin's current version.
/// A plain function returning the future (rather than an `async fn` around
/// an instrumented block): the future is built once, where the lane boxes
/// it, instead of being moved through more layers for every message.
pub fn handle<'a, D: Delivery + 'a>(
    slot: &'a Slot,
    delivery: D,
) -> impl Future<Output = ()> + Send + 'a {
    let plugin = slot.current();
    let span = tracing::debug_span!(
        "message",
        plugin = %plugin.name,
        subject = %delivery.message().subject,
        attempt = field::Empty,
        stream = field::Empty,
        seq = field::Empty,
        outcome = field::Empty,
        duration_us = field::Empty,
        // OpenTelemetry's, recorded only when spans are exported.
        otel.name = field::Empty,
        otel.kind = field::Empty,
        otel.status_code = field::Empty,
        messaging.system = field::Empty,
        messaging.operation.type = field::Empty,
        messaging.operation.name = field::Empty,
        messaging.destination.name = field::Empty,
    );
    if !span.is_disabled()
        && let Some((stream, seq)) = delivery.stored_at()
    {
        span.record("stream", stream);
        span.record("seq", seq);
    }
    let msg = delivery.message();
    trace_context::adopt(&span, msg.headers.as_ref(), &msg.subject);
    drive(slot, plugin, delivery, span.clone()).instrument(span)
}

/// `plugin` is the version the first attempt runs (read once per message:
/// each read touches the slot's shared reference count).
async fn drive<D: Delivery>(
    slot: &Slot,
    mut plugin: std::sync::Arc<crate::plugin::Plugin>,
    mut delivery: D,
    span: tracing::Span,
) {
    // Timed only when someone listens: a clock read per message is not free.
    let started = (!span.is_disabled()).then(Instant::now);
    let _in_flight = slot.counters.in_flight();
    // A header block the client could not read: the handler never sees the
    // message, which is dead-lettered at once with its payload.
    let mut unreadable = bus::malformed_headers(delivery.message())
        .map(|why| Failure::new(FailureKind::Permanent, why));
    if unreadable.is_none()
        && let Screened::Settled(settled) = delivery.screen(&plugin).await
    {
        if settled == crate::delivery::Settled::Duplicate {
            slot.counters.duplicate();
        }
        finish(&span, delivery.attempt(), settled.as_str(), started);
        return;
    }
    loop {
        let attempt = delivery.attempt();
        let failure = match unreadable.take() {
            Some(failure) => failure,
            None => {
                // Timed in place: a helper taking the call's future would
                // move that (large) future once more for every message.
                let called = Instant::now();
                let result = delivery.call(&plugin).await;
                slot.counters.call_took(called.elapsed());
                match result {
                    Ok(outputs) => match delivery.complete(&plugin, outputs).await {
                        Ok(()) => {
                            slot.counters.handled();
                            finish(&span, attempt, "ok", started);
                            return;
                        }
                        Err(err) => Failure::new(
                            FailureKind::Transient,
                            format!("cannot publish outputs: {err}"),
                        ),
                    },
                    Err(failure) => failure,
                }
            }
        };
        match decide(failure.kind, attempt, plugin.settings.max_attempts) {
            Decision::Retry => {
                slot.counters.retry();
                let delay = plugin
                    .settings
                    .backoff
                    .delay(attempt, rand::random::<f64>());
                tracing::info!(
                    plugin = %plugin.name, attempt, kind = failure.kind.as_str(),
                    error = %failure.message, retry_in_ms = delay.as_millis() as u64,
                    "{}", D::RETRY_LOG
                );
                // Boxed, like the dead letter below: the rare paths stay out
                // of every message's future.
                match Box::pin(delivery.retry(delay)).await {
                    Retried::Now => plugin = slot.current(),
                    Retried::Later => {
                        finish(&span, attempt, "retry", started);
                        return;
                    }
                }
            }
            Decision::DeadLetter(kind) => {
                let letter = DeadLetter::of(
                    &plugin,
                    delivery.message(),
                    kind,
                    &failure.message,
                    attempt,
                    delivery.stored_at(),
                );
                let subject = letter.subject(&plugin.settings.dead_letter_prefix);
                tracing::warn!(
                    plugin = %plugin.name, attempt, kind = kind.as_str(),
                    error = %failure.message, dead_letter = %subject, "message dead-lettered"
                );
                let outcome = match Box::pin(delivery.dead_letter(&plugin, &letter, subject)).await
                {
                    Lettered::Published => {
                        slot.counters.dead_lettered(kind);
                        kind.as_str()
                    }
                    Lettered::Lost => "lost",
                    Lettered::Redelivered => "nak",
                };
                finish(&span, attempt, outcome, started);
                return;
            }
        }
    }
}

/// Records how the message ended on its span, when the span is listened to.
fn finish(span: &tracing::Span, attempt: u32, outcome: &str, started: Option<Instant>) {
    let Some(started) = started else {
        return;
    };
    span.record("attempt", attempt);
    span.record("outcome", outcome);
    if outcome != "ok" && outcome != "duplicate" && outcome != "retry" && trace_context::exporting()
    {
        span.record("otel.status_code", "error");
    }
    span.record("duration_us", started.elapsed().as_micros() as u64);
}
