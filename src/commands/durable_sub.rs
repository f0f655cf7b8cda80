//! `mycelium sub --from … | --group …`: subscribing to a durable topic's log, alone (a
//! replay subscription) or as a member of a consumer group.
//!
//! - Messages are printed as plain `sub` prints them; `--json` adds their `offset`.
//! - In a group, each message is acknowledged only once its line has been written and stdout
//!   flushed, so a message this process never showed (killed first, stdout gone) is delivered
//!   again to a member. `--reject` nacks each one instead (requeue), at the same point, so the
//!   topic's `max_deliveries` moves it to the dead-letter topic in the end.
//! - Messages are settled (acknowledged or rejected) in runs: whenever nothing more has
//!   arrived, and at the latest once half the prefetch is waiting, since the broker sends no
//!   more than the prefetch before it hears back.
//! - `--count N` exits after N messages (redeliveries count), once they are settled and the
//!   subscription is ended with the broker, so that every acknowledgement has left.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use mycelium_client::{
    Client, DurableMessage, DurableOptions, NackAction, RecvError, StartPosition, SubscribeError,
    SubscriptionEnd, TryRecvError,
};
use mycelium_transport::ErrorCode;

use super::pubsub::{flush_or_gone, socket_subscription_ended, Printer};
use super::start_position::describe;
use crate::output::errln;
use crate::report::{connect_failed, durable_refused};
use crate::socket::client_runtime;

/// The longest consumer group name the broker accepts.
const MAX_GROUP_NAME: usize = 255;

/// What `sub` does with a durable topic, from its arguments.
#[derive(Debug)]
pub(crate) struct DurableSub {
    pub(crate) topic: String,
    /// `--from`; `None`: new messages only.
    pub(crate) start: Option<StartPosition>,
    pub(crate) group: Option<String>,
    pub(crate) reject: bool,
    /// 0: the broker's default.
    pub(crate) prefetch: u32,
    pub(crate) count: Option<u64>,
    pub(crate) json: bool,
}

/// Checks a `--group` name: 1 to 255 characters of `A-Z a-z 0-9 . _ -`, as the broker does,
/// so that a typo is a usage error before anything connects.
pub(crate) fn parse_group(name: &str) -> Result<String, String> {
    let rule = format!("a group name is 1 to {MAX_GROUP_NAME} characters of A-Z a-z 0-9 . _ -");
    if name.is_empty() || name.len() > MAX_GROUP_NAME {
        return Err(format!("{rule}; this one is {} long", name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("'{name}' holds {bad:?}: {rule}"));
    }
    Ok(name.to_owned())
}

/// Why a durable subscription was refused.
fn refused(sub: &DurableSub, error: SubscribeError) -> anyhow::Error {
    let unsupported = matches!(
        error,
        SubscribeError::Refused {
            code: ErrorCode::Unsupported,
            ..
        }
    );
    let what = match &sub.group {
        Some(group) => format!("joining consumer group {group} on {}", sub.topic),
        None => format!("subscribing to {}'s log", sub.topic),
    };
    durable_refused(what, error, unsupported)
}

/// Runs the subscription until `--count`, the end of the subscription, or stdout going away.
pub(crate) fn subscribe(path: &std::path::Path, sub: DurableSub) -> anyhow::Result<ExitCode> {
    client_runtime()?.block_on(async move {
        let client = Client::connect(path).await.map_err(connect_failed)?;
        let start = sub.start.unwrap_or(StartPosition::New);
        let options = match &sub.group {
            Some(group) => DurableOptions::group(group.clone()),
            None => DurableOptions::replay(start),
        }
        .start(start)
        .prefetch(sub.prefetch);
        let mut subscription = client
            .subscribe_durable(&sub.topic, options)
            .await
            .map_err(|error| refused(&sub, error))?;
        errln!("subscribed to {}", sub.topic);
        match &sub.group {
            Some(group) => errln!(
                "member of consumer group {group} (a new group starts at {}; an existing one \
                 where it stopped), prefetch {}{}",
                describe(start),
                subscription.prefetch(),
                if sub.reject {
                    ": rejecting every message"
                } else {
                    ""
                }
            ),
            None => errln!(
                "reading from {}, prefetch {}",
                describe(start),
                subscription.prefetch()
            ),
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut printer = Printer::new(sub.json);
        let mut unsettled = Unsettled {
            messages: Vec::new(),
            reject: sub.reject,
            at_most: usize::try_from(subscription.prefetch() / 2)
                .unwrap_or(usize::MAX)
                .max(1),
        };
        let mut received = 0u64;
        loop {
            let next = match subscription.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Lagged(skipped)) => Err(RecvError::Lagged(skipped)),
                Err(TryRecvError::Ended(end)) => Err(RecvError::Ended(end)),
                Err(_) => {
                    // Nothing more is ready: show what we have, and settle it, before waiting
                    // (the wait sends the acknowledgements).
                    if unsettled.settle(&mut out)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                    subscription.recv().await
                }
            };
            let message = match next {
                Ok(message) => message,
                Err(RecvError::Lagged(skipped)) => {
                    errln!("lagged: {skipped} message(s) were dropped by the broker");
                    continue;
                }
                Err(RecvError::Ended(SubscriptionEnd::Closed)) => return Ok(ExitCode::SUCCESS),
                Err(RecvError::Ended(end)) => {
                    return Err(socket_subscription_ended(&client, &sub.topic, end).await)
                }
                Err(error) => {
                    return Err(error).context(format!("subscription to {} ended", sub.topic))
                }
            };
            if printer.write(&mut out, &message)? {
                // stdout is gone: what it did not take stays unacknowledged, for another member.
                return Ok(ExitCode::SUCCESS);
            }
            if sub.group.is_some() {
                unsettled.messages.push(message);
            }
            received += 1;
            if Some(received) == sub.count {
                if unsettled.settle(&mut out)? {
                    return Ok(ExitCode::SUCCESS);
                }
                // Sends the acknowledgements, then waits for the broker to end the
                // subscription: nothing settled is lost with the process.
                subscription.unsubscribe().await?;
                client.close().await?;
                return Ok(ExitCode::SUCCESS);
            }
            if unsettled.messages.len() >= unsettled.at_most && unsettled.settle(&mut out)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}

/// A group's messages written to stdout and not yet acknowledged (or rejected).
struct Unsettled {
    messages: Vec<DurableMessage>,
    /// `--reject`: nack them instead.
    reject: bool,
    /// Settled once this many wait, before the broker's window of unacknowledged messages
    /// fills.
    at_most: usize,
}

impl Unsettled {
    /// Flushes stdout, then acknowledges (or rejects) every message written so far. Returns
    /// true if stdout is gone: nothing is settled then, since the reader may not have them.
    fn settle(&mut self, out: &mut impl Write) -> anyhow::Result<bool> {
        if flush_or_gone(out)? {
            return Ok(true);
        }
        for message in self.messages.drain(..) {
            if self.reject {
                message.nack(NackAction::Requeue);
            } else {
                message.ack();
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_group;

    #[test]
    fn group_names_follow_the_topic_name_charset() {
        assert_eq!(parse_group("billing-v2.eu_1"), Ok("billing-v2.eu_1".into()));
        assert!(parse_group(&"g".repeat(255)).is_ok());
        for bad in ["", "has space", "a/b", "é", "a*", "a>"] {
            assert!(parse_group(bad).is_err(), "{bad:?}");
        }
        let error = parse_group(&"g".repeat(256)).expect_err("too long");
        assert!(error.contains("1 to 255"), "{error}");
    }
}
