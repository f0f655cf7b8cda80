//! Watching `broker.toml` for hot reload: one callback per burst of changes to the file.
//!
//! - The watcher watches the file's *directory* (not recursively), not the file: an editor that
//!   saves by writing a temporary file and renaming it over the original (vim, `sed -i`, most
//!   IDEs) replaces the file's inode, and a watch on the old inode would see nothing more.
//! - When the path is a symlink, the directory of its resolved target is watched too, and any
//!   event in a watched directory counts (a Kubernetes-style `..data` swap renames entries that
//!   are not the file). The symlink is resolved again after every burst, so once it points
//!   elsewhere the new target's directory is watched instead of the old one's.
//! - Otherwise only events on the file itself count: created, written, truncated, renamed to or
//!   from, removed, or its metadata changed. Access events (open, read, close after reading) do
//!   not, so the broker reading the file does not trigger itself; a close after writing does.
//! - A burst is reported once, [`RELOAD_DEBOUNCE`] after its last event, or [`RELOAD_MAX_DELAY`]
//!   after its first when events keep coming. It may report a burst that left the file as it
//!   was (the caller compares content); it does not miss an edit.
//! - An error the watcher delivers (for instance a watch that was lost) counts as an event that
//!   may have changed the file: it is reported, never logged here.
//! - The callback runs on the watcher's own thread. Dropping the [`ConfigWatcher`] stops watching
//!   and waits for that thread, so no callback runs once `drop` has returned.
//! - A relative path is resolved against the current directory when watching starts; a bare file
//!   name is watched in the current directory. The directory must exist; the file need not yet.
//! - Not followed: a directory of the path that is itself a symlink swapped for another, or the
//!   file's directory removed and created again (its watch ends with it).
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//! use mycelium_config::ConfigWatcher;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("broker.toml");
//! std::fs::write(&path, "")?;
//! let (tx, rx) = mpsc::channel();
//! let watcher = ConfigWatcher::start(&path, move || {
//!     let _ = tx.send(());
//! })?;
//! std::fs::write(&path, "[server]\nmax_connections = 5\n")?;
//! rx.recv_timeout(Duration::from_secs(5))?;
//! drop(watcher);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::WatchError;

/// How long a burst of file events must be quiet before the watcher reports it.
///
/// Long enough to merge the events of one save (an editor's write, fsync, rename and chmod), short
/// enough that an operator sees the reload logged at once.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// Longest a report is delayed while events keep coming: a file rewritten continuously is still
/// reloaded twice a second.
pub const RELOAD_MAX_DELAY: Duration = Duration::from_millis(500);

/// Watches one config file and calls back once per burst of changes.
///
/// Dropping it stops watching and ends its thread.
pub struct ConfigWatcher {
    /// The path as given, for `Debug`.
    path: PathBuf,
    /// Tells the thread to stop: `Drop` sends [`Message::Stop`] on it. The event handler that
    /// notify owns holds another sender of the same channel.
    stop: Sender<Message>,
    /// The thread that owns the notify watcher and runs the callback; `Drop` joins it (it is
    /// `None` only during `Drop`).
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Starts watching `path` (its directory must exist, the file need not) and calls
    /// `on_change` from a thread of its own after every burst of events that may have changed
    /// the file: [`RELOAD_DEBOUNCE`] of quiet, or [`RELOAD_MAX_DELAY`] after the burst's first
    /// event.
    ///
    /// `on_change` should return promptly: events that arrive meanwhile wait for it, and
    /// dropping the watcher waits for it to return. A panic in it ends the watching.
    pub fn start(
        path: &Path,
        on_change: impl FnMut() + Send + 'static,
    ) -> Result<ConfigWatcher, WatchError> {
        ConfigWatcher::start_with(path, RELOAD_DEBOUNCE, RELOAD_MAX_DELAY, on_change)
    }

    /// As [`ConfigWatcher::start`], with explicit timings.
    pub fn start_with(
        path: &Path,
        debounce: Duration,
        max_delay: Duration,
        on_change: impl FnMut() + Send + 'static,
    ) -> Result<ConfigWatcher, WatchError> {
        let cwd = if path.is_absolute() {
            PathBuf::new()
        } else {
            std::env::current_dir().map_err(|source| WatchError::CurrentDir {
                path: path.to_path_buf(),
                source,
            })?
        };
        let file = ConfigFile::resolve(path, &cwd).ok_or_else(|| WatchError::NoFileName {
            path: path.to_path_buf(),
        })?;
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only once the thread has ended: nothing left to tell.
            let _ = events.send(Message::Event(event));
        })
        .map_err(|source| WatchError::Watch {
            path: file.dir.clone(),
            source,
        })?;
        let mut watch = Watch {
            watcher,
            dirs: Vec::new(),
            follow: Follow::File,
        };
        watch.refresh(&file)?;
        let thread = thread::Builder::new()
            .name("mycelium-config-watch".to_owned())
            .spawn(move || {
                run(
                    watch,
                    &file,
                    &rx,
                    Timing {
                        debounce,
                        max_delay,
                    },
                    on_change,
                )
            })
            .map_err(|source| WatchError::Thread { source })?;
        Ok(ConfigWatcher {
            path: path.to_path_buf(),
            stop: tx,
            thread: Some(thread),
        })
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        // The thread may have ended already (a panicking callback); then there is no one to tell.
        let _ = self.stop.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            // Dropped from inside the callback: the thread ends as soon as the callback returns,
            // and joining it from itself would never return.
            if thread.thread().id() != thread::current().id() {
                // A panic of the callback was the caller's; it is not raised again here.
                let _ = thread.join();
            }
        }
    }
}

