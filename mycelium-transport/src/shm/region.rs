//! [`RingRegion`]: the bytes a ring lives in, and the only code that touches them.
//!
//! - In the real build a region is a 64-byte-aligned span of memory: a heap allocation it owns
//!   ([`RingRegion::new_in_memory`]) or memory someone else maps (a [`Segment`](crate::shm::Segment)'s mapping, through
//!   `from_raw_owned`).
//!   The header and slots are read through `&`-references to `#[repr(C)]` structs of atomics;
//!   the data region is only ever touched through [`RingRegion::write_data`] and
//!   [`RingRegion::read_data`], which copy bytes at offsets the caller has bounds-checked (and
//!   which check them again), or, for lossy rings, through `write_data_racy`/`read_data_racy`,
//!   which copy through relaxed 8-byte atomic words because a reader may copy what the writer
//!   is overwriting.
//! - Under `--cfg loom` the same accessors are backed by ordinary Rust values: the header and
//!   slots are structs of loom atomics, and the data region is a slice of
//!   `loom::cell::UnsafeCell<u64>` words. Every data copy goes through `with`/`with_mut` on the
//!   words it covers, so loom reports any payload read or write that is not ordered by the
//!   ring's Release/Acquire pairs as a data race, not just as a wrong value. Frames start at
//!   8-byte boundaries and take whole 8-byte words, so a word is never shared by two frames.
//!   A loom region also holds the model of the futex its words are waited on (`wake.rs`).

#[cfg(not(loom))]
use super::error::RingError;
use super::layout::{ConsumerSlot, RingHeader};
#[cfg(not(loom))]
use super::layout::{CACHE_LINE, SLOTS_OFFSET, SLOT_SIZE};
#[cfg(loom)]
use super::sync::Ordering;

/// The memory a ring lives in. Knows nothing of the ring protocol: it hands out the header,
/// the slots and byte copies, and the ring modules decide who may touch what, and when.
pub struct RingRegion {
    #[cfg(not(loom))]
    /// Start of the region; 64-byte aligned, valid for reads and writes of `len` bytes for as
    /// long as this value lives.
    ptr: std::ptr::NonNull<u8>,
    #[cfg(not(loom))]
    /// `Some` when this value allocated the memory and frees it on drop.
    owned: Option<std::alloc::Layout>,
    #[cfg(not(loom))]
    /// Whatever keeps foreign memory valid (a segment's mapping), dropped with the region.
    _keep_alive: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    #[cfg(loom)]
    /// The header (loom atomics cannot be cast from bytes).
    header: Box<RingHeader>,
    #[cfg(loom)]
    /// The consumer slots.
    slots: Box<[ConsumerSlot]>,
    #[cfg(loom)]
    /// The data region as 8-byte words that loom tracks for races (lossless rings).
    words: Box<[loom::cell::UnsafeCell<u64>]>,
    #[cfg(loom)]
    /// The data region of a lossy ring, as Relaxed atomic words: there a reader may copy
    /// bytes the producer overwrites at the same time (and then discards the copy), which the
    /// seqlock fences order only for atomic accesses; a race on them would stop loom.
    atomic_words: Option<Box<[loom::sync::atomic::AtomicU64]>>,
    #[cfg(loom)]
    /// The model of the kernel's futex for every word of this region (`wake.rs`): a mutex for
    /// the atomic check-and-sleep, and a condvar to sleep on.
    futex: (super::sync::Mutex<()>, super::sync::Condvar),
    /// Size of the region in bytes.
    len: usize,
}

// SAFETY: a region is plain memory. Header and slot fields are atomics; the data region is
// only accessed through `write_data`/`read_data`, whose callers (the producer and consumers)
// order their accesses with the ring's Release/Acquire protocol. Nothing in it is tied to a
// thread.
unsafe impl Send for RingRegion {}
// SAFETY: as for `Send`: every shared access goes through atomics or through copies that the
// ring protocol keeps from racing.
unsafe impl Sync for RingRegion {}

impl RingRegion {
    /// Size of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes (never true for a region that holds a ring).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `offset .. offset + len` lie inside the data region of a ring with `data_start`.
    fn data_span_ok(&self, data_start: usize, offset: usize, len: usize) -> bool {
        data_start
            .checked_add(offset)
            .and_then(|start| start.checked_add(len))
            .is_some_and(|end| end <= self.len)
    }
}

