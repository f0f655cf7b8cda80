//! What a worker measures and reports: order, gaps and latency of what it received.

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use super::stamp::{now_ns, read_stamp};
use super::timeline::Timeline;

/// What a worker reports on its last stdout line, after `result `.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Seconds from first to last message (sent or received).
    pub(crate) seconds: f64,
    /// `CLOCK_MONOTONIC` ns: a publisher's first send; a subscriber's last receipt.
    #[serde(default)]
    pub(crate) clock_ns: u64,
    /// Messages that arrived with a lower sequence number than an earlier one of the same publisher.
    pub(crate) reordered: u64,
    /// Sequence numbers skipped (fanout: lost messages).
    pub(crate) gaps: u64,
    pub(crate) latency: Vec<[u64; 2]>,
    /// A subscriber's deliveries per 100 ms.
    #[serde(default)]
    pub(crate) timeline: Timeline,
    /// A durable publisher's first message's offset in the log.
    #[serde(default)]
    pub(crate) first_offset: Option<u64>,
}

/// What a subscriber learns from the stamps of the messages it receives.
#[derive(Default)]
pub(crate) struct Tally {
    latency: Histogram,
    timeline: Timeline,
    next_seq: Vec<u64>,
    pub(crate) reordered: u64,
    pub(crate) gaps: u64,
}

impl Tally {
    pub(crate) fn check(&mut self, payload: &[u8]) {
        let Some((seq, ts)) = read_stamp(payload) else {
            return;
        };
        if ts != 0 {
            self.latency.record(now_ns().saturating_sub(ts));
        }
        let publisher = (seq >> 48) as usize;
        let seq = seq & ((1 << 48) - 1);
        if self.next_seq.len() <= publisher {
            self.next_seq.resize(publisher + 1, 0);
        }
        if seq < self.next_seq[publisher] {
            self.reordered += 1;
        } else {
            self.gaps += seq - self.next_seq[publisher];
            self.next_seq[publisher] = seq + 1;
        }
    }

    /// Counts `n` messages received in one batch at `now_ns` on the timeline.
    pub(crate) fn received_at(&mut self, n: u64, now_ns: u64) {
        self.timeline.add(n, now_ns);
    }

    pub(crate) fn result(self, received: u64, seconds: f64, last_ns: u64) -> WorkerResult {
        WorkerResult {
            received,
            seconds,
            clock_ns: last_ns,
            reordered: self.reordered,
            gaps: self.gaps,
            latency: self.latency.to_sparse(),
            timeline: self.timeline,
            ..WorkerResult::default()
        }
    }
}
