//! [`Watch`]: when a publisher looks at its control session, and the end it found there.
//!
//! - A publishing call counts the messages it is about to write and looks (without waiting)
//!   once [`LOOK_EVERY`] were written since the last look; a look put off because another
//!   thread holds the session comes again after [`LOOK_RETRY`].
//! - A wait for room (or for a queue consumer) looks at least every [`WAIT_SLICE`]
//!   ([`wait_in_slices`]).
//! - The end found is kept: every later call returns it.

use std::time::Duration;

use mycelium_transport::shm::PushError;

use crate::error::ClientError;
use crate::shm::session::{Look, Session};

/// Messages a publisher writes between two looks at its control session: the most that go
/// silently into a ring after the end of the session or of the attachment is readable there
/// (see the module docs). A look is a `poll` of the socket (and a read if something came): at
/// one per 4096 messages it costs the data path well under a nanosecond per message; the
/// count costs a compare and a decrement.
pub const LOOK_EVERY: u32 = 4096;

/// Messages before the next look when a look was skipped because another thread of the same
/// client was at the control socket (it files what it reads; the next look finds it).
pub(crate) const LOOK_RETRY: u32 = 64;

/// Longest a publisher waits for room (or for a queue consumer) between two looks at its
/// control session: a broker that died cannot free the slots of readers that stopped, so a
/// wait that looked only at the ring could last for ever.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A publisher's looks at its control session (see the module docs).
pub(super) struct Watch {
    /// Messages that may still be written before the next look; at least 1 between calls
    /// (0 or 1 once the session or attachment ended, so that every call looks and fails).
    until_look: u32,
    /// The end found: every later publishing call returns it.
    ended: Option<ClientError>,
}

impl Watch {
    pub(super) fn new() -> Watch {
        Watch {
            until_look: LOOK_EVERY,
            ended: None,
        }
    }

    /// Counts `n` messages about to be written, looking at the session first (without
    /// waiting) when they would make [`LOOK_EVERY`] since the last look.
    #[inline(always)]
    pub(super) fn count(
        &mut self,
        session: &Session,
        attachment: u32,
        n: u32,
    ) -> Result<(), ClientError> {
        if n < self.until_look {
            self.until_look -= n;
            return Ok(());
        }
        self.look_before(session, attachment, n)
    }

    #[cold]
    #[inline(never)]
    fn look_before(
        &mut self,
        session: &Session,
        attachment: u32,
        n: u32,
    ) -> Result<(), ClientError> {
        let looked = self.look(session, attachment, Look::IfFree)?;
        let every = if looked { LOOK_EVERY } else { LOOK_RETRY };
        self.until_look = every.saturating_sub(n).max(1);
        Ok(())
    }

    /// Looks at the session now (`how`); `Ok(false)` if the look was skipped (`IfFree` and
    /// another thread holds the session). Records an end and returns it, then and on every
    /// later call.
    pub(super) fn look(
        &mut self,
        session: &Session,
        attachment: u32,
        how: Look,
    ) -> Result<bool, ClientError> {
        if let Some(ended) = &self.ended {
            self.until_look = 0;
            return Err(ended.clone());
        }
        match session.publisher_end(attachment, how) {
            Ok(looked) => {
                if looked {
                    self.until_look = LOOK_EVERY;
                }
                Ok(looked)
            }
            Err(ended) => {
                tracing::debug!(attachment, error = %ended, "shared-memory publisher ended");
                self.until_look = 0;
                self.ended = Some(ended.clone());
                Err(ended)
            }
        }
    }
}

/// Runs `wait` (a blocking push, given a spin and a timeout) in slices of at most
/// [`WAIT_SLICE`], looking at the session between them: the wait ends with the session or the
/// attachment, not only when a reader makes room. Each slice reads the clock: for a ring found
/// full, not on the way to a push that has room.
pub(super) fn wait_in_slices(
    spin: Duration,
    watch: &mut Watch,
    session: &Session,
    attachment: u32,
    mut wait: impl FnMut(Duration, Option<Duration>) -> Result<(), PushError>,
) -> Result<Result<(), PushError>, ClientError> {
    loop {
        match wait(spin.min(WAIT_SLICE), Some(WAIT_SLICE)) {
            Err(PushError::Full) => {
                watch.look(session, attachment, Look::Now)?;
            }
            other => return Ok(other),
        }
    }
}
