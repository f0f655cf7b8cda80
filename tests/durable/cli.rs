//! The command line of durable topics: `sub --from/--group/--reject/--prefetch`, `groups` and
//! `dlq redrive`; what each refuses before it connects (exit 2, usage errors), and how each
//! words the broker's refusal (exit 1) on a topic that keeps no log; and, against a stand-in
//! broker, what each sends: acknowledgements after printing, requeueing nacks, confirmed
//! publishes without the dead-letter headers before the acknowledgement.

use std::path::Path;
use std::process::Command;

use mycelium_transport::envelope::EnvelopeView;
use mycelium_transport::{ErrorCode, Frame, GroupStats, NackAction, StartPosition};

use super::common::pubsub_support::{run_to_end, Finished};
use super::common::{mycelium_bin, TestBroker};
use super::stand_in::{topic_ack, Asked, Peer, StandIn, SUBSCRIPTION};

fn config(data: &Path) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"kept\"\nrouting = \"fanout\"\n\
         durable = true\n\n[[topics]]\nname = \"plain\"\nrouting = \"fanout\"\n",
        data.display()
    )
}

/// `mycelium ARGS` with no broker anywhere: what is refused here is refused before any
/// connection.
fn offline(args: &[&str]) -> Finished {
    run_to_end(
        Command::new(mycelium_bin())
            .args(args)
            .env("MYCELIUM_SOCKET", "/nonexistent/mycelium.sock")
            .env_remove("MYCELIUM_LOG"),
    )
}

/// Asserts `out` is a usage error (exit 2) whose stderr holds every one of `words`.
fn assert_usage_error(out: &Finished, words: &[&str], what: &str) {
    assert_eq!(out.status.code(), Some(2), "{what}: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{what}: {}", out.stdout);
    for word in words {
        assert!(
            out.stderr.contains(word),
            "{what}: no {word:?} in {}",
            out.stderr
        );
    }
}

/// Asserts `out` failed (exit 1) with one `error:` line holding every one of `words`.
fn assert_failed(out: &Finished, words: &[&str], what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{what}: {}", out.stdout);
    let error = out
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("{what}: no error line in {}", out.stderr));
    for word in words {
        assert!(error.contains(word), "{what}: no {word:?} in {error}");
    }
}

#[test]
fn bad_from_values_are_usage_errors_naming_the_accepted_forms() {
    for bad in ["yesterday", "latest", "-3", "1.5", ""] {
        let out = offline(&["sub", &format!("--from={bad}"), "kept"]);
        assert_usage_error(&out, &["--from", "earliest", "RFC 3339"], bad);
    }
    // A time is UTC, spelled with its Z: one without a zone or in another is not guessed at.
    for bad in [
        "2026-12-06T10:00:00",
        "2026-12-06T10:00:00+01:00",
        "2026-12-06",
    ] {
        let out = offline(&["sub", "--from", bad, "kept"]);
        assert_usage_error(&out, &["--from", "RFC 3339"], bad);
    }
    let out = offline(&["sub", "--from", "18446744073709551616", "kept"]);
    assert_usage_error(&out, &["too large"], "an offset past u64");
}

#[test]
fn flags_that_need_a_durable_subscription_are_refused_without_one() {
    let out = offline(&["sub", "--reject", "kept"]);
    assert_usage_error(&out, &["--reject", "--group"], "--reject alone");
    let out = offline(&["sub", "--from", "earliest", "--reject", "kept"]);
    assert_usage_error(&out, &["--reject", "--group"], "--reject on a replay");
    let out = offline(&["sub", "--prefetch", "10", "kept"]);
    assert_usage_error(&out, &["--prefetch"], "--prefetch alone");
    let out = offline(&["sub", "--group", "g", "--prefetch", "0", "kept"]);
    assert_usage_error(&out, &["--prefetch"], "a prefetch of 0");
    for bad in ["has space", "a/b", ""] {
        let out = offline(&["sub", "--group", bad, "kept"]);
        assert_usage_error(&out, &["--group", "A-Z a-z 0-9 . _ -"], bad);
    }
    let out = offline(&["sub", "--group", &"g".repeat(256), "kept"]);
    assert_usage_error(&out, &["1 to 255"], "a 256-character group");
    let out = offline(&["sub", "--from", "earliest", "--transport", "shm", "kept"]);
    assert_usage_error(&out, &["--transport shm"], "a replay over shared memory");
    let out = offline(&["sub", "--group", "g", "--transport", "shm", "kept"]);
    assert_usage_error(&out, &["--transport shm"], "a group over shared memory");
}

