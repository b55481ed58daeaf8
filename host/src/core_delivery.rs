//! Core NATS delivery: a plugin's queue subscriptions, a few per plugin, one
//! set per lane, each lane on a [`shard`](crate::shard) of its own (its own
//! connection and thread), so a message costs no hand-off between threads.
//! A failed attempt waits out its backoff in place and is tried again; a
//! dead letter is published on core NATS, tried again while NATS is away.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::bus;
use crate::deadletter::DeadLetter;
use crate::delivery::{Delivery, Lettered, Retried, Screened};
use crate::driver;
use crate::idempotency::{self, KeySource};
use crate::lane::{self, AfterStop, Intake, cores, lane_limits};
use crate::outcome::Failure;
use crate::plugin::Plugin;
use crate::runtime::Outgoing;
use crate::serve::Mode;
use crate::shard::Shards;
use crate::slot::Slot;

/// Core NATS as a [`Mode`]: lanes on the host's shards.
pub struct CoreNats {
    /// The connections (and threads) lanes are dealt to.
    pub shards: Arc<Shards>,
}

/// What a core plugin's lanes are started for.
#[derive(PartialEq)]
pub struct Serving {
    subjects: Vec<String>,
    queue_group: String,
    concurrency: usize,
}

impl Mode for CoreNats {
    type Plan = Serving;
    type Shared = ();

    fn plan(&self, plugin: &Plugin) -> Option<Serving> {
        Some(Serving {
            subjects: plugin.subjects.clone(),
            queue_group: plugin.settings.queue_group.clone(),
            concurrency: plugin.settings.concurrency,
        })
    }

    async fn share(
        &self,
        _: &Plugin,
        _: &Serving,
        _: Option<(&Serving, &Arc<()>)>,
    ) -> anyhow::Result<(Arc<()>, bool)> {
        Ok((Arc::new(()), false))
    }

    /// Subscribes every lane on the connection of the shard it will run on
    /// (all in the plugin's queue group, so the server spreads messages over
    /// them), then starts each on its shard.
    async fn start_lanes(
        &self,
        slot: &Arc<Slot>,
        plan: &Serving,
        _: &Arc<()>,
        stop: &CancellationToken,
        running: &TaskTracker,
    ) -> anyhow::Result<()> {
        let limits = lane_limits(plan.concurrency, cores());
        let mut subscribed = Vec::with_capacity(limits.len());
        for shard in self.shards.deal(limits.len()) {
            let subs = bus::subscribe(&shard.client, &plan.subjects, &plan.queue_group).await?;
            subscribed.push((shard, subs));
        }
        for ((shard, subs), limit) in subscribed.into_iter().zip(limits) {
            let (client, slot) = (shard.client.clone(), slot.clone());
            // A child token per lane: `is_cancelled` locks the token's node,
            // and one node shared by lanes on two shards would bounce between
            // the cores every message.
            let stop = stop.child_token();
            running.spawn_on(
                async move {
                    lane::run(Subscriptions(subs), limit, stop, |msg| {
                        Box::pin(driver::handle(&slot, CoreDelivery::new(&client, msg)))
                    })
                    .await
                },
                &shard.handle,
            );
        }
        Ok(())
    }

    async fn tidy(&self, _: &str, _: Arc<()>) {}
}

/// A lane's subscriptions as its [`Intake`].
struct Subscriptions(bus::Subscriptions);

impl Intake for Subscriptions {
    type Message = async_nats::Message;

    async fn next(&mut self) -> Option<async_nats::Message> {
        self.0.next().await
    }

    /// Drains the subscriptions: the server sends no more, and what it sent
    /// is still taken and handled.
    async fn stop(&mut self) -> AfterStop {
        bus::drain(&mut self.0).await;
        AfterStop::Drain
    }

    async fn hand_back(self) {}
}

/// One core NATS message and its attempts.
pub struct CoreDelivery<'a> {
    client: &'a Client,
    msg: async_nats::Message,
    attempt: u32,
    /// The idempotency key's source, made once for every attempt.
    key: KeySource,
}

impl<'a> CoreDelivery<'a> {
    /// `msg`, received on `client`, before its first attempt.
    pub fn new(client: &'a Client, msg: async_nats::Message) -> Self {
        let key = KeySource::core(idempotency::nats_msg_id(msg.headers.as_ref()));
        CoreDelivery {
            client,
            msg,
            attempt: 1,
            key,
        }
    }
}

impl Delivery for CoreDelivery<'_> {
    const RETRY_LOG: &'static str = "attempt failed; retrying";

    fn message(&self) -> &async_nats::Message {
        &self.msg
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn stored_at(&self) -> Option<(&str, u64)> {
        None
    }

    async fn screen(&mut self, _: &Plugin) -> Screened {
        Screened::Call
    }

    async fn call(&self, plugin: &Plugin) -> Result<Vec<Outgoing>, Failure> {
        plugin
            .call(&bus::to_message(&self.msg, self.attempt), &self.key)
            .await
    }

    async fn complete(&self, _: &Plugin, outputs: Vec<Outgoing>) -> Result<(), String> {
        bus::publish_outputs(self.client, outputs, self.msg.headers.as_ref())
            .await
            .map_err(|err| err.to_string())
    }

    async fn retry(&mut self, delay: Duration) -> Retried {
        tokio::time::sleep(delay).await;
        self.attempt += 1;
        Retried::Now
    }

    async fn dead_letter(&self, _: &Plugin, letter: &DeadLetter<'_>, subject: String) -> Lettered {
        let (headers, payload) =
            letter.message(&self.msg.payload, self.client.server_info().max_payload);
        // 50 ms doubling to 5 s (jittered): about 25 s in all over ten tries.
        let backoff = Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5));
        for attempt in 1..=DEAD_LETTER_TRIES {
            match self
                .client
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
            {
                Ok(()) => return Lettered::Published,
                Err(err) => {
                    tracing::warn!(error = %err, dead_letter = %subject, "cannot publish dead letter; trying again");
                    tokio::time::sleep(backoff.delay(attempt, rand::random::<f64>())).await;
                }
            }
        }
        tracing::error!(dead_letter = %subject, subject = %self.msg.subject, "dead letter lost: NATS refused it ten times");
        Lettered::Lost
    }
}

/// How many times a dead letter is offered to NATS before it is logged as
/// lost.
const DEAD_LETTER_TRIES: u32 = 10;
