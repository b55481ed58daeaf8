//! Logging to the host's log, tagged with the plugin's name. The macros
//! (`evhost_sdk::info!("x {}", y)` and friends) format like `format!`, and
//! only when the host records that level: a per-message `debug!` costs one
//! remembered check in a host logging at `info`.

use std::cell::Cell;

use crate::bindings::evhost::plugin::host::{self, Level};

thread_local! {
    /// What the host said of each level: bit `2 * i` set once level `i` was
    /// asked about, bit `2 * i + 1` when it is recorded. The answer holds for
    /// the life of the instance.
    static ENABLED: Cell<u16> = const { Cell::new(0) };
}

fn index(level: Level) -> u16 {
    match level {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
    }
}

/// Whether the host records lines at `level` (asked once per instance).
pub fn enabled(level: Level) -> bool {
    let (asked, yes) = (1 << (2 * index(level)), 1 << (2 * index(level) + 1));
    let known = ENABLED.get();
    if known & asked != 0 {
        return known & yes != 0;
    }
    let on = host::log_enabled(level);
    ENABLED.set(known | asked | if on { yes } else { 0 });
    on
}

/// Logs `message` at `level`, if the host records that level.
pub fn log(level: Level, message: impl AsRef<str>) {
    if enabled(level) {
        host::log(level, message.as_ref());
    }
}

/// Logs at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Logs at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

#[doc(hidden)]
pub use crate::bindings::evhost::plugin::host::Level as __Level;

/// Logs a formatted line at trace level.
#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { if $crate::log::enabled($crate::log::__Level::Trace) { $crate::log::trace(format!($($arg)*)) } }; }
/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { if $crate::log::enabled($crate::log::__Level::Debug) { $crate::log::debug(format!($($arg)*)) } }; }
/// Logs a formatted line at info level.
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { if $crate::log::enabled($crate::log::__Level::Info) { $crate::log::info(format!($($arg)*)) } }; }
/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { if $crate::log::enabled($crate::log::__Level::Warn) { $crate::log::warn(format!($($arg)*)) } }; }
/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { if $crate::log::enabled($crate::log::__Level::Error) { $crate::log::error(format!($($arg)*)) } }; }
