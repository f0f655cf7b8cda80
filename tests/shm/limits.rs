//! What shared memory refuses, and that it says why: unknown topics, oversized messages, a
//! broker with shared memory disabled, a queue with `drop_oldest`, and the attachment and
//! publisher limits.

use super::*;

#[test]
fn unknown_topics_and_oversized_messages_get_clear_errors() {
    let broker = TestBroker::start(&format!(
        "{}[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\n\n[[topics]]\nname = \"small\"\nrouting = \"fanout\"\nmax_message_size = 100\n",
        fanout("f")
    ));
    let client = shm_client(&broker);
    let unknown = client.publisher("nope").expect_err("unknown topic");
    assert_eq!(unknown.code(), Some(ErrorCode::UnknownTopic), "{unknown}");
    let mut small = client.publisher("small").expect("publisher");
    let too_large = small
        .publish(&[0u8; 101])
        .expect_err("101 bytes on a 100-byte topic");
    assert!(
        matches!(
            too_large,
            PublishError::MessageTooLarge {
                size: 101,
                max: 100,
                ..
            }
        ),
        "{too_large}"
    );
    small.publish(&[0u8; 100]).expect("100 bytes fit");
    // The session is still usable after the refusals.
    let mut sub = client.subscribe("f").expect("subscribe");
    let mut publisher = client.publisher("f").expect("publisher");
    publisher.publish(b"still here").expect("publish");
    assert_eq!(recv(&mut sub), b"still here");
}

#[test]
fn a_broker_with_shm_disabled_refuses_sessions_and_the_cli_says_why() {
    let broker = TestBroker::start(&format!("{}\n[shm]\nenabled = false\n", fanout("f")));
    let error = common::shm_connect(&broker.socket).expect_err("shm disabled");
    assert_eq!(error.code(), Some(ErrorCode::ShmRefused), "{error}");
    let out = broker
        .cmd()
        .args(["pub", "f", "x", "--transport", "shm"])
        .output()
        .expect("pub ran");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shm.enabled = false"), "{stderr}");
}

#[test]
fn a_session_holds_at_most_64_attachments() {
    let topics: String = (0..3).map(|i| fanout(&format!("t{i}"))).collect();
    let broker = TestBroker::start(&topics);
    let client = shm_client(&broker);
    let mut held = Vec::new();
    for i in 0..64 {
        held.push(
            client
                .subscribe(&format!("t{}", i % 3))
                .expect("within the limit"),
        );
    }
    let refused = client.publisher("t0").expect_err("the 65th");
    assert_eq!(refused.code(), Some(ErrorCode::ShmRefused), "{refused}");
    assert!(refused.to_string().contains("at most 64"), "{refused}");
    held.pop();
    client.publisher("t0").expect("a place was freed");
}

#[test]
fn publishers_per_topic_are_limited_by_config() {
    let broker = TestBroker::start(&format!(
        "{}\n[shm]\nmax_publishers_per_topic = 2\n",
        fanout("f")
    ));
    let client = shm_client(&broker);
    let first = client.publisher("f").expect("first");
    let _second = client.publisher("f").expect("second");
    let third = client.publisher("f").expect_err("third");
    assert_eq!(third.code(), Some(ErrorCode::ShmRefused), "{third}");
    assert!(
        third.to_string().contains("max_publishers_per_topic"),
        "{third}"
    );
    drop(first);
    // The detach frees the place; the broker handles it before the next request.
    client.publisher("f").expect("a place was freed");
}

#[test]
fn a_queue_topic_with_drop_oldest_is_refused_shared_memory_with_the_reason() {
    let broker = TestBroker::start(&format!(
        "{}backpressure = \"drop_oldest\"\n",
        queue("jobs")
    ));
    let client = shm_client(&broker);
    for error in [
        client
            .publisher("jobs")
            .map(|_| ())
            .expect_err("refused")
            .to_string(),
        client
            .subscribe("jobs")
            .map(|_| ())
            .expect_err("refused")
            .to_string(),
    ] {
        assert!(
            error.to_string().contains("drop_oldest"),
            "the reason names the policy: {error}"
        );
    }
}
