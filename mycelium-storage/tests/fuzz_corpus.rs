//! Replays the committed fuzz corpus of the `storage_log` target on stable, through exactly the
//! checks the target runs (`fuzz/src/storage_checks.rs`), so that `cargo test` re-checks every
//! input the fuzzer found interesting and every crash it ever found.
//!
//! - `fuzz-corpus/storage_log/` is the target's corpus (see `fuzz/README.md` for how to grow it);
//!   `fuzz-corpus/crashes/storage_log/` holds reproducers of past failures.

#[path = "../../fuzz/src/storage_checks.rs"]
mod storage_checks;

use std::path::{Path, PathBuf};

fn corpus(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("reading the corpus directory").path();
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs the check on every input, and fails naming every input that fails it.
fn replay(inputs: &[(PathBuf, Vec<u8>)]) {
    let failed: Vec<String> = inputs
        .iter()
        .filter(|(_, bytes)| {
            std::panic::catch_unwind(|| storage_checks::check_storage_log(bytes)).is_err()
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "corpus inputs failing: {failed:#?}");
}

#[test]
fn every_storage_log_corpus_input_passes_the_checks() {
    let inputs = corpus("storage_log");
    assert!(inputs.len() >= 5, "the storage_log corpus is missing");
    replay(&inputs);
}

#[test]
fn every_past_storage_log_crash_passes_the_checks() {
    replay(&corpus("crashes/storage_log"));
}
