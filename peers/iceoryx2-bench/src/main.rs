//! Peer benchmark: iceoryx2 publish-subscribe between separate processes, on
//! the workloads Mycelium reports in its `BENCHMARKS.md`.
//!
//! * **W1** 1 publisher -> 1 subscriber, 64-byte payloads, N messages flat out.
//! * **W2** the same with 1024-byte payloads (msg/s and GB/s).
//! * **W3** 1 publisher -> 4 subscribers, 64 B; per-subscriber msg/s (min, mean).
//! * **W4** ping-pong between two processes, one 64-byte message in flight,
//!   busy-polled; one-way latency = RTT / 2 at p50 / p99 / p999.
//!
//! # How
//!
//! The parent process creates an iceoryx2 `ipc` node and the service(s) under a
//! name unique to this run (`iox2bench/<pid>/<workload>/<run>`), then spawns
//! this same executable (`std::env::current_exe`) once per party with the hidden
//! arguments `__child <domain> <role> ...`. Children open the service, and report
//! one `RESULT key=value ...` line on stdout that the parent parses.
//!
//! Delivery is lossless: the service is created with safe overflow disabled and
//! the publisher uses `BackpressureStrategy::RetryUntilDelivered`, so a full
//! subscriber buffer blocks the publisher instead of dropping samples. Every
//! subscriber checks the sequence number in each sample and reports gaps, and
//! the publisher counts sends that reached too few subscribers; any shortfall
//! is printed, never hidden.
//!
//! The publisher waits until all expected subscribers are connected, reads
//! `CLOCK_MONOTONIC` (comparable across processes, unlike `Instant`) and writes
//! it into every payload (bytes 8..16; bytes 0..8 are the sequence number).
//! Each subscriber takes `CLOCK_MONOTONIC` at its last receipt, so a rate is
//! `N / (last receipt - publisher's first send)`. The publisher writes the whole
//! payload into the loaned sample (`loan_uninit` + `write_payload`); the
//! subscriber reads the 16-byte header in place (zero-copy, no payload copy).
//!
//! Pollers spin with `spin_loop` and yield after a stretch of empty polls (W1-W3;
//! with five busy processes on two cores in W3 a pure spin starves the
//! publisher; `--spins`). W4 spins only, as a latency test should, and both
//! sides loan their next sample before waiting, as iceoryx2's own benchmark
//! does. The start is a handshake through the parent: subscribers print
//! `READY` once connected to the publisher, the publisher once it sees them
//! all, then the parent sends it `GO` on stdin (a sample that finds a full
//! queue whose subscriber has not attached yet is dropped even in a lossless
//! service). No CPU pinning.
//!
//! # Cleanup
//!
//! Each invocation runs in a private iceoryx2 domain: file prefix
//! `iox2bench_<pid>_` (in `/dev/shm`) and root path `/tmp/iceoryx2-bench-<pid>`,
//! handed to the children. Services are owned by the parent and go away with
//! it; after each workload the parent removes the resources of dead nodes (a
//! crashed child), and at exit it removes the domain's global management
//! segment (iceoryx2 keeps that one on purpose, so it is removed explicitly,
//! which is safe only because nobody else uses this domain), any leftover
//! `/dev/shm/iox2bench_<pid>_*` and the root directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;
use nix::time::{clock_gettime, ClockId};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;
type Factory<const S: usize> = PubSubFactory<ipc::Service, [u8; S], ()>;

/// How long a party waits for its peers to show up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A subscriber that has started receiving gives up after this long without data.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
    All,
}

/// iceoryx2 publish-subscribe across processes on Mycelium's workloads W1-W4.
#[derive(Parser, Debug)]
#[command(name = "iceoryx2-bench")]
struct Cli {
    /// Which workload to run.
    #[arg(value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Messages (W1-W3) or round trips (W4) per run. Defaults: W1 20M, W2 10M,
    /// W3 5M, W4 100k.
    #[arg(long)]
    count: Option<u64>,
    /// Repetitions of each selected workload.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Per-subscriber queue depth in samples (W1-W3).
    #[arg(long, default_value_t = 1024)]
    buffer: usize,
    /// Empty polls a W1-W3 subscriber spins before it yields the CPU.
    #[arg(long, default_value_t = 64)]
    spins: u32,
}

