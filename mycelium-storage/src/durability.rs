//! How far the log is durable, and the interval syncer's thread.
//!
//! - [`Durability`] holds the durable offset (every record below it is synced) and what the
//!   syncer should sync next: the active segment's file and the offset it reaches.
//! - [`Syncer`] owns the thread of [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval):
//!   every interval it syncs the active file if appends passed the durable offset. Dropping the
//!   handle stops and joins the thread.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the syncer syncs next; changed only at a roll and at the stop.
struct Pending {
    file: Arc<File>,
    stop: bool,
}

/// Shared by the log and its syncer thread.
pub(crate) struct Durability {
    durable: AtomicU64,
    /// The next offset once the pending file is synced: stored by every append without a lock.
    /// Appends reach a new file only after the roll swapped it in under the lock, so a syncer
    /// reading this while holding the lock never pairs a target with an older file.
    target: AtomicU64,
    pending: Mutex<Pending>,
    /// Wakes the syncer to stop.
    wake: Condvar,
    /// Wakes callers of `wait_durable` when the durable offset moves.
    moved: Condvar,
}

impl Durability {
    pub(crate) fn new(file: Arc<File>, next_offset: u64) -> Self {
        Self {
            durable: AtomicU64::new(next_offset),
            target: AtomicU64::new(next_offset),
            pending: Mutex::new(Pending { file, stop: false }),
            wake: Condvar::new(),
            moved: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every record below this offset is synced.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Records that everything below `offset` is synced.
    pub(crate) fn mark_durable(&self, offset: u64) {
        let _g = self.lock();
        self.durable.fetch_max(offset, Ordering::AcqRel);
        self.moved.notify_all();
    }

    /// Records that appends reached `target` in the active segment.
    pub(crate) fn appended(&self, target: u64) {
        self.target.store(target, Ordering::Release);
    }

    /// Makes `file` (a new active segment, the previous one synced) the one the syncer syncs.
    pub(crate) fn switch_file(&self, file: &Arc<File>) {
        self.lock().file = Arc::clone(file);
    }

    /// Waits until every record below `offset` is durable or `timeout` passes; answers
    /// whether it is.
    pub(crate) fn wait(&self, offset: u64, timeout: Duration) -> bool {
        let g = self.lock();
        let (_g, _) = self
            .moved
            .wait_timeout_while(g, timeout, |_| self.durable() < offset)
            .unwrap_or_else(|e| e.into_inner());
        self.durable() >= offset
    }

    /// One round of the syncer: syncs the pending file if it is ahead of the durable offset.
    fn sync_pending(&self) -> io::Result<()> {
        let (file, target) = {
            let p = self.lock();
            let target = self.target.load(Ordering::Acquire);
            if target <= self.durable() {
                return Ok(());
            }
            (Arc::clone(&p.file), target)
        };
        file.sync_data()?;
        self.mark_durable(target);
        Ok(())
    }
}

/// The interval syncer's thread; stops and is joined on drop.
pub(crate) struct Syncer {
    shared: Arc<Durability>,
    /// Joined on drop, after `stop` is set and the thread woken.
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub(crate) fn start(shared: Arc<Durability>, interval: Duration) -> io::Result<Self> {
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mycelium-log-sync".into())
            .spawn(move || loop {
                {
                    let g = s.lock();
                    let (g, _) = s
                        .wake
                        .wait_timeout_while(g, interval, |p| !p.stop)
                        .unwrap_or_else(|e| e.into_inner());
                    if g.stop {
                        return;
                    }
                }
                if let Err(e) = s.sync_pending() {
                    tracing::warn!(error = %e, "interval fsync of the log failed");
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
