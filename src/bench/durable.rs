//! `mycelium bench --durable MODE`: durable topics, every party its own process.
//!
//! - `publish`: each publisher sends `--count` plain publishes as fast as it can, then one
//!   confirmed publish, and stops its clock when the broker answers that one: the log stores a
//!   connection's messages in order and syncs a prefix, so that answer means every message
//!   before it is stored as the topic's `fsync` promises. Throughput = messages / that time.
//! - `confirm`: each publisher sends every message as a confirmed publish, with up to
//!   `--window` (default 1024) unanswered at once (as JetStream's and Redis's benchmarks keep
//!   a window of acks), the clock stopping at the last answer. Answers come when the topic's
//!   `fsync` makes the message durable, so under `interval:<d>` the rate is at most window / d.
//! - `replay`: one publisher stores `--count` messages first; then one reader replays them
//!   from the first one's offset, the clock running from its first message to its last.
//! - `group`: one publisher stores `--count` messages first; then `--subscribers` processes
//!   join one fresh consumer group at the first one's offset and ack every message; the clock
//!   runs from their start until the broker reports the group's committed position past the
//!   last message (every ack counted by the broker, not only sent).
//!
//! The topic (`--topic`, default `bench.durable`) must be durable in the broker's config.

use std::collections::VecDeque;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mycelium_client::{Client, DurableOptions, StartPosition};

use crate::output::{humanln, outln};
use crate::socket::client_runtime;

use super::args::{BenchArgs, DurableMode, WorkerArgs};
use super::orchestrate::Worker;
use super::stamp::stamp;
use super::tally::WorkerResult;

/// How long a group run may go without its committed position moving before it gives up.
const STALL: Duration = Duration::from_secs(30);

/// Publisher (`publish` and `confirm`): the offset of its first message goes back in
/// `first_offset`.
pub(crate) async fn run_publisher(
    client: &Client,
    args: &WorkerArgs,
    confirm_each: bool,
) -> anyhow::Result<WorkerResult> {
    let mut payload = vec![0u8; args.size];
    let start = Instant::now();
    let first_offset;
    if confirm_each {
        let window = args.window.max(1);
        let mut in_flight: VecDeque<tokio::task::JoinHandle<_>> = VecDeque::with_capacity(window);
        let mut first = None;
        for seq in 0..args.count {
            stamp(&mut payload, seq, false);
            if in_flight.len() == window {
                let offset = in_flight.pop_front().context("window")?.await??;
                first.get_or_insert(offset);
            }
            let (client, topic, body) = (client.clone(), args.topic.clone(), payload.clone());
            in_flight.push_back(tokio::spawn(async move {
                client.publish_durable(&topic, &body).await
            }));
        }
        for handle in in_flight {
            let offset = handle.await??;
            first.get_or_insert(offset);
        }
        first_offset = first.unwrap_or(0);
    } else {
        let publisher = client.publisher(&args.topic).await?;
        for seq in 0..args.count {
            stamp(&mut payload, seq, false);
            publisher.publish(&payload).await?;
        }
        stamp(&mut payload, args.count, false);
        let last = client.publish_durable(&args.topic, &payload).await?;
        first_offset = last.saturating_sub(args.count);
    }
    let sent = args.count + u64::from(!confirm_each);
    Ok(WorkerResult {
        sent,
        received: sent,
        seconds: start.elapsed().as_secs_f64(),
        first_offset: Some(first_offset),
        ..WorkerResult::default()
    })
}

/// Replayer (`replay`): reads `count` messages from `from_offset`.
pub(crate) async fn run_replayer(
    client: &Client,
    args: &WorkerArgs,
) -> anyhow::Result<WorkerResult> {
    let mut sub = client
        .subscribe_durable(
            &args.topic,
            DurableOptions::replay(StartPosition::Offset(args.from_offset)).prefetch(4096),
        )
        .await?;
    let mut received = 0u64;
    let mut start = None;
    while received < args.count {
        let message = sub.recv().await?;
        start.get_or_insert_with(Instant::now);
        received += 1;
        drop(message);
    }
    Ok(WorkerResult {
        received,
        seconds: start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        ..WorkerResult::default()
    })
}