#[cfg(not(loom))]
impl RingRegion {
    /// Allocates a zeroed, 64-byte-aligned region of `len` bytes on the heap.
    pub(crate) fn allocate(len: usize) -> Result<Self, RingError> {
        if len < SLOTS_OFFSET {
            return Err(RingError::BadGeometry(
                "region smaller than the ring header",
            ));
        }
        let layout = std::alloc::Layout::from_size_align(len, CACHE_LINE)
            .map_err(|_| RingError::BadGeometry("region too large to allocate"))?;
        // SAFETY: `layout` has a non-zero size (len >= SLOTS_OFFSET > 0).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw)
            .ok_or(RingError::BadGeometry("cannot allocate the region"))?;
        Ok(Self {
            ptr,
            owned: Some(layout),
            _keep_alive: None,
            len,
        })
    }

    /// Wraps `len` bytes at `ptr` that someone else owns (for example a shared mapping).
    ///
    /// # Safety
    ///
    /// - `ptr` is valid for reads and writes of `len` bytes for as long as the returned value
    ///   (and every `Arc` of it) lives;
    /// - no Rust reference to those bytes exists meanwhile; other processes may write to them
    ///   (the ring treats every byte as untrusted).
    ///
    /// # Errors
    ///
    /// [`RingError::BadGeometry`] if `ptr` is not 64-byte aligned or `len` is smaller than the
    /// ring header.
    #[cfg(test)]
    pub(crate) unsafe fn from_raw(
        ptr: std::ptr::NonNull<u8>,
        len: usize,
    ) -> Result<Self, RingError> {
        // SAFETY: the caller upholds this function's contract, which is `from_raw_owned`'s.
        unsafe { Self::from_raw_owned(ptr, len, None) }
    }

    /// As [`Self::from_raw`], but the region holds `owner` until it is dropped: a region over
    /// a mapping keeps the mapping alive for as long as any producer or consumer holds it.
    ///
    /// # Safety
    ///
    /// As for [`Self::from_raw`]; "as long as the returned value lives" may rely on `owner`.
    pub(crate) unsafe fn from_raw_owned(
        ptr: std::ptr::NonNull<u8>,
        len: usize,
        owner: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Result<Self, RingError> {
        if ptr.as_ptr().align_offset(CACHE_LINE) != 0 {
            return Err(RingError::BadGeometry("region is not 64-byte aligned"));
        }
        if len < SLOTS_OFFSET {
            return Err(RingError::BadGeometry(
                "region smaller than the ring header",
            ));
        }
        Ok(Self {
            ptr,
            owned: None,
            _keep_alive: owner,
            len,
        })
    }

    /// The header at offset 0.
    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: the region is 64-byte aligned and at least SLOTS_OFFSET (= size_of RingHeader)
        // bytes long (checked by both constructors), valid while `self` lives. RingHeader holds
        // only atomics, for which every bit pattern is valid, and interior mutability lets other
        // threads and processes write them while we hold `&`.
        unsafe { &*self.ptr.as_ptr().cast::<RingHeader>() }
    }

    /// Consumer slot `index`, or `None` if it lies outside the region.
    pub(crate) fn slot(&self, index: usize) -> Option<&ConsumerSlot> {
        let start = index.checked_mul(SLOT_SIZE)?.checked_add(SLOTS_OFFSET)?;
        if start.checked_add(SLOT_SIZE)? > self.len {
            return None;
        }
        // SAFETY: `start .. start + SLOT_SIZE` lies inside the region (checked above), `start`
        // is a multiple of 64 from a 64-aligned base, and ConsumerSlot holds only atomics (any
        // bit pattern valid, shared mutation allowed).
        Some(unsafe { &*self.ptr.as_ptr().add(start).cast::<ConsumerSlot>() })
    }

