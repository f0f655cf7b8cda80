//! Peer benchmark: NATS JetStream with file storage, to set beside Mycelium's durable topics.
//!
//! Two modes, each run as its own process against a running `nats-server -js`:
//! - `publish`: deletes and recreates the stream (file storage, one subject), then publishes
//!   `--count` messages of `--size` bytes as fast as it can with the acks pipelined: every
//!   publish returns an ack future at once, and at most `--window` of them are outstanding (the
//!   oldest is awaited before the next publish once the window is full). The clock runs from the
//!   first publish to the last ack received. Afterwards the stream's message count is checked.
//! - `consume`: on a stream that already holds at least `--count` messages (a `publish` run
//!   before it), deletes and recreates one durable pull consumer (deliver all, explicit ack)
//!   and has `--consumers` clients share it, each on its own OS thread, own tokio
//!   `current_thread` runtime and own connection. Every message is acked individually
//!   (`Message::ack`, a fire-and-forget publish to the ack subject, as a normal consumer does).
//!   The clock runs from the start of the consumers until the server's ack floor reaches the
//!   `--count`-th message, i.e. until the server has processed every ack.
//!
//! Each result is one human line on stderr and one JSON line on stdout.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

const USAGE: &str = concat!(
    "usage: jetstream-bench publish --url nats://127.0.0.1:PORT [--stream BENCH]",
    " [--subject bench.durable] [--count N] [--size BYTES] [--window ACKS] [--label TEXT]\n",
    "       jetstream-bench consume --url nats://127.0.0.1:PORT [--stream BENCH]",
    " [--count N] [--size BYTES] [--consumers K] [--batch MSGS] [--max-ack-pending MSGS] [--label TEXT]"
);

/// Name of the durable consumer `consume` recreates.
const DURABLE: &str = "bench-group";

