//! `mycelium dlq redrive`: moving the messages of a dead-letter topic back to the topics they
//! came from.
//!
//! - The dead-letter topic is read as consumer group [`REDRIVE_GROUP`], from its earliest
//!   message the first time, and from where the last run stopped after that.
//! - Each message is published again with confirmation (`PublishDurable`) to the topic its
//!   `Mycelium-Dead-Letter-Topic` header names, or to `--to`, with its payload and its headers
//!   less the ones the broker added when it dead-lettered it (`Mycelium-Dead-Letter-*`,
//!   `Mycelium-Delivery-Count`); only once the target has stored it is it acknowledged in the
//!   dead-letter topic. A run cut short therefore moves a message at most twice, never loses
//!   one.
//! - A run stops when it is caught up: at the first message stored in the dead-letter topic
//!   after the run began (so messages that fail again while it runs wait for the next run
//!   instead of circling), or when nothing has arrived for [`CAUGHT_UP_AFTER`], or after
//!   `--max` messages. It then says how many it moved to each topic.
//! - A message it cannot move (no source header and no `--to`, a target that refuses it) ends
//!   the run with exit 1, after the report of what was moved; that message stays in the
//!   dead-letter topic for the next run.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mycelium_client::durable::DELIVERY_COUNT_HEADER;
use mycelium_client::{
    Client, DurableMessage, DurableOptions, DurableSubscription, Headers, RecvError, StartPosition,
    SubscribeError, SubscriptionEnd,
};
use mycelium_transport::ErrorCode;

use crate::output::{errln, outln};
use crate::report::{connect_failed, durable_refused, subscription_ended};
use crate::socket::client_runtime;
use crate::SocketArgs;

/// The consumer group whose committed position in a dead-letter topic marks what has been
/// redriven.
pub(crate) const REDRIVE_GROUP: &str = "mycelium-redrive";

/// How long a run waits for the next message before it calls the dead-letter topic drained.
pub(crate) const CAUGHT_UP_AFTER: Duration = Duration::from_millis(500);

/// The header naming the topic a dead-lettered message came from.
const SOURCE_TOPIC_HEADER: &str = "Mycelium-Dead-Letter-Topic";

/// The prefix of every header the broker adds when it dead-letters a message.
const DEAD_LETTER_HEADER_PREFIX: &str = "Mycelium-Dead-Letter-";

/// Arguments of `mycelium dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// Move the messages of dead-letter topic DLQ_TOPIC back to the topics they came from
    /// (each one's Mycelium-Dead-Letter-Topic header names it), or all to --to TOPIC.
    ///
    /// Each message is published again, with confirmation, with its payload and its headers
    /// less the Mycelium-Dead-Letter-* and Mycelium-Delivery-Count ones (a topic that stamps
    /// gives it a new id and timestamp); only once its target has stored it is it
    /// acknowledged in DLQ_TOPIC, so an interrupted run may move a message twice but never
    /// loses one. DLQ_TOPIC is read as consumer group "mycelium-redrive": the first run starts
    /// at its earliest message, each later run where the previous one stopped. A run stops
    /// at the first message dead-lettered after it began, when nothing arrives for 500 ms, or
    /// after --max messages, and prints how many it moved to each topic. Exits 1 on a message
    /// it cannot move (no Mycelium-Dead-Letter-Topic header and no --to, or a target that
    /// refuses it), which stays in DLQ_TOPIC; both DLQ_TOPIC and the targets must be durable.
    Redrive(RedriveArgs),
}

/// Arguments of `mycelium dlq redrive`.
#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The dead-letter topic to empty (a durable topic; by default a topic's is <topic>.dlq)
    #[arg(value_name = "DLQ_TOPIC")]
    dlq: String,
    /// Publish every message to TOPIC (a durable topic) instead of the topic its
    /// Mycelium-Dead-Letter-Topic header names
    #[arg(long, value_name = "TOPIC")]
    to: Option<String>,
    /// Move at most N messages (at least 1), then stop
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
}

pub fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DlqCommand::Redrive(args) => redrive(args),
    }
}

/// The headers a redriven message is published with: `message`'s, in order, less the ones
/// the broker added when it dead-lettered it.
pub(crate) fn redriven_headers<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<Headers> {
    let mut kept = Headers::new();
    for (key, value) in headers {
        if key.starts_with(DEAD_LETTER_HEADER_PREFIX) || key == DELIVERY_COUNT_HEADER {
            continue;
        }
        kept.insert(key, value)?;
    }
    Ok(kept)
}

/// Messages moved so far, per target topic.
type Moved = BTreeMap<String, u64>;

