//! A shared-memory broadcast ring: one producer, many consumers, variable-length frames.
//!
//! - The ring lives in a [`RingRegion`]: a header, one cache line per consumer slot, and a
//!   power-of-two data region of frames (`docs/shm-layout.md`, [`layout`] for the bytes).
//! - Exactly one [`RingProducer`] per ring, by construction: only [`init`] (or
//!   [`RingRegion::new_in_memory`]) makes one. It writes frames with
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
//!   raises its slot's `parked` flag and sleeps on a [`Parker`] (an eventfd). The producer's
//!   [`publish_and_wake`](RingProducer::publish_and_wake) signals the [`Unparker`]s of parked
//!   consumers in its [`WakeTable`], and makes no syscall when nobody is parked.
//! - A lossy ring ([`RingRegion::new_in_memory_lossy`], [`init_with_mode`]) never refuses a
//!   frame: it overwrites the oldest. A consumer it laps returns [`ReadError::Lagged`] with the
//!   number of messages lost, then only whole, current frames (a seqlock-style check after each
//!   copy, against the producer's `reserve_pos`).
//! - Not yet: `drop_newest`/`disconnect`, the queue ring, a producer waiting for room.
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
//! - `ring`: [`init`], [`attach`], [`RingGeometry`].
//! - `producer`, `consumer`: [`RingProducer`], [`RingConsumer`].
//! - `error`: [`RingError`], [`PushError`], [`ReadError`].
//! - `segment`: [`Segment`], memfd segments (the mapping's `unsafe`).
//! - `fd_passing`: [`send_fds`], [`recv_fds`] (taking ownership of received fds is `unsafe`).
//! - `wake`: [`Parker`], [`Unparker`], [`WakeTable`] (the eventfd wake channel).
//! - `sync`: std or loom atomics.

mod consumer;
mod error;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod fd_passing;
pub mod layout;
mod producer;
#[allow(unsafe_code)]
mod region;
#[allow(unsafe_code)]
mod ring;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod segment;
mod sync;
mod wake;

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

pub use consumer::RingConsumer;
pub use error::{PushError, ReadError, RecvError, RingError};
#[cfg(not(loom))]
pub use fd_passing::{recv_fds, send_fds, MAX_FDS_PER_MESSAGE};
pub use layout::{max_payload, required_size, RING_MAGIC, RING_VERSION};
pub use producer::RingProducer;
pub use region::RingRegion;
pub use ring::{attach, init, init_with_mode, RingGeometry};
#[cfg(not(loom))]
pub use segment::{Segment, SegmentError, REQUIRED_SEALS};
pub use wake::{Parker, Unparker, WakeTable};
