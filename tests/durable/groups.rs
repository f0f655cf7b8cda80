//! Consumer groups across real processes: members share the messages, each acked once; a
//! member SIGKILLed with unacked messages has them delivered again at once (not after the ack
//! deadline), counted; repeated nacks dead-letter a message with the headers that say why and
//! where from, and `mycelium dlq redrive` moves it home; a group's committed position survives
//! a restart.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mycelium_client::{Client, DurableMessage, DurableOptions, NackAction, StartPosition};
use nix::sys::signal::Signal;

use super::common::pubsub_support::run_to_end;
use super::common::{block_on, TestBroker};

fn config(data: &Path, extra: &str) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"jobs\"\nrouting = \"fanout\"\n\
         durable = true\nfsync = \"never\"\nack_timeout_ms = 60000\n{extra}\n",
        data.display()
    )
}

async fn publish(client: &Client, range: std::ops::Range<u64>) {
    for n in range {
        client
            .publish("jobs", format!("job {n}").as_bytes())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
}

async fn next(sub: &mut mycelium_client::DurableSubscription) -> DurableMessage {
    tokio::time::timeout(Duration::from_secs(20), sub.recv())
        .await
        .expect("a message within 20 s")
        .expect("the subscription goes on")
}

fn from_start(group: &str) -> DurableOptions {
    DurableOptions::group(group).start(StartPosition::Earliest)
}

#[test]
fn two_members_share_the_messages_each_acked_once_and_the_group_reports_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path(), ""));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        publish(&client, 0..400).await;
        let other = Client::connect(&broker.socket).await.expect("connect");
        let mut a = client
            .subscribe_durable("jobs", from_start("workers").prefetch(16))
            .await
            .expect("join");
        let mut b = other
            .subscribe_durable("jobs", from_start("workers").prefetch(16))
            .await
            .expect("join");
        let mut seen = BTreeMap::new();
        let (mut from_a, mut from_b) = (0, 0);
        while seen.len() < 400 {
            let (message, by_a) = tokio::select! {
                m = next(&mut a) => (m, true),
                m = next(&mut b) => (m, false),
            };
            assert_eq!(message.delivery_count(), Some(1));
            assert_eq!(&message[..], format!("job {}", message.offset()).as_bytes());
            assert!(
                seen.insert(message.offset(), by_a).is_none(),
                "delivered once"
            );
            if by_a {
                from_a += 1
            } else {
                from_b += 1
            }
            message.ack();
        }
        assert!(
            from_a > 0 && from_b > 0,
            "both members got some: {from_a} / {from_b}"
        );
        a.flush_acks();
        b.flush_acks();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let groups = client.groups("jobs").await.expect("groups");
            let group = groups.iter().find(|g| g.name == "workers").expect("listed");
            if group.committed == 400 {
                assert_eq!(
                    (group.next_offset, group.pending, group.members),
                    (400, 0, 2)
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "committed stays at {}",
                group.committed
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // The CLI says the same.
    let out = run_to_end(broker.cmd().args(["groups", "--json", "jobs"]));
    assert!(out.status.success(), "{}", out.stderr);
    let line: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    assert_eq!(
        (
            line["name"].as_str(),
            line["committed"].as_u64(),
            line["lag"].as_u64()
        ),
        (Some("workers"), Some(400), Some(0))
    );
}

/// A `mycelium sub --group` process whose stdout nobody reads stops acking once the pipe is
/// full; SIGKILLed then, everything it had not acked goes to the other member at once.
#[test]
fn a_member_killed_with_unacked_messages_has_them_delivered_again_at_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path(), ""));
    let total = 3000u64;
    let mut stuck = broker
        .cmd()
        .args([
            "sub",
            "--group",
            "workers",
            "--from",
            "earliest",
            "--prefetch",
            "64",
            "jobs",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mycelium sub");
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        // Wait for the member to be in the group, then fill its pipe.
        let deadline = Instant::now() + Duration::from_secs(10);
        while client
            .groups("jobs")
            .await
            .map_or(true, |g| g.iter().all(|g| g.members == 0))
        {
            assert!(Instant::now() < deadline, "the member joins");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let big = "x".repeat(2000);
        for n in 0..total {
            client
                .publish("jobs", format!("job {n} {big}").as_bytes())
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
        // It holds messages it cannot print, unacked.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let groups = client.groups("jobs").await.expect("groups");
            if groups.iter().any(|g| g.pending > 0 && g.committed < total) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the member holds unacked messages: {groups:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let pid = nix::unistd::Pid::from_raw(stuck.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGKILL).expect("kill");
    let mut printed = String::new();
    if let Some(mut out) = stuck.stdout.take() {
        let _ = out.read_to_string(&mut printed);
    }
    let _ = stuck.wait();
    let printed: Vec<u64> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("job ")?.split(' ').next()?.parse().ok())
        .collect();
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let started = Instant::now();
        let mut rest = client
            .subscribe_durable("jobs", from_start("workers"))
            .await
            .expect("join");
        let mut got: BTreeMap<u64, u32> = BTreeMap::new();
        // Everything the killed member did not ack comes here, so with what it printed every
        // message is accounted for; the redelivered ones come counted.
        loop {
            let message = next(&mut rest).await;
            let count = message.delivery_count().expect("a delivery count");
            got.insert(message.offset(), count);
            message.ack();
            let all = (0..total).all(|n| got.contains_key(&n) || printed.contains(&n));
            if all {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "redelivered at once, not after the 60 s ack deadline"
        );
        let again = got.values().filter(|&&count| count >= 2).count();
        assert!(
            again > 0,
            "some were delivered a second time, and counted so"
        );
    });
}

#[test]
fn repeated_nacks_dead_letter_a_message_which_redrive_moves_home() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path(), "max_deliveries = 3\n"));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        publish(&client, 0..2).await;
        let mut sub = client
            .subscribe_durable("jobs", from_start("picky"))
            .await
            .expect("join");
        let mut deliveries = Vec::new();
        // Offset 0 is nacked every time; offset 1 is acked.
        while deliveries.iter().filter(|&&(o, _)| o == 0).count() < 3 {
            let message = next(&mut sub).await;
            deliveries.push((message.offset(), message.delivery_count().expect("count")));
            if message.offset() == 0 {
                message.nack(NackAction::Requeue);
            } else {
                message.ack();
            }
        }
        let counts: Vec<u32> = deliveries
            .iter()
            .filter(|d| d.0 == 0)
            .map(|d| d.1)
            .collect();
        assert_eq!(counts, [1, 2, 3], "delivered three times, counted");
        sub.flush_acks();
        // A fourth delivery would pass max_deliveries: it goes to jobs.dlq instead, made on
        // first use.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client
            .stats()
            .await
            .expect("stats")
            .topics
            .iter()
            .any(|t| t.name == "jobs.dlq" && t.log.is_some_and(|l| l.next_offset == 1))
        {
            assert!(Instant::now() < deadline, "jobs.dlq gets the message");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut dead = client
            .subscribe_durable("jobs.dlq", DurableOptions::replay(StartPosition::Earliest))
            .await
            .expect("the dead-letter topic exists");
        let letter = next(&mut dead).await;
        assert_eq!(&letter[..], b"job 0");
        for (key, value) in [
            ("Mycelium-Dead-Letter-Reason", "max-deliveries"),
            ("Mycelium-Dead-Letter-Topic", "jobs"),
            ("Mycelium-Dead-Letter-Offset", "0"),
            ("Mycelium-Dead-Letter-Group", "picky"),
            ("Mycelium-Delivery-Count", "3"),
        ] {
            assert_eq!(letter.header(key), Some(value), "{key}");
        }
        let quiet = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
        assert!(quiet.is_err(), "offset 0 is not delivered a fourth time");
    });
    // Moved home: stored in jobs again, without the dead-letter headers.
    let out = run_to_end(broker.cmd().args(["dlq", "redrive", "jobs.dlq"]));
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("moved 1 message(s) from jobs.dlq to jobs"),
        "{}",
        out.stdout
    );
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut replay = client
            .subscribe_durable("jobs", DurableOptions::replay(StartPosition::Offset(2)))
            .await
            .expect("replay");
        let home = next(&mut replay).await;
        assert_eq!((home.offset(), &home[..]), (2, &b"job 0"[..]));
        assert_eq!(home.header("Mycelium-Dead-Letter-Reason"), None);
    });
}

