//! One client connection: the handshake, then a reader that routes and a writer that flushes.
//!
//! - The reader parses every complete frame in each `read` (up to 64 KiB and more), groups
//!   consecutive publishes to one topic into a batch, and routes the batch with one lock per
//!   subscriber. It never allocates per message.
//! - Everything toward the client (replies, deliveries, errors) goes through the connection's
//!   [`Outbox`], so a reply is ordered with the deliveries around it: a `TopicAck` precedes the
//!   subscription's first `Deliver`, and a `Pong` follows the effects of every earlier frame.
//! - The writer swaps out the whole outbox per wake-up and writes it in one call.
//! - For `performance.busy_poll_us` after each read the reader polls its socket (yielding
//!   between looks) before it sleeps on readiness: a chatty peer's next frame is read without
//!   a thread wake-up, an idle one costs nothing.
//! - An idle connection holds little memory: the read buffer starts small and doubles while
//!   reads fill it (up to `READ_CHUNK`, so a busy publisher's frames still arrive thousands
//!   per syscall), and a heartbeat tick that finds nothing read since the last one gives the
//!   read buffer back, and asks the writer to give back its own ([`Outbox::release_idle`]).
//!   A thousand idle connections cost a few MiB, not a read chunk each.
//! - A protocol violation gets a fatal `Error` frame and closes only this connection. A peer
//!   that vanishes (SIGKILL) is seen as EOF or a write error; its subscriptions are removed and its
//!   outbox closed (aborted on a write error), so publishers skip it from then on.
//! - On broker shutdown the reader stops after the batch in hand (still routing it, behind a
//!   slow subscriber, for up to the flush deadline) and leaves the outbox open; the listener
//!   closes every outbox once all readers have stopped, so nothing accepted is lost unless a
//!   subscriber takes nothing for that long.
//!
//! # Files
//! Each uses only those listed before it:
//! - `stop.rs`: why the reader stops, and the fatal error frame of a protocol violation.
//! - `context.rs`: a message connection's state ([`Connection`](context::Connection)).
//! - `scan.rs`: frames to steps, publishes relabelled in place and gathered into runs;
//!   `publish.rs`: a run routed to its topic; `durable_publish.rs`: a `PublishDurable`
//!   routed and answered once durable; `durable_subscribe.rs`: replay subscriptions and
//!   consumer group memberships (ids with bit 30); `requests.rs`: every other request.
//! - `busy_poll.rs`: reading by polling for a short window before sleeping on readiness.
//! - `writer.rs`: the writer task; `reader.rs`: the read loop, which drives the four above.
//! - `admission.rs`: the first frame and what it opens ([`serve`]), or the refusal.

mod admission;
mod busy_poll;
mod context;
mod durable_publish;
mod durable_subscribe;
mod no_responders;
mod patterns;
mod publish;
mod reader;
mod requests;
mod scan;
mod stop;
mod writer;

pub(crate) use admission::serve;

#[cfg(doc)]
use mycelium_transport::outbox::Outbox;
