//! The idempotency key a handler gets from `host.idempotency-key`: the same
//! on every delivery of one message, different for two plugins handling it.
//! Pure, apart from the ids made for core NATS messages that carry no
//! `Nats-Msg-Id`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// This process's part of the ids it makes: random, so two hosts (or two
/// runs of one) never make the same id.
static PROCESS: LazyLock<u64> = LazyLock::new(rand::random);

/// Ids made by this process so far.
static MADE: AtomicU64 = AtomicU64::new(0);

/// What the idempotency key of the message being handled is made of. The
/// host keeps it in the instance's store for the length of a call and makes
/// the key only when the handler asks (`host.idempotency-key`), so a handler
/// that never asks costs nothing: no string is made or copied into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeySource {
    /// No message is being handled: the key is empty.
    #[default]
    None,
    /// An id the message carries: a core message's `Nats-Msg-Id`, or a
    /// JetStream message's dedup id.
    Id(String),
    /// A core message with no `Nats-Msg-Id`: the id this process made when
    /// the message arrived (kept for the host's retries of it).
    Made(u64),
    /// A JetStream message without a dedup id: its place in the stream (a
    /// redelivery keeps its stream sequence).
    Sequence {
        /// The stream's name.
        stream: String,
        /// The message's stream sequence.
        seq: u64,
    },
}

impl KeySource {
    /// The source of a core NATS message's key: its `Nats-Msg-Id` when the
    /// publisher set that header, else a new id, made here as it arrives.
    pub fn core(nats_msg_id: Option<&str>) -> Self {
        match nats_msg_id {
            Some(id) => KeySource::Id(id.to_string()),
            None => KeySource::Made(MADE.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// The source of a JetStream message's key: its dedup id when the
    /// manifest configures `jetstream.dedup` and the message has one, else its
    /// stream and sequence.
    pub fn jetstream(dedup_id: Option<String>, stream: &str, seq: u64) -> Self {
        match dedup_id {
            Some(id) => KeySource::Id(id),
            None => KeySource::Sequence {
                stream: stream.to_string(),
                seq,
            },
        }
    }

    /// The key `plugin` sees: `<plugin>:<id>`, where a made id is 32 hex
    /// digits (16 random per process, then a counter) and a sequence is
    /// `<stream>:<seq>`; empty outside a call.
    pub fn key(&self, plugin: &str) -> String {
        match self {
            KeySource::None => String::new(),
            KeySource::Id(id) => [plugin, ":", id].concat(),
            KeySource::Made(n) => {
                // Written out by hand: `format!`'s padded hex costs more than
                // the rest of a small handler's call.
                let mut key = String::with_capacity(plugin.len() + 33);
                key.push_str(plugin);
                key.push(':');
                push_hex(&mut key, *PROCESS);
                push_hex(&mut key, *n);
                key
            }
            KeySource::Sequence { stream, seq } => format!("{plugin}:{stream}:{seq}"),
        }
    }
}

/// Appends `n` as 16 lowercase hex digits, zero-padded.
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[(n >> (shift * 4)) as usize & 0xf]));
    }
}

/// The `Nats-Msg-Id` header of a NATS message, if any.
pub fn nats_msg_id(headers: Option<&async_nats::HeaderMap>) -> Option<&str> {
    headers?.get("Nats-Msg-Id").map(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publishers_id_is_kept_and_scoped_to_the_plugin() {
        let source = KeySource::core(Some("order-7"));
        assert_eq!(source.key("payment"), "payment:order-7");
        assert_ne!(source.key("payment"), source.key("audit"));
    }

    #[test]
    fn made_ids_are_distinct_hex_and_stable_per_message() {
        let (first, second) = (KeySource::core(None), KeySource::core(None));
        let (a, b) = (first.key("p"), second.key("p"));
        assert_ne!(a, b);
        // Asked twice (a retry), one message keeps its key.
        assert_eq!(first.key("p"), a);
        for key in [&a, &b] {
            let hex = key.strip_prefix("p:").unwrap();
            assert_eq!(hex.len(), 32, "{key}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{key}");
        }
        // The process's random half is shared; the counter half differs.
        assert_eq!(a[..18], b[..18]);
        assert!(KeySource::Made(0xfe).key("p").ends_with("00000000000000fe"));
    }

    #[test]
    fn hex_is_sixteen_lowercase_digits_as_format_writes_them() {
        for n in [0, 1, 0xfe, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut out = String::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:016x}"));
        }
    }

    #[test]
    fn jetstream_keys_follow_dedup_else_the_sequence() {
        assert_eq!(
            KeySource::jetstream(Some("e-1".into()), "IN", 9).key("inv"),
            "inv:e-1"
        );
        assert_eq!(KeySource::jetstream(None, "IN", 9).key("inv"), "inv:IN:9");
    }

    #[test]
    fn outside_a_call_the_key_is_empty() {
        assert_eq!(KeySource::None.key("p"), "");
    }
}
