//! How far the log is durable, and the interval syncer's thread.
//!
//! - [`Durability`] holds the durable offset (every record below it is synced) and what the
//!   syncer should sync next: the active segment's file and the offset it reaches.
//! - [`Syncer`] owns the thread of [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval)
//!   (every interval it syncs the active file if appends passed the durable offset) and of
//!   [`FsyncPolicy::GroupCommit`](crate::FsyncPolicy::GroupCommit) (it sleeps until an append
//!   passes the durable offset, then syncs at once). Dropping the handle stops and joins the
//!   thread.
//! - A listener ([`Durability::set_listener`]) hears every move of the durable offset, from
//!   whichever thread made it: how an async owner learns of durability without a thread
//!   blocked in [`Durability::wait`].

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the syncer syncs next; changed only at a roll and at the stop.
struct Pending {
    file: Arc<File>,
    stop: bool,
}

/// Told the new durable offset each time it moves.
pub(crate) type DurableListener = Box<dyn Fn(u64) + Send + Sync>;

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
    /// Wake the syncer at every append (group commit), not only to stop.
    wake_on_append: AtomicBool,
    listener: Mutex<Option<DurableListener>>,
}

impl Durability {
    pub(crate) fn new(file: Arc<File>, next_offset: u64, wake_on_append: bool) -> Self {
        Self {
            durable: AtomicU64::new(next_offset),
            target: AtomicU64::new(next_offset),
            pending: Mutex::new(Pending { file, stop: false }),
            wake: Condvar::new(),
            moved: Condvar::new(),
            wake_on_append: AtomicBool::new(wake_on_append),
            listener: Mutex::new(None),
        }
    }

    /// Calls `listener` with the durable offset each time it moves from now on (replacing any
    /// listener set before). It runs on the thread that moved it (the syncer's or an
    /// appender's), so it must be quick and must not call into the log.
    pub(crate) fn set_listener(&self, listener: DurableListener) {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
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
        let moved = {
            let _g = self.lock();
            let before = self.durable.fetch_max(offset, Ordering::AcqRel);
            self.moved.notify_all();
            before < offset
        };
        if moved {
            if let Some(listener) = &*self.listener.lock().unwrap_or_else(|e| e.into_inner()) {
                listener(self.durable());
            }
        }
    }

    /// Whether appends wake the syncer (set while no syncer runs: at a policy change).
    pub(crate) fn set_wake_on_append(&self, wake: bool) {
        self.wake_on_append.store(wake, Ordering::Relaxed);
    }

    /// Records that appends reached `target` in the active segment (and, under group commit,
    /// wakes the syncer: under the lock, so a syncer about to sleep cannot miss it).
    pub(crate) fn appended(&self, target: u64) {
        if self.wake_on_append.load(Ordering::Relaxed) {
            let _g = self.lock();
            self.target.store(target, Ordering::Release);
            self.wake.notify_all();
        } else {
            self.target.store(target, Ordering::Release);
        }
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
    /// A syncer that syncs every `interval`, or (`None`: group commit) whenever an append is
    /// waiting.
    pub(crate) fn start(shared: Arc<Durability>, interval: Option<Duration>) -> io::Result<Self> {
        // A syncer stopped before (a policy change) has been joined: the flag is this one's.
        shared.lock().stop = false;
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mycelium-log-sync".into())
            .spawn(move || loop {
                {
                    let g = s.lock();
                    let g = match interval {
                        Some(interval) => {
                            s.wake
                                .wait_timeout_while(g, interval, |p| !p.stop)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                        None => s
                            .wake
                            .wait_while(g, |p| {
                                !p.stop && s.target.load(Ordering::Acquire) <= s.durable()
                            })
                            .unwrap_or_else(|e| e.into_inner()),
                    };
                    if g.stop {
                        return;
                    }
                }
                if let Err(e) = s.sync_pending() {
                    tracing::warn!(error = %e, "background fsync of the log failed");
                    // Do not spin on a failing disk: the next append or interval tries again.
                    if interval.is_none() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
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
