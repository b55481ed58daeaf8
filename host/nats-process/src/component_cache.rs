//! Components built by a tool other than cargo (componentize-py,
//! componentize-js), kept by the digest of their inputs, as the end-to-end
//! tests (`tests/src/python.rs`, `javascript.rs`) and the benchmark build them. Each
//! build takes tens of seconds, so a component is kept in
//! `<root>/target/<kind>/<digest>/NAME.wasm`, the digest covering every input
//! ([`digest`]): a later run with the same inputs reuses it ([`cached`]).
//! The digest is computed as the tests compute it, so the two share a build
//! of the same plugin with the same command.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Why a component could not be built or found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input or output file or folder could not be read or written.
    #[error("{what} {path}: {error}")]
    Io {
        /// What was being done (`read`, `create`, `rename to`).
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The builder could not be run at all (not installed, say).
    #[error("could not run {tool} to build {name} ({error}): {install}")]
    Run {
        /// The builder (`componentize-py`, `componentize-js`).
        tool: String,
        /// The component.
        name: String,
        /// How to install the builder.
        install: String,
        /// Why it did not run.
        error: std::io::Error,
    },
    /// The builder ran and failed.
    #[error("building the plugin {name} with {tool} failed ({status}):\n{output}")]
    Failed {
        /// The builder.
        tool: String,
        /// The component.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |error| Error::Io { what, path, error }
}

/// A digest of `salt` (the tool's version, the build's name and options)
/// and of every file under `dirs` (relative to `root`: their paths and
/// contents, in sorted order), leaving out folders named in `skip`.
pub fn digest(root: &Path, salt: &[&str], dirs: &[&str], skip: &[&str]) -> Result<String, Error> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut hasher);
    for dir in dirs {
        hash_tree(root, &root.join(dir), skip, &mut hasher)?;
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// Hashes the path (relative to `root`) and contents of every file under
/// `dir`, in sorted order, leaving out entries named in `skip`.
fn hash_tree(
    root: &Path,
    dir: &Path,
    skip: &[&str],
    hasher: &mut impl Hasher,
) -> Result<(), Error> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("read", dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| !skip.iter().any(|s| n == *s)))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            hash_tree(root, &path, skip, hasher)?;
        } else {
            path.strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .hash(hasher);
            std::fs::read(&path)
                .map_err(io("read", &path))?
                .hash(hasher);
        }
    }
    Ok(())
}

/// `<root>/target/<kind>/<digest>/<name>.wasm`: as it is when an earlier
/// build left it, else made by `build`, which writes the component to the
/// path it is given (beside, then renamed, so a concurrent run never sees
/// half a file).
pub fn cached(
    root: &Path,
    kind: &str,
    digest: &str,
    name: &str,
    build: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<PathBuf, Error> {
    let out_dir = root.join("target").join(kind).join(digest);
    let out = out_dir.join(format!("{name}.wasm"));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(io("create", &out_dir))?;
    let partial = out_dir.join(format!("{name}.wasm.{}.partial", std::process::id()));
    if let Err(e) = build(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &out).map_err(io("rename to", &out))?;
    Ok(out)
}

/// Runs `command`, a component build of plugin `name`, and says why when it
/// fails (`tool` and `install` name the builder and how to get it).
pub fn run_build(mut command: Command, name: &str, tool: &str, install: &str) -> Result<(), Error> {
    let output = command.output().map_err(|error| Error::Run {
        tool: tool.to_string(),
        name: name.to_string(),
        install: install.to_string(),
        error,
    })?;
    if !output.status.success() {
        return Err(Error::Failed {
            tool: tool.to_string(),
            name: name.to_string(),
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

/// How to install componentize-js for the workspace, for error messages.
pub const COMPONENTIZE_JS_INSTALL: &str = "install it with `npm ci --prefix js-sdk` from the repository's root \
     (@bytecodealliance/componentize-js 0.23.0, pinned in js-sdk/package-lock.json; \
     Node.js 20 and npm must be on PATH: Debian/Ubuntu `apt-get install nodejs npm`)";

/// componentize-js's command-line entry, under the SDK's `node_modules`.
pub const COMPONENTIZE_JS_CLI: &str =
    "js-sdk/node_modules/@bytecodealliance/componentize-js/src/cli.js";

/// Builds the JavaScript plugin `name` from `entry` (a path relative to the
/// workspace's `root`) into `out` with the workspace's componentize-js,
/// against the WIT in `wit/`; with `http`, importing wasi:http (so `fetch`
/// works), else not. Runs from the root, with paths relative to it:
/// componentize-js maps the folder it runs in into the build, and names the
/// modules in stack traces by their path in it
/// (`tests/plugins-js/echo-js/echo.js`).
pub fn componentize_js(
    root: &Path,
    entry: &str,
    name: &str,
    out: &Path,
    http: bool,
) -> Result<(), Error> {
    let mut cmd = Command::new("node");
    cmd.current_dir(root)
        .arg(COMPONENTIZE_JS_CLI)
        .arg(entry)
        .args(["-w", "wit", "-n", "handler", "-d", "fetch-event"]);
    if !http {
        cmd.args(["-d", "http"]);
    }
    cmd.arg("-o").arg(out);
    run_build(cmd, name, "componentize-js", COMPONENTIZE_JS_INSTALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_the_files_and_the_salt() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("app");
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        std::fs::write(dir.join("app.py"), "one").unwrap();
        let first = digest(root.path(), &["1.0"], &["app"], &["__pycache__"]).unwrap();
        std::fs::write(dir.join("__pycache__/app.pyc"), "skipped").unwrap();
        assert_eq!(
            digest(root.path(), &["1.0"], &["app"], &["__pycache__"]).unwrap(),
            first
        );
        assert_ne!(
            digest(root.path(), &["2.0"], &["app"], &["__pycache__"]).unwrap(),
            first
        );
        std::fs::write(dir.join("app.py"), "two").unwrap();
        assert_ne!(
            digest(root.path(), &["1.0"], &["app"], &["__pycache__"]).unwrap(),
            first
        );
    }

    #[test]
    fn a_cached_component_is_built_once() {
        let root = tempfile::tempdir().unwrap();
        let built = cached(root.path(), "kind", "d1", "x", |out| {
            std::fs::write(out, "wasm").map_err(io("write", out))
        })
        .unwrap();
        assert_eq!(built, root.path().join("target/kind/d1/x.wasm"));
        let again = cached(root.path(), "kind", "d1", "x", |_| panic!("built again")).unwrap();
        assert_eq!(again, built);
        let failed = cached(root.path(), "kind", "d2", "x", |out| {
            std::fs::write(out, "half").map_err(io("write", out))?;
            Err(Error::Io {
                what: "build",
                path: out.to_path_buf(),
                error: std::io::Error::other("no"),
            })
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read_dir(root.path().join("target/kind/d2"))
                .unwrap()
                .count(),
            0,
            "the partial file is removed"
        );
    }
}
