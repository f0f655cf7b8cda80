//! [`Segment`]: a sealed memfd mapped shared read-write, the memory a ring lives in between
//! processes (`docs/shm-layout.md`, "Segments").
//!
//! - The creator makes the memfd, sizes it and seals its size (`F_SEAL_SHRINK | F_SEAL_GROW |
//!   F_SEAL_SEAL`) before anyone else can see it. A receiver ([`Segment::from_fd`]) maps an fd
//!   only if those seals are present and its size is within what it expects: a peer that could
//!   shrink the file would make our accesses to the vanished pages raise SIGBUS.
//! - The mapping is a [`memmap2::MmapRaw`]: a raw pointer and a length, never a `&[u8]` or
//!   `&mut [u8]`. Other processes write this memory at any time, which a Rust reference to it
//!   would forbid; [`RingRegion`] only ever touches it through atomics and bounds-checked copies.
//! - Regions hold an `Arc` of the mapping, so the memory stays mapped for as long as any
//!   producer or consumer built on it lives, whether or not the `Segment` is still around.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use super::error::RingError;
use super::layout::required_size;
use super::producer::RingProducer;
use super::region::RingRegion;
use super::ring::{init_with_mode, RingGeometry};

/// The seals every segment carries: its size can never change, and no one can add or remove
/// seals (in particular not `F_SEAL_WRITE`, which would make our writes fail).
pub const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// Why a segment could not be created or accepted.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Sys {
        /// The call that failed (`memfd_create`, `ftruncate`, `fcntl`, `fstat`, `mmap`).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The segment is empty or larger than the receiver accepts.
    #[error("segment of {len} bytes, expected 1..={max}")]
    BadSize {
        /// Size of the file, from `fstat`.
        len: u64,
        /// Largest size the receiver accepts.
        max: usize,
    },
    /// The fd lacks some of [`REQUIRED_SEALS`] (or is not a memfd: then it has no seals).
    #[error("segment not sealed: has seals {found:#x}, needs {required:#x}")]
    NotSealed {
        /// The seals present.
        found: i32,
        /// [`REQUIRED_SEALS`].
        required: i32,
    },
    /// The ring in the segment could not be created or wrapped.
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// Wraps an errno from nix with the name of the failing call.
fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> SegmentError {
    move |errno| SegmentError::Sys {
        op,
        source: io::Error::from(errno),
    }
}

/// A sealed memfd and its shared read-write mapping.
pub struct Segment {
    /// The memfd; sent to peers with [`send_fds`](super::send_fds).
    file: File,
    /// The mapping of all `len` bytes; shared with every region built on it.
    map: Arc<MmapRaw>,
    /// Size of the file and of the mapping, in bytes.
    len: usize,
}

