//! `evhost build [DIR] [--out FILE]`: turn a handler project into `NAME.wasm`.
//!
//! This module owns recognising what a folder is ([`detect`], pure and
//! unit-tested), running the language's component builder on it, and the copy
//! of evhost's WIT those builders read ([`write_wit`]):
//!
//! - a Rust crate (`Cargo.toml` whose `[lib]` has `crate-type = ["cdylib"]`):
//!   `cargo build --release --target wasm32-wasip2`, then the crate's
//!   `.wasm` is copied out of the target folder (`CARGO_TARGET_DIR`, else
//!   `DIR/target`); the SDK's bindings carry the WIT already;
//! - a Python project (`app.py`, or the module a `pyproject.toml`'s
//!   `[tool.evhost] module` names; NAME is `[project] name`, else the
//!   folder's): `componentize-py -d WIT -w handler componentize -p DIR MODULE`,
//!   with `-w handler-http` when `[tool.evhost] http = true` (the bindings of
//!   `wasi:http` that `evhost_sdk.http` uses);
//! - a JavaScript package (`package.json`, entry `main`, else `app.js`; NAME
//!   is its `name`): componentize-js's `-w WIT -n handler -d fetch-event`,
//!   and `-d http` unless `package.json` says `"evhost": {"http": true}` (then
//!   the component imports wasi:http and `fetch` works), run in DIR (it maps
//!   the folder it runs in, nothing else).
//!
//! The WIT is the one this evhost serves, embedded in the binary and written
//! to a temporary folder for the tool. A missing tool is one line naming it
//! and how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, anyhow, bail};

/// The componentize-py release evhost's Python SDK is built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The componentize-js release evhost's JavaScript SDK is built with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// evhost's WIT: (path under `wit/`, text).
pub const WIT_FILES: &[(&str, &str)] = &[
    ("handler.wit", include_str!("../../wit/handler.wit")),
    ("http.wit", include_str!("../../wit/http.wit")),
    (
        "deps/keyvalue/atomics.wit",
        include_str!("../../wit/deps/keyvalue/atomics.wit"),
    ),
    (
        "deps/keyvalue/batch.wit",
        include_str!("../../wit/deps/keyvalue/batch.wit"),
    ),
    (
        "deps/keyvalue/store.wit",
        include_str!("../../wit/deps/keyvalue/store.wit"),
    ),
    (
        "deps/keyvalue/world.wit",
        include_str!("../../wit/deps/keyvalue/world.wit"),
    ),
    (
        "deps/cli/cli.wit",
        include_str!("../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/http/http.wit",
        include_str!("../../wit/deps/http/http.wit"),
    ),
    ("deps/io/io.wit", include_str!("../../wit/deps/io/io.wit")),
    (
        "deps/random/random.wit",
        include_str!("../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../wit/deps/sockets/sockets.wit"),
    ),
];

/// What a folder holds, and how it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Project {
    /// A cdylib crate; `lib` is the library's name (the `.wasm`'s stem).
    Rust { name: String, lib: String },
    /// A Python app module (`app` for `app.py`); `http`: built against
    /// `handler-http` (`[tool.evhost] http = true` in `pyproject.toml`).
    Python {
        name: String,
        module: String,
        http: bool,
    },
    /// A JavaScript entry module, relative to the folder; `http`: built
    /// importing wasi:http (`"evhost": {"http": true}` in `package.json`).
    JavaScript {
        name: String,
        entry: String,
        http: bool,
    },
}

impl Project {
    /// The plugin's name: the output is `NAME.wasm`.
    pub fn name(&self) -> &str {
        match self {
            Project::Rust { name, .. }
            | Project::Python { name, .. }
            | Project::JavaScript { name, .. } => name,
        }
    }
}

