//! A worker's role over the broker's Unix socket.

use std::time::{Duration, Instant};

use anyhow::bail;
use mycelium_client::{Client, RecvError, SubscriptionEnd};

use crate::output::outln;

use super::args::WorkerArgs;
use super::histogram::Histogram;
use super::schedule::{Next, Schedule};
use super::stamp::{now_ns, stamp, stamp_with, PINGPONG_WARMUP};
use super::tally::{Tally, WorkerResult};

pub(crate) async fn run_publisher(
    client: &Client,
    args: &WorkerArgs,
) -> anyhow::Result<WorkerResult> {
    let publisher = client.publisher(&args.topic).await?;
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
            // On this one-thread runtime the client's writer sends what is queued only when
            // the publisher yields, so every wait yields first. The sleep itself is the
            // thread's: the runtime's timer ticks in milliseconds, and would send paced
            // messages up to a millisecond late.
            Next::Wait(d) => {
                tokio::task::yield_now().await;
                if !d.is_zero() {
                    std::thread::sleep(d);
                }
            }
            Next::Send { stamp_ns } => {
                stamp_with(&mut payload, base | seq, stamp_ns);
                if headers.is_empty() {
                    publisher.publish(&payload).await?;
                } else {
                    publisher.publish_with(&headers, &payload).await?;
                }
                seq += 1;
            }
        }
    }
    client.flush().await?;
    Ok(WorkerResult {
        sent: seq,
        seconds: start.elapsed().as_secs_f64(),
        clock_ns: start_ns,
        ..WorkerResult::default()
    })
}

pub(crate) async fn run_subscriber(
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
    loop {
        if args.expected > 0 && received >= args.expected {
            break;
        }
        // Take everything that is ready without awaiting, then report progress, then wait.
        let before = received;
        while let Ok(message) = subscription.try_recv() {
            tally.check(&message);
            received += 1;
            if args.expected > 0 && received >= args.expected {
                break;
            }
        }
        let took = received > before;
        if took {
            last = Instant::now();
            last_ns = now_ns();
            first.get_or_insert(last);
            tally.received_at(received - before, last_ns);
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
                Ok(message) => {
                    tally.check(&message);
                    received += 1;
                    last = Instant::now();
                    last_ns = now_ns();
                    first.get_or_insert(last);
                    tally.received_at(1, last_ns);
                }
                // drop_oldest / drop_newest: the tally sees the gap in the sequence numbers.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Ended(SubscriptionEnd::Closed)) => break,
                Err(error) => return Err(error.into()),
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

pub(crate) async fn run_echo(
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
                Ok(message) => {
                    reply.publish(&message).await?;
                    echoed += 1;
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Ended(SubscriptionEnd::Closed)) => break,
                Err(error) => return Err(error.into()),
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

pub(crate) async fn run_pinger(client: &Client, args: &WorkerArgs) -> anyhow::Result<WorkerResult> {
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
            Ok(Ok(_)) => {}
            Ok(Err(RecvError::Ended(SubscriptionEnd::Closed))) => {
                bail!("the reply subscription ended")
            }
            Ok(Err(error)) => return Err(error.into()),
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
