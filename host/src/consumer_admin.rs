//! The durable consumers evhost made on a stream, seen from outside a host:
//! `evhost consumers list` and `evhost consumers delete`, and the line a
//! host logs once a removed JetStream plugin has drained, saying its
//! consumers are kept on the server and how to delete them. The host never
//! deletes them itself: other hosts may still serve the plugin, and
//! consumers made anew (a plugin removed, then added again) would start at
//! `deliver`, by default replaying the stream's whole history.
//!
//! A consumer is evhost's when its description carries the host's mark
//! (`evhost <durable>: <subject>`, see `consumers.rs`) or when its name is
//! the one the host gives its filter subject's consumer (`<durable>-<8 hex
//! of the subject's SHA-256>`); no other consumer is listed or deleted.
//! Which consumers are evhost's, whether a durable's are in use, and how
//! they are shown are pure functions, tested below.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use async_nats::jetstream::{self, consumer};
use futures::TryStreamExt;

use crate::consumers::{self, Existing};

/// A host serving a plugin has a pull request waiting on each of its
/// consumers nearly all the time, but none for a moment between one
/// request's end and the next: `delete` asks twice, this long apart, before
/// it believes that no host pulls.
const SETTLE: Duration = Duration::from_secs(1);

/// One consumer evhost made, with what the server says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The consumer's name.
    pub name: String,
    /// The durable (the plugin's `delivery.durable`) it was made for.
    pub durable: String,
    /// Its filter subject: the plugin subject it consumes.
    pub filter: String,
    /// Messages of the stream it has still to deliver.
    pub pending: u64,
    /// Messages delivered and not yet acked.
    pub ack_pending: usize,
    /// Pull requests waiting for messages: a host pulling from it.
    pub waiting: usize,
}

/// The consumers of a stream, as `list` sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// evhost's, by durable, then subject.
    pub evhost: Vec<Listed>,
    /// How many others the stream has: never shown, never touched.
    pub others: usize,
}

impl Listing {
    /// The consumers made for `durable`.
    pub fn of_durable(&self, durable: &str) -> Vec<Listed> {
        self.evhost
            .iter()
            .filter(|c| c.durable == durable)
            .cloned()
            .collect()
    }
}

/// The durable `consumer` was made for, when evhost made it: named so by
/// its description, else by its name, which must be exactly the name the
/// host gives the consumer of its filter subject.
pub fn durable_of(consumer: &Existing) -> Option<String> {
    if let Some(durable) = consumer
        .description
        .as_deref()
        .and_then(consumers::marked_durable)
    {
        return Some(durable.to_string());
    }
    let (durable, _digest) = consumer.name.rsplit_once('-')?;
    (!durable.is_empty() && consumers::consumer_name(durable, &consumer.filter) == consumer.name)
        .then(|| durable.to_string())
}

/// Sorts the consumers the server lists into evhost's and the others.
pub fn sort_out(infos: &[consumer::Info]) -> Listing {
    let mut listing = Listing::default();
    for info in infos {
        let existing = Existing {
            name: info.name.clone(),
            filter: info.config.filter_subject.clone(),
            description: info.config.description.clone(),
        };
        match durable_of(&existing) {
            Some(durable) => listing.evhost.push(Listed {
                name: existing.name,
                durable,
                filter: existing.filter,
                pending: info.num_pending,
                ack_pending: info.num_ack_pending,
                waiting: info.num_waiting,
            }),
            None => listing.others += 1,
        }
    }
    listing
        .evhost
        .sort_by(|a, b| (&a.durable, &a.filter, &a.name).cmp(&(&b.durable, &b.filter, &b.name)));
    listing
}

/// Why `delete` leaves a durable's consumers alone: some host may still be
/// serving the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the consumers of durable {durable} on stream {stream} are in use ({}): a host may still \
     be serving the plugin",
    busy.join("; ")
)]
pub struct InUse {
    /// The stream.
    pub stream: String,
    /// The durable.
    pub durable: String,
    /// Each consumer in use, with what shows it.
    pub busy: Vec<String>,
}