/// What the command line asked for.
#[derive(Clone)]
struct Args {
    mode: Mode,
    url: String,
    stream: String,
    subject: String,
    count: u64,
    size: usize,
    window: usize,
    consumers: usize,
    batch: usize,
    max_ack_pending: i64,
    /// Free text copied into the JSON line (run.sh puts the server's fsync setting there).
    label: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Publish,
    Consume,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("publish") => Mode::Publish,
        Some("consume") => Mode::Consume,
        Some(other) => return Err(format!("unknown mode {other:?}")),
        None => return Err("missing mode".into()),
    };
    let mut args = Args {
        mode,
        url: String::new(),
        stream: "BENCH".into(),
        subject: "bench.durable".into(),
        count: 200_000,
        size: 64,
        window: 1024,
        consumers: 2,
        batch: 1000,
        max_ack_pending: 20_000,
        label: String::new(),
    };
    fn num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        value.parse().map_err(|e| format!("{flag} {value:?}: {e}"))
    }
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => args.url = value,
            "--stream" => args.stream = value,
            "--subject" => args.subject = value,
            "--count" => args.count = num(&flag, &value)?,
            "--size" => args.size = num(&flag, &value)?,
            "--window" => args.window = num(&flag, &value)?,
            "--consumers" => args.consumers = num(&flag, &value)?,
            "--batch" => args.batch = num(&flag, &value)?,
            "--max-ack-pending" => args.max_ack_pending = num(&flag, &value)?,
            "--label" => args.label = value,
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if args.url.is_empty() {
        return Err("--url is required".into());
    }
    if args.count == 0 || args.window == 0 || args.consumers == 0 || args.batch == 0 {
        return Err("--count, --window, --consumers and --batch must be at least 1".into());
    }
    Ok(args)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.mode {
        Mode::Publish => block_on(publish(args)),
        Mode::Consume => consume(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a future on a fresh single-threaded runtime, as Mycelium's own bench clients run.
fn block_on<F: std::future::Future<Output = Result<T, BoxError>>, T>(f: F) -> Result<T, BoxError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

async fn publish(args: Args) -> Result<(), BoxError> {
    let client = async_nats::connect(args.url.as_str()).await?;
    let version = client.server_info().version;
    // The library's own in-flight limit sits above ours, so ours is the one that applies;
    // with backpressure on it would wait rather than fail if it were ever reached.
    let js = jetstream::context::ContextBuilder::new()
        .max_ack_inflight(args.window + 1)
        .backpressure_on_inflight(true)
        .build(client);

    // A clean stream each run: the figure is for appending to an empty file store.
    if js.get_stream(&args.stream).await.is_ok() {
        js.delete_stream(&args.stream)
            .await
            .map_err(|e| format!("deleting stream {}: {e}", args.stream))?;
    }
    js.create_stream(stream::Config {
        name: args.stream.clone(),
        subjects: vec![args.subject.clone()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {}: {e}", args.stream))?;

    eprintln!(
        "nats-server {version} at {}, stream {} (file), {} x {} B, ack window {}",
        args.url, args.stream, args.count, args.size, args.window
    );
    let payload = bytes_of(args.size);
    let mut pending = std::collections::VecDeque::with_capacity(args.window);
    let start = Instant::now();
    for _ in 0..args.count {
        if pending.len() == args.window {
            let ack: jetstream::context::PublishAckFuture = pending.pop_front().unwrap();
            ack.await?;
        }
        pending.push_back(js.publish(args.subject.clone(), payload.clone()).await?);
    }
    while let Some(ack) = pending.pop_front() {
        ack.await?;
    }
    let secs = start.elapsed().as_secs_f64();

    let info = js.get_stream(&args.stream).await?.get_info().await?;
    if info.state.messages != args.count {
        return Err(format!(
            "stream holds {} messages after {} acked publishes",
            info.state.messages, args.count
        )
        .into());
    }
    report("publish", &args, &version, secs, args.count);
    Ok(())
}

fn consume(args: Args) -> Result<(), BoxError> {
    // Set-up on its own connection: check the stream, recreate the durable consumer.
    let version = block_on(async {
        let client = async_nats::connect(args.url.as_str()).await?;
        let version = client.server_info().version;
        let js = jetstream::new(client);
        let stream = js
            .get_stream(&args.stream)
            .await
            .map_err(|e| format!("stream {}: {e} (run `publish` first)", args.stream))?;
        let held = stream.get_info().await?.state.messages;
        if held < args.count {
            return Err(format!(
                "stream {} holds {held} messages, fewer than --count {}",
                args.stream, args.count
            )
            .into());
        }
        let _ = stream.delete_consumer(DURABLE).await; // absent on a first run
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(DURABLE.into()),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: args.max_ack_pending,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("creating consumer {DURABLE}: {e}"))?;
        Ok::<_, BoxError>(version)
    })?;
    eprintln!(
        "nats-server {version} at {}, stream {}, durable pull consumer {DURABLE}: {} consumers, \
         batch {}, max_ack_pending {}, {} messages acked one by one",
        args.url, args.stream, args.consumers, args.batch, args.max_ack_pending, args.count
    );

    // Each consumer connects before the clock starts; the barrier releases them together.
    let acked = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(args.consumers + 1));
    let mut threads = Vec::new();
    for _ in 0..args.consumers {
        let (args, acked, barrier) = (args.clone(), acked.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            block_on(consume_one(args, acked, barrier))
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut per_consumer = Vec::new();
    for thread in threads {
        per_consumer.push(thread.join().map_err(|_| "consumer thread panicked")??);
    }
    // Every ack has been flushed to the server; wait until the server has applied them all.
    let floor = block_on(async {
        let client = async_nats::connect(args.url.as_str()).await?;
        let js = jetstream::new(client);
        let consumer: consumer::PullConsumer = js
            .get_stream(&args.stream)
            .await?
            .get_consumer(DURABLE)
            .await?;
        loop {
            let info = consumer.get_info().await?;
            if info.ack_floor.consumer_sequence >= args.count {
                return Ok::<_, BoxError>(info.ack_floor.consumer_sequence);
            }
            if start.elapsed() > Duration::from_secs(600) {
                return Err(format!(
                    "ack floor stuck at {} of {}",
                    info.ack_floor.consumer_sequence, args.count
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("per consumer: {per_consumer:?}, server ack floor {floor}");
    report("consume", &args, &version, secs, args.count);
    Ok(())
}

/// One member of the shared durable consumer: acks messages until `count` have been acked in
/// total (over all members), then flushes its connection so every ack is at the server.
async fn consume_one(
    args: Args,
    acked: Arc<AtomicU64>,
    barrier: Arc<std::sync::Barrier>,
) -> Result<u64, BoxError> {
    let client = async_nats::connect(args.url.as_str()).await?;
    let js = jetstream::new(client.clone());
    let consumer: consumer::PullConsumer = js
        .get_stream(&args.stream)
        .await?
        .get_consumer(DURABLE)
        .await?;
    barrier.wait();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(args.batch)
        .messages()
        .await?;
    let mut mine = 0u64;
    while acked.load(Ordering::Relaxed) < args.count {
        // Short waits, so a member whose partner took the last messages notices the end.
        let next = match tokio::time::timeout(Duration::from_millis(50), messages.next()).await {
            Ok(next) => next,
            Err(_) => continue,
        };
        let message = match next {
            Some(message) => message?,
            None => break,
        };
        if message.payload.len() != args.size {
            return Err(format!(
                "a {}-byte message where --size is {}",
                message.payload.len(),
                args.size
            )
            .into());
        }
        message.ack().await?;
        mine += 1;
        acked.fetch_add(1, Ordering::Relaxed);
    }
    client.flush().await?;
    Ok(mine)
}

/// One human line on stderr and one JSON line on stdout.
fn report(mode: &str, args: &Args, version: &str, secs: f64, count: u64) {
    let msgs = count as f64 / secs;
    let payload_bytes = args.size;
    let mb = msgs * payload_bytes as f64 / 1e6;
    eprintln!(
        "JetStream {mode} {} B: {:.0} msg/s, {mb:.1} MB/s ({count} messages in {secs:.3} s)",
        payload_bytes, msgs
    );
    let extra = match mode {
        "publish" => format!("\"window\":{}", args.window),
        _ => format!(
            "\"consumers\":{},\"batch\":{},\"max_ack_pending\":{}",
            args.consumers, args.batch, args.max_ack_pending
        ),
    };
    println!(
        "{{\"peer\":\"nats-jetstream\",\"server\":\"{version}\",\"mode\":\"{mode}\",\
         \"storage\":\"file\",\"label\":\"{}\",\"size\":{payload_bytes},\"count\":{count},\
         {extra},\"secs\":{secs:.3},\"msgs_per_s\":{msgs:.0},\"mb_per_s\":{mb:.1}}}",
        args.label.replace('"', "'")
    );
}

/// A payload of `size` bytes (content is irrelevant to NATS; non-zero so nothing special-cases it).
fn bytes_of(size: usize) -> bytes::Bytes {
    bytes::Bytes::from((0..size).map(|i| (i % 251) as u8 + 1).collect::<Vec<u8>>())
}
