//! Mycelium's storage layer: a segmented, crash-safe, append-only log of opaque records.
//!
//! - A [`Log`] is a directory of segment files; each record holds an offset (dense, from 0), a
//!   timestamp, and two opaque byte strings (a message's envelope and payload), checksummed
//!   with CRC32C. The byte layout is in `docs/storage-layout.md`.
//! - Opening recovers: a torn tail (a write cut short by a crash) is cut off; a bad record in
//!   a sealed segment is skipped by every reader and reported, never served.
//! - Durability is chosen per log ([`FsyncPolicy`]); retention deletes whole old segments.
//! - Everything read from disk is untrusted: no panic and no unbounded allocation on hostile
//!   files. No async runtime: the owner drives the log from its own tasks or threads.
//!
//! # Layout
//! - `record`: the record's encoding, pure.
//! - `cursor`: reading one segment's records forward, with resynchronisation.
//! - `index`: a segment's offset and time indexes.
//! - `segment`: one segment file: header, create, open with recovery, seal, delete.
//! - `log`: [`Log`]: open, append, roll, sync, retention.
//! - `reader`: [`LogReader`], [`StartAt`], [`Record`].
//! - `durability`: the durable offset and the interval syncer thread.
//! - `options`, `error`, `report`: [`LogOptions`], the errors, what recovery and reading found.
#![forbid(unsafe_code)]

mod cursor;
mod durability;
mod error;
mod index;
mod log;
mod options;
mod reader;
mod record;
mod report;
mod segment;

pub use error::{AppendError, OpenError, ReadError, RetentionError, SyncError};
pub use log::Log;
pub use options::{
    FsyncPolicy, LogOptions, Retention, MAX_BATCH_BYTES, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};
pub use reader::{LogReader, Record, StartAt};
pub use record::{MAX_RECORD_DATA, MAX_RECORD_LEN};
pub use report::{Corruption, RecoveryReport, RetentionReport, TornTail};
pub use segment::FORMAT_VERSION;

#[cfg(test)]
mod log_tests;
