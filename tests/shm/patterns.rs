//! Wildcard subscriptions over shared memory: one attachment reads the rings of every matching
//! fanout topic (now and created later, by use or by a reload), each message handed out with
//! its concrete topic; never a queue topic or one the subscriber may not read; a topic removed
//! or reclaimed takes its rings away and the subscription goes on; no echo; the CLI.

use std::collections::BTreeSet;

use mycelium_client::{ClientOptions, SubscribeOptions, Transport};

use super::*;

const TOPICS: &str = "
[[topics]]
name = \"orders.eu\"
routing = \"fanout\"

[[topics]]
name = \"orders.jobs\"
routing = \"queue\"

[[topics]]
name = \"orders.hidden\"
routing = \"fanout\"
subscribe = []

[topic_defaults]
auto_create = true
";

/// Publishes `payload` on `topic` from a raw socket connection, and waits until the broker
/// routed it.
fn socket_publish(publisher: &mut RawConnection, topic: &str, payload: &str) {
    let (id, _) = publisher.advertise(topic);
    publisher.send_frame(&Frame::Publish {
        topic_id: id,
        payload: payload.as_bytes().to_vec().into(),
    });
    publisher.ping();
}

/// (topic, payload) of every message `sub` receives until nothing more comes for 300 ms.
fn drain(sub: &mut blocking::Subscription) -> BTreeSet<(String, String)> {
    let mut got = BTreeSet::new();
    loop {
        match sub.recv_timeout(Duration::from_millis(300)) {
            Ok(message) => {
                let payload = String::from_utf8(message.payload().to_vec()).expect("UTF-8");
                assert!(
                    got.insert((message.topic().to_owned(), payload)),
                    "a message came twice"
                );
            }
            Err(RecvTimeoutError::Timeout) => return got,
            Err(error) => panic!("receive failed: {error}"),
        }
    }
}

/// Receives until `want` (topic, payload) pairs came, failing after [`DEADLINE`].
fn expect(sub: &mut blocking::Subscription, want: &[(&str, &str)]) {
    let want: BTreeSet<(String, String)> = want
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    let mut got = BTreeSet::new();
    let start = Instant::now();
    while got.len() < want.len() && start.elapsed() < DEADLINE {
        if let Ok(message) = sub.recv_timeout(Duration::from_millis(100)) {
            let payload = String::from_utf8(message.payload().to_vec()).expect("UTF-8");
            got.insert((message.topic().to_owned(), payload));
        }
    }
    assert_eq!(got, want);
}

fn reload(broker: &TestBroker, rest: &str) {
    broker.rewrite_config(rest);
    let mut admin = RawConnection::open(&broker.socket, "admin");
    admin.send_frame(&Frame::ReloadRequest { request_id: 9 });
    match admin
        .recv_until(|f| matches!(f, Frame::ReloadResult { .. }))
        .pop()
    {
        Some(Frame::ReloadResult { outcome, .. }) => {
            assert_eq!(outcome, mycelium_transport::ReloadOutcome::Applied)
        }
        other => panic!("expected ReloadResult, got {other:?}"),
    }
}

#[test]
fn a_shm_pattern_reads_shm_and_socket_publishes_of_matching_topics_with_their_topic() {
    let broker = TestBroker::start(TOPICS);
    let client = shm_client(&broker);
    let mut sub = client
        .subscribe("orders.*")
        .expect("subscribe to a pattern");
    assert_eq!(sub.topic(), "orders.*");
    let mut eu = shm_client(&broker)
        .publisher("orders.eu")
        .expect("publisher");
    eu.publish(b"shm-eu").expect("publish");
    // orders.us does not exist yet: a socket publisher creates it, then a shm one joins.
    let mut socket = RawConnection::open(&broker.socket, "socket-publisher");
    socket_publish(&mut socket, "orders.us", "socket-us");
    let mut us = shm_client(&broker)
        .publisher("orders.us")
        .expect("publisher");
    us.publish(b"shm-us").expect("publish");
    socket_publish(&mut socket, "orders.eu", "socket-eu");
    // Not for this pattern: another prefix, a deeper name, a queue, a hidden topic.
    for topic in ["billing.eu", "orders.us.east", "orders.hidden"] {
        socket_publish(&mut socket, topic, topic);
    }
    let mut jobs = shm_client(&broker)
        .publisher("orders.jobs")
        .expect("publisher");
    // No consumer takes it (a pattern is none): it may wait or be refused room, never reach us.
    let _ = jobs.try_publish(b"orders.jobs");
    let mut hidden = shm_client(&broker)
        .publisher("orders.hidden")
        .expect("publisher");
    hidden.publish(b"orders.hidden").expect("publish");
    let want = [
        ("orders.eu", "shm-eu"),
        ("orders.eu", "socket-eu"),
        ("orders.us", "socket-us"),
        ("orders.us", "shm-us"),
    ];
    expect(&mut sub, &want);
    assert!(
        drain(&mut sub).is_empty(),
        "nothing else reaches the pattern"
    );
    // One shared-memory subscriber on each matching topic, none on the others.
    assert_eq!(topic_counter(&broker, "orders.eu", "shm_subscribers"), 1);
    assert_eq!(topic_counter(&broker, "orders.us", "shm_subscribers"), 1);
    assert_eq!(topic_counter(&broker, "orders.jobs", "shm_subscribers"), 0);
    assert_eq!(
        topic_counter(&broker, "orders.hidden", "shm_subscribers"),
        0
    );
    // Dropped, the pattern leaves every topic.
    drop(sub);
    wait_until("the pattern to leave its topics", || {
        topic_counter(&broker, "orders.eu", "shm_subscribers") == 0
            && topic_counter(&broker, "orders.us", "shm_subscribers") == 0
    });
}

