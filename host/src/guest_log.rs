//! What a guest may put in the host's log: its `log()` calls and the lines
//! it writes to stdout and stderr. Each becomes one log event tagged with
//! the plugin; control characters are escaped (a newline in guest text
//! cannot forge a line of the host's), text is cut at [`MAX_LINE`] bytes,
//! and a plugin gets at most `limits.log_lines_per_second` lines a second
//! (1000 by default), shared by all its instances; the next line let
//! through says how many were left out (`dropped`).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Level;

use crate::log_limit::LogLimit;

/// Longest guest text written to the log; the rest is cut.
pub const MAX_LINE: usize = 4096;

/// Where a plugin's log lines go. Cheap to clone: every store of one plugin
/// version shares the rate limit.
#[derive(Clone)]
pub struct GuestLog {
    plugin: Arc<str>,
    limit: Arc<Mutex<LogLimit>>,
}

impl GuestLog {
    /// The log of plugin `plugin`, at most `per_second` lines a second.
    pub fn new(plugin: Arc<str>, per_second: u32) -> Self {
        GuestLog {
            plugin,
            limit: Arc::new(Mutex::new(LogLimit::new(
                per_second,
                Duration::from_secs(1),
            ))),
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    /// Whether a line at `level` would be written at all.
    pub fn enabled(level: Level) -> bool {
        match level {
            Level::TRACE => tracing::enabled!(target: "evhost::guest", Level::TRACE),
            Level::DEBUG => tracing::enabled!(target: "evhost::guest", Level::DEBUG),
            Level::INFO => tracing::enabled!(target: "evhost::guest", Level::INFO),
            Level::WARN => tracing::enabled!(target: "evhost::guest", Level::WARN),
            Level::ERROR => tracing::enabled!(target: "evhost::guest", Level::ERROR),
        }
    }

    /// Writes `text` at `level`; `stream` names the guest's stdout or stderr
    /// when the line came from there. Left out when logging is off at
    /// `level` or the plugin is over its rate.
    pub fn write(&self, level: Level, stream: Option<&'static str>, text: &str) {
        if !Self::enabled(level) {
            return;
        }
        let Some(dropped) = self.limit.lock().unwrap().admit(Instant::now()) else {
            return;
        };
        let text = clean(text);
        let plugin = &*self.plugin;
        // `dropped` only when lines were left out, so an ordinary line reads
        // as before.
        macro_rules! emit {
            ($level:expr) => {
                match (stream, dropped) {
                    (Some(stream), 0) => tracing::event!(target: "evhost::guest", $level, plugin, stream, "{text}"),
                    (Some(stream), dropped) => tracing::event!(target: "evhost::guest", $level, plugin, stream, dropped, "{text}"),
                    (None, 0) => tracing::event!(target: "evhost::guest", $level, plugin, "{text}"),
                    (None, dropped) => tracing::event!(target: "evhost::guest", $level, plugin, dropped, "{text}"),
                }
            };
        }
        match level {
            Level::TRACE => emit!(Level::TRACE),
            Level::DEBUG => emit!(Level::DEBUG),
            Level::INFO => emit!(Level::INFO),
            Level::WARN => emit!(Level::WARN),
            Level::ERROR => emit!(Level::ERROR),
        }
    }
}

/// `text` as one log line: control characters (line breaks, escape
/// sequences) escaped as `\n`, `\r`, `\t`, `\u{1b}`…, and cut after
/// [`MAX_LINE`] bytes with a `…` mark.
pub fn clean(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_LINE && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_LINE) + 8);
    for c in text.chars() {
        if out.len() >= MAX_LINE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_cannot_forge_a_log_line() {
        let forged = "paid\n2026-12-05T00:00:00Z  INFO evhost: plugin reloaded plugin=payment";
        let line = clean(forged);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("paid\\n2026"), "{line}");
        assert_eq!(clean("\u{1b}[2Jcleared\r"), "\\u{1b}[2Jcleared\\r");
    }

    #[test]
    fn plain_text_is_kept_as_is_and_long_text_is_cut() {
        assert!(matches!(clean("order o-1 paid"), Cow::Borrowed(_)));
        let long = "é".repeat(MAX_LINE);
        let cut = clean(&long);
        assert!(cut.len() <= MAX_LINE + '…'.len_utf8() + 1, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
