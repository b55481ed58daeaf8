//! The host's configuration file, `evhost.toml` (`evhost run --config
//! FILE`): what `run`'s flags set (plugins folder, NATS servers, credentials
//! and TLS files, the listener's address, drain timeout, log format,
//! compiled-code cache, replica count) and the `[limits]`, `[delivery]` and `[jetstream]` every plugin gets
//! unless its manifest says otherwise ([`PluginDefaults`]). Parsed strictly,
//! as a manifest is: an unknown key, a wrong type or a value out of range is
//! an error with its line and column. Relative paths in the file are taken
//! from the file's folder. How the file, the environment and the flags
//! layer is `run_args.rs`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::logging::LogFormat;
use crate::manifest::{LimitsSection, ManifestError, parse_strict};
use crate::nats_connection::{Secret, ServerList};
use crate::plugin_defaults::{DeliveryDefaults, JetStreamDefaults, PluginDefaults};
use crate::replicas::Replicas;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not fit the schema, or a value is out of range.
    #[error("{}", error.in_file(path))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where when known.
        error: ManifestError,
    },
}

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFile {
    plugins: Option<PathBuf>,
    metrics: Option<String>,
    drain_timeout: Option<String>,
    compile_timeout: Option<String>,
    log_format: Option<LogFormat>,
    compile_cache: Option<bool>,
    cache_dir: Option<PathBuf>,
    replicas: Option<i64>,
    #[serde(default)]
    nats: NatsSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    delivery: DeliveryDefaults,
    #[serde(default)]
    jetstream: JetStreamDefaults,
}

/// `[nats]`: the servers and how to log in, as the `--nats`, `--creds`, ...
/// flags give them.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    /// The servers, as a list or as one comma-separated string.
    #[serde(default, deserialize_with = "server_list")]
    pub servers: Option<String>,
    /// A credentials file (user JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// A file holding a user nkey seed.
    pub nkey: Option<PathBuf>,
    /// The user name (with `password`).
    pub user: Option<String>,
    /// The user's password.
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<Secret>,
    /// A token.
    #[serde(default, deserialize_with = "secret")]
    pub token: Option<Secret>,
    /// A PEM CA certificate the servers' certificates must chain to.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub tls_key: Option<PathBuf>,
}

impl NatsSection {
    /// Whether the section gives any kind of credentials.
    pub fn has_credentials(&self) -> bool {
        self.creds.is_some()
            || self.nkey.is_some()
            || self.user.is_some()
            || self.password.is_some()
            || self.token.is_some()
    }
}

/// `servers = "a,b"` or `servers = ["a", "b"]`, as one comma-separated list.
fn server_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Servers {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<Servers>::deserialize(d)?.map(|s| match s {
        Servers::One(list) => list,
        Servers::Many(list) => list.join(","),
    }))
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret))
}

/// A configuration file, read and checked.
#[derive(Debug, Default, Clone)]
pub struct HostConfig {
    /// The plugins folder.
    pub plugins: Option<PathBuf>,
    /// The listener's address (`/metrics`, `/healthz`, `/readyz`, `/plugins`).
    pub metrics: Option<String>,
    /// How long shutdown waits for messages in flight.
    pub drain_timeout: Option<Duration>,
    /// The longest a plugin may take to compile.
    pub compile_timeout: Option<Duration>,
    /// The log line format.
    pub log_format: Option<LogFormat>,
    /// Keep compiled plugins in the on-disk cache.
    pub compile_cache: Option<bool>,
    /// Where the compiled-code cache lives.
    pub cache_dir: Option<PathBuf>,
    /// The replica count of the streams and buckets the host creates.
    pub replicas: Option<Replicas>,
    /// How to reach NATS.
    pub nats: NatsSection,
    /// What every plugin gets unless its manifest says otherwise.
    pub plugin_defaults: PluginDefaults,
}

