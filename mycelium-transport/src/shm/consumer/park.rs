//! Waiting: spinning, then sleeping on the slot's futex word until the producer wakes it
//! (the consumer half of the park protocol), for one ring or for several at once; and waking a
//! producer parked for room once this consumer made some.

use std::time::{Duration, Instant};

use crate::shm::barrier;
use crate::shm::error::RecvError;
use crate::shm::layout::{PARKED, PARKED_RUNNING};
use crate::shm::region::RingRegion;
use crate::shm::sync::{fence, AtomicU32, Ordering};
use crate::shm::wake;

use super::RingConsumer;

impl RingConsumer {
    /// Receives the next frame into `out`, waiting for one if none is published: first
    /// spinning for up to `spin` (zero: not at all), then parking on the futex word of its
    /// slot (`parked`) until the producer's
    /// [`publish_and_wake`](crate::shm::RingProducer::publish_and_wake) wakes it. The producer may
    /// be in another process that only shares the ring's memory.
    ///
    /// Returns `Ok(true)` with a frame, or `Ok(false)` once `timeout` (`None`: none) has
    /// passed without one. With untrusted peers, pass a timeout: a peer that clears this
    /// slot's `parked` word or the header's `parked_consumers` can make the producer skip the
    /// wake, and only the timeout's re-check then finds the frames.
    ///
    /// # Errors
    ///
    /// [`RecvError::Read`] for a corrupt ring (as [`try_recv_into`](Self::try_recv_into));
    /// [`RecvError::Park`] if the futex wait fails unexpectedly.
    pub fn recv_blocking(
        &mut self,
        out: &mut Vec<u8>,
        spin: Duration,
        timeout: Option<Duration>,
    ) -> Result<bool, RecvError> {
        let deadline = timeout.map(|timeout| Instant::now().checked_add(timeout));
        loop {
            if self.try_recv_into(out)? {
                return Ok(true);
            }
            if !spin.is_zero() && self.spin_for_publish(spin) {
                count_unslept_round();
                continue;
            }
            let remaining = match deadline {
                None | Some(None) => None,
                Some(Some(deadline)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(false);
                    }
                    Some(remaining)
                }
            };
            self.park_begin();
            let remaining = nap_unless_fenced(barrier::heavy_barrier(), remaining);
            let waited = if self.has_data() {
                count_unslept_round();
                Ok(())
            } else {
                wake::wait(&self.region, &self.slot().parked, PARKED, remaining)
            };
            self.park_end();
            waited.map_err(RecvError::Park)?;
        }
    }

    /// Whether a frame (or, in a lossy ring, a lap; or, for a consumer that
    /// [`reports drops`](Self::reports_drops), a drop announced since its last frame) may be
    /// waiting: the published `write_pos` differs from this consumer's position. One Relaxed
    /// load (two more for a consumer that reports drops, when the ring is empty): cheap
    /// enough for a spin loop over several rings; [`try_recv_into`](Self::try_recv_into) then
    /// reads with its own Acquire loads and checks.
    ///
    /// Why a sleeping consumer must hear of drops: a producer drops when the *slowest*
    /// consumer is a ring behind, and a consumer that keeps up may then be asleep on an
    /// empty ring. (A ring's only consumer, or its slowest, cannot be: a drop means it had a
    /// ring's worth unread, so it drains and then finds the announcement without sleeping.)
    /// The producer's wake scan after a drop and this check close the Dekker pair.
    pub fn has_data(&self) -> bool {
        // SYNC POINT: Relaxed; only a hint (see above). After `park_begin`'s SeqCst fence it is
        // the consumer half of the Dekker check (see there).
        self.region
            .header()
            .producer
            .write_pos
            .load(Ordering::Relaxed)
            != self.pos
            || (self.drops && self.drop_announced())
    }

    /// Announces that this consumer is about to sleep: raises the header's `parked_consumers`
    /// and the slot's `parked`, then fences. The caller then checks [`has_data`](Self::has_data)
    /// and sleeps on `parked` only if it is false, and calls [`park_end`](Self::park_end)
    /// either way.
    pub(super) fn park_begin(&self) {
        // SYNC POINT: Relaxed RMW, ordered before the `write_pos` load after the fence below;
        // tells the producer's wake scan that someone may be parked (its fast path skips the
        // scan while this reads 0). An RMW, so concurrent consumers never lose a count.
        self.region
            .header()
            .parked_consumers
            .fetch_add(1, Ordering::Relaxed);
        // SYNC POINT: Relaxed, ordered before the `write_pos` load by the fence below;
        // announces that we are about to sleep to the producer's wake scan. A swap rather than
        // a store: the C++ fence rule already forbids the producer's post-fence load from
        // reading a value older than this write, but loom keeps modification order as a
        // partial order and would let that load return the 0 written by the producer's own
        // earlier swap (a lost wake-up the memory model rules out). As an RMW our write is
        // ordered after every write we read over, in loom too. It costs one locked
        // instruction, on the park path only.
        self.slot().parked.swap(PARKED, Ordering::Relaxed);
        // SYNC POINT: SeqCst fence pairs with the SeqCst fence in
        // `RingProducer::publish_and_wake` (Dekker: raise `parked_consumers` and `parked`,
        // fence, load `write_pos` here; store `write_pos`, fence, load `parked_consumers` and
        // `parked` there). Either the producer's scan sees our flag (and the counter) and
        // wakes the futex, or our `has_data` load sees its `write_pos` and we do not sleep.
        // Without the fence the stores could be ordered after the load, and a publish falling
        // between them would wake nobody. The futex itself closes the remaining window: the
        // producer clears `parked` before its FUTEX_WAKE, and FUTEX_WAIT sleeps only while
        // the word still holds PARKED.
        //
        // A producer with the light barrier issues no fence: the caller runs
        // `barrier::heavy_barrier` after this (once for all the rings it parks on), which
        // runs the producer's half on its CPU (`barrier.rs`).
        fence(Ordering::SeqCst);
    }

    /// Ends a [`park_begin`](Self::park_begin): clears the slot's `parked` and lowers the
    /// header's `parked_consumers` (never below zero).
    pub(super) fn park_end(&self) {
        // SYNC POINT: Relaxed swap; we are running again. Whoever clears a raised flag lowers
        // `parked_consumers` for it: we, if the flag is still ours to clear; else the
        // producer's wake scan (or `wake_consumer`) already did. So the counter never stays
        // raised for a consumer that is not parked, which would make every publish scan.
        if self.slot().parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
            decrement_parked_consumers(&self.region);
        }
    }

    /// Spins for up to `spin` while `write_pos` equals our position; `true` if it moved.
    pub(super) fn spin_for_publish(&self, spin: Duration) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                // SYNC POINT: Relaxed; only a hint that a frame may be there, which
                // `try_recv_into` then reads with its own Acquire load.
                let write_pos = self
                    .region
                    .header()
                    .producer
                    .write_pos
                    .load(Ordering::Relaxed);
                if write_pos != self.pos {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= spin {
                return false;
            }
            // The producer we wait for may be queued on this very core: offer it the core.
            std::thread::yield_now();
        }
    }
}

