//! Errors of starting and running the socket server.

use std::path::PathBuf;

/// Why the broker could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another broker answers on the socket path; refusing to steal it.
    #[error("another broker is already listening on {path}")]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket could not be created, replaced or given its permissions.
    #[error("cannot listen on {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The config asks for what this machine cannot give ([`crate::preflight`]): an access
    /// list names a user or group it does not have, durable topics' `data_dir` is not usable.
    #[error("config cannot be served here: {}", .0.join("; "))]
    Preflight(Vec<String>),
    /// A long-lived task or thread of the broker panicked or ended (a bug): the broker shut
    /// down rather than run without it.
    #[error("the broker's {task} task failed ({reason}); the broker shut down")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// Its panic message, or how it ended.
        reason: String,
    },
    /// The config's topics could not be declared.
    #[error("invalid topic in config: {0}")]
    Topics(#[from] crate::error::CreateTopicError),
}
