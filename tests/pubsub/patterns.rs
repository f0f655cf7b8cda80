//! Wildcard subscriptions over the socket, with raw frames: which topics `*` and `>` reach
//! (declared, auto-created, added by a reload; never queue topics or topics the subscriber may
//! not read), the concrete topic on every delivery, unsubscribing, and refused patterns.

use std::collections::BTreeSet;

use mycelium_transport::envelope::EnvelopeView;
use mycelium_transport::frame::PATTERN_ID_BIT;
use mycelium_transport::{ErrorCode, Frame, NO_TOPIC};

use super::common::raw::RawConnection;
use super::common::TestBroker;

/// A message as a pattern subscriber got it: (subscription id, concrete topic, payload).
type Got = (u32, String, Vec<u8>);

/// Everything delivered to `raw` up to the `Pong` of a `Ping` sent now.
fn deliveries(raw: &mut RawConnection) -> Vec<Got> {
    let token = 0x5eed;
    raw.send_frame(&Frame::Ping { token });
    let mut got = Vec::new();
    loop {
        match raw.recv() {
            Frame::Pong { token: t } if t == token => return got,
            Frame::DeliverEnvelope { topic_id, message } => {
                let view = EnvelopeView::parse(&message).expect("a valid envelope");
                let topic = view.topic.expect("a pattern delivery names its topic");
                got.push((topic_id, topic.to_owned(), view.payload.to_vec()));
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Publishes its own name once on each topic, then waits until the broker routed them all.
fn publish_names(publisher: &mut RawConnection, topics: &[&str]) {
    for topic in topics {
        let (id, _) = publisher.advertise(topic);
        publisher.send_frame(&Frame::Publish {
            topic_id: id,
            payload: topic.as_bytes().to_vec().into(),
        });
    }
    publisher.ping();
}

fn topics_of(got: &[Got]) -> BTreeSet<String> {
    got.iter()
        .map(|(_, topic, payload)| {
            assert_eq!(
                topic.as_bytes(),
                &payload[..],
                "delivered under the wrong topic"
            );
            topic.clone()
        })
        .collect()
}

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

#[test]
fn star_and_gt_reach_exactly_the_matching_fanout_topics_a_subscriber_may_read() {
    let broker = TestBroker::start_with("", TOPICS);
    let mut subscribers: Vec<(&str, RawConnection, u32)> = ["orders.*", "orders.>", "*.eu", ">"]
        .into_iter()
        .map(|pattern| {
            let mut raw = RawConnection::open(&broker.socket, pattern);
            let id = raw.subscribe(pattern);
            assert_ne!(
                id & PATTERN_ID_BIT,
                0,
                "{pattern}: a pattern's id has bit 31 set"
            );
            (pattern, raw, id)
        })
        .collect();
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    // orders.us and the deeper names do not exist yet: auto-created by the publisher.
    publish_names(
        &mut publisher,
        &[
            "orders.eu",
            "orders.us",
            "orders.us.east",
            "billing.eu",
            "orders.hidden",
            "orders",
        ],
    );
    // A queue topic is never reached by a pattern: published, it waits for its consumer.
    let request_id = publisher.request_id();
    publisher.send_frame(&Frame::Advertise {
        request_id,
        topic: "orders.jobs".into(),
    });
    let jobs = match publisher.recv() {
        Frame::TopicAck { topic_id, .. } => topic_id,
        other => panic!("expected the TopicAck of orders.jobs, got {other:?}"),
    };
    publisher.send_frame(&Frame::Publish {
        topic_id: jobs,
        payload: b"orders.jobs".to_vec().into(),
    });
    publisher.ping();

    let expected: [(&str, &[&str]); 4] = [
        ("orders.*", &["orders.eu", "orders.us"]),
        ("orders.>", &["orders.eu", "orders.us", "orders.us.east"]),
        ("*.eu", &["billing.eu", "orders.eu"]),
        (
            ">",
            &[
                "billing.eu",
                "orders",
                "orders.eu",
                "orders.us",
                "orders.us.east",
            ],
        ),
    ];
    for ((pattern, raw, id), (want_pattern, want)) in subscribers.iter_mut().zip(expected) {
        assert_eq!(*pattern, want_pattern);
        let got = deliveries(raw);
        assert!(
            got.iter().all(|(key, ..)| key == id),
            "{pattern}: wrong subscription id"
        );
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(topics_of(&got), want, "{pattern}");
        assert_eq!(got.len(), want.len(), "{pattern}: each message once");
    }
}

#[test]
fn a_topic_added_by_a_reload_reaches_a_matching_pattern_subscriber() {
    let declared = "[[topics]]\nname = \"orders.eu\"\nrouting = \"fanout\"\n";
    let broker = TestBroker::start_with("", declared);
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let id = subscriber.subscribe("orders.*");
    let added = format!("{declared}\n[[topics]]\nname = \"orders.new\"\nrouting = \"fanout\"\n");
    let text = std::fs::read_to_string(&broker.config).expect("config");
    std::fs::write(&broker.config, text.replace(declared, &added)).expect("rewriting config");
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
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    publish_names(&mut publisher, &["orders.new", "orders.eu"]);
    let got = deliveries(&mut subscriber);
    assert_eq!(
        got,
        [
            (id, "orders.new".to_owned(), b"orders.new".to_vec()),
            (id, "orders.eu".to_owned(), b"orders.eu".to_vec()),
        ]
    );
}

#[test]
fn unsubscribing_a_pattern_stops_it_and_bad_patterns_are_refused_by_name() {
    let broker = TestBroker::start_with("", TOPICS);
    let mut subscriber = RawConnection::open(&broker.socket, "subscriber");
    let id = subscriber.subscribe("orders.*");
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    publish_names(&mut publisher, &["orders.eu"]);
    assert_eq!(deliveries(&mut subscriber).len(), 1);

    // The same pattern twice on one connection is refused; another connection may.
    let again = subscriber.request_id();
    subscriber.send_frame(&Frame::Subscribe {
        request_id: again,
        prefetch: 0,
        no_echo: false,
        topic: "orders.*".into(),
    });
    subscriber.expect_request_refused(ErrorCode::AlreadySubscribed, again, NO_TOPIC);

    for bad in ["orders.a*", "orders.>.x", "orders..*", ">.orders"] {
        let request = subscriber.request_id();
        subscriber.send_frame(&Frame::Subscribe {
            request_id: request,
            prefetch: 0,
            no_echo: false,
            topic: bad.into(),
        });
        subscriber.expect_request_refused(ErrorCode::InvalidTopicName, request, NO_TOPIC);
    }

    let request = subscriber.request_id();
    subscriber.send_frame(&Frame::Unsubscribe {
        request_id: request,
        topic_id: id,
    });
    match subscriber.recv() {
        Frame::Ack { request_id } => assert_eq!(request_id, request),
        other => panic!("expected the Ack of the unsubscribe, got {other:?}"),
    }
    publish_names(&mut publisher, &["orders.eu", "orders.us"]);
    assert!(deliveries(&mut subscriber).is_empty());
    // The pattern left every topic: nothing keeps them subscribed.
    let (_, stats) = publisher.stats();
    for topic in stats.iter().filter(|t| t.name.starts_with("orders.")) {
        assert_eq!(topic.subscribers, 0, "{}", topic.name);
    }
}
