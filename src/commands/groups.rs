//! `mycelium groups TOPIC`: the consumer groups of a durable topic, from a running broker.
//!
//! - Per group: its name, committed position (every message below it is acknowledged), the
//!   log's next offset, the lag between the two, messages delivered and not acknowledged
//!   (pending), members connected now, and the redelivered and dead-lettered counters (since
//!   the broker started).
//! - A table, or with `--json` one JSON object per group and line; no group prints only the
//!   table's heading (and nothing with `--json`), and says so on stderr.
//! - The broker's refusal (the topic is unknown or not durable) exits 1 with its reason.

use std::process::ExitCode;

use anyhow::Context;
use mycelium_client::{Client, GroupStats, RequestError};
use mycelium_transport::ErrorCode;

use crate::output::{errln, outln};
use crate::report::durable_refused;
use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium groups`.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The durable topic whose consumer groups to list
    topic: String,
    /// Print one JSON object per group and line instead of a table: name, committed,
    /// next_offset, lag, pending, members, redelivered, dead_lettered
    #[arg(long)]
    json: bool,
}

/// Why the broker would not list `topic`'s groups.
fn refused(topic: &str, error: RequestError) -> anyhow::Error {
    let unsupported = matches!(
        error,
        RequestError::Refused {
            code: ErrorCode::Unsupported,
            ..
        }
    );
    durable_refused(
        format!("listing the consumer groups of {topic}"),
        error,
        unsupported,
    )
}

pub fn groups(args: GroupsArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    let groups = client_runtime()?.block_on(async {
        let client = Client::connect(&path)
            .await
            .map_err(crate::report::connect_failed)?;
        let groups = client
            .groups(&args.topic)
            .await
            .map_err(|error| refused(&args.topic, error))?;
        client.close().await.context("closing the connection")?;
        anyhow::Ok(groups)
    })?;
    if groups.is_empty() {
        errln!("{} has no consumer groups", args.topic);
    }
    if args.json {
        for group in &groups {
            outln!("{}", json_line(group));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = groups
        .iter()
        .map(|g| g.name.len())
        .max()
        .unwrap_or(0)
        .max("GROUP".len());
    outln!(
        "{:<width$}  {:>12}  {:>12}  {:>12}  {:>8}  {:>7}  {:>11}  {:>13}",
        "GROUP",
        "COMMITTED",
        "NEXT",
        "LAG",
        "PENDING",
        "MEMBERS",
        "REDELIVERED",
        "DEAD-LETTERED"
    );
    for g in &groups {
        outln!(
            "{:<width$}  {:>12}  {:>12}  {:>12}  {:>8}  {:>7}  {:>11}  {:>13}",
            g.name,
            g.committed,
            g.next_offset,
            g.lag(),
            g.pending,
            g.members,
            g.redelivered,
            g.dead_lettered
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One group as a JSON line, keys in the documented order.
fn json_line(g: &GroupStats) -> String {
    // serde_json's map sorts its keys; the order is the table's, written out by hand.
    format!(
        "{{\"name\":{},\"committed\":{},\"next_offset\":{},\"lag\":{},\"pending\":{},\
         \"members\":{},\"redelivered\":{},\"dead_lettered\":{}}}",
        serde_json::Value::from(g.name.as_str()),
        g.committed,
        g.next_offset,
        g.lag(),
        g.pending,
        g.members,
        g.redelivered,
        g.dead_lettered
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_one_json_object_with_its_lag() {
        let group = GroupStats {
            name: "billing".into(),
            committed: 40,
            next_offset: 42,
            pending: 2,
            members: 1,
            redelivered: 3,
            dead_lettered: 1,
        };
        let line = json_line(&group);
        assert_eq!(
            line,
            r#"{"name":"billing","committed":40,"next_offset":42,"lag":2,"pending":2,"members":1,"redelivered":3,"dead_lettered":1}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["lag"], 2);
    }
}
