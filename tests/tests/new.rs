//! `evhost new` and `evhost build`: a project of each language, as generated,
//! builds and handles its sample event under `evhost invoke`; a folder that
//! is no project, and an unknown language, are one clear line.
//!
//! The Rust project builds with `CARGO_TARGET_DIR` set to
//! `<workspace>/target/new-rust`, so later runs reuse its dependencies. The
//! Python and JavaScript builds need componentize-py 0.25.1 and the
//! componentize-js of `js-sdk/node_modules` (as the other suites do).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use evhost_tests::{CliOutput, evhost, evhost_bin, evhost_with_timeout};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the workspace root")
        .to_path_buf()
}

/// Runs `evhost ARGS` in `dir` with `env`, to its end (builds take minutes
/// on a cold cache; the tools bound their own time).
fn evhost_long(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> CliOutput {
    let output = Command::new(evhost_bin())
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .env_remove("EVHOST_SDK_PATH")
        .args(args)
        .output()
        .expect("run evhost");
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `evhost new NAME --lang LANG` in `parent`, on this repository's SDK;
/// returns the project's folder.
fn new_project(lang: &str, name: &str, parent: &Path) -> PathBuf {
    let made = evhost(
        &[
            "new",
            name,
            "--lang",
            lang,
            "--dir",
            parent.to_str().unwrap(),
            "--sdk",
            workspace().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(made.code, Some(0), "evhost new:\n{made}");
    parent.join(name)
}

/// `evhost new NAME --lang LANG`, `evhost build`, `evhost invoke` of the
/// sample event: the one output the template promises.
fn new_build_invoke(lang: &str) {
    let started = Instant::now();
    let parent = tempfile::tempdir().unwrap();
    let name = format!("greeter-{lang}");
    let root = workspace();
    let project = new_project(lang, &name, parent.path());
    assert!(project.join("README.md").is_file());

    let target = root.join("target/new-rust");
    let env: Vec<(&str, &Path)> = if lang == "rust" {
        vec![("CARGO_TARGET_DIR", target.as_path())]
    } else {
        vec![]
    };
    let built = evhost_long(&project, &env, &["build"]);
    assert_eq!(built.code, Some(0), "evhost build:\n{built}");
    built.assert_no_panic();
    let wasm = project.join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "no {}:\n{built}", wasm.display());

    let payload = format!(
        "@{}",
        project.join("events/greetings.requested.json").display()
    );
    // Python and JavaScript components take tens of seconds to compile.
    let invoked = evhost_with_timeout(
        &[
            "invoke",
            wasm.to_str().unwrap(),
            "--subject",
            "greetings.requested",
            "--payload",
            &payload,
        ],
        None,
        Duration::from_secs(300),
    );
    assert_eq!(invoked.code, Some(0), "evhost invoke:\n{invoked}");
    let out: Value = serde_json::from_str(invoked.stdout.trim()).expect("invoke prints JSON");
    assert_eq!(out["outcome"], "ok", "{out}");
    let outputs = out["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "{out}");
    assert_eq!(outputs[0]["subject"], "greetings.greeted");
    let payload: Value =
        serde_json::from_str(outputs[0]["payload"].as_str().expect("a text payload")).unwrap();
    assert_eq!(payload, serde_json::json!({ "message": "hello, world" }));
    eprintln!(
        "{lang}: new + build + invoke took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn rust_project_builds_and_invokes() {
    new_build_invoke("rust");
}

#[test]
fn python_project_builds_and_invokes() {
    new_build_invoke("python");
}

#[test]
fn js_project_builds_and_invokes() {
    new_build_invoke("js");
}

#[test]
fn building_an_empty_folder_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = evhost_long(dir.path(), &[], &["build"]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_no_panic();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("not a handler project")
            && lines[0].contains("Cargo.toml")
            && lines[0].contains("app.py")
            && lines[0].contains("package.json"),
        "{out}"
    );
}

#[test]
fn an_unknown_language_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = evhost(
        &[
            "new",
            "x",
            "--lang",
            "cobol",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("cobol") && out.stderr.contains("rust, python, js"),
        "{out}"
    );
    assert!(!dir.path().join("x").exists());
}

#[test]
fn new_refuses_a_bad_name_and_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();
    let sdk = workspace();
    let sdk = sdk.to_str().unwrap();
    let bad = evhost(
        &[
            "new", "Bad Name", "--lang", "js", "--dir", parent, "--sdk", sdk,
        ],
        None,
    );
    assert_eq!(bad.code, Some(1), "{bad}");
    assert!(bad.stderr.contains("not a plugin name"), "{bad}");
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let taken = evhost(
        &[
            "new", "taken", "--lang", "js", "--dir", parent, "--sdk", sdk,
        ],
        None,
    );
    assert_eq!(taken.code, Some(1), "{taken}");
    assert!(taken.stderr.contains("already exists"), "{taken}");
    let no_sdk = evhost(
        &[
            "new", "y", "--lang", "rust", "--dir", parent, "--sdk", parent,
        ],
        None,
    );
    assert_eq!(no_sdk.code, Some(1), "{no_sdk}");
    assert!(no_sdk.stderr.contains("--sdk"), "{no_sdk}");
}

/// A project that asks for HTTP (`"evhost": {"http": true}` in a
/// JavaScript `package.json`, `http = true` under `[tool.evhost]` in a Python
/// `pyproject.toml`) is built importing wasi:http, so `fetch` or
/// `evhost_sdk.http` works; without it, not. `evhost check` says which.
fn asks_for_http(lang: &str, ask: impl FnOnce(&Path)) {
    let parent = tempfile::tempdir().unwrap();
    let name = format!("caller-{lang}");
    let project = new_project(lang, &name, parent.path());
    let wasm = project.join(format!("{name}.wasm"));
    let check = || {
        let out = evhost_with_timeout(
            &["check", wasm.to_str().unwrap()],
            None,
            Duration::from_secs(300),
        );
        assert_eq!(out.code, Some(0), "evhost check:\n{out}");
        out.stdout
    };

    let built = evhost_long(&project, &[], &["build"]);
    assert_eq!(built.code, Some(0), "evhost build:\n{built}");
    let checked = check();
    assert!(!checked.contains("capability: wasi:http"), "{checked}");

    ask(&project);
    let built = evhost_long(&project, &[], &["build"]);
    assert_eq!(built.code, Some(0), "evhost build:\n{built}");
    let checked = check();
    assert!(
        checked.contains("capability: wasi:http (not granted: every request is refused)"),
        "{checked}"
    );
}

#[test]
fn a_js_project_that_asks_for_http_imports_it() {
    asks_for_http("js", |project| {
        let manifest = project.join("package.json");
        let mut package: Value =
            serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        package["evhost"] = serde_json::json!({ "http": true });
        std::fs::write(&manifest, package.to_string()).unwrap();
    });
}

#[test]
fn a_python_project_that_asks_for_http_imports_it() {
    asks_for_http("python", |project| {
        let manifest = project.join("pyproject.toml");
        // As the template's comment says: uncomment `http = true`.
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.contains("\n# http = true"), "{text}");
        std::fs::write(&manifest, text.replace("\n# http = true", "\nhttp = true")).unwrap();
    });
}
