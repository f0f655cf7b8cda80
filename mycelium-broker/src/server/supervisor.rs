//! Supervision of the broker's long-lived tasks and threads: a broker is never left
//! half-alive.
//!
//! - Supervised: the reload task and the sweep of idle topics ([`Supervisor::spawn`]: they must
//!   run until the broker stops),
//!   the shared-memory watchdog and the per-topic shared-memory reader threads
//!   ([`Supervisor::guard_thread`]) and relay drain tasks ([`Supervisor::spawn_on`]), which may
//!   end on their own when their topic goes.
//! - A supervised task or thread that panics, or a task that must run and ends while the
//!   broker serves, is a failure of the whole broker: it is logged, and
//!   [`Supervisor::failed`] resolves, which makes [`Server::run`](crate::Server::run) shut
//!   down gracefully (socket file removed, accepted messages flushed) and return
//!   [`ServeError::TaskFailed`](super::ServeError), so the `mycelium` binary exits non-zero.
//!   Restarting instead would hide a bug that is likely to strike again, and the task's state
//!   (a reload's queue, a ring's readers) dies with it.
//! - Only the first failure is kept; later ones are logged.
//! - Once shutdown has begun ([`Supervisor::stopping`]) tasks end on purpose: nothing is
//!   reported.
//! - Per-connection tasks are not supervised: a panic there ends that connection only.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;

/// A task that failed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskFailure {
    /// The task's name, as given to [`Supervisor::spawn`].
    pub(crate) task: &'static str,
    /// What happened: the panic's message, or that it ended.
    pub(crate) reason: String,
}

/// Watches the broker's long-lived tasks; one per broker run, in its state.
#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    failed: CancellationToken,
    failure: Mutex<Option<TaskFailure>>,
    stopping: AtomicBool,
}

impl Supervisor {
    /// Spawns `task` on the current runtime, supervised: it must run until the broker stops.
    /// Returns what aborts it at shutdown (an aborted task is not a failure).
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub(crate) fn spawn<F>(self: &Arc<Self>, name: &'static str, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        tokio::spawn(watch(self.clone(), name, handle, true));
        abort
    }

    /// Spawns `task` on `runtime`, supervised for panics only: it may end on its own (a task
    /// per topic, say, that ends with its topic).
    pub(crate) fn spawn_on<F>(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        name: &'static str,
        task: F,
    ) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = runtime.spawn(task);
        let abort = handle.abort_handle();
        runtime.spawn(watch(self.clone(), name, handle, false));
        abort
    }

    /// Runs a thread's `body`, catching its panic and reporting it as the failure of task
    /// `name`; a body that returns is the thread's normal end.
    pub(crate) fn guard_thread(&self, name: &'static str, body: impl FnOnce()) {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            self.fail(name, format!("panicked: {}", panic_message(&*panic)));
        }
    }

    /// Records that `task` failed; the first failure ends the broker.
    pub(crate) fn fail(&self, task: &'static str, reason: String) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        tracing::error!(
            task,
            %reason,
            "a task of the broker failed: the broker shuts down (this is a bug)"
        );
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            *failure = Some(TaskFailure { task, reason });
        }
        self.failed.cancel();
    }

    /// Resolves with the first failure, once there is one.
    pub(crate) async fn failed(&self) -> TaskFailure {
        self.failed.cancelled().await;
        self.failure().unwrap_or_else(|| TaskFailure {
            task: "unknown",
            reason: "failed".to_owned(),
        })
    }

    /// The first failure, if there was one.
    pub(crate) fn failure(&self) -> Option<TaskFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Shutdown has begun: tasks that end from now on end on purpose.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Waits for a supervised task's end and reports it unless it was aborted, or it ended
