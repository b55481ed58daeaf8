//! The delivery interface: what differs between core NATS and JetStream for
//! one message, as the shared per-message [`driver`](crate::driver) sees it.
//! How the message is screened before the call (JetStream's dedup check),
//! how the handler is run (JetStream keeps the server told it is in
//! progress), how success is made final (outputs published, input acked),
//! how a retry happens (core waits in place; JetStream hands the message back
//! to the server with a delay), and how a dead letter is published and the
//! input settled. Everything else (the span, the outcome switch, counting,
//! retry and dead-letter logging) is the driver's, once for both.

use std::time::Duration;

use crate::deadletter::DeadLetter;
use crate::outcome::Failure;
use crate::plugin::Plugin;
use crate::runtime::Outgoing;

/// Whether the handler is to be called for a delivery.
pub enum Screened {
    /// Call it.
    Call,
    /// Settled without a call (a duplicate acked, a message handed back);
    /// the outcome's name for the span.
    Settled(Settled),
}

/// A delivery settled without the handler: what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Already handled (its event id is recorded): acked, not called.
    Duplicate,
    /// Handed back to the server to be delivered again later.
    Redelivered,
    /// Refused outright (a JetStream message the server sent without its
    /// metadata): terminated.
    Terminated,
}

impl Settled {
    /// The span's `outcome` for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Duplicate => "duplicate",
            Settled::Redelivered => "nak",
            Settled::Terminated => "term",
        }
    }
}

/// What a retry came to.
pub enum Retried {
    /// The delay has passed here: attempt again now, in this task.
    Now,
    /// The message went back to the server, which delivers it again after
    /// the delay: this delivery is over.
    Later,
}

/// What became of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lettered {
    /// Published, and the input settled.
    Published,
    /// NATS refused it every time; logged as lost.
    Lost,
    /// Not published; the input was handed back to be delivered again, so
    /// nothing is lost.
    Redelivered,
}

/// One message on its way through a handler. Implemented by
/// [`core_delivery`](crate::core_delivery) and
/// [`jetstream_delivery`](crate::jetstream_delivery).
pub trait Delivery: Send {
    /// The log line of a failed attempt that will be tried again, saying
    /// how (core NATS waits in place; JetStream NAKs with a delay).
    const RETRY_LOG: &'static str;

    /// The message as NATS delivered it.
    fn message(&self) -> &async_nats::Message;

    /// Which delivery of the message this is, from 1.
    fn attempt(&self) -> u32;

    /// The stream and sequence it is stored at (JetStream).
    fn stored_at(&self) -> Option<(&str, u64)>;

    /// Before the handler is called: whether it is to be.
    fn screen(&mut self, plugin: &Plugin) -> impl Future<Output = Screened> + Send;

    /// Calls `plugin`'s handler with this attempt of the message.
    fn call(&self, plugin: &Plugin) -> impl Future<Output = Result<Vec<Outgoing>, Failure>> + Send;

    /// Makes a successful call final: publishes `outputs` and settles the
    /// input. An error is a transient failure of this attempt.
    fn complete(
        &self,
        plugin: &Plugin,
        outputs: Vec<Outgoing>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Tries again after `delay`.
    fn retry(&mut self, delay: Duration) -> impl Future<Output = Retried> + Send;

    /// Publishes `letter` (to `subject`) and settles the input.
    fn dead_letter(
        &self,
        plugin: &Plugin,
        letter: &DeadLetter<'_>,
        subject: String,
    ) -> impl Future<Output = Lettered> + Send;
}