#[test]
fn redrive_refuses_to_send_a_dead_letter_topic_into_itself() {
    let out = offline(&["dlq", "redrive", "kept.dlq", "--to", "kept.dlq"]);
    assert_usage_error(&out, &["--to", "kept.dlq"], "--to the dead-letter topic");
    let out = offline(&["dlq", "redrive", "kept.dlq", "--max", "0"]);
    assert_usage_error(&out, &["--max"], "--max 0");
}

#[test]
fn a_topic_without_a_log_is_refused_with_the_way_to_make_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path()));
    let out = run_to_end(broker.cmd().args(["groups", "plain"]));
    assert_failed(
        &out,
        &["consumer groups of plain", "Unsupported", "durable = true"],
        "groups",
    );
    let out = run_to_end(broker.cmd().args(["groups", "plain", "--json"]));
    assert_failed(
        &out,
        &["consumer groups of plain", "Unsupported"],
        "groups --json",
    );
    let out = run_to_end(broker.cmd().args(["sub", "--from", "earliest", "plain"]));
    assert_failed(
        &out,
        &["plain's log", "Unsupported", "durable = true"],
        "sub --from",
    );
    let out = run_to_end(broker.cmd().args(["sub", "--group", "g", "plain"]));
    assert_failed(
        &out,
        &["consumer group g on plain", "Unsupported", "durable = true"],
        "sub --group",
    );
    let out = run_to_end(broker.cmd().args(["dlq", "redrive", "plain"]));
    assert_failed(
        &out,
        &[
            "dead-letter topic plain as consumer group mycelium-redrive",
            "Unsupported",
            "durable = true",
        ],
        "dlq redrive",
    );
}

// ---------------------------------------------------------------------------------------------
// Against a stand-in broker, until the broker serves durable subscriptions: what the command
// line sends for each message, frame by frame.
// ---------------------------------------------------------------------------------------------

/// `mycelium ARGS` aimed at the stand-in.
fn at_stand_in(stand_in: &StandIn, args: &[&str]) -> Command {
    let mut cmd = Command::new(mycelium_bin());
    cmd.args(args)
        .env("MYCELIUM_SOCKET", &stand_in.path)
        .env_remove("MYCELIUM_LOG");
    cmd
}

/// What a durable subscriber sent after its `SubscribeDurable`, until it closed the
/// connection: acknowledged offsets, nacks, and whether it ended the subscription after both.
#[derive(Debug, Default)]
struct Settled {
    acked: Vec<u64>,
    nacked: Vec<(u64, NackAction)>,
    unsubscribed: bool,
}

