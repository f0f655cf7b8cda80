//! `mycelium`: run the broker, publish, subscribe, check a config, read stats, benchmark.
//!
//! The binary only parses arguments and reports errors; each subcommand lives in its own file
//! over the library's public API.

mod bench;
mod commands;
mod output;
mod report;
mod socket;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{check, dlq, groups, pubsub, reload, request, run, stats, topics};

/// Readers hand out payloads as slices of each read buffer, so every `read` allocates a fresh
/// buffer of a few hundred KiB while the last one is still in use. glibc's malloc returns such
/// blocks to the kernel and faults them in again; mimalloc keeps them. Measured A/B in
/// BENCHMARKS.md: W2 (1 KiB) median 1.96 -> 2.12 GB/s, the 64 B workloads unchanged.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A local IPC message broker over Unix domain sockets.
#[derive(Debug, Parser)]
#[command(
    name = "mycelium",
    version,
    about = "A local IPC message broker over Unix domain sockets",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the broker (stops gracefully on SIGINT/SIGTERM, flushing accepted messages;
    /// reloads its config file when it changes and on SIGHUP).
    Run(run::RunArgs),
    /// Publish MESSAGE on TOPIC, or each line of stdin as one message.
    Pub(pubsub::PubArgs),
    /// Print each message received on TOPIC as one line on stdout (a message that contains
    /// newlines spans several lines); with --from, read a durable topic's log from a point in
    /// its past; with --group, share a durable topic's messages with a consumer group and
    /// acknowledge each one once printed.
    Sub(pubsub::SubArgs),
    /// Send one request on TOPIC and print the reply; exit 1 with the reason when there is
    /// none (no responders, the responder's error, or the timeout).
    Request(request::RequestArgs),
    /// Answer every request on TOPIC with RESPONSE (or with --error MESSAGE) until stopped.
    Reply(request::ReplyArgs),
    /// Validate a config file: print every problem, exit 1 on any.
    Check(check::CheckArgs),
    /// Show per-topic counters of a running broker, and the state of its config reloads.
    Stats(stats::StatsArgs),
    /// List a running broker's topics with what each durable topic's log holds: retained
    /// messages and bytes, the first and last offsets.
    Topics(topics::TopicsArgs),
    /// List the consumer groups of a running broker's durable TOPIC: each one's committed
    /// position, the log's next offset, lag, pending messages, members, and its redelivered
    /// and dead-lettered counts.
    Groups(groups::GroupsArgs),
    /// Work with dead-letter topics: `mycelium dlq redrive DLQ_TOPIC` moves their messages
    /// back to the topics they came from.
    Dlq(dlq::DlqArgs),
    /// Make a running broker re-read its config file now; exit 1 if the file is invalid
    /// (the broker then keeps its running config).
    Reload(reload::ReloadArgs),
    /// Measure throughput or latency against a running broker with separate processes.
    Bench(bench::BenchArgs),
    /// One process of a benchmark (spawned by `mycelium bench`).
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
}

/// Where the socket-using subcommands find the broker; shared by pub, sub, stats and bench.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Broker socket path [default: $MYCELIUM_SOCKET, else socket_path from the config, else
    /// /tmp/mycelium.sock]
    #[arg(long, env = "MYCELIUM_SOCKET")]
    socket: Option<PathBuf>,
    /// Config file to take socket_path from when --socket and MYCELIUM_SOCKET are not set
    /// [default: ./broker.toml if it exists]
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Log lines the broker queues for its log thread before it drops new ones: a burst of a few
/// seconds of warnings fits; a reader stopped for longer loses lines, never the broker's time.
const LOG_QUEUE_LINES: usize = 16 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MYCELIUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Its report of a failed write is an `eprintln!`, which panics when stderr is the
        // very thing that failed: the log is best effort, and never reports on itself.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The broker logs from its serving threads: a stderr whose reader stopped reading (a
    // paused `| less`, a stuck log shipper) would block them in `write` once the pipe is
    // full. Its log goes through a bounded queue to a thread of its own, and lines that do
    // not fit are dropped. Flushed (for at most a second) when `_log_flush` drops.
    let _log_flush = match cli.command {
        Command::Run(_) => {
            let (writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(LOG_QUEUE_LINES)
                .thread_name("mycelium-log")
                .finish(output::LogWriter);
            log.with_writer(writer).init();
            Some(flush)
        }
        _ => {
            log.with_writer(|| output::LogWriter).init();
            None
        }
    };

    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
        Command::Pub(args) => pubsub::publish(args),
        Command::Sub(args) => pubsub::subscribe(args),
        Command::Request(args) => request::request(args),
        Command::Reply(args) => request::reply(args),
        Command::Stats(args) => stats::stats(args),
        Command::Topics(args) => topics::topics(args),
        Command::Groups(args) => groups::groups(args),
        Command::Dlq(args) => dlq::dlq(args),
        Command::Reload(args) => reload::reload(args),
        Command::Bench(args) => bench::bench(args),
        Command::BenchWorker(args) => bench::worker(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            output::errln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
