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
//!   `v1/app.js` or `v2/app.js` (replies say `echo-version: 1` or `2`).
//!
//! componentize-js runs from the workspace's root, which it maps into the
//! build, so the plugins import the SDK by its path (`../../js-sdk/src/...`).
//! A missing Node.js or componentize-js fails the test, naming what to
//! install and how; nothing is skipped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The componentize-js release the plugins are built with (as pinned in
/// `js-sdk/package.json` and `js-sdk/package-lock.json`).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// How to install the tool, for error messages.
const INSTALL: &str = "install it with `npm ci --prefix js-sdk` from the repository's root \
     (@bytecodealliance/componentize-js 0.23.0, pinned in js-sdk/package-lock.json; \
     Node.js 20 and npm must be on PATH: Debian/Ubuntu `apt-get install nodejs npm`)";

/// componentize-js's command-line entry, under the SDK's `node_modules`.
const CLI: &str = "js-sdk/node_modules/@bytecodealliance/componentize-js/src/cli.js";

/// One JavaScript component: its name, its entry module and the folders it
/// is built from (besides the SDK and the WIT), relative to the workspace.
struct Build {
    name: &'static str,
    entry: &'static str,
    folder: &'static str,
}

const BUILDS: &[Build] = &[
    Build {
        name: "audit-js",
        entry: "plugins/audit-js/app.js",
        folder: "plugins/audit-js",
    },
    Build {
        name: "echo-js",
        entry: "tests/plugins-js/echo-js/v1/app.js",
        folder: "tests/plugins-js/echo-js",
    },
    Build {
        name: "echo-js-v2",
        entry: "tests/plugins-js/echo-js/v2/app.js",
        folder: "tests/plugins-js/echo-js",
    },
];

/// The path of the built JavaScript plugin `name` (`audit-js`, `echo-js`,
/// `echo-js-v2`), building all of them on the first call.
pub fn javascript_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    let built = BUILT
        .get_or_init(build_all)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    built
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no JavaScript plugin named {name}"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the workspace root")
        .to_path_buf()
}

fn build_all() -> Result<HashMap<String, PathBuf>, String> {
    let root = workspace();
    node_version()?;
    let version = componentize_js_version(&root)?;
    if version != COMPONENTIZE_JS_VERSION {
        return Err(format!(
            "componentize-js {version} is installed in js-sdk/node_modules, the JavaScript \
             plugins are built with {COMPONENTIZE_JS_VERSION}: {INSTALL}"
        ));
    }
    let threads: Vec<_> = BUILDS
        .iter()
        .map(|b| {
            let root = root.clone();
            std::thread::spawn(move || build_one(&root, b).map(|p| (b.name.to_string(), p)))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a build thread"))
        .collect()
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
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    COMPONENTIZE_JS_VERSION.hash(&mut hasher);
    b.name.hash(&mut hasher);
    b.entry.hash(&mut hasher);
    for dir in ["js-sdk/src", b.folder, "wit"] {
        hash_tree(root, &root.join(dir), &mut hasher)?;
    }
    let out_dir = root
        .join("target/js-wasm")
        .join(format!("{:016x}", hasher.finish()));
    let out = out_dir.join(format!("{}.wasm", b.name));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    // Written beside and renamed, so a concurrent run never sees half a file.
    let partial = out_dir.join(format!("{}.wasm.{}.partial", b.name, std::process::id()));
    // From the workspace's root, with paths relative to it: componentize-js
    // maps the folder it runs in into the build, and names the modules in
    // stack traces by their path in it (`tests/plugins-js/echo-js/echo.js`).
    let output = Command::new("node")
        .current_dir(root)
        .arg(CLI)
        .arg(b.entry)
        .args([
            "-w",
            "wit",
            "-n",
            "handler",
            "-d",
            "http",
            "-d",
            "fetch-event",
            "-o",
        ])
        .arg(&partial)
        .output()
        .map_err(|e| {
            format!(
                "could not run componentize-js for {}: {e}; {INSTALL}",
                b.name
            )
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "building the JavaScript plugin {} failed ({}):\n{}{}",
            b.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&partial, &out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    Ok(out)
}

/// Feeds every file under `dir` (paths relative to `root`, and contents, in
/// sorted order) to `hasher`, leaving out `node_modules`.
fn hash_tree(root: &Path, dir: &Path, hasher: &mut impl Hasher) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "node_modules"))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            hash_tree(root, &path, hasher)?;
        } else {
            path.strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .hash(hasher);
            std::fs::read(&path)
                .map_err(|e| format!("read {}: {e}", path.display()))?
                .hash(hasher);
        }
    }
    Ok(())
}
