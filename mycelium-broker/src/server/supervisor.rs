//! Supervision of the broker's long-lived tasks and threads: a broker is never left
//! half-alive.
//!
//! - A task started with [`Supervisor::spawn`] (or a thread whose body is wrapped with
//!   [`Supervisor::guard_thread`]) that panics, or a task that ends while the broker serves, is
//!   a failure of the whole broker: it is logged, and [`Supervisor::failed`] resolves, which
//!   makes [`Server::run`](crate::Server::run) shut down gracefully (socket file removed,
//!   accepted messages flushed) and return [`ServeError::TaskFailed`](super::ServeError), so
//!   the `mycelium` binary exits non-zero. Restarting instead would hide a bug that is likely
//!   to strike again, and the task's state (a reload's queue, a ring's readers) dies with it.
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
pub struct TaskFailure {
    /// The task's name, as given to [`Supervisor::spawn`].
    pub task: &'static str,
    /// What happened: the panic's message, or that it ended.
    pub reason: String,
}

/// Watches the broker's long-lived tasks; one per broker run, in its state.
#[derive(Debug, Default)]
pub struct Supervisor {
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
    pub fn spawn<F>(self: &Arc<Self>, name: &'static str, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        tokio::spawn(watch(self.clone(), name, handle));
        abort
    }

    /// Runs a thread's `body`, catching its panic and reporting it as the failure of task
    /// `name`; a body that returns is the thread's normal end.
    pub fn guard_thread(&self, name: &'static str, body: impl FnOnce()) {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            self.fail(name, format!("panicked: {}", panic_message(&*panic)));
        }
    }

    /// Records that `task` failed; the first failure ends the broker.
    pub fn fail(&self, task: &'static str, reason: String) {
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
    pub async fn failed(&self) -> TaskFailure {
        self.failed.cancelled().await;
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| TaskFailure {
                task: "unknown",
                reason: "failed".to_owned(),
            })
    }

    /// Shutdown has begun: tasks that end from now on end on purpose.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Waits for a supervised task's end and reports it unless it was aborted.
async fn watch(supervisor: Arc<Supervisor>, name: &'static str, task: JoinHandle<()>) {
    let reason = match task.await {
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

    /// The real path: the broker's reload task panics (as a bug in it would) while the server
    /// serves; the server shuts down, says which task failed, and removes its socket file.
    #[test]
    fn a_reload_task_that_panics_shuts_the_broker_down_with_an_error() {
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

    /// A reload task aborted at shutdown is no failure.
    #[test]
    fn an_orderly_shutdown_is_no_failure() {
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
