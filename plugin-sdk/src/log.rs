//! Logging to the host's log, tagged with the plugin's name. The macros
//! (`evhost_sdk::info!("x {}", y)` and friends) format like `format!`.

use crate::bindings::evhost::plugin::host::{self, Level};

/// Logs at trace level.
pub fn trace(message: impl AsRef<str>) {
    host::log(Level::Trace, message.as_ref());
}

/// Logs at debug level.
pub fn debug(message: impl AsRef<str>) {
    host::log(Level::Debug, message.as_ref());
}

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    host::log(Level::Info, message.as_ref());
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    host::log(Level::Warn, message.as_ref());
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    host::log(Level::Error, message.as_ref());
}

/// Logs a formatted line at trace level.
#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { $crate::log::trace(format!($($arg)*)) }; }
/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log::debug(format!($($arg)*)) }; }
/// Logs a formatted line at info level.
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log::info(format!($($arg)*)) }; }
/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log::warn(format!($($arg)*)) }; }
/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log::error(format!($($arg)*)) }; }