fn redrive(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    if args.to.as_deref() == Some(args.dlq.as_str()) {
        errln!(
            "error: --to names the dead-letter topic itself ({}): its messages would come back \
             to it forever",
            args.dlq
        );
        return Ok(ExitCode::from(2));
    }
    let path = args.socket.resolve()?;
    client_runtime()?.block_on(async {
        let client = Client::connect(&path).await.map_err(connect_failed)?;
        // Messages stored from here on were dead-lettered while the run went: left for the
        // next run, so a message failing again does not circle.
        let end = client
            .stats()
            .await
            .context("reading the broker's statistics")?
            .topics
            .iter()
            .find(|topic| topic.name == args.dlq)
            .and_then(|topic| topic.log.as_ref().map(|log| log.next_offset));
        let options = DurableOptions::group(REDRIVE_GROUP).start(StartPosition::Earliest);
        let mut subscription = client
            .subscribe_durable(&args.dlq, options)
            .await
            .map_err(|error| refused(&args.dlq, error))?;
        let mut moved = Moved::new();
        let run = move_all(&client, &mut subscription, &args, end, &mut moved).await;
        // Sends the last acknowledgements and waits for the broker to take them.
        let left = subscription.unsubscribe().await;
        let closed = client.close().await;
        report(&args.dlq, &moved, run.is_ok());
        run?;
        left.context("ending the subscription to the dead-letter topic")?;
        closed.context("closing the connection")?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Moves messages until the run stops (see the module docs), counting them in `moved`.
async fn move_all(
    client: &Client,
    subscription: &mut DurableSubscription,
    args: &RedriveArgs,
    end: Option<u64>,
    moved: &mut Moved,
) -> anyhow::Result<()> {
    let mut count = 0u64;
    while args.max.is_none_or(|max| count < max) {
        let message = match tokio::time::timeout(CAUGHT_UP_AFTER, subscription.recv()).await {
            Err(_caught_up) => return Ok(()),
            Ok(Ok(message)) => message,
            Ok(Err(RecvError::Ended(SubscriptionEnd::Closed))) => return Ok(()),
            Ok(Err(RecvError::Ended(ended))) => return Err(subscription_ended(&args.dlq, ended)),
            Ok(Err(error)) => {
                return Err(error).context(format!("reading {}", args.dlq));
            }
        };
        if end.is_some_and(|end| message.offset() >= end) {
            return Ok(());
        }
        let target = move_one(client, &message, args).await?;
        message.ack();
        *moved.entry(target).or_default() += 1;
        count += 1;
    }
    Ok(())
}

/// Publishes `message` again to its target, once stored there: the target's name.
async fn move_one(
    client: &Client,
    message: &DurableMessage,
    args: &RedriveArgs,
) -> anyhow::Result<String> {
    let target = match (&args.to, message.header(SOURCE_TOPIC_HEADER)) {
        (Some(to), _) => to.clone(),
        (None, Some(source)) => source.to_owned(),
        (None, None) => anyhow::bail!(
            "the message at offset {} of {} has no {SOURCE_TOPIC_HEADER} header, so its source \
             is unknown: pass --to TOPIC to say where it goes",
            message.offset(),
            args.dlq
        ),
    };
    if target == args.dlq {
        anyhow::bail!(
            "the message at offset {} of {} names {} itself as its source: pass --to TOPIC to \
             say where it goes",
            message.offset(),
            args.dlq,
            args.dlq
        );
    }
    let headers = redriven_headers(message.headers()).with_context(|| {
        format!(
            "the headers of the message at offset {} of {}",
            message.offset(),
            args.dlq
        )
    })?;
    client
        .publish_durable_with(&target, &headers, message.payload())
        .await
        .with_context(|| {
            format!(
                "publishing the message at offset {} of {} to {target} (it stays in {}; a \
                 target must be a durable topic)",
                message.offset(),
                args.dlq,
                args.dlq
            )
        })?;
    Ok(target)
}

/// Why the dead-letter topic could not be read.
fn refused(dlq: &str, error: SubscribeError) -> anyhow::Error {
    let unsupported = matches!(
        error,
        SubscribeError::Refused {
            code: ErrorCode::Unsupported,
            ..
        }
    );
    durable_refused(
        format!("reading dead-letter topic {dlq} as consumer group {REDRIVE_GROUP}"),
        error,
        unsupported,
    )
}

/// Says how many messages went where (`finished`: the run was not cut short by an error).
fn report(dlq: &str, moved: &Moved, finished: bool) {
    if moved.is_empty() && finished {
        outln!("moved no message: {dlq} holds none that group {REDRIVE_GROUP} has not taken");
    }
    for (target, count) in moved {
        outln!("moved {count} message(s) from {dlq} to {target}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redriven_headers_drop_only_what_dead_lettering_added() {
        let dead_lettered = [
            ("trace", "abc"),
            ("Mycelium-Dead-Letter-Reason", "max-deliveries"),
            ("Mycelium-Dead-Letter-Topic", "orders"),
            ("tenant", "eu"),
            ("Mycelium-Dead-Letter-Offset", "41"),
            ("Mycelium-Dead-Letter-Group", "billing"),
            ("Mycelium-Delivery-Count", "5"),
            ("trace", "def"),
            // Not the broker's: kept.
            ("Mycelium-Delivery-Counter", "x"),
            ("X-Mycelium-Dead-Letter-Topic", "y"),
        ];
        let kept = redriven_headers(dead_lettered.into_iter()).expect("valid headers");
        assert_eq!(
            kept.iter().collect::<Vec<_>>(),
            [
                ("trace", "abc"),
                ("tenant", "eu"),
                ("trace", "def"),
                ("Mycelium-Delivery-Counter", "x"),
                ("X-Mycelium-Dead-Letter-Topic", "y"),
            ]
        );
    }

    #[test]
    fn a_message_without_headers_is_published_without_any() {
        assert!(redriven_headers(std::iter::empty())
            .expect("no headers")
            .is_empty());
    }
}
