//! NATS subject rules: what a valid subject or pattern is, wildcard matching,
//! and which subjects a plugin may publish to. Pure functions.

/// A subject one can publish to: dot-separated non-empty tokens, no
/// wildcards, no whitespace.
pub fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !has_whitespace(t))
}

/// Whether `s` holds whitespace (Unicode's), checked byte by byte when it
/// is ASCII, as subjects almost always are.
fn has_whitespace(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| matches!(b, b' ' | b'\t'..=b'\r'))
    } else {
        s.chars().any(char::is_whitespace)
    }
}

/// A subject one can subscribe to: like [`is_valid_subject`] but `*` may
/// stand for a token and `>`, as the last token, for the rest.
pub fn is_valid_pattern(pattern: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !has_whitespace(t)
            && (*t != ">" || i == tokens.len() - 1)
            && (t.len() == 1 || !(t.contains('*') || t.contains('>')))
    })
}

/// A queue group name: non-empty, no whitespace.
pub fn is_valid_token_string(name: &str) -> bool {
    !name.is_empty() && !has_whitespace(name)
}

/// Whether `subject` matches `pattern` under NATS wildcard rules.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Longest subject the host publishes to. Outputs beyond it are refused
/// (`invalid-output`) and dead-letter subjects are shortened to fit
/// (`deadletter::subject_for`): nats-server's default control line of 4 KiB
/// must hold the subject and the rest of the `HPUB` line, and a line over it
/// makes the server close the connection, losing what was in flight on it.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Longest `dead_letter_prefix`, so a shortened dead-letter subject keeps
/// some of the original.
pub const MAX_PREFIX_LEN: usize = 256;

/// Why an output subject was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishDenied {
    /// Not a plain subject.
    #[error("output subject {0:?} is not a valid NATS subject (no wildcards or spaces)")]
    Invalid(String),
    /// Longer than [`MAX_SUBJECT_LEN`] (the subject itself would flood the
    /// log: only its start and length are kept).
    #[error("output subject {0:?}… is {1} bytes long; the limit is {MAX_SUBJECT_LEN}")]
    TooLong(String, usize),
    /// A `$`-prefixed subject (`$JS.`, `$KV.`, `$SYS.`, …) or an `_INBOX.`
    /// subject that is not the input's reply-to.
    #[error("output subject {0:?} is a system subject; plugins may not publish there")]
    System(String),
    /// Outside the manifest's `[publish] allow` list.
    #[error("output subject {0:?} is not in the plugin's [publish] allow list")]
    NotAllowed(String),
}

/// Most subjects one plugin may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Why a plugin may not subscribe to a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeDenied {
    /// Not a valid pattern.
    #[error("{0:?} is not a valid NATS subject")]
    Invalid(String),
    /// A `$` or `_INBOX` subject: the server's, the client libraries' and
    /// other consumers' traffic (key-value writes, JetStream deliveries).
    #[error("{0:?} is a system subject; plugins may not subscribe to it")]
    System(String),
    /// A first token that is a wildcard (`>`, `*.>`, `*.created`) also
    /// matches system subjects.
    #[error(
        "{0:?} starts with a wildcard, which would match system subjects too; name its first token"
    )]
    Unrooted(String),
    /// Too many subjects.
    #[error("{0} subjects; a plugin may subscribe to at most {MAX_SUBSCRIPTIONS}")]
    TooMany(usize),
}

/// Checks the subjects a plugin asks for (its manifest's or its own).
pub fn check_subscriptions(patterns: &[String]) -> Result<(), SubscribeDenied> {
    if patterns.len() > MAX_SUBSCRIPTIONS {
        return Err(SubscribeDenied::TooMany(patterns.len()));
    }
    for p in patterns {
        if !is_valid_pattern(p) {
            return Err(SubscribeDenied::Invalid(p.clone()));
        }
        let first = p.split('.').next().unwrap_or_default();
        if first.starts_with('$') || first == "_INBOX" {
            return Err(SubscribeDenied::System(p.clone()));
        }
        if first == "*" || first == ">" {
            return Err(SubscribeDenied::Unrooted(p.clone()));
        }
    }
    Ok(())
}

