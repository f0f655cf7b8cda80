//! Heartbeats of one message connection: detect a peer that is gone without closing its
//! socket (stopped, hung, or on the far side of a dead process group), without dropping one
//! that is merely idle or slow.
//!
//! - Every `heartbeat_interval_ms` the connection asks [`Heartbeat::tick`] what to do. A peer
//!   that sent anything since the last tick (a `Pong` is enough) is alive; so is one that
//!   took what was queued for it (its outbox was not empty at the last tick, and the drainer
//!   has taken from it since): a client working through a backlog reads slowly but reads.
//! - Otherwise the broker pings it; after `heartbeat_misses` such ticks in a row the peer is
//!   dead, and the connection is dropped with a fatal `HeartbeatTimeout`.
//! - The broker's own `Ping` does not count as something the peer took: writing it into the
//!   socket's buffer succeeds whether or not anybody reads.

/// What the connection does at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// The peer is alive: nothing to do.
    Alive,
    /// Silent: send `Ping` with this token.
    Ping(u64),
    /// Silent through this many pings: drop it.
    Dead(u32),
}

/// One connection's heartbeat state; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    /// Something was read from the peer since the last tick.
    heard: bool,
    /// Pings in a row the peer let pass without a sign of life.
    strikes: u32,
    /// The outbox's take count at the last tick.
    takes: u64,
    /// Whether the outbox held something (besides our ping) at the last tick.
    pending: bool,
    /// The token of the next ping.
    next_token: u64,
}

impl Heartbeat {
    /// Something arrived from the peer.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// A tick: `progress` is the outbox's `(takes, pending)` now; `misses` the pings a peer
    /// may let pass.
    pub(crate) fn tick(&mut self, progress: (u64, bool), misses: u32) -> Beat {
        let (takes, pending) = progress;
        let took = self.pending && takes != self.takes;
        let alive = std::mem::take(&mut self.heard) || took;
        self.takes = takes;
        self.pending = pending;
        if alive {
            self.strikes = 0;
            return Beat::Alive;
        }
        if self.strikes >= misses {
            return Beat::Dead(self.strikes);
        }
        self.strikes += 1;
        self.next_token = self.next_token.wrapping_add(1);
        Beat::Ping(self.next_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_answers_is_pinged_but_never_dropped() {
        let mut beat = Heartbeat::default();
        for round in 0..10 {
            assert!(matches!(beat.tick((round, false), 2), Beat::Ping(_)));
            // The ping itself is taken (the count moves); the peer answers.
            beat.heard();
            assert_eq!(beat.tick((round + 1, false), 2), Beat::Alive);
        }
    }

    #[test]
    fn a_silent_peer_is_dropped_after_the_misses() {
        let mut beat = Heartbeat::default();
        assert_eq!(beat.tick((0, false), 2), Beat::Ping(1));
        // Our ping was taken into the socket: that is no sign of life.
        assert_eq!(beat.tick((1, false), 2), Beat::Ping(2));
        assert_eq!(beat.tick((2, false), 2), Beat::Dead(2));
    }

    #[test]
    fn a_peer_that_takes_its_backlog_is_alive_though_it_says_nothing() {
        let mut beat = Heartbeat::default();
        assert!(matches!(beat.tick((0, true), 1), Beat::Ping(_)));
        for takes in 1..20 {
            assert_eq!(beat.tick((takes, true), 1), Beat::Alive);
        }
        // It stops taking: pinged once, then dropped.
        assert!(matches!(beat.tick((19, true), 1), Beat::Ping(_)));
        assert_eq!(beat.tick((19, true), 1), Beat::Dead(1));
    }
}
