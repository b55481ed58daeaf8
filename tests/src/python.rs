//! The Python plugins of the end-to-end tests, built with componentize-py.
//!
//! Three components, each a slow build (tens of seconds), so they are built
//! once per test process, in parallel, on the first call to [`python_wasm`],
//! and kept in `<workspace>/target/python-wasm/<digest>/`, the digest covering
//! every input (the SDK, the plugin's folder, the WIT and the tool's version):
//! a later run with the same inputs reuses them.
//!
//! - `payment-py`: `plugins/payment-py` (the order flow's payment in Python,
//!   against `handler-http` for its `provider_url` mode);
//! - `echo-py` and `echo-py-v2`: `tests/plugins-py/echo-py`, with `v1/` or
//!   `v2/` on its path (replies say `echo-version: 1` or `2`), against the
//!   `handler-http` world so `evhost_sdk.http` works.
//!
//! A missing or different componentize-py fails the test, naming the tool and
//! how to install it; nothing is skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::component_cache;

/// The componentize-py release the plugins are built with (as in
/// `python-sdk/requirements-build.txt`).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// How to install the tool, for error messages.
const INSTALL: &str =
    "install it with `pip install -r python-sdk/requirements-build.txt` (componentize-py==0.25.1)";

/// One Python component: its name, its app folder and the extra module path.
struct Build {
    name: &'static str,
    app_dir: &'static str,
    extra_path: Option<&'static str>,
    /// The world it is built against: `handler`, or `handler-http` for a
    /// plugin that calls out over HTTP.
    world: &'static str,
}

const BUILDS: &[Build] = &[
    Build {
        name: "payment-py",
        app_dir: "plugins/payment-py",
        extra_path: None,
        world: "handler-http",
    },
    Build {
        name: "echo-py",
        app_dir: "tests/plugins-py/echo-py",
        extra_path: Some("tests/plugins-py/echo-py/v1"),
        world: "handler-http",
    },
    Build {
        name: "echo-py-v2",
        app_dir: "tests/plugins-py/echo-py",
        extra_path: Some("tests/plugins-py/echo-py/v2"),
        world: "handler-http",
    },
];

/// The path of the built Python plugin `name` (`payment-py`, `echo-py`,
/// `echo-py-v2`), building all of them on the first call.
pub fn python_wasm(name: &str) -> PathBuf {
    static BUILT: component_cache::Built = OnceLock::new();
    component_cache::lookup(&BUILT, build_all, name, "Python")
}

fn build_all() -> Result<HashMap<String, PathBuf>, String> {
    let version = componentize_py_version()?;
    if version != COMPONENTIZE_PY_VERSION {
        return Err(format!(
            "componentize-py {version} is installed, the Python plugins are built with \
             {COMPONENTIZE_PY_VERSION}: {INSTALL}"
        ));
    }
    component_cache::build_all(BUILDS, |b| b.name, build_one)
}

/// `componentize-py --version`'s number, or why it could not be run.
fn componentize_py_version() -> Result<String, String> {
    let output = Command::new("componentize-py")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!("componentize-py is needed to build the Python test plugins ({e}): {INSTALL}")
        })?;
    if !output.status.success() {
        return Err(format!(
            "`componentize-py --version` failed ({}): {}; {INSTALL}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string())
}

/// Builds `b` unless a build of the same inputs is there; returns its path.
fn build_one(root: &Path, b: &Build) -> Result<PathBuf, String> {
    let mut inputs = vec!["python-sdk/src", b.app_dir, "wit"];
    inputs.extend(b.extra_path);
    use evhost_nats_process::component_cache::{cached, digest, run_build};
    let digest = digest(
        root,
        &[COMPONENTIZE_PY_VERSION, b.name, b.world],
        &inputs,
        &["__pycache__"],
    )
    .map_err(|e| e.to_string())?;
    cached(root, "python-wasm", &digest, b.name, |out| {
        let app = root.join(b.app_dir);
        let mut cmd = Command::new("componentize-py");
        cmd.current_dir(&app)
            .arg("-d")
            .arg(root.join("wit"))
            .arg("-w")
            .arg(b.world)
            .arg("componentize")
            .arg("-p")
            .arg(root.join("python-sdk/src"));
        if let Some(extra) = b.extra_path {
            cmd.arg("-p").arg(root.join(extra));
        }
        cmd.arg("-p").arg(&app).arg("app").arg("-o").arg(out);
        run_build(cmd, b.name, "componentize-py", INSTALL)
    })
    .map_err(|e| e.to_string())
}