/// Recognises a project from its folder's name and `read(file)` (a file's
/// text, `None` when absent). Rust first, then Python, then JavaScript.
pub fn detect(dir_name: &str, read: impl Fn(&str) -> Option<String>) -> anyhow::Result<Project> {
    if let Some(text) = read("Cargo.toml") {
        let doc: toml::Table = text.parse().context("Cargo.toml is not valid TOML")?;
        let name = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| anyhow!("Cargo.toml has no [package] name"))?
            .to_string();
        let lib = doc.get("lib");
        let cdylib = lib
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
        if !cdylib {
            bail!("Cargo.toml of {name} builds no component: add [lib] crate-type = [\"cdylib\"]");
        }
        let lib = lib
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map_or_else(|| name.replace('-', "_"), str::to_string);
        return Ok(Project::Rust { name, lib });
    }
    let pyproject = match read("pyproject.toml") {
        Some(text) => Some(
            text.parse::<toml::Table>()
                .context("pyproject.toml is not valid TOML")?,
        ),
        None => None,
    };
    let named_module = pyproject.as_ref().and_then(|doc| {
        doc.get("tool")?
            .get("evhost")?
            .get("module")?
            .as_str()
            .map(str::to_string)
    });
    let module = named_module.unwrap_or_else(|| "app".to_string());
    let http = match pyproject
        .as_ref()
        .and_then(|doc| doc.get("tool")?.get("evhost")?.get("http"))
    {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            bail!("pyproject.toml: [tool.evhost] http must be true or false, not {other}")
        }
    };
    let module_file = format!("{}.py", module.replace('.', "/"));
    if read(&module_file).is_some() {
        let name = pyproject
            .as_ref()
            .and_then(|doc| {
                doc.get("project")?
                    .get("name")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| dir_name.to_string());
        return Ok(Project::Python { name, module, http });
    }
    if pyproject.is_some() {
        bail!("pyproject.toml names the module {module}, and there is no {module_file}");
    }
    if let Some(text) = read("package.json") {
        let doc: serde_json::Value =
            serde_json::from_str(&text).context("package.json is not valid JSON")?;
        let entry = doc
            .get("main")
            .and_then(|m| m.as_str())
            .unwrap_or("app.js")
            .trim_start_matches("./")
            .to_string();
        if read(&entry).is_none() {
            bail!("package.json's entry module {entry} is missing (set \"main\")");
        }
        let name = doc
            .get("name")
            .and_then(|n| n.as_str())
            // `@scope/name` is `name`.
            .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
            .unwrap_or_else(|| dir_name.to_string());
        let http = match doc.get("evhost").and_then(|e| e.get("http")) {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => bail!("package.json: evhost.http must be true or false, not {other}"),
        };
        return Ok(Project::JavaScript { name, entry, http });
    }
    bail!(
        "{dir_name} is not a handler project: no Cargo.toml (Rust), app.py (Python) or package.json (JavaScript)"
    )
}

/// Writes evhost's WIT into `dir` (as `dir/handler.wit`, `dir/deps/...`).
pub fn write_wit(dir: &Path) -> anyhow::Result<()> {
    for (path, text) in WIT_FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
    }
    Ok(())
}

/// The evhost repository (the folder with `plugin-sdk/`, `python-sdk/`,
/// `js-sdk/`): `explicit`, else `EVHOST_SDK_PATH`, else a folder above the
/// running binary (a build inside a clone). `None` when none is found.
pub fn find_sdk_root(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("EVHOST_SDK_PATH") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.ancestors()
        .find(|dir| is_sdk_root(dir))
        .map(Path::to_path_buf)
}

/// Whether `dir` looks like the evhost repository.
pub fn is_sdk_root(dir: &Path) -> bool {
    dir.join("plugin-sdk/Cargo.toml").is_file() && dir.join("wit/handler.wit").is_file()
}

/// Builds the project in `dir` into `out` (default `dir/NAME.wasm`); returns
/// the file written.
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolve {}", dir.display()))?;
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    let project = detect(&dir_name, |file| {
        std::fs::read_to_string(dir.join(file)).ok()
    })?;
    let out = match out {
        Some(out) => std::path::absolute(out)?,
        None => dir.join(format!("{}.wasm", project.name())),
    };
    let wit = tempfile::Builder::new().prefix("evhost-wit-").tempdir()?;
    write_wit(wit.path())?;
    match &project {
        Project::Rust { lib, .. } => build_rust(&dir, lib, &out)?,
        Project::Python { module, http, .. } => {
            build_python(&dir, module, *http, wit.path(), &out)?
        }
        Project::JavaScript { entry, http, .. } => build_js(&dir, entry, *http, wit.path(), &out)?,
    }
    Ok(out)
}

