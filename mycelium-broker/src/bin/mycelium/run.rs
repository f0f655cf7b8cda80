//! `mycelium run`: load the config, bind the socket, serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mycelium_broker::{bind_socket, Server};
use mycelium_config::BrokerConfig;
use tokio::signal::unix::{signal, SignalKind};

/// Arguments of `mycelium run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file (environment overrides MYCELIUM_<SECTION>__<FIELD> apply on top)
    #[arg(long, default_value = "broker.toml")]
    config: PathBuf,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match BrokerConfig::from_file(&args.config) {
        Ok(config) => config,
        Err(error) => {
            for line in error.diagnostics() {
                eprintln!("{line}");
            }
            anyhow::bail!(
                "{} is not a valid config; the broker did not start",
                args.config.display()
            );
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.performance.worker_threads)
        .thread_name("mycelium-worker")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let socket_path = config.server.socket_path.clone();
    let listener = bind_socket(&socket_path, config.server.socket_mode)?;
    let topics: Vec<String> = config
        .topics
        .iter()
        .map(|t| format!("{} ({})", t.name, t.routing))
        .collect();
    let server = Server::new(config)?;
    tracing::info!(socket = %socket_path.display(), topics = %topics.join(", "), "mycelium {} listening", env!("CARGO_PKG_VERSION"));
    runtime.block_on(async move {
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = sigterm.recv() => tracing::info!("SIGTERM received"),
                _ = sigint.recv() => tracing::info!("SIGINT received"),
            }
        };
        server.run(listener, Some(socket_path), shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
