//! The broker-wide count of bytes queued in outboxes and not yet written.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes queued in every outbox of a broker and not yet taken by their writers, against a
/// limit (`server.max_inflight_bytes`): past it, outboxes that hold anything take no more
/// messages, so the topics' backpressure applies as if each subscriber were full.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Changes the limit (a reload); outboxes follow at their next append.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes queued now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the queued bytes have reached the limit.
    pub fn is_spent(&self) -> bool {
        self.used() >= self.limit.load(Ordering::Relaxed)
    }

    /// Moves the count from `before` to `after` bytes for one outbox.
    pub(super) fn settle(&self, before: usize, after: usize) {
        // Relaxed: a count, ordering nothing; each outbox's changes are made under its lock,
        // so its own contributions never go below zero.
        if after > before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::outbox::{Appended, Drained, Outbox};
    use crate::Frame;

    #[test]
    fn a_spent_budget_stops_outboxes_that_hold_something_until_one_is_taken() {
        let budget = Arc::new(ByteBudget::new(100));
        let (a, b) = (
            Outbox::with_budget(budget.clone()),
            Outbox::with_budget(budget.clone()),
        );
        let big = [0u8; 80];
        let one = |o: &Outbox, n: usize| match o.append_messages(1, &vec![&big[..]; n], 10) {
            Appended::Queued(q) => q,
            Appended::Closed => panic!("open"),
        };
        assert_eq!(one(&a, 1), 1);
        assert_eq!(budget.used(), 90);
        // The budget is looked at once per append: not spent yet, so b takes the whole batch.
        assert_eq!(one(&b, 2), 2);
        assert!(budget.is_spent());
        assert_eq!(
            one(&a, 1),
            0,
            "spent: an outbox holding something takes no more"
        );
        assert!(!a.has_room(1, 10));
        // Control frames are not messages: they still go out, and are counted.
        assert!(a.append_control(&Frame::Ping { token: 1 }));
        assert_eq!(budget.used(), 270 + 14);
        // Taking gives the bytes back; an empty outbox always takes one, so nobody starves.
        let mut drained = Drained::default();
        assert!(a.take(&mut drained));
        assert_eq!(budget.used(), 180);
        assert_eq!(one(&a, 2), 1);
        assert_eq!(one(&b, 1), 0);
        // An outbox dropped (its peer gone) gives back what it held.
        drop(b);
        assert_eq!(budget.used(), 90);
        // A reload may raise the limit.
        budget.set_limit(1000);
        assert_eq!(one(&a, 5), 5);
    }
}
