//! `mycelium bench --request N`: request/reply round trips through the client library's
//! `request` and `reply`, one request in flight, a responder process answering each with its
//! own payload. Over the socket the round trip crosses the broker four times (request in and
//! out, reply in and out); over shared memory it is two one-hop deliveries (the request in
//! the topic's ring, the reply in the requester's inbox ring).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use mycelium_client::{blocking, Client, RecvError, RecvTimeoutError, SubscriptionEnd};

use crate::output::outln;

use super::args::WorkerArgs;
use super::histogram::Histogram;
use super::stamp::{now_ns, stamp, PINGPONG_WARMUP};
use super::tally::WorkerResult;

/// How long a request waits for its reply before the benchmark gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Round trips timed (after the warm-up) as the requester saw them.
fn requested(args: &WorkerArgs, latency: Histogram, start: Instant) -> WorkerResult {
    WorkerResult {
        sent: args.count,
        received: args.count,
        seconds: start.elapsed().as_secs_f64(),
        latency: latency.to_sparse(),
        ..WorkerResult::default()
    }
}

pub(crate) async fn run_requester(
    client: &Client,
    args: &WorkerArgs,
) -> anyhow::Result<WorkerResult> {
    let mut payload = vec![0u8; args.size];
    let mut latency = Histogram::default();
    let start = Instant::now();
    for round in 0..PINGPONG_WARMUP + args.count {
        stamp(&mut payload, round, true);
        let sent_at = now_ns();
        client.request(&args.topic, &payload, REPLY_TIMEOUT).await?;
        if round >= PINGPONG_WARMUP {
            latency.record(now_ns().saturating_sub(sent_at));
        }
    }
    Ok(requested(args, latency, start))
}

pub(crate) async fn run_responder(
    client: &Client,
    args: &WorkerArgs,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<WorkerResult> {
    let mut requests = client.subscribe(&args.topic).await?;
    outln!("ready");
    let mut answered = 0;
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Ok(request) => {
                    client.reply(&request, request.payload()).await?;
                    answered += 1;
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Ended(SubscriptionEnd::Closed)) => break,
                Err(error) => return Err(error.into()),
            },
            _ = &mut stop => break,
        }
    }
    Ok(WorkerResult {
        sent: answered,
        received: answered,
        ..WorkerResult::default()
    })
}

pub(crate) fn run_requester_blocking(
    client: &blocking::Client,
    args: &WorkerArgs,
) -> anyhow::Result<WorkerResult> {
    let mut payload = vec![0u8; args.size];
    let mut latency = Histogram::default();
    let start = Instant::now();
    for round in 0..PINGPONG_WARMUP + args.count {
        stamp(&mut payload, round, true);
        let sent_at = now_ns();
        client.request(&args.topic, &payload, REPLY_TIMEOUT)?;
        if round >= PINGPONG_WARMUP {
            latency.record(now_ns().saturating_sub(sent_at));
        }
    }
    Ok(requested(args, latency, start))
}

pub(crate) fn run_responder_blocking(
    client: &blocking::Client,
    args: &WorkerArgs,
    stop: &AtomicBool,
) -> anyhow::Result<WorkerResult> {
    let mut requests = client.subscribe(&args.topic)?;
    outln!("ready");
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(request) => {
                client.reply(&request, request.payload())?;
                answered += 1;
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Lagged(_)) => {}
            Err(error) => bail!("the request subscription ended: {error}"),
        }
    }
    Ok(WorkerResult {
        sent: answered,
        received: answered,
        ..WorkerResult::default()
    })
}
