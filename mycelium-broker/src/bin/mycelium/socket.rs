//! Finding the config and the broker's socket: `--socket`, else `MYCELIUM_SOCKET`, else the
//! config's `socket_path`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mycelium_config::BrokerConfig;

use crate::SocketArgs;

/// The config file used when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "broker.toml";

/// Loads the config named by `--config`, else `./broker.toml` if it exists, else the defaults
/// (with environment overrides applied in every case). An explicitly named file that is missing
/// is an error; a missing `./broker.toml` is not.
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<BrokerConfig> {
    let path = match explicit {
        Some(path) => path,
        None if Path::new(DEFAULT_CONFIG).exists() => Path::new(DEFAULT_CONFIG),
        None => {
            let origin = Path::new("(defaults: no broker.toml here)");
            return BrokerConfig::from_toml_str("", origin).map_err(config_error);
        }
    };
    BrokerConfig::from_file(path).map_err(config_error)
}

fn config_error(error: mycelium_config::ConfigError) -> anyhow::Error {
    anyhow::anyhow!(error.diagnostics().join("\n"))
}

impl SocketArgs {
    /// The socket path to connect to: `--socket`, else `MYCELIUM_SOCKET`, else `socket_path`
    /// from the config (see [`load_config`]), else the default `/tmp/mycelium.sock`.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        let config = load_config(self.config.as_deref()).with_context(|| {
            let file = self.config.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG));
            format!(
                "reading socket_path from {} (pass --socket to skip it)",
                file.display()
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
