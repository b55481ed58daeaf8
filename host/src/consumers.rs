//! A JetStream plugin's durable consumers, kept in line with its manifest.
//!
//! One durable pull consumer per subject, named after the subject (not its
//! position), so adding or removing a subject never renames another
//! subject's consumer and never makes a consumer that replays what was
//! already handled. On every bind the host creates the missing consumers
//! (starting where `jetstream.deliver` says), updates the existing ones to the
//! manifest's settings (keeping where they are in the stream), and reports
//! the consumers of subjects the manifest no longer names, which the caller
//! deletes once their messages are finished.
//!
//! The naming and ownership rules are pure functions ([`plan`]) tested below;
//! [`reconcile`] applies a plan to the server.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::Stream;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

/// Where a consumer made for a new subject starts (`jetstream.deliver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Every message the stream holds (`"all"`, the default).
    #[default]
    All,
    /// Only messages stored after the consumer is made (`"new"`).
    New,
    /// The last message of the stream, then new ones (`"last"`).
    Last,
    /// The last message of each subject, then new ones (`"last_per_subject"`).
    LastPerSubject,
    /// From this stream sequence on (`"sequence:N"`).
    Sequence(u64),
    /// From messages stored at or after this time on (`"time:RFC3339"`).
    Time(SystemTime),
}

impl StartAt {
    /// Parses `jetstream.deliver`.
    pub fn parse(text: &str) -> Result<StartAt, String> {
        let expected = "expected \"all\", \"new\", \"last\", \"last_per_subject\", \
                        \"sequence:N\" or \"time:2026-01-01T00:00:00Z\"";
        Ok(match text {
            "all" => StartAt::All,
            "new" => StartAt::New,
            "last" => StartAt::Last,
            "last_per_subject" => StartAt::LastPerSubject,
            _ => {
                if let Some(n) = text.strip_prefix("sequence:") {
                    match n.trim().parse::<u64>() {
                        Ok(n) if n > 0 => StartAt::Sequence(n),
                        _ => {
                            return Err(format!(
                                "{text:?}: a sequence is a number from 1; {expected}"
                            ));
                        }
                    }
                } else if let Some(t) = text.strip_prefix("time:") {
                    StartAt::Time(
                        humantime::parse_rfc3339_weak(t.trim())
                            .map_err(|e| format!("{text:?}: {e}; {expected}"))?,
                    )
                } else {
                    return Err(format!("{text:?}: {expected}"));
                }
            }
        })
    }

    fn policy(self) -> DeliverPolicy {
        match self {
            StartAt::All => DeliverPolicy::All,
            StartAt::New => DeliverPolicy::New,
            StartAt::Last => DeliverPolicy::Last,
            StartAt::LastPerSubject => DeliverPolicy::LastPerSubject,
            StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::Time(at) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from(at),
            },
        }
    }
}

/// The consumer name for `subject`: the durable name and a short digest of
/// the subject (a consumer name cannot hold `.`, `*` or `>`).
pub fn consumer_name(durable: &str, subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{durable}-{hex}")
}

/// The description the host gives its consumers; it marks them as the
/// durable's, so they can be found again.
pub fn description(durable: &str, subject: &str) -> String {
    format!("{} {subject}", owner_mark(durable))
}

/// What every description the host gives starts with.
const MARK: &str = "evhost ";

/// The start of the description of every consumer of `durable`.
pub(crate) fn owner_mark(durable: &str) -> String {
    format!("{MARK}{durable}:")
}

/// The durable a consumer's `description` marks it as made for (see
/// [`description`]), when it carries the host's mark.
pub(crate) fn marked_durable(description: &str) -> Option<&str> {
    let (durable, _subject) = description.strip_prefix(MARK)?.split_once(':')?;
    (!durable.is_empty() && !durable.contains(char::is_whitespace)).then_some(durable)
}

/// A consumer as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    pub filter: String,
    pub description: Option<String>,
}

/// Whether `consumer` belongs to the plugin with `durable`: marked so by its
/// description, or named the way earlier versions named them (`durable`
/// alone for one subject, `durable-N` by position for several).
fn owned(durable: &str, consumer: &Existing) -> bool {
    if let Some(d) = &consumer.description
        && d.starts_with(&owner_mark(durable))
    {
        return true;
    }
    consumer.name == durable
        || consumer
            .name
            .strip_prefix(durable)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What to do on the server for one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per subject, in the manifest's order: the consumer's name and whether
    /// it exists already (then it is updated and keeps its position).
    pub bind: Vec<(String, String, bool)>,
    /// The plugin's consumers whose subject is no longer in the manifest.
    pub remove: Vec<String>,
}

