//! The plugins the tests run: [`wasm`], the path of one the build script
//! built, and [`PluginDir`], a temporary plugins folder for one host.

use std::path::{Path, PathBuf};

/// The path of a plugin built by the build script: `NAME.wasm`, NAME being the
/// plugin's folder under `plugins/` or `tests/plugins/`; `echo-v2` is the
/// second build of `echo` (whose replies say `echo-version: 2`).
pub fn wasm(name: &str) -> PathBuf {
    let path = Path::new(env!("EVHOST_PLUGIN_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "plugin {name} was not built: {} is missing (the build script of evhost-tests \
         builds every folder with a Cargo.toml under plugins/ and tests/plugins/)",
        path.display()
    );
    path
}

/// A temporary plugins folder for one host, with a staging folder beside it
/// (on the same file system) for atomic replacements.
pub struct PluginDir {
    root: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    /// An empty plugins folder.
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("create a temporary folder");
        std::fs::create_dir(root.path().join("plugins")).expect("create plugins/");
        std::fs::create_dir(root.path().join("staging")).expect("create staging/");
        PluginDir { root }
    }

    /// The plugins folder, to pass to `evhost run --plugins`.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// The path of `NAME.wasm` in the folder.
    pub fn wasm_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.wasm"))
    }

    /// The path of `NAME.toml` in the folder.
    pub fn manifest_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.toml"))
    }

    /// Copies the built plugin `name` in as `NAME.wasm`.
    pub fn add(&self, name: &str) -> &Self {
        self.add_as(name, &wasm(name))
    }

    /// Copies the built plugin `name` in, with `NAME.toml` holding `manifest`.
    pub fn add_with_manifest(&self, name: &str, manifest: &str) -> &Self {
        self.write_manifest(name, manifest);
        self.add(name)
    }

    /// Copies the file `wasm` in as `NAME.wasm`.
    pub fn add_as(&self, name: &str, wasm: &Path) -> &Self {
        std::fs::copy(wasm, self.wasm_path(name))
            .unwrap_or_else(|e| panic!("copy {} into the plugins folder: {e}", wasm.display()));
        self
    }

    /// Writes `NAME.toml` atomically (write beside, then rename).
    pub fn write_manifest(&self, name: &str, manifest: &str) {
        self.write_atomic(&format!("{name}.toml"), manifest.as_bytes());
    }

    /// Writes `file_name` in the folder atomically: the bytes go to the staging
    /// folder first and are renamed into place, so the host sees one change.
    pub fn write_atomic(&self, file_name: &str, bytes: &[u8]) {
        let staged = self.root.path().join("staging").join(file_name);
        std::fs::write(&staged, bytes).expect("write to staging/");
        std::fs::rename(&staged, self.path().join(file_name))
            .unwrap_or_else(|e| panic!("rename {file_name} into the plugins folder: {e}"));
    }

    /// Overwrites `NAME.wasm` in place with a plain copy of `src` (truncate,
    /// then write), as `cp` would: the host may see the file half written.
    pub fn copy_over(&self, name: &str, src: &Path) {
        std::fs::copy(src, self.wasm_path(name))
            .unwrap_or_else(|e| panic!("copy {} over {name}.wasm: {e}", src.display()));
    }

    /// Deletes `NAME.wasm`.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.wasm_path(name))
            .unwrap_or_else(|e| panic!("remove {name}.wasm: {e}"));
    }
}

/// `text` with `from` replaced by `to`; panics if `text` does not contain
/// `from`, so a test editing a fixture cannot silently edit nothing when the
/// fixture changes.
pub fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the fixture no longer contains {from:?}, so this edit would do nothing:\n{text}"
    );
    text.replace(from, to)
}
