//! Builds every plugin of the workspace (`plugins/*` and `tests/plugins/*`) for
//! `wasm32-wasip2`, so the end-to-end tests run real components.
//!
//! The nested `cargo build --release --target wasm32-wasip2`, with a target
//! directory of its own (`<workspace>/target/plugin-wasm`) and clean of the
//! outer build's environment, is `evhost_nats_process::wasm_build`'s, which
//! the benchmark (`host/benches/overhead.rs`) runs too.
//!
//! It then copies each plugin to `$OUT_DIR/wasm/NAME.wasm`, NAME being the
//! plugin's folder name, and exports that folder as `EVHOST_PLUGIN_WASM_DIR`.
//! The `echo` test plugin is built a second time with `EVHOST_ECHO_VERSION=2`
//! (in `<workspace>/target/plugin-wasm-v2`) and copied as `echo-v2.wasm`, so
//! hot-reload tests have two versions whose outputs differ.

use std::path::{Path, PathBuf};

use evhost_nats_process::wasm_build;

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

    if let Err(e) = wasm_build::check_target_installed() {
        panic!("{e}");
    }

    let mut plugins = discover(&workspace.join("plugins"));
    plugins.extend(discover(&workspace.join("tests/plugins")));
    if plugins.is_empty() {
        std::fs::create_dir_all(&dist).expect("create the wasm output folder");
        return;
    }

    let packages: Vec<&str> = plugins.iter().map(|p| p.package.as_str()).collect();
    let release = cargo_build(
        &workspace,
        &workspace.join("target/plugin-wasm"),
        &packages,
        &[],
    );

    std::fs::create_dir_all(&dist).expect("create the wasm output folder");
    for plugin in &plugins {
        copy(
            &release.join(&plugin.artifact),
            &dist.join(format!("{}.wasm", plugin.name)),
        );
    }

    // The second version of `echo`, for the hot-reload tests.
    if let Some(echo) = plugins.iter().find(|p| p.name == "echo") {
        let v2_release = cargo_build(
            &workspace,
            &workspace.join("target/plugin-wasm-v2"),
            &[echo.package.as_str()],
            &[("EVHOST_ECHO_VERSION", "2")],
        );
        copy(&v2_release.join(&echo.artifact), &dist.join("echo-v2.wasm"));
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
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

/// Runs the nested `cargo build` (evhost-nats-process's, clean of the outer
/// build's environment) and returns the folder the `.wasm` files are in.
fn cargo_build(
    workspace: &Path,
    target_dir: &Path,
    packages: &[&str],
    envs: &[(&str, &str)],
) -> PathBuf {
    wasm_build::build(workspace, target_dir, packages, envs).unwrap_or_else(|e| panic!("{e}"))
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