/// What a publisher or subscriber child needs to know about its run.
#[derive(Clone, Copy, Debug)]
struct Params {
    /// Messages (W1-W3) or measured round trips (W4).
    count: u64,
    subs: usize,
    buffer: usize,
    spins: u32,
}

fn main() {
    set_log_level(LogLevel::Warn);
    let args: Vec<String> = std::env::args().collect();
    let outcome = if args.get(1).map(String::as_str) == Some("__child") {
        child_main(&args[2..])
    } else {
        parent_main(Cli::parse(), &args[1..])
    };
    if let Err(e) = outcome {
        eprintln!("iceoryx2-bench: error: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// `CLOCK_MONOTONIC` in nanoseconds; one clock for all processes of the host.
fn mono_ns() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// The private iceoryx2 domain of the invocation whose parent has pid `domain`.
fn domain_config(domain: u32) -> AnyResult<Config> {
    let mut config = Config::default();
    config.global.prefix = FileName::new(format!("iox2bench_{domain}_").as_bytes())?;
    config
        .global
        .set_root_path(&Path::new(domain_root(domain).as_bytes())?);
    Ok(config)
}

fn domain_root(domain: u32) -> String {
    format!("/tmp/iceoryx2-bench-{domain}")
}

fn node(config: &Config, role: &str, tag: &str) -> AnyResult<Node<ipc::Service>> {
    let name = format!("{}-{role}", tag.replace('/', "-"));
    Ok(NodeBuilder::new()
        .name(&NodeName::new(&name)?)
        .config(config)
        // Let SIGINT/SIGTERM kill us; stale resources are removed by the parent.
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()?)
}

/// Builder shared by the creating parent and the opening children, so both
/// state the same QoS: lossless (no safe overflow), no history.
fn service_builder<const S: usize>(
    node: &Node<ipc::Service>,
    name: &str,
    subscribers: usize,
    buffer: usize,
) -> AnyResult<iceoryx2::service::builder::publish_subscribe::Builder<[u8; S], (), ipc::Service>> {
    Ok(node
        .service_builder(&ServiceName::new(name)?)
        .publish_subscribe::<[u8; S]>()
        .enable_safe_overflow(false)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .subscriber_max_borrowed_samples(1)
        .max_publishers(1)
        .max_subscribers(subscribers)
        .max_nodes(subscribers + 2))
}

fn open<const S: usize>(
    node: &Node<ipc::Service>,
    name: &str,
    subscribers: usize,
    buffer: usize,
) -> AnyResult<Factory<S>> {
    Ok(service_builder::<S>(node, name, subscribers, buffer)?.open()?)
}

/// Polls `cond` (sleeping 100 us between tries) until true or `timeout`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> AnyResult<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

fn header(payload: &[u8]) -> (u64, u64) {
    let seq = u64::from_le_bytes(payload[0..8].try_into().unwrap());
    let t0 = u64::from_le_bytes(payload[8..16].try_into().unwrap());
    (seq, t0)
}

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

/// `__child <domain> <role> <service> <size> <count> <subscribers> <buffer> <spins>`
fn child_main(args: &[String]) -> AnyResult<()> {
    let [domain, role, service, size, count, subs, buffer, spins] = args else {
        return Err(format!("bad child arguments: {args:?}").into());
    };
    let cfg = &domain_config(domain.parse()?)?;
    let p = Params {
        count: count.parse()?,
        subs: subs.parse()?,
        buffer: buffer.parse()?,
        spins: spins.parse::<u32>()?.max(1),
    };
    match (role.as_str(), size.as_str()) {
        ("pub", "64") => publisher::<64>(cfg, service, p),
        ("pub", "1024") => publisher::<1024>(cfg, service, p),
        ("sub", "64") => subscriber::<64>(cfg, service, p),
        ("sub", "1024") => subscriber::<1024>(cfg, service, p),
        ("ping", "64") => pinger(cfg, service, p.count),
        ("pong", "64") => ponger(cfg, service, p.count),
        _ => Err(format!("unsupported child role/size {role}/{size}").into()),
    }
}

fn publisher<const S: usize>(cfg: &Config, tag: &str, p: Params) -> AnyResult<()> {
    let Params {
        count,
        subs,
        buffer,
        ..
    } = p;
    let node = node(cfg, "pub", tag)?;
    let service = open::<S>(&node, tag, subs, buffer)?;
    let publisher = service
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .max_loaned_samples(1)
        .create()?;

    wait_until("subscribers", CONNECT_TIMEOUT, || {
        service.dynamic_config().number_of_subscribers() >= subs
    })?;
    publisher.update_connections()?;
    wait_for_go()?;

    let mut msg = [0u8; S];
    let t0 = mono_ns();
    msg[8..16].copy_from_slice(&t0.to_le_bytes());
    let mut short_deliveries = 0u64;
    let mut first_short = u64::MAX;
    for seq in 0..count {
        msg[0..8].copy_from_slice(&seq.to_le_bytes());
        let recipients = publisher.loan_uninit()?.write_payload(msg).send()?;
        if recipients < subs {
            short_deliveries += 1;
            first_short = first_short.min(seq);
        }
    }
    let t_sent = mono_ns();
    println!("RESULT t0={t0} t_sent={t_sent} short_deliveries={short_deliveries} first_short={first_short}");

    // Keep the data segment alive until every subscriber has drained and left.
    wait_until("subscribers to finish", Duration::from_secs(600), || {
        service.dynamic_config().number_of_subscribers() == 0
    })?;
    Ok(())
}

fn subscriber<const S: usize>(cfg: &Config, tag: &str, p: Params) -> AnyResult<()> {
    let Params {
        count,
        subs,
        buffer,
        spins,
    } = p;
    let node = node(cfg, &format!("sub{}", std::process::id()), tag)?;
    let service = open::<S>(&node, tag, subs, buffer)?;
    let subscriber = service.subscriber_builder().buffer_size(buffer).create()?;
    wait_until("publisher", CONNECT_TIMEOUT, || {
        service.dynamic_config().number_of_publishers() >= 1
    })?;
    subscriber.update_connections()?;
    println!("READY");

    let mut received = 0u64;
    let mut next_seq = 0u64;
    let mut gaps = 0u64;
    let mut first_gap = u64::MAX;
    let mut t0 = 0u64;
    let mut t_last = 0u64;
    let mut empty = 0u32;
    let mut idle_since: Option<Instant> = None;
    let start = Instant::now();
    loop {
        if let Some(sample) = subscriber.receive()? {
            let (seq, t) = header(sample.payload());
            if received == 0 {
                t0 = t;
            }
            if seq != next_seq {
                gaps += 1;
                first_gap = first_gap.min(next_seq);
            }
            next_seq = seq + 1;
            received += 1;
            empty = 0;
            if received == count {
                t_last = mono_ns();
                break;
            }
            continue;
        }
        // Queue empty.
        if empty == 0 {
            // End of a burst: remember when, in case no more data ever comes.
            t_last = mono_ns();
            idle_since = Some(Instant::now());
        }
        empty = empty.wrapping_add(1);
        if empty.is_multiple_of(spins) {
            std::thread::yield_now();
            let waited = idle_since.map_or(Duration::ZERO, |t| t.elapsed());
            if (received > 0 && waited > IDLE_TIMEOUT)
                || (received == 0 && start.elapsed() > CONNECT_TIMEOUT)
            {
                break;
            }
        } else {
            std::hint::spin_loop();
        }
    }
    drop(subscriber);
    println!(
        "RESULT received={received} gaps={gaps} first_gap={first_gap} t0={t0} t_last={t_last}"
    );
    Ok(())
}

fn ping_pong_names(tag: &str) -> (String, String) {
    (format!("{tag}/ping"), format!("{tag}/pong"))
}

/// Warm-up round trips before the measured ones.
fn warmup(count: u64) -> u64 {
    (count / 10).clamp(1, 10_000)
}

fn pinger(cfg: &Config, tag: &str, count: u64) -> AnyResult<()> {
    let node = node(cfg, "ping", tag)?;
    let (ping_name, pong_name) = ping_pong_names(tag);
    let ping = open::<64>(&node, &ping_name, 1, 1)?;
    let pong = open::<64>(&node, &pong_name, 1, 1)?;
    let publisher = ping
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;
    let subscriber = pong.subscriber_builder().buffer_size(1).create()?;
    wait_until("ponger", CONNECT_TIMEOUT, || {
        ping.dynamic_config().number_of_subscribers() >= 1
            && pong.dynamic_config().number_of_publishers() >= 1
    })?;
    publisher.update_connections()?;
    subscriber.update_connections()?;
    wait_for_go()?;

    let warm = warmup(count);
    let mut rtts: Vec<u64> = Vec::with_capacity(count as usize);
    let mut msg = [0u8; 64];
    for i in 0..warm + count {
        msg[0..8].copy_from_slice(&i.to_le_bytes());
        let sample = publisher.loan_uninit()?; // loaned outside the timed section
        let t = Instant::now();
        sample.write_payload(msg).send()?;
        let reply = loop {
            if let Some(s) = subscriber.receive()? {
                break s;
            }
            std::hint::spin_loop();
        };
        let rtt = t.elapsed().as_nanos() as u64;
        if header(reply.payload()).0 != i {
            return Err(format!("round trip {i}: reply out of sequence").into());
        }
        if i >= warm {
            rtts.push(rtt);
        }
    }
    drop(subscriber);

    rtts.sort_unstable();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)] / 2;
    println!(
        "RESULT round_trips={} p50_ns={} p90_ns={} p99_ns={} p999_ns={} max_ns={}",
        rtts.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        rtts[rtts.len() - 1] / 2
    );
    Ok(())
}

fn ponger(cfg: &Config, tag: &str, count: u64) -> AnyResult<()> {
    let node = node(cfg, "pong", tag)?;
    let (ping_name, pong_name) = ping_pong_names(tag);
    let ping = open::<64>(&node, &ping_name, 1, 1)?;
    let pong = open::<64>(&node, &pong_name, 1, 1)?;
    let subscriber = ping.subscriber_builder().buffer_size(1).create()?;
    let publisher = pong
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;
    wait_until("pinger", CONNECT_TIMEOUT, || {
        pong.dynamic_config().number_of_subscribers() >= 1
            && ping.dynamic_config().number_of_publishers() >= 1
    })?;
    publisher.update_connections()?;
    subscriber.update_connections()?;
    println!("READY");

    for _ in 0..warmup(count) + count {
        let reply = publisher.loan_uninit()?; // loaned before the request arrives
        let request = loop {
            if let Some(s) = subscriber.receive()? {
                break s;
            }
            std::hint::spin_loop();
        };
        let msg: [u8; 64] = *request.payload();
        drop(request);
        reply.write_payload(msg).send()?;
    }
    // Keep the last reply deliverable until the pinger has taken it and left.
    wait_until("pinger to finish", Duration::from_secs(60), || {
        pong.dynamic_config().number_of_subscribers() == 0
    })?;
    println!("RESULT echoed={}", warmup(count) + count);
    Ok(())
}

// ---------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------

fn parent_main(cli: Cli, raw_args: &[String]) -> AnyResult<()> {
    println!("# command: iceoryx2-bench {}", raw_args.join(" ")); // no absolute paths
    println!(
        "# iceoryx2 {} (ipc::Service, lossless: safe overflow off + RetryUntilDelivered, \
         subscriber buffer {} samples, {} spins before yield)",
        iceoryx2_bb_elementary::package_version::PackageVersion::get_str(),
        cli.buffer,
        cli.spins
    );
    let workloads = match cli.workload {
        Workload::All => vec![Workload::W1, Workload::W2, Workload::W3, Workload::W4],
        w => vec![w],
    };
    let domain = std::process::id();
    let config = domain_config(domain)?;
    let outcome = (|| -> AnyResult<()> {
        for &w in &workloads {
            for run in 1..=cli.runs {
                let ctx = Ctx {
                    domain,
                    config: &config,
                    tag: format!("iox2bench/{domain}/{w:?}/{run}").to_lowercase(),
                    buffer: cli.buffer,
                    spins: cli.spins,
                };
                let line = match w {
                    Workload::W1 => ctx.throughput("W1", 64, 1, cli.count.unwrap_or(20_000_000)),
                    Workload::W2 => ctx.throughput("W2", 1024, 1, cli.count.unwrap_or(10_000_000)),
                    Workload::W3 => ctx.throughput("W3", 64, 4, cli.count.unwrap_or(5_000_000)),
                    _ => ctx.ping_pong(cli.count.unwrap_or(100_000)),
                };
                cleanup_dead_nodes(&config);
                let suffix = match cli.runs {
                    1 => String::new(),
                    n => format!(" [run {run}/{n}]"),
                };
                println!("{}{suffix}", line?);
            }
        }
        Ok(())
    })();
    remove_domain(domain, &config);
    outcome
}

/// What a workload run needs from the parent.
struct Ctx<'a> {
    domain: u32,
    config: &'a Config,
    /// Service name of this run, unique within the private domain.
    tag: String,
    buffer: usize,
    spins: u32,
}

