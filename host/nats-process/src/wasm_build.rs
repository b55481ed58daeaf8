//! Building plugin packages of this workspace for `wasm32-wasip2`, as the
//! end-to-end tests' build script and the benchmark do: a nested `cargo
//! build --release --target wasm32-wasip2` with a target folder of its own
//! (like wasmtime's and Spin's test-program crates), after clearing what the
//! outer cargo set for its build script, or for the benchmark it runs, which
//! would otherwise leak into the nested build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target's standard library is not installed.
    #[error(
        "the Rust target {TARGET} is not installed (no standard library in {libdir:?}); \
         plugins are built for it: run `rustup target add {TARGET}`"
    )]
    TargetMissing {
        /// Where rustc looked.
        libdir: String,
    },
    /// A tool could not be run.
    #[error("could not run `{tool}`: {error}")]
    Run {
        /// The tool (`rustc`, `cargo`).
        tool: String,
        /// Why.
        error: std::io::Error,
    },
    /// The build ran and failed; its output went to stderr.
    #[error(
        "building the plugins for {TARGET} failed ({status}): `{command}`; see its output above"
    )]
    Failed {
        /// How cargo ended.
        status: std::process::ExitStatus,
        /// The command, as a shell would take it.
        command: String,
    },
}

/// Fails with the fix when the standard library for [`TARGET`] is missing
/// (`rustc` is `$RUSTC`, else `rustc`).
pub fn check_target_installed() -> Result<(), Error> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|error| Error::Run {
            tool: rustc.clone(),
            error,
        })?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let installed = output.status.success()
        && !libdir.is_empty()
        && std::fs::read_dir(&libdir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        });
    if installed {
        Ok(())
    } else {
        Err(Error::TargetMissing { libdir })
    }
}

/// Runs `cargo build --release --target wasm32-wasip2 --target-dir
/// TARGET_DIR -p PACKAGE...` in `workspace` with `envs` set, and returns the
/// folder the `.wasm` files are in (`TARGET_DIR/wasm32-wasip2/release`).
/// Cargo's output goes to stderr (a build script's stdout is cargo's).
pub fn build(
    workspace: &Path,
    target_dir: &Path,
    packages: &[&str],
    envs: &[(&str, &str)],
) -> Result<PathBuf, Error> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    for package in packages {
        cmd.arg("-p").arg(package);
    }
    for key in outer_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok())) {
        cmd.env_remove(key);
    }
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    let status = cmd.status().map_err(|error| Error::Run {
        tool: cargo.clone(),
        error,
    })?;
    if !status.success() {
        let command = format!(
            "{}cargo build --release --target {TARGET} --target-dir {} -p {}",
            envs.iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
            target_dir.display(),
            packages.join(" -p "),
        );
        return Err(Error::Failed { status, command });
    }
    Ok(target_dir.join(TARGET).join("release"))
}

/// Of the environment's variable names, those that describe the outer build
/// (its target, profile, flags, jobserver, clippy driver, the package being
/// built or benchmarked): none of it applies to the nested one. Cargo's own
/// settings (home, registry, network, terminal, jobs) stay.
fn outer_variables(names: impl Iterator<Item = String>) -> Vec<String> {
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
    names
        .filter(|key| {
            (key.starts_with("CARGO_") && !KEEP.iter().any(|k| key.starts_with(k)))
                || key.starts_with("__CARGO")
                || REMOVE.contains(&key.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outer_build_is_cleared_and_cargo_settings_stay() {
        let names = [
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MANIFEST_DIR",
            "CARGO_TARGET_DIR",
            "__CARGO_FIX_PLZ",
            "RUSTFLAGS",
            "OUT_DIR",
            "EVHOST_ECHO_VERSION",
            "CARGO_HOME",
            "CARGO_NET_OFFLINE",
            "CARGO_TERM_COLOR",
            "CARGO_BUILD_JOBS",
            "PATH",
            "HOME",
        ];
        let removed = outer_variables(names.iter().map(|n| n.to_string()));
        assert_eq!(
            removed,
            [
                "CARGO_ENCODED_RUSTFLAGS",
                "CARGO_MANIFEST_DIR",
                "CARGO_TARGET_DIR",
                "__CARGO_FIX_PLZ",
                "RUSTFLAGS",
                "OUT_DIR",
                "EVHOST_ECHO_VERSION",
            ]
        );
    }
}