/// What the watcher's thread receives.
enum Message {
    /// From notify's event handler.
    Event(notify::Result<Event>),
    /// From `ConfigWatcher::drop`.
    Stop,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    debounce: Duration,
    max_delay: Duration,
}

/// The watched file, as an absolute path split into directory and name.
#[derive(Debug, Clone, PartialEq)]
struct ConfigFile {
    /// `dir` joined with `name`.
    path: PathBuf,
    dir: PathBuf,
    name: OsString,
}

impl ConfigFile {
    /// `path` resolved against `cwd` (used only when `path` is relative); `None` when the path
    /// ends in no file name.
    fn resolve(path: &Path, cwd: &Path) -> Option<ConfigFile> {
        let name = path.file_name()?.to_owned();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => cwd.join(parent),
            _ => cwd.to_path_buf(),
        };
        Some(ConfigFile {
            path: dir.join(&name),
            dir,
            name,
        })
    }
}

/// Which events count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// The path is not a symlink: events on it (or on its directory itself).
    File,
    /// The path is a symlink: any event in a watched directory.
    Symlink,
}

/// The notify watcher and what it watches now.
struct Watch {
    watcher: RecommendedWatcher,
    /// The directories watched, the file's first.
    dirs: Vec<PathBuf>,
    follow: Follow,
}

impl Watch {
    /// Looks at the file again (is it a symlink, where does it lead) and watches the
    /// directories that follow from that, and only those.
    ///
    /// Fails only if a directory that is not watched yet cannot be watched; the caller decides
    /// whether that matters (at start it does, after a burst the next one tries again).
    fn refresh(&mut self, file: &ConfigFile) -> Result<(), WatchError> {
        let is_symlink = std::fs::symlink_metadata(&file.path)
            .map(|meta| meta.file_type().is_symlink())
            .unwrap_or(false);
        let mut wanted = vec![file.dir.clone()];
        if let Some(target_dir) = is_symlink.then(|| target_dir(file)).flatten() {
            wanted.push(target_dir);
        }
        self.follow = if is_symlink {
            Follow::Symlink
        } else {
            Follow::File
        };
        for stale in self.dirs.iter().filter(|dir| !wanted.contains(dir)) {
            // A stale target directory is often gone already, and its watch with it.
            let _ = self.watcher.unwatch(stale);
        }
        self.dirs.retain(|dir| wanted.contains(dir));
        for dir in wanted {
            if !self.dirs.contains(&dir) {
                self.watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|source| WatchError::Watch {
                        path: dir.clone(),
                        source,
                    })?;
                self.dirs.push(dir);
            }
        }
        Ok(())
    }

    /// Whether `event` may have changed the file.
    fn concerns(&self, event: &notify::Result<Event>, file: &ConfigFile) -> bool {
        let Ok(event) = event else {
            return true;
        };
        // Opening, reading and closing after reading leave the file as it was; closing after
        // writing ends a write.
        if let EventKind::Access(kind) = event.kind {
            if kind != AccessKind::Close(AccessMode::Write) {
                return false;
            }
        }
        if event.need_rescan() || event.paths.is_empty() || self.follow == Follow::Symlink {
            return true;
        }
        event
            .paths
            .iter()
            .any(|path| *path == file.path || *path == file.dir)
    }
}

/// The directory of the file a symlink finally leads to, when it is not the symlink's own
/// directory; `None` for a dangling link.
fn target_dir(file: &ConfigFile) -> Option<PathBuf> {
    let target = std::fs::canonicalize(&file.path).ok()?;
    let dir = target.parent()?;
    // The same directory under another name would be the same inotify watch: unwatching one
    // would end both.
    let own = std::fs::canonicalize(&file.dir).ok();
    (own.as_deref() != Some(dir)).then(|| dir.to_path_buf())
}

