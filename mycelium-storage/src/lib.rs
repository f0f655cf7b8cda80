//! Mycelium's storage layer: a segmented, crash-safe, append-only log of opaque records.
#![forbid(unsafe_code)]
#![allow(dead_code)]

mod cursor;
mod index;
mod record;
mod report;
mod segment;

pub use record::{MAX_RECORD_DATA, MAX_RECORD_LEN};
pub use report::{Corruption, RecoveryReport, RetentionReport, TornTail};
pub use segment::FORMAT_VERSION;
