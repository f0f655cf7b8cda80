//! Dynamic topics: a topic that `auto_create` made is listed as dynamic by `mycelium stats`,
//! removed once it has had no subscriber and no publisher for `idle_timeout_ms`, and made
//! again (with a new id) by its next use; a subscriber (socket or shared memory) or a
//! connected publisher keeps it, and a declared topic is never removed.

mod common;

use std::time::Duration;

use common::pubsub_support::{run_to_end, stats_json};
use common::raw::RawConnection;
use common::{fanout, shm_connect, spawn_sub, wait_until, TestBroker};

/// Idle timeout of the brokers here: short, so a test waits little for a reclaim.
const IDLE_MS: u64 = 300;

/// Long enough for a topic kept idle to have been reclaimed several times over.
const SEVERAL_TIMEOUTS: Duration = Duration::from_millis(4 * IDLE_MS);

fn dynamic_broker() -> TestBroker {
    TestBroker::start(&format!(
        "{}\n[topic_defaults]\nauto_create = true\nidle_timeout_ms = {IDLE_MS}\n",
        fanout("declared")
    ))
}

/// `mycelium stats --json`'s entry for `topic`, if the broker lists it.
fn entry(broker: &TestBroker, topic: &str) -> Option<serde_json::Value> {
    stats_json(broker)["topics"]
        .as_array()
        .expect("a topics array")
        .iter()
        .find(|t| t["name"] == topic)
        .cloned()
}

fn is_listed(broker: &TestBroker, topic: &str) -> bool {
    entry(broker, topic).is_some()
}

fn publish(broker: &TestBroker, topic: &str, message: &str) {
    let out = run_to_end(broker.cmd().args(["pub", topic, message]));
    assert!(out.status.success(), "mycelium pub failed: {}", out.stderr);
}

#[test]
fn an_auto_created_topic_is_listed_as_dynamic_removed_when_idle_and_made_again_on_use() {
    let broker = dynamic_broker();
    let sub = spawn_sub(&broker, "session.a", &[]);
    publish(&broker, "session.a", "hello");
    assert_eq!(sub.take_lines(1), ["hello"]);
    let listed = entry(&broker, "session.a").expect("session.a is listed");
    assert_eq!(listed["dynamic"], true, "{listed}");
    let declared = entry(&broker, "declared").expect("the declared topic is listed");
    assert_eq!(declared["dynamic"], false, "{declared}");
    let table = run_to_end(broker.cmd().arg("stats"));
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("session.a"))
        .unwrap_or_else(|| panic!("no row in {}", table.stdout));
    assert!(row.ends_with("dynamic"), "{row}");

    drop(sub);
    wait_until("the idle topic to be removed", || {
        !is_listed(&broker, "session.a")
    });
    assert!(
        is_listed(&broker, "declared"),
        "a declared topic is never removed"
    );

    // The next use makes it again, under a new id.
    let mut raw = RawConnection::open(&broker.socket, "again");
    let first_id = raw.subscribe("session.b");
    drop(raw);
    wait_until("session.b to be removed", || {
        !is_listed(&broker, "session.b")
    });
    let mut raw = RawConnection::open(&broker.socket, "again");
    let second_id = raw.subscribe("session.b");
    assert_ne!(first_id, second_id, "ids are never reused");
    let (_, topics) = raw.stats();
    let again = topics
        .iter()
        .find(|t| t.name == "session.b")
        .expect("session.b made again");
    assert!(again.is_dynamic());
    let sub = spawn_sub(&broker, "session.a", &[]);
    publish(&broker, "session.a", "back");
    assert_eq!(sub.take_lines(1), ["back"]);
}

#[test]
fn a_connected_socket_subscriber_or_publisher_keeps_its_topic() {
    let broker = dynamic_broker();
    let sub = spawn_sub(&broker, "kept.by.sub", &[]);
    let mut publisher = RawConnection::open(&broker.socket, "publisher");
    let (topic_id, _) = publisher.advertise("kept.by.pub");
    std::thread::sleep(SEVERAL_TIMEOUTS);
    assert!(is_listed(&broker, "kept.by.sub"));
    assert!(is_listed(&broker, "kept.by.pub"));
    publish(&broker, "kept.by.sub", "still here");
    assert_eq!(sub.take_lines(1), ["still here"]);
    // The advertised id still routes: the topic was never replaced.
    let mut reader = RawConnection::open(&broker.socket, "reader");
    assert_eq!(reader.subscribe("kept.by.pub"), topic_id);

    drop(sub);
    drop(reader);
    drop(publisher);
    wait_until("both topics to be removed once their users left", || {
        !is_listed(&broker, "kept.by.sub") && !is_listed(&broker, "kept.by.pub")
    });
}

#[test]
fn a_shared_memory_subscriber_keeps_its_topic() {
    let broker = dynamic_broker();
    let client = shm_connect(&broker.socket).expect("shm session");
    let mut subscription = client.subscribe("kept.by.shm").expect("shm subscribe");
    std::thread::sleep(SEVERAL_TIMEOUTS);
    let listed = entry(&broker, "kept.by.shm").expect("kept while subscribed");
    assert_eq!(listed["shm_subscribers"], 1, "{listed}");
    publish(&broker, "kept.by.shm", "over the relay ring");
    let message = subscription
        .recv_timeout(common::DEADLINE)
        .expect("the message reaches the shm subscriber");
    assert_eq!(&message.payload()[..], b"over the relay ring");

    drop(subscription);
    drop(client);
    wait_until(
        "the topic to be removed once the shm subscriber left",
        || !is_listed(&broker, "kept.by.shm"),
    );
}
