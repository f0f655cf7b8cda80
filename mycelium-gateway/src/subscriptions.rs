//! Server-side subscriptions for HTTP consumers: `POST /subscribe/{topic}` makes one, the
//! consume endpoints take messages from it, `DELETE /subscribe/{topic}` ends it.
//!
//! - Each is an in-process [`LocalSubscription`] of the broker's topic (or pattern), held to
//!   the topic's backpressure like any other subscriber: on a queue topic its consumers
//!   compete, on a lossy topic what it missed is told as a lag count.
//! - Known by a random id (a UUID), which is all a client needs to consume: the ids are not
//!   guessable, but the gateway has no authentication (it listens on loopback by default).
//! - One that nobody consumes from for `[http] subscription_idle_timeout_ms` is removed
//!   ([`Subscriptions::sweep`]), with what it holds; one being consumed from is in use.
//!   At most [`MAX_SUBSCRIPTIONS`] exist at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mycelium_broker::LocalSubscription;
use uuid::Uuid;

/// Most server-side subscriptions at once: each holds a queue in the broker.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 65_536;

/// One server-side subscription.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The topic or pattern, as the client named it (consume requests must name it too).
    pub(crate) topic: String,
    /// Locked by the consume request taking from it; a second one waits its turn.
    pub(crate) subscription: tokio::sync::Mutex<Consumer>,
    /// Milliseconds on the table's clock when a consume request last ended (or began).
    last_used_ms: AtomicU64,
}

/// The subscription and what it still has to tell.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) subscription: LocalSubscription,
    /// Messages lost since the last one handed out, told with the next one.
    pub(crate) lagged: u64,
}

/// The table; see the module's contract.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    table: Mutex<HashMap<Uuid, Arc<Entry>>>,
    epoch: Instant,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            table: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl Subscriptions {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Entry>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `subscription` under a new id; `None` when the table is full.
    pub(crate) fn insert(&self, topic: &str, subscription: LocalSubscription) -> Option<Uuid> {
        let id = Uuid::new_v4();
        let entry = Arc::new(Entry {
            topic: topic.to_owned(),
            subscription: tokio::sync::Mutex::new(Consumer {
                subscription,
                lagged: 0,
            }),
            last_used_ms: AtomicU64::new(self.now_ms()),
        });
        let mut table = self.lock();
        if table.len() >= MAX_SUBSCRIPTIONS {
            return None;
        }
        table.insert(id, entry);
        Some(id)
    }

    /// The subscription `id`, marked used now.
    pub(crate) fn get(&self, id: &Uuid) -> Option<Arc<Entry>> {
        let entry = self.lock().get(id).cloned()?;
        self.touch(&entry);
        Some(entry)
    }

    /// Marks `entry` used now (a consume request ends).
    pub(crate) fn touch(&self, entry: &Entry) {
        entry.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Ends subscription `id`; whether it existed.
    pub(crate) fn remove(&self, id: &Uuid) -> bool {
        self.lock().remove(id).is_some()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Removes the subscriptions nobody has consumed from for `idle_ms` and none is
    /// consuming from now; returns how many.
    pub(crate) fn sweep(&self, idle_ms: u64) -> usize {
        let now = self.now_ms();
        let mut table = self.lock();
        let before = table.len();
        table.retain(|_, entry| {
            let idle = now.saturating_sub(entry.last_used_ms.load(Ordering::Relaxed)) >= idle_ms;
            // A consume request holds the lock while it waits: in use.
            !idle || entry.subscription.try_lock().is_err()
        });
        before - table.len()
    }
}
