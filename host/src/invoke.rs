//! `evhost invoke` and `evhost check`: run one message through a plugin, or
//! validate one, with no broker. The same loading path as the host.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::keyvalue::Backend;
use crate::kv_memory::MemoryBuckets;
use crate::manifest::Manifest;
use crate::outcome::FailureKind;
use crate::plugin::Plugin;
use crate::runtime::{MessageRef, Runtime, RuntimeOptions};

/// Exit code of a message handled successfully.
pub const EXIT_OK: u8 = 0;
/// Exit code of anything else going wrong: a trap, refused outputs, a bad file.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a transient failure (the host would retry).
pub const EXIT_TRANSIENT: u8 = 3;
/// Exit code of a permanent failure (the host would dead-letter).
pub const EXIT_PERMANENT: u8 = 4;

/// What `evhost invoke` was asked to do.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The plugin's `.wasm`.
    pub wasm: PathBuf,
    /// Its manifest, if any.
    pub manifest: Option<PathBuf>,
    /// The message's subject.
    pub subject: String,
    /// The payload: inline text, `@FILE`, or `-` for stdin; none for empty.
    pub payload: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// `[config]` values, overriding the manifest's.
    pub config: Vec<(String, String)>,
    /// The delivery number the handler sees.
    pub attempt: u32,
    /// NATS for the plugin's key-value buckets; none: in memory.
    pub nats: Option<crate::nats_connection::NatsConnection>,
}

/// Loads a plugin from its files the way the host does; `config` entries
/// override the manifest's `[config]`.
async fn load(
    wasm_path: &Path,
    manifest_path: Option<&Path>,
    config: &[(String, String)],
    kv: &Backend,
) -> anyhow::Result<Plugin> {
    let wasm = std::fs::read(wasm_path)
        .with_context(|| format!("{}: cannot read", wasm_path.display()))?;
    let mut manifest = match manifest_path {
        Some(path) => {
            anyhow::ensure!(path.exists(), "{}: no such manifest", path.display());
            Manifest::load(path)?
        }
        None => Manifest::default(),
    };
    for (k, v) in config {
        manifest
            .config
            .insert(k.clone(), toml::Value::String(v.clone()));
    }
    let name = plugin_name(wasm_path);
    let settings = manifest.resolve(&name).map_err(|e| match manifest_path {
        Some(p) => {
            let e = match std::fs::read_to_string(p) {
                Ok(text) => e.located(&text),
                Err(_) => e,
            };
            anyhow::anyhow!("{}", e.in_file(p))
        }
        None => anyhow::anyhow!("{e}"),
    })?;
    // The compiled-code cache `run` uses: a Python or JavaScript component
    // compiles for tens of seconds, and `invoke` is run again and again on
    // the same file while a handler is written.
    let runtime = Runtime::new(RuntimeOptions {
        compile_cache: true,
        cache_dir: None,
        compile_timeout: crate::runtime::DEFAULT_COMPILE_TIMEOUT,
    })?;
    let dir = wasm_path.parent().unwrap_or(Path::new("."));
    let host = crate::plugin::Surroundings {
        runtime,
        dir: dir.to_path_buf(),
        kv: kv.clone(),
        reserved: Default::default(),
    };
    Plugin::load(&host, &name, wasm, settings, None)
        .await
        .with_context(|| format!("{}", wasm_path.display()))
}

fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string()
}

/// Runs the invocation; prints the outcome as JSON and returns the exit code.
pub async fn invoke(inv: Invocation) -> anyhow::Result<u8> {
    let payload = crate::cli_args::read_payload(inv.payload.as_deref())?;
    anyhow::ensure!(
        crate::subject::is_valid_subject(&inv.subject),
        "--subject {:?} is not a valid NATS subject",
        inv.subject
    );
    let kv = match &inv.nats {
        Some(nats) => Backend::nats(
            crate::bus::connect(nats, "evhost invoke").await?,
            Vec::new(),
            // A bucket invoke creates to try a plugin out has one replica.
            crate::replicas::Replicas::default(),
        ),
        None => Backend::Memory(MemoryBuckets::default()),
    };
    let plugin = load(&inv.wasm, inv.manifest.as_deref(), &inv.config, &kv).await?;
    if !plugin
        .subjects
        .iter()
        .any(|p| crate::subject::matches(p, &inv.subject))
    {
        tracing::warn!(
            plugin = %plugin.name,
            subject = %inv.subject,
            subscribed = ?plugin.subjects,
            "the plugin does not subscribe to this subject; evhost run would never deliver it"
        );
    }
    let msg_id = inv
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Nats-Msg-Id"))
        .map(|(_, id)| id.as_str());
    let key = crate::idempotency::KeySource::core(msg_id);
    let message = MessageRef {
        subject: &inv.subject,
        headers: inv
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect(),
        payload: &payload,
        reply_to: None,
        attempt: inv.attempt.max(1),
    };
    let (report, code) = match plugin.call(&message, &key).await {
        Ok(outputs) => {
            let outputs: Vec<Value> = outputs
                .into_iter()
                .map(|o| {
                    let mut v = json!({ "subject": o.subject, "headers": o.headers });
                    match String::from_utf8(o.payload) {
                        Ok(text) => v["payload"] = json!(text),
                        Err(e) => {
                            v["payload_base64"] = json!(
                                base64::engine::general_purpose::STANDARD.encode(e.into_bytes())
                            )
                        }
                    }
                    v
                })
                .collect();
            (json!({ "outcome": "ok", "outputs": outputs }), EXIT_OK)
        }
        Err(failure) => {
            let code = match failure.kind {
                FailureKind::Transient | FailureKind::Timeout => EXIT_TRANSIENT,
                FailureKind::Permanent => EXIT_PERMANENT,
                FailureKind::Trap | FailureKind::InvalidOutput => EXIT_ERROR,
            };
            (
                json!({ "outcome": failure.kind.as_str(), "error": failure.message }),
                code,
            )
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(code)
}

/// Validates a plugin (and its manifest) and prints its name, version and subjects.
pub async fn check(wasm: &Path, manifest: Option<&Path>) -> anyhow::Result<()> {
    let kv = Backend::Memory(MemoryBuckets::default());
    let plugin = load(wasm, manifest, &[], &kv).await?;
    println!("{}: ok", plugin.name);
    println!("version: {}", plugin.version);
    for subject in &plugin.subjects {
        println!("subject: {subject}");
    }
    println!("queue group: {}", plugin.settings.queue_group);
    let imports = plugin.capability_imports();
    let caps = &plugin.settings.capabilities;
    let http = match &caps.http {
        Some(_) => "granted by [capabilities] http",
        None => "not granted: every request is refused",
    };
    let kv = if caps.keyvalue.is_empty() {
        "no bucket granted".to_string()
    } else {
        format!("buckets granted: {}", caps.keyvalue.join(", "))
    };
    let used = [
        (imports.http, "wasi:http", http),
        (imports.one_call_http, "evhost:plugin/http", http),
        (imports.keyvalue, "wasi:keyvalue", &kv),
    ];
    if used.iter().all(|(imported, ..)| !imported) {
        println!("capabilities: none imported");
    }
    for (_, interface, grant) in used.iter().filter(|(imported, ..)| *imported) {
        println!("capability: {interface} ({grant})");
    }
    Ok(())
}