impl InUse {
    /// The one line `delete` refuses with.
    pub fn refusal(&self) -> String {
        format!(
            "refused: {self}; nothing deleted (stop every host serving it, or pass --yes to delete them anyway)"
        )
    }
}

/// Whether any of `consumers` has a pull request waiting or a message
/// delivered and not acked.
pub fn in_use(stream: &str, durable: &str, consumers: &[Listed]) -> Option<InUse> {
    let busy: Vec<String> = consumers
        .iter()
        .filter(|c| c.waiting > 0 || c.ack_pending > 0)
        .map(|c| {
            format!(
                "{}: {} waiting pull request(s), {} unacked message(s)",
                c.name, c.waiting, c.ack_pending
            )
        })
        .collect();
    (!busy.is_empty()).then(|| InUse {
        stream: stream.to_string(),
        durable: durable.to_string(),
        busy,
    })
}

/// `word` as one shell word: as it is when it is plain, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command that deletes `durable`'s consumers on `stream`.
pub fn delete_command(stream: &str, durable: &str) -> String {
    format!(
        "evhost consumers delete --stream {} --durable {}",
        shell_word(stream),
        shell_word(durable)
    )
}

/// `consumers` as a table, one a line, under a header.
pub fn table(consumers: &[Listed]) -> String {
    let header = [
        "CONSUMER",
        "DURABLE",
        "SUBJECT",
        "PENDING",
        "ACK_PENDING",
        "WAITING",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for c in consumers {
        rows.push(vec![
            c.name.clone(),
            c.durable.clone(),
            c.filter.clone(),
            c.pending.to_string(),
            c.ack_pending.to_string(),
            c.waiting.to_string(),
        ]);
    }
    crate::text_table::aligned(&rows)
}

/// `consumers` of `stream` as a JSON array.
pub fn to_json(stream: &str, consumers: &[Listed]) -> serde_json::Value {
    consumers
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "durable": c.durable,
                "stream": stream,
                "filter_subject": c.filter,
                "pending": c.pending,
                "ack_pending": c.ack_pending,
                "waiting": c.waiting,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

/// The consumers of `stream`, sorted out.
pub async fn list(client: &Client, stream: &str) -> anyhow::Result<Listing> {
    // The name goes into a JetStream API subject: nothing but a name.
    anyhow::ensure!(
        crate::manifest_resolve::valid_name(stream),
        "{stream:?} is not a stream name (letters, digits, `-` and `_`)"
    );
    let js = jetstream::new(client.clone());
    let handle = js
        .get_stream(stream)
        .await
        .with_context(|| format!("cannot find stream {stream}"))?;
    let infos: Vec<consumer::Info> = handle
        .consumers()
        .try_collect()
        .await
        .with_context(|| format!("cannot list the consumers of stream {stream}"))?;
    Ok(sort_out(&infos))
}

/// What `delete` did.
#[derive(Debug)]
pub enum Deletion {
    /// These consumers were deleted; `in_use` says what was in use among
    /// them when `--yes` deleted them anyway.
    Deleted {
        deleted: Vec<Listed>,
        in_use: Option<InUse>,
    },
    /// Nothing was deleted: a host may still serve the plugin.
    Refused(InUse),
}

/// Deletes every consumer evhost made for `durable` on `stream`; unless
/// `anyway`, only when none is in use (asked twice, [`SETTLE`] apart). That
/// the stream has none of them is an error.
pub async fn delete(
    client: &Client,
    stream: &str,
    durable: &str,
    anyway: bool,
) -> anyhow::Result<Deletion> {
    anyhow::ensure!(
        crate::manifest_resolve::valid_name(durable),
        "{durable:?} is not a durable name (letters, digits, `-` and `_`)"
    );
    let mut mine = list(client, stream).await?.of_durable(durable);
    anyhow::ensure!(
        !mine.is_empty(),
        "stream {stream} has no consumer of durable {durable} made by evhost (`evhost consumers list --stream {stream}` shows those it has)"
    );
    let busy = in_use(stream, durable, &mine);
    if !anyway {
        if let Some(refusal) = busy {
            return Ok(Deletion::Refused(refusal));
        }
        tokio::time::sleep(SETTLE).await;
        mine = list(client, stream).await?.of_durable(durable);
        if let Some(refusal) = in_use(stream, durable, &mine) {
            return Ok(Deletion::Refused(refusal));
        }
    }
    let js = jetstream::new(client.clone());
    let handle = js
        .get_stream(stream)
        .await
        .with_context(|| format!("cannot find stream {stream}"))?;
    let mut deleted: Vec<Listed> = Vec::with_capacity(mine.len());
    for consumer in mine {
        handle
            .delete_consumer(&consumer.name)
            .await
            .with_context(|| {
                let before: Vec<&str> = deleted.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "cannot delete consumer {} of stream {stream} (deleted before it: {})",
                    consumer.name,
                    if before.is_empty() {
                        "none".to_string()
                    } else {
                        before.join(", ")
                    }
                )
            })?;
        deleted.push(consumer);
    }
    Ok(Deletion::Deleted {
        deleted,
        in_use: busy,
    })
}

/// Logs, for a JetStream plugin removed from the folder and drained, that
/// its consumers on `stream` are kept, naming them and the command that
/// deletes them. A failure to list them is a warning.
pub async fn report_kept(client: &Client, plugin: &str, stream: &str, durable: &str) {
    match list(client, stream).await {
        Ok(listing) => {
            let names: Vec<String> = listing
                .of_durable(durable)
                .into_iter()
                .map(|c| c.name)
                .collect();
            if names.is_empty() {
                tracing::info!(
                    plugin,
                    stream,
                    durable,
                    "the removed plugin has no durable consumers on the server"
                );
                return;
            }
            let command = delete_command(stream, durable);
            tracing::info!(
                plugin,
                stream,
                durable,
                consumers = ?names,
                "the removed plugin's durable consumers are kept on the server, as other hosts may still serve it; once none does, `{command}` deletes them"
            );
        }
        Err(err) => tracing::warn!(
            plugin,
            stream,
            durable,
            error = crate::errors::one_line(&format!("{err:#}")),
            "cannot list the removed plugin's durable consumers; they are kept on the server (`evhost consumers list --stream {stream} --durable {durable}` shows them)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::{consumer_name, description};

    fn existing(name: &str, filter: &str, description: Option<&str>) -> Existing {
        Existing {
            name: name.into(),
            filter: filter.into(),
            description: description.map(Into::into),
        }
    }

    fn listed(name: &str, durable: &str, waiting: usize, ack_pending: usize) -> Listed {
        Listed {
            name: name.into(),
            durable: durable.into(),
            filter: "in.a".into(),
            pending: 0,
            ack_pending,
            waiting,
        }
    }

    #[test]
    fn evhost_consumers_are_found_by_their_mark_or_their_exact_name() {
        let marked = existing(
            &consumer_name("evhost-echo", "in.a"),
            "in.a",
            Some(&description("evhost-echo", "in.a")),
        );
        assert_eq!(durable_of(&marked).as_deref(), Some("evhost-echo"));
        // The mark alone: a consumer adopted from an earlier version's
        // positional name, described when the host bound it.
        let adopted = existing(
            "evhost-echo-0",
            "in.a",
            Some(&description("evhost-echo", "in.a")),
        );
        assert_eq!(durable_of(&adopted).as_deref(), Some("evhost-echo"));
        // The name alone, when it is exactly its filter's.
        let named = existing(&consumer_name("evhost-echo", "in.b"), "in.b", None);
        assert_eq!(durable_of(&named).as_deref(), Some("evhost-echo"));
        // A durable whose name starts like another's is its own.
        let longer = existing(&consumer_name("evhost-echo2", "in.c"), "in.c", None);
        assert_eq!(durable_of(&longer).as_deref(), Some("evhost-echo2"));
    }

    #[test]
    fn other_applications_consumers_are_not_evhosts() {
        for other in [
            existing("audit", "in.a", None),
            existing("audit", "in.a", Some("the audit service")),
            // Named like evhost's, but not the name of its filter subject.
            existing("evhost-echo-deadbeef", "in.b", Some("someone else's")),
            existing(&consumer_name("evhost-echo", "in.a"), "in.b", None),
            existing("evhost-echo-audit", "in.a", None),
            // Earlier versions' positional names, never marked.
            existing("evhost-echo", "in.a", None),
            existing("evhost-echo-1", "in.a", None),
            existing("-", "", None),
        ] {
            assert_eq!(durable_of(&other), None, "{other:?}");
        }
    }

    #[test]
    fn a_durable_in_use_is_refused_naming_what_shows_it() {
        let idle = [listed("d-1", "d", 0, 0), listed("d-2", "d", 0, 0)];
        assert_eq!(in_use("IN", "d", &idle), None);
        let busy = [listed("d-1", "d", 0, 0), listed("d-2", "d", 1, 3)];
        let refusal = in_use("IN", "d", &busy).expect("in use");
        assert_eq!(
            refusal.busy,
            vec!["d-2: 1 waiting pull request(s), 3 unacked message(s)".to_string()]
        );
        let line = refusal.refusal();
        assert!(!line.contains('\n'), "{line}");
        for part in [
            "refused",
            "durable d",
            "stream IN",
            "d-2",
            "nothing deleted",
            "--yes",
        ] {
            assert!(line.contains(part), "{part}: {line}");
        }
        assert!(in_use("IN", "d", &[listed("d-1", "d", 0, 1)]).is_some());
        assert!(in_use("IN", "d", &[listed("d-1", "d", 2, 0)]).is_some());
    }

    #[test]
    fn the_delete_command_is_one_a_shell_takes_as_it_is() {
        assert_eq!(
            delete_command("ORDERS", "evhost-payment"),
            "evhost consumers delete --stream ORDERS --durable evhost-payment"
        );
        assert_eq!(
            delete_command("MY STREAM", "it's"),
            r"evhost consumers delete --stream 'MY STREAM' --durable 'it'\''s'"
        );
    }

    #[test]
    fn listings_show_evhosts_consumers_sorted_and_count_the_others() {
        let info = |name: &str, filter: &str, description: Option<&str>| {
            let json = serde_json::json!({
                "stream_name": "IN",
                "name": name,
                "created": "2026-01-01T00:00:00Z",
                "config": {
                    "durable_name": name,
                    "description": description,
                    "filter_subject": filter,
                    "ack_policy": "explicit",
                    "deliver_policy": "all",
                    "replay_policy": "instant",
                },
                "delivered": {"consumer_seq": 0, "stream_seq": 0},
                "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
                "num_ack_pending": 2,
                "num_redelivered": 0,
                "num_waiting": 1,
                "num_pending": 7,
            });
            serde_json::from_value::<consumer::Info>(json).expect("a consumer info")
        };
        let b = consumer_name("d", "in.b");
        let a = consumer_name("d", "in.a");
        let infos = [
            info(&b, "in.b", Some(&description("d", "in.b"))),
            info("audit", "in.a", None),
            info(&consumer_name("c", "in.c"), "in.c", None),
            info(&a, "in.a", Some(&description("d", "in.a"))),
        ];
        let listing = sort_out(&infos);
        assert_eq!(listing.others, 1);
        let names: Vec<&str> = listing.evhost.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec![consumer_name("c", "in.c").as_str(), &a, &b]);
        let mine = listing.of_durable("d");
        assert_eq!(mine.len(), 2);
        assert_eq!(
            (mine[0].pending, mine[0].ack_pending, mine[0].waiting),
            (7, 2, 1)
        );

        let text = table(&mine);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "CONSUMER    DURABLE  SUBJECT  PENDING  ACK_PENDING  WAITING"
        );
        assert_eq!(
            lines[1],
            format!("{a}  d        in.a     7        2            1")
        );
        assert_eq!(lines.len(), 3);

        let json = to_json("IN", &mine);
        assert_eq!(json[0]["name"], a.as_str());
        assert_eq!(json[0]["durable"], "d");
        assert_eq!(json[0]["stream"], "IN");
        assert_eq!(json[1]["filter_subject"], "in.b");
        assert_eq!(json[1]["pending"], 7);
        assert_eq!(json[1]["ack_pending"], 2);
        assert_eq!(json[1]["waiting"], 1);
    }
}
