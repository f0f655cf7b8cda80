//! `mycelium reload`: ask a running broker to re-read its config file now.

use crate::output::outln;
use std::process::ExitCode;

use mycelium_client::Client;
use mycelium_transport::ReloadOutcome;

use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

pub fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    let report = client_runtime()?.block_on(async {
        let client = Client::connect(&path)
            .await
            .map_err(crate::report::connect_failed)?;
        let report = client.reload().await?;
        client.close().await?;
        anyhow::Ok(report)
    })?;
    let status = &report.status;
    let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_owned).collect() };
    if args.json {
        let outcome = match report.outcome {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Failed => "failed",
        };
        let doc = serde_json::json!({
            "outcome": outcome, "generation": status.generation, "reloads": status.reloads,
            "errors": lines(&status.last_error), "change": status.last_change,
            "not_applied": lines(&status.pending),
        });
        outln!("{doc}");
    } else {
        match report.outcome {
            ReloadOutcome::Applied => outln!(
                "reloaded: generation {}: {}",
                status.generation,
                status.last_change
            ),
            ReloadOutcome::Unchanged => {
                outln!("reloaded: no change (generation {})", status.generation)
            }
            ReloadOutcome::Failed => outln!(
                "reload failed: the broker keeps running generation {}:",
                status.generation
            ),
        }
        if report.outcome == ReloadOutcome::Failed {
            for line in status.last_error.lines() {
                outln!("  {line}");
            }
        } else {
            for line in status.pending.lines() {
                outln!("not applied: {line}");
            }
        }
    }
    Ok(match report.outcome {
        ReloadOutcome::Failed => ExitCode::FAILURE,
        ReloadOutcome::Applied | ReloadOutcome::Unchanged => ExitCode::SUCCESS,
    })
}
