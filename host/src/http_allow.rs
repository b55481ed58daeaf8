//! Which URLs a plugin may call: the manifest's `[capabilities] http` list,
//! parsed and matched. Pure.
//!
//! An entry is `scheme://host[:port][/path-prefix]`: `scheme` is `http` or
//! `https`; `host` is a name or an IP address, matched without case, and may
//! start with `*.` to mean any subdomain (not the bare domain); `port` is a
//! number or `*`, and defaults to the scheme's (80 or 443); a path prefix
//! matches whole segments (`/v1` allows `/v1` and `/v1/charges`, not `/v10`).

use std::fmt;

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    https: bool,
    host: HostPattern,
    /// `None` for `*`.
    port: Option<u16>,
    /// Without a trailing `/`; empty for any path.
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Subdomains(String),
}

/// The parsed `[capabilities] http` list. Empty: nothing is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAllow {
    entries: Vec<Entry>,
}

/// A request's destination, as the allow list sees it.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub https: bool,
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: &'a str,
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => write!(f, "{scheme}://{}:{port}{}", self.host, self.path),
            None => write!(f, "{scheme}://{}{}", self.host, self.path),
        }
    }
}

impl HttpAllow {
    /// Parses the manifest's entries; the error names the bad one.
    pub fn parse(list: &[String]) -> Result<HttpAllow, String> {
        let entries = list
            .iter()
            .map(|e| parse_entry(e).map_err(|why| format!("{e:?}: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(HttpAllow { entries })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the list allows `to`.
    pub fn allows(&self, to: &Destination<'_>) -> bool {
        let port = to.port.unwrap_or(if to.https { 443 } else { 80 });
        let host = to.host.trim_start_matches('[').trim_end_matches(']');
        let path = if to.path.is_empty() { "/" } else { to.path };
        let path = path.split(['?', '#']).next().unwrap_or("/");
        self.entries.iter().any(|e| {
            e.https == to.https
                && e.port.is_none_or(|p| p == port)
                && match &e.host {
                    HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
                    HostPattern::Subdomains(suffix) => {
                        host.len() > suffix.len()
                            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    }
                }
                && (e.path.is_empty()
                    || path == e.path
                    || path
                        .strip_prefix(e.path.as_str())
                        .is_some_and(|rest| rest.starts_with('/')))
        })
    }
}

fn parse_entry(entry: &str) -> Result<Entry, &'static str> {
    let (https, rest) = if let Some(rest) = entry.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = entry.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("must start with http:// or https://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if path.contains(['?', '#', '*']) {
        return Err("a path prefix takes no query, fragment or wildcard");
    }
    if authority.contains('@') {
        return Err("user information is not allowed");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unclosed [ in an IPv6 address")?;
        (&v6[..end], v6[end + 1..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => Some(if https { 443 } else { 80 }),
        Some("*") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| "the port is not a number or *")?,
        ),
    };
    if host.is_empty() {
        return Err("no host");
    }
    let host = if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err("a host wildcard is `*.` followed by a domain");
        }
        HostPattern::Subdomains(format!(".{}", suffix.to_ascii_lowercase()))
    } else if host.contains('*') {
        return Err("a host wildcard is `*.` followed by a domain");
    } else {
        HostPattern::Exact(host.to_ascii_lowercase())
    };
    Ok(Entry {
        https,
        host,
        port,
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> HttpAllow {
        HttpAllow::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn to(https: bool, host: &str, port: Option<u16>, path: &str) -> bool {
        let list = allow(&[
            "https://api.provider.example",
            "http://127.0.0.1:*",
            "https://*.pay.example:8443/v1",
            "http://[::1]:9000",
        ]);
        list.allows(&Destination {
            https,
            host,
            port,
            path,
        })
    }

    #[test]
    fn scheme_host_port_and_path_must_all_match() {
        assert!(to(true, "api.provider.example", None, "/charges"));
        assert!(to(true, "API.Provider.Example", Some(443), "/"));
        assert!(!to(false, "api.provider.example", None, "/"), "scheme");
        assert!(!to(true, "api.provider.example", Some(8443), "/"), "port");
        assert!(!to(true, "evil.example", None, "/"), "host");
        assert!(!to(true, "api.provider.example.evil", None, "/"), "suffix");
        assert!(to(false, "127.0.0.1", Some(1), "/"), "any port");
        assert!(to(false, "127.0.0.1", None, "/"));
        assert!(!to(false, "127.0.0.2", Some(80), "/"));
        assert!(to(true, "eu.pay.example", Some(8443), "/v1/charges?x=1"));
        assert!(to(true, "eu.pay.example", Some(8443), "/v1"));
        assert!(
            !to(true, "eu.pay.example", Some(8443), "/v10"),
            "whole segments"
        );
        assert!(!to(true, "eu.pay.example", Some(8443), "/v2"));
        assert!(
            !to(true, "pay.example", Some(8443), "/v1"),
            "not the bare domain"
        );
        assert!(to(false, "[::1]", Some(9000), "/"));
        assert!(!to(false, "::1", Some(9001), "/"));
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let none = HttpAllow::default();
        assert!(none.is_empty());
        assert!(!none.allows(&Destination {
            https: true,
            host: "example.com",
            port: None,
            path: "/"
        }));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "api.example",
            "ftp://x",
            "https://",
            "https://x:port",
            "https://user@x",
            "https://a*.x",
            "https://*.",
            "https://x/v1?q",
        ] {
            let err = HttpAllow::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
