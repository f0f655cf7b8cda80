//! [`Stamp`]: a message's id and publish time, and the [`Stamper`] a publisher makes them with.
//!
//! The id is a UUID version 7 (RFC 9562), so ids sort by publish time as well as being unique:
//!
//! ```text
//! bits 0-47   unix_ts_ms   the timestamp's milliseconds since the Unix epoch
//! bits 48-51  ver          0b0111
//! bits 52-63  rand_a       the sub-millisecond fraction of the timestamp in 1/4096 ms
//!                          (RFC 9562 §6.2, method 3: ~244 ns steps)
//! bits 64-65  var          0b10
//! bits 66-127 rand_b       a random 62-bit seed per publisher plus its message count
//! ```
//!
//! Why v7 and this filling: the id and the timestamp come from one clock read, with no random
//! number drawn per message (a publish stays cheap); ids from one publisher are distinct for
//! 2^62 messages whatever the clock does, ids from two publishers collide only if both seeds
//! plus counts meet within the same 244 ns, and sorting ids sorts messages by publish time to
//! that step (as far as the machine's clock went forward).

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// A message's id and the time it was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Unique, sorts by publish time (UUIDv7).
    pub id: Uuid,
    /// Nanoseconds since the Unix epoch, read once by the publisher's side.
    pub timestamp_ns: u64,
}

impl Stamp {
    /// The publish time as a [`SystemTime`].
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_nanos(self.timestamp_ns)
    }
}

const RAND_B_MASK: u64 = (1 << 62) - 1;

/// Nanoseconds since the Unix epoch, read straight from `CLOCK_REALTIME` (one vDSO call; the
/// `SystemTime` route adds a `Duration` and 128-bit arithmetic per message). A clock before
/// 1970 (or one that cannot be read) stamps 0 rather than failing a publish.
fn now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
        Ok(now) => u64::try_from(now.tv_sec())
            .ok()
            .and_then(|secs| secs.checked_mul(1_000_000_000))
            .and_then(|ns| ns.checked_add(u64::try_from(now.tv_nsec()).ok()?))
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Makes stamps for one publisher: one clock read per message, no randomness after creation.
#[derive(Debug, Clone)]
pub struct Stamper {
    seed: u64,
    count: u64,
}

impl Default for Stamper {
    fn default() -> Self {
        Stamper::new()
    }
}

impl Stamper {
    /// A stamper with a fresh random seed.
    pub fn new() -> Stamper {
        Stamper {
            seed: Uuid::new_v4().as_u64_pair().1,
            count: 0,
        }
    }

    /// Stamps a message published now.
    pub fn stamp(&mut self) -> Stamp {
        self.stamp_at(now_ns())
    }

    /// Stamps a message published at `timestamp_ns`.
    pub fn stamp_at(&mut self, timestamp_ns: u64) -> Stamp {
        let rand_b = self.seed.wrapping_add(self.count) & RAND_B_MASK;
        self.count = self.count.wrapping_add(1);
        Stamp {
            id: uuid_v7(timestamp_ns, rand_b),
            timestamp_ns,
        }
    }
}

/// The UUIDv7 of `timestamp_ns` with `rand_b` in its last 62 bits.
fn uuid_v7(timestamp_ns: u64, rand_b: u64) -> Uuid {
    let millis = timestamp_ns / 1_000_000;
    let fraction = (timestamp_ns % 1_000_000) * 4096 / 1_000_000;
    let high = (millis & 0xFFFF_FFFF_FFFF) << 16 | 0x7 << 12 | fraction;
    let low = 0b10 << 62 | rand_b;
    Uuid::from_u64_pair(high, low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_sort_by_time() {
        let mut stamper = Stamper::new();
        let a = stamper.stamp_at(1_765_000_000_123_456_789);
        let b = stamper.stamp_at(1_765_000_000_123_457_100);
        let c = stamper.stamp_at(1_765_000_001_000_000_000);
        for stamp in [a, b, c] {
            assert_eq!(stamp.id.get_version_num(), 7);
            assert_eq!(stamp.id.get_variant(), uuid::Variant::RFC4122);
        }
        assert!(a.id < b.id && b.id < c.id);
        let (secs, nanos) = a.id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(secs, 1_765_000_000);
        assert_eq!(nanos / 1_000_000, 123);
    }

    #[test]
    fn one_publisher_never_repeats_an_id_at_one_instant() {
        let mut stamper = Stamper::new();
        let ids: std::collections::HashSet<Uuid> =
            (0..10_000).map(|_| stamper.stamp_at(42).id).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn a_stamp_takes_the_clock_now() {
        let before = SystemTime::now();
        let stamp = Stamper::new().stamp();
        let after = SystemTime::now();
        assert!(before <= stamp.time() && stamp.time() <= after);
    }
}
