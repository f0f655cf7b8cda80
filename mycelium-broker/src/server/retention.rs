//! Retention of durable topics' logs: once a second, every durable topic's log deletes the
//! sealed segments its `retention`, `retention_bytes` and `retention_messages` no longer keep
//! (whole segments, oldest first; never the one being written).
//!
//! - The limits are the topic's now (a reload changes them in place), so a reload that
//!   tightens them takes effect within a second.
//! - The deletions run on tokio's blocking pool: removing a large file can take a while, and
//!   no routing task waits for it (an append waits only for the log's lock, held per segment
//!   deleted).

use std::sync::Arc;
use std::time::Duration;

use crate::server::state::BrokerState;

/// Pause between two rounds.
const PERIOD: Duration = Duration::from_secs(1);

/// Runs the rounds until the broker stops (the caller aborts it).
pub(crate) async fn run(state: Arc<BrokerState>) {
    loop {
        tokio::time::sleep(PERIOD).await;
        let logs: Vec<_> = state
            .registry
            .all()
            .iter()
            .filter_map(|topic| topic.log().cloned())
            .collect();
        if logs.is_empty() {
            continue;
        }
        let round = tokio::task::spawn_blocking(move || {
            for log in logs {
                log.enforce_retention();
            }
        });
        if let Err(error) = round.await {
            tracing::error!(%error, "a retention round failed");
        }
    }
}
