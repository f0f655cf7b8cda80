//! `mycelium stats --watch`: a live table in a real terminal (a pseudo-terminal driven by
//! `pty_driver.py` beside this file, as a person at a terminal would type), refused where
//! there is no terminal, and never leaving the terminal in raw mode.

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pubsub_support::{run_to_end, spawn_pub};
use common::{fanout, mycelium_bin, TestBroker};

/// What the driver saw: the screen output, the exit code, and whether raw mode was left on.
struct Session {
    transcript: String,
    code: i32,
    raw_left_on: bool,
}

/// Runs `mycelium ARGS` under a pseudo-terminal against the broker at `socket`, types `keys`
/// after `seconds`, and waits for it to exit.
fn under_a_terminal(socket: &Path, args: &[&str], seconds: f64, keys: &str) -> Session {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stats_watch/pty_driver.py");
    let out = Command::new("python3")
        .arg(driver)
        .arg(seconds.to_string())
        .arg(keys)
        .arg(mycelium_bin())
        .args(args)
        .env("MYCELIUM_SOCKET", socket)
        .env_remove("MYCELIUM_LOG")
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the pty driver failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    let fields: Vec<&str> = last.split_whitespace().collect();
    match fields.as_slice() {
        ["EXIT", code, "RAW", raw] => Session {
            transcript: stdout.clone(),
            code: code.parse().expect("exit code"),
            raw_left_on: *raw == "1",
        },
        _ => panic!("the driver's last line is not its summary: {stdout}"),
    }
}

/// The highest PUB/S figure shown for `topic` (the sixth column of its rows).
fn highest_publish_rate(transcript: &str, topic: &str) -> f64 {
    transcript
        .split(['\r', '\n'])
        .filter(|line| line.split_whitespace().next() == Some(topic))
        .filter_map(|line| line.split_whitespace().nth(5)?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// Publishes a 200-byte line on `topic` every millisecond for `seconds` (`pub` reads its
/// stdin through a buffer of a few KiB, so short lines would arrive in rare bursts).
fn steady_publisher(
    broker: &TestBroker,
    topic: &str,
    seconds: u64,
) -> common::pubsub_support::PubProcess {
    let until = Instant::now() + Duration::from_secs(seconds);
    let lines = std::iter::from_fn(move || {
        std::thread::sleep(Duration::from_millis(1));
        (Instant::now() < until).then(|| "t".repeat(200))
    });
    spawn_pub(broker, topic, lines)
}

#[test]
fn the_live_table_shows_a_topics_publish_rate_and_q_quits_cleanly() {
    let broker = TestBroker::start(&fanout("watched"));
    let _publisher = steady_publisher(&broker, "watched", 30);
    let session = under_a_terminal(
        &broker.socket,
        &["stats", "--watch", "--interval-ms", "300"],
        3.0,
        "q",
    );
    assert_eq!(session.code, 0, "{}", session.transcript);
    assert!(
        !session.raw_left_on,
        "raw mode left on: {}",
        session.transcript
    );
    assert!(
        session.transcript.contains("PUB/S"),
        "{}",
        session.transcript
    );
    assert!(
        highest_publish_rate(&session.transcript, "watched") > 0.0,
        "no non-zero publish rate for 'watched': {}",
        session.transcript
    );
}

#[test]
fn the_watch_ends_with_an_error_and_restores_the_terminal_when_the_broker_goes_away() {
    let broker = TestBroker::start(&fanout("watched"));
    let socket = broker.socket.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(broker);
    });
    let session = under_a_terminal(
        &socket,
        &["stats", "--watch", "--interval-ms", "200"],
        0.0,
        "",
    );
    killer.join().expect("killer thread");
    assert_ne!(session.code, 0, "{}", session.transcript);
    assert!(
        !session.raw_left_on,
        "raw mode left on: {}",
        session.transcript
    );
    assert!(
        session.transcript.contains("broker"),
        "{}",
        session.transcript
    );
}

#[test]
fn without_a_terminal_the_watch_is_refused_with_exit_2_and_points_to_json() {
    let broker = TestBroker::start(&fanout("watched"));
    let out = run_to_end(broker.cmd().args(["stats", "--watch"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("terminal") && out.stderr.contains("stats --json"),
        "{}",
        out.stderr
    );
}

#[test]
fn interval_without_watch_and_watch_with_json_are_refused() {
    let broker = TestBroker::start(&fanout("watched"));
    let out = run_to_end(broker.cmd().args(["stats", "--interval-ms", "500"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--watch"), "{}", out.stderr);
    let out = run_to_end(broker.cmd().args(["stats", "--watch", "--json"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = run_to_end(
        broker
            .cmd()
            .args(["stats", "--watch", "--interval-ms", "5"]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}
