//! `mycelium topics`: what each durable topic's log holds (and which topics are kept in
//! memory only), from a running broker's statistics.

use crate::output::outln;
use std::process::ExitCode;

use mycelium_client::Client;

use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium topics`.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Print one JSON object per topic and line instead of a table
    #[arg(long)]
    json: bool,
    /// List only durable topics
    #[arg(long)]
    durable: bool,
}

pub fn topics(args: TopicsArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    let stats = client_runtime()?.block_on(async {
        let client = Client::connect(&path)
            .await
            .map_err(crate::report::connect_failed)?;
        let stats = client.stats().await?;
        client.close().await?;
        anyhow::Ok(stats)
    })?;
    let listed = stats
        .topics
        .iter()
        .filter(|t| !args.durable || t.log.is_some());
    if args.json {
        for t in listed {
            let line = match &t.log {
                Some(log) => serde_json::json!({
                    "name": t.name, "durable": true,
                    "retained_messages": log.retained_messages, "retained_bytes": log.retained_bytes,
                    "first_offset": log.first_offset, "next_offset": log.next_offset,
                    // The newest offset, when the log holds any message.
                    "last_offset": (log.retained_messages > 0).then(|| log.next_offset - 1),
                }),
                None => serde_json::json!({ "name": t.name, "durable": false }),
            };
            outln!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<_> = listed.collect();
    let width = rows.iter().map(|t| t.name.len()).max().unwrap_or(5).max(5);
    outln!(
        "{:<width$}  {:<7}  {:>12}  {:>12}  {:>12}  {:>12}",
        "TOPIC",
        "KEPT",
        "MESSAGES",
        "BYTES",
        "FIRST",
        "LAST"
    );
    for t in rows {
        match &t.log {
            Some(log) => {
                let (first, last) = if log.retained_messages > 0 {
                    (
                        log.first_offset.to_string(),
                        (log.next_offset - 1).to_string(),
                    )
                } else {
                    ("-".to_owned(), "-".to_owned())
                };
                outln!(
                    "{:<width$}  {:<7}  {:>12}  {:>12}  {:>12}  {:>12}",
                    t.name,
                    "disk",
                    log.retained_messages,
                    log.retained_bytes,
                    first,
                    last
                );
            }
            None => outln!(
                "{:<width$}  {:<7}  {:>12}  {:>12}  {:>12}  {:>12}",
                t.name,
                "memory",
                "-",
                "-",
                "-",
                "-"
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
