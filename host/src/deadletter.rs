//! Dead letters: where a message goes when the host gives up on it, and the
//! headers that say why. The payload and original headers are kept as they
//! arrived, so a dead letter can be replayed, with three exceptions that make
//! every letter publishable: the input's `Nats-*` headers, which would steer
//! the dead-letter stream (`Nats-Expected-Stream` makes it refuse the letter,
//! `Nats-Msg-Id` makes it drop a second plugin's letter as a duplicate), are
//! kept renamed `Evhost-Kept-Nats-*`; a subject too long for the server once
//! prefixed is shortened ([`subject_for`]); and a letter over the server's
//! `max_payload` is cut to fit, saying so in a header ([`DeadLetter::message`]).

use async_nats::HeaderMap;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::outcome::DeadLetterKind;
use crate::subject::MAX_SUBJECT_LEN;

/// The subject the message was first published to.
pub const ORIGINAL_SUBJECT: &str = "Evhost-Original-Subject";
/// The plugin that gave up.
pub const PLUGIN: &str = "Evhost-Plugin";
/// That plugin's version digest.
pub const PLUGIN_VERSION: &str = "Evhost-Plugin-Version";
/// `permanent`, `exhausted`, `trap`, `timeout` or `invalid-output`.
pub const ERROR_KIND: &str = "Evhost-Error-Kind";
/// The reason, as text.
pub const ERROR: &str = "Evhost-Error";
/// How many deliveries were made.
pub const ATTEMPTS: &str = "Evhost-Attempts";
/// JetStream: the stream the message was consumed from.
pub const STREAM: &str = "Evhost-Stream";
/// JetStream: its sequence number in that stream.
pub const STREAM_SEQ: &str = "Evhost-Stream-Seq";
/// Set when the payload was cut to fit the server's `max_payload`: the
/// original length in bytes.
pub const PAYLOAD_TRUNCATED: &str = "Evhost-Payload-Truncated";
/// Set when the original headers were left out to fit: how many there were.
pub const HEADERS_DROPPED: &str = "Evhost-Headers-Dropped";
/// What an input's `Nats-*` header is renamed to inside a dead letter
/// (`Nats-Msg-Id` → `Evhost-Kept-Nats-Msg-Id`); replay restores it.
pub const KEPT_PREFIX: &str = "Evhost-Kept-";

/// Bytes left spare under `max_payload`, for the arithmetic's sake.
const SLACK: usize = 64;

/// Longest `Evhost-Error` value; longer reasons are cut.
const MAX_ERROR_LEN: usize = 1024;

/// What the host knows about a message it gives up on.
pub struct DeadLetter<'a> {
    /// The original subject.
    pub subject: &'a str,
    /// The original headers, if any.
    pub headers: Option<&'a HeaderMap>,
    /// The plugin's name.
    pub plugin: &'a str,
    /// The plugin's version digest.
    pub version: &'a str,
    /// Why.
    pub kind: DeadLetterKind,
    /// The reason, as text.
    pub error: &'a str,
    /// Deliveries made.
    pub attempts: u32,
    /// JetStream: the stream and sequence the message came from.
    pub stream: Option<(&'a str, u64)>,
    /// The trace context of the span that gave up on it, which replaces the
    /// original's: the letter is that span's child. `None` when spans are
    /// not exported (the original's is kept).
    pub trace: Option<crate::trace_context::TraceHeaders>,
}