/// Reads `peer` to its end, answering the `Unsubscribe` of the durable subscription.
fn settled(peer: &mut Peer) -> Settled {
    let mut seen = Settled::default();
    while let Some(frame) = peer.next_answering_pings() {
        assert!(!seen.unsubscribed, "{frame:?} after the Unsubscribe");
        match frame {
            Frame::AckMessages {
                subscription_id,
                offsets,
            } => {
                assert_eq!(subscription_id, SUBSCRIPTION);
                seen.acked.extend(offsets);
            }
            Frame::Nack {
                subscription_id,
                offset,
                action,
            } => {
                assert_eq!(subscription_id, SUBSCRIPTION);
                seen.nacked.push((offset, action));
            }
            Frame::Unsubscribe {
                request_id,
                topic_id,
            } => {
                assert_eq!(topic_id, SUBSCRIPTION);
                peer.send(&Frame::Ack { request_id });
                seen.unsubscribed = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn a_group_member_prints_each_message_acknowledges_it_and_ends_cleanly_at_its_count() {
    let stand_in = StandIn::bind();
    let mut cmd = at_stand_in(
        &stand_in,
        &[
            "sub",
            "--group",
            "billing",
            "--from",
            "earliest",
            "--prefetch",
            "4",
            "--count",
            "3",
            "--json",
            "kept",
        ],
    );
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        let asked = peer.ack_durable(4);
        for (offset, count) in [(5, "1"), (6, "1"), (7, "2")] {
            peer.deliver(
                offset,
                &[("Mycelium-Delivery-Count", count)],
                format!("m{offset}").as_bytes(),
            );
        }
        (asked, settled(&mut peer))
    });
    let out = run_to_end(&mut cmd);
    let ((start, group, topic), seen) = server.join().expect("the stand-in");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        (start, group.as_deref(), topic.as_str()),
        (StartPosition::Earliest, Some("billing"), "kept")
    );
    let lines = json_lines(&out.stdout);
    let summary: Vec<_> = lines
        .iter()
        .map(|l| (l["offset"].clone(), l["data"].clone()))
        .collect();
    assert_eq!(
        summary,
        [(5, "m5"), (6, "m6"), (7, "m7")]
            .map(|(o, d)| (serde_json::json!(o), serde_json::json!(d)))
    );
    assert_eq!(lines[2]["headers"]["Mycelium-Delivery-Count"], "2");
    let mut acked = seen.acked.clone();
    acked.sort_unstable();
    assert_eq!(acked, [5, 6, 7], "each acknowledged once: {seen:?}");
    assert!(seen.nacked.is_empty(), "{seen:?}");
    assert!(
        seen.unsubscribed,
        "the acknowledgements went before the Unsubscribe"
    );
}

#[test]
fn a_rejecting_member_prints_and_requeues_every_delivery_and_acknowledges_none() {
    let stand_in = StandIn::bind();
    let mut cmd = at_stand_in(
        &stand_in,
        &["sub", "--group", "g", "--reject", "--count", "2", "kept"],
    );
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        let asked = peer.ack_durable(10);
        peer.deliver(3, &[("Mycelium-Delivery-Count", "1")], b"poison");
        // Delivered again once it came back, as the broker does.
        match peer.recv() {
            Frame::Nack {
                offset: 3, action, ..
            } => assert_eq!(action, NackAction::Requeue),
            other => panic!("expected the Nack of offset 3, got {other:?}"),
        }
        peer.deliver(3, &[("Mycelium-Delivery-Count", "2")], b"poison");
        (asked, settled(&mut peer))
    });
    let out = run_to_end(&mut cmd);
    let ((start, group, _), seen) = server.join().expect("the stand-in");
    assert!(out.status.success(), "{}", out.stderr);
    // Without --from, a new group starts with new messages.
    assert_eq!((start, group.as_deref()), (StartPosition::New, Some("g")));
    assert_eq!(out.stdout, "poison\npoison\n");
    assert_eq!(seen.nacked, [(3, NackAction::Requeue)], "{seen:?}");
    assert!(seen.acked.is_empty(), "{seen:?}");
    assert!(seen.unsubscribed);
}

#[test]
fn a_replay_subscription_starts_where_from_says_and_plain_output_is_unchanged() {
    for (from, start) in [
        ("12", StartPosition::Offset(12)),
        (
            "2026-12-06T10:00:00Z",
            StartPosition::Timestamp(1_796_551_200_000_000_000),
        ),
    ] {
        let stand_in = StandIn::bind();
        let mut cmd = at_stand_in(&stand_in, &["sub", "--from", from, "--count", "2", "kept"]);
        let server = std::thread::spawn(move || {
            let mut peer = stand_in.accept();
            let asked = peer.ack_durable(10);
            peer.deliver(12, &[], b"first");
            peer.deliver(13, &[], b"second");
            (asked, settled(&mut peer))
        });
        let out = run_to_end(&mut cmd);
        let ((asked_start, group, _), seen) = server.join().expect("the stand-in");
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!((asked_start, group), (start, None), "--from {from}");
        assert_eq!(out.stdout, "first\nsecond\n");
        assert!(
            out.stderr.starts_with("subscribed to kept\n"),
            "{}",
            out.stderr
        );
        // A replay subscription returns credit, never acknowledgements.
        assert!(seen.acked.is_empty() && seen.nacked.is_empty(), "{seen:?}");
    }
}

