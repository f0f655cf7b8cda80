//! Replays the committed fuzz corpus of the `config` target on stable, through exactly the checks
//! the target runs (`fuzz/src/config_checks.rs`), so that `cargo test` re-checks every input the
//! fuzzer found interesting and every crash it ever found.
//!
//! - `fuzz-corpus/config/` is the target's minimised corpus (see `fuzz/README.md` for how to grow
//!   and minimise it); `fuzz-corpus/crashes/config/` holds reproducers of past failures.
//! - An input is UTF-8 text, split at a NUL byte into a running and a wanted config; inputs that
//!   are not UTF-8 are skipped by the check itself.

#[path = "../../fuzz/src/config_checks.rs"]
mod config_checks;

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
            std::panic::catch_unwind(|| config_checks::check_config(bytes)).is_err()
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "corpus inputs failing: {failed:#?}");
}

#[test]
fn every_config_corpus_input_passes_the_checks() {
    let inputs = corpus("config");
    assert!(inputs.len() >= 20, "the config corpus is missing");
    replay(&inputs);
}

#[test]
fn every_past_config_crash_passes_the_checks() {
    replay(&corpus("crashes/config"));
}
