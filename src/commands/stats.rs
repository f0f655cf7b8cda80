//! `mycelium stats`: per-topic counters of a running broker (`--watch`: live, in
//! `stats_watch`).

use crate::output::outln;
use std::process::ExitCode;

use mycelium_client::Client;
use mycelium_transport::RoutingKind;

use crate::socket::client_runtime;
use crate::SocketArgs;

/// Arguments of `mycelium stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// Show a live table, redrawn every --interval-ms, with per-topic publish, delivery and
    /// drop rates; q, Esc or Ctrl-C quits. Needs a terminal (scripts: --json)
    #[arg(long, conflicts_with = "json")]
    watch: bool,
    /// How often --watch asks the broker and redraws, in milliseconds (100-60000)
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "watch", value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
}

pub fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    if args.watch {
        return super::stats_watch::watch(
            &path,
            std::time::Duration::from_millis(args.interval_ms),
        );
    }
    let stats = client_runtime()?.block_on(async {
        let client = Client::connect(&path)
            .await
            .map_err(crate::report::connect_failed)?;
        let stats = client.stats().await?;
        client.close().await?;
        anyhow::Ok(stats)
    })?;
    let routing = |r: RoutingKind| match r {
        RoutingKind::Fanout => "fanout",
        RoutingKind::Queue => "queue",
    };
    if args.json {
        let topics: Vec<serde_json::Value> = stats
            .topics
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name, "routing": routing(t.routing),
                    "subscribers": u64::from(t.subscribers) + u64::from(t.shm_subscribers),
                    "socket_subscribers": t.subscribers, "shm_subscribers": t.shm_subscribers,
                    "published": t.published, "delivered": t.delivered, "dropped": t.dropped, "queued": t.queued,
                    "dynamic": t.is_dynamic(), "durable": t.log.is_some(),
                    "log": t.log.as_ref().map(|log| serde_json::json!({
                        "first_offset": log.first_offset, "next_offset": log.next_offset,
                        "retained_messages": log.retained_messages, "retained_bytes": log.retained_bytes,
                    })),
                })
            })
            .collect();
        let c = &stats.config;
        let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_owned).collect() };
        let config = serde_json::json!({
            "generation": c.generation, "reloads": c.reloads,
            "last_reload_failed": !c.last_error.is_empty(), "last_error": lines(&c.last_error),
            "last_change": c.last_change, "not_applied": lines(&c.pending),
        });
        let doc = serde_json::json!({ "connections": stats.connections, "uptime_ms": stats.uptime_ms, "config": config, "topics": topics });
        outln!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "connections: {}  uptime: {:.1} s",
        stats.connections,
        stats.uptime_ms as f64 / 1000.0
    );
    let c = &stats.config;
    outln!(
        "config: generation {}, {} reload(s)",
        c.generation,
        c.reloads
    );
    if !c.last_change.is_empty() {
        outln!("last change: {}", c.last_change);
    }
    if !c.last_error.is_empty() {
        outln!("last reload FAILED (the running config is unchanged):");
        for line in c.last_error.lines() {
            outln!("  {line}");
        }
    }
    for line in c.pending.lines() {
        outln!("not applied: {line}");
    }
    let width = stats
        .topics
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    // SUBSCRIBERS is the whole count; SOCKET and SHM split it by transport. KIND: `declared`
    // in the config, or `dynamic` (auto-created, removed once idle).
    outln!(
        "{:<width$}  {:<7}  {:>11}  {:>6}  {:>6}  {:>12}  {:>12}  {:>10}  {:>8}  {}",
        "TOPIC",
        "ROUTING",
        "SUBSCRIBERS",
        "SOCKET",
        "SHM",
        "PUBLISHED",
        "DELIVERED",
        "DROPPED",
        "QUEUED",
        "KIND"
    );
    for t in &stats.topics {
        outln!(
            "{:<width$}  {:<7}  {:>11}  {:>6}  {:>6}  {:>12}  {:>12}  {:>10}  {:>8}  {}",
            t.name,
            routing(t.routing),
            u64::from(t.subscribers) + u64::from(t.shm_subscribers),
            t.subscribers,
            t.shm_subscribers,
            t.published,
            t.delivered,
            t.dropped,
            t.queued,
            if t.is_dynamic() {
                "dynamic"
            } else {
                "declared"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