/// normally and `must_run` is false.
async fn watch(
    supervisor: Arc<Supervisor>,
    name: &'static str,
    task: JoinHandle<()>,
    must_run: bool,
) {
    let reason = match task.await {
        Ok(()) if !must_run => return,
        Ok(()) => "ended while the broker was serving".to_owned(),
        Err(error) if error.is_panic() => {
            format!("panicked: {}", panic_message(&*error.into_panic()))
        }
        // Aborted: at shutdown, by whoever holds the handle.
        Err(_) => return,
    };
    supervisor.fail(name, reason);
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mycelium_config::BrokerConfig;

    use crate::server::{bind_socket, ServeError, Server};

    /// A server on a socket in a fresh directory (kept alive by the caller), and a runtime
    /// with one worker to run it on.
    fn bound_server() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        tokio::runtime::Runtime,
        std::os::unix::net::UnixListener,
        Server,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("broker.sock");
        let mut config = BrokerConfig::default();
        config.server.socket_path = socket.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = bind_socket(&socket, 0o600).expect("bind");
        let server = Server::new(config).expect("server");
        (dir, socket, runtime, listener, server)
    }

    /// The real path: the broker's reload task panics (as a bug in it would) while the server
    /// serves; the server shuts down, says which task failed, and removes its socket file.
    #[test]
    fn a_reload_task_that_panics_shuts_the_broker_down_with_an_error() {
        let (_dir, socket, runtime, listener, server) = bound_server();
        let reload = server.reload_handle();
        let ended = runtime.block_on(async {
            let serving =
                tokio::spawn(server.run(listener, Some(socket.clone()), std::future::pending()));
            // Sent before or after the task starts: it is queued either way.
            reload.crash();
            tokio::time::timeout(Duration::from_secs(30), serving)
                .await
                .expect("the server did not stop after its reload task died")
                .expect("the server's own task")
        });
        match ended {
            Err(ServeError::TaskFailed { task, reason }) => {
                assert_eq!(task, "reload");
                assert!(reason.contains("told to crash"), "{reason}");
            }
            other => panic!("the server ended with {other:?}"),
        }
        assert!(!socket.exists(), "the socket file was left behind");
    }

    /// A thread's panic (the watchdog's, a reader's) and a drain task's panic are failures;
    /// a thread that returns is not.
    #[test]
    fn a_panicking_thread_or_task_fails_the_broker_and_a_finished_thread_does_not() {
        use super::Supervisor;
        use std::sync::Arc;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let supervisor = Arc::new(Supervisor::default());
            let thread = {
                let supervisor = Arc::clone(&supervisor);
                std::thread::spawn(move || supervisor.guard_thread("reader", || {}))
            };
            thread.join().expect("a thread that returns");
            // The guard reports before the thread ends: nothing was.
            assert_eq!(supervisor.failure(), None);

            let thread = {
                let supervisor = Arc::clone(&supervisor);
                std::thread::spawn(move || {
                    supervisor.guard_thread("reader", || panic!("a reader bug"));
                })
            };
            thread.join().expect("the guard catches the panic");
            let failure = tokio::time::timeout(Duration::from_secs(30), supervisor.failed())
                .await
                .expect("the failure is reported");
            assert_eq!(failure.task, "reader");
            assert!(failure.reason.contains("a reader bug"), "{failure:?}");

            let other = Arc::new(Supervisor::default());
            other.spawn_on(&tokio::runtime::Handle::current(), "drain", async {
                panic!("a drain bug")
            });
            let failure = tokio::time::timeout(Duration::from_secs(30), other.failed())
                .await
                .expect("the failure is reported");
            assert_eq!(failure.task, "drain");
        });
    }

    /// A reload task aborted at shutdown is no failure.
    #[test]
    fn an_orderly_shutdown_is_no_failure() {
        let (_dir, socket, runtime, listener, server) = bound_server();
        let ended = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                server.run(listener, Some(socket.clone()), async {}),
            )
            .await
            .expect("the server did not stop")
        });
        assert!(ended.is_ok(), "{ended:?}");
        assert!(!socket.exists(), "the socket file was left behind");
    }
}
