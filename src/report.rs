//! How the CLI words the client's failures: the texts users and scripts know, whatever the
//! client library's error types.

use mycelium_client::{ConnectError, SubscriptionEnd};

/// What a user most likely needs to know after a failed connect.
fn connect_hint(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::NotFound => " (is the broker running? start one with `mycelium run`)",
        std::io::ErrorKind::ConnectionRefused => {
            " (nothing listens on this socket: a broker that is gone left it; start one with `mycelium run`)"
        }
        std::io::ErrorKind::PermissionDenied => " (the socket's permissions do not admit this user: see server.socket_mode)",
        _ => "",
    }
}

/// A failed connect, with a hint on what to do about it.
pub fn connect_failed(error: ConnectError) -> anyhow::Error {
    match error {
        ConnectError::Unreachable { path, source } => anyhow::anyhow!(
            "cannot connect to the broker at {}: {source}{}",
            path.display(),
            connect_hint(source.kind())
        ),
        other => anyhow::Error::new(other),
    }
}

/// Why the subscription to `topic` ended, as the broker said it.
pub fn subscription_ended(topic: &str, end: SubscriptionEnd) -> anyhow::Error {
    ended(end).context(format!("subscription to {topic} ended"))
}

/// Why a subscription ended, as the broker said it.
pub fn ended(end: SubscriptionEnd) -> anyhow::Error {
    match end {
        SubscriptionEnd::BrokerGone { detail: None } => {
            anyhow::anyhow!("the broker connection is gone")
        }
        SubscriptionEnd::BrokerGone {
            detail: Some(detail),
        } => anyhow::anyhow!("the broker connection is gone: {detail}"),
        SubscriptionEnd::Refused { code, message } => {
            anyhow::anyhow!("broker refused: {message} ({code:?})")
        }
        SubscriptionEnd::TopicRemoved { message } => {
            anyhow::anyhow!("broker refused: {message} (TopicRemoved)")
        }
        SubscriptionEnd::SlowConsumer { message } => {
            anyhow::anyhow!("broker refused: {message} (SlowConsumer)")
        }
        SubscriptionEnd::Failed(cause) => anyhow::anyhow!("{cause}"),
        other => anyhow::Error::new(other),
    }
}

/// The broker's refusal of `what` on a durable topic's log. `unsupported` (the topic is not
/// durable, or the broker serves no durable topics) adds which topics have a log.
pub fn durable_refused<E>(what: String, error: E, unsupported: bool) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    if unsupported {
        anyhow::anyhow!(
            "{what}: {error}; only a durable topic (`durable = true` in the broker's config) has \
             a log and consumer groups: `mycelium topics --durable` lists them"
        )
    } else {
        anyhow::Error::new(error).context(what)
    }
}
