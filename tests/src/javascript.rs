//! The JavaScript plugins of the end-to-end tests, built with componentize-js.
//!
//! Three components, each a slow build (about 20 s: componentize-js
//! initialises SpiderMonkey with the plugin's modules loaded), so they are
//! built once per test process, in parallel, on the first call to
//! [`javascript_wasm`], and kept in `<workspace>/target/js-wasm/<digest>/`,
//! the digest covering every input (the SDK, the plugin's folder, the WIT and
//! the tool's version): a later run with the same inputs reuses them.
//!
//! - `audit-js`: `plugins/audit-js` (the order flow's audit in JavaScript);
//! - `echo-js` and `echo-js-v2`: `tests/plugins-js/echo-js`, built from
//!   `v1/app.js` or `v2/app.js` (replies say `echo-version: 1` or `2`),
//!   importing wasi:http so their `fetch` works.
//!
//! componentize-js runs from the workspace's root, which it maps into the
//! build, so the plugins import the SDK by its path (`../../js-sdk/src/...`).
//! A missing Node.js or componentize-js fails the test, naming what to
//! install and how; nothing is skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::component_cache;

/// The componentize-js release the plugins are built with (as pinned in
/// `js-sdk/package.json` and `js-sdk/package-lock.json`).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// How to install the tool, for error messages.
const INSTALL: &str = evhost_nats_process::component_cache::COMPONENTIZE_JS_INSTALL;

/// One JavaScript component: its name, its entry module and the folders it
/// is built from (besides the SDK and the WIT), relative to the workspace.
struct Build {
    name: &'static str,
    entry: &'static str,
    folder: &'static str,
    /// Built importing wasi:http, so `fetch` works.
    http: bool,
}

const BUILDS: &[Build] = &[
    Build {
        name: "audit-js",
        entry: "plugins/audit-js/app.js",
        folder: "plugins/audit-js",
        http: false,
    },
    Build {
        name: "echo-js",
        entry: "tests/plugins-js/echo-js/v1/app.js",
        folder: "tests/plugins-js/echo-js",
        http: true,
    },
    Build {
        name: "echo-js-v2",
        entry: "tests/plugins-js/echo-js/v2/app.js",
        folder: "tests/plugins-js/echo-js",
        http: true,
    },
];

/// The path of the built JavaScript plugin `name` (`audit-js`, `echo-js`,
/// `echo-js-v2`), building all of them on the first call.
pub fn javascript_wasm(name: &str) -> PathBuf {
    static BUILT: component_cache::Built = OnceLock::new();
    component_cache::lookup(&BUILT, build_all, name, "JavaScript")
}

fn build_all() -> Result<HashMap<String, PathBuf>, String> {
    let root = component_cache::workspace();
    node_version()?;
    let version = componentize_js_version(&root)?;
    if version != COMPONENTIZE_JS_VERSION {
        return Err(format!(
            "componentize-js {version} is installed in js-sdk/node_modules, the JavaScript \
             plugins are built with {COMPONENTIZE_JS_VERSION}: {INSTALL}"
        ));
    }
    component_cache::build_all(BUILDS, |b| b.name, build_one)
}

/// `node --version`, or why it could not be run.
fn node_version() -> Result<String, String> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "Node.js (`node`) is needed to build the JavaScript test plugins ({e}); \
                 then componentize-js: {INSTALL}"
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`node --version` failed ({}): {}; {INSTALL}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The version of the componentize-js installed under `js-sdk/node_modules`,
/// or why there is none.
fn componentize_js_version(root: &Path) -> Result<String, String> {
    let manifest = root.join("js-sdk/node_modules/@bytecodealliance/componentize-js/package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "componentize-js is needed to build the JavaScript test plugins, and {} \
             cannot be read ({e}): {INSTALL}",
            manifest.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON ({e}): {INSTALL}", manifest.display()))?;
    json["version"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no version: {INSTALL}", manifest.display()))
}

/// Builds `b` unless a build of the same inputs is there; returns its path.
fn build_one(root: &Path, b: &Build) -> Result<PathBuf, String> {
    use evhost_nats_process::component_cache::{cached, componentize_js, digest};
    let digest = digest(
        root,
        &[
            COMPONENTIZE_JS_VERSION,
            b.name,
            b.entry,
            if b.http { "http" } else { "" },
        ],
        &["js-sdk/src", b.folder, "wit"],
        &["node_modules"],
    )
    .map_err(|e| e.to_string())?;
    cached(root, "js-wasm", &digest, b.name, |out| {
        componentize_js(root, b.entry, b.name, out, b.http)
    })
    .map_err(|e| e.to_string())
}
