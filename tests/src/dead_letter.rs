//! [`DeadLetter`]: a dead letter as evhost publishes it, parsed from its
//! `Evhost-*` headers and checked against the host's log.

use async_nats::{Message, Subscriber};

use crate::{Host, WAIT, describe, header, next_message};

/// A dead letter as evhost publishes it.
#[derive(Debug)]
pub struct DeadLetter {
    /// The message as received.
    pub message: Message,
    /// `Evhost-Original-Subject`.
    pub original_subject: String,
    /// `Evhost-Plugin`.
    pub plugin: String,
    /// `Evhost-Plugin-Version`.
    pub plugin_version: String,
    /// `Evhost-Error-Kind`.
    pub kind: String,
    /// `Evhost-Error`.
    pub error: String,
    /// `Evhost-Attempts`.
    pub attempts: u32,
}

impl DeadLetter {
    /// Reads the `Evhost-*` headers, failing when any is missing or malformed.
    pub fn parse(message: Message) -> Self {
        let get = |name: &str| {
            header(&message, name).unwrap_or_else(|| {
                panic!("dead letter without header {name}: {}", describe(&message))
            })
        };
        let attempts = get("Evhost-Attempts");
        let attempts = attempts.parse().unwrap_or_else(|_| {
            panic!(
                "Evhost-Attempts is not a decimal number: {attempts:?} in {}",
                describe(&message)
            )
        });
        let plugin_version = get("Evhost-Plugin-Version");
        assert!(
            plugin_version.len() == 16 && plugin_version.chars().all(|c| c.is_ascii_hexdigit()),
            "Evhost-Plugin-Version is not 16 hex digits: {plugin_version:?}"
        );
        DeadLetter {
            original_subject: get("Evhost-Original-Subject"),
            plugin: get("Evhost-Plugin"),
            plugin_version,
            kind: get("Evhost-Error-Kind"),
            error: get("Evhost-Error"),
            attempts,
            message,
        }
    }

    /// Checks the subject and the headers every dead letter must carry:
    /// published to `dlq.<subject>`, from `plugin`, with the version the host
    /// logged when it loaded that plugin, with `kind` and `attempts`.
    pub fn assert_about(
        &self,
        subject: &str,
        plugin: &str,
        kind: &str,
        attempts: u32,
        host: &Host,
    ) {
        let context = || format!("{}\n{}", describe(&self.message), host.log_report());
        assert_eq!(
            self.message.subject.as_str(),
            format!("dlq.{subject}"),
            "dead-letter subject; {}",
            context()
        );
        assert_eq!(
            self.original_subject,
            subject,
            "Evhost-Original-Subject; {}",
            context()
        );
        assert_eq!(self.plugin, plugin, "Evhost-Plugin; {}", context());
        assert_eq!(self.kind, kind, "Evhost-Error-Kind; {}", context());
        assert_eq!(self.attempts, attempts, "Evhost-Attempts; {}", context());
        assert!(
            !self.error.trim().is_empty(),
            "Evhost-Error is empty; {}",
            context()
        );
        let loaded = host.find_logs(|l| {
            (l.is("plugin loaded", Some(plugin)) || l.is("plugin reloaded", Some(plugin)))
                && l.field_str("version").is_some()
        });
        let logged = loaded
            .last()
            .and_then(|l| l.field_str("version"))
            .unwrap_or_else(|| {
                panic!(
                    "no `plugin loaded` line with a version for {plugin}; {}",
                    context()
                )
            });
        assert_eq!(
            self.plugin_version,
            logged,
            "Evhost-Plugin-Version differs from the version in the host's log; {}",
            context()
        );
    }
}

/// Waits for the next dead letter on `sub` and parses it.
pub async fn next_dead_letter(sub: &mut Subscriber, what: &str, host: &Host) -> DeadLetter {
    DeadLetter::parse(next_message(sub, WAIT, what, host).await)
}