impl<'a> DeadLetter<'a> {
    /// The dead letter of `msg`, given up on by `plugin` after `attempts`
    /// deliveries.
    pub fn of(
        plugin: &'a crate::plugin::Plugin,
        msg: &'a async_nats::Message,
        kind: DeadLetterKind,
        error: &'a str,
        attempts: u32,
        stream: Option<(&'a str, u64)>,
    ) -> Self {
        DeadLetter {
            subject: msg.subject.as_str(),
            headers: msg.headers.as_ref(),
            plugin: &plugin.name,
            version: &plugin.version,
            kind,
            error,
            attempts,
            stream,
            trace: crate::trace_context::current(),
        }
    }

    /// The dead-letter subject (see [`subject_for`]).
    pub fn subject(&self, prefix: &str) -> String {
        subject_for(prefix, self.subject)
    }

    /// The original headers (`Nats-*` ones renamed, see [`kept_name`]; any
    /// `Evhost-*` ones left out, so a replayed-and-failed message does not
    /// carry two reasons and a publisher cannot plant them) plus the host's
    /// `Evhost-*` ones.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(original) = self.headers {
            for (name, values) in original.iter() {
                let name: &str = name.as_ref();
                if has_prefix(name, "Evhost-") {
                    continue;
                }
                let kept = kept_name(name);
                for value in values {
                    match &kept {
                        Some(kept) => headers.append(kept.as_str(), value.clone()),
                        None => headers.append(name, value.clone()),
                    }
                }
            }
        }
        for (name, value) in self.trace.iter().flatten() {
            headers.insert(*name, value.as_str());
        }
        self.add_own(&mut headers);
        headers
    }

    /// The headers and payload to publish, within `max_payload` bytes (the
    /// server's limit on headers and payload together). A letter that fits
    /// is [`DeadLetter::headers`] and `payload` unchanged. One that does not
    /// keeps its headers and as much of the payload as fits, with
    /// [`PAYLOAD_TRUNCATED`] giving the original length; when the original
    /// headers alone are too big, they are left out ([`HEADERS_DROPPED`]).
    pub fn message(&self, payload: &Bytes, max_payload: usize) -> (HeaderMap, Bytes) {
        let limit = max_payload.saturating_sub(SLACK);
        let fits = |headers: &HeaderMap, len: usize| wire_len(headers) + len <= limit;
        let mut headers = self.headers();
        if fits(&headers, payload.len()) {
            return (headers, payload.clone());
        }
        headers.insert(PAYLOAD_TRUNCATED, payload.len().to_string().as_str());
        if !fits(&headers, 0) {
            let dropped: usize = self
                .headers
                .map_or(0, |h| h.iter().map(|(_, v)| v.len()).sum());
            headers = HeaderMap::new();
            self.add_own(&mut headers);
            headers.insert(HEADERS_DROPPED, dropped.to_string().as_str());
            if fits(&headers, payload.len()) {
                return (headers, payload.clone());
            }
            headers.insert(PAYLOAD_TRUNCATED, payload.len().to_string().as_str());
        }
        let room = limit.saturating_sub(wire_len(&headers)).min(payload.len());
        (headers, payload.slice(..room))
    }

    /// Adds the host's `Evhost-*` headers.
    fn add_own(&self, headers: &mut HeaderMap) {
        headers.insert(ORIGINAL_SUBJECT, self.subject);
        headers.insert(PLUGIN, self.plugin);
        headers.insert(PLUGIN_VERSION, self.version);
        headers.insert(ERROR_KIND, self.kind.as_str());
        headers.insert(ERROR, header_safe(self.error).as_str());
        headers.insert(ATTEMPTS, self.attempts.to_string().as_str());
        if let Some((stream, seq)) = self.stream {
            headers.insert(STREAM, stream);
            headers.insert(STREAM_SEQ, seq.to_string().as_str());
        }
    }
}

/// The dead-letter subject of a message on `original`: `prefix` +
/// `original`, unless that is longer than [`MAX_SUBJECT_LEN`] (a subject
/// the server's control line may not hold). Then the leading tokens that fit
/// are kept and the rest replaced by one token, `_` and 16 hex digits of the
/// original subject's SHA-256, so letters of one subject still share one
/// dead-letter subject and stay under `prefix` (the dead-letter stream
/// captures them). The whole subject is in `Evhost-Original-Subject`.
pub fn subject_for(prefix: &str, original: &str) -> String {
    if prefix.len() + original.len() <= MAX_SUBJECT_LEN {
        return format!("{prefix}{original}");
    }
    let digest = Sha256::digest(original.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Room for the kept tokens, before ".", "_" and the 16 digits.
    let room = MAX_SUBJECT_LEN.saturating_sub(prefix.len() + 18);
    let mut kept = 0;
    for (i, _) in original.match_indices('.') {
        if i > room {
            break;
        }
        kept = i;
    }
    match &original[..kept] {
        "" => format!("{prefix}_{hash}"),
        head => format!("{prefix}{head}._{hash}"),
    }
}

/// The name an input header goes by inside a dead letter: `Nats-*` headers
/// get [`KEPT_PREFIX`] (they would steer the dead-letter stream); others
/// keep theirs (`None`).
pub fn kept_name(name: &str) -> Option<String> {
    has_prefix(name, "Nats-").then(|| format!("{KEPT_PREFIX}{name}"))
}

/// Case-insensitive `starts_with` (header names are case-insensitive).
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.is_char_boundary(prefix.len())
        && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The size of a header block on the wire: `NATS/1.0\r\n`, each
/// `name: value\r\n`, then `\r\n` (as the client counts it against
/// `max_payload`).
fn wire_len(headers: &HeaderMap) -> usize {
    let mut len = 12;
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        for value in values {
            len += name.len() + 4 + value.as_str().len();
        }
    }
    len
}

