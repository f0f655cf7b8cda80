//! Publish/subscribe end to end over the socket: a real broker process, `mycelium pub`/`mycelium
//! sub` processes and the async client library, checked message by message.
//!
//! Every wait is on a condition (a `subscribed to` line, a stats counter, a process exit, the end
//! of a subscriber's output) with a deadline; nothing sleeps to synchronise.
//!
//! # Layout
//! - `cli_smoke`: the README's first steps, as a new user runs them.
//! - `fanout`: every subscriber of a fanout topic gets every message, in per-publisher order, and
//!   only its own topic's.
//! - `queue`: a queue topic gives each message to exactly one consumer, fairly, and keeps what
//!   was published before any consumer came.
//! - `refusals`: unknown topics and oversized messages are refused by name, and the connection
//!   and the broker go on.
//! - `lifecycle`: subscribers killed or stopped mid-stream, a graceful shutdown, and a library
//!   client's whole life (subscribe, receive, unsubscribe, close).
//! - `patterns`: wildcard subscriptions (`*`, `>`) with raw frames: which topics they reach,
//!   the concrete topic on each delivery, reloads, unsubscribing, refused patterns.
//! - `request_reply`: `mycelium request` / `mycelium reply` and the library's request/reply:
//!   answers, error replies, timeouts, no responders, a queue of two responders, inboxes.
//! - `connections`: the `max_connections` limit.
//! - `check`: `mycelium check` diagnostics and `mycelium help`.
//! - `envelopes`: headers and stamps travelling byte for byte (raw frames), their limits, a
//!   malformed envelope, no echo, envelopes in a queue's backlog and under `drop_oldest`.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod cli_smoke;
mod connections;
mod envelopes;
mod fanout;
mod lifecycle;
mod patterns;
mod queue;
mod refusals;
mod request_reply;

use std::collections::BTreeSet;
use std::time::Duration;

use common::pubsub_support::{run_to_end, spawn_pub, stats_json, topic_counter};
use common::raw::{encoded, RawConnection};
use common::{
    block_on, fanout, mycelium_bin, spawn_sub, wait_until, SubProcess, TestBroker, DEADLINE,
};
use mycelium_client::Client;
use mycelium_client::{ConnectError, PublishError, RecvError, SubscriptionEnd, TryRecvError};
use mycelium_transport::{ErrorCode, Frame};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn signal(child: &std::process::Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).expect("signalling a child process");
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}
