//! The Python plugins of the end-to-end tests, built with componentize-py.
//!
//! Three components, each a slow build (tens of seconds), so they are built
//! once per test process, in parallel, on the first call to [`python_wasm`],
//! and kept in `<workspace>/target/python-wasm/<digest>/`, the digest covering
//! every input (the SDK, the plugin's folder, the WIT and the tool's version):
//! a later run with the same inputs reuses them.
//!
//! - `payment-py`: `plugins/payment-py` (the order flow's payment in Python);
//! - `echo-py` and `echo-py-v2`: `tests/plugins-py/echo-py`, with `v1/` or
//!   `v2/` on its path (replies say `echo-version: 1` or `2`).
//!
//! A missing or different componentize-py fails the test, naming the tool and
//! how to install it; nothing is skipped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
}

const BUILDS: &[Build] = &[
    Build {
        name: "payment-py",
        app_dir: "plugins/payment-py",
        extra_path: None,
    },
    Build {
        name: "echo-py",
        app_dir: "tests/plugins-py/echo-py",
        extra_path: Some("tests/plugins-py/echo-py/v1"),
    },
    Build {
        name: "echo-py-v2",
        app_dir: "tests/plugins-py/echo-py",
        extra_path: Some("tests/plugins-py/echo-py/v2"),
    },
];

/// The path of the built Python plugin `name` (`payment-py`, `echo-py`,
/// `echo-py-v2`), building all of them on the first call.
pub fn python_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    let built = BUILT
        .get_or_init(build_all)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    built
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no Python plugin named {name}"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the workspace root")
        .to_path_buf()
}

fn build_all() -> Result<HashMap<String, PathBuf>, String> {
    let version = componentize_py_version()?;
    if version != COMPONENTIZE_PY_VERSION {
        return Err(format!(
            "componentize-py {version} is installed, the Python plugins are built with \
             {COMPONENTIZE_PY_VERSION}: {INSTALL}"
        ));
    }
    let root = workspace();
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
    let sdk = root.join("python-sdk/src");
    let app = root.join(b.app_dir);
    let wit = root.join("wit");
    let extra = b.extra_path.map(|p| root.join(p));

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    COMPONENTIZE_PY_VERSION.hash(&mut hasher);
    b.name.hash(&mut hasher);
    for dir in [Some(&sdk), Some(&app), Some(&wit), extra.as_ref()]
        .into_iter()
        .flatten()
    {
        hash_tree(dir, &mut hasher)?;
    }
    let out_dir = root
        .join("target/python-wasm")
        .join(format!("{:016x}", hasher.finish()));
    let out = out_dir.join(format!("{}.wasm", b.name));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    // Written beside and renamed, so a concurrent run never sees half a file.
    let partial = out_dir.join(format!("{}.wasm.{}.partial", b.name, std::process::id()));
    let mut cmd = Command::new("componentize-py");
    cmd.current_dir(&app)
        .arg("-d")
        .arg(&wit)
        .arg("-w")
        .arg("handler")
        .arg("componentize")
        .arg("-p")
        .arg(&sdk);
    if let Some(extra) = &extra {
        cmd.arg("-p").arg(extra);
    }
    cmd.arg("-p").arg(&app).arg("app").arg("-o").arg(&partial);
    let output = cmd.output().map_err(|e| {
        format!(
            "could not run componentize-py for {}: {e}; {INSTALL}",
            b.name
        )
    })?;
    if !output.status.success() {
        return Err(format!(
            "building the Python plugin {} failed ({}):\n{}{}",
            b.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&partial, &out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    Ok(out)
}

/// Feeds every file under `dir` (paths and contents, in sorted order) to
/// `hasher`, leaving out Python's bytecode caches.
fn hash_tree(dir: &Path, hasher: &mut impl Hasher) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "__pycache__"))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            hash_tree(&path, hasher)?;
        } else {
            path.to_string_lossy().hash(hasher);
            std::fs::read(&path)
                .map_err(|e| format!("read {}: {e}", path.display()))?
                .hash(hasher);
        }
    }
    Ok(())
}
