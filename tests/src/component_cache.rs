//! Test plugins built by a tool other than cargo (componentize-py,
//! componentize-js). Each build takes tens of seconds, so a language's set is
//! built once per test process, in parallel ([`build_all`]), and each
//! component is kept by the digest of its inputs
//! (`evhost_nats_process::component_cache`, which the benchmark shares): a
//! later run with the same inputs reuses it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A language's set of built components, made once per process.
pub type Built = OnceLock<Result<HashMap<String, PathBuf>, String>>;

/// The component `name` of `built`, building the whole set with `build`
/// on the first call; fails the test with the build's error, or when the set
/// has no `name` (`language` names the set).
pub fn lookup(
    built: &'static Built,
    build: fn() -> Result<HashMap<String, PathBuf>, String>,
    name: &str,
    language: &str,
) -> PathBuf {
    let built = built
        .get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    built
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no {language} plugin named {name}"))
}

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the workspace root")
        .to_path_buf()
}

/// Runs `build_one` for every build of `builds`, each on a thread of its
/// own; the components by name, or the first failure.
pub fn build_all<B: Sync + 'static>(
    builds: &'static [B],
    name: fn(&B) -> &'static str,
    build_one: fn(&Path, &B) -> Result<PathBuf, String>,
) -> Result<HashMap<String, PathBuf>, String> {
    let root = workspace();
    let threads: Vec<_> = builds
        .iter()
        .map(|b| {
            let root = root.clone();
            std::thread::spawn(move || build_one(&root, b).map(|p| (name(b).to_string(), p)))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a build thread"))
        .collect()
}
