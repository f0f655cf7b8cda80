//! The HTTP gateway across real processes: `mycelium run` with `[http] listen`, `curl` (a
//! client no one here wrote) on HTTP and `mycelium pub`/`sub` on the socket seeing each
//! other's messages both ways; the log saying where the gateway listens; a reload moving
//! and stopping it (and keeping it where it was when the new address is taken); a taken
//! address stopping the broker at start; `/health` answering 503 during the shutdown; the
//! `/metrics` output read by Python's `prometheus_client` OpenMetrics parser.
//!
//! `curl` is required; the Python check is skipped, saying so, when `python3` or its
//! `prometheus_client` package is missing (`.ci/run` installs it).

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pubsub_support::run_to_end;
use common::{free_port, mycelium_bin, spawn_sub, wait_until, TestBroker};
use serde_json::Value;

fn http(port: u16) -> String {
    format!("[http]\nlisten = \"127.0.0.1:{port}\"\nmax_wait_ms = 10000\n")
}

const TOPICS: &str =
    "[topic_defaults]\nauto_create = true\n\n[[topics]]\nname = \"t\"\nrouting = \"fanout\"\n";

/// `curl` with `args`: the HTTP status (0 when nothing answered) and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-m", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (it is required by these tests)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn health(port: u16) -> u16 {
    curl(&[&format!("http://127.0.0.1:{port}/health")]).0
}

fn broker_on(port: u16) -> TestBroker {
    let broker = TestBroker::start(&format!("{TOPICS}\n{}", http(port)));
    wait_until("the gateway to serve", || health(port) == 200);
    broker
}

#[test]
fn curl_and_the_socket_clients_see_each_others_messages() {
    let port = free_port();
    let broker = broker_on(port);
    let base = format!("http://127.0.0.1:{port}");

    // HTTP -> socket subscriber.
    let sub = spawn_sub(&broker, "t", &[]);
    let (status, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "from http",
        &format!("{base}/publish/t"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["published"], 1);
    assert_eq!(sub.take_lines(1), ["from http"]);

    // Socket publisher -> HTTP subscription, headers included.
    let (status, body) = curl(&["-X", "POST", &format!("{base}/subscribe/t")]);
    assert_eq!(status, 201, "{body}");
    let id = json(&body)["subscription"]
        .as_str()
        .expect("an id")
        .to_owned();
    let published = run_to_end(
        broker
            .cmd()
            .args(["pub", "t", "from socket", "-H", "trace=abc"]),
    );
    assert!(published.status.success(), "{published:?}");
    let (status, body) = curl(&[&format!("{base}/consume/t?subscription={id}&wait_ms=10000")]);
    assert_eq!(status, 200, "{body}");
    let message = json(&body);
    assert_eq!(
        (&message["data"], &message["headers"]["trace"]),
        (&Value::from("from socket"), &Value::from("abc"))
    );
    let (status, _) = curl(&[&format!("{base}/consume/t?subscription={id}")]);
    assert_eq!(status, 204);

    // An HTTP header reaches the socket subscriber too (`sub --json` shows headers).
    let json_sub = spawn_sub(&broker, "t", &["--json"]);
    curl(&[
        "-X",
        "POST",
        "-H",
        "X-Mycelium-Header-Trace: xyz",
        "--data-binary",
        "with header",
        &format!("{base}/publish/t"),
    ]);
    let line = json_sub.take_lines(1).remove(0);
    assert!(
        line.contains("with header") && line.contains("xyz"),
        "{line}"
    );

    drop(sub);
    drop(json_sub);
    broker.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "HTTP gateway listening on http://127.0.0.1:{port}"
        )),
        "the log says where the gateway listens:\n{log}"
    );
}

