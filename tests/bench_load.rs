//! `mycelium bench` under a fixed offered load: `--duration`, `--rate` and `--plot` on both
//! transports, and the flag combinations it refuses.

mod common;

use common::pubsub_support::run_to_end;
use common::{fanout, TestBroker};

fn bench_broker() -> TestBroker {
    TestBroker::start(&format!(
        "{}{}{}",
        fanout("bench.fanout"),
        fanout("bench.ping"),
        fanout("bench.pong")
    ))
}

/// A paced run for a second on `transport`: exactly rate x duration messages sent and all
/// received, every one a latency sample, and a plot with both charts.
fn paced_run_reports_and_plots(transport: &str) {
    let broker = bench_broker();
    let plot = broker.dir.path().join("run.svg");
    let out = run_to_end(
        broker
            .cmd()
            .args([
                "bench",
                "--transport",
                transport,
                "--rate",
                "2000",
                "--duration",
                "1",
                "--json",
                "--plot",
            ])
            .arg(&plot),
    );
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("stdout is the JSON alone");
    assert_eq!(json["transport"], transport);
    let sent = json["sent"].as_u64().expect("sent");
    assert!((1000..=2200).contains(&sent), "sent {sent}: {json}");
    assert_eq!(json["received"], sent, "{json}");
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(
        json["latency_samples"], sent,
        "every paced message is timed: {json}"
    );
    assert_eq!(json["offered_msgs_per_sec"], 2000.0, "{json}");
    assert_eq!(json["rate"], 2000, "{json}");
    assert_eq!(json["duration_s"], 1.0, "{json}");
    assert!(json["count"].is_null(), "{json}");
    let achieved = json["achieved_msgs_per_sec"].as_f64().expect("achieved");
    assert!(achieved > 0.0, "{json}");
    assert!(json["p50_us"].as_f64().expect("p50") > 0.0, "{json}");
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    assert!(
        svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(svg.contains("Latency by percentile"), "{svg}");
    assert!(svg.contains("Throughput over time"), "{svg}");
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "no curve drawn: {svg}"
    );
}

#[test]
fn a_paced_run_over_the_socket_sends_rate_times_duration_and_plots_it() {
    paced_run_reports_and_plots("uds");
}

#[test]
fn a_paced_run_over_shared_memory_sends_rate_times_duration_and_plots_it() {
    paced_run_reports_and_plots("shm");
}

#[test]
fn an_unpaced_run_for_a_duration_stops_by_itself_and_loses_nothing() {
    let broker = bench_broker();
    let out = run_to_end(broker.cmd().args([
        "bench",
        "--transport",
        "uds",
        "--duration",
        "0.5",
        "--json",
    ]));
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert!(json["sent"].as_u64().expect("sent") > 0, "{json}");
    assert_eq!(json["received"], json["sent"], "{json}");
    assert!(json["offered_msgs_per_sec"].is_null(), "{json}");
}

#[test]
fn conflicting_or_meaningless_load_flags_are_refused_with_the_reason() {
    let broker = bench_broker();
    let refused = |args: &[&str], says: &[&str]| {
        let out = run_to_end(broker.cmd().arg("bench").args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        for part in says {
            assert!(
                out.stderr.contains(part),
                "{args:?} should say {part:?}: {}",
                out.stderr
            );
        }
    };
    refused(
        &["--duration", "1", "--count", "10"],
        &["--duration", "--count", "cannot be used with"],
    );
    refused(
        &["--rate", "100", "--pingpong", "10"],
        &["--rate", "--pingpong", "cannot be used with"],
    );
    refused(
        &["--duration", "1", "--request", "10"],
        &["--duration", "--request", "cannot be used with"],
    );
    refused(
        &["--plot", "x.svg", "--pingpong", "10"],
        &["--plot", "--pingpong", "cannot be used with"],
    );
    refused(&["--duration", "0"], &["duration must be between"]);
    refused(&["--duration", "soon"], &["not a number of seconds"]);
    refused(&["--rate", "0"], &["--rate"]);
}
