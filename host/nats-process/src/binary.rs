//! Finding the `nats-server` executable.

use std::path::{Path, PathBuf};

/// How to install nats-server, for the error when it is missing.
pub const INSTALL: &str = "install it (Debian/Ubuntu: `apt-get install nats-server`; \
     elsewhere: https://docs.nats.io/running-a-nats-service/introduction/installation)";

/// Folders searched after PATH: where Debian (and a manual install) put it.
const SBIN: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// `nats-server` was not found.
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    /// Not at the path the caller named.
    #[error("nats-server not found at {}: {INSTALL}", .0.display())]
    At(PathBuf),
    /// Not on PATH, nor in the usual sbin folders.
    #[error("nats-server not found on PATH (nor in /usr/sbin, /usr/local/sbin): {INSTALL}")]
    Anywhere,
}

/// The `nats-server` to run: `exe` when given (it must be a file), else the
/// first `nats-server` on PATH, else the one in `/usr/sbin` or
/// `/usr/local/sbin`.
pub fn find(exe: Option<&Path>) -> Result<PathBuf, NotFound> {
    match exe {
        Some(exe) if exe.is_file() => Ok(exe.to_path_buf()),
        Some(exe) => Err(NotFound::At(exe.to_path_buf())),
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain(SBIN.iter().map(PathBuf::from))
                .map(|dir| dir.join("nats-server"))
                .find(|candidate| candidate.is_file())
                .ok_or(NotFound::Anywhere)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_path_that_is_not_a_file_says_how_to_install() {
        let err = find(Some(Path::new("/nonexistent/nats-server"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/nats-server"), "{text}");
        assert!(text.contains("apt-get install nats-server"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
