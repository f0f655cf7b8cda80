//! `mycelium bench`: throughput and latency against a running broker, every party its own process.
//!
//! - The orchestrator spawns each publisher and subscriber as `mycelium bench-worker` (hidden),
//!   talks to them over their stdin/stdout (one line per event), and merges their results.
//! - Each payload carries `seq: u64` (publisher index in the top 16 bits) and the send time
//!   (`CLOCK_MONOTONIC` ns, comparable across processes) in its first 16 bytes, so subscribers
//!   measure one-way latency and check order and loss per publisher. In throughput runs only
//!   every [`LATENCY_SAMPLE_EVERY`]th message is timestamped (the others carry 0): reading the
//!   clock for every message on both sides would cost more than the broker's routing.
//! - Throughput per subscriber = messages / (last receipt − first receipt). `--json` prints one
//!   JSON object on stdout and nothing else there (the human summary goes to stderr), so the
//!   output pipes into `jq`.
//! - `--duration SECS`, `--rate MSG_PER_S` and `--plot FILE.svg` apply to publish/subscribe
//!   runs; `--pingpong` and `--request` refuse them (one message in flight has no offered
//!   load, and their figures are whole round trips). With `--rate` every message is
//!   timestamped with its scheduled send time (see `schedule`).
//! - `--pingpong N`: an echo process answers a pinger, one message in flight; one-way = RTT / 2.
//! - `--request N`: a responder answers a requester through `request`/`reply`; whole round
//!   trips.
//!
//! # Layout
//! - `args`: the command-line arguments of `bench` and of the hidden `bench-worker`.
//! - `orchestrate`: spawns the workers, collects their lines, prints the summary.
//! - `request`: `--request N`, request/reply round trips (requester and responder roles).
//! - `patterns`: `--patterns N`, wildcard subscriptions held idle during a run.
//! - `durable`: `--durable MODE`, a durable topic's publish, confirm, replay and consumer
//!   group figures.
//! - `worker`: one worker process; `uds` runs its role over the socket, `shm` over shared memory.
//! - `schedule`: when a publisher sends (`--count`, `--duration`, paced by `--rate`).
//! - `stamp`, `tally`, `histogram`, `timeline`: what a payload carries and what a subscriber
//!   measures.
//! - `plot`: `--plot FILE.svg`, latency by percentile and throughput over time.

mod args;
mod durable;
mod histogram;
mod orchestrate;
mod patterns;
mod plot;
mod request;
mod schedule;
mod shm;
mod stamp;
mod tally;
mod timeline;
mod uds;
mod worker;

pub(crate) use args::{BenchArgs, WorkerArgs};
pub(crate) use orchestrate::bench;
pub(crate) use worker::worker;
