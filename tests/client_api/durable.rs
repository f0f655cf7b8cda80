//! Durable topics through the client, against a stand-in broker (a listener in the test that
//! speaks the frames by hand): the `SubscribeDurable` sent, deliveries read into
//! `DurableMessage`s (offset, delivery count), acknowledgements sent in batches, a replay
//! subscription's credit, confirmed publishes answered out of order, groups, and refusals.

use bytes::BytesMut;
use mycelium_client::{
    DurableOptions, Headers, NackAction, PublishError, StartPosition, SubscribeError,
};
use mycelium_transport::envelope::Envelope;
use mycelium_transport::{
    encode_enveloped, kind, ErrorCode, Frame, GroupStats, RoutingKind, DURABLE_SUBSCRIPTION_BIT,
};

use super::envelopes::{Peer, StandIn};
use super::*;

const SUBSCRIPTION: u32 = DURABLE_SUBSCRIPTION_BIT | 1;

/// Answers the client's next `SubscribeDurable` with a `TopicAck` granting `prefetch`, and
/// returns the request's fields.
fn ack_durable(peer: &mut Peer, prefetch: u32) -> (u32, StartPosition, Option<String>, String) {
    match peer.recv_answering_pings() {
        Frame::SubscribeDurable {
            request_id,
            prefetch: asked,
            start,
            group,
            topic,
        } => {
            peer.send(&Frame::TopicAck {
                request_id,
                topic_id: SUBSCRIPTION,
                routing: RoutingKind::Fanout,
                max_message_size: 1 << 16,
                prefetch,
                pattern: false,
                rules: mycelium_transport::MessageRules::default(),
            });
            (asked, start, group, topic)
        }
        other => panic!("expected SubscribeDurable, got {other:?}"),
    }
}

/// Deliveries of `offsets` to the durable subscription, each with its offset (and, for a
/// group, a delivery count of 1 or 2).
fn deliveries(offsets: std::ops::Range<u64>, group: bool) -> BytesMut {
    let mut out = BytesMut::new();
    for offset in offsets {
        let mut headers = Headers::new();
        if group {
            let count = if offset % 2 == 0 { "1" } else { "2" };
            headers
                .insert("Mycelium-Delivery-Count", count)
                .expect("a valid header");
        }
        let envelope = Envelope {
            headers: Some(&headers),
            offset: Some(offset),
            ..Envelope::default()
        };
        encode_enveloped(
            &mut out,
            kind::DELIVER_ENVELOPE,
            SUBSCRIPTION,
            &envelope,
            format!("m{offset}").as_bytes(),
        )
        .expect("a small frame");
    }
    out
}

/// Answers the client's next frame, a `Ping` (a flush).
fn answer_one_ping(peer: &mut Peer) {
    match peer.recv() {
        Frame::Ping { token } => peer.send(&Frame::Pong { token }),
        other => panic!("expected Ping, got {other:?}"),
    }
}