#[test]
fn a_reload_moves_and_stops_the_gateway_and_keeps_it_when_the_new_address_is_taken() {
    let (first, second) = (free_port(), free_port());
    let broker = broker_on(first);
    broker.rewrite_config(&format!("{TOPICS}\n{}", http(second)));
    wait_until("the gateway to move", || health(second) == 200);
    wait_until("the old address to close", || health(first) == 0);

    // A taken address: the gateway stays where it is.
    let taken = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let taken_port = taken.local_addr().expect("its address").port();
    broker.rewrite_config(&format!("{TOPICS}\n{}", http(taken_port)));
    wait_until("the reload to be applied", || {
        let (_, body) = curl(&[&format!("http://127.0.0.1:{second}/metrics")]);
        body.contains("mycelium_config_generation 3")
    });
    assert_eq!(health(second), 200, "still serving where it was");

    broker.rewrite_config(TOPICS);
    wait_until("the gateway to stop", || health(second) == 0);
    let listed = run_to_end(broker.cmd().args(["stats", "--json"]));
    assert!(listed.status.success(), "the broker serves on: {listed:?}");
    drop(taken);

    broker.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "{log}");
    for expected in [
        format!("HTTP gateway listening on http://127.0.0.1:{first}"),
        format!("HTTP gateway listening on http://127.0.0.1:{second}"),
        format!("cannot listen on 127.0.0.1:{taken_port}"),
        format!("keeping the HTTP gateway on 127.0.0.1:{second}"),
        "HTTP gateway stopped".to_owned(),
    ] {
        assert!(
            log.contains(&expected),
            "no {expected:?} in the log:\n{log}"
        );
    }
}

#[test]
fn a_taken_address_stops_the_broker_at_start_with_the_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = taken.local_addr().expect("its address").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("broker.toml");
    let text = format!(
        "[server]\nsocket_path = \"{}\"\n\n{TOPICS}\n{}",
        dir.path().join("broker.sock").display(),
        http(port)
    );
    std::fs::write(&config, text).expect("config");
    let finished = run_to_end(
        Command::new(mycelium_bin())
            .arg("run")
            .arg("--config")
            .arg(&config),
    );
    assert!(!finished.status.success(), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{finished:?}"
    );
}

#[test]
fn health_answers_503_while_the_broker_shuts_down() {
    let port = free_port();
    let broker = broker_on(port);
    broker.signal(nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let status = health(port);
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if status == 0 || start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    assert!(
        seen.contains(&503),
        "503 before the listener closed: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&0), "then closed: {seen:?}");
    let (status, log) = broker.wait();
    assert!(status.success(), "{log}");
}

#[test]
fn metrics_parse_with_pythons_prometheus_client() {
    let check = "import prometheus_client.openmetrics.parser";
    let usable = Command::new("python3")
        .args(["-c", check])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        println!("SKIPPED: python3 with the prometheus_client package is needed (pip install prometheus-client)");
        return;
    }
    let port = free_port();
    let broker = broker_on(port);
    let base = format!("http://127.0.0.1:{port}");
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        "x",
        &format!("{base}/publish/t"),
    ]);
    // A socket publish: the broker times its way through (one latency sample per batch).
    let published = run_to_end(broker.cmd().args(["pub", "t", "over the socket"]));
    assert!(published.status.success(), "{published:?}");
    let (status, text) = curl(&[&format!("{base}/metrics")]);
    assert_eq!(status, 200);
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        print(f"{family.type} {sample.name} {labels} {float(sample.value)}")
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = python.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write");
    }
    let output = python.wait_with_output().expect("python3 ran");
    let parsed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the parser refused:\n{}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "counter mycelium_messages_published_total topic=t 2.0",
        "counter mycelium_messages_dropped_total reason=drop_oldest,topic=t 0.0",
        "counter mycelium_received_bytes_total topic=t 16.0",
        "gauge mycelium_subscribers topic=t,transport=socket 0.0",
        "gauge mycelium_connections kind=messages 0.0",
        "gauge mycelium_config_generation  1.0",
        "histogram mycelium_delivery_latency_seconds_count  1.0",
        "histogram mycelium_delivery_latency_seconds_bucket le=+Inf 1.0",
    ] {
        assert!(
            parsed.lines().any(|l| l == line),
            "no {line:?} in\n{parsed}"
        );
    }
    drop(broker);
}
