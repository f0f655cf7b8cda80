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
//! - `--pingpong N`: an echo process answers a pinger, one message in flight; one-way = RTT / 2.

use crate::output::{errln, errprint, humanln, outln};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mycelium_client::Client;
use mycelium_transport::RoutingKind;
use serde::{Deserialize, Serialize};

mod histogram;
mod shm;

use crate::socket::{client_runtime, Transport};
use crate::SocketArgs;
use histogram::Histogram;
use shm as bench_shm;

/// Throughput runs timestamp one message in this many.
pub(crate) const LATENCY_SAMPLE_EVERY: u64 = 16;
/// Bytes of bench header at the start of every payload.
const STAMP_LEN: usize = 16;
/// How long workers get to connect and subscribe.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Round trips before the measured ones in ping-pong.
pub(crate) const PINGPONG_WARMUP: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingArg {
    /// Every subscriber gets every message
    Fanout,
    /// Each message goes to one subscriber
    Queue,
}

/// Arguments of `mycelium bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The data path to measure [default: shm when the broker offers it for the topic, else uds]
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Shared memory: spin instead of sleeping while waiting (for cores of one's own)
    #[arg(long)]
    busy_poll: bool,
    /// Shared memory: microseconds a waiting subscriber spins before it sleeps (0: sleep at
    /// once, to measure the wake-up path itself)
    #[arg(long, value_name = "US", default_value_t = 20)]
    spin_us: u64,
    /// Publisher processes (1-64)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    publishers: u32,
    /// Subscriber processes (1-64)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    subscribers: u32,
    /// The kind of topic to measure
    #[arg(long, value_enum, default_value = "fanout")]
    routing: RoutingArg,
    /// Payload size in bytes (at least 16: sequence number and timestamp)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(STAMP_LEN as i64..))]
    size: u32,
    /// Messages per publisher
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Measure latency instead: N round trips between two processes, one message in flight.
    /// With --json, msgs_per_sec is round trips per second and mb_per_sec is 0
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pingpong: Option<u64>,
    /// The topic to use [default: bench.fanout or bench.queue; bench.ping for --pingpong]
    #[arg(long)]
    topic: Option<String>,
    /// The topic ping-pong answers on
    #[arg(long, default_value = "bench.pong")]
    reply_topic: String,
    /// Ping-pong: pause this many microseconds between round trips, so that both sides go
    /// to sleep between messages (measures the wake-up path, as a quiet service sees it)
    #[arg(long, value_name = "US", default_value_t = 0)]
    interval_us: u64,
    /// Give up when no message arrives for this many seconds after the publishers finish
    #[arg(long, default_value_t = 5)]
    idle_timeout: u64,
    /// Print one JSON object with the results on stdout, and nothing else there (the human
    /// summary goes to stderr)
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Publisher,
    Subscriber,
    Echo,
    Pinger,
}

/// Arguments of the hidden `mycelium bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    pub(crate) role: Role,
    #[arg(long)]
    pub(crate) socket: PathBuf,
    #[arg(long)]
    pub(crate) topic: String,
    #[arg(long, default_value = "")]
    pub(crate) reply_topic: String,
    #[arg(long, default_value_t = 0)]
    pub(crate) index: u64,
    #[arg(long, default_value_t = 0)]
    pub(crate) count: u64,
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Subscriber: stop by itself after this many messages (0 = only when told)
    #[arg(long, default_value_t = 0)]
    pub(crate) expected: u64,
    #[arg(long, value_enum, default_value = "uds")]
    pub(crate) transport: Transport,
    #[arg(long)]
    pub(crate) busy_poll: bool,
    #[arg(long, default_value_t = 20)]
    pub(crate) spin_us: u64,
    #[arg(long, default_value_t = 0)]
    pub(crate) interval_us: u64,
}

