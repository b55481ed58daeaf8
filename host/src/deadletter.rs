//! Dead letters: where a message goes when the host gives up on it, and the
//! headers that say why. The payload and original headers are kept as they
//! arrived, so a dead letter can be replayed.

use async_nats::HeaderMap;

use crate::outcome::DeadLetterKind;

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
}

impl<'a> DeadLetter<'a> {
    /// The dead letter of `msg`, given up on by `plugin` after `attempts`
    /// deliveries, logged as one warning.
    pub fn of(
        plugin: &'a crate::plugin::Plugin,
        msg: &'a async_nats::Message,
        kind: DeadLetterKind,
        error: &'a str,
        attempts: u32,
        stream: Option<(&'a str, u64)>,
    ) -> Self {
        let letter = DeadLetter {
            subject: msg.subject.as_str(),
            headers: msg.headers.as_ref(),
            plugin: &plugin.name,
            version: &plugin.version,
            kind,
            error,
            attempts,
            stream,
        };
        tracing::warn!(
            plugin = %plugin.name, attempt = attempts, kind = kind.as_str(), error,
            dead_letter = %letter.subject(&plugin.settings.dead_letter_prefix), "message dead-lettered"
        );
        letter
    }

    /// The dead-letter subject: `prefix` + the original subject.
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.subject)
    }

    /// The original headers plus the `Evhost-*` ones (replacing any of the
    /// same name already present, so a replayed-and-failed message does not
    /// carry two reasons).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(original) = self.headers {
            for (name, values) in original.iter() {
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
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
        headers
    }
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
        let dl = DeadLetter {
            subject: "orders.order.created",
            headers: Some(&original),
            plugin: "payment",
            version: "0123456789abcdef",
            kind: DeadLetterKind::Exhausted,
            error: "provider down\nsecond line",
            attempts: 5,
            stream: None,
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

        let js = DeadLetter {
            stream: Some(("ORDERS", 42)),
            ..dl
        };
        let h = js.headers();
        assert_eq!(h.get(STREAM).map(|v| v.as_str()), Some("ORDERS"));
        assert_eq!(h.get(STREAM_SEQ).map(|v| v.as_str()), Some("42"));
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = header_safe(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
