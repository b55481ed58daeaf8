//! What a handler can ask about the message and its plugin.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;

use crate::Message;

thread_local! {
    /// The `[config]` values asked for so far, absent ones included.
    static CONFIG: RefCell<BTreeMap<String, Option<String>>> = const { RefCell::new(BTreeMap::new()) };
}

/// The message's metadata and the plugin's configuration.
#[derive(Debug, Clone)]
pub struct Context {
    subject: String,
    headers: Vec<(String, String)>,
    reply_to: Option<String>,
    attempt: u32,
    /// Asked of the host the first time a handler wants it.
    idempotency_key: OnceCell<String>,
}

impl Context {
    /// The context of `msg`, taking its metadata (the payload is dropped):
    /// for typed handlers, whose payload is already decoded.
    pub(crate) fn taking(msg: Message) -> Self {
        Context {
            subject: msg.subject,
            headers: msg.headers,
            reply_to: msg.reply_to,
            attempt: msg.attempt,
            idempotency_key: OnceCell::new(),
        }
    }

    pub(crate) fn of(msg: &Message) -> Self {
        Context {
            subject: msg.subject.clone(),
            headers: msg.headers.clone(),
            reply_to: msg.reply_to.clone(),
            attempt: msg.attempt,
            idempotency_key: OnceCell::new(),
        }
    }

    /// A value from the `[config]` table of the plugin's manifest. Asked of
    /// the host once per key: a value holds for the life of the instance (a
    /// changed manifest loads new instances).
    pub fn config(&self, key: &str) -> Option<String> {
        CONFIG.with_borrow_mut(|known| {
            if let Some(value) = known.get(key) {
                return value.clone();
            }
            let value = crate::bindings::evhost::plugin::host::config(key);
            known.insert(key.to_string(), value.clone());
            value
        })
    }

    /// The subject the message was published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The message's headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// 1 on the first delivery, 2 on the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The same on every delivery of this message, and different for each
    /// plugin: send it as `Idempotency-Key` to make an external effect safe
    /// to repeat. Asked of the host once per message, when first wanted.
    pub fn idempotency_key(&self) -> &str {
        self.idempotency_key
            .get_or_init(|| crate::idempotency::current().unwrap_or_default())
    }

    /// Where a requester waits for the reply, for a request.
    pub fn reply_to(&self) -> Option<&str> {
        self.reply_to.as_deref()
    }
}
