//! The accept loop and graceful shutdown of the socket server.
//!
//! - [`bind_socket`] claims the socket path: a stale socket file left by a dead broker is
//!   replaced, a live broker's is never stolen, and a path that is not a socket is never deleted.
//! - [`Server::run`] accepts until `shutdown` resolves. Every accepted socket gets a task:
//!   limits are applied there (`connection/admission.rs`): a socket in its handshake counts
//!   against `max_pending_handshakes` (the oldest given up for a newer one) and is closed after
//!   `connection_timeout_ms`; a client past its handshake counts against `max_connections`
//!   and is refused with a fatal `TooManyConnections` error frame, in answer to its `Hello`,
//!   beyond it. So the sockets the broker holds stay bounded, and sockets that say nothing
//!   cannot keep clients out.
//! - While it runs, a task reloads the config file named by [`Server::with_config_file`] on
//!   every change, SIGHUP ([`Server::reload_handle`]) or `ReloadRequest` (`reload.rs`).
//! - A long-lived task or thread of the broker that fails (`supervisor.rs`) shuts the broker
//!   down as `shutdown` would, and [`Server::run`] returns [`ServeError::TaskFailed`]. The
//!   socket file is removed on every way out of [`Server::run`], a panic included.
//! - Shutdown: stop accepting and remove the socket file; stop every reader after the batch it
//!   holds; then close every outbox so the writers flush everything already routed; wait for the
//!   writers up to `server.shutdown_deadline_ms`.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mycelium_config::BrokerConfig;
use mycelium_transport::frame::{NO_REQUEST, NO_TOPIC};
use mycelium_transport::{ErrorCode, Frame};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::connection;
use crate::server::error::ServeError;
use crate::server::handle::BrokerHandle;
use crate::server::reload::{self, ReloadSource};
use crate::server::reload_handle::ReloadHandle;
use crate::server::state::BrokerState;
use crate::server::{reclaim, retention};

/// After an accept error (out of file descriptors, typically) wait this long before retrying,
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Creates the listening socket at `path` with permissions `mode`.
///
/// Must not be called inside an async context that forbids blocking: it probes the path with a
/// blocking connect (instant on a Unix socket).
pub fn bind_socket(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, ServeError> {
    let bind_error = |source| ServeError::Bind {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(bind_error(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; refusing to replace it",
            )));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ServeError::SocketInUse {
                    path: path.to_owned(),
                })
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "replacing a stale socket file left by a broker that is gone");
                std::fs::remove_file(path).map_err(bind_error)?;
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(bind_error(error)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

/// A broker serving one config over one listening socket.
#[derive(Debug)]
pub struct Server {
    state: Arc<BrokerState>,
    /// The file a reload reads; `None`: the broker runs on a config given in code.
    config_file: Option<PathBuf>,
}

impl Server {
    /// Declares the config's topics.
    pub fn new(config: BrokerConfig) -> Result<Server, ServeError> {
        Ok(Server {
            state: Arc::new(BrokerState::new(config)?),
            config_file: None,
        })
    }

    /// Names the file `config` was loaded from: while the server runs it watches the file
    /// and reloads it when it changes, on [`ReloadHandle::signal`] (SIGHUP) and on a
    /// client's `ReloadRequest` (`server/reload.rs`).
    pub fn with_config_file(mut self, path: impl Into<PathBuf>) -> Server {
        self.config_file = Some(path.into());
        self
    }

    /// The handle a front end in this process (the HTTP gateway) uses to reach the broker.
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle::new(self.state.clone())
    }

    /// Triggers reloads of the config file (for a SIGHUP handler).
    pub fn reload_handle(&self) -> ReloadHandle {
        self.state.reload.clone()
    }

    /// Serves `listener` until `shutdown` resolves, then shuts down gracefully.
    /// `socket_path`, if given, is removed on the way out.
    pub async fn run(
        self,
        listener: std::os::unix::net::UnixListener,
        socket_path: Option<PathBuf>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let path_for_errors = socket_path.clone().unwrap_or_default();
        let listener = UnixListener::from_std(listener).map_err(|source| ServeError::Bind {
            path: path_for_errors,
            source,
        })?;
        let stop_reading = CancellationToken::new();
        let readers = TaskTracker::new();
        let writers = TaskTracker::new();
        tokio::pin!(shutdown);
        let queue = self
            .state
            .reload_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Removes the socket file however this function ends, a panic included: a file left
        // behind makes clients time out on connect instead of failing at once.
        let socket_file = SocketFile(socket_path.clone());
        let supervisor = self.state.supervisor.clone();
        let reloads = queue.map(|queue| {
            let source = ReloadSource {
                config_file: self.config_file.clone(),
                socket_path: socket_path.clone(),
            };
            supervisor.spawn("reload", reload::run(self.state.clone(), source, queue))
        });
        let reclaims = supervisor.spawn("reclaim", reclaim::run(self.state.clone()));
        let retention = supervisor.spawn("retention", retention::run(self.state.clone()));
        let mut failure = None;
        tracing::info!(
            topics = self.state.registry.all().len(),
            "broker accepting connections"
        );
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                failed = supervisor.failed() => {
                    failure = Some(failed);
                    break;
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        readers.spawn(connection::serve(stream, self.state.clone(), stop_reading.clone(), writers.clone()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accept failed; retrying shortly");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
            }
        }
        tracing::info!("shutting down: no new connections; flushing what was accepted");
        self.state.stopping.cancel();
        supervisor.stopping();
        if let Some(reloads) = reloads {
            // A reload in progress finishes on the blocking pool; none starts after this.
            reloads.abort();
        }
        reclaims.abort();
        retention.abort();
        // Consumer groups' committed positions, written now rather than at their next turn.
        for topic in self.state.registry.all() {
            if let Some(log) = topic.log() {
                log.groups().flush();
            }
        }
        drop(listener);
        drop(socket_file);
        stop_reading.cancel();
        readers.close();
        readers.wait().await;
        let goodbye = Frame::Error {
            request_id: NO_REQUEST,
            code: ErrorCode::ShuttingDown,
            fatal: true,
            topic_id: NO_TOPIC,
            message: "the broker is shutting down".to_owned(),
            refused: 0,
        };
        for outbox in self.state.outboxes() {
            // After everything already routed to it, so the client learns why the stream ends.
            outbox.close_with(&goodbye);
        }
        writers.close();
        let deadline = self.state.shutdown_deadline();
        if tokio::time::timeout(deadline, writers.wait())
            .await
            .is_err()
        {
            tracing::warn!(?deadline, "some clients did not take their messages before the deadline (server.shutdown_deadline_ms)");
        }
        match failure {
            None => {
                tracing::info!("broker stopped");
                Ok(())
            }
            Some(failure) => {
                tracing::error!(task = failure.task, reason = %failure.reason, "broker stopped: one of its tasks failed");
                Err(ServeError::TaskFailed {
                    task: failure.task,
                    reason: failure.reason,
                })
            }
        }
    }
}

/// The listening socket's path, removed when this is dropped.
struct SocketFile(Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