#[test]
fn groups_are_listed_as_a_table_and_as_json_lines() {
    let listed = vec![
        GroupStats {
            name: "billing".into(),
            committed: 40,
            next_offset: 42,
            pending: 2,
            members: 1,
            redelivered: 3,
            dead_lettered: 1,
        },
        GroupStats {
            name: "audit".into(),
            committed: 0,
            next_offset: 42,
            pending: 0,
            members: 0,
            redelivered: 0,
            dead_lettered: 0,
        },
    ];
    for json in [false, true] {
        let stand_in = StandIn::bind();
        let mut args = vec!["groups", "kept"];
        if json {
            args.push("--json");
        }
        let mut cmd = at_stand_in(&stand_in, &args);
        let groups = listed.clone();
        let server = std::thread::spawn(move || {
            let mut peer = stand_in.accept();
            match peer.recv() {
                Frame::GroupsRequest { request_id, topic } => {
                    assert_eq!(topic, "kept");
                    peer.send(&Frame::Groups { request_id, groups });
                }
                other => panic!("expected GroupsRequest, got {other:?}"),
            }
            while peer.next_answering_pings().is_some() {}
        });
        let out = run_to_end(&mut cmd);
        server.join().expect("the stand-in");
        assert!(out.status.success(), "{}", out.stderr);
        if json {
            let lines = json_lines(&out.stdout);
            assert_eq!(lines.len(), 2);
            assert_eq!(
                lines[0],
                serde_json::json!({"name": "billing", "committed": 40, "next_offset": 42,
                    "lag": 2, "pending": 2, "members": 1, "redelivered": 3, "dead_lettered": 1})
            );
            assert_eq!(lines[1]["lag"], 42);
        } else {
            let rows: Vec<Vec<&str>> = out
                .stdout
                .lines()
                .map(|line| line.split_whitespace().collect())
                .collect();
            assert_eq!(
                rows,
                [
                    vec![
                        "GROUP",
                        "COMMITTED",
                        "NEXT",
                        "LAG",
                        "PENDING",
                        "MEMBERS",
                        "REDELIVERED",
                        "DEAD-LETTERED"
                    ],
                    vec!["billing", "40", "42", "2", "2", "1", "3", "1"],
                    vec!["audit", "0", "42", "42", "0", "0", "0", "0"],
                ]
            );
        }
    }
}

/// Headers as (key, value) pairs, in order.
type Pairs = Vec<(String, String)>;

/// A message in the dead-letter topic: offset, headers, payload.
type DeadLettered = (u64, Vec<(&'static str, &'static str)>, &'static str);

/// What a redrive published: (topic, headers, payload), and the frames it sent in order.
#[derive(Debug, Default)]
struct Redriven {
    published: Vec<(String, Pairs, String)>,
    /// "published N" and "acked OFFSET" in the order the frames came.
    order: Vec<String>,
    settled: Settled,
}

/// Plays the broker for one `dlq redrive`: no statistics, the durable subscription, then
/// `messages` (offset, headers, payload) delivered at once, each confirmed publish answered
/// (`refuse`: with StorageFailed for that target topic).
fn redrive_stand_in(
    stand_in: StandIn,
    messages: Vec<DeadLettered>,
    refuse: Option<&'static str>,
) -> std::thread::JoinHandle<(Asked, Redriven)> {
    std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        match peer.recv() {
            Frame::StatsRequest { request_id } => peer.send(&Frame::Stats {
                request_id,
                connections: 1,
                uptime_ms: 1,
                topics: Vec::new(),
                config: Default::default(),
            }),
            other => panic!("expected StatsRequest, got {other:?}"),
        }
        let asked = peer.ack_durable(10);
        for (offset, headers, payload) in &messages {
            peer.deliver(*offset, headers, payload.as_bytes());
        }
        let mut seen = Redriven::default();
        let mut topics: Vec<String> = Vec::new();
        while let Some(frame) = peer.next_answering_pings() {
            match frame {
                Frame::Advertise { request_id, topic } => {
                    topics.push(topic);
                    peer.send(&topic_ack(request_id, topics.len() as u32, 0));
                }
                Frame::PublishDurable {
                    request_id,
                    topic_id,
                    message,
                    enveloped,
                } => {
                    let topic = topics[topic_id as usize - 1].clone();
                    if refuse == Some(topic.as_str()) {
                        peer.send(&Frame::Error {
                            request_id,
                            code: ErrorCode::StorageFailed,
                            fatal: false,
                            topic_id,
                            message: "disk full".into(),
                            refused: 1,
                        });
                        continue;
                    }
                    let (headers, payload) = if enveloped {
                        let view = EnvelopeView::parse(&message).expect("a valid envelope");
                        let headers = view
                            .headers()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect();
                        (headers, view.payload.to_vec())
                    } else {
                        (Vec::new(), message.to_vec())
                    };
                    let payload = String::from_utf8(payload).expect("UTF-8");
                    seen.order.push(format!("published {payload}"));
                    seen.published.push((topic, headers, payload));
                    peer.send(&Frame::Published {
                        request_id,
                        offset: 100,
                    });
                }
                Frame::AckMessages { offsets, .. } => {
                    seen.order
                        .extend(offsets.iter().map(|offset| format!("acked {offset}")));
                    seen.settled.acked.extend(offsets);
                }
                Frame::Nack { offset, action, .. } => seen.settled.nacked.push((offset, action)),
                Frame::Unsubscribe { request_id, .. } => {
                    peer.send(&Frame::Ack { request_id });
                    seen.settled.unsubscribed = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (asked, seen)
    })
}

fn dead_lettered(source: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("trace", "t1"),
        ("Mycelium-Dead-Letter-Reason", "max-deliveries"),
        ("Mycelium-Dead-Letter-Topic", source),
        ("Mycelium-Dead-Letter-Offset", "17"),
        ("Mycelium-Dead-Letter-Group", "billing"),
        ("Mycelium-Delivery-Count", "5"),
        ("tenant", "eu"),
    ]
}

#[test]
fn redrive_republishes_each_message_to_its_source_without_the_dead_letter_headers_then_acks_it() {
    let stand_in = StandIn::bind();
    let mut cmd = at_stand_in(&stand_in, &["dlq", "redrive", "orders.dlq"]);
    let server = redrive_stand_in(
        stand_in,
        vec![
            (0, dead_lettered("orders"), "o1"),
            (1, dead_lettered("payments"), "p1"),
            (2, dead_lettered("orders"), "o2"),
        ],
        None,
    );
    let out = run_to_end(&mut cmd);
    let ((start, group, topic), seen) = server.join().expect("the stand-in");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        (start, group.as_deref(), topic.as_str()),
        (
            StartPosition::Earliest,
            Some("mycelium-redrive"),
            "orders.dlq"
        )
    );
    let kept = vec![
        ("trace".to_owned(), "t1".to_owned()),
        ("tenant".to_owned(), "eu".to_owned()),
    ];
    assert_eq!(
        seen.published,
        [
            ("orders".to_owned(), kept.clone(), "o1".to_owned()),
            ("payments".to_owned(), kept.clone(), "p1".to_owned()),
            ("orders".to_owned(), kept, "o2".to_owned()),
        ]
    );
    let mut acked = seen.settled.acked.clone();
    acked.sort_unstable();
    assert_eq!(acked, [0, 1, 2]);
    for (payload, offset) in [("o1", 0), ("p1", 1), ("o2", 2)] {
        let published = seen
            .order
            .iter()
            .position(|e| *e == format!("published {payload}"));
        let acked = seen
            .order
            .iter()
            .position(|e| *e == format!("acked {offset}"));
        assert!(
            published < acked,
            "stored before acknowledged: {:?}",
            seen.order
        );
    }
    assert!(seen.settled.unsubscribed);
    assert_eq!(
        out.stdout,
        "moved 2 message(s) from orders.dlq to orders\nmoved 1 message(s) from orders.dlq to payments\n"
    );
}

