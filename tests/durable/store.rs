//! What the broker writes into a durable topic's log, read back from the files.

use std::path::Path;
use std::process::Stdio;

use mycelium_storage::{FsyncPolicy, Log, LogOptions, StartAt};
use mycelium_transport::envelope::EnvelopeView;
use nix::sys::signal::Signal;

use super::common::pubsub_support::{run_to_end, spawn_pub_with, stats_json, topic_counter};
use super::common::{free_port, http_serving, wait_until, TestBroker};

/// The config of a broker keeping `topic` durable in `data`, with more lines after.
fn durable(data: &Path, topic: &str, more: &str) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"{topic}\"\nrouting = \"fanout\"\n\
         durable = true\n\n{more}",
        data.display()
    )
}

/// Every record of `topic`'s log in `data`: (offset, envelope, payload). The broker must have
/// stopped: opening a log recovers it.
fn records(data: &Path, topic: &str) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let options = LogOptions {
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    };
    let log = Log::open(data.join(topic), options).expect("the log opens");
    log.reader(StartAt::Earliest)
        .map(|record| {
            let record = record.expect("no corrupt record");
            (
                record.offset(),
                record.envelope().to_vec(),
                record.payload().to_vec(),
            )
        })
        .collect()
}

fn payloads(records: &[(u64, Vec<u8>, Vec<u8>)]) -> Vec<String> {
    records
        .iter()
        .map(|(_, _, payload)| String::from_utf8_lossy(payload).into_owned())
        .collect()
}

fn stop(broker: TestBroker) {
    broker.signal(Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "the broker stops cleanly: {log}");
}

#[test]
fn every_publish_path_stores_its_messages_in_the_topics_log() {
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let broker = TestBroker::start(&durable(
        data.path(),
        "orders",
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    ));
    let socket = run_to_end(
        broker
            .cmd()
            .args(["pub", "-H", "source=socket", "orders", "s1"]),
    );
    assert!(socket.status.success(), "{}", socket.stderr);
    let shm = spawn_pub_with(
        &broker,
        "orders",
        &["--transport", "shm"],
        ["m1", "m2", "m3"].map(String::from),
    );
    let (status, stderr) = shm.finish();
    assert!(status.success(), "{stderr}");
    wait_until("the gateway to serve", || http_serving(port));
    let http = std::process::Command::new("curl")
        .args(["-s", "-f", "-X", "POST", "--data-binary", "h1"])
        .arg(format!("http://127.0.0.1:{port}/publish/orders"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    assert!(
        http.status.success(),
        "{}",
        String::from_utf8_lossy(&http.stdout)
    );
    // `published` counts a batch once it is stored.
    wait_until("every message to be stored", || {
        topic_counter(&broker, "orders", "published") == 5
    });
    let _ = stats_json(&broker);
    stop(broker);

    let stored = records(data.path(), "orders");
    assert_eq!(
        stored.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..5).collect::<Vec<_>>(),
        "dense offsets from 0"
    );
    assert_eq!(payloads(&stored), ["s1", "m1", "m2", "m3", "h1"]);
    // The socket publish's header is kept in its envelope; the others had none.
    let envelope = EnvelopeView::parse(&stored[0].1).expect("the stored envelope parses");
    assert_eq!(
        envelope.headers().collect::<Vec<_>>(),
        [("source", "socket")]
    );
    assert!(stored[1..]
        .iter()
        .all(|(_, envelope, _)| envelope.is_empty()));
}

#[test]
fn a_restarted_broker_recovers_the_log_and_appends_after_it() {
    let data = tempfile::tempdir().expect("temp dir");
    for (round, lines) in [["a", "b", "c"], ["d", "e", "f"]].iter().enumerate() {
        let broker = TestBroker::start(&durable(data.path(), "kept", ""));
        let publisher = spawn_pub_with(&broker, "kept", &[], lines.map(String::from));
        let (status, stderr) = publisher.finish();
        assert!(status.success(), "{stderr}");
        wait_until("the round to be stored", || {
            topic_counter(&broker, "kept", "published") == 3
        });
        stop(broker);
        let stored = records(data.path(), "kept");
        assert_eq!(stored.len(), 3 * (round + 1));
    }
    let stored = records(data.path(), "kept");
    assert_eq!(payloads(&stored), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(stored.last().map(|r| r.0), Some(5));
}

/// SIGKILL at a random moment while a publisher streams numbered messages, five times over one
/// data directory: each time the log reopens (a torn tail cut, never a corrupt record served)
/// and holds, for every round, an exact prefix of that round's messages, in order.
#[test]
fn a_broker_killed_mid_write_leaves_an_exact_prefix_of_what_was_published() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut expected_rounds = 0;
    for round in 0..5u64 {
        let broker = TestBroker::start(&durable(data.path(), "crash", ""));
        let lines = (0..u64::MAX).map(move |n| format!("r{round}-{n:08}"));
        let publisher = spawn_pub_with(&broker, "crash", &[], lines);
        wait_until("some of the round to be stored", || {
            topic_counter(&broker, "crash", "published") > 1000
        });
        // Somewhere in a stream of writes.
        std::thread::sleep(std::time::Duration::from_millis(10 + 37 * round));
        broker.signal(Signal::SIGKILL);
        let _ = broker.wait();
        drop(publisher);
        expected_rounds += 1;

        let stored = records(data.path(), "crash");
        let mut next = vec![0u64; expected_rounds];
        for (i, (offset, envelope, payload)) in stored.iter().enumerate() {
            assert_eq!(*offset, i as u64, "dense offsets");
            assert!(envelope.is_empty());
            let text = std::str::from_utf8(payload).expect("a payload as published");
            let (r, n) = text
                .strip_prefix('r')
                .and_then(|rest| rest.split_once('-'))
                .expect("a payload as published");
            let (r, n): (usize, u64) = (r.parse().expect("round"), n.parse().expect("number"));
            assert_eq!(n, next[r], "round {r}: no gap, no duplicate, in order");
            next[r] += 1;
        }
        assert!(
            next.iter().all(|&n| n > 1000),
            "every round kept what it stored: {next:?}"
        );
    }
}

/// Two brokers on one data directory would interleave their appends: the second is refused
/// at start, saying which directory is taken.
#[test]
fn a_second_broker_on_the_same_data_dir_does_not_start() {
    let data = tempfile::tempdir().expect("temp dir");
    let first = TestBroker::start(&durable(data.path(), "kept", ""));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket_path = \"{}\"\n\n{}",
            dir.path().join("b.sock").display(),
            durable(data.path(), "kept", "")
        ),
    )
    .expect("write");
    let second = run_to_end(
        std::process::Command::new(super::common::mycelium_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("MYCELIUM_LOG"),
    );
    assert!(!second.status.success(), "the second broker must not start");
    assert!(
        second.stderr.contains("is in use by another broker"),
        "{}",
        second.stderr
    );
    // The first goes on, and once it has stopped the directory is free again.
    stop(first);
    let again = TestBroker::start(&durable(data.path(), "kept", ""));
    stop(again);
}