/// Runs one publisher and `subs` subscriber processes; returns the summary line.
impl Ctx<'_> {
    fn throughput(&self, label: &str, size: usize, subs: usize, count: u64) -> AnyResult<String> {
        let (tag, buffer) = (self.tag.as_str(), self.buffer);
        let node = node(self.config, "parent", tag)?;
        // The parent owns the service for the whole run; children only open it.
        let _service: Box<dyn std::any::Any> = match size {
            64 => Box::new(service_builder::<64>(&node, tag, subs, buffer)?.create()?),
            _ => Box::new(service_builder::<1024>(&node, tag, subs, buffer)?.create()?),
        };
        let child_args = |role: &str| {
            [
                role,
                tag,
                &size.to_string(),
                &count.to_string(),
                &subs.to_string(),
                &buffer.to_string(),
                &self.spins.to_string(),
            ]
            .map(String::from)
        };
        // Start handshake: each subscriber is READY once it is connected to the
        // publisher, the publisher once it sees all subscribers; only then may it
        // send. (A sample sent into a full queue whose subscriber has not yet
        // attached is dropped even in a lossless service.)
        let mut parties = Parties::default();
        for _ in 0..subs {
            parties.add(self.spawn(&child_args("sub"))?);
        }
        let publisher = parties.add(self.spawn(&child_args("pub"))?);
        for i in 0..=publisher {
            parties.expect_ready(i)?;
        }
        parties.go(publisher)?;
        let mut results = parties.results()?;
        let pub_result = results.pop().expect("publisher result");

        let mut rates = Vec::new();
        let mut received_total = 0u64;
        let mut lines = Vec::new();
        let t_pub = field(&pub_result, "t0")?;
        for r in &results {
            let received = field(r, "received")?;
            let gaps = field(r, "gaps")?;
            let t0 = if received > 0 { field(r, "t0")? } else { t_pub };
            let secs = (field(r, "t_last")?.saturating_sub(t0)) as f64 / 1e9;
            rates.push(received as f64 / secs);
            received_total += received;
            if gaps > 0 {
                let first = field(r, "first_gap")?;
                lines.push(format!("{gaps} sequence gaps (first at {first})"));
            }
        }
        let short = field(&pub_result, "short_deliveries")?;
        if short > 0 {
            let first = field(&pub_result, "first_short")?;
            lines.push(format!(
                "{short} sends reached < {subs} subscribers (first at {first})"
            ));
        }
        let lost = subs as u64 * count - received_total;
        let recv_note = if subs == 1 {
            format!("received {received_total}/{count}")
        } else {
            format!(
                "received {received_total}/{} ({subs} x {count})",
                subs as u64 * count
            )
        };
        let mut line = if subs == 1 {
            format!(
                "{label} iceoryx2 {size}B 1->1: {:.2} M msg/s ({:.2} GB/s), {recv_note}",
                rates[0] / 1e6,
                rates[0] * size as f64 / 1e9
            )
        } else {
            let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            format!(
                "{label} iceoryx2 {size}B 1->{subs}: per-sub min {:.2} / mean {:.2} M msg/s \
             ({:.2} M delivered/s), {recv_note}",
                min / 1e6,
                mean / 1e6,
                mean * subs as f64 / 1e6
            )
        };
        if lost > 0 {
            line.push_str(&format!(", LOST {lost}"));
        }
        for note in lines {
            line.push_str(&format!(", {note}"));
        }
        Ok(line)
    }

    fn ping_pong(&self, count: u64) -> AnyResult<String> {
        let tag = self.tag.as_str();
        let node = node(self.config, "parent", tag)?;
        let (ping_name, pong_name) = ping_pong_names(tag);
        let _ping = service_builder::<64>(&node, &ping_name, 1, 1)?.create()?;
        let _pong = service_builder::<64>(&node, &pong_name, 1, 1)?.create()?;
        let args =
            |role: &str| [role, tag, "64", &count.to_string(), "1", "1", "1"].map(String::from);
        let mut parties = Parties::default();
        let ponger = parties.add(self.spawn(&args("pong"))?);
        let pinger = parties.add(self.spawn(&args("ping"))?);
        parties.expect_ready(ponger)?;
        parties.expect_ready(pinger)?;
        parties.go(pinger)?;
        let results = parties.results()?;
        let r = &results[1];
        let us = |k: &str| field(r, k).map(|ns| ns as f64 / 1e3);
        Ok(format!(
            "W4 iceoryx2 64B ping-pong: one-way p50 {:.2} us, p99 {:.2} us, p999 {:.2} us \
         (RTT/2, {} round trips, p90 {:.2} us, max {:.1} us)",
            us("p50_ns")?,
            us("p99_ns")?,
            us("p999_ns")?,
            field(r, "round_trips")?,
            us("p90_ns")?,
            us("max_ns")?
        ))
    }

    fn spawn(&self, args: &[String]) -> AnyResult<Child> {
        Ok(Command::new(std::env::current_exe()?)
            .arg("__child")
            .arg(self.domain.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?)
    }
}

