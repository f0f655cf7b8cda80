//! The orchestrator: spawns every worker, collects their lines, merges their results.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mycelium_client::Client;
use mycelium_transport::RoutingKind;

use crate::output::{errln, errprint, humanln, outln};
use crate::socket::{client_runtime, Transport};

use super::args::{BenchArgs, RoutingArg};
use super::histogram::Histogram;
use super::patterns::IdlePatterns;
use super::stamp::LATENCY_SAMPLE_EVERY;
use super::tally::WorkerResult;

/// How long workers get to connect and subscribe.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One spawned worker and the lines it prints.
pub(crate) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    progress: u64,
    result: Option<WorkerResult>,
}

impl Worker {
    pub(crate) fn spawn(args: &[String]) -> anyhow::Result<Worker> {
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

    pub(crate) fn wait_ready(&mut self) -> anyhow::Result<()> {
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
    pub(crate) fn finish(mut self) -> anyhow::Result<WorkerResult> {
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
        let client = Client::connect(socket)
            .await
            .map_err(crate::report::connect_failed)?;
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
                super::shm::preflight(socket, topic, args.size)?;
            }
            Ok(Transport::Shm)
        }
        Some(Transport::Uds) => Ok(Transport::Uds),
        None => {
            for topic in topics {
                if let Err(error) = super::shm::preflight(socket, topic, args.size) {
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

pub(crate) fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let socket = args.socket.resolve()?;
    if args.busy_poll && args.transport == Some(Transport::Uds) {
        bail!("--busy-poll applies to --transport shm only");
    }
    if let Some(rounds) = args.pingpong {
        return round_trips(&args, &socket, rounds, RoundTrip::PingPong);
    }
    if let Some(rounds) = args.request {
        return round_trips(&args, &socket, rounds, RoundTrip::Request);
    }
    if let Some(mode) = args.durable {
        return super::durable::bench(&args, &socket, mode);
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
    let _patterns = IdlePatterns::hold(&socket, args.patterns)?;
    let common = |role: &str| {
        let mut common = vec![
            "--role".to_owned(),
            role.to_owned(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--topic".to_owned(),
            topic.clone(),
            "--headers".to_owned(),
            args.headers.to_string(),
            "--size".to_owned(),
            args.size.to_string(),
        ];
        common.extend(transport_args(transport, &args));
        common
    };
    let duration_ms = args
        .duration
        .map_or(0, |secs| (secs * 1000.0).round() as u64);
    let expected_for = |sent: u64| match args.routing {
        RoutingArg::Fanout => sent * u64::from(args.subscribers),
        RoutingArg::Queue => sent,
    };
    // A run for a duration learns what was sent from the publishers' results; until then the
    // subscribers run until told to stop.
    let mut expected_total = args
        .duration
        .is_none()
        .then(|| expected_for(u64::from(args.publishers) * args.count));
    let per_subscriber = match (args.routing, args.duration) {
        (RoutingArg::Fanout, None) => u64::from(args.publishers) * args.count,
        _ => 0,
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
            "--duration-ms".to_owned(),
            duration_ms.to_string(),
            "--rate".to_owned(),
            args.rate.unwrap_or(0).to_string(),
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
        if publishers_done && publishers_done_at.is_none() {
            publishers_done_at = Some(Instant::now());
            if expected_total.is_none() {
                let sent = publishers
                    .iter()
                    .filter_map(|p| p.result.as_ref())
                    .map(|r| r.sent)
                    .sum();
                expected_total = Some(expected_for(sent));
            }
        }
        if show_progress {
            match expected_total {
                Some(expected) => errprint!(
                    "\rreceived {total}/{expected} ({:.0}%)   ",
                    100.0 * total as f64 / expected.max(1) as f64
                ),
                None => errprint!("\rreceived {total}   "),
            }
        }
        if expected_total.is_some_and(|expected| total >= expected) {
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
    let offered = args
        .rate
        .map(|rate| rate as f64 * f64::from(args.publishers));
    let achieved: f64 = pub_results
        .iter()
        .filter(|r| r.seconds > 0.0)
        .map(|r| r.sent as f64 / r.seconds)
        .sum();

    let routing_name = match args.routing {
        RoutingArg::Fanout => "fanout",
        RoutingArg::Queue => "queue",
    };
    let how_many = match (args.duration, args.rate) {
        (Some(secs), Some(rate)) => format!("{rate} msg/s for {secs} s per publisher"),
        (Some(secs), None) => format!("for {secs} s"),
        (None, Some(rate)) => format!("x {} per publisher at {rate} msg/s", args.count),
        (None, None) => format!("x {} per publisher", args.count),
    };
    let caption = format!(
        "{} publisher(s) -> {} {routing_name} subscriber(s), {} B {how_many}, transport {}{}",
        args.publishers,
        args.subscribers,
        args.size,
        transport.name(),
        if args.busy_poll { " (busy-poll)" } else { "" },
    );
    humanln!(args.json, "mycelium bench: {caption}");
    humanln!(args.json, "  delivered: {median:.0} msg/s per subscriber (median), {mb:.1} MB/s; {total_rate:.0} msg/s in total");
    if let Some(offered) = offered {
        humanln!(
            args.json,
            "  offered {offered:.0} msg/s, achieved {achieved:.0} msg/s (publishers)"
        );
        humanln!(
            args.json,
            "  latency from each message's scheduled send time (one-way, {} samples): p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us",
            latency.total()
        );
    } else {
        humanln!(
            args.json,
            "  latency under load (one-way, {} samples: 1 message in {LATENCY_SAMPLE_EVERY}): p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us",
            latency.total()
        );
    }
    humanln!(
        args.json,
        "  sent {sent}, received {received}, lost {lost}, reordered {reordered}"
    );
    if let Some(path) = &args.plot {
        let timelines: Vec<_> = sub_results.iter().map(|r| r.timeline.clone()).collect();
        super::plot::write(
            path,
            &caption,
            &latency,
            &super::timeline::throughput(&timelines, first_send),
        )?;
        humanln!(args.json, "  plot written to {}", path.display());
    }
    if args.json {
        let doc = serde_json::json!({
            "mode": "throughput", "transport": transport.name(), "busy_poll": args.busy_poll, "routing": args.routing, "publishers": args.publishers,
            "subscribers": args.subscribers, "size": args.size,
            "count": if args.duration.is_some() { None } else { Some(args.count) },
            "duration_s": args.duration, "rate": args.rate,
            "offered_msgs_per_sec": offered, "achieved_msgs_per_sec": achieved,
            "idle_patterns": args.patterns, "headers": args.headers,
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

/// What a latency run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundTrip {
    /// A pinger and an echo process over two topics; one-way = RTT / 2.
    PingPong,
    /// `request` answered by `reply`; whole round trips.
    Request,
}

fn round_trips(
    args: &BenchArgs,
    socket: &PathBuf,
    rounds: u64,
    mode: RoundTrip,
) -> anyhow::Result<ExitCode> {
    let default_topic = match mode {
        RoundTrip::PingPong => "bench.ping",
        RoundTrip::Request => "bench.request",
    };
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| default_topic.to_owned());
    preflight(socket, &topic, None, args.size)?;
    let mut topics = vec![topic.as_str()];
    if mode == RoundTrip::PingPong {
        preflight(socket, &args.reply_topic, None, args.size)?;
        topics.push(&args.reply_topic);
    }
    let transport = choose_transport(args, socket, &topics)?;
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
    let (answering, asking) = match mode {
        RoundTrip::PingPong => ("echo", "pinger"),
        RoundTrip::Request => ("responder", "requester"),
    };
    let mut answerer = Worker::spawn(&common(answering))?;
    answerer.wait_ready()?;
    let asker = Worker::spawn(&common(asking))?;
    let result = asker.finish()?;
    answerer.finish()?;
    let latency = Histogram::from_sparse(&result.latency);
    let (p50, p99, p999) = quantiles_us(&latency);
    let (name, measured) = match mode {
        RoundTrip::PingPong => ("pingpong", "one-way latency"),
        RoundTrip::Request => ("request", "request/reply round trip"),
    };
    humanln!(
        args.json,
        "mycelium bench --{name}: {rounds} round trips, {} B, transport {}{}{}{}",
        args.size,
        transport.name(),
        if args.busy_poll { " (busy-poll)" } else { "" },
        if args.interval_us > 0 {
            format!(", {} us between round trips", args.interval_us)
        } else {
            String::new()
        },
        if mode == RoundTrip::PingPong {
            ", one-way = RTT/2"
        } else {
            ""
        },
    );
    humanln!(
        args.json,
        "  {measured}: p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us"
    );
    if args.json {
        let doc = serde_json::json!({
            "mode": name, "transport": transport.name(), "busy_poll": args.busy_poll, "interval_us": args.interval_us, "size": args.size, "count": rounds,
            "msgs_per_sec": rounds as f64 / result.seconds.max(f64::MIN_POSITIVE), "mb_per_sec": 0.0,
            "p50_us": p50, "p99_us": p99, "p999_us": p999,
            "sent": result.sent, "received": result.received, "lost": result.sent.saturating_sub(result.received),
        });
        outln!("{doc}");
    }
    Ok(ExitCode::SUCCESS)
}