#[test]
fn a_groups_committed_position_survives_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path(), ""));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        publish(&client, 0..20).await;
        let mut sub = client
            .subscribe_durable("jobs", from_start("resume").prefetch(10))
            .await
            .expect("join");
        for _ in 0..10 {
            let message = next(&mut sub).await;
            assert!(message.offset() < 10);
            message.ack();
        }
        sub.unsubscribe().await.expect("unsubscribe");
        let deadline = Instant::now() + Duration::from_secs(10);
        while client
            .groups("jobs")
            .await
            .expect("groups")
            .iter()
            .all(|g| g.committed != 10)
        {
            assert!(Instant::now() < deadline, "the acks are counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    broker.signal(Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "{log}");
    let broker = TestBroker::start(&config(data.path(), ""));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let groups = client.groups("jobs").await.expect("groups");
        assert_eq!(
            groups
                .iter()
                .find(|g| g.name == "resume")
                .map(|g| g.committed),
            Some(10)
        );
        // Rejoining (its start is ignored: the group exists) resumes at offset 10.
        let mut sub = client
            .subscribe_durable(
                "jobs",
                DurableOptions::group("resume").start(StartPosition::Earliest),
            )
            .await
            .expect("join");
        let offsets: Vec<u64> = {
            let mut v = Vec::new();
            for _ in 0..10 {
                let message = next(&mut sub).await;
                v.push(message.offset());
                message.ack();
            }
            v
        };
        assert_eq!(offsets, (10..20).collect::<Vec<_>>());
    });
}