/// Group member (`group`): acks every message until told to stop.
pub(crate) async fn run_group_member(
    client: &Client,
    args: &WorkerArgs,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<WorkerResult> {
    let options = DurableOptions::group(args.group.clone())
        .start(StartPosition::Offset(args.from_offset))
        .prefetch(4096);
    let mut sub = client.subscribe_durable(&args.topic, options).await?;
    outln!("ready");
    let mut received = 0u64;
    loop {
        tokio::select! {
            message = sub.recv() => {
                message?.ack();
                received += 1;
                if received % 65_536 == 0 {
                    outln!("progress {received}");
                }
            }
            _ = &mut stop => break,
        }
    }
    sub.flush_acks();
    Ok(WorkerResult {
        received,
        ..WorkerResult::default()
    })
}

pub(crate) fn bench(
    args: &BenchArgs,
    socket: &Path,
    mode: DurableMode,
) -> anyhow::Result<ExitCode> {
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| "bench.durable".to_owned());
    let common = |role: &str| {
        vec![
            "--role".to_owned(),
            role.to_owned(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--topic".to_owned(),
            topic.clone(),
            "--size".to_owned(),
            args.size.to_string(),
        ]
    };
    let publish = |publishers: u32, confirm: bool| -> anyhow::Result<Vec<WorkerResult>> {
        let mut workers = Vec::new();
        for index in 0..publishers {
            let mut a = common(if confirm {
                "durable-confirmer"
            } else {
                "durable-publisher"
            });
            a.extend([
                "--index".to_owned(),
                index.to_string(),
                "--count".to_owned(),
                args.count.to_string(),
                "--window".to_owned(),
                args.window.to_string(),
            ]);
            workers.push(Worker::spawn(&a)?);
        }
        workers.into_iter().map(Worker::finish).collect()
    };
    let size = f64::from(args.size);
    let (caption, msgs_per_sec, extra) = match mode {
        DurableMode::Publish | DurableMode::Confirm => {
            let confirm = mode == DurableMode::Confirm;
            let results = publish(args.publishers, confirm)?;
            let sent: u64 = results.iter().map(|r| r.sent).sum();
            let seconds = results.iter().map(|r| r.seconds).fold(0.0, f64::max);
            let rate = sent as f64 / seconds.max(f64::MIN_POSITIVE);
            let how = if confirm {
                format!("every message confirmed, window {}", args.window)
            } else {
                "plain publishes, the last one confirmed".to_owned()
            };
            (
                format!(
                    "{} publisher(s) x {} messages of {} B, {how}",
                    args.publishers, args.count, args.size
                ),
                rate,
                serde_json::json!({ "publishers": args.publishers, "sent": sent, "window": confirm.then_some(args.window) }),
            )
        }
        DurableMode::Replay => {
            let filled = publish(1, false)?;
            let first = filled
                .first()
                .and_then(|r| r.first_offset)
                .context("the fill's first offset")?;
            let mut a = common("replayer");
            a.extend([
                "--count".to_owned(),
                args.count.to_string(),
                "--from-offset".to_owned(),
                first.to_string(),
            ]);
            let result = Worker::spawn(&a)?.finish()?;
            let rate = result.received as f64 / result.seconds.max(f64::MIN_POSITIVE);
            (
                format!(
                    "replay of {} messages of {} B from offset {first}",
                    args.count, args.size
                ),
                rate,
                serde_json::json!({ "received": result.received, "from_offset": first }),
            )
        }
        DurableMode::Group => {
            let filled = publish(1, false)?;
            let first = filled
                .first()
                .and_then(|r| r.first_offset)
                .context("the fill's first offset")?;
            let end = first + args.count;
            let group = format!("bench-{}-{}", std::process::id(), first);
            let started = Instant::now();
            let mut members = Vec::new();
            for _ in 0..args.subscribers {
                let mut a = common("group-member");
                a.extend([
                    "--group".to_owned(),
                    group.clone(),
                    "--from-offset".to_owned(),
                    first.to_string(),
                ]);
                members.push(Worker::spawn(&a)?);
            }
            for member in &mut members {
                member.wait_ready()?;
            }
            let committed_at = wait_committed(socket, &topic, &group, end)?;
            let seconds = committed_at.duration_since(started).as_secs_f64();
            let results: Vec<WorkerResult> = members
                .into_iter()
                .map(Worker::finish)
                .collect::<anyhow::Result<_>>()?;
            let received: u64 = results.iter().map(|r| r.received).sum();
            let rate = args.count as f64 / seconds.max(f64::MIN_POSITIVE);
            (
                format!(
                    "consumer group of {} member(s) acking {} messages of {} B",
                    args.subscribers, args.count, args.size
                ),
                rate,
                serde_json::json!({ "members": args.subscribers, "received": received, "redelivered": received.saturating_sub(args.count) }),
            )
        }
    };
    let mb = msgs_per_sec * size / 1e6;
    humanln!(
        args.json,
        "mycelium bench --durable {}: {caption}",
        mode.name()
    );
    humanln!(args.json, "  {msgs_per_sec:.0} msg/s, {mb:.1} MB/s");
    if args.json {
        let mut doc = serde_json::json!({
            "mode": format!("durable-{}", mode.name()), "topic": topic, "size": args.size, "count": args.count,
            "msgs_per_sec": msgs_per_sec, "mb_per_sec": mb,
        });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        outln!("{doc}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls the broker until `group`'s committed position reaches `end`; when it did.
fn wait_committed(socket: &Path, topic: &str, group: &str, end: u64) -> anyhow::Result<Instant> {
    client_runtime()?.block_on(async {
        let client = Client::connect(socket)
            .await
            .map_err(crate::report::connect_failed)?;
        let (mut last, mut moved) = (0, Instant::now());
        loop {
            let groups = client.groups(topic).await?;
            let committed = groups
                .iter()
                .find(|g| g.name == group)
                .map_or(0, |g| g.committed);
            if committed >= end {
                return Ok(Instant::now());
            }
            if committed != last {
                (last, moved) = (committed, Instant::now());
            } else if moved.elapsed() > STALL {
                bail!(
                    "the group's committed position stayed at {committed} (of {end}) for {} s",
                    STALL.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}
