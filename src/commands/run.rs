//! `mycelium run`: load the config, bind the socket, serve until SIGINT/SIGTERM; reload the
//! config file when it changes, on SIGHUP, or when `mycelium reload` asks.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::socket::{load_config, DEFAULT_CONFIG};
use anyhow::Context;
use mycelium_broker::{bind_socket, Server};
use tokio::signal::unix::{signal, SignalKind};

/// Longest the broker waits, after it stopped, for the HTTP gateway to finish its requests.
const GATEWAY_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Arguments of `mycelium run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file; environment overrides MYCELIUM_<SECTION>__<FIELD> apply on top
    /// [default: ./broker.toml if it exists, else the built-in defaults]
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref()).context("the broker did not start")?;
    // The file a reload reads: the one just loaded, if any.
    let config_file = match &args.config {
        Some(path) => Some(path.clone()),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Some(PathBuf::from(DEFAULT_CONFIG))
        }
        None => {
            tracing::info!(
                "no {DEFAULT_CONFIG} here: running on the built-in defaults (docs/configuration.md)"
            );
            None
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.performance.worker_threads)
        .thread_name("mycelium-worker")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The handlers go in before the socket exists: a client that can connect can also stop
    // the broker with SIGTERM and get a graceful shutdown, never the default (abrupt) action.
    // SIGHUP likewise: its default action would kill the broker.
    let (mut sigterm, mut sigint, mut sighup) = {
        let _runtime = runtime.enter();
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        )
    };
    let socket_path = config.server.socket_path.clone();
    let listener = bind_socket(&socket_path, config.server.socket_mode)?;
    let topics: Vec<String> = config
        .topics
        .iter()
        .map(|t| format!("{} ({})", t.name, t.routing))
        .collect();
    let mut server = Server::new(config)?;
    if let Some(file) = config_file {
        server = server.with_config_file(file);
    }
    let reload = server.reload_handle();
    // Bound before the broker serves: an address the operator asked for and cannot have
    // stops the broker here, with the reason.
    let gateway = runtime
        .block_on(mycelium_gateway::Gateway::bind(server.handle()))
        .context("the broker did not start")?;
    tracing::info!(socket = %socket_path.display(), topics = %topics.join(", "), "mycelium {} listening", env!("CARGO_PKG_VERSION"));
    runtime.block_on(async move {
        // SIGHUP is served inside the future the server polls, not by a task of its own: a
        // task that died would leave the broker deaf to SIGHUP while it serves on.
        let shutdown = async move {
            loop {
                tokio::select! {
                    _ = sigterm.recv() => break tracing::info!("SIGTERM received"),
                    _ = sigint.recv() => break tracing::info!("SIGINT received"),
                    Some(()) = sighup.recv() => {
                        tracing::info!("SIGHUP received: reloading the config");
                        reload.signal();
                    }
                }
            }
        };
        let gateway = tokio::spawn(gateway.run());
        let served = server.run(listener, Some(socket_path), shutdown).await;
        // The gateway answers 503 for a moment, then closes; its long polls end at once.
        let _ = tokio::time::timeout(GATEWAY_STOP_WAIT, gateway).await;
        served?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