#[test]
fn a_topic_removed_by_a_reload_leaves_the_pattern_and_one_added_by_a_reload_joins_it() {
    let both = format!("{}{}", fanout("orders.eu"), fanout("orders.old"));
    let broker = TestBroker::start(&both);
    let client = shm_client(&broker);
    let mut sub = client.subscribe("orders.*").expect("subscribe");
    let mut old = shm_client(&broker)
        .publisher("orders.old")
        .expect("publisher");
    let mut eu = shm_client(&broker)
        .publisher("orders.eu")
        .expect("publisher");
    old.publish(b"1").expect("publish");
    eu.publish(b"1").expect("publish");
    expect(&mut sub, &[("orders.old", "1"), ("orders.eu", "1")]);

    reload(&broker, &fanout("orders.eu"));
    eu.publish(b"2").expect("publish");
    expect(&mut sub, &[("orders.eu", "2")]);

    reload(
        &broker,
        &format!("{}{}", fanout("orders.eu"), fanout("orders.new")),
    );
    let mut new = shm_client(&broker)
        .publisher("orders.new")
        .expect("publisher");
    new.publish(b"3").expect("publish");
    let mut socket = RawConnection::open(&broker.socket, "socket-publisher");
    socket_publish(&mut socket, "orders.new", "4");
    eu.publish(b"5").expect("publish");
    expect(
        &mut sub,
        &[("orders.new", "3"), ("orders.new", "4"), ("orders.eu", "5")],
    );
    assert!(drain(&mut sub).is_empty());
}

#[test]
fn a_reclaimed_topic_leaves_the_pattern_which_reads_it_again_when_it_comes_back() {
    let broker = TestBroker::start("[topic_defaults]\nauto_create = true\nidle_timeout_ms = 100\n");
    let client = shm_client(&broker);
    let mut sub = client.subscribe("dyn.*").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("dyn.a").expect("publisher");
    publisher.publish(b"first").expect("publish");
    expect(&mut sub, &[("dyn.a", "first")]);
    drop(publisher);
    // The pattern does not keep the topic in use: it is reclaimed.
    wait_until("dyn.a to be reclaimed", || {
        stats_json(&broker)["topics"]
            .as_array()
            .is_some_and(|topics| topics.iter().all(|t| t["name"] != "dyn.a"))
    });
    let mut again = shm_client(&broker).publisher("dyn.a").expect("publisher");
    again.publish(b"second").expect("publish");
    expect(&mut sub, &[("dyn.a", "second")]);
}

#[test]
fn a_no_echo_pattern_leaves_out_its_own_clients_messages() {
    let broker = TestBroker::start("[topic_defaults]\nauto_create = true\n");
    let alice = shm_client(&broker);
    let bob = shm_client(&broker);
    let mut alice_sub = alice
        .subscribe_with("chat.>", SubscribeOptions::new().no_echo(true))
        .expect("subscribe");
    let mut alice_pub = alice.publisher("chat.room").expect("publisher");
    let mut bob_pub = bob.publisher("chat.room").expect("publisher");
    alice_pub.publish(b"from alice").expect("publish");
    bob_pub.publish(b"from bob").expect("publish");
    expect(&mut alice_sub, &[("chat.room", "from bob")]);
    assert!(drain(&mut alice_sub).is_empty());
}

