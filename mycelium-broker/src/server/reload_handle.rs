//! [`ReloadHandle`]: how a reload of the config file is asked for, and [`ReloadAnswer`],
//! what the reload task answers.
//!
//! - Cheap to clone: the broker's state holds one (for clients' `ReloadRequest`s), the
//!   binary another (SIGHUP), the file watcher a third.
//! - Triggers queue without bound (each is tiny, and a client has at most one request
//!   waiting); the reload task ([`super::reload`]) drains them in bursts, so one reload
//!   answers every trigger that arrived while the previous one ran.
//! - [`ReloadHandle::request`] resolves with the outcome of a reload that started after the
//!   call; with no reload task running it answers a failure instead of waiting for ever.

use mycelium_transport::{ConfigStatus, ReloadOutcome};
use tokio::sync::{mpsc, oneshot};

/// Why a reload runs.
pub(super) enum Trigger {
    /// The watcher saw the file (or its directory entry) change.
    FileChanged,
    /// SIGHUP.
    Signal,
    /// A client's `ReloadRequest`, answered once the reload is done.
    Request(oneshot::Sender<ReloadAnswer>),
    /// Tests: the task panics, as a bug in it would, so that the supervision is exercised.
    #[cfg(test)]
    Crash,
}

/// The result of one reload, as a `ReloadResult` carries it.
#[derive(Debug, Clone)]
pub struct ReloadAnswer {
    /// Applied, unchanged or failed.
    pub outcome: ReloadOutcome,
    /// The config's status after the reload.
    pub status: ConfigStatus,
}

/// Asks the broker's reload task for a reload; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    /// Unbounded: every trigger is tiny, a burst is drained in one go by the task, and a
    /// client can have at most one request waiting (its connection reads nothing more until
    /// the answer), so the queue is bounded by the connections.
    triggers: mpsc::UnboundedSender<Trigger>,
}

/// The reload task's end of a [`ReloadHandle`].
#[derive(Debug)]
pub(crate) struct ReloadQueue {
    pub(super) triggers: mpsc::UnboundedReceiver<Trigger>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::FileChanged => "FileChanged",
            Trigger::Signal => "Signal",
            Trigger::Request(_) => "Request",
            #[cfg(test)]
            Trigger::Crash => "Crash",
        })
    }
}

/// A handle and the queue its triggers go to.
pub(crate) fn channel() -> (ReloadHandle, ReloadQueue) {
    let (triggers, queue) = mpsc::unbounded_channel();
    (ReloadHandle { triggers }, ReloadQueue { triggers: queue })
}

impl ReloadHandle {
    /// Reloads soon (SIGHUP); the outcome goes to the log and to `Stats`.
    pub fn signal(&self) {
        let _ = self.triggers.send(Trigger::Signal);
    }

    /// Tests: makes the reload task panic.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        let _ = self.triggers.send(Trigger::Crash);
    }

    pub(super) fn file_changed(&self) {
        let _ = self.triggers.send(Trigger::FileChanged);
    }

    /// Reloads, and resolves with the outcome of a reload that started after this call.
    /// Without a running reload task (a broker whose server is not running) the answer is a
    /// failure saying so.
    pub async fn request(&self) -> ReloadAnswer {
        let (answer, answered) = oneshot::channel();
        if self.triggers.send(Trigger::Request(answer)).is_ok() {
            if let Ok(answer) = answered.await {
                return answer;
            }
        }
        ReloadAnswer {
            outcome: ReloadOutcome::Failed,
            status: ConfigStatus {
                last_error: "the broker is not serving: no reload happened".to_owned(),
                ..ConfigStatus::default()
            },
        }
    }
}
