//! What a handler can ask about the message and its plugin.

use crate::Message;

/// The message's metadata and the plugin's configuration.
#[derive(Debug, Clone)]
pub struct Context {
    subject: String,
    headers: Vec<(String, String)>,
    reply_to: Option<String>,
    attempt: u32,
}

impl Context {
    pub(crate) fn of(msg: &Message) -> Self {
        Context {
            subject: msg.subject.clone(),
            headers: msg.headers.clone(),
            reply_to: msg.reply_to.clone(),
            attempt: msg.attempt,
        }
    }

    /// A value from the `[config]` table of the plugin's manifest.
    pub fn config(&self, key: &str) -> Option<String> {
        crate::bindings::evhost::plugin::host::config(key)
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

    /// Where a requester waits for the reply, for a request.
    pub fn reply_to(&self) -> Option<&str> {
        self.reply_to.as_deref()
    }
}
