//! Builds every plugin of the workspace (`plugins/*` and `tests/plugins/*`) for
//! `wasm32-wasip2`, so the end-to-end tests run real components.
//!
//! Like wasmtime's and Spin's test-program crates, this runs a nested
//! `cargo build --release --target wasm32-wasip2` with a target directory of
//! its own (`<workspace>/target/plugin-wasm`), after clearing the variables the
//! outer build sets for build scripts, which would otherwise leak into it.
//!
//! It then copies each plugin to `$OUT_DIR/wasm/NAME.wasm`, NAME being the
//! plugin's folder name, and exports that folder as `EVHOST_PLUGIN_WASM_DIR`.
//! The `echo` test plugin is built a second time with `EVHOST_ECHO_VERSION=2`
//! (in `<workspace>/target/plugin-wasm-v2`) and copied as `echo-v2.wasm`, so
//! hot-reload tests have two versions whose outputs differ.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

struct Plugin {
    /// The folder's name: the plugin's name, and the stem of its `.wasm`.
    name: String,
    /// The Cargo package to pass to `-p`.
    package: String,
    /// The file cargo writes: the lib target's name plus `.wasm`.
    artifact: String,
}

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tests/ has a parent: the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let dist = out_dir.join("wasm");

    for watched in ["plugins", "tests/plugins", "plugin-sdk", "wit"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    println!("cargo:rustc-env=EVHOST_PLUGIN_WASM_DIR={}", dist.display());

    check_target_installed();

    let mut plugins = discover(&workspace.join("plugins"));
    plugins.extend(discover(&workspace.join("tests/plugins")));
    if plugins.is_empty() {
        std::fs::create_dir_all(&dist).expect("create the wasm output folder");
        return;
    }

    let target_dir = workspace.join("target/plugin-wasm");
    let packages: Vec<&str> = plugins.iter().map(|p| p.package.as_str()).collect();
    cargo_build(&workspace, &target_dir, &packages, &[]);

    std::fs::create_dir_all(&dist).expect("create the wasm output folder");
    let release = |dir: &Path| dir.join(TARGET).join("release");
    for plugin in &plugins {
        copy(
            &release(&target_dir).join(&plugin.artifact),
            &dist.join(format!("{}.wasm", plugin.name)),
        );
    }

    // The second version of `echo`, for the hot-reload tests.
    if let Some(echo) = plugins.iter().find(|p| p.name == "echo") {
        let v2_dir = workspace.join("target/plugin-wasm-v2");
        cargo_build(
            &workspace,
            &v2_dir,
            &[echo.package.as_str()],
            &[("EVHOST_ECHO_VERSION", "2")],
        );
        copy(
            &release(&v2_dir).join(&echo.artifact),
            &dist.join("echo-v2.wasm"),
        );
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}

/// Fails with the fix when the standard library for wasm32-wasip2 is missing.
fn check_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .unwrap_or_else(|e| panic!("could not run `{rustc}`: {e}"));
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let installed = output.status.success()
        && !libdir.is_empty()
        && std::fs::read_dir(&libdir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
            })
            .unwrap_or(false);
    if !installed {
        panic!(
            "the Rust target {TARGET} is not installed (no standard library in {libdir:?}); \
             the end-to-end tests build their plugins for it: run `rustup target add {TARGET}`"
        );
    }
}

/// Every folder under `dir` with a `Cargo.toml`, as a plugin, sorted by name.
fn discover(dir: &Path) -> Vec<Plugin> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut plugins: Vec<Plugin> = entries
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| {
            let manifest_path = e.path().join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest_path)
                .unwrap_or_else(|err| panic!("read {}: {err}", manifest_path.display()));
            let manifest: toml::Table = text
                .parse()
                .unwrap_or_else(|err| panic!("parse {}: {err}", manifest_path.display()));
            let package = manifest
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or_else(|| panic!("{} has no package name", manifest_path.display()))
                .to_string();
            let lib = manifest
                .get("lib")
                .and_then(|l| l.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| package.clone());
            Plugin {
                name: e.file_name().to_string_lossy().into_owned(),
                package,
                artifact: format!("{}.wasm", lib.replace('-', "_")),
            }
        })
        .collect();
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    plugins
}

/// Runs the nested `cargo build`, clean of the outer build's environment.
fn cargo_build(workspace: &Path, target_dir: &Path, packages: &[&str], envs: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(target_dir);
    for package in packages {
        cmd.arg("-p").arg(package);
    }

    // What cargo sets for a build script, or for rustc, describes the outer
    // build (its target, profile, flags, jobserver, clippy driver): none of it
    // applies to the nested one. Cargo's own settings (registry, network,
    // terminal, home) stay.
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
        "CARGO_BUILD_JOBS",
    ];
    const REMOVE: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "RUSTDOC",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "MAKEFLAGS",
        "MFLAGS",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "EVHOST_ECHO_VERSION",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = (key.starts_with("CARGO_") && !KEEP.iter().any(|k| key.starts_with(k)))
            || key.starts_with("__CARGO")
            || REMOVE.contains(&key);
        if outer {
            cmd.env_remove(key);
        }
    }
    for (key, value) in envs {
        cmd.env(key, value);
    }
    // Build-script stdout is read by cargo as directives: keep the nested
    // build's output on stderr, which cargo shows when this script fails.
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());

    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run `{cargo}`: {e}"));
    if !status.success() {
        panic!(
            "building the plugins for {TARGET} failed ({status}): \
             `cargo build --release --target {TARGET} --target-dir {} -p {}`{}; see its output above",
            target_dir.display(),
            packages.join(" -p "),
            envs.iter()
                .map(|(k, v)| format!(" with {k}={v}"))
                .collect::<String>(),
        );
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| {
        panic!(
            "copy the built plugin {} to {}: {e}",
            from.display(),
            to.display()
        )
    });
}
