//! Fuzzing support for the Mycelium wire codec: the checks the fuzz targets run, and the seed
//! corpus.
//!
//! - [`check_decode_frames`] and [`check_decode_split`] panic on any violation of the decoders'
//!   contract (see `checks.rs`); the targets in `fuzz_targets/` only call them.
//! - [`seeds`] builds valid encoded frames of every kind for `examples/seed_corpus.rs`.

mod checks;
pub mod seeds;

pub use checks::{check_decode_frames, check_decode_split, FUZZ_MAX_FRAME_LEN};
