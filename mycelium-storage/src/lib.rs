//! Mycelium's storage layer: a segmented, crash-safe, append-only log of opaque records.
#![forbid(unsafe_code)]

mod record;

pub use record::{MAX_RECORD_DATA, MAX_RECORD_LEN};
