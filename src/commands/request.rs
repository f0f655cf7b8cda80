//! `mycelium request` and `mycelium reply`: request/reply from the command line.
//!
//! - `request` sends one request and prints the reply's payload (exit 0), or says why there is
//!   none (exit 1): no responders (at once, when nobody subscribes to the topic), the
//!   responder's error, or the timeout.
//! - `reply` answers every request on a topic with the same response, or the same error,
//!   until stopped (or `--count` requests); messages that are not requests are skipped.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mycelium_client::{Client, RecvError, SubscriptionEnd};
use std::os::unix::ffi::OsStrExt;

use crate::commands::pubsub::{headers_of, parse_header};
use crate::output::errln;
use crate::report::{connect_failed, subscription_ended};
use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium request`.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// How long to wait for the reply, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// A header to send with the request, KEY=VALUE (repeat for more)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The topic responders listen on
    topic: String,
    /// The request's payload (any bytes)
    message: std::ffi::OsString,
}

/// Arguments of `mycelium reply`.
#[derive(Debug, clap::Args)]
pub struct ReplyArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Answer every request with an error reply carrying this message instead
    #[arg(long, value_name = "MESSAGE", conflicts_with = "response")]
    error: Option<String>,
    /// The error code of --error replies
    #[arg(long, default_value_t = 1, requires = "error")]
    code: u16,
    /// Exit after answering this many requests (at least 1)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// The topic to answer requests on (on a queue topic, one responder of several answers
    /// each request)
    topic: String,
    /// The response sent to every request (any bytes)
    #[arg(required_unless_present = "error")]
    response: Option<std::ffi::OsString>,
}

pub fn request(args: RequestArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    let headers = headers_of(&args.headers)?;
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await.map_err(connect_failed)?;
        let timeout = Duration::from_millis(args.timeout);
        let reply = client
            .request_with(&args.topic, &headers, args.message.as_bytes(), timeout)
            .await;
        let _ = client.close().await;
        let reply = reply?;
        let mut out = std::io::stdout().lock();
        out.write_all(reply.payload())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .context("writing to stdout")?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// What `reply` answers every request with.
enum Answer {
    Response(Vec<u8>),
    Error { code: u16, message: String },
}

pub fn reply(args: ReplyArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    let answer = match (&args.error, &args.response) {
        (Some(message), _) => Answer::Error {
            code: args.code,
            message: message.clone(),
        },
        (None, Some(response)) => Answer::Response(response.as_bytes().to_vec()),
        (None, None) => anyhow::bail!("give a RESPONSE, or --error MESSAGE"),
    };
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await.map_err(connect_failed)?;
        let mut requests = client.subscribe(&args.topic).await?;
        errln!("replying on {}", args.topic);
        let mut answered = 0u64;
        loop {
            let request = match requests.recv().await {
                Ok(request) => request,
                Err(RecvError::Lagged(skipped)) => {
                    errln!("lagged: {skipped} request(s) were dropped before they were read");
                    continue;
                }
                Err(RecvError::Ended(SubscriptionEnd::Closed)) => return Ok(ExitCode::SUCCESS),
                Err(RecvError::Ended(end)) => return Err(subscription_ended(&args.topic, end)),
                Err(error) => {
                    return Err(error).context(format!("subscription to {} ended", args.topic))
                }
            };
            if request.reply_to().is_none() || request.id().is_none() {
                errln!("skipped a message on {} that is not a request", args.topic);
                continue;
            }
            let sent = match &answer {
                Answer::Error { code, message } => {
                    client.reply_error(&request, *code, message).await
                }
                Answer::Response(response) => client.reply(&request, response).await,
            };
            if let Err(error) = sent {
                // A requester whose inbox is gone (or that may not be answered) costs its own
                // reply only.
                errln!("could not answer a request on {}: {error}", args.topic);
                continue;
            }
            answered += 1;
            if Some(answered) == args.count {
                client.flush().await?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}