#[test]
fn a_group_member_reads_offsets_and_counts_and_acknowledges_in_one_frame_per_batch() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        let (prefetch, start, group, topic) = ack_durable(&mut peer, 1000);
        assert_eq!(prefetch, 1000);
        assert_eq!(start, StartPosition::Earliest);
        assert_eq!(group.as_deref(), Some("billing"));
        assert_eq!(topic, "orders");
        peer.send_bytes(&deliveries(100..110, true));
        // Every acknowledgement of the ten, in one frame: the client sends them when it has
        // nothing more to hand out.
        match peer.recv_answering_pings() {
            Frame::AckMessages {
                subscription_id,
                offsets,
            } => {
                assert_eq!(subscription_id, SUBSCRIPTION);
                assert_eq!(offsets, (100..110).collect::<Vec<u64>>());
            }
            other => panic!("expected AckMessages, got {other:?}"),
        }
        peer.send_bytes(&deliveries(110..111, true));
        match peer.recv_answering_pings() {
            Frame::Nack {
                subscription_id,
                offset,
                action,
            } => assert_eq!(
                (subscription_id, offset, action),
                (SUBSCRIPTION, 110, NackAction::DeadLetter)
            ),
            other => panic!("expected Nack, got {other:?}"),
        }
        answer_one_ping(&mut peer);
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let options = DurableOptions::group("billing")
            .start(StartPosition::Earliest)
            .prefetch(1000);
        let mut orders = client
            .subscribe_durable("orders", options)
            .await
            .expect("subscribe");
        assert_eq!(orders.subscription_id(), SUBSCRIPTION);
        assert_eq!((orders.group(), orders.prefetch()), (Some("billing"), 1000));
        for offset in 100..110u64 {
            let message = orders.recv().await.expect("a message");
            assert_eq!(message.offset(), offset);
            assert_eq!(
                message.delivery_count(),
                Some(if offset % 2 == 0 { 1 } else { 2 })
            );
            assert_eq!(&message[..], format!("m{offset}").as_bytes());
            assert_eq!(message.topic(), "orders");
            message.ack();
        }
        assert_eq!(
            orders.pending_acks(),
            10,
            "nothing sent while messages came"
        );
        // Finding nothing more to hand out sends the ten in one frame; the stand-in answers
        // with offset 110, which is given back.
        let eleventh = orders.recv().await.expect("message 110");
        assert_eq!(orders.pending_acks(), 0);
        assert_eq!(eleventh.offset(), 110);
        eleventh.nack(NackAction::DeadLetter);
        client.flush().await.expect("flush");
        drop(orders);
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn acknowledgements_leave_once_half_the_prefetch_is_pending_and_after_a_short_delay() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        ack_durable(&mut peer, 8);
        peer.send_bytes(&deliveries(0..8, true));
        // Half the prefetch (4) pending: sent from the acknowledging call, in one frame each.
        for expected in [0..4u64, 4..8] {
            match peer.recv_answering_pings() {
                Frame::AckMessages { offsets, .. } => {
                    assert_eq!(offsets, expected.collect::<Vec<u64>>())
                }
                other => panic!("expected AckMessages, got {other:?}"),
            }
        }
        peer.send_bytes(&deliveries(8..9, true));
        // One acknowledgement, and the application stops asking: sent by the timer.
        match peer.recv_answering_pings() {
            Frame::AckMessages { offsets, .. } => assert_eq!(offsets, vec![8]),
            other => panic!("expected AckMessages, got {other:?}"),
        }
        answer_one_ping(&mut peer);
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let mut subscription = client
            .subscribe_durable("orders", DurableOptions::group("g").prefetch(8))
            .await
            .expect("subscribe");
        // Take all eight before acknowledging, so that no recv finds the queue empty.
        let mut messages = Vec::new();
        for _ in 0..8 {
            messages.push(subscription.recv().await.expect("a message"));
        }
        for message in &messages {
            message.ack();
        }
        assert_eq!(subscription.pending_acks(), 0, "two full batches went out");
        let last = subscription.recv().await.expect("message 8");
        last.ack();
        assert_eq!(subscription.pending_acks(), 1);
        tokio::time::sleep(mycelium_client::durable::ACK_FLUSH_DELAY * 4).await;
        assert_eq!(subscription.pending_acks(), 0, "the timer sent it");
        client.flush().await.expect("flush");
        drop(subscription);
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn a_replay_subscription_returns_credit_by_half_prefetch_and_sends_no_acknowledgement() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        let (_, start, group, _) = ack_durable(&mut peer, 4);
        assert_eq!((start, group), (StartPosition::Offset(7), None));
        peer.send_bytes(&deliveries(7..11, false));
        for _ in 0..2 {
            match peer.recv_answering_pings() {
                Frame::Credit { topic_id, credit } => {
                    assert_eq!((topic_id, credit), (SUBSCRIPTION, 2))
                }
                other => panic!("expected Credit (and no AckMessages), got {other:?}"),
            }
        }
        answer_one_ping(&mut peer);
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let mut replay = client
            .subscribe_durable(
                "orders",
                DurableOptions::replay(StartPosition::Offset(7)).prefetch(4),
            )
            .await
            .expect("subscribe");
        assert_eq!(replay.group(), None);
        for offset in 7..11u64 {
            let message = replay.recv().await.expect("a message");
            assert_eq!(message.offset(), offset);
            assert_eq!(message.delivery_count(), None);
            message.ack();
        }
        assert_eq!(replay.pending_acks(), 0);
        client.flush().await.expect("flush");
        drop(replay);
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn confirmed_publishes_are_pipelined_and_each_gets_its_own_answer() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        match peer.recv_answering_pings() {
            Frame::Advertise { request_id, .. } => peer.send(&super::envelopes::ack(
                request_id,
                5,
                mycelium_transport::MessageRules::default(),
            )),
            other => panic!("expected Advertise, got {other:?}"),
        }
        // All three arrive before any is answered.
        let mut requests = Vec::new();
        for _ in 0..3 {
            match peer.recv_answering_pings() {
                Frame::PublishDurable {
                    request_id,
                    topic_id,
                    enveloped,
                    message,
                } => {
                    assert_eq!(topic_id, 5);
                    requests.push((request_id, enveloped, message));
                }
                other => panic!("expected PublishDurable, got {other:?}"),
            }
        }
        let plain: Vec<&[u8]> = requests.iter().map(|(_, _, m)| &m[..]).collect();
        assert_eq!(&plain[..2], &[&b"first"[..], b"second"]);
        assert!(!requests[0].1 && !requests[1].1);
        assert!(requests[2].1, "the one with headers is enveloped");
        // Answered out of order: the last stored, the first refused, the second stored.
        peer.send(&Frame::Published {
            request_id: requests[2].0,
            offset: 41,
        });
        peer.send(&Frame::Error {
            request_id: requests[0].0,
            code: ErrorCode::StorageFailed,
            fatal: false,
            topic_id: 5,
            message: "no space left on device".into(),
            refused: 0,
        });
        peer.send(&Frame::Published {
            request_id: requests[1].0,
            offset: 40,
        });
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        // The topic is resolved (Advertise) once, before the three start.
        client.publisher("orders").await.expect("advertise");
        let mut headers = Headers::new();
        headers.insert("k", "v").expect("a valid header");
        let (first, second, third) = tokio::join!(
            client.publish_durable("orders", b"first"),
            client.publish_durable("orders", b"second"),
            client.publish_durable_with("orders", &headers, b"third"),
        );
        assert!(matches!(
            first,
            Err(PublishError::Refused {
                code: ErrorCode::StorageFailed,
                ..
            })
        ));
        assert_eq!(second.expect("stored"), 40);
        assert_eq!(third.expect("stored"), 41);
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn groups_are_listed_and_refusals_reach_the_caller_typed() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let group = GroupStats {
        name: "billing".into(),
        committed: 40,
        next_offset: 42,
        pending: 2,
        members: 1,
        redelivered: 0,
        dead_lettered: 0,
    };
    let listed = group.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        match peer.recv_answering_pings() {
            Frame::GroupsRequest { request_id, topic } => {
                assert_eq!(topic, "orders");
                peer.send(&Frame::Groups {
                    request_id,
                    groups: vec![listed],
                });
            }
            other => panic!("expected GroupsRequest, got {other:?}"),
        }
        match peer.recv_answering_pings() {
            Frame::SubscribeDurable { request_id, .. } => peer.send(&Frame::Error {
                request_id,
                code: ErrorCode::Unsupported,
                fatal: false,
                topic_id: mycelium_transport::NO_TOPIC,
                message: "topic metrics is not durable".into(),
                refused: 0,
            }),
            other => panic!("expected SubscribeDurable, got {other:?}"),
        }
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let groups = client.groups("orders").await.expect("groups");
        assert_eq!(groups, vec![group]);
        assert_eq!(groups[0].lag(), 2);
        let refused = client
            .subscribe_durable("metrics", DurableOptions::default())
            .await;
        assert!(matches!(
            refused,
            Err(SubscribeError::Refused {
                code: ErrorCode::Unsupported,
                ..
            })
        ));
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn a_delivery_without_its_offset_ends_the_subscription() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        ack_durable(&mut peer, 10);
        let mut frames = deliveries(0..1, true);
        mycelium_transport::encode_message(&mut frames, kind::DELIVER, SUBSCRIPTION, b"plain");
        peer.send_bytes(&frames);
        peer.until_closed();
    });
    block_on(async {
        let client = Client::connect(&path).await.expect("connect");
        let mut subscription = client
            .subscribe_durable("orders", DurableOptions::group("g"))
            .await
            .expect("subscribe");
        assert_eq!(subscription.recv().await.expect("offset 0").offset(), 0);
        match subscription.recv().await {
            Err(RecvError::Ended(SubscriptionEnd::Failed(error))) => {
                assert!(error.to_string().contains("protocol"), "{error}")
            }
            other => panic!("expected the end, got {other:?}"),
        }
        drop(subscription);
        drop(client);
    });
    server.join().expect("the stand-in");
}

