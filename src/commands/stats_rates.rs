//! The rows of `mycelium stats --watch`: per-topic rates from the counters of two `Stats`
//! answers.
//!
//! - A rate is the counter's increase divided by the seconds between the two answers; the
//!   first answer has no rates (shown as `-`).
//! - A topic absent from the previous answer appeared since: its counters started at 0
//!   within the interval, so their whole value is the increase.
//! - A topic whose published, delivered or dropped count went down was removed and created
//!   again: its counters restarted at 0, so again their whole value is the increase. (A
//!   topic re-created that has already counted past its old figures is indistinguishable
//!   from one that was not: its rate is then low for one interval.)
//! - A topic absent from the current answer is gone and has no row.

use mycelium_transport::{RoutingKind, TopicStats};

/// One topic's line of the live table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TopicRow {
    pub(crate) name: String,
    /// `fanout` or `queue`.
    pub(crate) routing: &'static str,
    /// Auto-created (removed once idle) rather than declared.
    pub(crate) dynamic: bool,
    /// Socket and shared-memory subscribers together.
    pub(crate) subscribers: u64,
    pub(crate) shm_subscribers: u32,
    /// Messages per second accepted from publishers.
    pub(crate) publish_rate: Option<f64>,
    /// Copies per second handed to subscribers.
    pub(crate) deliver_rate: Option<f64>,
    pub(crate) dropped: u64,
    pub(crate) drop_rate: Option<f64>,
    /// Messages waiting in the topic's buffer, as the broker reports it.
    pub(crate) queued: u64,
}

/// The rows for `current`, with rates against `previous` taken `elapsed_secs` earlier
/// (`None`: the first answer).
pub(crate) fn rows(
    previous: Option<&[TopicStats]>,
    current: &[TopicStats],
    elapsed_secs: f64,
) -> Vec<TopicRow> {
    current
        .iter()
        .map(|t| {
            let rates = previous.filter(|_| elapsed_secs > 0.0).map(|previous| {
                let before = previous.iter().find(|p| p.name == t.name);
                let restarted = before.is_none_or(|p| {
                    t.published < p.published || t.delivered < p.delivered || t.dropped < p.dropped
                });
                let increase = |now: u64, then: fn(&TopicStats) -> u64| match before {
                    Some(p) if !restarted => now - then(p),
                    _ => now,
                };
                (
                    increase(t.published, |p| p.published) as f64 / elapsed_secs,
                    increase(t.delivered, |p| p.delivered) as f64 / elapsed_secs,
                    increase(t.dropped, |p| p.dropped) as f64 / elapsed_secs,
                )
            });
            TopicRow {
                name: t.name.clone(),
                routing: match t.routing {
                    RoutingKind::Fanout => "fanout",
                    RoutingKind::Queue => "queue",
                },
                dynamic: t.is_dynamic(),
                subscribers: u64::from(t.subscribers) + u64::from(t.shm_subscribers),
                shm_subscribers: t.shm_subscribers,
                publish_rate: rates.map(|r| r.0),
                deliver_rate: rates.map(|r| r.1),
                dropped: t.dropped,
                drop_rate: rates.map(|r| r.2),
                queued: t.queued,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, published: u64, delivered: u64, dropped: u64) -> TopicStats {
        TopicStats {
            name: name.to_owned(),
            routing: RoutingKind::Fanout,
            subscribers: 2,
            published,
            delivered,
            dropped,
            queued: 7,
            shm_subscribers: 1,
            flags: 0,
            log: None,
        }
    }

    #[test]
    fn the_first_answer_has_counts_but_no_rates() {
        let rows = rows(None, &[topic("a", 10, 20, 1)], 1.0);
        assert_eq!(rows[0].publish_rate, None);
        assert_eq!(rows[0].drop_rate, None);
        assert_eq!(
            (rows[0].subscribers, rows[0].dropped, rows[0].queued),
            (3, 1, 7)
        );
    }

    #[test]
    fn rates_are_counter_increases_over_the_elapsed_time() {
        let before = [topic("a", 100, 200, 10)];
        let rows = rows(Some(&before), &[topic("a", 300, 600, 12)], 0.5);
        assert_eq!(rows[0].publish_rate, Some(400.0));
        assert_eq!(rows[0].deliver_rate, Some(800.0));
        assert_eq!(rows[0].drop_rate, Some(4.0));
    }

    #[test]
    fn a_recreated_topic_counts_from_zero_instead_of_going_negative() {
        let before = [topic("a", 1000, 1000, 0)];
        let rows = rows(Some(&before), &[topic("a", 50, 40, 0)], 1.0);
        assert_eq!(rows[0].publish_rate, Some(50.0));
        assert_eq!(rows[0].deliver_rate, Some(40.0));
    }

    #[test]
    fn topics_that_appear_count_from_zero_and_those_that_go_have_no_row() {
        let before = [topic("gone", 5, 5, 0), topic("kept", 5, 5, 0)];
        let now = [topic("kept", 5, 5, 0), topic("new", 30, 0, 3)];
        let rows = rows(Some(&before), &now, 1.0);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["kept", "new"]);
        assert_eq!(rows[0].publish_rate, Some(0.0));
        assert_eq!(rows[1].publish_rate, Some(30.0));
        assert_eq!(rows[1].drop_rate, Some(3.0));
    }
}
