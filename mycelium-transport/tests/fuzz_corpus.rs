//! Replays the committed fuzz corpus on stable, through exactly the checks the fuzz targets run,
//! so that every input the fuzzer found interesting (and every crash it ever found) is re-checked
//! by `cargo test`.
//!
//! - `fuzz-corpus/decode_frames/`, `decode_split/`, `envelope/`, `handshake/` and
//!   `shm_segment/` are the
//!   minimised corpora of those targets in `fuzz/` (see `fuzz/README.md` for how to grow and
//!   minimise them).
//! - `fuzz-corpus/crashes/<target>/` holds reproducers of past failures, kept after the fix.
//! - Every wire input (the first three corpora) goes through the three wire checks: all take
//!   arbitrary bytes. The `shm_segment` inputs go through their own check.

#[path = "../../fuzz/src/checks.rs"]
mod checks;
#[cfg(not(loom))]
#[path = "../../fuzz/src/shm_checks.rs"]
mod shm_checks;

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

/// A fuzz target's check, with the target's name.
type Check = (&'static str, fn(&[u8]));

/// The checks every wire input goes through.
const WIRE_CHECKS: [Check; 3] = [
    ("decode_frames", checks::check_decode_frames),
    ("decode_split", checks::check_decode_split),
    ("handshake", checks::check_handshake),
];

/// Runs every check on every input, and fails naming every input that fails one.
fn replay(inputs: &[(PathBuf, Vec<u8>)], checks: &[Check]) {
    let mut failed = Vec::new();
    for (path, bytes) in inputs {
        for (name, check) in checks {
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
    replay(&inputs, &WIRE_CHECKS);
}

#[test]
fn every_envelope_corpus_input_passes_the_check() {
    let inputs = corpus("envelope");
    assert!(inputs.len() >= 10, "the envelope corpus is missing");
    replay(&inputs, &[("envelope", checks::check_envelope)]);
    // The wire inputs hold enveloped frames too: their bodies after the topic id.
    let wire = corpus("decode_frames");
    let bodies: Vec<(PathBuf, Vec<u8>)> = wire
        .iter()
        .filter(|(_, bytes)| bytes.len() > 10)
        .map(|(path, bytes)| (path.clone(), bytes[10..].to_vec()))
        .collect();
    replay(&bodies, &[("envelope", checks::check_envelope)]);
}

#[test]
fn every_decode_split_corpus_input_passes_the_checks() {
    let inputs = corpus("decode_split");
    assert!(inputs.len() >= 20, "the decode_split corpus is missing");
    replay(&inputs, &WIRE_CHECKS);
}

#[test]
fn every_handshake_corpus_input_passes_the_checks() {
    let inputs = corpus("handshake");
    assert!(inputs.len() >= 20, "the handshake corpus is missing");
    replay(&inputs, &WIRE_CHECKS);
}

#[cfg(not(loom))]
#[test]
fn every_shm_segment_corpus_input_passes_the_checks() {
    let inputs = corpus("shm_segment");
    assert!(inputs.len() >= 10, "the shm_segment corpus is missing");
    replay(&inputs, &[("shm_segment", shm_checks::check_shm_segment)]);
}

#[test]
fn every_past_crash_passes_the_checks() {
    let mut inputs = corpus("crashes/decode_frames");
    inputs.extend(corpus("crashes/decode_split"));
    inputs.extend(corpus("crashes/handshake"));
    replay(&inputs, &WIRE_CHECKS);
    #[cfg(not(loom))]
    replay(
        &corpus("crashes/shm_segment"),
        &[("shm_segment", shm_checks::check_shm_segment)],
    );
}
