//! A shared-memory broadcast ring: one producer, many consumers, variable-length frames.
//!
//! - The ring lives in a [`RingRegion`]: a header, one cache line per consumer slot, and a
//!   power-of-two data region of frames (`docs/shm-layout.md`, [`layout`] for the bytes).
//! - Exactly one [`RingProducer`] per ring, by construction: only creating the ring
//!   ([`Segment::create_ring`], [`RingRegion::new_in_memory`]) makes one. It writes frames with
//!   [`try_push`](RingProducer::try_push) and makes them visible with one Release store in
//!   [`publish`](RingProducer::publish).
//! - Each [`RingConsumer`] holds a slot, starts at the position published when it joined,
//!   and sees every frame from there on, in order (in a lossless ring the producer refuses with
//!   [`PushError::Full`] rather than overwrite a frame an active consumer has not read).
//! - Everything read from the region is untrusted: another process may scribble over it. A
//!   corrupt ring makes a consumer return [`ReadError::Corrupt`]; it never makes it panic, read
//!   out of bounds or loop forever.
//! - Between processes the region is a [`Segment`]: a sealed memfd, mapped shared, whose fd
//!   travels over a Unix socket with [`send_fds`]/[`recv_fds`] (`SCM_RIGHTS`).
//! - A consumer that finds nothing can wait: [`RingConsumer::recv_blocking`] spins briefly, then
//!   raises its slot's `parked` word and sleeps on it as a futex. The producer's
//!   [`publish_and_wake`](RingProducer::publish_and_wake) wakes the parked consumers' words,
//!   and when the header's `parked_consumers` count is 0 it costs one fence and one load. The
//!   futexes are shared (not `_PRIVATE`), so processes that only share the segment's mapping
//!   wake each other. [`wait_any`] sleeps on the words of several rings at once
//!   (`futex_waitv`).
//! - A lossless producer can wait for room: [`RingProducer::push_blocking`] sleeps on the
//!   header's `producer_parked` futex, and a consumer that reads (or leaves) wakes it.
//! - A third party (the broker) can [`reserve_slot`] a consumer slot for a subscriber process,
//!   which takes it over with [`RingConsumer::adopt`]; [`release_slot`] frees the slot of a
//!   holder that died.
//! - A lossy ring ([`RingRegion::new_in_memory_lossy`], [`Segment::create_ring_with_mode`]) never refuses a
//!   frame: it overwrites the oldest. A consumer it laps returns [`ReadError::Lagged`] with the
//!   number of messages lost, then the oldest frame still whole (the producer's `oldest_pos`)
//!   and every later one, never a torn one (a seqlock-style check after each copy, against the
//!   producer's `reserve_pos`).
//! - A producer can lend the next frame's bytes ([`RingProducer::try_loan`], [`FrameLoan`])
//!   to write a message in place; [`queue`] addresses frames to one consumer (queue topics).
//! - A lossless ring's creator may ask its producer to drop rather than wait
//!   ([`set_drop_when_full`]): [`RingProducer::try_push_or_drop`] drops a frame that does not
//!   fit and counts it in the header, where a third party reads it ([`producer_dropped`]).
//! - A message larger than a ring's frames travels in a payload segment of its own
//!   ([`PayloadWriter`], sealed against writes, [`PayloadView`] on the receiving side), and
//!   the ring carries a reference frame naming it ([`RingProducer::try_push_marked`],
//!   [`reference`](mod@reference)).
//! - A frame's `len` word carries [`FrameFlags`]: a reference frame, and a message that
//!   begins with an envelope ([`crate::envelope`]); the marked reads report them, and plain
//!   frames are byte for byte what they were before the envelope bit.
//!
//! ```
//! use mycelium_transport::shm::{RingConsumer, RingRegion};
//!
//! let (region, mut producer) = RingRegion::new_in_memory(4096, 4)?;
//! let mut consumer = RingConsumer::join(&region)?;
//! producer.try_push(b"hello")?;
//! producer.try_push(b"world")?;
//! producer.publish();
//! let mut buf = Vec::new();
//! assert!(consumer.try_recv_into(&mut buf)?);
//! assert_eq!(buf, b"hello");
//! assert!(consumer.try_recv_into(&mut buf)?);
//! assert_eq!(buf, b"world");
//! assert!(!consumer.try_recv_into(&mut buf)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`layout`]: the byte layout, as `#[repr(C)]` structs and offset constants.
//! - `region`: [`RingRegion`], the memory and the only byte-level `unsafe`.
//! - `ring`: creating a ring's header, [`attach`], [`RingGeometry`].
//! - `producer`: [`RingProducer`]; `consumer/`: [`RingConsumer`], one file per concept (reads,
//!   frame location, gap counting, lossy reads, parking, third-party slots).
//! - `error`: [`RingError`], [`PushError`], [`ReadError`].
//! - `segment`: [`Segment`], memfd segments, and payload segments (the mappings' `unsafe`).
//! - [`reference`](mod@reference): the body of a reference frame.
//! - `frame_flags`: [`FrameFlags`], the flag bits of a frame's `len` word.
//! - `fd_passing`: [`send_fds`], [`recv_fds`] (taking ownership of received fds is `unsafe`).
//! - `control`: [`ControlReader`], the frames and fds of a shared-memory control socket, read
//!   the same way by the client and the broker.
//! - `segment_table`: [`SegmentTable`], the payload segments a ring reader was handed and has
//!   not read yet, claimed by reference frames.
//! - `wake`: the futex wait and wake calls (the only `unsafe` of the wake protocol).
//! - `sync`: std or loom atomics.

#[allow(unsafe_code)]
mod barrier;
mod consumer;
#[cfg(not(loom))]
mod control;
mod error;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod fd_passing;
mod frame_flags;
pub mod layout;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod loan;
mod observe;
mod producer;
pub mod queue;
pub mod reference;
#[allow(unsafe_code)]
mod region;
#[allow(unsafe_code)]
mod ring;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod segment;
mod segment_table;
mod sync;
#[allow(unsafe_code)]
mod wake;

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

#[cfg(not(loom))]
pub use consumer::wait_any;
pub use consumer::{release_slot, reserve_slot, wake_consumer, RingConsumer};
#[cfg(not(loom))]
pub use control::{ControlReader, Received, CONTROL_READ_CHUNK};
pub use error::{PushError, ReadError, RecvError, RingError};
#[cfg(not(loom))]
pub use fd_passing::{recv_fds, send_fds, send_fds_partial, MAX_FDS_PER_MESSAGE};
pub use frame_flags::FrameFlags;
pub use layout::max_payload;
#[cfg(not(loom))]
pub use loan::FrameLoan;
pub use observe::{producer_dropped, producer_waiting, slot_backlog, slot_positions};
pub use producer::RingProducer;
pub use region::RingRegion;
pub use ring::{attach, set_drop_when_full, RingGeometry};
#[cfg(test)]
pub(crate) use ring::{init, init_with_mode};
#[cfg(not(loom))]
pub use segment::{
    check_payload_fd, PayloadView, PayloadWriter, SealedPayload, Segment, SegmentError,
    PAYLOAD_SEALS, REQUIRED_SEALS,
};
pub use segment_table::{Claimed, SegmentTable};