type ChildResult = HashMap<String, String>;

/// The child processes of one run, with their stdout read line by line.
/// Dropping it kills (by handle) and reaps any child still running, so an
/// error anywhere in the parent leaves no busy-polling process behind.
#[derive(Default)]
struct Parties {
    children: Vec<Child>,
    stdouts: Vec<Lines<BufReader<ChildStdout>>>,
}

impl Parties {
    fn add(&mut self, mut child: Child) -> usize {
        let stdout = child.stdout.take().expect("piped stdout");
        self.stdouts.push(BufReader::new(stdout).lines());
        self.children.push(child);
        self.children.len() - 1
    }

    /// Reads child `i`'s output up to its `READY` line.
    fn expect_ready(&mut self, i: usize) -> AnyResult<()> {
        for line in &mut self.stdouts[i] {
            if line? == "READY" {
                return Ok(());
            }
        }
        Err(format!("child {i} exited before it was ready").into())
    }

    /// Lets child `i` (waiting in `wait_for_go`) start.
    fn go(&mut self, i: usize) -> AnyResult<()> {
        let stdin = self.children[i].stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"GO\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Reads every child's `RESULT` line and waits for it to exit successfully.
    fn results(mut self) -> AnyResult<Vec<ChildResult>> {
        let mut results = Vec::new();
        for i in 0..self.children.len() {
            let mut result = None;
            for line in &mut self.stdouts[i] {
                if let Some(rest) = line?.strip_prefix("RESULT ") {
                    let kv = rest.split_whitespace().filter_map(|kv| kv.split_once('='));
                    result = Some(kv.map(|(k, v)| (k.into(), v.into())).collect());
                }
            }
            let status = self.children[i].wait()?;
            match result {
                Some(r) if status.success() => results.push(r),
                _ => return Err(format!("child {i} failed ({status})").into()),
            }
        }
        Ok(results)
    }
}

impl Drop for Parties {
    fn drop(&mut self) {
        for child in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Child side of the start handshake: announce readiness, wait for `GO`.
fn wait_for_go() -> AnyResult<()> {
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    match line.trim() {
        "GO" => Ok(()),
        other => Err(format!("expected GO from the parent, got {other:?}").into()),
    }
}

fn field(r: &HashMap<String, String>, key: &str) -> AnyResult<u64> {
    Ok(r.get(key)
        .ok_or_else(|| format!("child result lacks {key}"))?
        .parse()?)
}

/// Removes the resources of dead nodes (children that crashed or were killed)
/// in this invocation's private domain.
fn cleanup_dead_nodes(config: &Config) {
    let _ = Node::<ipc::Service>::list(config, |state| {
        if let NodeState::Dead(view) = state {
            let _ = view.try_remove_stale_resources();
        }
        CallbackProgression::Continue
    });
}

/// Removes everything left of the private domain once all its processes are gone.
fn remove_domain(domain: u32, config: &Config) {
    cleanup_dead_nodes(config);
    // SAFETY: the domain is private to this invocation and every child has
    // exited, so no process uses its global management segment any more.
    let _ = unsafe { iceoryx2::testing::remove_global_mgmt_segment::<ipc::Service>(config) };
    let prefix = format!("iox2bench_{domain}_");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                eprintln!("iceoryx2-bench: removing leftover {:?}", entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(domain_root(domain));
}
