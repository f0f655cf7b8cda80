//! The sweep that removes idle auto-created topics, with their shared memory.
//!
//! - One task per broker run looks every `min(idle_timeout_ms / 4, 1 s)` (at least 1 ms) at
//!   the dynamic topics ([`TopicRegistry::reclaim_idle`](crate::TopicRegistry)): those with
//!   no subscriber (socket, in-process, shared memory; a pattern's attachment is none) and no publisher (a connection that
//!   advertised them, an in-process publisher, a shared-memory attachment) for
//!   `[topic_defaults] idle_timeout_ms` are removed from the registry, and their rings freed
//!   as a reload frees a removed topic's ([`ShmRings::remove_topic`]). A topic is therefore
//!   reclaimed between one and one and a quarter timeouts after its last use.
//! - The timeout is read from the running config at every round, so a reload applies to
//!   every dynamic topic at once; `0` turns reclaiming off (the task then looks once a
//!   second whether it was turned on).
//! - Nothing here runs per message: the routing paths never see the sweep.

use std::sync::Arc;
use std::time::Duration;

use crate::server::state::BrokerState;

#[cfg(doc)]
use crate::server::shm::ShmRings;

/// Longest pause between two rounds: a long timeout is still honoured within a second.
const MAX_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// How long the sweep waits before its next round under `idle_ms` (0: off).
fn sweep_period(idle_ms: u64) -> Duration {
    if idle_ms == 0 {
        return MAX_SWEEP_PERIOD;
    }
    Duration::from_millis((idle_ms / 4).max(1)).min(MAX_SWEEP_PERIOD)
}

/// Runs the sweep until the broker stops (the caller aborts it).
pub(crate) async fn run(state: Arc<BrokerState>) {
    loop {
        let idle_ms = state.config().topic_defaults.idle_timeout_ms;
        tokio::time::sleep(sweep_period(idle_ms)).await;
        sweep(&state);
    }
}

/// One round: reclaims what has idled for the timeout the config says now.
pub(crate) fn sweep(state: &BrokerState) -> usize {
    let idle_ms = state.config().topic_defaults.idle_timeout_ms;
    let reclaimed = state
        .registry
        .reclaim_idle(idle_ms, |topic| state.shm.in_use(topic.id()));
    for topic in &reclaimed {
        // No attachment is left (the registry saw none), but the topic's rings, reader
        // thread and directory entry may be.
        state.shm.remove_topic(topic);
        tracing::info!(
            topic = topic.name(),
            id = topic.id(),
            idle_ms,
            "removed an idle auto-created topic"
        );
    }
    reclaimed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_quarter_of_the_timeout_between_1_ms_and_1_s() {
        assert_eq!(sweep_period(0), MAX_SWEEP_PERIOD);
        assert_eq!(sweep_period(1), Duration::from_millis(1));
        assert_eq!(sweep_period(200), Duration::from_millis(50));
        assert_eq!(sweep_period(60_000), MAX_SWEEP_PERIOD);
    }
}
