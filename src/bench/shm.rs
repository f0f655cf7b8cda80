//! The shared-memory side of `mycelium bench`: workers on the blocking client over shared
//! memory.
//!
//! Same roles, stamps and results as the socket workers in `bench.rs`, so the orchestrator
//! and its figures are shared: a publisher writes into its own ring, subscribers read it
//! directly, and the broker only hands out the rings.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mycelium_client::blocking::Client;
use mycelium_client::{ClientOptions, RecvError, ShmOptions, Transport};

use crate::report::connect_failed;

use super::args::{Role, WorkerArgs};
use super::schedule::{Next, Schedule};
use super::stamp::{now_ns, stamp, stamp_with, PINGPONG_WARMUP};
use super::tally::{Tally, WorkerResult};
use crate::output::outln;

/// How long a ping waits for its pong.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages taken per batch by a throughput subscriber.
const RECV_BATCH: usize = 4096;

/// Checks that the broker gives out shared memory for `topic` and that `size` fits it.
pub(crate) fn preflight(socket: &PathBuf, topic: &str, size: u32) -> anyhow::Result<()> {
    let client = Client::connect_with(
        socket,
        ClientOptions::with_transport(Transport::SharedMemory),
    )
    .map_err(connect_failed)?;
    let publisher = client
        .publisher(topic)
        .with_context(|| format!("no shared memory for topic '{topic}'"))?;
    if publisher.max_message_size() < size as usize {
        bail!(
            "topic '{topic}' accepts at most {} bytes over shared memory; --size is {size}",
            publisher.max_message_size()
        );
    }
    Ok(())
}

/// Set when stdin reaches EOF or a line arrives: how the orchestrator says "stop".
fn stop_flag_from_stdin() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

pub(crate) fn worker(args: &WorkerArgs) -> anyhow::Result<WorkerResult> {
    let stop = stop_flag_from_stdin();
    let options = ClientOptions {
        shm: ShmOptions {
            name: format!("bench-{:?}", args.role).to_lowercase(),
            busy_poll: args.busy_poll,
            spin: Duration::from_micros(args.spin_us),
            ..ShmOptions::default()
        },
        ..ClientOptions::with_transport(Transport::SharedMemory)
    };
    let client = Client::connect_with(&args.socket, options).map_err(connect_failed)?;
    match args.role {
        Role::Publisher => run_publisher(&client, args),
        Role::Subscriber => run_subscriber(&client, args, &stop),
        Role::Echo => run_echo(&client, args, &stop),
        Role::Pinger => run_pinger(&client, args),
        Role::Requester => super::request::run_requester_blocking(&client, args),
        Role::Responder => super::request::run_responder_blocking(&client, args, &stop),
        Role::DurablePublisher | Role::DurableConfirmer | Role::Replayer | Role::GroupMember => {
            anyhow::bail!("durable topics are measured over the socket (the orchestrator never asks shared memory for them)")
        }
    }
}

fn run_publisher(client: &Client, args: &WorkerArgs) -> anyhow::Result<WorkerResult> {
    let mut publisher = client.publisher(&args.topic)?;
    let mut payload = vec![0u8; args.size];
    let headers = super::stamp::bench_headers(args.headers);
    let base = args.index << 48;
    let start = Instant::now();
    let schedule = Schedule::start(args);
    let start_ns = now_ns();
    let mut seq = 0;
    loop {
        match schedule.next(seq) {
            Next::Done => break,
            Next::Wait(d) if d.is_zero() => std::hint::spin_loop(),
            Next::Wait(d) => std::thread::sleep(d),
            Next::Send { stamp_ns } => {
                stamp_with(&mut payload, base | seq, stamp_ns);
                if headers.is_empty() {
                    publisher.publish(&payload)?;
                } else {
                    publisher.publish_with(&headers, &payload)?;
                }
                seq += 1;
            }
        }
    }
    Ok(WorkerResult {
        sent: seq,
        seconds: start.elapsed().as_secs_f64(),
        clock_ns: start_ns,
        ..WorkerResult::default()
    })
}

fn run_subscriber(
    client: &Client,
    args: &WorkerArgs,
    stop: &AtomicBool,
) -> anyhow::Result<WorkerResult> {
    let mut subscription = client.subscribe(&args.topic)?;
    outln!("ready");
    let mut tally = Tally::default();
    let mut received = 0u64;
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut last_ns = 0u64;
    let mut last_report = Instant::now();
    let mut buf = Vec::new();
    loop {
        if args.expected > 0 && received >= args.expected {
            break;
        }
        let took = match subscription.try_recv_batch(RECV_BATCH, |payload| {
            tally.check(payload);
            received += 1;
        }) {
            // drop_oldest / drop_newest: the tally sees the gap in the sequence numbers.
            Err(RecvError::Lagged(_)) => continue,
            other => other?,
        };
        if took > 0 {
            last = Instant::now();
            last_ns = now_ns();
            first.get_or_insert(last);
            tally.received_at(took as u64, last_ns);
        }
        if last_report.elapsed() >= Duration::from_millis(100) {
            outln!("progress {received}");
            last_report = Instant::now();
        }
        if took > 0 {
            continue;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let got = match subscription.recv_timeout_into(&mut buf, Some(Duration::from_millis(100))) {
            Err(RecvError::Lagged(_)) => continue,
            other => other?,
        };
        if got {
            tally.check(&buf);
            received += 1;
            last = Instant::now();
            last_ns = now_ns();
            first.get_or_insert(last);
            tally.received_at(1, last_ns);
        }
    }
    let seconds = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    Ok(tally.result(received, seconds, last_ns))
}

fn run_echo(client: &Client, args: &WorkerArgs, stop: &AtomicBool) -> anyhow::Result<WorkerResult> {
    let mut subscription = client.subscribe(&args.topic)?;
    let mut reply = client.publisher(&args.reply_topic)?;
    outln!("ready");
    let mut echoed = 0;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if subscription.recv_timeout_into(&mut buf, Some(Duration::from_millis(100)))? {
            reply.publish(&buf)?;
            echoed += 1;
        }
    }
    Ok(WorkerResult {
        sent: echoed,
        received: echoed,
        ..WorkerResult::default()
    })
}

fn run_pinger(client: &Client, args: &WorkerArgs) -> anyhow::Result<WorkerResult> {
    let mut replies = client.subscribe(&args.reply_topic)?;
    let mut ping = client.publisher(&args.topic)?;
    let mut payload = vec![0u8; args.size];
    let mut latency = super::histogram::Histogram::default();
    let mut buf = Vec::new();
    let start = Instant::now();
    for round in 0..PINGPONG_WARMUP + args.count {
        stamp(&mut payload, round, true);
        let sent_at = now_ns();
        ping.publish(&payload)?;
        if !replies.recv_timeout_into(&mut buf, Some(REPLY_TIMEOUT))? {
            bail!(
                "no reply within {} s (round {round}); is an echo process subscribed to {}?",
                REPLY_TIMEOUT.as_secs(),
                args.topic
            );
        }
        if round >= PINGPONG_WARMUP {
            latency.record(now_ns().saturating_sub(sent_at) / 2);
        }
        if args.interval_us > 0 {
            std::thread::sleep(Duration::from_micros(args.interval_us));
        }
    }
    Ok(WorkerResult {
        sent: args.count,
        received: args.count,
        seconds: start.elapsed().as_secs_f64(),
        latency: latency.to_sparse(),
        ..WorkerResult::default()
    })
}
