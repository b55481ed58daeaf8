//! The message a handler receives and the messages it returns.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::HandlerError;
use crate::bindings::evhost::plugin::types as wit;

/// A message delivered to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to.
    pub subject: String,
    /// Its headers, in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as published.
    pub payload: Vec<u8>,
    /// Where a requester waits for the reply, for a request.
    pub reply_to: Option<String>,
    /// 1 on the first delivery, 2 on the first retry, and so on.
    pub attempt: u32,
}

impl Message {
    /// The idempotency key of the message being handled: the same on every
    /// delivery of it, and different for each plugin. Send it as
    /// `Idempotency-Key` to make an external effect safe to repeat
    /// ([`crate::http`] does so by default). Asked of the host on each call;
    /// empty outside a handler call.
    pub fn idempotency_key(&self) -> String {
        crate::idempotency::current().unwrap_or_default()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Decodes the payload as JSON; failure is a permanent error naming the type.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.payload).map_err(|err| {
            let name = std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("the expected type");
            HandlerError::permanent(format!("payload does not decode as {name}: {err}"))
        })
    }
}

impl From<wit::Message> for Message {
    fn from(m: wit::Message) -> Self {
        Message {
            subject: m.subject,
            headers: m.headers,
            payload: m.payload,
            reply_to: m.reply_to,
            attempt: m.attempt,
        }
    }
}

/// A message to publish if, and only if, the handler succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to publish (a plain subject, no wildcards).
    pub subject: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// A message with `payload` as its body.
    pub fn new(subject: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Outgoing {
            subject: subject.into(),
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// A message whose body is `value` as JSON, with `content-type:
    /// application/json`. Failing to serialize is a permanent error.
    pub fn json(subject: impl Into<String>, value: &impl Serialize) -> Result<Self, HandlerError> {
        let payload = serde_json::to_vec(value).map_err(|err| {
            HandlerError::permanent(format!("cannot encode the output as JSON: {err}"))
        })?;
        Ok(Outgoing::new(subject, payload).with_header("content-type", "application/json"))
    }

    /// Adds a header (a name may repeat).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<Outgoing> for wit::Outgoing {
    fn from(o: Outgoing) -> Self {
        wit::Outgoing {
            subject: o.subject,
            headers: o.headers,
            payload: o.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_may_repeat() {
        let m = Message {
            subject: "s".into(),
            headers: vec![("X-Tag".into(), "a".into()), ("x-tag".into(), "b".into())],
            payload: vec![],
            reply_to: None,
            attempt: 1,
        };
        assert_eq!(m.header("x-TAG"), Some("a"));
        assert_eq!(m.header_all("x-tag").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.header("missing"), None);
    }

    #[test]
    fn json_decode_failure_is_permanent_and_names_the_type() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Order {
            id: String,
        }
        let m = Message {
            subject: "s".into(),
            headers: vec![],
            payload: b"{".to_vec(),
            reply_to: None,
            attempt: 1,
        };
        match m.json::<Order>() {
            Err(HandlerError::Permanent(text)) => {
                assert!(text.contains("does not decode as Order"), "{text}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_output_carries_content_type() {
        let o = Outgoing::json("a.b", &serde_json::json!({"k": 1})).unwrap();
        assert_eq!(o.payload, br#"{"k":1}"#);
        assert_eq!(
            o.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
    }
}