/// Matches the manifest's `subjects` against the consumers the stream has.
/// A subject keeps the consumer of the plugin that already filters on it,
/// whatever its name, so upgrading from positional names replays nothing.
pub fn plan(durable: &str, subjects: &[String], existing: &[Existing]) -> Plan {
    let mine: Vec<&Existing> = existing.iter().filter(|c| owned(durable, c)).collect();
    let bind = subjects
        .iter()
        .map(|subject| {
            let stable = consumer_name(durable, subject);
            match mine
                .iter()
                .find(|c| c.name == stable)
                .or_else(|| mine.iter().find(|c| &c.filter == subject))
            {
                Some(c) => (subject.clone(), c.name.clone(), true),
                None => (subject.clone(), stable, false),
            }
        })
        .collect::<Vec<_>>();
    let remove = mine
        .iter()
        .filter(|c| !bind.iter().any(|(_, name, _)| name == &c.name))
        .map(|c| c.name.clone())
        .collect();
    Plan { bind, remove }
}

/// The settings a plugin wants on each of its consumers.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub durable: String,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// Deliveries after which the server gives a message up (see
    /// [`max_deliver`]).
    pub max_deliver: i64,
    pub start: StartAt,
}

/// Deliveries that end without a decision (the host killed mid-message, a
/// connection dropped by a malformed message, a dead letter that could not
/// be written) allowed on top of `max_attempts` before the server stops
/// delivering a message, so none loops forever.
pub const UNDECIDED_DELIVERIES: i64 = 10;

/// The `max_deliver` of a plugin's consumers: its handler attempts, and
/// [`UNDECIDED_DELIVERIES`] more. The host dead-letters at `max_attempts`,
/// so the server's bound is reached only by deliveries that never came to
/// a decision.
pub fn max_deliver(max_attempts: u32) -> i64 {
    i64::from(max_attempts) + UNDECIDED_DELIVERIES
}

/// The consumers bound, and what the server says about them.
pub struct Bound {
    /// One per subject, in the manifest's order.
    pub consumers: Vec<PullConsumer>,
    /// The shortest `ack_wait` the server holds for them: the pace of
    /// in-progress acks.
    pub ack_wait: Duration,
    /// Consumers of subjects no longer in the manifest, to delete once their
    /// messages are finished.
    pub remove: Vec<String>,
}

/// Creates or updates one consumer per subject on `stream`.
pub async fn reconcile(
    stream: &Stream,
    plugin: &str,
    subjects: &[String],
    wanted: &Wanted,
) -> anyhow::Result<Bound> {
    let stream_name = stream.cached_info().config.name.clone();
    let existing: Vec<consumer::Info> = stream
        .consumers()
        .try_collect()
        .await
        .with_context(|| format!("cannot list the consumers of stream {stream_name}"))?;
    let listed: Vec<Existing> = existing
        .iter()
        .map(|i| Existing {
            name: i.name.clone(),
            filter: i.config.filter_subject.clone(),
            description: i.config.description.clone(),
        })
        .collect();
    let plan = plan(&wanted.durable, subjects, &listed);
    let mut consumers = Vec::with_capacity(plan.bind.len());
    let mut ack_wait: Option<Duration> = None;
    for (subject, name, exists) in &plan.bind {
        let current = existing.iter().find(|i| &i.name == name);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(description(&wanted.durable, subject)),
            filter_subject: subject.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: wanted.ack_wait,
            // A consumer that exists stays where it is in the stream.
            deliver_policy: match current {
                Some(info) => info.config.deliver_policy,
                None => wanted.start.policy(),
            },
            max_deliver: wanted.max_deliver,
            max_ack_pending: wanted.max_ack_pending,
            ..Default::default()
        };
        let consumer: PullConsumer = match stream.create_consumer(config).await {
            Ok(consumer) => consumer,
            Err(err) if *exists => {
                tracing::warn!(
                    plugin, consumer = %name, stream = %stream_name, error = %err,
                    "the server refused to update the consumer; serving with its settings as they are (delete it to apply the manifest's)"
                );
                stream
                    .get_consumer(name)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| {
                        format!("cannot bind consumer {name} on stream {stream_name}")
                    })?
            }
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("cannot create consumer {name} on stream {stream_name}")
                });
            }
        };
        let server_wait = consumer.cached_info().config.ack_wait;
        ack_wait = Some(ack_wait.map_or(server_wait, |w| w.min(server_wait)));
        if !exists {
            tracing::info!(plugin, consumer = %name, subject = %subject, start = ?wanted.start, "created consumer");
        }
        consumers.push(consumer);
    }
    Ok(Bound {
        consumers,
        ack_wait: ack_wait.unwrap_or(wanted.ack_wait),
        remove: plan.remove,
    })
}

