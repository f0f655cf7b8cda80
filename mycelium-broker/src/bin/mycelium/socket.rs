//! Finding the broker's socket: `--socket`, else `MYCELIUM_SOCKET`, else the config's `socket_path`.

use std::path::PathBuf;

use anyhow::Context;
use mycelium_config::BrokerConfig;

use crate::SocketArgs;

impl SocketArgs {
    /// The socket path to connect to. A missing config file means the default socket path; a
    /// config file that exists but is invalid is an error rather than a silent fallback.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        if !self.config.exists() {
            return Ok(BrokerConfig::default().server.socket_path);
        }
        let config = BrokerConfig::from_file(&self.config)
            .map_err(|e| anyhow::anyhow!(e.diagnostics().join("\n")))
            .with_context(|| {
                format!(
                    "reading socket_path from {} (pass --socket to skip it)",
                    self.config.display()
                )
            })?;
        Ok(config.server.socket_path)
    }
}

/// A current-thread runtime for the client subcommands: one thread is plenty for one connection.
pub fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
