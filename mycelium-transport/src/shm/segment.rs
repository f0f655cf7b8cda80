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

/// A zero-filled memfd of `len` bytes named `name` (shown in `/proc/*/fd` as `memfd:name`),
/// close-on-exec, with `seals` added once it has its size.
fn sized_memfd(name: &str, len: usize, seals: SealFlag) -> Result<OwnedFd, SegmentError> {
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
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(sys("fcntl(F_ADD_SEALS)"))?;
    Ok(fd)
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
        let fd = sized_memfd(name, len, REQUIRED_SEALS)?;
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

/// The seals of a **payload segment** once written (`docs/shm-layout.md`, Payload segments):
/// [`REQUIRED_SEALS`] plus `F_SEAL_WRITE`. With `F_SEAL_WRITE` nobody (its creator included)
/// can write the memory any more, by `write(2)` or through any mapping, so a receiver may
/// read it as a plain `&[u8]`.
pub const PAYLOAD_SEALS: SealFlag = REQUIRED_SEALS.union(SealFlag::F_SEAL_WRITE);

/// A payload segment being written: a memfd of exactly the message's length, mapped
/// read-write in this process only (its fd has not left the process). Written in place with
/// [`as_mut_slice`](Self::as_mut_slice), then [`seal`](Self::seal)ed before its fd is sent.
pub struct PayloadWriter {
    file: File,
    /// The only mapping of the memfd, and the only writable one ever.
    map: MmapRaw,
    len: usize,
}

impl PayloadWriter {
    /// Creates a memfd of `len` bytes named `name`, seals its size (but not yet its
    /// contents) and maps it read-write.
    ///
    /// # Errors
    ///
    /// [`SegmentError::BadSize`] for `len` 0; [`SegmentError::Sys`] if a system call fails.
    pub fn create(name: &str, len: usize) -> Result<Self, SegmentError> {
        let fd = sized_memfd(name, len, SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW)?;
        let file = File::from(fd);
        let map = MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(&file)
            .map_err(|source| SegmentError::Sys { op: "mmap", source })?;
        Ok(Self { file, map, len })
    }

    /// The segment's bytes, to write the message into (zero-filled at creation).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping covers `len` bytes of a memfd whose size is sealed (it cannot
        // shrink under us, so no access faults), and it lives as long as `self`. The fd has
        // not left this process and this is the memfd's only mapping, so no one else writes
        // the bytes; the slice borrows `self` mutably, so it is the only reference to them.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.len) }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment has no bytes (never: `create` refuses 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unmaps the segment and adds `F_SEAL_WRITE | F_SEAL_SEAL` ([`PAYLOAD_SEALS`]): from now
    /// on its contents are fixed for everyone. Returns the memfd, ready to send.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Sys`] if the seals cannot be added.
    pub fn seal(self) -> Result<SealedPayload, SegmentError> {
        let PayloadWriter { file, map, len } = self;
        // F_SEAL_WRITE is refused while a writable shared mapping exists: unmap first.
        drop(map);
        fcntl(
            &file,
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL),
        )
        .map_err(sys("fcntl(F_ADD_SEALS)"))?;
        Ok(SealedPayload { file, len })
    }
}

impl std::fmt::Debug for PayloadWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadWriter")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A written and sealed payload segment ([`PAYLOAD_SEALS`]): its fd, to send to peers. The
/// memory is freed when the last process holding the fd or a mapping of it lets go.
#[derive(Debug)]
pub struct SealedPayload {
    file: File,
    len: usize,
}

impl SealedPayload {
    /// The memfd, to send.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment has no bytes (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, owned.
    pub fn into_fd(self) -> OwnedFd {
        OwnedFd::from(self.file)
    }
}

/// Checks a payload segment fd received from a peer without mapping it: it carries
/// [`PAYLOAD_SEALS`] and its size is at least `len` (the message's length, 1 or more) and at
/// most `max_len`. Returns the size.
///
/// # Errors
///
/// [`SegmentError::NotSealed`], [`SegmentError::BadSize`] (also for `len` 0 or above
/// `max_len`), [`SegmentError::Sys`].
pub fn check_payload_fd(
    fd: BorrowedFd<'_>,
    len: usize,
    max_len: usize,
) -> Result<u64, SegmentError> {
    let found = match fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(bits) => bits,
        Err(nix::errno::Errno::EINVAL) => 0,
        Err(errno) => return Err(sys("fcntl(F_GET_SEALS)")(errno)),
    };
    if !SealFlag::from_bits_truncate(found).contains(PAYLOAD_SEALS) {
        return Err(SegmentError::NotSealed {
            found,
            required: PAYLOAD_SEALS.bits(),
        });
    }
    let stat = nix::sys::stat::fstat(fd).map_err(sys("fstat"))?;
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if len == 0 || len > max_len || size < len as u64 || size > max_len as u64 {
        return Err(SegmentError::BadSize {
            len: size,
            max: max_len,
        });
    }
    Ok(size)
}