/// Waits until any of `consumers` may have a frame: for a subscriber that reads several rings
/// (one per publisher) from one thread. Parks on every consumer's slot (as
/// [`RingConsumer::recv_blocking`] does), returns at once if any already has data, and
/// otherwise sleeps in one `futex_waitv` on all their `parked` words until a producer wakes
/// one, `timeout` passes (`None`: none), or a spurious wake-up.
///
/// Returns `Ok(())` in every one of those cases: the caller then reads every consumer with
/// [`try_recv_into`](RingConsumer::try_recv_into) (or checks
/// [`has_data`](RingConsumer::has_data)) and calls this again when all are empty. An empty
/// `consumers` returns at once. Above 128 consumers (the kernel's limit for one
/// `futex_waitv`), or on a kernel without `futex_waitv` (before Linux 5.16), it sleeps on the
/// first consumer's word for at most 1 ms at a time, so the others are polled at least that
/// often.
///
/// # Errors
///
/// [`RecvError::Park`] if the futex wait fails unexpectedly.
#[cfg(not(loom))]
pub fn wait_any(consumers: &[&RingConsumer], timeout: Option<Duration>) -> Result<(), RecvError> {
    for consumer in consumers {
        consumer.park_begin();
    }
    let timeout = if consumers.is_empty() {
        timeout
    } else {
        nap_unless_fenced(barrier::heavy_barrier(), timeout)
    };
    let waited = if consumers
        .iter()
        .any(|consumer| consumer.has_data() || consumer.has_notice())
    {
        Ok(())
    } else {
        let words: Vec<&AtomicU32> = consumers
            .iter()
            .map(|consumer| &consumer.slot().parked)
            .collect();
        wake::wait_any(&words, PARKED, timeout)
    };
    for consumer in consumers {
        consumer.park_end();
    }
    waited.map_err(RecvError::Park)
}

