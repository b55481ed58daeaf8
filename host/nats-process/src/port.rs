//! Loopback ports for a server to listen on.

use std::net::TcpListener;

/// NATS's standard client port, which clients try when given no URL.
pub const STANDARD: u16 = 4222;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS's choice),
/// never [`STANDARD`]: a server started there cannot be mistaken for one a
/// developer runs.
pub fn free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port != STANDARD {
            return Ok(port);
        }
    }
}

/// Whether `port` on 127.0.0.1 can be bound now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The port to start on: `preferred` when it is free (0: none preferred),
/// else the one `free` finds.
pub fn choose(
    preferred: u16,
    is_free: impl Fn(u16) -> bool,
    free: impl FnOnce() -> std::io::Result<u16>,
) -> std::io::Result<u16> {
    if preferred != 0 && is_free(preferred) {
        Ok(preferred)
    } else {
        free()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_port_when_free_else_any() {
        let any = || Ok(5000);
        assert_eq!(choose(4222, |_| true, any).unwrap(), 4222);
        assert_eq!(choose(4222, |_| false, any).unwrap(), 5000);
        assert_eq!(choose(0, |_| true, any).unwrap(), 5000);
    }

    #[test]
    fn a_free_port_is_never_the_standard_one() {
        for _ in 0..50 {
            assert_ne!(free_port().unwrap(), STANDARD);
        }
    }
}
