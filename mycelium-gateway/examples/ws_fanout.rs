//! WebSocket fan-out load: N WebSocket subscribers on one topic of a running gateway, M
//! messages published over one more WebSocket, and a check that every subscriber received every
//! message in order. Prints one JSON line: connections, messages, the time to connect and
//! subscribe them all, the time until the last subscriber had the last message, deliveries per
//! second, the subscribers missing anything, and the broker's resident memory (VmRSS, from
//! `/proc/<pid>/status`) before, with everyone subscribed, and at the end.
//!
//! ```sh
//! cargo run --release -p mycelium-gateway --example ws_fanout -- \
//!     --url ws://127.0.0.1:8080/ws --topic fan --connections 10000 --messages 100 \
//!     --broker-pid "$(pgrep -f 'mycelium run')"
//! ```
//!
//! Each process may open at most `ulimit -n` sockets: this one needs one per connection.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// How many connections are in their handshake at once: the listener's backlog is finite.
const CONNECTING_AT_ONCE: usize = 256;

/// How long the run may take before it is reported as incomplete.
const DEADLINE: Duration = Duration::from_secs(600);

struct Args {
    url: String,
    topic: String,
    connections: usize,
    messages: u64,
    size: usize,
    broker_pid: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "ws://127.0.0.1:8080/ws".to_owned(),
        topic: "fan".to_owned(),
        connections: 1000,
        messages: 100,
        size: 64,
        broker_pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--topic" => args.topic = value()?,
            "--connections" => args.connections = value()?.parse().map_err(|e| format!("{e}"))?,
            "--messages" => args.messages = value()?.parse().map_err(|e| format!("{e}"))?,
            "--size" => args.size = value()?.parse().map_err(|e| format!("{e}"))?,
            "--broker-pid" => args.broker_pid = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The broker's resident memory in KiB, if its pid was given and readable.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sequence number a message's data starts with (`<n>:` then padding).
fn sequence(text: &str) -> Option<u64> {
    let at = text.find("\"data\":\"")? + 8;
    let rest = &text[at..];
    rest[..rest.find(':')?].parse().ok()
}

/// One subscriber: connects, subscribes, signals `subscribed`, then counts in-order messages
/// until it has `messages` of them. Returns how many it got in order.
async fn subscriber(
    args: Arc<Args>,
    gate: Arc<Semaphore>,
    subscribed: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
) -> Result<u64, String> {
    let permit = gate.acquire().await.map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::connect_async(args.url.as_str())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let subscribe = format!(r#"{{"type":"subscribe","topic":"{}"}}"#, args.topic);
    ws.send(Message::text(subscribe))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"ack""#) => break,
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"error""#) => {
                return Err(format!("subscribe refused: {text}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed before the ack".to_owned()),
        }
    }
    drop(permit);
    subscribed.fetch_add(1, Ordering::Relaxed);
    let mut next = 0u64;
    while next < args.messages {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"message""#) => {
                if sequence(&text) != Some(next) {
                    return Err(format!("expected message {next}, got {text}"));
                }
                next += 1;
            }
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"lagged""#) => {
                return Err(format!("lost messages: {text}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    done.fetch_add(1, Ordering::Relaxed);
    // Stay connected until everyone is done, as a real subscriber would.
    while done.load(Ordering::Relaxed) < args.connections as u64 {
        tokio::select! {
            _ = ws.next() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(next)
}

async fn run(args: Args) -> Result<String, String> {
    let args = Arc::new(args);
    let rss_before = rss_kib(args.broker_pid);
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let subscribed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            tokio::spawn(subscriber(
                args.clone(),
                gate.clone(),
                subscribed.clone(),
                done.clone(),
            ))
        })
        .collect();
    while subscribed.load(Ordering::Relaxed) < args.connections as u64 {
        if start.elapsed() > DEADLINE || tasks.iter().all(|t| t.is_finished()) {
            return Err(format!(
                "only {} of {} subscribed",
                subscribed.load(Ordering::Relaxed),
                args.connections
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = start.elapsed().as_secs_f64();
    let rss_subscribed = rss_kib(args.broker_pid);

    let (mut publisher, _) = tokio_tungstenite::connect_async(args.url.as_str())
        .await
        .map_err(|e| format!("publisher connect: {e}"))?;
    let padding = "x".repeat(args.size.saturating_sub(12));
    let publish_start = Instant::now();
    for n in 0..args.messages {
        let frame = format!(
            r#"{{"type":"publish","topic":"{}","data":"{n}:{padding}"}}"#,
            args.topic
        );
        publisher
            .send(Message::text(frame))
            .await
            .map_err(|e| format!("publish: {e}"))?;
    }
    let mut rss_peak = rss_subscribed;
    while done.load(Ordering::Relaxed) < args.connections as u64 {
        if publish_start.elapsed() > DEADLINE || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        rss_peak = rss_peak.max(rss_kib(args.broker_pid));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deliver_s = publish_start.elapsed().as_secs_f64();
    let complete = done.load(Ordering::Relaxed);
    let mut errors = Vec::new();
    let mut received = 0u64;
    for task in tasks {
        match task.await {
            Ok(Ok(n)) => received += n,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let _ = publisher.close(None).await;
    let json = |v: Option<u64>| v.map_or("null".to_owned(), |v| v.to_string());
    Ok(format!(
        "{{\"connections\":{},\"messages\":{},\"size\":{},\"connect_s\":{connect_s:.3},\
         \"deliver_s\":{deliver_s:.3},\"deliveries\":{received},\
         \"deliveries_per_s\":{:.0},\"complete_subscribers\":{complete},\
         \"incomplete_subscribers\":{},\"rss_kib_before\":{},\"rss_kib_subscribed\":{},\
         \"rss_kib_peak\":{},\"first_error\":{}}}",
        args.connections,
        args.messages,
        args.size,
        received as f64 / deliver_s,
        args.connections as u64 - complete,
        json(rss_before),
        json(rss_subscribed),
        json(rss_peak),
        serde_json::to_string(&errors.first()).unwrap_or_default(),
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ws_fanout: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ws_fanout: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            if line.contains("\"incomplete_subscribers\":0,") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ws_fanout: {e}");
            ExitCode::FAILURE
        }
    }
}
