//! Provisioning a JetStream plugin on the server: its stream (found, or
//! created where the manifest asks, with the host's replica count), its
//! dead-letter stream, its durable
//! consumers (one per subject, created or updated to follow the manifest, see
//! [`consumers`]) and its dedup bucket. What a binding holds is shared by
//! every lane pulling from it.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, kv, stream};

use crate::consumers;
use crate::durable_publish::Captures;
use crate::plugin::Plugin;
use crate::plugin_settings::JetStreamSettings;
use crate::replicas::{self, Replicas};

/// The JetStream side of one plugin: context, consumers, dedup bucket.
pub struct Binding {
    /// The JetStream context on the host's connection.
    pub js: jetstream::Context,
    /// The plugin's stream.
    pub stream: stream::Stream,
    /// One durable pull consumer per subject.
    pub consumers: Vec<PullConsumer>,
    /// The consumers' `ack_wait` as the server holds it: the pace of
    /// in-progress acks.
    pub ack_wait: Duration,
    /// Consumers of subjects the manifest no longer names: deleted once no
    /// lane pulls from them any more.
    pub remove: Vec<String>,
    /// The dedup bucket, where the manifest asks for one.
    pub dedup: Option<kv::Store>,
    /// Which output subjects a stream captures.
    pub captures: Captures,
}

/// What a binding is made for: a change of any of it binds anew.
#[derive(Clone, PartialEq)]
pub struct BindPlan {
    /// The subjects, one consumer each.
    pub subjects: Vec<String>,
    /// The manifest's JetStream settings.
    pub settings: JetStreamSettings,
    /// The consumers' `max_deliver` follows it.
    pub max_attempts: u32,
    /// The consumers' `max_ack_pending` follows it.
    pub concurrency: usize,
}

impl BindPlan {
    /// What `plugin` asks of the server; `None` for a core NATS plugin.
    pub fn of(plugin: &Plugin) -> Option<Self> {
        Some(BindPlan {
            subjects: plugin.subjects.clone(),
            settings: plugin.settings.jetstream.clone()?,
            max_attempts: plugin.settings.max_attempts,
            concurrency: plugin.settings.concurrency,
        })
    }
}

/// Finds (or, where the manifest asks, creates) the plugin's stream, dead
/// letter stream and dedup bucket, and creates or updates one durable consumer
/// per subject (see `consumers.rs`). A consumer takes one `filter_subject`,
/// which every server version honours. What it creates gets `replicas`
/// copies; the consumers take their stream's.
pub async fn bind(
    client: &Client,
    plugin: &Plugin,
    plan: &BindPlan,
    replicas: Replicas,
) -> anyhow::Result<Binding> {
    let settings = &plan.settings;
    let js = jetstream::new(client.clone());
    let stream = match &settings.create_stream {
        Some(subjects) => {
            let config = stream::Config {
                name: settings.stream.clone(),
                subjects: subjects.clone(),
                ..Default::default()
            };
            replicas::get_or_create(&js, config, replicas)
                .await
                .with_context(|| format!("cannot create stream {}", settings.stream))?
        }
        None => js.get_stream(&settings.stream).await.with_context(|| {
            format!(
                "stream {} not found (create it, or set jetstream.create_stream = true with stream_subjects)",
                settings.stream
            )
        })?,
    };
    if let Some((name, true)) = &settings.dead_letter_stream {
        let prefix = &plugin.settings.dead_letter_prefix;
        crate::dead_letter_stream::ensure(&js, name, prefix, true, replicas).await?;
    }
    let bound = consumers::reconcile(
        &stream,
        &plugin.name,
        &plan.subjects,
        &consumers::Wanted {
            durable: settings.durable.clone(),
            ack_wait: settings.ack_wait,
            max_ack_pending: (plan.concurrency * 64).max(1000) as i64,
            max_deliver: consumers::max_deliver(plan.max_attempts),
            start: settings.start,
        },
    )
    .await?;
    let dedup = match &settings.dedup {
        None => None,
        Some(_) => Some(
            crate::kv_bucket::open_or_create(
                &js,
                &settings.dedup_bucket,
                Some(settings.dedup_ttl),
                replicas,
            )
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
