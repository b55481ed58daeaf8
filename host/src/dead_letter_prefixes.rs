//! The dead-letter prefixes in use on this host: every served plugin's
//! `dead_letter_prefix`, and the default `dlq.`. Dead letters are the host's
//! to write, so no plugin may publish under any of them, its own or
//! another's: what it wrote there would look like a dead letter to
//! `evhost dlq` and to whoever reads the stream. The registry keeps the set
//! current; each plugin version reads it when it checks its outputs.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// The default `dead_letter_prefix`, reserved even when no plugin uses it.
pub const DEFAULT_PREFIX: &str = "dlq.";

/// The set, shared by the registry and every plugin version.
#[derive(Clone)]
pub struct DeadLetterPrefixes(Arc<ArcSwap<Vec<String>>>);

impl Default for DeadLetterPrefixes {
    fn default() -> Self {
        DeadLetterPrefixes(Arc::new(ArcSwap::from_pointee(vec![
            DEFAULT_PREFIX.to_string(),
        ])))
    }
}

impl DeadLetterPrefixes {
    /// The prefixes in use are now `prefixes` (and the default).
    pub fn set<'a>(&self, prefixes: impl IntoIterator<Item = &'a str>) {
        let mut all: Vec<String> = prefixes.into_iter().map(str::to_string).collect();
        all.push(DEFAULT_PREFIX.to_string());
        all.sort();
        all.dedup();
        self.0.store(Arc::new(all));
    }

    /// Every prefix in use, for a moment (read for every message's
    /// outputs: a guard, which unlike a clone of the `Arc` writes nothing
    /// shared).
    pub fn current(&self) -> arc_swap::Guard<Arc<Vec<String>>> {
        self.0.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_always_reserved() {
        let p = DeadLetterPrefixes::default();
        assert_eq!(**p.current(), vec!["dlq.".to_string()]);
        p.set(["errors.", "dlq.", "errors."]);
        assert_eq!(
            **p.current(),
            vec!["dlq.".to_string(), "errors.".to_string()]
        );
        p.set([]);
        assert_eq!(**p.current(), vec!["dlq.".to_string()]);
    }
}