/// Runs `command`; a tool that is not there is `missing` (one line).
fn run(command: &mut Command, tool: &str, missing: &str) -> anyhow::Result<Output> {
    match command.output() {
        Ok(output) => Ok(output),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("{tool} not found: {missing}")
        }
        Err(err) => bail!("could not run {tool}: {err}"),
    }
}

/// A failed tool run: its output goes to stderr, the error says which tool.
fn failed(tool: &str, output: &Output) -> anyhow::Error {
    eprint!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow!("{tool} failed ({}); its output is above", output.status)
}

const RUST_INSTALL: &str =
    "install Rust from https://rustup.rs, then `rustup target add wasm32-wasip2`";

fn build_rust(dir: &Path, lib: &str, out: &Path) -> anyhow::Result<()> {
    let output = run(
        Command::new("cargo").current_dir(dir).args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
        ]),
        "cargo",
        RUST_INSTALL,
    )?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("may not be installed") || stderr.contains("can't find crate for `std`")
        {
            bail!(
                "the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`"
            );
        }
        return Err(failed("cargo build", &output));
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => dir.join(t), // relative to where cargo ran; absolute stays
        None => dir.join("target"),
    };
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{lib}.wasm"));
    std::fs::copy(&built, out)
        .with_context(|| format!("copy {} to {}", built.display(), out.display()))?;
    Ok(())
}

fn build_python(
    dir: &Path,
    module: &str,
    http: bool,
    wit: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let world = if http { "handler-http" } else { "handler" };
    let output = run(
        Command::new("componentize-py")
            .current_dir(dir)
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", "-p"])
            .arg(dir)
            .arg(module)
            .arg("-o")
            .arg(out),
        "componentize-py",
        &format!("install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}`"),
    )?;
    if !output.status.success() {
        return Err(failed("componentize-py", &output));
    }
    Ok(())
}

/// componentize-js's command-line entry under a `node_modules`.
const JS_CLI: &str = "node_modules/@bytecodealliance/componentize-js/src/cli.js";