/// A received payload segment, checked and mapped read-only: the message is
/// [`as_slice`](Self::as_slice), zero copy. Unmapped (and its fd closed) on drop.
pub struct PayloadView {
    map: memmap2::Mmap,
    len: usize,
}

impl PayloadView {
    /// Checks `fd` as [`check_payload_fd`] does (sealed against writes and resizing, size
    /// between `len` and `max_len`), then maps its first `len` bytes read-only. The fd may be
    /// closed afterwards: the mapping keeps the memory.
    ///
    /// # Errors
    ///
    /// As for [`check_payload_fd`]; [`SegmentError::Sys`] if the mapping fails.
    pub fn open(fd: BorrowedFd<'_>, len: usize, max_len: usize) -> Result<Self, SegmentError> {
        check_payload_fd(fd, len, max_len)?;
        // SAFETY: `check_payload_fd` found F_SEAL_WRITE, F_SEAL_SHRINK and F_SEAL_GROW, which
        // can never be removed: no process can write these bytes (no writable mapping can
        // exist, `write(2)` fails) and the file cannot shrink, so the `len <= size` bytes
        // mapped here stay valid and unchanged for as long as the mapping lives, which is
        // what `Mmap`'s `&[u8]` needs.
        let map = unsafe { MmapOptions::new().len(len).populate().map(&fd) }
            .map_err(|source| SegmentError::Sys { op: "mmap", source })?;
        Ok(Self { map, len })
    }