/// Whether a plugin may set output header `name` itself: `Nats-*` headers
/// steer JetStream (`Nats-Rollup` purges a stream, a forged `Nats-Msg-Id`
/// makes a later real message a "duplicate") and `Evhost-*` headers are the
/// host's own (a forged dead letter), so both are refused.
pub fn is_reserved_header(name: &str) -> bool {
    // Compared as bytes: a name need not be ASCII, and slicing it as text
    // inside a character would panic.
    let lower = |prefix: &str| {
        name.as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    lower("Nats-") || lower("Evhost-")
}

/// A dead-letter prefix is a subject prefix ending in `.` that is not a
/// system subject (a `$KV.` prefix would write dead letters into a bucket).
pub fn check_dead_letter_prefix(prefix: &str) -> Result<(), String> {
    let Some(stem) = prefix.strip_suffix('.') else {
        return Err(format!(
            "delivery.dead_letter_prefix {prefix:?} must end with `.` (like \"dlq.\")"
        ));
    };
    if !is_valid_subject(stem) {
        return Err(format!(
            "delivery.dead_letter_prefix {prefix:?} is not a valid subject prefix"
        ));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "delivery.dead_letter_prefix is {} bytes long; the limit is {MAX_PREFIX_LEN}",
            prefix.len()
        ));
    }
    if is_system_subject(prefix) {
        return Err(format!(
            "delivery.dead_letter_prefix {prefix:?} is a system subject"
        ));
    }
    Ok(())
}

/// The prefix of the reply subjects NATS clients make for request/reply.
pub const INBOX_PREFIX: &str = "_INBOX.";

/// Whether `subject` belongs to the server or to the client libraries rather
/// than to applications: every subject whose first token starts with `$`
/// (`$JS.`, `$JSC.`, `$KV.`, `$O.`, `$SYS.`, `$NRG.`, `$MQTT.`, `$SRV.`, and
/// any the server adds later) and every `_INBOX.` subject.
pub fn is_system_subject(subject: &str) -> bool {
    subject.starts_with('$') || subject.starts_with(INBOX_PREFIX)
}