/// What a worker reports on its last stdout line, after `result `.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Seconds from first to last message (sent or received).
    pub(crate) seconds: f64,
    /// `CLOCK_MONOTONIC` ns: a publisher's first send; a subscriber's last receipt.
    #[serde(default)]
    pub(crate) clock_ns: u64,
    /// Messages that arrived with a lower sequence number than an earlier one of the same publisher.
    pub(crate) reordered: u64,
    /// Sequence numbers skipped (fanout: lost messages).
    pub(crate) gaps: u64,
    pub(crate) latency: Vec<[u64; 2]>,
}

pub(crate) fn now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}

pub(crate) fn stamp(buf: &mut [u8], seq: u64, timestamped: bool) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let ts = if timestamped { now_ns() } else { 0 };
    buf[8..16].copy_from_slice(&ts.to_le_bytes());
}

fn read_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let ts = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, ts))
}

// ---------------------------------------------------------------------------------------------
// Workers

pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    if args.transport == Transport::Shm {
        let result = bench_shm::worker(&args)?;
        outln!("result {}", serde_json::to_string(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stop = stop_signal_from_stdin();
    let result = client_runtime()?.block_on(async {
        let client = Client::connect(&args.socket).await?;
        let result = match args.role {
            Role::Publisher => run_publisher(&client, &args).await?,
            Role::Subscriber => run_subscriber(&client, &args, stop).await?,
            Role::Echo => run_echo(&client, &args, stop).await?,
            Role::Pinger => run_pinger(&client, &args).await?,
        };
        client.close().await?;
        anyhow::Ok(result)
    })?;
    outln!("result {}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}

/// Resolves when stdin reaches EOF or a line arrives: how the orchestrator says "stop".
fn stop_signal_from_stdin() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    rx
}

async fn run_publisher(client: &Client, args: &WorkerArgs) -> anyhow::Result<WorkerResult> {
    let publisher = client.publisher(&args.topic).await?;
    let mut payload = vec![0u8; args.size];
    let base = args.index << 48;
    let start = Instant::now();
    let start_ns = now_ns();
    for seq in 0..args.count {
        stamp(&mut payload, base | seq, seq % LATENCY_SAMPLE_EVERY == 0);
        publisher.publish(&payload).await?;
    }
    client.flush().await?;
    Ok(WorkerResult {
        sent: args.count,
        seconds: start.elapsed().as_secs_f64(),
        clock_ns: start_ns,
        ..WorkerResult::default()
    })
}

async fn run_subscriber(
    client: &Client,
    args: &WorkerArgs,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<WorkerResult> {
    let mut subscription = client.subscribe(&args.topic).await?;
    outln!("ready");
    let mut tally = Tally::default();
    let mut received = 0u64;
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut last_ns = 0u64;
    let mut last_report = Instant::now();
    let mut check = |payload: &[u8], received: &mut u64| {
        tally.check(payload);
        *received += 1;
    };
    loop {
        if args.expected > 0 && received >= args.expected {
            break;
        }
        // Take everything that is ready without awaiting, then report progress, then wait.
        let mut took = false;
        while let Some(message) = subscription.try_recv() {
            check(&message, &mut received);
            took = true;
            if args.expected > 0 && received >= args.expected {
                break;
            }
        }
        if took {
            last = Instant::now();
            last_ns = now_ns();
            first.get_or_insert(last);
        }
        if last_report.elapsed() >= Duration::from_millis(100) {
            outln!("progress {received}");
            last_report = Instant::now();
        }
        if took {
            continue;
        }
        tokio::select! {
            message = subscription.recv() => match message {
                Some(Ok(message)) => {
                    check(&message, &mut received);
                    last = Instant::now();
                    last_ns = now_ns();
                    first.get_or_insert(last);
                }
                Some(Err(error)) => return Err(error.into()),
                None => break,
            },
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let seconds = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    Ok(tally.result(received, seconds, last_ns))
}

/// What a subscriber learns from the stamps of the messages it receives.
#[derive(Default)]
pub(crate) struct Tally {
    latency: Histogram,
    next_seq: Vec<u64>,
    pub(crate) reordered: u64,
    pub(crate) gaps: u64,
}

impl Tally {
    pub(crate) fn check(&mut self, payload: &[u8]) {
        let Some((seq, ts)) = read_stamp(payload) else {
            return;
        };
        if ts != 0 {
            self.latency.record(now_ns().saturating_sub(ts));
        }
        let publisher = (seq >> 48) as usize;
        let seq = seq & ((1 << 48) - 1);
        if self.next_seq.len() <= publisher {
            self.next_seq.resize(publisher + 1, 0);
        }
        if seq < self.next_seq[publisher] {
            self.reordered += 1;
        } else {
            self.gaps += seq - self.next_seq[publisher];
            self.next_seq[publisher] = seq + 1;
        }
    }

    pub(crate) fn result(self, received: u64, seconds: f64, last_ns: u64) -> WorkerResult {
        WorkerResult {
            received,
            seconds,
            clock_ns: last_ns,
            reordered: self.reordered,
            gaps: self.gaps,
            latency: self.latency.to_sparse(),
            ..WorkerResult::default()
        }
    }
}

async fn run_echo(
    client: &Client,
    args: &WorkerArgs,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<WorkerResult> {
    let mut subscription = client.subscribe(&args.topic).await?;
    let reply = client.publisher(&args.reply_topic).await?;
    outln!("ready");
    let mut echoed = 0;
    loop {
        tokio::select! {
            message = subscription.recv() => match message {
                Some(Ok(message)) => {
                    reply.publish(&message).await?;
                    echoed += 1;
                }
                Some(Err(error)) => return Err(error.into()),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    Ok(WorkerResult {
        sent: echoed,
        received: echoed,
        ..WorkerResult::default()
    })
}

async fn run_pinger(client: &Client, args: &WorkerArgs) -> anyhow::Result<WorkerResult> {
    let mut replies = client.subscribe(&args.reply_topic).await?;
    let ping = client.publisher(&args.topic).await?;
    let mut payload = vec![0u8; args.size];
    let mut latency = Histogram::default();
    let start = Instant::now();
    for round in 0..PINGPONG_WARMUP + args.count {
        stamp(&mut payload, round, true);
        let sent_at = now_ns();
        ping.publish(&payload).await?;
        match tokio::time::timeout(Duration::from_secs(10), replies.recv()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return Err(error.into()),
            Ok(None) => bail!("the reply subscription ended"),
            Err(_) => bail!(
                "no reply within 10 s (round {round}); is an echo process subscribed to {}?",
                args.topic
            ),
        }
        if round >= PINGPONG_WARMUP {
            latency.record(now_ns().saturating_sub(sent_at) / 2);
        }
        if args.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(args.interval_us)).await;
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

// ---------------------------------------------------------------------------------------------
// Orchestrator

/// One spawned worker and the lines it prints.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    progress: u64,
    result: Option<WorkerResult>,
}

impl Worker {
    fn spawn(args: &[String]) -> anyhow::Result<Worker> {
        let exe = std::env::current_exe().context("finding the mycelium executable")?;
        let mut child = Command::new(exe)
            .arg("bench-worker")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning a bench worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Worker {
            child,
            stdin,
            lines,
            progress: 0,
            result: None,
        })
    }

    /// Handles every line printed so far; true once the worker's stdout closed.
    fn poll(&mut self) -> anyhow::Result<bool> {
        loop {
            match self.lines.try_recv() {
                Ok(line) => self.handle(&line)?,
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => return Ok(true),
            }
        }
    }

    fn handle(&mut self, line: &str) -> anyhow::Result<()> {
        if let Some(n) = line.strip_prefix("progress ") {
            self.progress = n.trim().parse().unwrap_or(self.progress);
        } else if let Some(json) = line.strip_prefix("result ") {
            let result: WorkerResult =
                serde_json::from_str(json).context("reading a worker's result")?;
            self.progress = result.received;
            self.result = Some(result);
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == "ready" => return Ok(()),
                Ok(line) => self.handle(&line)?,
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!("a bench worker did not get ready (exit status: {status:?}); see its error above");
                }
            }
        }
    }

    fn stop(&mut self) {
        self.stdin.take();
    }

    /// Waits for the worker to exit and returns its result.
    fn finish(mut self) -> anyhow::Result<WorkerResult> {
        self.stop();
        let status = self.child.wait().context("waiting for a bench worker")?;
        while let Ok(line) = self.lines.recv() {
            self.handle(&line)?;
        }
        match self.result.take() {
            Some(result) if status.success() => Ok(result),
            _ => bail!("a bench worker failed ({status}); see its error above"),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Checks the topic exists with the expected routing and accepts `size` bytes.
fn preflight(
    socket: &PathBuf,
    topic: &str,
    routing: Option<RoutingKind>,
    size: u32,
) -> anyhow::Result<()> {
    client_runtime()?.block_on(async {
        let client = Client::connect(socket).await?;
        let publisher = client
            .publisher(topic)
            .await
            .with_context(|| format!("the bench cannot use topic '{topic}'"))?;
        if publisher.max_message_size() < size as usize {
            bail!(
                "topic '{topic}' accepts at most {} bytes; --size is {size}",
                publisher.max_message_size()
            );
        }
        let stats = client.stats().await?;
        if let (Some(want), Some(t)) = (routing, stats.topics.iter().find(|t| t.name == topic)) {
            if t.routing != want {
                let name = |r: RoutingKind| match r {
                    RoutingKind::Fanout => "fanout",
                    RoutingKind::Queue => "queue",
                };
                bail!(
                    "topic '{topic}' is a {} topic, but --routing asks for {}",
                    name(t.routing),
                    name(want)
                );
            }
        }
        client.close().await?;
        anyhow::Ok(())
    })
}

fn quantiles_us(h: &Histogram) -> (f64, f64, f64) {
    let us = |q| h.quantile(q) as f64 / 1000.0;
    (us(0.5), us(0.99), us(0.999))
}

/// The transport asked for, or (none asked) shm when the broker offers it on every topic the
/// run uses, else uds.
fn choose_transport(
    args: &BenchArgs,
    socket: &PathBuf,
    topics: &[&str],
) -> anyhow::Result<Transport> {
    match args.transport {
        Some(Transport::Shm) => {
            for topic in topics {
                bench_shm::preflight(socket, topic, args.size)?;
            }
            Ok(Transport::Shm)
        }
        Some(Transport::Uds) => Ok(Transport::Uds),
        None => {
            for topic in topics {
                if let Err(error) = bench_shm::preflight(socket, topic, args.size) {
                    errln!("shared memory unavailable ({error:#}); measuring uds");
                    return Ok(Transport::Uds);
                }
            }
            Ok(Transport::Shm)
        }
    }
}

/// Worker arguments that select the data path.
fn transport_args(transport: Transport, args: &BenchArgs) -> Vec<String> {
    let mut worker = vec![
        "--transport".to_owned(),
        transport.name().to_owned(),
        "--spin-us".to_owned(),
        args.spin_us.to_string(),
    ];
    if args.busy_poll {
        worker.push("--busy-poll".to_owned());
    }
    worker
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let socket = args.socket.resolve()?;
    if args.busy_poll && args.transport == Some(Transport::Uds) {
        bail!("--busy-poll applies to --transport shm only");
    }
    if let Some(rounds) = args.pingpong {
        return pingpong(&args, &socket, rounds);
    }
    let topic = args.topic.clone().unwrap_or_else(|| match args.routing {
        RoutingArg::Fanout => "bench.fanout".to_owned(),
        RoutingArg::Queue => "bench.queue".to_owned(),
    });
    let routing = match args.routing {
        RoutingArg::Fanout => RoutingKind::Fanout,
        RoutingArg::Queue => RoutingKind::Queue,
    };
    preflight(&socket, &topic, Some(routing), args.size)?;
    let transport = choose_transport(&args, &socket, &[&topic])?;
    let common = |role: &str| {
        let mut common = vec![
            "--role".to_owned(),
            role.to_owned(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--topic".to_owned(),
            topic.clone(),
            "--size".to_owned(),
            args.size.to_string(),
        ];
        common.extend(transport_args(transport, &args));
        common
    };
    let sent_total = u64::from(args.publishers) * args.count;
    let per_subscriber = match args.routing {
        RoutingArg::Fanout => sent_total,
        RoutingArg::Queue => 0,
    };
    let expected_total = match args.routing {
        RoutingArg::Fanout => sent_total * u64::from(args.subscribers),
        RoutingArg::Queue => sent_total,
    };

    let mut subscribers = Vec::new();
    for _ in 0..args.subscribers {
        let mut a = common("subscriber");
        a.extend(["--expected".to_owned(), per_subscriber.to_string()]);
        subscribers.push(Worker::spawn(&a)?);
    }
    for s in &mut subscribers {
        s.wait_ready()?;
    }
    let mut publishers = Vec::new();
    for index in 0..args.publishers {
        let mut a = common("publisher");
        a.extend([
            "--index".to_owned(),
            index.to_string(),
            "--count".to_owned(),
            args.count.to_string(),
        ]);
        publishers.push(Worker::spawn(&a)?);
    }

    let show_progress = std::io::stderr().is_terminal();
    let (mut publishers_done_at, mut last_change, mut last_total) =
        (None::<Instant>, Instant::now(), 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let mut publishers_done = true;
        for p in &mut publishers {
            let closed = p.poll()?;
            if !closed {
                publishers_done = false;
            }
        }
        let mut total = 0;
        for s in &mut subscribers {
            s.poll()?;
            total += s.progress;
        }
        if total != last_total {
            last_total = total;
            last_change = Instant::now();
        }
        if show_progress {
            errprint!(
                "\rreceived {total}/{expected_total} ({:.0}%)   ",
                100.0 * total as f64 / expected_total.max(1) as f64
            );
        }
        if publishers_done && publishers_done_at.is_none() {
            publishers_done_at = Some(Instant::now());
        }
        if total >= expected_total {
            break;
        }
        if publishers_done && last_change.elapsed() > Duration::from_secs(args.idle_timeout) {
            errln!(
                "\nno message for {} s after the publishers finished; stopping",
                args.idle_timeout
            );
            break;
        }
    }
    if show_progress {
        errln!();
    }
    let pub_results = publishers
        .into_iter()
        .map(Worker::finish)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sub_results = subscribers
        .into_iter()
        .map(Worker::finish)
        .collect::<anyhow::Result<Vec<_>>>()?;

    let sent: u64 = pub_results.iter().map(|r| r.sent).sum();
    let received: u64 = sub_results.iter().map(|r| r.received).sum();
    let expected = match args.routing {
        RoutingArg::Fanout => sent * u64::from(args.subscribers),
        RoutingArg::Queue => sent,
    };
    let lost = expected.saturating_sub(received);
    let reordered: u64 = sub_results.iter().map(|r| r.reordered).sum();
    // Each subscriber's rate runs from the publishers' first send to its own last receipt: a
    // subscriber that got a backlog in one burst would otherwise report an impossible rate.
    let first_send = pub_results.iter().map(|r| r.clock_ns).min().unwrap_or(0);
    let mut rates: Vec<f64> = sub_results
        .iter()
        .filter(|r| r.received > 0 && r.clock_ns > first_send)
        .map(|r| r.received as f64 / ((r.clock_ns - first_send) as f64 / 1e9))
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    let total_rate: f64 = rates.iter().sum();
    let mut latency = Histogram::default();
    for r in &sub_results {
        latency.merge(&Histogram::from_sparse(&r.latency));
    }
    let (p50, p99, p999) = quantiles_us(&latency);
    let mb = median * f64::from(args.size) / 1e6;

    humanln!(
        args.json,
        "mycelium bench: {} publisher(s) -> {} {} subscriber(s), {} B x {} per publisher, transport {}{}",
        args.publishers,
        args.subscribers,
        match args.routing {
            RoutingArg::Fanout => "fanout",
            RoutingArg::Queue => "queue",
        },
        args.size,
        args.count,
        transport.name(),
        if args.busy_poll { " (busy-poll)" } else { "" },
    );
    humanln!(args.json, "  delivered: {median:.0} msg/s per subscriber (median), {mb:.1} MB/s; {total_rate:.0} msg/s in total");
    humanln!(
        args.json,
        "  latency under load (one-way, {} samples: 1 message in {LATENCY_SAMPLE_EVERY}): p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us",
        latency.total()
    );
    humanln!(
        args.json,
        "  sent {sent}, received {received}, lost {lost}, reordered {reordered}"
    );
    if args.json {
        let doc = serde_json::json!({
            "mode": "throughput", "transport": transport.name(), "busy_poll": args.busy_poll, "routing": args.routing, "publishers": args.publishers,
            "subscribers": args.subscribers, "size": args.size, "count": args.count,
            "msgs_per_sec": median, "total_msgs_per_sec": total_rate, "mb_per_sec": mb,
            "p50_us": p50, "p99_us": p99, "p999_us": p999, "latency_samples": latency.total(),
            "sent": sent, "received": received, "lost": lost, "reordered": reordered,
        });
        outln!("{doc}");
    }
    Ok(if lost == 0 && reordered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn pingpong(args: &BenchArgs, socket: &PathBuf, rounds: u64) -> anyhow::Result<ExitCode> {
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| "bench.ping".to_owned());
    preflight(socket, &topic, None, args.size)?;
    preflight(socket, &args.reply_topic, None, args.size)?;
    let transport = choose_transport(args, socket, &[&topic, &args.reply_topic])?;
    let common = |role: &str| {
        let mut common = vec![
            "--role".to_owned(),
            role.to_owned(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--topic".to_owned(),
            topic.clone(),
            "--reply-topic".to_owned(),
            args.reply_topic.clone(),
            "--size".to_owned(),
            args.size.to_string(),
            "--count".to_owned(),
            rounds.to_string(),
            "--interval-us".to_owned(),
            args.interval_us.to_string(),
        ];
        common.extend(transport_args(transport, args));
        common
    };
    let mut echo = Worker::spawn(&common("echo"))?;
    echo.wait_ready()?;
    let pinger = Worker::spawn(&common("pinger"))?;
    let result = pinger.finish()?;
    echo.finish()?;
    let latency = Histogram::from_sparse(&result.latency);
    let (p50, p99, p999) = quantiles_us(&latency);
    humanln!(
        args.json,
        "mycelium bench --pingpong: {rounds} round trips, {} B, transport {}{}{}, one-way = RTT/2",
        args.size,
        transport.name(),
        if args.busy_poll { " (busy-poll)" } else { "" },
        if args.interval_us > 0 {
            format!(", {} us between round trips", args.interval_us)
        } else {
            String::new()
        },
    );
    humanln!(
        args.json,
        "  one-way latency: p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us"
    );
    if args.json {
        let doc = serde_json::json!({
            "mode": "pingpong", "transport": transport.name(), "busy_poll": args.busy_poll, "interval_us": args.interval_us, "size": args.size, "count": rounds,
            "msgs_per_sec": rounds as f64 / result.seconds.max(f64::MIN_POSITIVE), "mb_per_sec": 0.0,
            "p50_us": p50, "p99_us": p99, "p999_us": p999,
            "sent": result.sent, "received": result.received, "lost": result.sent.saturating_sub(result.received),
        });
        outln!("{doc}");
    }
    Ok(ExitCode::SUCCESS)
}
