//! The idempotency key a handler sees in `message.idempotency-key`: the same
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

/// The key of a core NATS message: `<plugin>:<Nats-Msg-Id>` when the
/// publisher set that header, else `<plugin>:<32 hex digits>` (16 random per
/// process, then a counter), made once when the message arrives and kept for
/// the host's retries of it. Made on every message, so without `format!`.
pub fn core_key(plugin: &str, nats_msg_id: Option<&str>) -> String {
    let mut key = String::with_capacity(plugin.len() + 33);
    key.push_str(plugin);
    key.push(':');
    match nats_msg_id {
        Some(id) => key.push_str(id),
        None => {
            push_hex(&mut key, *PROCESS);
            push_hex(&mut key, MADE.fetch_add(1, Ordering::Relaxed));
        }
    }
    key
}

/// Appends `n` as 16 lower-case hex digits, written into a stack buffer
/// first (a `push` per digit cost about 10 instructions each).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = DIGITS[((n >> ((15 - i) * 4)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// The `Nats-Msg-Id` header of a NATS message, if any.
pub fn nats_msg_id(headers: Option<&async_nats::HeaderMap>) -> Option<&str> {
    headers?.get("Nats-Msg-Id").map(|v| v.as_str())
}

/// The key of a JetStream message: `<plugin>:<dedup id>` when the manifest
/// configures `delivery.dedup` and the message has one, else
/// `<plugin>:<stream>:<sequence>` (a redelivery keeps its stream sequence).
pub fn jetstream_key(plugin: &str, dedup_id: Option<&str>, stream: &str, seq: u64) -> String {
    match dedup_id {
        Some(id) => format!("{plugin}:{id}"),
        None => format!("{plugin}:{stream}:{seq}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publishers_id_is_kept_and_scoped_to_the_plugin() {
        assert_eq!(core_key("payment", Some("order-7")), "payment:order-7");
        assert_ne!(core_key("payment", Some("o")), core_key("audit", Some("o")));
    }

    #[test]
    fn made_ids_are_distinct_hex() {
        let a = core_key("p", None);
        let b = core_key("p", None);
        assert_ne!(a, b);
        for key in [&a, &b] {
            let hex = key.strip_prefix("p:").unwrap();
            assert_eq!(hex.len(), 32, "{key}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{key}");
        }
        // The process's random half is shared; the counter half differs.
        assert_eq!(a[..18], b[..18]);
        let mut s = String::new();
        push_hex(&mut s, 0xfe);
        assert_eq!(s, "00000000000000fe");
    }

    #[test]
    fn jetstream_keys_follow_dedup_else_the_sequence() {
        assert_eq!(jetstream_key("inv", Some("e-1"), "IN", 9), "inv:e-1");
        assert_eq!(jetstream_key("inv", None, "IN", 9), "inv:IN:9");
    }
}
