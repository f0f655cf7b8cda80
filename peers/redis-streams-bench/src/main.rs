//! Peer benchmark: Redis streams, to set beside Mycelium's durable topics.
//!
//! Two modes, each run as its own process against a running `redis-server` (run.sh starts it
//! with `--appendonly yes --appendfsync everysec`, or `always`):
//! - `publish`: deletes the stream key, then appends `--count` entries (one field `f` holding
//!   `--size` bytes) with `XADD KEY * f PAYLOAD`, pipelined `--pipeline` commands at a time (all
//!   sent, then all replies read, as `redis-benchmark -P` does). The clock runs from the first
//!   command to the last reply. Afterwards `XLEN` must equal `--count`.
//! - `consume`: on a stream that already holds `--count` entries (a `publish` run before it),
//!   recreates the consumer group (from the start of the stream) and runs `--consumers` members,
//!   each on its own thread and connection. A member loops on `XREADGROUP GROUP g cI COUNT
//!   --batch STREAMS KEY >`; the ids it got are acked in the same round trip as its next read
//!   (one pipeline: `XACK KEY g id…` then `XREADGROUP`). `--ack each` sends one `XACK` per
//!   entry instead of one per batch. A member stops when a read returns nothing. The clock runs
//!   from the start of the members until every member has had the reply to its last `XACK`;
//!   then the acked total must equal `--count` and `XPENDING` must report 0.
//!
//! Each result is one human line on stderr and one JSON line on stdout.

use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use redis::Value;

const USAGE: &str = concat!(
    "usage: redis-streams-bench publish --url redis+unix:///PATH|redis://127.0.0.1:PORT",
    " [--key bench] [--count N] [--size BYTES] [--pipeline CMDS] [--label TEXT]\n",
    "       redis-streams-bench consume --url URL [--key bench] [--count N] [--size BYTES]",
    " [--consumers K] [--batch ENTRIES] [--ack batch|each] [--label TEXT]"
);

/// Name of the consumer group `consume` recreates.
const GROUP: &str = "bench-group";

#[derive(Clone)]
struct Args {
    mode: Mode,
    url: String,
    key: String,
    count: u64,
    size: usize,
    pipeline: usize,
    consumers: usize,
    batch: usize,
    ack_each: bool,
    /// Free text copied into the JSON line (run.sh puts the server's appendfsync there).
    label: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Publish,
    Consume,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("publish") => Mode::Publish,
        Some("consume") => Mode::Consume,
        Some(other) => return Err(format!("unknown mode {other:?}")),
        None => return Err("missing mode".into()),
    };
    let mut args = Args {
        mode,
        url: String::new(),
        key: "bench".into(),
        count: 200_000,
        size: 64,
        pipeline: 1024,
        consumers: 2,
        batch: 1000,
        ack_each: false,
        label: String::new(),
    };
    fn num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        value.parse().map_err(|e| format!("{flag} {value:?}: {e}"))
    }
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => args.url = value,
            "--key" => args.key = value,
            "--count" => args.count = num(&flag, &value)?,
            "--size" => args.size = num(&flag, &value)?,
            "--pipeline" => args.pipeline = num(&flag, &value)?,
            "--consumers" => args.consumers = num(&flag, &value)?,
            "--batch" => args.batch = num(&flag, &value)?,
            "--ack" => {
                args.ack_each = match value.as_str() {
                    "batch" => false,
                    "each" => true,
                    _ => return Err(format!("--ack {value:?}: batch or each")),
                }
            }
            "--label" => args.label = value,
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if args.url.is_empty() {
        return Err("--url is required".into());
    }
    if args.count == 0 || args.pipeline == 0 || args.consumers == 0 || args.batch == 0 {
        return Err("--count, --pipeline, --consumers and --batch must be at least 1".into());
    }
    Ok(args)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.mode {
        Mode::Publish => publish(&args),
        Mode::Consume => consume(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn connect(url: &str) -> Result<redis::Connection, BoxError> {
    Ok(redis::Client::open(url)?.get_connection()?)
}

/// The server's version and its `appendonly` / `appendfsync` settings, for the report.
fn server_info(con: &mut redis::Connection) -> Result<(String, String), BoxError> {
    let info: String = redis::cmd("INFO").arg("server").query(con)?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mut persistence = Vec::new();
    for name in ["appendonly", "appendfsync"] {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con)?;
        persistence.push(format!("{name}={}", pair.get(1).map_or("?", String::as_str)));
    }
    Ok((version, persistence.join(",")))
}

fn publish(args: &Args) -> Result<(), BoxError> {
    let mut con = connect(&args.url)?;
    let (version, persistence) = server_info(&mut con)?;
    let _: () = redis::cmd("DEL").arg(&args.key).query(&mut con)?;
    eprintln!(
        "redis {version} at {} ({persistence}), key {}, {} x {} B, pipeline {}",
        args.url, args.key, args.count, args.size, args.pipeline
    );
    let payload = bytes_of(args.size);
    // Built once: the full pipeline is the same commands every time (`*` ids are the server's).
    let pipeline_of = |n: usize| {
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("XADD").arg(&args.key).arg("*").arg("f").arg(&payload[..]);
        }
        pipe
    };
    let full = pipeline_of(args.pipeline);
    let start = Instant::now();
    let mut left = args.count;
    while left > 0 {
        let n = left.min(args.pipeline as u64);
        let ids: Vec<Value> = if n == args.pipeline as u64 {
            full.query(&mut con)?
        } else {
            pipeline_of(n as usize).query(&mut con)?
        };
        if ids.len() as u64 != n {
            return Err(format!("{} replies to {n} XADDs", ids.len()).into());
        }
        left -= n;
    }
    let secs = start.elapsed().as_secs_f64();
    let len: u64 = redis::cmd("XLEN").arg(&args.key).query(&mut con)?;
    if len != args.count {
        return Err(format!("XLEN {len} after {} XADDs", args.count).into());
    }
    report("publish", args, &version, &persistence, secs, args.count);
    Ok(())
}

