//! `mycelium bench --patterns N`: N wildcard subscriptions that match no benchmark topic, held
//! for the whole run, to show what they cost a publish (nothing, by design: patterns are
//! matched when a topic is created, not per message).

use anyhow::Context;
use mycelium_client::{Client, Subscription};

/// Patterns one connection holds: below the default `max_subscriptions_per_connection`.
const PER_CONNECTION: u64 = 1000;

/// The pattern subscriptions, alive until dropped. A runtime thread of their own answers the
/// broker's heartbeat pings while the benchmark runs.
pub(crate) struct IdlePatterns {
    _subscriptions: Vec<Subscription>,
    _clients: Vec<Client>,
    _runtime: tokio::runtime::Runtime,
}

impl IdlePatterns {
    /// Subscribes `count` patterns (`bench.idle<i>.*`: three tokens, so no two-token
    /// benchmark topic matches, though they share its first token).
    pub(crate) fn hold(
        socket: &std::path::Path,
        count: u64,
    ) -> anyhow::Result<Option<IdlePatterns>> {
        if count == 0 {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the runtime of the idle patterns")?;
        let (clients, subscriptions) = runtime.block_on(async {
            let mut clients = Vec::new();
            let mut subscriptions = Vec::new();
            for i in 0..count {
                if i % PER_CONNECTION == 0 {
                    clients.push(
                        Client::connect(socket)
                            .await
                            .map_err(crate::report::connect_failed)?,
                    );
                }
                let client = clients.last().context("a connection for the patterns")?;
                let pattern = format!("bench.idle{i}.*");
                let subscription = client
                    .subscribe(&pattern)
                    .await
                    .with_context(|| format!("subscribing to pattern {pattern}"))?;
                subscriptions.push(subscription);
            }
            anyhow::Ok((clients, subscriptions))
        })?;
        Ok(Some(IdlePatterns {
            _subscriptions: subscriptions,
            _clients: clients,
            _runtime: runtime,
        }))
    }
}