#[test]
fn the_blocking_client_publishes_durably_and_lists_groups() {
    let stand_in = StandIn::bind();
    let path = stand_in.path.clone();
    let server = std::thread::spawn(move || {
        let mut peer = stand_in.accept();
        match peer.recv_answering_pings() {
            Frame::Advertise { request_id, .. } => peer.send(&super::envelopes::ack(
                request_id,
                5,
                mycelium_transport::MessageRules::default(),
            )),
            other => panic!("expected Advertise, got {other:?}"),
        }
        match peer.recv_answering_pings() {
            Frame::PublishDurable {
                request_id,
                message,
                ..
            } => {
                assert_eq!(&message[..], b"x");
                peer.send(&Frame::Published {
                    request_id,
                    offset: 7,
                });
            }
            other => panic!("expected PublishDurable, got {other:?}"),
        }
        match peer.recv_answering_pings() {
            Frame::GroupsRequest { request_id, .. } => peer.send(&Frame::Groups {
                request_id,
                groups: Vec::new(),
            }),
            other => panic!("expected GroupsRequest, got {other:?}"),
        }
        peer.until_closed();
    });
    let client = blocking::Client::connect(&path).expect("connect");
    assert_eq!(client.publish_durable("orders", b"x").expect("stored"), 7);
    assert_eq!(client.groups("orders").expect("groups"), Vec::new());
    drop(client);
    server.join().expect("the stand-in");
}