#[test]
fn redrive_to_and_max_move_that_many_to_that_topic() {
    let stand_in = StandIn::bind();
    let mut cmd = at_stand_in(
        &stand_in,
        &[
            "dlq",
            "redrive",
            "orders.dlq",
            "--to",
            "orders.retry",
            "--max",
            "2",
        ],
    );
    let server = redrive_stand_in(
        stand_in,
        vec![
            (4, dead_lettered("orders"), "a"),
            (5, Vec::new(), "b"),
            (6, dead_lettered("orders"), "c"),
        ],
        None,
    );
    let out = run_to_end(&mut cmd);
    let (_, seen) = server.join().expect("the stand-in");
    assert!(out.status.success(), "{}", out.stderr);
    let moved: Vec<_> = seen
        .published
        .iter()
        .map(|(topic, _, payload)| (topic.as_str(), payload.as_str()))
        .collect();
    assert_eq!(moved, [("orders.retry", "a"), ("orders.retry", "b")]);
    assert_eq!(
        seen.settled.acked,
        [4, 5],
        "the third stays for the next run"
    );
    assert_eq!(
        out.stdout,
        "moved 2 message(s) from orders.dlq to orders.retry\n"
    );
}

#[test]
fn redrive_stops_with_exit_1_at_a_message_it_cannot_move_and_leaves_it_there() {
    // No source header and no --to.
    let stand_in = StandIn::bind();
    let mut cmd = at_stand_in(&stand_in, &["dlq", "redrive", "orders.dlq"]);
    let server = redrive_stand_in(
        stand_in,
        vec![
            (0, dead_lettered("orders"), "a"),
            (1, vec![("trace", "t")], "b"),
        ],
        None,
    );
    let out = run_to_end(&mut cmd);
    let (_, seen) = server.join().expect("the stand-in");
    assert_failed_after_moving(
        &out,
        &[
            "offset 1 of orders.dlq",
            "Mycelium-Dead-Letter-Topic",
            "--to",
        ],
    );
    assert_eq!(seen.settled.acked, [0]);
    assert_eq!(out.stdout, "moved 1 message(s) from orders.dlq to orders\n");

    // A target that refuses it.
    let stand_in = StandIn::bind();
    let mut cmd = at_stand_in(&stand_in, &["dlq", "redrive", "orders.dlq"]);
    let server = redrive_stand_in(
        stand_in,
        vec![(0, dead_lettered("payments"), "a")],
        Some("payments"),
    );
    let out = run_to_end(&mut cmd);
    let (_, seen) = server.join().expect("the stand-in");
    assert_failed_after_moving(&out, &["offset 0 of orders.dlq to payments", "disk full"]);
    assert!(seen.settled.acked.is_empty(), "{seen:?}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

/// Asserts `out` failed (exit 1) with one `error:` line holding every one of `words`,
/// whatever it reported on stdout first.
fn assert_failed_after_moving(out: &Finished, words: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let error = out
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {}", out.stderr));
    for word in words {
        assert!(error.contains(word), "no {word:?} in {error}");
    }
}

/// The command line against a real broker end to end: `sub --from earliest` replays, `sub
/// --group` prints and acks (the broker's committed position moves), and `sub --group
/// --reject` on a topic with `max_deliveries = 2` sends a message to `<topic>.dlq` after two
/// deliveries, from where `dlq redrive` moves it back.
#[test]
fn the_durable_commands_against_a_real_broker() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"work\"\nrouting = \"fanout\"\n\
         durable = true\nfsync = \"never\"\nmax_deliveries = 2\n",
        data.path().display()
    ));
    for n in 0..5 {
        let out = run_to_end(broker.cmd().args(["pub", "work", &format!("item {n}")]));
        assert!(out.status.success(), "{}", out.stderr);
    }
    let replay = run_to_end(
        broker
            .cmd()
            .args(["sub", "--from", "earliest", "--count", "5", "work"]),
    );
    assert!(replay.status.success(), "{}", replay.stderr);
    assert_eq!(
        replay.stdout.lines().collect::<Vec<_>>(),
        ["item 0", "item 1", "item 2", "item 3", "item 4"]
    );
    let group = run_to_end(broker.cmd().args([
        "sub", "--group", "billing", "--from", "earliest", "--count", "3", "work",
    ]));
    assert!(group.status.success(), "{}", group.stderr);
    assert_eq!(group.stdout.lines().count(), 3);
    let committed = || {
        let out = run_to_end(broker.cmd().args(["groups", "--json", "work"]));
        assert!(out.status.success(), "{}", out.stderr);
        json_lines(&out.stdout)
            .iter()
            .find(|g| g["name"] == "billing")
            .and_then(|g| g["committed"].as_u64())
    };
    assert_eq!(
        committed(),
        Some(3),
        "the three printed were acked before exit"
    );

    // Offset 0 again for a new group that rejects: delivered twice, then dead-lettered.
    let picky = run_to_end(broker.cmd().args([
        "sub", "--group", "picky", "--from", "4", "--reject", "--count", "2", "work",
    ]));
    assert!(picky.status.success(), "{}", picky.stderr);
    assert_eq!(
        picky.stdout.lines().collect::<Vec<_>>(),
        ["item 4", "item 4"]
    );
    // The third delivery would pass max_deliveries: it goes to work.dlq once a member of the
    // group is there to take it.
    let mut member = broker
        .cmd()
        .args(["sub", "--group", "picky", "work"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("a member");
    super::common::wait_until("the message to be dead-lettered", || {
        let out = run_to_end(broker.cmd().args(["topics", "--json"]));
        json_lines(&out.stdout)
            .iter()
            .any(|t| t["name"] == "work.dlq" && t["retained_messages"] == 1)
    });
    let _ = member.kill();
    let _ = member.wait();
    let redrive = run_to_end(broker.cmd().args(["dlq", "redrive", "work.dlq"]));
    assert!(
        redrive.status.success(),
        "{}{}",
        redrive.stdout,
        redrive.stderr
    );
    let back = run_to_end(
        broker
            .cmd()
            .args(["sub", "--from", "5", "--count", "1", "work"]),
    );
    assert_eq!(back.stdout.trim(), "item 4", "moved home as offset 5");
}
