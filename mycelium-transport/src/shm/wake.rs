//! The wake channel of the wake protocol: [`Parker`] (a consumer sleeps on it) and
//! [`Unparker`] (the producer signals it), plus the producer's [`WakeTable`].
//!
//! - In the real build the channel is an eventfd in counter mode (not `EFD_SEMAPHORE`),
//!   non-blocking and close-on-exec. `unpark` adds 1; `park` waits in `poll` for the counter to
//!   become non-zero (with an optional timeout), then one `read` drains it, so any number of
//!   wakes sent while the consumer ran cost it one early return, never a lost wake.
//! - Under `--cfg loom` the channel is a counter behind a loom `Mutex` with a `Condvar`. Loom
//!   cannot model a syscall, but it does model a blocked condvar wait: if the wake protocol lost
//!   a wake-up, the consumer would wait for a notification nobody sends, and loom reports the
//!   execution as a deadlock. (A spin on an atomic plus `yield_now` would instead show a lost
//!   wake as a model that never ends.) Loom has no clock, so a timed `park` there returns at
//!   once, as a timed wait is allowed to.
//!
//! The channel only says "look again"; what to read is always decided by the ring's
//! positions, so a spurious wake (a hostile peer writing the eventfd) costs one loop, and no
//! count carried by the channel is trusted.

use std::io;
use std::time::Duration;

#[cfg(not(loom))]
use std::sync::Arc;

#[cfg(loom)]
use super::sync::{Arc, Condvar, Mutex};

/// The consumer's end of a wake channel: [`park`](Self::park) sleeps until an [`Unparker`]
/// of this channel signals it (or a timeout passes).
pub struct Parker {
    channel: Arc<Channel>,
}

/// The producer's end of a wake channel; cheap to clone.
#[derive(Clone)]
pub struct Unparker {
    channel: Arc<Channel>,
}

#[cfg(not(loom))]
struct Channel {
    fd: nix::sys::eventfd::EventFd,
}

#[cfg(loom)]
struct Channel {
    count: Mutex<u64>,
    signalled: Condvar,
}

impl Parker {
    /// A new wake channel (an eventfd with counter 0).
    ///
    /// # Errors
    ///
    /// The `eventfd` call's error (for example the process is out of file descriptors).
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            channel: Arc::new(Channel::new()?),
        })
    }

    /// A producer-side handle to this channel.
    pub fn unparker(&self) -> Unparker {
        Unparker {
            channel: Arc::clone(&self.channel),
        }
    }

    /// Sleeps until the channel is signalled or `timeout` passes (`None`: no timeout), and
    /// clears the signal.
    ///
    /// Returns `true` if a signal was consumed, `false` on timeout or an interrupted or
    /// spurious return; either way the caller re-checks its condition.
    ///
    /// # Errors
    ///
    /// An I/O error from `poll` or `read` other than `EINTR`/`EAGAIN`.
    pub fn park(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.channel.park(timeout)
    }
}

impl Unparker {
    /// Signals the channel: the parked consumer (or the next `park`) returns.
    ///
    /// # Errors
    ///
    /// An I/O error from the eventfd `write` (a saturated counter, `EAGAIN`, is not an error:
    /// the channel is already signalled).
    pub fn unpark(&self) -> io::Result<()> {
        self.channel.unpark()
    }
}

#[cfg(not(loom))]
impl Channel {
    fn new() -> io::Result<Self> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Self { fd })
    }

    fn park(&self, timeout: Option<Duration>) -> io::Result<bool> {
        use nix::errno::Errno;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Round up to whole milliseconds, so a short timeout sleeps instead of spinning.
            Some(duration) => {
                let millis = duration.as_micros().div_ceil(1000);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => return Ok(false),
            Ok(_) => {}
            Err(errno) => return Err(errno.into()),
        }
        match self.fd.read() {
            Ok(_) => Ok(true),
            // Someone else holding the fd drained it first: a spurious return.
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    fn unpark(&self) -> io::Result<()> {
        match self.fd.write(1) {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }
}

#[cfg(loom)]
impl Channel {
    fn new() -> io::Result<Self> {
        Ok(Self {
            count: Mutex::new(0),
            signalled: Condvar::new(),
        })
    }

    fn park(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut count = self.count.lock().expect("loom mutex poisoned");
        if timeout.is_none() {
            while *count == 0 {
                count = self.signalled.wait(count).expect("loom mutex poisoned");
            }
        }
        let signalled = *count > 0;
        *count = 0;
        Ok(signalled)
    }

    fn unpark(&self) -> io::Result<()> {
        *self.count.lock().expect("loom mutex poisoned") += 1;
        self.signalled.notify_one();
        Ok(())
    }
}

/// The producer's map from consumer slot index to that consumer's [`Unparker`], scanned by
/// [`RingProducer::publish_and_wake`](super::RingProducer::publish_and_wake).
#[derive(Default)]
pub struct WakeTable {
    entries: Vec<(usize, Unparker)>,
}

impl WakeTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `unparker` for consumer slot `slot`, replacing any earlier one.
    pub fn insert(&mut self, slot: usize, unparker: Unparker) {
        self.remove(slot);
        self.entries.push((slot, unparker));
    }

    /// Forgets the unparker of slot `slot` (when its consumer leaves).
    pub fn remove(&mut self, slot: usize) -> Option<Unparker> {
        let at = self.entries.iter().position(|(index, _)| *index == slot)?;
        Some(self.entries.swap_remove(at).1)
    }

    /// Number of registered consumers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no consumer is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The registered `(slot, unparker)` pairs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Unparker)> {
        self.entries
            .iter()
            .map(|(slot, unparker)| (*slot, unparker))
    }
}