impl HostConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, HostConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|error| HostConfigError::Invalid {
            path: path.to_path_buf(),
            error: error.located(&text),
        })
    }

    /// Parses the file's `text`; relative paths start at `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ManifestError> {
        let file: HostFile = parse_strict(text)?;
        let invalid = |message: String| Err(ManifestError::Invalid(message));
        let duration = |key: &str, value: &Option<String>| match value {
            Some(t) => humantime::parse_duration(t).map(Some).map_err(|e| {
                ManifestError::Invalid(format!("{key}: {t:?} is not a duration ({e})"))
            }),
            None => Ok(None),
        };
        let drain_timeout = duration("drain_timeout", &file.drain_timeout)?;
        let compile_timeout = duration("compile_timeout", &file.compile_timeout)?;
        let replicas = match file.replicas.map(Replicas::new) {
            Some(Err(e)) => return invalid(format!("replicas: {e}")),
            Some(Ok(r)) => Some(r),
            None => None,
        };
        if let Some(servers) = &file.nats.servers
            && let Err(e) = ServerList::parse(servers)
        {
            return invalid(format!("nats.servers: {e}"));
        }
        let n = &file.nats;
        let kinds = [
            n.creds.is_some(),
            n.nkey.is_some(),
            n.user.is_some() || n.password.is_some(),
            n.token.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return invalid(
                "nats: give one kind of credentials: creds, nkey, user and password, or token"
                    .into(),
            );
        }
        match (&n.user, &n.password) {
            (Some(_), None) => return invalid("nats.user needs nats.password".into()),
            (None, Some(_)) => return invalid("nats.password needs nats.user".into()),
            _ => {}
        }
        match (&n.tls_cert, &n.tls_key) {
            (Some(_), None) => return invalid("nats.tls_cert needs nats.tls_key".into()),
            (None, Some(_)) => return invalid("nats.tls_key needs nats.tls_cert".into()),
            _ => {}
        }
        let plugin_defaults = PluginDefaults {
            limits: file.limits,
            delivery: file.delivery,
            jetstream: file.jetstream,
        };
        plugin_defaults.check()?;
        let at = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        Ok(HostConfig {
            plugins: at(&file.plugins),
            metrics: file.metrics,
            drain_timeout,
            compile_timeout,
            log_format: file.log_format,
            compile_cache: file.compile_cache,
            cache_dir: at(&file.cache_dir),
            replicas,
            nats: NatsSection {
                creds: at(&n.creds),
                nkey: at(&n.nkey),
                tls_ca: at(&n.tls_ca),
                tls_cert: at(&n.tls_cert),
                tls_key: at(&n.tls_key),
                ..file.nats
            },
            plugin_defaults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
plugins = "plugins"
metrics = "0.0.0.0:9464"
drain_timeout = "45s"
log_format = "json"
compile_cache = false
cache_dir = "/var/cache/evhost"
replicas = 3

[nats]
servers = ["nats://a:4222", "tls://b:4222"]
creds = "secrets/evhost.creds"
tls_ca = "/etc/evhost/ca.pem"

[limits]
timeout_ms = 2000

[delivery]
max_attempts = 3

[jetstream]
ack_wait = "90s"
"#;

    #[test]
    fn every_key_is_read_and_relative_paths_start_at_the_file() {
        let c = HostConfig::parse(FULL, Path::new("/etc/evhost")).unwrap();
        assert_eq!(c.plugins, Some(PathBuf::from("/etc/evhost/plugins")));
        assert_eq!(c.metrics.as_deref(), Some("0.0.0.0:9464"));
        assert_eq!(c.drain_timeout, Some(Duration::from_secs(45)));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(c.compile_cache, Some(false));
        assert_eq!(c.cache_dir, Some(PathBuf::from("/var/cache/evhost")));
        assert_eq!(c.replicas, Replicas::new(3).ok());
        assert_eq!(
            c.nats.servers.as_deref(),
            Some("nats://a:4222,tls://b:4222")
        );
        assert_eq!(
            c.nats.creds,
            Some(PathBuf::from("/etc/evhost/secrets/evhost.creds"))
        );
        assert_eq!(c.nats.tls_ca, Some(PathBuf::from("/etc/evhost/ca.pem")));
        assert!(c.nats.has_credentials());
        assert_eq!(c.plugin_defaults.limits.timeout_ms, Some(2000));
        assert_eq!(c.plugin_defaults.delivery.max_attempts, Some(3));
        assert_eq!(c.plugin_defaults.jetstream.ack_wait.as_deref(), Some("90s"));
        let one = HostConfig::parse(
            "[nats]\nservers = \"nats://a:1,nats://b:2\"",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(one.nats.servers.as_deref(), Some("nats://a:1,nats://b:2"));
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let c = HostConfig::parse("", Path::new(".")).unwrap();
        assert!(c.plugins.is_none() && c.metrics.is_none() && c.drain_timeout.is_none());
        assert_eq!(c.plugin_defaults, PluginDefaults::default());
        assert!(!c.nats.has_credentials());
    }

    /// The error for `text`, located as `load` does.
    fn error(text: &str) -> String {
        HostConfig::parse(text, Path::new("."))
            .unwrap_err()
            .located(text)
            .to_string()
    }

    #[test]
    fn mistakes_say_where_they_are() {
        let err = error("plugins = \"p\"\nplugns = \"q\"\n");
        assert!(err.starts_with("2:1: unknown field `plugns`"), "{err}");
        let err = error("[limits]\ntimeout_ms = \"soon\"\n");
        assert!(err.starts_with("2:14: "), "{err}");
        let err = error("drain_timeout = \"forever\"\n");
        assert!(err.starts_with("1:17: drain_timeout:"), "{err}");
        let err = error("log_format = \"yaml\"\n");
        assert!(err.starts_with("1:14: unknown variant `yaml`"), "{err}");
        let err = error("[limits]\nconcurrency = 0\n");
        assert!(err.starts_with("2:15: limits.concurrency"), "{err}");
        let err = error("[nats]\nservers = \"nats://a:b\"\n");
        assert!(err.starts_with("2:11: nats.servers:"), "{err}");
        let err = error("[delivery]\nack_wait = \"5s\"\n");
        assert!(err.starts_with("2:1: unknown field `ack_wait`"), "{err}");
        assert!(err.contains("[jetstream] table"), "{err}");
        let err = error("[jetstream]\nstream = \"S\"\n");
        assert!(err.starts_with("2:1: unknown field `stream`"), "{err}");
        let err = error("replicas = 0\n");
        assert!(err.starts_with("1:12: replicas: replicas must be"), "{err}");
        let err = error("replicas = 7\n");
        assert!(
            err.contains("from 1 to 5") && err.contains("\"7\""),
            "{err}"
        );
        let err = error("replicas = \"three\"\n");
        assert!(err.starts_with("1:12: invalid type"), "{err}");
        let err = error("[jetstream]\npull_batch = 0\n");
        assert!(err.starts_with("2:14: jetstream.pull_batch"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn credentials_are_one_kind_and_come_in_pairs() {
        let err = error("[nats]\ncreds = \"a\"\ntoken = \"t\"\n");
        assert!(err.contains("one kind of credentials"), "{err}");
        let err = error("[nats]\nuser = \"u\"\n");
        assert!(
            err.starts_with("2:8: nats.user needs nats.password"),
            "{err}"
        );
        let err = error("[nats]\ntls_key = \"k\"\n");
        assert!(err.contains("nats.tls_key needs nats.tls_cert"), "{err}");
        // A secret never shows in the parsed value's Debug output.
        let c = HostConfig::parse(
            "[nats]\nuser = \"u\"\npassword = \"hunter2\"\n",
            Path::new("."),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// The examples in `deploy/` stay valid: `evhost.toml`, and the one in
    /// the Kubernetes ConfigMap.
    #[test]
    fn the_deploy_examples_load() {
        let example = include_str!("../../deploy/evhost.toml");
        let c = HostConfig::parse(example, Path::new("/etc/evhost")).unwrap();
        assert_eq!(c.plugins, Some(PathBuf::from("/var/lib/evhost/plugins")));
        assert!(c.nats.servers.is_some() && c.nats.creds.is_some());
        assert!(c.plugin_defaults.limits.timeout_ms.is_some());
        assert_eq!(c.replicas.map(Replicas::get), Some(3));

        let manifest = include_str!("../../deploy/kubernetes/evhost.yaml");
        let mut lines = manifest.lines();
        lines
            .find(|l| l.trim() == "evhost.toml: |")
            .expect("the ConfigMap holds evhost.toml");
        let embedded: String = lines
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
            .collect();
        let c = HostConfig::parse(&embedded, Path::new("/etc/evhost")).unwrap();
        assert_eq!(c.metrics.as_deref(), Some("0.0.0.0:9464"));
        assert!(c.nats.servers.is_some());
        assert_eq!(c.replicas.map(Replicas::get), Some(3));
        assert_eq!(c.plugin_defaults.delivery.max_attempts, Some(5));
        assert_eq!(c.plugin_defaults.jetstream.ack_wait.as_deref(), Some("60s"));
    }

    #[test]
    fn the_file_names_itself_in_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evhost.toml");
        std::fs::write(&path, "plugins = 3\n").unwrap();
        let err = HostConfig::load(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:1:11: invalid type: integer `3`, expected path string",
                path.display()
            )
        );
        let err = HostConfig::load(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.toml: cannot read the configuration file"),
            "{err}"
        );
    }
}