impl Segment {
    /// Creates a zero-filled memfd of `len` bytes named `name` (shown in `/proc/*/fd` as
    /// `memfd:name`), seals its size and maps it.
    ///
    /// # Errors
    ///
    /// [`SegmentError::BadSize`] for `len` 0, [`SegmentError::Sys`] if a system call fails
    /// (including a `name` with a NUL byte).
    pub fn create(name: &str, len: usize) -> Result<Self, SegmentError> {
        if len == 0 {
            return Err(SegmentError::BadSize { len: 0, max: 0 });
        }
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(sys("memfd_create"))?;
        let size = i64::try_from(len).map_err(|_| SegmentError::BadSize {
            len: len as u64,
            max: i64::MAX as usize,
        })?;
        nix::unistd::ftruncate(&fd, size).map_err(sys("ftruncate"))?;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(REQUIRED_SEALS)).map_err(sys("fcntl(F_ADD_SEALS)"))?;
        Self::map(File::from(fd), len)
    }

    /// Creates a segment sized for a ring of `capacity` bytes and `max_consumers` slots,
    /// initialises the ring in it and returns the segment (to send to peers) with the ring's
    /// only producer.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Ring`] for a geometry out of range, or as for [`Segment::create`].
    pub fn create_ring(
        name: &str,
        capacity: u64,
        max_consumers: u32,
    ) -> Result<(Self, RingProducer), SegmentError> {
        Self::create_ring_with_mode(name, capacity, max_consumers, false)
    }

    /// [`create_ring`](Self::create_ring) for a lossless (`lossy = false`) or lossy
    /// (overwrite) ring.
    ///
    /// # Errors
    ///
    /// As for [`create_ring`](Self::create_ring).
    pub fn create_ring_with_mode(
        name: &str,
        capacity: u64,
        max_consumers: u32,
        lossy: bool,
    ) -> Result<(Self, RingProducer), SegmentError> {
        RingGeometry::validate(capacity, max_consumers, lossy, usize::MAX)?;
        let segment = Self::create(name, required_size(capacity, max_consumers))?;
        let region = segment.ring_region()?;
        // SAFETY: the memfd was created just above and its fd has not left this function, so
        // no other process or thread can reach the memory: the producer returned is the only
        // one, and no consumer is attached.
        let producer = unsafe { init_with_mode(&region, capacity, max_consumers, lossy)? };
        Ok((segment, producer))
    }

    /// Accepts a segment fd received from a peer: checks that it carries [`REQUIRED_SEALS`] and
    /// that its size is between 1 and `max_len` bytes, then maps it.
    ///
    /// The seals are checked first: once they are present the size cannot change, so the size
    /// read afterwards is the size for good.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotSealed`], [`SegmentError::BadSize`], or [`SegmentError::Sys`] (for
    /// example an fd that is not open read-write).
    pub fn from_fd(fd: OwnedFd, max_len: usize) -> Result<Self, SegmentError> {
        let found = match fcntl(&fd, FcntlArg::F_GET_SEALS) {
            Ok(bits) => bits,
            // Files that do not support sealing report EINVAL: they have no seals at all.
            Err(nix::errno::Errno::EINVAL) => 0,
            Err(errno) => return Err(sys("fcntl(F_GET_SEALS)")(errno)),
        };
        if !SealFlag::from_bits_truncate(found).contains(REQUIRED_SEALS) {
            return Err(SegmentError::NotSealed {
                found,
                required: REQUIRED_SEALS.bits(),
            });
        }
        let file = File::from(fd);
        let size = file
            .metadata()
            .map_err(|source| SegmentError::Sys {
                op: "fstat",
                source,
            })?
            .len();
        let len = usize::try_from(size)
            .ok()
            .filter(|&len| len > 0 && len <= max_len)
            .ok_or(SegmentError::BadSize {
                len: size,
                max: max_len,
            })?;
        Self::map(file, len)
    }

    /// Maps the first `len` bytes of `file` shared read-write.
    fn map(file: File, len: usize) -> Result<Self, SegmentError> {
        // MAP_POPULATE: every page is allocated (creator) or mapped (peers) now, not by a page
        // fault on the first frame that touches it: those faults (a few microseconds each,
        // one per page until the ring has wrapped once) were the whole p99 of a ping-pong.
        // It also makes the segment's memory cost what its size says from the start.
        let map = MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(&file)
            .map_err(|source| SegmentError::Sys { op: "mmap", source })?;
        Ok(Self {
            file,
            map: Arc::new(map),
            len,
        })
    }

    /// The memfd, to send to a peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Size of the segment in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment has no bytes (never true: creation and `from_fd` refuse size 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A [`RingRegion`] over the whole mapping, to [`attach`](super::attach) to or
    /// [`join`](super::RingConsumer::join). The region keeps the mapping alive, so it may
    /// outlive this `Segment`. Each call builds a new region over the same memory.
    ///
    /// # Errors
    ///
    /// [`RingError::BadGeometry`] if the segment is smaller than a ring header.
    pub fn ring_region(&self) -> Result<Arc<RingRegion>, RingError> {
        let ptr = NonNull::new(self.map.as_mut_ptr())
            .ok_or(RingError::BadGeometry("segment mapped at null"))?;
        let owner: Arc<dyn std::any::Any + Send + Sync> = self.map.clone();
        // SAFETY: `ptr` is the start of a shared mapping of `self.len` bytes (the mapping's
        // length, set in `map`), page aligned, so 64-byte aligned. The mapping is unmapped only
        // when the last `Arc<MmapRaw>` drops, and the region holds one (`owner`), so the bytes
        // stay valid for as long as the region lives. The file cannot shrink under the mapping
        // (F_SEAL_SHRINK, checked or set before mapping), so no access within `len` can fault.
        // No Rust reference to the bytes exists: `MmapRaw` hands out only a raw pointer, and
        // every region over it accesses the bytes through atomics and raw copies.
        let region = unsafe { RingRegion::from_raw_owned(ptr, self.len, Some(owner))? };
        Ok(Arc::new(region))
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("fd", &self.file)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
