//! Durable topics across real processes: every publish path (the socket, shared memory
//! through the broker's reader, HTTP through the gateway) stores its messages in the topic's
//! log; a restarted broker recovers the log and appends after it; a broker killed with
//! SIGKILL mid-write leaves a log that reopens to an exact prefix of what was published (no
//! gap, no duplicate, no corrupt record).
//!
//! The logs are read back with `mycelium-storage` itself, after the broker has stopped.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod confirmed;
mod crash;
mod full_disk;
mod groups;
mod replay;
mod retention;
mod stand_in;
mod store;
