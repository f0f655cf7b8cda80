//! When a publisher sends: as fast as it can for `--count` messages or `--duration`, or on a
//! fixed schedule at `--rate`.
//!
//! - Paced (`--rate R`): message `i` is due at `start + i / R`. Its stamp carries that
//!   intended time, not the moment it actually left, so a stall (a full ring, a slow broker)
//!   shows up as latency of every message it held back instead of vanishing from the figures
//!   (coordinated omission). A publisher behind schedule sends at once, without pausing,
//!   until it has caught up.
//! - Unpaced: one message in [`LATENCY_SAMPLE_EVERY`] is timestamped with the real send time,
//!   as before; with `--duration` the clock is read once every [`DEADLINE_CHECK_EVERY`]
//!   messages.
//! - Every paced message is timestamped: at the rates a schedule is meant for, reading the
//!   clock per message costs little, and every message's latency is what the mode measures.

use std::time::Duration;

use super::args::WorkerArgs;
use super::stamp::{now_ns, LATENCY_SAMPLE_EVERY};

/// Unpaced runs against a deadline read the clock once per this many messages.
const DEADLINE_CHECK_EVERY: u64 = 256;
/// A paced publisher that is this far ahead of its next message sleeps; closer than that it
/// spins, since a sleep overshoots by tens of microseconds.
const SLEEP_WHEN_AHEAD_NS: u64 = 200_000;
/// What a sleep leaves for spinning, to absorb its own overshoot.
const SLEEP_MARGIN_NS: u64 = 100_000;

/// The plan of one publisher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start_ns: u64,
    /// Messages to send; `None` with an unpaced `--duration` (until the deadline).
    count: Option<u64>,
    deadline_ns: Option<u64>,
    /// Messages per second, when paced.
    rate: Option<u64>,
}

/// What to do for the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send it now, with this timestamp in its stamp (0: no latency sample).
    Send { stamp_ns: u64 },
    /// Wait this long, then ask again.
    Wait(Duration),
    /// The run is over.
    Done,
}

impl Schedule {
    /// The schedule a worker's arguments ask for, starting now.
    pub(crate) fn start(args: &WorkerArgs) -> Schedule {
        Schedule::new(now_ns(), args.count, args.duration_ms, args.rate)
    }

    /// `duration_ms` 0: `count` messages; `rate` 0: unpaced. A paced run for a duration sends
    /// exactly `rate × duration` messages.
    pub(crate) fn new(start_ns: u64, count: u64, duration_ms: u64, rate: u64) -> Schedule {
        let rate = (rate > 0).then_some(rate);
        let count = match (duration_ms, rate) {
            (0, _) => Some(count),
            (ms, Some(rate)) => Some(rate.saturating_mul(ms) / 1000),
            (_, None) => None,
        };
        let deadline_ns = (duration_ms > 0 && rate.is_none())
            .then(|| start_ns.saturating_add(duration_ms.saturating_mul(1_000_000)));
        Schedule {
            start_ns,
            count,
            deadline_ns,
            rate,
        }
    }

    /// When message `seq` is due, for a paced schedule.
    pub(crate) fn intended_ns(&self, seq: u64) -> Option<u64> {
        let rate = self.rate?;
        let offset = u128::from(seq) * 1_000_000_000 / u128::from(rate);
        Some(
            self.start_ns
                .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX)),
        )
    }

    /// What to do about message `seq` (the messages before it are sent).
    pub(crate) fn next(&self, seq: u64) -> Next {
        if self.count.is_some_and(|count| seq >= count) {
            return Next::Done;
        }
        if let Some(intended) = self.intended_ns(seq) {
            let now = now_ns();
            return match intended.checked_sub(now) {
                Some(ahead) if ahead > SLEEP_WHEN_AHEAD_NS => {
                    Next::Wait(Duration::from_nanos(ahead - SLEEP_MARGIN_NS))
                }
                Some(ahead) if ahead > 0 => Next::Wait(Duration::ZERO),
                _ => Next::Send { stamp_ns: intended },
            };
        }
        if let Some(deadline) = self.deadline_ns {
            if seq % DEADLINE_CHECK_EVERY == 0 && now_ns() >= deadline {
                return Next::Done;
            }
        }
        let stamp_ns = if seq % LATENCY_SAMPLE_EVERY == 0 {
            now_ns()
        } else {
            0
        };
        Next::Send { stamp_ns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_messages_are_due_at_start_plus_i_over_rate() {
        let s = Schedule::new(1_000, 0, 2_000, 4);
        assert_eq!(s.count, Some(8));
        assert_eq!(s.intended_ns(0), Some(1_000));
        assert_eq!(s.intended_ns(3), Some(1_000 + 750_000_000));
    }

    #[test]
    fn a_paced_publisher_behind_schedule_stamps_the_intended_time() {
        // Started long ago: every message is overdue and carries its own due time.
        let start = now_ns().saturating_sub(10_000_000_000);
        let s = Schedule::new(start, 100, 0, 10);
        assert_eq!(
            s.next(5),
            Next::Send {
                stamp_ns: start + 500_000_000
            }
        );
        assert_eq!(s.next(100), Next::Done);
    }

    #[test]
    fn a_paced_publisher_ahead_of_schedule_waits() {
        let s = Schedule::new(now_ns() + 10_000_000_000, 100, 0, 10);
        assert!(matches!(s.next(0), Next::Wait(d) if d > Duration::from_secs(9)));
    }

    #[test]
    fn an_unpaced_duration_run_stops_at_its_deadline() {
        let s = Schedule::new(now_ns().saturating_sub(2_000_000_000), 0, 1_000, 0);
        assert_eq!(s.count, None);
        assert_eq!(s.next(0), Next::Done);
        let s = Schedule::new(now_ns(), 0, 60_000, 0);
        assert!(matches!(s.next(0), Next::Send { stamp_ns } if stamp_ns > 0));
        assert_eq!(s.next(1), Next::Send { stamp_ns: 0 });
    }
}