#[test]
fn auto_and_async_clients_subscribe_to_patterns_over_shared_memory() {
    let broker = TestBroker::start("[topic_defaults]\nauto_create = true\n");
    let auto = blocking::Client::connect_with(
        &broker.socket,
        ClientOptions::with_transport(Transport::Auto),
    )
    .expect("connect");
    let mut sub = auto.subscribe("auto.*").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("auto.x").expect("publisher");
    publisher.publish(b"one").expect("publish");
    expect(&mut sub, &[("auto.x", "one")]);
    assert_eq!(topic_counter(&broker, "auto.x", "shm_subscribers"), 1);

    let socket = broker.socket.clone();
    let got = common::block_on(async move {
        let client = mycelium_client::Client::connect_with(
            &socket,
            ClientOptions::with_transport(Transport::SharedMemory),
        )
        .await
        .expect("connect");
        let mut sub = client.subscribe("auto.>").await.expect("subscribe");
        publisher.publish(b"two").expect("publish");
        let message = sub.recv().await.expect("a message");
        (message.topic().to_owned(), message.payload().to_vec())
    });
    assert_eq!(got, ("auto.x".to_owned(), b"two".to_vec()));
}

#[test]
fn a_bad_pattern_is_refused_by_name_and_a_pattern_cannot_be_published_to() {
    let broker = TestBroker::start("[topic_defaults]\nauto_create = true\n");
    let mut session = RawConnection::open_shm(&broker.socket, "raw");
    for (request_id, (role, name)) in [
        (ShmRole::Subscribe, "orders.a*"),
        (ShmRole::Subscribe, "orders.>.x"),
        (ShmRole::Publish, "orders.*"),
    ]
    .into_iter()
    .enumerate()
    {
        let request_id = request_id as u32 + 1;
        session.send_frame(&Frame::ShmAttach {
            request_id,
            role,
            no_echo: false,
            topic: name.into(),
        });
        match session.recv() {
            Frame::Error {
                request_id: answered,
                code,
                ..
            } => {
                assert_eq!(answered, request_id);
                assert_eq!(code, ErrorCode::InvalidTopicName, "{name}");
            }
            other => panic!("expected a refusal of {name}, got {other:?}"),
        }
    }
    // A granted pattern: flagged, no ring in the grant, its rings follow naming their topic.
    let mut publisher = shm_client(&broker)
        .publisher("orders.eu")
        .expect("publisher");
    session.send_frame(&Frame::ShmAttach {
        request_id: 10,
        role: ShmRole::Subscribe,
        no_echo: false,
        topic: "orders.*".into(),
    });
    let (grant, mut fds) = session.recv_with_fds();
    let attachment = match grant {
        Frame::ShmGrant {
            request_id: 10,
            attachment,
            topic_id,
            rings,
            pattern: true,
            ..
        } => {
            assert_eq!(topic_id, mycelium_transport::NO_TOPIC);
            assert!(rings.is_empty());
            attachment
        }
        other => panic!("expected a pattern grant, got {other:?}"),
    };
    // The relay ring of orders.eu, then its publisher's ring.
    for _ in 0..2 {
        let (frame, more) = session.recv_with_fds();
        fds.extend(more);
        match frame {
            Frame::ShmTopicRingAdded {
                attachment: a,
                topic,
                ..
            } => {
                assert_eq!(a, attachment);
                assert_eq!(topic, "orders.eu");
            }
            other => panic!("expected ShmTopicRingAdded, got {other:?}"),
        }
    }
    assert_eq!(fds.len(), 2, "one fd per ring, none with the grant");
    publisher.publish(b"x").expect("publish");
}

#[test]
fn mycelium_sub_over_shm_of_a_pattern_prints_payloads_and_json_with_the_concrete_topic() {
    let broker = TestBroker::start("[topic_defaults]\nauto_create = true\n");
    let plain = spawn_sub(&broker, "orders.*", &["--transport", "shm"]);
    let json = spawn_sub(&broker, "orders.*", &["--transport", "shm", "--json"]);
    for (topic, message) in [
        ("orders.eu", "hello"),
        ("billing.eu", "no"),
        ("orders.us", "world"),
    ] {
        let out = broker
            .cmd()
            .args(["pub", "--transport", "shm", topic, message])
            .output()
            .expect("mycelium pub");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(plain.take_lines(2), ["hello", "world"]);
    let lines = json.take_lines(2);
    let topics: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
            (
                value["topic"].as_str().expect("topic").to_owned(),
                value["data"].as_str().expect("data").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        topics,
        [
            ("orders.eu".to_owned(), "hello".to_owned()),
            ("orders.us".to_owned(), "world".to_owned())
        ]
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        plain.lines_so_far().is_empty(),
        "billing.eu reached the pattern"
    );
}