/// One line of at most [`MAX_ERROR_LEN`] bytes.
fn header_safe(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_keeps_originals_and_adds_reason() {
        let mut original = HeaderMap::new();
        original.insert("traceparent", "00-x-y-01");
        original.append("x-tag", "a");
        original.append("x-tag", "b");
        original.insert(ERROR_KIND, "stale");
        original.insert("Nats-Expected-Stream", "ELSEWHERE");
        original.insert("Nats-Msg-Id", "m-1");
        original.insert("Evhost-Kept-Nats-Rollup", "all");
        let dl = DeadLetter {
            subject: "orders.order.created",
            headers: Some(&original),
            plugin: "payment",
            version: "0123456789abcdef",
            kind: DeadLetterKind::Exhausted,
            error: "provider down\nsecond line",
            attempts: 5,
            stream: None,
            trace: None,
        };
        assert_eq!(dl.subject("dlq."), "dlq.orders.order.created");
        let h = dl.headers();
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_string());
        assert_eq!(get("traceparent").as_deref(), Some("00-x-y-01"));
        assert_eq!(h.get_all("x-tag").count(), 2);
        assert_eq!(
            get(ORIGINAL_SUBJECT).as_deref(),
            Some("orders.order.created")
        );
        assert_eq!(get(PLUGIN).as_deref(), Some("payment"));
        assert_eq!(get(PLUGIN_VERSION).as_deref(), Some("0123456789abcdef"));
        assert_eq!(get(ERROR_KIND).as_deref(), Some("exhausted"));
        assert_eq!(h.get_all(ERROR_KIND).count(), 1);
        assert_eq!(get(ERROR).as_deref(), Some("provider down second line"));
        assert_eq!(get(ATTEMPTS).as_deref(), Some("5"));
        assert!(h.get(STREAM).is_none());
        // Control headers are kept under another name, and restored by name.
        assert!(h.get("Nats-Expected-Stream").is_none());
        assert!(h.get("Nats-Msg-Id").is_none());
        assert_eq!(get("Evhost-Kept-Nats-Msg-Id").as_deref(), Some("m-1"));
        assert_eq!(
            get("Evhost-Kept-Nats-Expected-Stream").as_deref(),
            Some("ELSEWHERE")
        );
        // A publisher's own Evhost-* headers are not carried.
        assert!(h.get("Evhost-Kept-Nats-Rollup").is_none());

        let js = DeadLetter {
            stream: Some(("ORDERS", 42)),
            trace: None,
            ..dl
        };
        let h = js.headers();
        assert_eq!(h.get(STREAM).map(|v| v.as_str()), Some("ORDERS"));
        assert_eq!(h.get(STREAM_SEQ).map(|v| v.as_str()), Some("42"));
    }

    fn letter<'a>(headers: Option<&'a HeaderMap>) -> DeadLetter<'a> {
        DeadLetter {
            subject: "orders.order.created",
            headers,
            plugin: "payment",
            version: "0123456789abcdef",
            kind: DeadLetterKind::Permanent,
            error: "no",
            attempts: 1,
            stream: None,
            trace: None,
        }
    }

    #[test]
    fn control_headers_are_renamed() {
        assert_eq!(
            kept_name("nats-msg-id").as_deref(),
            Some("Evhost-Kept-nats-msg-id")
        );
        assert_eq!(kept_name("traceparent"), None);
    }

    #[test]
    fn a_letter_that_fits_is_unchanged() {
        let payload = Bytes::from_static(b"{\"a\":1}");
        let (headers, body) = letter(None).message(&payload, 1 << 20);
        assert_eq!(body, payload);
        assert!(headers.get(PAYLOAD_TRUNCATED).is_none());
        assert!(headers.get(HEADERS_DROPPED).is_none());
    }

    #[test]
    fn an_oversized_payload_is_cut_to_fit_and_says_so() {
        let max = 4096;
        let payload = Bytes::from(vec![b'x'; max]);
        let (headers, body) = letter(None).message(&payload, max);
        assert!(wire_len(&headers) + body.len() <= max);
        assert!(
            body.len() > max / 2,
            "as much as fits is kept: {}",
            body.len()
        );
        assert_eq!(
            body,
            payload.slice(..body.len()),
            "the leading bytes, unchanged"
        );
        assert_eq!(
            headers.get(PAYLOAD_TRUNCATED).map(|v| v.as_str()),
            Some("4096")
        );
    }

    #[test]
    fn oversized_original_headers_are_left_out_and_counted() {
        let max = 4096;
        let mut original = HeaderMap::new();
        original.insert("x-big", "y".repeat(max).as_str());
        original.insert("x-small", "z");
        let payload = Bytes::from_static(b"small");
        let (headers, body) = letter(Some(&original)).message(&payload, max);
        assert!(wire_len(&headers) + body.len() <= max);
        assert_eq!(body, payload, "the payload fits once the headers are out");
        assert!(headers.get("x-big").is_none());
        assert_eq!(headers.get(HEADERS_DROPPED).map(|v| v.as_str()), Some("2"));
        assert!(headers.get(PAYLOAD_TRUNCATED).is_none());
        assert_eq!(
            headers.get(ORIGINAL_SUBJECT).map(|v| v.as_str()),
            Some("orders.order.created")
        );
    }

    #[test]
    fn wire_len_matches_the_clients_count() {
        let mut h = HeaderMap::new();
        h.insert("a", "bc");
        h.append("a", "d");
        // "NATS/1.0\r\n" + "a: bc\r\n" + "a: d\r\n" + "\r\n"
        assert_eq!(wire_len(&h), 10 + 7 + 6 + 2);
    }

    #[test]
    fn long_subjects_get_a_dead_letter_subject_that_fits() {
        assert_eq!(subject_for("dlq.", "a.b"), "dlq.a.b");
        let long = format!("orders.{}", "t.".repeat(600)) + "end";
        let short = subject_for("dlq.", &long);
        assert!(short.len() <= MAX_SUBJECT_LEN, "{}", short.len());
        assert!(short.starts_with("dlq.orders.t.t."), "{short}");
        assert!(crate::subject::is_valid_subject(&short), "{short}");
        assert_eq!(short, subject_for("dlq.", &long), "stable per subject");
        let other = format!("{long}x");
        assert_ne!(short, subject_for("dlq.", &other));
        // One token too long to keep any of it.
        let token = "x".repeat(2000);
        let s = subject_for("dlq.", &token);
        assert!(s.starts_with("dlq._") && s.len() == 4 + 17, "{s}");
        // Exactly at the limit: unchanged.
        let edge = "y".repeat(MAX_SUBJECT_LEN - 4);
        assert_eq!(subject_for("dlq.", &edge), format!("dlq.{edge}"));
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = header_safe(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the input subject, its dead letter's subject fits
            /// the cap, is publishable, starts with the prefix, and is the
            /// plain `<prefix><subject>` whenever that fits.
            #[test]
            fn dead_letter_subjects_fit_and_stay_under_the_prefix(
                prefix in "[a-z]{1,20}\\.",
                tokens in proptest::collection::vec("[a-z0-9_-]{1,300}", 1..12),
            ) {
                let original = tokens.join(".");
                let subject = subject_for(&prefix, &original);
                prop_assert!(subject.len() <= MAX_SUBJECT_LEN, "{}", subject.len());
                prop_assert!(crate::subject::is_valid_subject(&subject), "{}", subject);
                prop_assert!(subject.starts_with(&prefix));
                if prefix.len() + original.len() <= MAX_SUBJECT_LEN {
                    prop_assert_eq!(subject, format!("{prefix}{original}"));
                }
            }
        }
    }
}
