//! `mycelium pub` and `mycelium sub`: one-shot publishing and line-per-message subscribing.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use mycelium_broker::Client;
use tokio::io::AsyncBufReadExt;

use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium pub`.
#[derive(Debug, clap::Args)]
pub struct PubArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The topic to publish on
    topic: String,
    /// The message; without it, each line of stdin is published as one message
    message: Option<String>,
}

/// Arguments of `mycelium sub`.
#[derive(Debug, clap::Args)]
pub struct SubArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The topic to subscribe to
    topic: String,
    /// Exit after this many messages
    #[arg(long)]
    count: Option<u64>,
}

pub fn publish(args: PubArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await?;
        let publisher = client.publisher(&args.topic).await?;
        let mut sent = 0u64;
        match &args.message {
            Some(message) => {
                publisher.publish(message.as_bytes()).await?;
                sent += 1;
            }
            None => {
                let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
                while let Some(line) = lines.next_line().await.context("reading stdin")? {
                    publisher.publish(line.as_bytes()).await?;
                    sent += 1;
                }
            }
        }
        // The flush proves the broker processed every message, and reports any it refused.
        client.close().await?;
        eprintln!("published {sent} message(s) to {}", args.topic);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

pub fn subscribe(args: SubArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await?;
        let mut subscription = client.subscribe(&args.topic).await?;
        eprintln!("subscribed to {}", args.topic);
        if args.count == Some(0) {
            return anyhow::Ok(ExitCode::SUCCESS);
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut received = 0u64;
        loop {
            let message = match subscription.try_recv() {
                Some(message) => message,
                None => {
                    // Nothing more is ready: show what we have before waiting.
                    if flush_or_gone(&mut out)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                    match subscription.recv().await {
                        Some(Ok(message)) => message,
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
