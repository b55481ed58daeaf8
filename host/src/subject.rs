//! NATS subject rules: what a valid subject or pattern is, wildcard matching,
//! and which subjects a plugin may publish to. Pure functions.

/// A subject one can publish to: dot-separated non-empty tokens, no
/// wildcards, no whitespace.
pub fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.chars().any(|c| c.is_whitespace()))
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
            && !t.chars().any(|c| c.is_whitespace())
            && (*t != ">" || i == tokens.len() - 1)
            && (t.len() == 1 || !(t.contains('*') || t.contains('>')))
    })
}

/// A queue group name: non-empty, no whitespace.
pub fn is_valid_token_string(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace())
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

/// Why an output subject was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishDenied {
    /// Not a plain subject.
    #[error("output subject {0:?} is not a valid NATS subject (no wildcards or spaces)")]
    Invalid(String),
    /// `$JS.`, `$SYS.` or an `_INBOX.` that is not the input's reply-to.
    #[error("output subject {0:?} is a system subject; plugins may not publish there")]
    System(String),
    /// Outside the manifest's `[publish] allow` list.
    #[error("output subject {0:?} is not in the plugin's [publish] allow list")]
    NotAllowed(String),
}

/// Checks that a plugin may publish to `subject`. The input's own `reply_to`
/// is always allowed, so request/reply works.
pub fn check_publish(
    subject: &str,
    reply_to: Option<&str>,
    allow: Option<&[String]>,
) -> Result<(), PublishDenied> {
    if !is_valid_subject(subject) {
        return Err(PublishDenied::Invalid(subject.to_string()));
    }
    if reply_to == Some(subject) {
        return Ok(());
    }
    if subject.starts_with("$JS.")
        || subject.starts_with("$SYS.")
        || subject.starts_with("$KV.")
        || subject.starts_with("_INBOX.")
        || subject.starts_with("$O.")
    {
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
}
