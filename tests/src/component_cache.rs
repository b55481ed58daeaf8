//! Test plugins built by a tool other than cargo (componentize-py,
//! componentize-js). Each build takes tens of seconds, so a language's set is
//! built once per test process, in parallel ([`build_all`]), and each
//! component is kept in `<workspace>/target/<kind>/<digest>/NAME.wasm`, the
//! digest covering every input ([`digest`]): a later run with the same
//! inputs reuses it ([`cached`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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

/// A digest of `salt` (the tool's version, the build's name and options)
/// and of every file under `dirs` (relative to `root`: their paths and
/// contents, in sorted order), leaving out folders named in `skip`.
pub fn digest(root: &Path, salt: &[&str], dirs: &[&str], skip: &[&str]) -> Result<String, String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut hasher);
    for dir in dirs {
        hash_tree(root, &root.join(dir), skip, &mut hasher)?;
    }
    Ok(format!("{:016x}", hasher.finish()))
}

fn hash_tree(
    root: &Path,
    dir: &Path,
    skip: &[&str],
    hasher: &mut impl Hasher,
) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
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
                .map_err(|e| format!("read {}: {e}", path.display()))?
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
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let out_dir = root.join("target").join(kind).join(digest);
    let out = out_dir.join(format!("{name}.wasm"));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let partial = out_dir.join(format!("{name}.wasm.{}.partial", std::process::id()));
    if let Err(e) = build(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    Ok(out)
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

/// Runs `command`, a component build of plugin `name`, and says why when it
/// fails (`tool` and `install` name the builder and how to get it).
pub fn run_build(
    mut command: std::process::Command,
    name: &str,
    tool: &str,
    install: &str,
) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("could not run {tool} for {name}: {e}; {install}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the plugin {name} with {tool} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}