/// The watcher's thread: waits for a burst, lets it settle, reports it; until told to stop.
fn run(
    mut watch: Watch,
    file: &ConfigFile,
    messages: &Receiver<Message>,
    timing: Timing,
    mut on_change: impl FnMut(),
) {
    loop {
        // Quiet: wait for the first event of a burst.
        let first = match messages.recv() {
            Ok(Message::Event(event)) if watch.concerns(&event, file) => Instant::now(),
            Ok(Message::Event(_)) => continue,
            Ok(Message::Stop) | Err(_) => return,
        };
        let mut last = first;
        // A burst: wait until it has been quiet for `debounce`, or `max_delay` has passed.
        loop {
            let deadline = (last + timing.debounce).min(first + timing.max_delay);
            let wait = deadline.saturating_duration_since(Instant::now());
            match messages.recv_timeout(wait) {
                Ok(Message::Event(event)) => {
                    if watch.concerns(&event, file) {
                        last = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        // Before the callback, so that an edit of a new symlink target made after it reads
        // the file is seen. A directory that cannot be watched now is tried after the next burst.
        let _ = watch.refresh(file);
        on_change();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc::TryRecvError;

    use super::*;

    /// Debounce of the tests: short, so each test stays well under a second or two.
    const DEBOUNCE: Duration = Duration::from_millis(50);
    /// Long enough for "it must come", even on a loaded machine.
    const COMES: Duration = Duration::from_secs(5);
    /// How long "no further report" is watched for.
    const QUIET: Duration = Duration::from_millis(200);

    struct Fixture {
        dir: tempfile::TempDir,
        path: PathBuf,
        reports: Receiver<()>,
        watcher: ConfigWatcher,
    }

    fn watch_at(
        path: &Path,
        debounce: Duration,
        max_delay: Duration,
    ) -> (ConfigWatcher, Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let watcher = ConfigWatcher::start_with(path, debounce, max_delay, move || {
            let _ = tx.send(());
        })
        .unwrap();
        (watcher, rx)
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        fs::write(&path, "[server]\n").unwrap();
        let (watcher, reports) = watch_at(&path, DEBOUNCE, RELOAD_MAX_DELAY);
        Fixture {
            dir,
            path,
            reports,
            watcher,
        }
    }

    fn reported(reports: &Receiver<()>) {
        reports
            .recv_timeout(COMES)
            .expect("the change must be reported");
    }

    fn nothing_more(reports: &Receiver<()>, within: Duration) {
        assert_eq!(
            reports.recv_timeout(within),
            Err(RecvTimeoutError::Timeout),
            "no further report was expected"
        );
    }

    #[test]
    fn an_in_place_write_is_reported_once() {
        let f = fixture();
        fs::write(&f.path, "[server]\nmax_connections = 5\n").unwrap();
        reported(&f.reports);
        nothing_more(&f.reports, QUIET);
    }

    #[test]
    fn a_save_by_rename_over_the_file_is_reported() {
        let f = fixture();
        let tmp = f.dir.path().join(".broker.toml.swp");
        fs::write(&tmp, "[server]\nmax_connections = 6\n").unwrap();
        fs::rename(&tmp, &f.path).unwrap();
        reported(&f.reports);
        nothing_more(&f.reports, QUIET);
        // The new inode is watched as well as the old one was: through the directory.
        fs::write(&f.path, "[server]\nmax_connections = 7\n").unwrap();
        reported(&f.reports);
    }

    #[test]
    fn twenty_writes_within_100_ms_are_reported_as_one_burst() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        fs::write(&path, "").unwrap();
        let (_watcher, reports) = watch_at(&path, RELOAD_DEBOUNCE, RELOAD_MAX_DELAY);
        for i in 0..20 {
            fs::write(&path, format!("# write {i}\n")).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
        reported(&reports);
        nothing_more(&reports, Duration::from_millis(500));
    }

    #[test]
    fn a_burst_longer_than_max_delay_is_reported_at_max_delay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        fs::write(&path, "").unwrap();
        let (_watcher, reports) = watch_at(&path, DEBOUNCE, Duration::from_millis(150));
        let start = Instant::now();
        // Writes every 10 ms for 400 ms: never quiet for a debounce, so only the cap reports.
        while start.elapsed() < Duration::from_millis(400) {
            fs::write(&path, "# again\n").unwrap();
            thread::sleep(Duration::from_millis(10));
        }
        let mut count = 0;
        while reports.recv_timeout(QUIET).is_ok() {
            count += 1;
        }
        assert!(
            count >= 2,
            "a continuous burst is reported more than once, got {count}"
        );
    }

    #[test]
    fn a_write_to_another_file_in_the_directory_is_not_reported() {
        let f = fixture();
        fs::write(f.dir.path().join("other.toml"), "x").unwrap();
        nothing_more(&f.reports, QUIET);
        // The watcher was watching all along.
        fs::write(&f.path, "[server]\nmax_connections = 8\n").unwrap();
        reported(&f.reports);
    }

    #[test]
    fn reading_the_file_is_not_reported() {
        let f = fixture();
        fs::read_to_string(&f.path).unwrap();
        nothing_more(&f.reports, QUIET);
    }

    #[test]
    fn deleting_and_recreating_the_file_is_reported() {
        let f = fixture();
        fs::remove_file(&f.path).unwrap();
        fs::write(&f.path, "[server]\nmax_connections = 9\n").unwrap();
        reported(&f.reports);
        nothing_more(&f.reports, QUIET);
        fs::write(&f.path, "[server]\nmax_connections = 10\n").unwrap();
        reported(&f.reports);
    }

    #[test]
    fn dropping_the_watcher_ends_its_thread_and_its_callbacks() {
        let f = fixture();
        // A burst in progress when the watcher is dropped is not reported after the drop.
        fs::write(&f.path, "[server]\nmax_connections = 11\n").unwrap();
        drop(f.watcher);
        // The thread owned the callback, and so the sender: it is gone once drop has returned.
        loop {
            match f.reports.try_recv() {
                Ok(()) => continue,
                Err(err) => {
                    assert_eq!(err, TryRecvError::Disconnected);
                    break;
                }
            }
        }
    }

    #[test]
    fn dropping_the_watcher_from_its_own_callback_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        fs::write(&path, "").unwrap();
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None::<ConfigWatcher>));
        let (tx, rx) = mpsc::channel();
        let in_callback = std::sync::Arc::clone(&slot);
        let watcher = ConfigWatcher::start_with(&path, DEBOUNCE, RELOAD_MAX_DELAY, move || {
            drop(in_callback.lock().unwrap().take());
            let _ = tx.send(());
        })
        .unwrap();
        *slot.lock().unwrap() = Some(watcher);
        fs::write(&path, "# change\n").unwrap();
        reported(&rx);
        assert_eq!(rx.recv_timeout(COMES), Err(RecvTimeoutError::Disconnected));
    }

    #[test]
    fn editing_the_target_of_a_symlink_is_reported() {
        let links = tempfile::tempdir().unwrap();
        let targets = tempfile::tempdir().unwrap();
        let target = targets.path().join("real.toml");
        fs::write(&target, "").unwrap();
        let path = links.path().join("broker.toml");
        symlink(&target, &path).unwrap();
        let (_watcher, reports) = watch_at(&path, DEBOUNCE, RELOAD_MAX_DELAY);
        fs::write(&target, "[server]\nmax_connections = 12\n").unwrap();
        reported(&reports);
    }

    #[test]
    fn a_swapped_symlink_is_reported_and_its_new_target_is_watched() {
        let links = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let path = links.path().join("broker.toml");
        fs::write(old.path().join("broker.toml"), "").unwrap();
        fs::write(new.path().join("broker.toml"), "").unwrap();
        symlink(old.path().join("broker.toml"), &path).unwrap();
        let (_watcher, reports) = watch_at(&path, DEBOUNCE, RELOAD_MAX_DELAY);
        // As Kubernetes does: a new link next to the old one, renamed over it.
        let next = links.path().join("..broker.toml.tmp");
        symlink(new.path().join("broker.toml"), &next).unwrap();
        fs::rename(&next, &path).unwrap();
        reported(&reports);
        nothing_more(&reports, QUIET);
        fs::write(new.path().join("broker.toml"), "# edited\n").unwrap();
        reported(&reports);
    }

    #[test]
    fn a_missing_directory_is_a_watch_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = ConfigWatcher::start(&missing.join("broker.toml"), || {}).unwrap_err();
        match &err {
            WatchError::Watch { path, .. } => assert_eq!(path, &missing),
            other => panic!("expected a Watch error, got {other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with(&format!("cannot watch {}: ", missing.display())));
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let err = ConfigWatcher::start(Path::new("/"), || {}).unwrap_err();
        assert!(matches!(err, WatchError::NoFileName { .. }), "{err:?}");
    }

    #[test]
    fn relative_paths_are_resolved_against_the_current_directory() {
        let cwd = Path::new("/srv/m");
        let bare = ConfigFile::resolve(Path::new("broker.toml"), cwd).unwrap();
        assert_eq!(bare.dir, cwd);
        assert_eq!(bare.path, Path::new("/srv/m/broker.toml"));
        let nested = ConfigFile::resolve(Path::new("etc/broker.toml"), cwd).unwrap();
        assert_eq!(nested.dir, Path::new("/srv/m/etc"));
        let absolute = ConfigFile::resolve(Path::new("/etc/broker.toml"), cwd).unwrap();
        assert_eq!(absolute.dir, Path::new("/etc"));
    }
}
