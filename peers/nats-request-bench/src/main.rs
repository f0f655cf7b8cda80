//! Peer benchmark: NATS request/reply round trips, to set beside `mycelium bench --request N`.
//!
//! Two roles, each its own process:
//! - `responder`: subscribes to the subject and answers every request with its own payload
//!   (published to the request's reply subject). Prints `READY` on stdout once the
//!   subscription has reached the server, so a script can start the requester after it.
//! - `requester`: `WARMUP` untimed round trips, then `--count` timed ones, one request in
//!   flight, through `Client::request`. A round trip is measured from just before `request`
//!   to the return of its reply, so it includes both client libraries, both hops through
//!   nats-server, and the reply-inbox routing `request` does for us.
//!
//! The histogram is exact: every round trip's nanoseconds kept in a `Vec<u64>` and sorted.

use std::process::ExitCode;
use std::time::Instant;

use futures_util::StreamExt;

/// Untimed round trips before the measured ones (connection, allocator and caches settle).
const WARMUP: u64 = 1000;

const USAGE: &str = concat!(
    "usage: nats-request-bench responder --url nats://127.0.0.1:PORT [--subject bench.request]\n",
    "       nats-request-bench requester --url nats://127.0.0.1:PORT [--subject bench.request]",
    " [--count N] [--size BYTES]"
);

/// What the command line asked for.
struct Args {
    role: Role,
    url: String,
    subject: String,
    count: u64,
    size: usize,
}

enum Role {
    Responder,
    Requester,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let role = match it.next().as_deref() {
        Some("responder") => Role::Responder,
        Some("requester") => Role::Requester,
        Some(other) => return Err(format!("unknown role {other:?}")),
        None => return Err("missing role".into()),
    };
    let mut args = Args {
        role,
        url: String::new(),
        subject: "bench.request".into(),
        count: 20_000,
        size: 64,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => args.url = value,
            "--subject" => args.subject = value,
            "--count" => {
                args.count = value
                    .parse()
                    .map_err(|e| format!("--count {value:?}: {e}"))?
            }
            "--size" => {
                args.size = value
                    .parse()
                    .map_err(|e| format!("--size {value:?}: {e}"))?
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if args.url.is_empty() {
        return Err("--url is required".into());
    }
    if args.count == 0 {
        return Err("--count must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // One thread, as Mycelium's own bench clients run: no cross-thread wake-ups in the figure.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.role {
            Role::Responder => respond(&args).await,
            Role::Requester => request(&args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn respond(args: &Args) -> Result<(), BoxError> {
    let client = async_nats::connect(args.url.as_str()).await?;
    let mut subscription = client.subscribe(args.subject.clone()).await?;
    // The flush round trip guarantees the server has the SUB before we say READY.
    client.flush().await?;
    println!("READY");
    while let Some(message) = subscription.next().await {
        if let Some(reply) = message.reply {
            client.publish(reply, message.payload).await?;
        }
    }
    Ok(())
}

async fn request(args: &Args) -> Result<(), BoxError> {
    let client = async_nats::connect(args.url.as_str()).await?;
    let server = client.server_info();
    eprintln!(
        "nats-server {} at {}, payload {} B, {} warm-up + {} timed round trips",
        server.version, args.url, args.size, WARMUP, args.count
    );
    let payload = bytes_of(args.size);
    let mut samples: Vec<u64> = Vec::with_capacity(args.count as usize);
    for round in 0..WARMUP + args.count {
        let start = Instant::now();
        let reply = client
            .request(args.subject.clone(), payload.clone())
            .await?;
        let elapsed = start.elapsed();
        if reply.payload.len() != payload.len() {
            return Err(format!(
                "reply of {} bytes to a {}-byte request",
                reply.payload.len(),
                payload.len()
            )
            .into());
        }
        if round >= WARMUP {
            samples.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    samples.sort_unstable();
    let p50 = percentile_us(&samples, 0.50);
    let p99 = percentile_us(&samples, 0.99);
    let p999 = percentile_us(&samples, 0.999);
    println!(
        "NATS request/reply {} B: p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us ({} round trips)",
        args.size,
        samples.len()
    );
    println!(
        "{{\"p50_us\":{p50:.1},\"p99_us\":{p99:.1},\"p999_us\":{p999:.1},\"count\":{}}}",
        samples.len()
    );
    Ok(())
}

/// A payload of `size` bytes (content is irrelevant to NATS; non-zero so nothing special-cases it).
fn bytes_of(size: usize) -> bytes::Bytes {
    bytes::Bytes::from((0..size).map(|i| (i % 251) as u8 + 1).collect::<Vec<u8>>())
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}
