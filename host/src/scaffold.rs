//! `evhost new NAME --lang rust|python|js`: a handler project to start from.
//!
//! This module owns the project templates (files under `host/templates/`,
//! embedded in the binary) and how a new project reaches evhost's SDK:
//!
//! - Rust: `evhost-sdk = { path = "SDK/plugin-sdk" }` in `Cargo.toml`, the
//!   git form in a comment; the repository's `Cargo.lock` is copied in, so
//!   the crate resolves to the versions evhost is tested with;
//! - Python: a copy of `SDK/python-sdk/src/evhost_sdk` beside `app.py` (on
//!   the path `evhost build` gives componentize-py);
//! - JavaScript: a copy of `SDK/js-sdk/src` as `evhost-sdk/` beside `app.js`
//!   (componentize-js sees only the folder it runs in).
//!
//! SDK is the evhost repository: `--sdk`, else `EVHOST_SDK_PATH`, else a
//! folder above the running binary ([`crate::plugin_build::find_sdk_root`]).
//! Every template handles `greetings.requested` (`{"name":"world"}`) and
//! publishes `greetings.greeted` (`{"message":"hello, world"}`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::plugin_build::{find_sdk_root, is_sdk_root};

/// The subject every template handles.
pub const SAMPLE_SUBJECT: &str = "greetings.requested";
/// Its sample payload (also written as `events/greetings.requested.json`).
pub const SAMPLE_PAYLOAD: &str = "{\"name\":\"world\"}\n";

/// A language `evhost new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// The template's files: (path in the project, text with `{{...}}`).
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => &[
                ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
                ("src/lib.rs", include_str!("../templates/rust/lib.rs")),
                (".gitignore", include_str!("../templates/rust/gitignore")),
            ],
            Lang::Python => &[
                ("app.py", include_str!("../templates/python/app.py")),
                (
                    "pyproject.toml",
                    include_str!("../templates/python/pyproject.toml"),
                ),
                (".gitignore", include_str!("../templates/python/gitignore")),
            ],
            Lang::Js => &[
                ("app.js", include_str!("../templates/js/app.js")),
                ("package.json", include_str!("../templates/js/package.json")),
                (".gitignore", include_str!("../templates/js/gitignore")),
            ],
        }
    }
}

/// Common to every language.
const COMMON: &[(&str, &str)] = &[
    ("README.md", include_str!("../templates/common/README.md")),
    (
        "events/greetings.requested.json",
        include_str!("../templates/common/greetings.requested.json"),
    ),
];

/// Whether `name` can name a plugin, a crate and a package: lowercase ASCII
/// letters, digits, `-` and `_`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

/// `template` with `{{key}}` replaced by each value.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// Writes project `name` in `parent/name`; returns its folder.
pub fn new_project(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!(
            "{name:?} is not a plugin name: use lowercase letters, digits, - and _, starting with a letter"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = match find_sdk_root(sdk) {
        Some(root) if is_sdk_root(&root) => root
            .canonicalize()
            .with_context(|| format!("resolve {}", root.display()))?,
        Some(root) => bail!(
            "{} is not the evhost repository (no plugin-sdk/Cargo.toml and wit/handler.wit): pass --sdk PATH/TO/evhost",
            root.display()
        ),
        None if lang == Lang::Rust => bail!(
            "cannot find evhost's SDK: pass --sdk PATH/TO/evhost (a clone of the repository) or set EVHOST_SDK_PATH (or depend on it by git: evhost-sdk = {{ git = \"https://github.com/OWNER/evhost\", branch = \"main\" }})"
        ),
        None => bail!(
            "cannot find evhost's SDK: pass --sdk PATH/TO/evhost (a clone of the repository) or set EVHOST_SDK_PATH"
        ),
    };
    let sdk_dependency = format!(
        "evhost-sdk = {{ path = {:?} }}\n# or: evhost-sdk = {{ git = \"https://github.com/OWNER/evhost\", branch = \"main\" }}",
        sdk.join("plugin-sdk").to_string_lossy()
    );
    let vars = [
        ("name", name),
        ("lang", lang.label()),
        ("sdk_dependency", sdk_dependency.as_str()),
    ];
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let written = (|| -> anyhow::Result<()> {
        for (path, template) in lang.files().iter().chain(COMMON) {
            let file = dir.join(path);
            if let Some(folder) = file.parent() {
                std::fs::create_dir_all(folder)?;
            }
            std::fs::write(&file, render(template, &vars))
                .with_context(|| format!("write {}", file.display()))?;
        }
        match lang {
            Lang::Rust => {
                // The versions evhost is tested with (cargo drops the rest).
                let lock = sdk.join("Cargo.lock");
                if lock.is_file() {
                    std::fs::copy(&lock, dir.join("Cargo.lock"))?;
                }
            }
            Lang::Python => copy_tree(
                &sdk.join("python-sdk/src/evhost_sdk"),
                &dir.join("evhost_sdk"),
            )?,
            Lang::Js => copy_tree(&sdk.join("js-sdk/src"), &dir.join("evhost-sdk"))?,
        }
        Ok(())
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(err);
    }
    Ok(dir)
}

/// Copies the files of `from` into `to`, recursively, leaving out caches.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else {
            std::fs::copy(&path, to.join(&name))
                .with_context(|| format!("copy {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("greeter"));
        assert!(valid_name("my-handler_2"));
        for bad in ["", "2x", "Greeter", "a b", "../x", "-x"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn render_replaces_every_key() {
        assert_eq!(
            render(
                "{{name}}/{{lang}}/{{name}}",
                &[("name", "a"), ("lang", "b")]
            ),
            "a/b/a"
        );
    }

    #[test]
    fn every_template_names_the_sample_subject() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let handler = lang.files()[0].1;
            let handler = if lang == Lang::Rust {
                lang.files()[1].1
            } else {
                handler
            };
            assert!(handler.contains(SAMPLE_SUBJECT), "{lang:?}");
        }
        assert_eq!(COMMON[1].1, SAMPLE_PAYLOAD);
    }
}
