//! Idempotency keys: where a message's id comes from (a header or a JSON
//! pointer into the payload) and how it becomes a key in the key-value
//! bucket of handled ids. Pure; the bucket itself is used by `jetstream`.

use sha2::{Digest, Sha256};

/// Where a message's id is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupKey {
    /// The value of this header (`header:Nats-Msg-Id`).
    Header(String),
    /// The string or number at this JSON pointer in the payload (`json:/event_id`).
    JsonPointer(String),
}

impl DedupKey {
    /// Parses `header:NAME` or `json:/pointer`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        match spec.split_once(':') {
            Some(("header", name)) if !name.is_empty() => Ok(DedupKey::Header(name.to_string())),
            Some(("json", pointer)) if pointer.starts_with('/') => {
                Ok(DedupKey::JsonPointer(pointer.to_string()))
            }
            _ => Err(format!(
                "jetstream.dedup {spec:?} must be \"header:NAME\" or \"json:/pointer\" (e.g. \"json:/event_id\")"
            )),
        }
    }

    /// The id of a message, if it has one.
    pub fn extract(&self, headers: &[(&str, &str)], payload: &[u8]) -> Option<String> {
        match self {
            DedupKey::Header(name) => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
                .filter(|v| !v.is_empty()),
            DedupKey::JsonPointer(pointer) => {
                let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
                match value.pointer(pointer)? {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            }
        }
    }
}

/// The bucket key recording that `plugin` handled message `id`. Each plugin
/// has its own keys: two plugins handling one event are not duplicates. Ids
/// with characters a key cannot hold are hashed.
pub fn bucket_key(plugin: &str, id: &str) -> String {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='));
    if plain && id.len() <= 200 {
        format!("{plugin}.{id}")
    } else {
        let digest = Sha256::digest(id.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{plugin}.h-{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_json_specs() {
        assert_eq!(
            DedupKey::parse("header:Nats-Msg-Id"),
            Ok(DedupKey::Header("Nats-Msg-Id".into()))
        );
        assert_eq!(
            DedupKey::parse("json:/event_id"),
            Ok(DedupKey::JsonPointer("/event_id".into()))
        );
        assert!(DedupKey::parse("json:event_id").is_err());
        assert!(DedupKey::parse("body").is_err());
    }

    #[test]
    fn extracts_ids() {
        let headers = [("nats-msg-id", "m-1")];
        assert_eq!(
            DedupKey::Header("Nats-Msg-Id".into()).extract(&headers, b""),
            Some("m-1".into())
        );
        assert_eq!(DedupKey::Header("X".into()).extract(&headers, b""), None);
        let json = DedupKey::JsonPointer("/event_id".into());
        assert_eq!(
            json.extract(&[], br#"{"event_id":"e-9"}"#),
            Some("e-9".into())
        );
        assert_eq!(json.extract(&[], br#"{"event_id":42}"#), Some("42".into()));
        assert_eq!(json.extract(&[], br#"{"other":1}"#), None);
        assert_eq!(json.extract(&[], b"\xff not json"), None);
    }

    #[test]
    fn keys_are_per_plugin_and_always_valid() {
        assert_eq!(bucket_key("payment", "3f2a-11"), "payment.3f2a-11");
        let hashed = bucket_key("payment", "a b/c.d");
        assert!(hashed.starts_with("payment.h-"));
        assert!(
            hashed[8..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        );
        assert_ne!(bucket_key("a", "x"), bucket_key("b", "x"));
    }
}
