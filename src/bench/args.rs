//! The arguments of `mycelium bench` and of the hidden `mycelium bench-worker`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::socket::Transport;
use crate::SocketArgs;

use super::stamp::STAMP_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingArg {
    /// Every subscriber gets every message
    Fanout,
    /// Each message goes to one subscriber
    Queue,
}

/// Arguments of `mycelium bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub(crate) socket: SocketArgs,
    /// The data path to measure [default: shm when the broker offers it for the topic, else uds]
    #[arg(long, value_enum)]
    pub(crate) transport: Option<Transport>,
    /// Shared memory: spin instead of sleeping while waiting (for cores of one's own)
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// Shared memory: microseconds a waiting subscriber spins before it sleeps (0: sleep at
    /// once, to measure the wake-up path itself)
    #[arg(long, value_name = "US", default_value_t = 20)]
    pub(crate) spin_us: u64,
    /// Publisher processes (1-64)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) publishers: u32,
    /// Subscriber processes (1-64)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) subscribers: u32,
    /// The kind of topic to measure
    #[arg(long, value_enum, default_value = "fanout")]
    pub(crate) routing: RoutingArg,
    /// Payload size in bytes (at least 16: sequence number and timestamp)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(STAMP_LEN as i64..))]
    pub(crate) size: u32,
    /// Messages per publisher
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: u64,
    /// Publish for this many seconds instead of --count messages (publish/subscribe runs
    /// only). With --rate, each publisher sends RATE x SECS messages
    #[arg(long, value_name = "SECS", value_parser = parse_duration, conflicts_with_all = ["count", "pingpong", "request"])]
    pub(crate) duration: Option<f64>,
    /// Offer a fixed load: each publisher sends MSG_PER_S messages per second on a schedule
    /// (message i at start + i/rate), and every message's latency runs from its scheduled
    /// time, so a stall counts against every message it held back (no coordinated
    /// omission). Publish/subscribe runs only; reports achieved against offered rate
    #[arg(long, value_name = "MSG_PER_S", value_parser = clap::value_parser!(u64).range(1..=100_000_000), conflicts_with_all = ["pingpong", "request"])]
    pub(crate) rate: Option<u64>,
    /// Write an SVG with the latency distribution (by percentile) and the delivered
    /// throughput over time, in 100 ms steps (publish/subscribe runs only)
    #[arg(long, value_name = "FILE.svg", conflicts_with_all = ["pingpong", "request"])]
    pub(crate) plot: Option<PathBuf>,
    /// Measure latency instead: N round trips between two processes, one message in flight.
    /// With --json, msgs_per_sec is round trips per second and mb_per_sec is 0
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) pingpong: Option<u64>,
    /// Measure request/reply instead: N round trips of `request` answered by a responder
    /// process with `reply`, one request in flight. With --json, msgs_per_sec is round trips
    /// per second, and the latency figures are whole round trips
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "pingpong")]
    pub(crate) request: Option<u64>,
    /// Measure a durable topic instead (--topic, default bench.durable, must be durable in
    /// the broker's config): publish (plain publishes, the last confirmed), confirm (every
    /// publish confirmed), replay (reading stored messages back) or group (--subscribers
    /// processes sharing stored messages in a consumer group, acking each). Socket only
    #[arg(long, value_enum, value_name = "MODE", conflicts_with_all = ["pingpong", "request", "duration", "rate", "plot", "transport"])]
    pub(crate) durable: Option<DurableMode>,
    /// --durable confirm: confirmed publishes unanswered at once per publisher. Under an
    /// fsync interval the answers come once per interval, so this over the interval bounds
    /// the rate
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) window: u64,
    /// The topic to use [default: bench.fanout or bench.queue; bench.ping for --pingpong;
    /// bench.request for --request]
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// The topic ping-pong answers on
    #[arg(long, default_value = "bench.pong")]
    pub(crate) reply_topic: String,
    /// Ping-pong: pause this many microseconds between round trips, so that both sides go
    /// to sleep between messages (measures the wake-up path, as a quiet service sees it)
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub(crate) interval_us: u64,
    /// Publish every message with this many small headers (`h<i>` = `v<i>`), to measure what
    /// headers cost
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(crate) headers: u16,
    /// Hold this many wildcard subscriptions that match no benchmark topic during the run
    /// (over the socket, 1000 per connection), to measure what they cost a publish
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) patterns: u64,
    /// Give up when no message arrives for this many seconds after the publishers finish
    #[arg(long, default_value_t = 5)]
    pub(crate) idle_timeout: u64,
    /// Print one JSON object with the results on stdout, and nothing else there (the human
    /// summary goes to stderr)
    #[arg(long)]
    pub(crate) json: bool,
}

/// What `--durable` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurableMode {
    /// Plain publishes into a durable topic, the last one confirmed: stored (and synced as the
    /// topic's fsync says) messages per second
    Publish,
    /// Every publish confirmed (1024 unanswered at once at most)
    Confirm,
    /// Store --count messages, then replay them from the log: read messages per second
    Replay,
    /// Store --count messages, then --subscribers processes share them in one consumer group,
    /// acking each: messages acked per second, as the broker counts them
    Group,
}

impl DurableMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            DurableMode::Publish => "publish",
            DurableMode::Confirm => "confirm",
            DurableMode::Replay => "replay",
            DurableMode::Group => "group",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Publisher,
    Subscriber,
    Echo,
    Pinger,
    Requester,
    Responder,
    DurablePublisher,
    DurableConfirmer,
    Replayer,
    GroupMember,
}

/// Arguments of the hidden `mycelium bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    pub(crate) role: Role,
    #[arg(long)]
    pub(crate) socket: PathBuf,
    #[arg(long)]
    pub(crate) topic: String,
    #[arg(long, default_value = "")]
    pub(crate) reply_topic: String,
    #[arg(long, default_value_t = 0)]
    pub(crate) index: u64,
    #[arg(long, default_value_t = 0)]
    pub(crate) count: u64,
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Publisher: small headers on every message
    #[arg(long, default_value_t = 0)]
    pub(crate) headers: u16,
    /// Subscriber: stop by itself after this many messages (0 = only when told)
    #[arg(long, default_value_t = 0)]
    pub(crate) expected: u64,
    #[arg(long, value_enum, default_value = "uds")]
    pub(crate) transport: Transport,
    #[arg(long)]
    pub(crate) busy_poll: bool,
    #[arg(long, default_value_t = 20)]
    pub(crate) spin_us: u64,
    #[arg(long, default_value_t = 0)]
    pub(crate) interval_us: u64,
    /// Publisher: publish for this long instead of `count` messages (0: count)
    #[arg(long, default_value_t = 0)]
    pub(crate) duration_ms: u64,
    /// Publisher: messages per second on a schedule (0: as fast as it can)
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Replayer and group member: the offset to start at
    #[arg(long, default_value_t = 0)]
    pub(crate) from_offset: u64,
    /// Group member: the consumer group
    #[arg(long, default_value = "")]
    pub(crate) group: String,
    /// Confirmer: confirmed publishes unanswered at once
    #[arg(long, default_value_t = 1024)]
    pub(crate) window: usize,
}

/// The longest `--duration`: a day.
const MAX_DURATION_SECS: f64 = 86_400.0;

fn parse_duration(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if (0.001..=MAX_DURATION_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!(
            "the duration must be between 0.001 and {MAX_DURATION_SECS} seconds"
        ))
    }
}
