//! Finding the config and the broker's socket: `--socket`, else `MYCELIUM_SOCKET`, else the
//! config's `socket_path`.

use std::path::{Path, PathBuf};

use crate::output::errln;
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
        let file = self.config.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG));
        let error = match load_config(self.config.as_deref()) {
            Ok(config) => return Ok(config.server.socket_path),
            Err(error) => error,
        };
        // A file being edited may be invalid elsewhere while the broker runs on its last good
        // config, on the same socket: still find it, and say what is wrong.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        if let Some(socket) = mycelium_config::read_config_file(file)
            .ok()
            .and_then(|text| mycelium_config::socket_path_leniently(&text, env))
        {
            errln!(
                "warning: {} is invalid ({}); using its socket_path {}",
                file.display(),
                error.to_string().lines().next().unwrap_or_default(),
                socket.display()
            );
            return Ok(socket);
        }
        Err(error.context(format!(
            "reading socket_path from {} (pass --socket to skip it)",
            file.display()
        )))
    }
}

/// A current-thread runtime for the client subcommands: one thread is plenty for one connection.
pub fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Shared-memory rings, one hop from publisher to subscriber (fanout and queue topics)
    Shm,
    /// Through the broker over Unix domain sockets
    Uds,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Shm => "shm",
            Transport::Uds => "uds",
        }
    }
}