    /// The message.
    pub fn as_slice(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl std::fmt::Debug for PayloadView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadView")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! Payload segments on their own (`docs/shm-layout.md`, Payload segments): what the
    //! writer makes, and what a reader's [`PayloadView::open`] accepts and refuses.

    use super::*;

    /// Bytes of test payload `len`: every byte depends on its offset, so a shift or a torn
    /// copy shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    /// The seals `fd` carries.
    fn seals(fd: BorrowedFd<'_>) -> SealFlag {
        SealFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GET_SEALS).expect("F_GET_SEALS"))
    }

    /// A memfd of `len` bytes (allowing seals), filled with `pattern`, carrying `seals` only.
    fn memfd_with(len: usize, seals: SealFlag) -> OwnedFd {
        let fd = memfd_create(
            "payload-test",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .expect("memfd");
        nix::unistd::ftruncate(&fd, len as i64).expect("ftruncate");
        let written = nix::unistd::write(&fd, &pattern(len)).expect("write");
        assert_eq!(written, len);
        if !seals.is_empty() {
            fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).expect("seal");
        }
        fd
    }

    /// A written and sealed payload segment of `len` bytes holding `pattern(len)`.
    fn sealed(len: usize) -> SealedPayload {
        let mut writer = PayloadWriter::create("payload-test", len).expect("create");
        assert_eq!(writer.len(), len);
        assert!(writer.as_mut_slice().iter().all(|&b| b == 0), "zero-filled");
        writer.as_mut_slice().copy_from_slice(&pattern(len));
        writer.seal().expect("seal")
    }

    fn refused_as_not_sealed(result: Result<PayloadView, SegmentError>, what: &str) {
        match result {
            Err(SegmentError::NotSealed { required, .. }) => {
                assert_eq!(required, PAYLOAD_SEALS.bits(), "{what}");
            }
            other => panic!("{what}: expected NotSealed, got {other:?}"),
        }
    }

    fn refused_as_bad_size(result: Result<PayloadView, SegmentError>, what: &str) {
        assert!(
            matches!(result, Err(SegmentError::BadSize { .. })),
            "{what}: expected BadSize, got {result:?}"
        );
    }

    #[test]
    fn a_payload_round_trips_through_create_write_seal_and_open() {
        // Several sizes: below a page, exactly pages, not a multiple of anything.
        for len in [1, 100, 4096, 3 * 4096, 3 * 4096 + 5, 1 << 20] {
            let payload = sealed(len);
            assert_eq!(payload.len(), len);
            assert_eq!(
                seals(payload.fd()),
                PAYLOAD_SEALS,
                "{len}: every seal, no more"
            );
            // Sealed against writes: not even its creator can change it any more.
            assert_eq!(
                nix::unistd::write(payload.fd(), b"x"),
                Err(nix::errno::Errno::EPERM),
                "{len}: write(2) after the seal"
            );
            let fd = payload.into_fd();
            let view = PayloadView::open(fd.as_fd(), len, 1 << 20).expect("open");
            // The mapping keeps the memory once the fd is closed.
            drop(fd);
            assert_eq!(view.as_slice().len(), len);
            assert!(view.as_slice() == pattern(len), "{len}: content");
        }
    }

    #[test]
    fn open_refuses_a_segment_without_every_payload_seal() {
        let len = 8192;
        // Not sealed at all (the hostile test's "unsealed memfd").
        let fd = memfd_with(len, SealFlag::empty());
        refused_as_not_sealed(PayloadView::open(fd.as_fd(), len, len), "unsealed");
        // Sized for good but still writable: the sender could change the message under us.
        let fd = memfd_with(len, REQUIRED_SEALS);
        refused_as_not_sealed(
            PayloadView::open(fd.as_fd(), len, len),
            "missing F_SEAL_WRITE",
        );
        // Each seal of the four matters: without F_SEAL_SHRINK the file could shrink under
        // the mapping (SIGBUS), without F_SEAL_GROW or F_SEAL_SEAL seals could still change.
        for missing in [
            SealFlag::F_SEAL_SHRINK,
            SealFlag::F_SEAL_GROW,
            SealFlag::F_SEAL_SEAL,
            SealFlag::F_SEAL_WRITE,
        ] {
            let fd = memfd_with(len, PAYLOAD_SEALS.difference(missing));
            refused_as_not_sealed(
                PayloadView::open(fd.as_fd(), len, len),
                &format!("missing {missing:?}"),
            );
        }
        // Not a memfd: a pipe has no seals at all (F_GET_SEALS fails with EINVAL).
        let (read_end, _write_end) = nix::unistd::pipe().expect("pipe");
        refused_as_not_sealed(PayloadView::open(read_end.as_fd(), 16, len), "a pipe");
        // The same bytes with every seal: accepted (so the refusals above are the seals').
        let fd = memfd_with(len, PAYLOAD_SEALS);
        let view = PayloadView::open(fd.as_fd(), len, len).expect("fully sealed");
        assert!(view.as_slice() == pattern(len));
    }

    #[test]
    fn open_refuses_a_segment_shorter_than_claimed_or_a_length_beyond_the_limit() {
        let small = sealed(4096);
        let fd = small.fd();
        // Shorter than the reference says: reading the claimed length would fault past EOF.
        refused_as_bad_size(PayloadView::open(fd, 4097, 1 << 20), "one byte short");
        refused_as_bad_size(PayloadView::open(fd, 1 << 20, 1 << 20), "far too short");
        // A length above what the reader allows, however the file is sized.
        refused_as_bad_size(PayloadView::open(fd, 4096, 4095), "length over the limit");
        let big = sealed(3 * 4096);
        refused_as_bad_size(
            PayloadView::open(big.fd(), 100, 2 * 4096),
            "a file larger than the limit, even for a short length",
        );
        // An empty message is never sent in a segment.
        refused_as_bad_size(PayloadView::open(fd, 0, 1 << 20), "length 0");
        // At the limit exactly: accepted.
        let view = PayloadView::open(fd, 4096, 4096).expect("at the limit");
        assert_eq!(view.as_slice().len(), 4096);
        // `create` refuses an empty segment.
        assert!(matches!(
            PayloadWriter::create("payload-test", 0),
            Err(SegmentError::BadSize { .. })
        ));
    }

    #[test]
    fn the_view_covers_only_the_checked_length() {
        // A segment longer than the message it carries (allowed: size >= len). The view
        // shows the message's bytes only, and maps no more than them (rounded up to a page
        // by the kernel, never the rest of the file), so nothing past `len` is reachable.
        let size = 5 * 4096 + 123;
        let payload = sealed(size);
        for len in [1, 4095, 4096, 4097, 3 * 4096 + 7, size] {
            let view = PayloadView::open(payload.fd(), len, 1 << 20).expect("open");
            assert_eq!(view.as_slice().len(), len, "slice of {len}");
            assert_eq!(view.map.len(), len, "mapping of {len}");
            assert!(view.as_slice() == &pattern(size)[..len], "content of {len}");
        }
    }
}
