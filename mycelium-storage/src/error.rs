//! One error type per operation, each keeping the I/O error that caused it.

use std::io;
use std::path::PathBuf;

/// Why [`Log::open`](crate::Log::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The options are not usable.
    #[error("invalid log options: {0}")]
    Options(&'static str),
    /// The directory could not be created or listed.
    #[error("cannot use log directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A segment could not be opened, read, created or repaired.
    #[error("cannot open segment {path}")]
    Segment {
        /// The segment's log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A segment has a format version this build does not read.
    #[error(
        "segment {path} has format version {version}; this build reads version {}",
        crate::FORMAT_VERSION
    )]
    UnsupportedVersion {
        /// The segment's log file.
        path: PathBuf,
        /// The version in its header.
        version: u16,
    },
    /// The interval syncer's thread could not be started.
    #[error("cannot start the fsync thread")]
    Syncer(#[source] io::Error),
}

/// Why an append failed. Nothing of the failed append stays in the log, and the log stays
/// usable.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The record or batch is larger than a record or a batch may be.
    #[error("{size} bytes exceed the limit of {max}")]
    TooLarge {
        /// The encoded size asked for.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Writing (or, under `FsyncPolicy::Always`, syncing) the records failed (`ENOSPC`, `EIO`...).
    #[error("cannot write to segment {path}")]
    Write {
        /// The segment's log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Sealing the full segment or creating the next one failed.
    #[error("cannot roll to a new segment in {path}")]
    Roll {
        /// The log's directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why reading failed (corrupt records are skipped and reported, not errors).
#[derive(Debug, thiserror::Error)]
#[error("cannot read segment {path}")]
pub struct ReadError {
    /// The segment's log file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// Why [`Log::sync`](crate::Log::sync) failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sync segment {path}")]
pub struct SyncError {
    /// The segment's log file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// Why retention stopped before deleting all it should have.
#[derive(Debug, thiserror::Error)]
#[error("cannot delete segment {path}")]
pub struct RetentionError {
    /// The segment's log file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}