/// Deletes the consumers of subjects a plugin no longer names.
pub async fn remove(stream: &Stream, plugin: &str, names: &[String]) {
    for name in names {
        match stream.delete_consumer(name).await {
            Ok(_) => {
                tracing::info!(plugin, consumer = %name, "deleted the consumer of a subject no longer in the manifest")
            }
            Err(err) => {
                tracing::warn!(plugin, consumer = %name, error = %err, "cannot delete the consumer of a removed subject")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(name: &str, filter: &str, description: Option<&str>) -> Existing {
        Existing {
            name: name.into(),
            filter: filter.into(),
            description: description.map(Into::into),
        }
    }

    fn subjects(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deliveries_are_bounded_above_the_handler_attempts() {
        assert_eq!(max_deliver(5), 15);
        assert!(max_deliver(1) > 1);
    }

    #[test]
    fn names_depend_on_the_subject_not_its_position() {
        let a = consumer_name("evhost-audit", "orders.>");
        assert_eq!(a, consumer_name("evhost-audit", "orders.>"));
        assert_ne!(a, consumer_name("evhost-audit", "payments.>"));
        assert!(a.starts_with("evhost-audit-"));
        assert!(!a.contains(['.', '*', '>']));
    }

    #[test]
    fn adding_a_subject_keeps_the_first_consumer() {
        let one = plan("d", &subjects(&["a"]), &[]);
        assert_eq!(one.bind, vec![("a".into(), consumer_name("d", "a"), false)]);
        let after = [existing(
            &consumer_name("d", "a"),
            "a",
            Some(&description("d", "a")),
        )];
        let two = plan("d", &subjects(&["b", "a"]), &after);
        assert_eq!(
            two.bind,
            vec![
                ("b".into(), consumer_name("d", "b"), false),
                ("a".into(), consumer_name("d", "a"), true),
            ]
        );
        assert!(two.remove.is_empty());
    }

    #[test]
    fn positional_names_of_earlier_versions_are_adopted_by_filter() {
        // One subject used to be consumed by the bare durable name.
        let legacy = [existing("evhost-audit", "orders.>", None)];
        let p = plan(
            "evhost-audit",
            &subjects(&["orders.>", "payments.>"]),
            &legacy,
        );
        assert_eq!(p.bind[0], ("orders.>".into(), "evhost-audit".into(), true));
        assert!(!p.bind[1].2, "payments.> is new");
        assert!(p.remove.is_empty());
        // Several subjects used `-N` by position.
        let legacy = [
            existing("evhost-audit-0", "orders.>", None),
            existing("evhost-audit-1", "payments.>", None),
        ];
        let p = plan("evhost-audit", &subjects(&["payments.>"]), &legacy);
        assert_eq!(
            p.bind,
            vec![("payments.>".into(), "evhost-audit-1".into(), true)]
        );
        assert_eq!(p.remove, vec!["evhost-audit-0".to_string()]);
    }

    #[test]
    fn removed_subjects_are_removed_and_other_consumers_are_left_alone() {
        let on_server = [
            existing(&consumer_name("d", "a"), "a", Some(&description("d", "a"))),
            existing(&consumer_name("d", "b"), "b", Some(&description("d", "b"))),
            // Another plugin's, an operator's, and a durable whose name
            // merely starts like ours.
            existing("other", "a", None),
            existing("d-extra", "b", None),
            existing(
                &consumer_name("dd", "b"),
                "b",
                Some(&description("dd", "b")),
            ),
        ];
        let p = plan("d", &subjects(&["a"]), &on_server);
        assert_eq!(p.bind, vec![("a".into(), consumer_name("d", "a"), true)]);
        assert_eq!(p.remove, vec![consumer_name("d", "b")]);
    }

    #[test]
    fn the_description_names_the_durable() {
        let d = description("evhost-audit", "orders.>");
        assert!(d.starts_with(&owner_mark("evhost-audit")));
        assert_eq!(marked_durable(&d), Some("evhost-audit"));
        assert_eq!(marked_durable(&description("d", "a")), Some("d"));
        for other in [
            "",
            "evhost",
            "evhost :a",
            "audit app: orders",
            "evhost two words: a",
        ] {
            assert_eq!(marked_durable(other), None, "{other:?}");
        }
    }

    #[test]
    fn deliver_parses() {
        assert_eq!(StartAt::parse("all"), Ok(StartAt::All));
        assert_eq!(StartAt::parse("new"), Ok(StartAt::New));
        assert_eq!(
            StartAt::parse("last_per_subject"),
            Ok(StartAt::LastPerSubject)
        );
        assert_eq!(StartAt::parse("sequence:42"), Ok(StartAt::Sequence(42)));
        assert!(matches!(
            StartAt::parse("time:2026-12-01T00:00:00Z"),
            Ok(StartAt::Time(_))
        ));
        for bad in [
            "",
            "everything",
            "sequence:0",
            "sequence:x",
            "time:yesterday",
        ] {
            let err = StartAt::parse(bad).unwrap_err();
            assert!(err.contains("expected"), "{bad}: {err}");
        }
    }
}
