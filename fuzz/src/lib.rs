//! Fuzzing support for Mycelium: the checks the fuzz targets run, and the seed corpus.
//!
//! - [`check_decode_frames`] and [`check_decode_split`] panic on any violation of the decoders'
//!   contract, [`check_handshake`] on any difference from how the broker and the client read a
//!   connection's first frame (see `checks.rs`).
//! - [`check_envelope`] reads arbitrary bytes as an enveloped message and writes it back.
//! - [`check_shm_segment`] reads arbitrary bytes as a shared-memory segment (`shm_checks.rs`).
//! - [`check_config`] loads arbitrary text as `broker.toml` and diffs what loads
//!   (`config_checks.rs`).
//! - [`check_storage_log`] opens arbitrary bytes as a log directory's segments and reads them
//!   (`storage_checks.rs`).
//! - The targets in `fuzz_targets/` only call them; [`seeds`] builds the seed corpus for
//!   `examples/seed_corpus.rs`.

mod checks;
mod config_checks;
pub mod seeds;
mod shm_checks;
mod storage_checks;

pub use checks::{
    check_decode_frames, check_decode_split, check_envelope, check_handshake, classify_first_frame,
    classify_welcome, FirstFrame, WelcomeAnswer, FUZZ_MAX_FRAME_LEN,
};
pub use config_checks::check_config;
pub use shm_checks::{check_shm_segment, SHM_MAX_SEGMENT};
pub use storage_checks::check_storage_log;