#[cfg(all(test, not(loom)))]
thread_local! {
    /// Test-only: rounds of [`RingConsumer::recv_blocking`] on this thread that went back to
    /// reading without sleeping, because the spin or the park re-check (`has_data`) saw
    /// something. On a ring nobody writes to meanwhile it stays 0 unless those checks and the
    /// read disagree (a busy loop).
    pub(crate) static UNSLEPT_ROUNDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a round of `recv_blocking` that did not sleep (tests only; nothing otherwise).
pub(super) fn count_unslept_round() {
    #[cfg(all(test, not(loom)))]
    UNSLEPT_ROUNDS.with(|rounds| rounds.set(rounds.get() + 1));
}

/// The sleep a parking consumer may take: `timeout`, or at most [`barrier::UNFENCED_NAP`] when
/// its heavy barrier failed (a producer publishing without a fence may then miss its flag).
pub(super) fn nap_unless_fenced(fenced: bool, timeout: Option<Duration>) -> Option<Duration> {
    if fenced {
        timeout
    } else {
        Some(timeout.map_or(barrier::UNFENCED_NAP, |t| t.min(barrier::UNFENCED_NAP)))
    }
}

/// Lowers the header's `parked_consumers` by one, but never below zero (a scribbler may have
/// zeroed it; wrapping would make every publish scan forever).
pub(crate) fn decrement_parked_consumers(region: &RingRegion) {
    // SYNC POINT: Relaxed CAS loop; the counter is only a hint for the producer's wake scan,
    // ordered by the SeqCst fences of the park protocol, not by this operation. Failure (the
    // counter is 0) is the floor, not an error.
    let _ = region.header().parked_consumers.fetch_update(
        Ordering::Relaxed,
        Ordering::Relaxed,
        |count| count.checked_sub(1),
    );
}

/// After this consumer made room (a Release store of `read_pos` or of `state`): wakes the
/// producer if it is parked in [`RingProducer::push_blocking`](crate::shm::RingProducer). One
/// fence (a compiler fence only with `light`: this process is registered for the producer's
/// heavy barrier) and one Relaxed load when it is not: the per-batch cost of a lossless read.
pub(super) fn wake_parked_producer(region: &RingRegion, light: bool) {
    let parked: &AtomicU32 = &region.header().producer_parked;
    // SYNC POINT: SeqCst fence pairs with the SeqCst fence at the start of the producer's
    // rescan in `push_blocking` (Dekker: store `read_pos`/`state`, fence, load
    // `producer_parked` here; raise `producer_parked`, fence, load `read_pos`/`state` there).
    // Either its rescan sees the room we made, or our load below sees its flag and we wake
    // it. Without the fence our load could be satisfied before our store is visible, and the
    // producer could sleep on a ring that has room. With `light`, the producer's
    // `heavy_barrier` before its rescan runs our half on our CPU (`barrier.rs`).
    if light {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    // SYNC POINT: Relaxed; ordered after our store by the fence above. The plain load keeps
    // the header line clean while the producer runs.
    if parked.load(Ordering::Relaxed) == PARKED_RUNNING {
        return;
    }
    // SYNC POINT: Relaxed swap: of all the consumers that see the flag, exactly one clears it
    // and makes the wake syscall. Cleared before the wake, so a producer not yet asleep finds
    // the word changed. Any non-zero (scribbled) value counts as parked: a spurious wake.
    if parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
        // A failed wake (an unexpected system-call error) leaves the producer to its timeout;
        // a read cannot report it, and must not fail because of it.
        let _ = wake::wake(region, parked);
    }
}
