//! Replays the fuzz corpus (`host/fuzz/corpus/<target>/`) through the same
//! entry points the fuzz targets call (`evhost::fuzzing`), on the stable
//! toolchain, as an ordinary test: every input the fuzzer kept, and every
//! crash added to the corpus once fixed, keeps passing the targets'
//! assertions. A missing or empty corpus folder is a failure, so the test
//! never passes on nothing.

use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// The inputs of one target's corpus, sorted by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "no corpus for fuzz target {target} at {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus of fuzz target {target} ({}) is empty",
        dir.display()
    );
    files
}

#[test]
fn every_corpus_input_passes_its_target() {
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (target, run) in evhost::fuzzing::TARGETS {
        for path in inputs(target) {
            let data = std::fs::read(&path).expect("a readable corpus file");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(path.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {replayed} corpus inputs fail their target:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn every_corpus_folder_belongs_to_a_target() {
    let targets: Vec<&str> = evhost::fuzzing::TARGETS.iter().map(|(t, _)| *t).collect();
    let mut folders: Vec<String> = std::fs::read_dir(corpus_root())
        .expect("the fuzz corpus folder")
        .map(|entry| entry.expect("a corpus folder").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut expected: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(folders, expected, "corpus folders and fuzz targets differ");
}

#[test]
fn every_fuzz_target_calls_its_entry_point() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for (target, _) in evhost::fuzzing::TARGETS {
        let path = dir.join(format!("{target}.rs"));
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            source.contains(&format!("evhost::fuzzing::{target}(data)")),
            "{} does not call evhost::fuzzing::{target}",
            path.display()
        );
    }
}
