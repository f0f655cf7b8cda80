//! Crash safety across processes: every publish confirmed under `fsync = "always"` survives a
//! SIGKILL of the broker at any moment; bytes flipped in the middle of a sealed segment are
//! reported and skipped, never served and never a crash.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mycelium_client::{Client, DurableOptions, StartPosition};
use nix::sys::signal::Signal;

use super::common::{block_on, TestBroker};

fn config(data: &Path, segment_bytes: u64) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\nsegment_bytes = {segment_bytes}\n\n[[topics]]\n\
         name = \"safe\"\nrouting = \"fanout\"\ndurable = true\nfsync = \"always\"\n",
        data.display()
    )
}

/// Four rounds: a client publishes confirmed messages as fast as it can while the broker is
/// SIGKILLed; after a restart every confirmed (offset, payload) is there, in order.
#[test]
fn every_publish_confirmed_under_always_survives_a_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    let confirmed: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    for round in 0..4u64 {
        let broker = TestBroker::start(&config(data.path(), 1 << 20));
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (socket, confirmed, stop) =
                (broker.socket.clone(), confirmed.clone(), stop.clone());
            std::thread::spawn(move || {
                block_on(async {
                    let Ok(client) = Client::connect(&socket).await else {
                        return;
                    };
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let payload = format!("round {round} message {n}");
                        match client.publish_durable("safe", payload.as_bytes()).await {
                            Ok(offset) => confirmed.lock().expect("lock").push((offset, payload)),
                            Err(_) => return, // the broker is gone
                        }
                        n += 1;
                    }
                })
            })
        };
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        broker.signal(Signal::SIGKILL);
        let _ = broker.wait();
        stop.store(true, Ordering::Relaxed);
        let _ = publisher.join();
    }
    let confirmed = confirmed.lock().expect("lock").clone();
    assert!(
        confirmed.len() > 100,
        "some publishes were confirmed: {}",
        confirmed.len()
    );
    let broker = TestBroker::start(&config(data.path(), 1 << 20));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut replay = client
            .subscribe_durable("safe", DurableOptions::replay(StartPosition::Earliest))
            .await
            .expect("replay");
        let last = confirmed.iter().map(|c| c.0).max().unwrap_or(0);
        let mut stored = std::collections::HashMap::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), replay.recv())
                .await
                .expect("the stored messages come")
                .expect("replay goes on");
            stored.insert(
                message.offset(),
                String::from_utf8_lossy(&message[..]).into_owned(),
            );
            if message.offset() >= last {
                break;
            }
        }
        for (offset, payload) in &confirmed {
            assert_eq!(
                stored.get(offset),
                Some(payload),
                "confirmed offset {offset} is kept"
            );
        }
    });
}

/// Bytes flipped inside a record of a sealed segment: the broker starts, a replay from the
/// start gets every other record in order, skips the damaged one, and the broker logs it.
#[test]
fn flipped_bytes_in_a_sealed_segment_are_skipped_not_served() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path(), 4096));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        for n in 0..200u64 {
            client
                .publish_durable(
                    "safe",
                    format!("message {n:04} {}", "y".repeat(40)).as_bytes(),
                )
                .await
                .expect("stored");
        }
    });
    broker.signal(Signal::SIGTERM);
    let _ = broker.wait();
    // The first segment is sealed (4 KiB segments, about 60 records each): flip bytes in the
    // middle of its third record's payload.
    let log_dir = data.path().join("safe");
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() > 2, "several segments: {segments:?}");
    let first = &segments[0];
    let mut bytes = std::fs::read(first).expect("read");
    let needle = b"message 0002";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the third record's payload");
    for b in &mut bytes[at + 3..at + 9] {
        *b ^= 0x5a;
    }
    std::fs::write(first, &bytes).expect("write back");

    let broker = TestBroker::start(&config(data.path(), 4096));
    let payloads = block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut replay = client
            .subscribe_durable("safe", DurableOptions::replay(StartPosition::Earliest))
            .await
            .expect("replay");
        let mut got = Vec::new();
        while got.len() < 199 {
            let message = tokio::time::timeout(Duration::from_secs(20), replay.recv())
                .await
                .expect("the intact messages come")
                .expect("replay goes on");
            got.push((message.offset(), message[..12].to_vec()));
        }
        got
    });
    let offsets: Vec<u64> = payloads.iter().map(|p| p.0).collect();
    let expected: Vec<u64> = (0..200).filter(|&n| n != 2).collect();
    assert_eq!(
        offsets, expected,
        "every record but the damaged one, in order"
    );
    assert!(payloads
        .iter()
        .all(|(o, p)| *p == format!("message {o:04}").into_bytes()));
    broker.signal(Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success());
    assert!(
        log.contains("skipped corrupt bytes in the log"),
        "the damage is reported: {log}"
    );
}
