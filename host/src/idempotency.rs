//! The idempotency key a handler sees in `message.idempotency-key`: the same
//! on every delivery of one message, different for two plugins handling it.
//! Pure, apart from the random id made for a core NATS message that carries
//! no `Nats-Msg-Id`.

use std::fmt::Write as _;

/// The key of a core NATS message: `<plugin>:<Nats-Msg-Id>` when the
/// publisher set that header, else `<plugin>:<32 random hex digits>`, made
/// once when the message arrives and kept for the host's retries of it.
pub fn core_key(plugin: &str, nats_msg_id: Option<&str>) -> String {
    let mut key = String::with_capacity(plugin.len() + 33);
    key.push_str(plugin);
    key.push(':');
    match nats_msg_id {
        Some(id) => key.push_str(id),
        None => {
            let _ = write!(key, "{:032x}", rand::random::<u128>());
        }
    }
    key
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
    fn a_made_id_is_random_hex() {
        let a = core_key("p", None);
        let b = core_key("p", None);
        assert_ne!(a, b);
        let hex = a.strip_prefix("p:").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn jetstream_keys_follow_dedup_else_the_sequence() {
        assert_eq!(jetstream_key("inv", Some("e-1"), "IN", 9), "inv:e-1");
        assert_eq!(jetstream_key("inv", None, "IN", 9), "inv:IN:9");
    }
}
