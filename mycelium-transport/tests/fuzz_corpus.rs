//! Replays the committed fuzz corpus on stable, through exactly the checks the fuzz targets run,
//! so that every input the fuzzer found interesting (and every crash it ever found) is re-checked
//! by `cargo test`.
//!
//! - `fuzz-corpus/decode_frames/` and `fuzz-corpus/decode_split/` are the minimised corpora of the
//!   two targets in `fuzz/` (see `fuzz/README.md` for how to grow and minimise them).
//! - `fuzz-corpus/crashes/<target>/` holds reproducers of past failures, kept after the fix.
//! - Every input goes through both checks: both take arbitrary bytes.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

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

/// Runs both checks on every input, and fails naming every input that fails one.
fn replay(inputs: &[(PathBuf, Vec<u8>)]) {
    let mut failed = Vec::new();
    for (path, bytes) in inputs {
        for (name, check) in [
            ("decode_frames", checks::check_decode_frames as fn(&[u8])),
            ("decode_split", checks::check_decode_split),
        ] {
            let outcome = std::panic::catch_unwind(|| check(bytes));
            if outcome.is_err() {
                failed.push(format!("{name} on {}", path.display()));
            }
        }
    }
    assert!(failed.is_empty(), "corpus inputs failing: {failed:#?}");
}

#[test]
fn every_decode_frames_corpus_input_passes_the_checks() {
    let inputs = corpus("decode_frames");
    assert!(inputs.len() >= 20, "the decode_frames corpus is missing");
    replay(&inputs);
}

#[test]
fn every_decode_split_corpus_input_passes_the_checks() {
    let inputs = corpus("decode_split");
    assert!(inputs.len() >= 20, "the decode_split corpus is missing");
    replay(&inputs);
}

#[test]
fn every_past_crash_passes_the_checks() {
    let mut inputs = corpus("crashes/decode_frames");
    inputs.extend(corpus("crashes/decode_split"));
    replay(&inputs);
}
