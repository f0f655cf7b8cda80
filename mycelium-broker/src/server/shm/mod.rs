//! The broker's side of shared memory: [`ShmRings`], which rings each topic has and who holds
//! which slot in them, and the threads and tasks that keep them moving.
//!
//! - The broker creates every ring (a sealed memfd, `docs/shm-layout.md`) and stays on the
//!   control path only: it never reads or writes a frame of a publisher's ring.
//! - A shared-memory publisher gets a fresh ring of its own per topic: one writer per ring, so
//!   a publisher killed mid-write leaves at most an unpublished frame nobody will read.
//! - A shared-memory subscriber gets a consumer slot in every publisher ring of its topic, plus
//!   one in the topic's relay ring. The broker writes into the relay ring every message that
//!   socket publishers publish on the topic (the topic's [`Relay`]), so shared-memory
//!   subscribers hear them too; and it raises the notice in a subscriber's relay slot when it
//!   has news for it. On a queue topic the relay ring carries queue frames instead: the topic
//!   deals each socket publisher's message to one consumer, and a shared-memory consumer's
//!   share is written into the relay ring addressed to its slot (the topic's [`QueueRelay`]);
//!   see `relay.rs` for who gets what and what survives a consumer's death. Slots are
//!   reserved by the broker *before* a ring's fd leaves it, so a subscriber never misses a
//!   frame published after it attached, even one published before it has mapped the ring.
//! - When a publisher leaves, its subscribers are told to drain its ring and drop it; when a
//!   subscriber leaves (or its process dies), the broker frees its slots, so a lossless ring
//!   never waits on a dead reader.
//! - The topic's `backpressure` decides each ring's mode when it is created: `drop_oldest`
//!   makes the publisher rings and the relay ring lossy (the oldest frames are overwritten
//!   and a lapped subscriber is told how many it missed); `drop_newest` marks publisher rings
//!   so that their publisher drops a message that does not fit (counted in the ring, read
//!   here for the stats); `block` and `disconnect` rings are lossless and wait. On a fanout
//!   relay ring the topic applies the policy ([`Relay`]): a full relay ring holds the socket
//!   publisher back under `block` and `disconnect`, and drops the rest under `drop_newest`.
//!   Under `disconnect` the watchdog detaches a subscriber that holds a waiting publisher
//!   back, in a publisher ring or in the relay ring alike; under `block` it does so after
//!   `publish_deadline_ms` in a publisher ring, and the held socket publish does it for the
//!   relay ring (the topic's `give_up`, through [`Relay::detach_laggards`], and on a queue
//!   topic whose backlog stays full, [`QueueRelay::detach_laggards`]). A queue topic
//!   with `drop_oldest` is refused shared memory: an overwritten frame would be a message no
//!   consumer gets, with no one to count it.
//! - A relay ring lives exactly while its topic has shared-memory subscribers: the first
//!   one's attach creates it, and the last one's leaving (a detach, a session that ends or
//!   dies, a watchdog or deadline detach) frees it, memfd and mapping. A publisher's ring
//!   lives as long as its attachment.
//! - A hot reload changes the `[shm]` settings for what is created from then on
//!   ([`ShmRings::set_config`]): a ring keeps the size, slot count and mode it was created
//!   with (a publisher's until it attaches again, the relay ring until its topic's
//!   shared-memory subscribers have all left), and `max_publishers_per_topic` and `enabled`
//!   are checked at each attach or session. A topic the reload removed has every attachment ended
//!   ([`ShmRings::remove_topic`]): its sessions are told (`ShmDetached`, `TopicRemoved`) and
//!   its rings freed.
//! - One lock over the whole directory: attach and detach are rare control operations, and a
//!   single lock makes "reserve slots for every subscriber, then hand out the ring" atomic
//!   against a subscriber attaching at the same moment.
//!
//! # Files
//! In three layers, each using only the layers before it:
//! - What the directory hands around: `ring.rs` ([`Ring`](ring::Ring), one ring the broker
//!   created), `events.rs` (what a session is told, [`SessionEvent`], and what an attach
//!   grants, [`Grant`]), `error.rs` (the refusals), `in_flight.rs` (the payload segments a
//!   reader may not have read yet), `reader.rs` (the broker's reader thread of publisher
//!   rings, one per topic, for socket subscribers).
//! - The directory: `directory.rs` ([`ShmRings`], its lock and settings, ending attachments,
//!   the figures for `Stats`), `figures.rs` (one topic's figures for `Stats` and the
//!   metrics: attachments, ring drops, the slowest reader's lag), `topic_rings.rs` (one topic's rings and attachments, and how
//!   one leaves), `relay.rs` (the relay ring's producer: the topic's relays), `segments.rs`
//!   (payload segments handed to each reader of a ring), `backlog.rs` (a queue topic's
//!   backlog offered to its shared-memory consumers, and what a departed consumer left unread
//!   dealt again). These five use one another: a topic's rings own its relay ring, and the
//!   relay ring reaches back into the directory to hand over a large message's segment or to
//!   detach the subscribers that hold it full.
//! - What the directory does on request or on its own: `reading.rs` (start and stop the
//!   broker's reader on a topic's rings as socket subscribers come and go), `watchdog.rs`
//!   (detach subscribers that hold publishers back), `attach.rs` (attach a publisher or a
//!   subscriber), `rules.rs` (the topic's message rules for grants, and the header limits
//!   the reader holds shared-memory publishers to).

mod attach;
mod backlog;
mod directory;
mod error;
mod events;
mod figures;
mod in_flight;
mod reader;
mod reading;
mod relay;
mod ring;
mod rules;
mod segments;
mod topic_rings;
mod watchdog;

pub(crate) use directory::ShmRings;
pub(crate) use error::{SegmentRefusal, ShmRefusal};
pub(crate) use events::{Grant, SessionEvent};
pub(crate) use ring::SessionId;
pub(crate) use rules::message_rules;

#[cfg(doc)]
use crate::core::topic::{QueueRelay, Relay};
