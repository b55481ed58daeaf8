//! What a plugin may reach beyond its message: the manifest's
//! `[capabilities]` (outbound HTTP destinations, key-value buckets) and the
//! `http_*` and `kv_*` keys of `[limits]`, resolved with their defaults. Everything is
//! off unless the manifest grants it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::http_allow::HttpAllow;
use crate::manifest::LimitsSection;

/// `[capabilities]` as written.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesSection {
    /// Destinations the plugin may call over `wasi:http`:
    /// `scheme://host[:port|:*][/path-prefix]`.
    pub http: Option<Vec<String>>,
    /// A PEM file of extra CA certificates trusted for the plugin's https
    /// calls (a private provider), besides the built-in web roots. A relative
    /// path is taken from the plugin folder.
    pub http_ca: Option<String>,
    /// Key-value buckets the plugin may open over `wasi:keyvalue`.
    pub keyvalue: Option<Vec<String>>,
}

/// Limits on a plugin's outbound HTTP, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub between_bytes_timeout: Duration,
    pub max_response_bytes: u64,
    pub max_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(10),
            between_bytes_timeout: Duration::from_secs(10),
            max_response_bytes: 4 << 20,
            max_in_flight: 32,
        }
    }
}

/// Outbound HTTP, when granted.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpGrant {
    pub allow: HttpAllow,
    /// As written; relative to the plugin folder.
    pub ca: Option<PathBuf>,
    pub limits: HttpLimits,
}

/// A plugin's capabilities, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// `None`: every request is refused.
    pub http: Option<HttpGrant>,
    /// Bucket names the plugin may open.
    pub keyvalue: Vec<String>,
    /// The largest value the plugin may write.
    pub kv_max_value_bytes: usize,
}

/// The largest key-value value when the manifest says nothing: under NATS's
/// default 1 MiB message limit, with room for the key and headers.
pub const DEFAULT_KV_MAX_VALUE_BYTES: usize = 512 * 1024;

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            http: None,
            keyvalue: Vec::new(),
            kv_max_value_bytes: DEFAULT_KV_MAX_VALUE_BYTES,
        }
    }
}

impl Capabilities {
    /// Whether the plugin may wait on I/O during a call (then the host bounds
    /// the call with a timer as well as with epoch interruption).
    pub fn waits_on_io(&self) -> bool {
        self.http.is_some() || !self.keyvalue.is_empty()
    }
}

/// Checks and fills in the defaults. Errors name the key.
pub fn resolve(caps: &CapabilitiesSection, limits: &LimitsSection) -> Result<Capabilities, String> {
    let d = HttpLimits::default();
    let ms = |key: &str, v: Option<u64>, default: Duration| -> Result<Duration, String> {
        match v {
            Some(0) => Err(format!("limits.{key} must be at least 1")),
            Some(n) => Ok(Duration::from_millis(n)),
            None => Ok(default),
        }
    };
    let http_limits = HttpLimits {
        connect_timeout: ms(
            "http_connect_timeout_ms",
            limits.http_connect_timeout_ms,
            d.connect_timeout,
        )?,
        first_byte_timeout: ms(
            "http_first_byte_timeout_ms",
            limits.http_first_byte_timeout_ms,
            d.first_byte_timeout,
        )?,
        between_bytes_timeout: ms(
            "http_between_bytes_timeout_ms",
            limits.http_between_bytes_timeout_ms,
            d.between_bytes_timeout,
        )?,
        max_response_bytes: match limits.http_max_response_bytes {
            Some(0) => return Err("limits.http_max_response_bytes must be at least 1".into()),
            Some(n) => n,
            None => d.max_response_bytes,
        },
        max_in_flight: match limits.http_max_in_flight {
            Some(0) => return Err("limits.http_max_in_flight must be at least 1".into()),
            Some(n) => n as usize,
            None => d.max_in_flight,
        },
    };
    let http = match &caps.http {
        Some(list) if !list.is_empty() => Some(HttpGrant {
            allow: HttpAllow::parse(list).map_err(|e| format!("capabilities.http: {e}"))?,
            ca: caps.http_ca.as_ref().map(PathBuf::from),
            limits: http_limits,
        }),
        _ => {
            if caps.http_ca.is_some() {
                return Err("capabilities.http_ca needs capabilities.http".into());
            }
            None
        }
    };
    let keyvalue = caps.keyvalue.clone().unwrap_or_default();
    for bucket in &keyvalue {
        if !valid_bucket(bucket) {
            return Err(format!(
                "capabilities.keyvalue: {bucket:?} is not a valid bucket name (letters, digits, - and _)"
            ));
        }
        if bucket == crate::plugin_settings::DEFAULT_DEDUP_BUCKET {
            return Err(format!(
                "capabilities.keyvalue: {bucket:?} is the host's bucket of handled event ids; a plugin writing it could mark events as handled"
            ));
        }
    }
    let kv_max_value_bytes = match limits.kv_max_value_bytes {
        Some(0) => return Err("limits.kv_max_value_bytes must be at least 1".into()),
        Some(n) => n,
        None => DEFAULT_KV_MAX_VALUE_BYTES,
    };
    Ok(Capabilities {
        http,
        keyvalue,
        kv_max_value_bytes,
    })
}

/// A JetStream key-value bucket name.
pub fn valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_by_default() {
        let caps = resolve(&CapabilitiesSection::default(), &LimitsSection::default()).unwrap();
        assert_eq!(caps, Capabilities::default());
        assert!(!caps.waits_on_io());
    }

    #[test]
    fn a_grant_gets_default_limits() {
        let caps = resolve(
            &CapabilitiesSection {
                http: Some(vec!["http://127.0.0.1:*".into()]),
                keyvalue: Some(vec!["stock".into()]),
                ..Default::default()
            },
            &LimitsSection {
                http_first_byte_timeout_ms: Some(250),
                ..Default::default()
            },
        )
        .unwrap();
        let http = caps.http.as_ref().unwrap();
        assert_eq!(http.limits.first_byte_timeout, Duration::from_millis(250));
        assert_eq!(http.limits.connect_timeout, Duration::from_secs(5));
        assert_eq!(http.limits.max_in_flight, 32);
        assert_eq!(caps.keyvalue, vec!["stock".to_string()]);
        assert!(caps.waits_on_io());
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad_url = CapabilitiesSection {
            http: Some(vec!["api.example".into()]),
            ..Default::default()
        };
        let err = resolve(&bad_url, &LimitsSection::default()).unwrap_err();
        assert!(
            err.contains("capabilities.http") && err.contains("api.example"),
            "{err}"
        );
        let zero = LimitsSection {
            http_max_in_flight: Some(0),
            ..Default::default()
        };
        let err = resolve(&CapabilitiesSection::default(), &zero).unwrap_err();
        assert!(err.contains("http_max_in_flight"), "{err}");
        let bucket = CapabilitiesSection {
            keyvalue: Some(vec!["a.b".into()]),
            ..Default::default()
        };
        assert!(
            resolve(&bucket, &LimitsSection::default())
                .unwrap_err()
                .contains("a.b")
        );
        let dedup = CapabilitiesSection {
            keyvalue: Some(vec!["evhost-dedup".into()]),
            ..Default::default()
        };
        assert!(
            resolve(&dedup, &LimitsSection::default())
                .unwrap_err()
                .contains("handled event ids")
        );
    }
}