    /// Copies `src` into the data region at `offset` (relative to `data_start`).
    ///
    /// The caller must be the only writer of these bytes and ensure no reader can be reading
    /// them (the producer's lossless rule); that is a protocol obligation, not a memory-safety
    /// one for this call, which bounds-checks the span.
    ///
    /// # Panics
    ///
    /// If the span leaves the region: offsets come from validated geometry, so that is a bug
    /// in this crate, never a consequence of corrupt shared memory.
    #[inline]
    pub(crate) fn write_data(&self, data_start: usize, offset: usize, src: &[u8]) {
        assert!(
            self.data_span_ok(data_start, offset, src.len()),
            "ring write out of bounds"
        );
        // SAFETY: the destination span lies inside the region (asserted above) and `src` is a
        // Rust slice, which cannot overlap memory that no Rust reference points to.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.ptr.as_ptr().add(data_start + offset),
                src.len(),
            );
        }
    }

    /// The address of the data-region span `offset .. offset + len` (relative to
    /// `data_start`), for a producer lending the span out ([`FrameLoan`](super::FrameLoan)).
    ///
    /// # Panics
    ///
    /// If the span leaves the region (a bug in this crate, as for [`Self::write_data`]).
    pub(crate) fn data_ptr(
        &self,
        data_start: usize,
        offset: usize,
        len: usize,
    ) -> std::ptr::NonNull<u8> {
        assert!(
            self.data_span_ok(data_start, offset, len),
            "ring loan out of bounds"
        );
        // SAFETY: the span lies inside the region (asserted above), so the offset stays within
        // the allocation or mapping `ptr` points into; the result is not null because `ptr`
        // is not and the addition does not wrap.
        unsafe { self.ptr.add(data_start + offset) }
    }

    /// Copies `dst.len()` bytes from the data region at `offset` (relative to `data_start`).
    ///
    /// # Panics
    ///
    /// If the span leaves the region (a bug in this crate, as for [`Self::write_data`]).
    #[inline]
    pub(crate) fn read_data(&self, data_start: usize, offset: usize, dst: &mut [u8]) {
        assert!(
            self.data_span_ok(data_start, offset, dst.len()),
            "ring read out of bounds"
        );
        // SAFETY: the source span lies inside the region (asserted above); `dst` is an exclusive
        // Rust slice, so it cannot overlap the region. Another process may write these bytes
        // concurrently; we only copy them, and the caller validates the copy before using it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(data_start + offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Copies `src` into the data region at `offset` with relaxed 8-byte atomic stores,
    /// zero-filling the rest of the last word: for lossy rings, where a consumer may copy these
    /// bytes while they are overwritten (it discards such a copy, but the accesses must still
    /// not be a data race). `offset` is 8-aligned and frames are padded to 8 bytes, so the
    /// rounded-up span stays inside the frame.
    ///
    /// # Panics
    ///
    /// If `offset` is not 8-aligned or the rounded-up span leaves the region (a bug in this
    /// crate, as for [`Self::write_data`]).
    pub(crate) fn write_data_racy(&self, data_start: usize, offset: usize, src: &[u8]) {
        let words = src.len().div_ceil(8);
        assert!(
            offset % 8 == 0 && self.data_span_ok(data_start, offset, words * 8),
            "ring write out of bounds"
        );
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.atomic_word(data_start + offset + i * 8).store(
                u64::from_ne_bytes(word),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Copies `dst.len()` bytes out of the data region at `offset` with relaxed 8-byte atomic
    /// loads: the counterpart of [`Self::write_data_racy`]. The caller validates the copy
    /// afterwards (the lossy rule's post-copy check).
    ///
    /// # Panics
    ///
    /// As for [`Self::write_data_racy`].
    pub(crate) fn read_data_racy(&self, data_start: usize, offset: usize, dst: &mut [u8]) {
        let words = dst.len().div_ceil(8);
        assert!(
            offset % 8 == 0 && self.data_span_ok(data_start, offset, words * 8),
            "ring read out of bounds"
        );
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            let word = self
                .atomic_word(data_start + offset + i * 8)
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_ne_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// The 8 bytes at region offset `at` as an atomic word.
    fn atomic_word(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(at % 8 == 0 && at.checked_add(8).is_some_and(|end| end <= self.len));
        // SAFETY: `at .. at + 8` lies inside the region (asserted), which is valid while `self`
        // lives; the base is 64-aligned and `at` a multiple of 8, so the pointer is aligned for
        // u64. In this process, lossy data bytes are only accessed through these atomic words
        // (both `*_racy` copies), so no non-atomic access races with them; other processes
        // are outside Rust's memory model, and every copy is validated before use.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.as_ptr().add(at).cast::<u64>()) }
    }

    /// Overwrites raw region bytes, header included: the hostile peer of the tests.
    #[cfg(test)]
    pub(crate) fn scribble(&self, offset: usize, bytes: &[u8]) {
        assert!(offset
            .checked_add(bytes.len())
            .is_some_and(|end| end <= self.len));
        // SAFETY: the span lies inside the region (asserted above); tests call this between
        // ring operations on one thread, so nothing else accesses these bytes meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            );
        }
    }
}

#[cfg(not(loom))]
impl Drop for RingRegion {
    fn drop(&mut self) {
        if let Some(layout) = self.owned {
            // SAFETY: `ptr` came from `alloc_zeroed(layout)` in `allocate` and is freed only here.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

#[cfg(loom)]
impl RingRegion {
    /// A zeroed region for a ring of `capacity` bytes and `max_consumers` slots.
    pub(crate) fn allocate_loom(capacity: u64, max_consumers: u32, lossy: bool) -> Self {
        let words = (capacity as usize).div_ceil(8);
        Self {
            header: Box::new(RingHeader::zeroed()),
            slots: (0..max_consumers).map(|_| ConsumerSlot::zeroed()).collect(),
            words: (0..words).map(|_| loom::cell::UnsafeCell::new(0)).collect(),
            atomic_words: lossy.then(|| {
                (0..words)
                    .map(|_| loom::sync::atomic::AtomicU64::new(0))
                    .collect()
            }),
            futex: (super::sync::Mutex::new(()), super::sync::Condvar::new()),
            len: super::layout::required_size(capacity, max_consumers),
        }
    }

    /// The model futex of this region: its mutex and condvar (see `wake.rs`).
    pub(crate) fn futex(&self) -> (&super::sync::Mutex<()>, &super::sync::Condvar) {
        (&self.futex.0, &self.futex.1)
    }

    /// The header.
    pub(crate) fn header(&self) -> &RingHeader {
        &self.header
    }

    /// Consumer slot `index`, or `None` if there is no such slot.
    pub(crate) fn slot(&self, index: usize) -> Option<&ConsumerSlot> {
        self.slots.get(index)
    }

    /// Under loom a lossy region's data is already atomic words: see [`Self::write_data`].
    pub(crate) fn write_data_racy(&self, data_start: usize, offset: usize, src: &[u8]) {
        self.write_data(data_start, offset, src);
    }

    /// Under loom a lossy region's data is already atomic words: see [`Self::read_data`].
    pub(crate) fn read_data_racy(&self, data_start: usize, offset: usize, dst: &mut [u8]) {
        self.read_data(data_start, offset, dst);
    }

    /// Word-wise copy into the data region (see the module doc).
    pub(crate) fn write_data(&self, data_start: usize, offset: usize, src: &[u8]) {
        assert!(
            self.data_span_ok(data_start, offset, src.len()),
            "ring write out of bounds"
        );
        if let Some(words) = &self.atomic_words {
            // One store per word (a load first only for a partly written word): fewer atomic
            // operations keep the loom models small.
            let mut at = offset;
            for chunk in src.chunks(8) {
                let (word, lane) = (at / 8, at % 8);
                let take = chunk.len().min(8 - lane);
                let mut bytes = if take == 8 {
                    [0; 8]
                } else {
                    // SYNC POINT: Relaxed; only the producer writes data words.
                    words[word].load(Ordering::Relaxed).to_ne_bytes()
                };
                bytes[lane..lane + take].copy_from_slice(&chunk[..take]);
                // SYNC POINT: Relaxed; the lossy producer's Release fence after its
                // `reserve_pos` store orders these stores (see `RingProducer::try_push`).
                words[word].store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
                at += take;
                if take < chunk.len() {
                    // Unaligned spans are not used by the ring; handle them bytewise.
                    self.write_data(data_start, at, &chunk[take..]);
                    at += chunk.len() - take;
                }
            }
            return;
        }
        for (i, byte) in src.iter().enumerate() {
            let at = offset + i;
            self.words[at / 8].with_mut(|word| {
                // SAFETY: loom checks that this write is not concurrent with any other access
                // to the word (that is the point of the model); the pointer is valid.
                let word = unsafe { &mut *word };
                let mut bytes = word.to_ne_bytes();
                bytes[at % 8] = *byte;
                *word = u64::from_ne_bytes(bytes);
            });
        }
    }

    /// Word-wise copy out of the data region (see the module doc).
    pub(crate) fn read_data(&self, data_start: usize, offset: usize, dst: &mut [u8]) {
        assert!(
            self.data_span_ok(data_start, offset, dst.len()),
            "ring read out of bounds"
        );
        if let Some(words) = &self.atomic_words {
            let mut loaded: Option<(usize, [u8; 8])> = None;
            for (i, byte) in dst.iter_mut().enumerate() {
                let at = offset + i;
                let bytes = match loaded {
                    Some((word, bytes)) if word == at / 8 => bytes,
                    _ => {
                        // SYNC POINT: Relaxed; the consumer's Acquire fence before its re-check
                        // of `reserve_pos` orders these loads (see `RingConsumer::lapped`).
                        let bytes = words[at / 8].load(Ordering::Relaxed).to_ne_bytes();
                        loaded = Some((at / 8, bytes));
                        bytes
                    }
                };
                *byte = bytes[at % 8];
            }
            return;
        }
        for (i, byte) in dst.iter_mut().enumerate() {
            let at = offset + i;
            // SAFETY: loom checks that this read is not concurrent with a write to the word;
            // the pointer is valid.
            *byte = self.words[at / 8].with(|word| unsafe { *word }.to_ne_bytes()[at % 8]);
        }
    }
}
