//! A bounded, coalescing queue of encoded frames travelling toward one peer.
//!
//! - Producers (publishers' connection tasks, the topic logic, control replies) append whole
//!   frames under one short lock; the single drainer (a connection's writer task, or an in-process
//!   subscription) takes *everything* queued in one swap, so one `write` carries every frame
//!   that arrived since the last one: writes are coalesced per wake-up, never per message.
//! - Messages are plain (`Deliver` toward clients, `Publish` toward the broker) or carry an
//!   envelope (`DeliverEnvelope`, `PublishEnvelope`: [`Outbox::append_items`]); both kinds
//!   count alike, per topic, toward the limits and for `drop_oldest`.
//! - Message frames count against a limit chosen by the caller (the topic's `buffer_size`, capped
//!   by the connection's `channel_capacity`) and against [`OUTBOX_MAX_BYTES`]; control frames do
//!   not, so a reply can always be queued.
//! - Under `backpressure = "drop_oldest"` the topic makes room with [`Outbox::evict_oldest`]:
//!   the oldest message frames of one topic that the drainer has not taken yet are cut out
//!   (control frames and other topics' frames stay, in order), and a `Lagged` notice of how
//!   many takes their place, just before the first message of the topic still queued.
//! - Messages lost for the peer after everything queued of their topic (`drop_newest`, the
//!   tail of a `drop_oldest` batch, losses before the broker could route them) are noted with
//!   [`Outbox::report_lost`] and told at once: a `Lagged` notice goes out just before the
//!   topic's next message, or at the end of the drainer's next take, whichever comes first, so
//!   a loss at the end of a burst is reported without waiting for a message that may never
//!   come. Notices of one gap are merged, so a stopped peer costs one notice per gap, not one
//!   per drop.
//! - Closing is one-way. [`Outbox::close`] lets the drainer flush what is queued and then stop;
//!   [`Outbox::abort`] discards it. Appends after either are refused, so a dead peer costs
//!   publishers nothing.
//! - The drainer is woken only on the empty → non-empty transition, and blocked producers only
//!   when they have asked for space: no wake-up per message.
//! - Buffers keep their capacity while busy (refilling fresh memory costs more than the
//!   copying), and give it back when the connection is idle: [`Outbox::release_idle`] frees
//!   the queue's empty buffer and asks the drainer of [`Outbox::flush_until_closed`] to free
//!   its own, so an idle peer holds a few hundred bytes here, not the largest burst it saw.
//! - A publisher's batch read off its socket ([`FrameRun`]) is queued by reference, not copied,
//!   when it is large: every subscriber's outbox holds a slice of the same buffer, and the
//!   writer hands the slices to one vectored `write`. Small runs are copied (cheaper than a
//!   refcount and an iovec), and an outbox holds at most [`MAX_SHARED_SEGMENTS`] shared slices,
//!   which bounds the read buffers a slow subscriber can keep alive.
//!
//! # Layout
//! - [`Outbox`] (`outbox.rs`): the queue itself, its appends, takes, waits and closing.
//! - `state.rs`: what the lock guards, and the room rule.
//! - `evict.rs`: cutting a topic's oldest frames out of the queue (`drop_oldest`).
//! - [`FrameRun`] (`frame_run.rs`): a publisher's batch of frames, shared rather than copied.
//! - [`Drained`] (`drained.rs`): what the drainer took, written with vectored writes.
//! - [`ByteBudget`] (`budget.rs`): the broker-wide count of queued bytes.

mod budget;
mod drained;
mod evict;
mod frame_run;
#[allow(clippy::module_inception)]
mod outbox;
mod state;
#[cfg(test)]
mod test_support;

pub use budget::ByteBudget;
pub use drained::Drained;
pub use frame_run::{FrameRun, MAX_SHARED_SEGMENTS, SHARE_MIN_BYTES};
pub use outbox::{Appended, HoldGuard, Outbox, OUTBOX_MAX_BYTES};