/// Checks that a plugin may publish to `subject`.
///
/// A `$` subject is refused always, even when a publisher named it as the
/// input's reply-to: the reply subject is the publisher's to choose, and the
/// host must not lend it its own NATS rights (a reply to
/// `$JS.API.STREAM.DELETE.<stream>` would delete a stream). An `_INBOX.`
/// subject is allowed only as the input's own reply-to, which is what
/// request/reply uses, and then needs no `[publish] allow` entry. Any other
/// reply-to is an ordinary output: it must be in the allow list when there is
/// one.
pub fn check_publish(
    subject: &str,
    reply_to: Option<&str>,
    allow: Option<&[String]>,
) -> Result<(), PublishDenied> {
    if subject.len() > MAX_SUBJECT_LEN {
        let mut cut = 64;
        while !subject.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(PublishDenied::TooLong(
            subject[..cut].to_string(),
            subject.len(),
        ));
    }
    if !is_valid_subject(subject) {
        return Err(PublishDenied::Invalid(subject.to_string()));
    }
    if subject.starts_with(INBOX_PREFIX) && reply_to == Some(subject) {
        return Ok(());
    }
    if is_system_subject(subject) {
        return Err(PublishDenied::System(subject.to_string()));
    }
    match allow {
        Some(patterns) if !patterns.iter().any(|p| matches(p, subject)) => {
            Err(PublishDenied::NotAllowed(subject.to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_unicodes_in_ascii_as_elsewhere() {
        for c in (0u8..=127)
            .map(char::from)
            .chain(['\u{85}', '\u{a0}', '\u{2003}', 'é'])
        {
            let token = format!("a{c}b");
            assert_eq!(has_whitespace(&token), c.is_whitespace(), "{c:?}");
        }
    }

    #[test]
    fn subjects_and_patterns() {
        assert!(is_valid_subject("orders.order.created"));
        assert!(!is_valid_subject("orders.*"));
        assert!(!is_valid_subject("orders..x"));
        assert!(!is_valid_subject("a b"));
        assert!(!is_valid_subject(""));
        assert!(is_valid_pattern("orders.>"));
        assert!(is_valid_pattern("*.order.*"));
        assert!(!is_valid_pattern("orders.>.x"));
        assert!(!is_valid_pattern("orders.a*"));
        assert!(!is_valid_pattern("orders."));
    }

    #[test]
    fn subscriptions_stay_off_system_subjects() {
        let ok = |list: &[&str]| {
            check_subscriptions(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(ok(&["orders.>", "orders.*.created", "a"]), Ok(()));
        for system in ["$KV.>", "$JS.API.>", "$SYS.>", "_INBOX.>", "$KV.secrets.x"] {
            assert!(
                matches!(ok(&[system]), Err(SubscribeDenied::System(_))),
                "{system}"
            );
        }
        for unrooted in [">", "*", "*.>", "*.API.>"] {
            assert!(
                matches!(ok(&[unrooted]), Err(SubscribeDenied::Unrooted(_))),
                "{unrooted}"
            );
        }
        assert!(matches!(ok(&["a..b"]), Err(SubscribeDenied::Invalid(_))));
        let many: Vec<String> = (0..=MAX_SUBSCRIPTIONS).map(|i| format!("s.{i}")).collect();
        assert_eq!(
            check_subscriptions(&many),
            Err(SubscribeDenied::TooMany(MAX_SUBSCRIPTIONS + 1))
        );
    }

    #[test]
    fn nats_and_evhost_headers_are_reserved() {
        for name in [
            "Nats-Rollup",
            "nats-msg-id",
            "NATS-Expected-Stream",
            "Evhost-Error-Kind",
            "evhost-plugin",
        ] {
            assert!(is_reserved_header(name), "{name}");
        }
        for name in [
            "traceparent",
            "content-type",
            "Nats",
            "x-nats-thing",
            "Evhost",
            // Not ASCII where a prefix would end: no panic (found by fuzzing).
            "Natsé",
            "Evhosté-x",
        ] {
            assert!(!is_reserved_header(name), "{name}");
        }
        assert!(is_reserved_header("nats-é"));
    }

    #[test]
    fn dead_letter_prefixes_are_checked() {
        assert_eq!(check_dead_letter_prefix("dlq."), Ok(()));
        assert_eq!(check_dead_letter_prefix("errors.orders."), Ok(()));
        for bad in ["", "dlq", "$KV.secrets.", "_INBOX.x.", "a..", "a b."] {
            assert!(check_dead_letter_prefix(bad).is_err(), "{bad:?}");
        }
        let longest = format!("{}.", "d".repeat(MAX_PREFIX_LEN - 1));
        assert_eq!(check_dead_letter_prefix(&longest), Ok(()));
        assert!(check_dead_letter_prefix(&format!("d{longest}")).is_err());
    }

    #[test]
    fn output_subjects_have_a_length_cap() {
        let at = "s".repeat(MAX_SUBJECT_LEN);
        assert_eq!(check_publish(&at, None, None), Ok(()));
        let over = format!("{at}x");
        match check_publish(&over, None, None) {
            Err(PublishDenied::TooLong(start, len)) => {
                assert_eq!((start.len(), len), (64, MAX_SUBJECT_LEN + 1));
                // The message names the limit, not the whole subject.
                let text = PublishDenied::TooLong(start, len).to_string();
                assert!(text.len() < 200 && text.contains("1024"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        // Even as the input's own reply-to.
        let inbox = format!("_INBOX.{}", "r".repeat(MAX_SUBJECT_LEN));
        assert!(check_publish(&inbox, Some(&inbox), None).is_err());
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("orders.>", "orders.order.created"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("orders.*.created", "orders.order.created"));
        assert!(!matches("orders.*", "orders.order.created"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
    }

    #[test]
    fn publish_rules() {
        assert_eq!(check_publish("payments.x", None, None), Ok(()));
        assert!(matches!(
            check_publish("$JS.API.STREAM.DELETE.x", None, None),
            Err(PublishDenied::System(_))
        ));
        assert!(matches!(
            check_publish("$SYS.REQ", None, None),
            Err(PublishDenied::System(_))
        ));
        assert!(matches!(
            check_publish("_INBOX.abc", None, None),
            Err(PublishDenied::System(_))
        ));
        assert_eq!(
            check_publish("_INBOX.abc", Some("_INBOX.abc"), None),
            Ok(())
        );
        assert!(matches!(
            check_publish("_INBOX.other", Some("_INBOX.abc"), None),
            Err(PublishDenied::System(_))
        ));
        for hostile in [
            "$JS.API.STREAM.DELETE.orders",
            "$KV.stock.apples",
            "$SYS.REQ.SERVER.PING",
            "$JSC.x",
            "$O.bucket.x",
            "$NRG.x",
            "$MQTT.x",
            "$SRV.PING",
        ] {
            assert!(
                matches!(
                    check_publish(hostile, Some(hostile), None),
                    Err(PublishDenied::System(_))
                ),
                "a reply-to of {hostile} must not let a plugin publish there"
            );
        }
        let allow = vec!["payments.>".to_string()];
        assert_eq!(
            check_publish("_INBOX.abc.1", Some("_INBOX.abc.1"), Some(&allow)),
            Ok(()),
            "an inbox reply needs no allow entry"
        );
        assert!(matches!(
            check_publish("orders.x", Some("orders.x"), Some(&allow)),
            Err(PublishDenied::NotAllowed(_))
        ));
        assert_eq!(check_publish("orders.x", Some("orders.x"), None), Ok(()));
        assert!(matches!(
            check_publish("a.*", None, None),
            Err(PublishDenied::Invalid(_))
        ));
        let allow = vec!["payments.>".to_string()];
        assert_eq!(check_publish("payments.done", None, Some(&allow)), Ok(()));
        assert!(matches!(
            check_publish("orders.x", None, Some(&allow)),
            Err(PublishDenied::NotAllowed(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Subjects of one to five tokens from a small alphabet, so that
        /// patterns often match them.
        fn subject() -> impl Strategy<Value = String> {
            proptest::collection::vec("[ab]{1,2}", 1..6).prop_map(|t| t.join("."))
        }

        /// Patterns over the same alphabet, with `*` anywhere and `>` last.
        fn pattern() -> impl Strategy<Value = String> {
            (
                proptest::collection::vec(prop_oneof!["[ab]{1,2}", Just("*".to_string())], 0..5),
                any::<bool>(),
            )
                .prop_filter_map("a pattern has a token", |(mut tokens, tail)| {
                    if tail {
                        tokens.push(">".into());
                    }
                    (!tokens.is_empty()).then(|| tokens.join("."))
                })
        }

        /// The straightforward reading of NATS wildcards, as a regex: `*` is
        /// one token, a trailing `>` one or more.
        fn reference(pattern: &str, subject: &str) -> bool {
            let tokens: Vec<String> = pattern
                .split('.')
                .map(|t| match t {
                    "*" => "[^.]+".to_string(),
                    ">" => "[^.]+(\\.[^.]+)*".to_string(),
                    t => regex::escape(t),
                })
                .collect();
            regex::Regex::new(&format!("^{}$", tokens.join("\\.")))
                .unwrap()
                .is_match(subject)
        }

        proptest! {
            #[test]
            fn matching_agrees_with_the_reference(p in pattern(), s in subject()) {
                prop_assert!(is_valid_pattern(&p), "{}", p);
                prop_assert!(is_valid_subject(&s), "{}", s);
                prop_assert_eq!(matches(&p, &s), reference(&p, &s), "{} ~ {}", p, s);
            }

            #[test]
            fn a_subject_matches_itself_and_full_wildcard(s in subject()) {
                prop_assert!(matches(&s, &s));
                prop_assert!(matches(">", &s));
            }

            /// Nothing starting with `$`, nor an `_INBOX.` other than the
            /// reply-to, is ever publishable, whatever the allow list says.
            #[test]
            fn system_subjects_are_never_publishable(
                head in "\\$[A-Z]{1,4}|_INBOX",
                rest in subject(),
                allow_all in any::<bool>(),
            ) {
                let subject = format!("{head}.{rest}");
                let allow = vec![">".to_string()];
                let allow = allow_all.then_some(allow.as_slice());
                prop_assert!(check_publish(&subject, None, allow).is_err(), "{}", subject);
                if head.starts_with('$') {
                    prop_assert!(check_publish(&subject, Some(&subject), allow).is_err());
                }
            }
        }
    }
}