fn consume(args: &Args) -> Result<(), BoxError> {
    let mut con = connect(&args.url)?;
    let (version, persistence) = server_info(&mut con)?;
    let len: u64 = redis::cmd("XLEN").arg(&args.key).query(&mut con)?;
    if len != args.count {
        return Err(format!(
            "stream {} holds {len} entries, not --count {} (run `publish` first)",
            args.key, args.count
        )
        .into());
    }
    let _: Value = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&args.key)
        .arg(GROUP)
        .query(&mut con)?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&args.key)
        .arg(GROUP)
        .arg("0")
        .query(&mut con)?;
    eprintln!(
        "redis {version} at {} ({persistence}), key {}, group {GROUP}: {} consumers, \
         XREADGROUP COUNT {}, XACK per {}, {} entries",
        args.url,
        args.key,
        args.consumers,
        args.batch,
        if args.ack_each { "entry" } else { "batch" },
        args.count
    );

    // Each member connects before the clock starts; the barrier releases them together.
    let barrier = Arc::new(Barrier::new(args.consumers + 1));
    let mut threads = Vec::new();
    for i in 0..args.consumers {
        let (args, barrier) = (args.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || consume_one(&args, i, &barrier)));
    }
    barrier.wait();
    let start = Instant::now();
    let mut per_consumer = Vec::new();
    for thread in threads {
        per_consumer.push(thread.join().map_err(|_| "consumer thread panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();

    let acked: u64 = per_consumer.iter().sum();
    let pending: Vec<Value> = redis::cmd("XPENDING")
        .arg(&args.key)
        .arg(GROUP)
        .query(&mut con)?;
    let pending = match pending.first() {
        Some(Value::Int(n)) => *n,
        other => return Err(format!("XPENDING summary: {other:?}").into()),
    };
    eprintln!("per consumer (acked): {per_consumer:?}, XPENDING {pending}");
    if acked != args.count || pending != 0 {
        return Err(format!(
            "acked {acked} of {} entries, {pending} still pending",
            args.count
        )
        .into());
    }
    report("consume", args, &version, &persistence, secs, args.count);
    Ok(())
}

/// One member of the group: returns how many entries its XACKs acknowledged.
fn consume_one(args: &Args, index: usize, barrier: &Barrier) -> Result<u64, BoxError> {
    let mut con = connect(&args.url)?;
    let name = format!("c{index}");
    barrier.wait();
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut acked = 0u64;
    loop {
        let mut pipe = redis::pipe();
        let acks = if ids.is_empty() {
            0
        } else if args.ack_each {
            for id in &ids {
                pipe.cmd("XACK").arg(&args.key).arg(GROUP).arg(&id[..]);
            }
            ids.len()
        } else {
            pipe.cmd("XACK").arg(&args.key).arg(GROUP).arg(&ids);
            1
        };
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&name)
            .arg("COUNT")
            .arg(args.batch)
            .arg("STREAMS")
            .arg(&args.key)
            .arg(">");
        let mut replies: Vec<Value> = pipe.query(&mut con)?;
        let read = replies.pop().ok_or("no reply to XREADGROUP")?;
        if replies.len() != acks {
            return Err(format!("{} replies to {acks} XACKs", replies.len()).into());
        }
        for reply in replies {
            match reply {
                Value::Int(n) => acked += n as u64,
                other => return Err(format!("XACK replied {other:?}").into()),
            }
        }
        ids.clear();
        entries(read, args.size, &mut ids)?;
        if ids.is_empty() {
            return Ok(acked);
        }
    }
}

/// The ids of an XREADGROUP reply's entries, checking each entry's payload size.
fn entries(read: Value, size: usize, ids: &mut Vec<Vec<u8>>) -> Result<(), BoxError> {
    let streams = match read {
        Value::Nil => return Ok(()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        other => return Err(format!("XREADGROUP replied {other:?}").into()),
    };
    for stream in streams {
        let Value::Array(mut key_and_entries) = stream else {
            return Err("XREADGROUP: a stream that is not [key, entries]".into());
        };
        let Some(Value::Array(list)) = key_and_entries.pop() else {
            return Err("XREADGROUP: no entry list".into());
        };
        for entry in list {
            let Value::Array(mut id_and_fields) = entry else {
                return Err("XREADGROUP: an entry that is not [id, fields]".into());
            };
            let fields = id_and_fields.pop();
            let id = id_and_fields.pop();
            match (id, fields) {
                (Some(Value::BulkString(id)), Some(Value::Array(fields))) => {
                    match fields.get(1) {
                        Some(Value::BulkString(v)) if v.len() == size => {}
                        other => {
                            return Err(format!(
                                "entry {}: payload {:?} is not {size} bytes",
                                String::from_utf8_lossy(&id),
                                other.map(|v| match v {
                                    Value::BulkString(b) => b.len(),
                                    _ => 0,
                                })
                            )
                            .into())
                        }
                    }
                    ids.push(id);
                }
                _ => return Err("XREADGROUP: malformed entry".into()),
            }
        }
    }
    Ok(())
}

/// One human line on stderr and one JSON line on stdout.
fn report(mode: &str, args: &Args, version: &str, persistence: &str, secs: f64, count: u64) {
    let msgs = count as f64 / secs;
    let mb = msgs * args.size as f64 / 1e6;
    eprintln!(
        "Redis streams {mode} {} B: {msgs:.0} msg/s, {mb:.1} MB/s ({count} entries in {secs:.3} s)",
        args.size
    );
    let extra = match mode {
        "publish" => format!("\"pipeline\":{}", args.pipeline),
        _ => format!(
            "\"consumers\":{},\"batch\":{},\"ack\":\"{}\"",
            args.consumers,
            args.batch,
            if args.ack_each { "each" } else { "batch" }
        ),
    };
    println!(
        "{{\"peer\":\"redis-streams\",\"server\":\"{version}\",\"mode\":\"{mode}\",\
         \"persistence\":\"{persistence}\",\"transport\":\"{}\",\"label\":\"{}\",\
         \"size\":{},\"count\":{count},{extra},\"secs\":{secs:.3},\"msgs_per_s\":{msgs:.0},\
         \"mb_per_s\":{mb:.1}}}",
        if args.url.contains("unix") { "unix" } else { "tcp" },
        args.label.replace('"', "'"),
        args.size
    );
}

/// A payload of `size` bytes (non-zero, so nothing special-cases it).
fn bytes_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8 + 1).collect()
}
