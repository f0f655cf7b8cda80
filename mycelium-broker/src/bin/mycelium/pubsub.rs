//! `mycelium pub` and `mycelium sub`: one-shot publishing and line-per-message subscribing.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use std::os::unix::ffi::OsStrExt;

use mycelium_broker::{Client, ClientError, ShmClient};
use tokio::io::AsyncBufReadExt;

use crate::bench::Transport;
use crate::output::errln;
use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium pub`.
#[derive(Debug, clap::Args)]
pub struct PubArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The topic to publish on
    topic: String,
    /// The message (any bytes); without it, each line of stdin is published as one message:
    /// lines end at '\n' (a '\r' before it is dropped), and may hold any other bytes
    message: Option<std::ffi::OsString>,
    /// The data path: through the broker's socket, or a shared-memory ring of its own that
    /// subscribers read directly (fanout topics; socket subscribers get the messages through
    /// the broker)
    #[arg(long, value_enum, default_value = "uds")]
    transport: Transport,
}

/// Arguments of `mycelium sub`.
#[derive(Debug, clap::Args)]
pub struct SubArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The topic to subscribe to
    topic: String,
    /// Exit after this many messages (at least 1)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// The data path: through the broker's socket, or reading the publishers' shared-memory
    /// rings directly (fanout topics; socket publishers' messages come through the broker's
    /// relay ring)
    #[arg(long, value_enum, default_value = "uds")]
    transport: Transport,
}

/// Each line of `input` as one message (the '\n', and a '\r' before it, removed), with its
/// 1-based line number.
fn for_each_line(
    mut input: impl std::io::BufRead,
    mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            return Ok(());
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        each(number, &line)?;
    }
}

fn publish_shm(args: PubArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let client = ShmClient::connect(path)?;
    let mut publisher = client.publisher(&args.topic)?;
    let (mut sent, mut refused) = (0u64, 0u64);
    match &args.message {
        Some(message) => {
            publisher.publish(message.as_bytes())?;
            sent += 1;
        }
        None => for_each_line(std::io::stdin().lock(), |number, line| {
            match publisher.publish(line) {
                Ok(()) => sent += 1,
                Err(error @ ClientError::MessageTooLarge { .. }) => {
                    errln!("line {number}: {error}; skipped");
                    refused += 1;
                }
                Err(error) => return Err(error.into()),
            }
            Ok(())
        })?,
    }
    errln!("published {sent} message(s) to {}", args.topic);
    if publisher.dropped() > 0 {
        // drop_newest: "published" counts what was handed over, as over the socket.
        errln!(
            "{} of them dropped: the ring was full (backpressure = drop_newest)",
            publisher.dropped()
        );
    }
    if refused > 0 {
        anyhow::bail!(
            "{refused} line(s) were too large for topic {} and were not published",
            args.topic
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a shared-memory subscriber's `Lagged` means: a lossy ring (`drop_oldest`) overwrote
/// the messages, or a publisher (or the broker's relay) dropped them for lack of room
/// (`drop_newest`).
const SHM_LOST: &str =
    "were lost before they were read (overwritten under drop_oldest, dropped under drop_newest)";

fn subscribe_shm(args: SubArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let client = ShmClient::connect(path)?;
    let mut subscription = client.subscribe(&args.topic)?;
    errln!("subscribed to {}", args.topic);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut received = 0u64;
    let mut message = Vec::new();
    loop {
        let ready = match subscription.try_recv_into(&mut message) {
            Err(ClientError::Lagged { skipped }) => {
                // drop_oldest / drop_newest: news, not a failure; the next message is intact.
                errln!("lagged: {skipped} message(s) {SHM_LOST}");
                continue;
            }
            other => other?,
        };
        if !ready {
            // Nothing more is ready: show what we have before waiting.
            if flush_or_gone(&mut out)? {
                return Ok(ExitCode::SUCCESS);
            }
            match subscription.recv_timeout_into(&mut message, None) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(ClientError::Lagged { skipped }) => {
                    errln!("lagged: {skipped} message(s) {SHM_LOST}");
                    continue;
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("subscription to {} ended", args.topic)))
                }
            }
        }
        if write_line(&mut out, &message)? {
            return Ok(ExitCode::SUCCESS);
        }
        received += 1;
        if Some(received) == args.count {
            flush_or_gone(&mut out)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
}

pub fn publish(args: PubArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    if args.transport == Transport::Shm {
        return publish_shm(args, &path);
    }
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await?;
        let publisher = client.publisher(&args.topic).await?;
        let (mut sent, mut refused) = (0u64, 0u64);
        match &args.message {
            Some(message) => {
                publisher.publish(message.as_bytes()).await?;
                sent += 1;
            }
            None => {
                // Bytes, not text: a line may hold anything but '\n'. A line the client refuses
                // (too large) is reported and skipped; the rest still go out.
                let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
                let mut line = Vec::new();
                let mut number = 0u64;
                loop {
                    line.clear();
                    if stdin
                        .read_until(b'\n', &mut line)
                        .await
                        .context("reading stdin")?
                        == 0
                    {
                        break;
                    }
                    number += 1;
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    match publisher.publish(&line).await {
                        Ok(()) => sent += 1,
                        Err(error @ ClientError::MessageTooLarge { .. }) => {
                            errln!("line {number}: {error}; skipped");
                            refused += 1;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        // The flush proves the broker processed every message, and reports any it refused:
        // what was accepted is what was sent less what it refused (a topic removed
        // mid-stream refuses every publish from then on).
        let flushed = client.flush().await;
        let refused_by_broker = client.refused_publishes();
        let closed = client.close().await;
        let accepted = sent.saturating_sub(refused_by_broker);
        if refused_by_broker == 0 {
            errln!("published {accepted} message(s) to {}", args.topic);
        } else {
            errln!(
                "published {accepted} message(s) to {}; the broker refused {refused_by_broker}",
                args.topic
            );
        }
        flushed?;
        closed?;
        if refused > 0 {
            anyhow::bail!(
                "{refused} line(s) were too large for topic {} and were not published",
                args.topic
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

pub fn subscribe(args: SubArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    if args.transport == Transport::Shm {
        return subscribe_shm(args, &path);
    }
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await?;
        let mut subscription = client.subscribe(&args.topic).await?;
        errln!("subscribed to {}", args.topic);
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut received = 0u64;
        let mut missed = 0u64;
        loop {
            let message = match subscription.try_recv() {
                Some(message) => message,
                None => {
                    // A drop_newest / drop_oldest topic dropped messages for us: say how many.
                    if subscription.missed() > missed {
                        let skipped = subscription.missed() - missed;
                        missed = subscription.missed();
                        errln!("lagged: {skipped} message(s) were dropped by the broker (the topic's backpressure)");
                    }
                    // Nothing more is ready: show what we have before waiting.
                    if flush_or_gone(&mut out)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                    // Returns on a loss report too, so that a loss nothing follows is
                    // printed (at the top of the loop) rather than waiting for a message.
                    match subscription.recv_or_lagged().await {
                        Some(Ok(message)) => message,
                        Some(Err(ClientError::Lagged { .. })) => continue,
                        Some(Err(error)) => {
                            return Err(error)
                                .context(format!("subscription to {} ended", args.topic))
                        }
                        None => return Ok(ExitCode::SUCCESS),
                    }
                }
            };
            if write_line(&mut out, &message)? {
                return Ok(ExitCode::SUCCESS);
            }
            received += 1;
            if Some(received) == args.count {
                flush_or_gone(&mut out)?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}

/// Writes one payload and a newline. Returns true if stdout is gone (a closed pipe): the
/// reader has what it wanted, which is not an error.
fn write_line(out: &mut impl Write, payload: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(payload).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn flush_or_gone(out: &mut impl Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to stdout"),
    }
}