fn build_js(dir: &Path, entry: &str, http: bool, wit: &Path, out: &Path) -> anyhow::Result<()> {
    let install = format!(
        "in {}, run `npm install --save-dev --save-exact @bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION} @bytecodealliance/preview2-shim@0.25.0` (or `npm ci --prefix path/to/evhost/js-sdk` and set EVHOST_SDK_PATH)",
        dir.display()
    );
    // The project's own, else the one installed for evhost's SDK.
    let cli = std::iter::once(dir.join(JS_CLI))
        .chain(find_sdk_root(None).map(|root| root.join("js-sdk").join(JS_CLI)))
        .find(|cli| cli.is_file())
        .ok_or_else(|| anyhow!("componentize-js not found: {install}"))?;
    let mut cmd = Command::new("node");
    cmd.current_dir(dir)
        .arg(&cli)
        .arg(entry)
        .arg("-w")
        .arg(wit)
        .args(["-n", "handler", "-d", "fetch-event"]);
    if !http {
        cmd.args(["-d", "http"]);
    }
    cmd.arg("-o").arg(out);
    let output = run(&mut cmd, "node", "install Node.js 20 (with npm)")?;
    if !output.status.success() {
        return Err(failed("componentize-js", &output));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every file of the repository's `wit/` is embedded, so the WIT that
    /// `evhost build` hands the tools is whole (a world naming an interface
    /// whose file is missing does not build).
    #[test]
    fn the_embedded_wit_is_every_file_of_wit() {
        fn files(dir: &Path, under: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    files(&path, under, found);
                } else {
                    let rel = path.strip_prefix(under).unwrap();
                    found.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut on_disk = Vec::new();
        files(&wit, &wit, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = WIT_FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        for (path, text) in WIT_FILES {
            assert_eq!(
                *text,
                std::fs::read_to_string(wit.join(path)).unwrap(),
                "{path}"
            );
        }
    }

    fn detect_in(files: &[(&str, &str)]) -> anyhow::Result<Project> {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        detect("folder", |f| files.get(f).cloned())
    }

    #[test]
    fn a_cdylib_crate_is_rust() {
        let toml = "[package]\nname = \"my-handler\"\n[lib]\ncrate-type = [\"cdylib\"]\n";
        assert_eq!(
            detect_in(&[("Cargo.toml", toml)]).unwrap(),
            Project::Rust {
                name: "my-handler".into(),
                lib: "my_handler".into()
            }
        );
        let named = "[package]\nname = \"a\"\n[lib]\nname = \"b\"\ncrate-type = [\"cdylib\"]\n";
        assert_eq!(
            detect_in(&[("Cargo.toml", named)]).unwrap(),
            Project::Rust {
                name: "a".into(),
                lib: "b".into()
            }
        );
    }

    #[test]
    fn a_crate_without_cdylib_is_refused() {
        let err = detect_in(&[("Cargo.toml", "[package]\nname = \"x\"\n")]).unwrap_err();
        assert!(err.to_string().contains("cdylib"), "{err}");
    }

    #[test]
    fn app_py_is_python_named_by_pyproject_or_folder() {
        assert_eq!(
            detect_in(&[("app.py", "")]).unwrap(),
            Project::Python {
                name: "folder".into(),
                module: "app".into(),
                http: false,
            }
        );
        let py = "[project]\nname = \"greeter\"\n[tool.evhost]\nmodule = \"main\"\n";
        assert_eq!(
            detect_in(&[("pyproject.toml", py), ("main.py", "")]).unwrap(),
            Project::Python {
                name: "greeter".into(),
                module: "main".into(),
                http: false,
            }
        );
        let err = detect_in(&[("pyproject.toml", py)]).unwrap_err();
        assert!(err.to_string().contains("main.py"), "{err}");
        let http = "[tool.evhost]\nhttp = true\n";
        assert_eq!(
            detect_in(&[("pyproject.toml", http), ("app.py", "")]).unwrap(),
            Project::Python {
                name: "folder".into(),
                module: "app".into(),
                http: true,
            }
        );
        let wrong = "[tool.evhost]\nhttp = \"yes\"\n";
        let err = detect_in(&[("pyproject.toml", wrong), ("app.py", "")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pyproject.toml: [tool.evhost] http must be true or false, not \"yes\""
        );
    }

    #[test]
    fn package_json_is_javascript() {
        let pkg = r#"{"name": "@me/greeter", "main": "./index.js"}"#;
        assert_eq!(
            detect_in(&[("package.json", pkg), ("index.js", "")]).unwrap(),
            Project::JavaScript {
                name: "greeter".into(),
                entry: "index.js".into(),
                http: false,
            }
        );
        assert_eq!(
            detect_in(&[("package.json", "{}"), ("app.js", "")]).unwrap(),
            Project::JavaScript {
                name: "folder".into(),
                entry: "app.js".into(),
                http: false,
            }
        );
        assert!(detect_in(&[("package.json", "{}")]).is_err());
        let with_http = r#"{"evhost": {"http": true}}"#;
        assert_eq!(
            detect_in(&[("package.json", with_http), ("app.js", "")]).unwrap(),
            Project::JavaScript {
                name: "folder".into(),
                entry: "app.js".into(),
                http: true,
            }
        );
        let wrong = r#"{"evhost": {"http": "yes"}}"#;
        let err = detect_in(&[("package.json", wrong), ("app.js", "")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "package.json: evhost.http must be true or false, not \"yes\""
        );
    }

    #[test]
    fn rust_wins_over_the_others() {
        let toml = "[package]\nname = \"r\"\n[lib]\ncrate-type = [\"cdylib\"]\n";
        let got = detect_in(&[("Cargo.toml", toml), ("app.py", ""), ("package.json", "{}")]);
        assert!(matches!(got.unwrap(), Project::Rust { .. }));
    }

    #[test]
    fn an_empty_folder_is_one_line() {
        let err = detect_in(&[]).unwrap_err().to_string();
        assert!(!err.contains('\n'));
        assert!(err.contains("not a handler project"), "{err}");
    }

    #[test]
    fn the_wit_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_wit(dir.path()).unwrap();
        assert!(dir.path().join("handler.wit").is_file());
        assert!(dir.path().join("deps/keyvalue/store.wit").is_file());
    }
}
