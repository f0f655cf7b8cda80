//! Reloads under shared-memory clients: a removed topic ends its shm subscriber and releases a
//! publisher held back by a stopped one; a topic turned lossy detaches a stopped subscriber or
//! gives the next one a lossy relay ring.

use super::*;

#[test]
fn a_removed_topic_ends_its_shared_memory_subscriber() {
    let broker = TestBroker::start(&format!("{}{}", fanout("shm.gone"), fanout("shm.kept")));
    let mut gone = spawn_sub(&broker, "shm.gone", &["--transport", "shm"]);
    let mut kept = spawn_sub(&broker, "shm.kept", &["--transport", "shm", "--count", "1"]);
    let before = generation(&broker);
    broker.rewrite_config(&fanout("shm.kept"));
    wait_for_generation_after(&broker, before);
    assert!(
        !gone.wait().success(),
        "the shm subscriber must end with an error"
    );
    let out = run_to_end(broker.cmd().args(["pub", "shm.kept", "on"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(kept.take_lines(1), ["on"]);
    assert!(kept.wait().success());
}

/// A `mycelium sub --transport shm` of `topic`, stopped (SIGSTOP), and a `mycelium pub
/// --transport shm` of 50 000 lines: with `ring_bytes = 4096` (about 60 of these lines) the
/// publisher waits on the stopped subscriber almost at once.
fn held_shm_publisher(
    broker: &TestBroker,
    topic: &str,
) -> (
    common::SubProcess,
    nix::unistd::Pid,
    common::pubsub_support::PubProcess,
) {
    use nix::sys::signal::{kill, Signal};
    let frozen = spawn_sub(broker, topic, &["--transport", "shm"]);
    let frozen_pid = nix::unistd::Pid::from_raw(frozen.child.id() as i32);
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let publisher = common::pubsub_support::spawn_pub_with(
        broker,
        topic,
        &["--transport", "shm"],
        (0..50_000).map(|i| format!("line-{i}")),
    );
    (frozen, frozen_pid, publisher)
}

#[test]
fn a_shared_memory_publisher_held_back_by_a_stopped_subscriber_is_released_when_its_topic_is_removed(
) {
    use nix::sys::signal::{kill, Signal};
    let topics = format!("{}{}", fanout("held"), fanout("other"));
    let broker = TestBroker::start(&format!("[shm]\nring_bytes = 4096\n\n{topics}"));
    let (_frozen, frozen_pid, publisher) = held_shm_publisher(&broker, "held");
    let before = generation(&broker);
    std::fs::write(
        &broker.config,
        broker.config_text(&format!("[shm]\nring_bytes = 4096\n\n{}", fanout("other"))),
    )
    .expect("write");
    wait_for_generation_after(&broker, before);
    // Every slot of its ring was freed with the topic: the publisher no longer waits, and
    // learns from the broker's ShmDetached that its messages go nowhere (docs/configuration.md,
    // Hot reload): it stops with the reason.
    let (status, stderr) = publisher.finish();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("TopicRemoved"), "{stderr}");
    let _ = kill(frozen_pid, Signal::SIGCONT);
}

#[test]
fn a_topic_turned_to_drop_newest_by_a_reload_detaches_a_stopped_shm_subscriber_that_holds_a_waiting_publisher(
) {
    use nix::sys::signal::{kill, Signal};
    // Created under block with no deadline: the publisher's ring waits, and keeps waiting
    // after the reload (a ring keeps its mode); the drop_newest watchdog must still free it.
    let block = "[shm]\nring_bytes = 4096\n\n[[topics]]\nname = \"held\"\nrouting = \"fanout\"\npublish_deadline_ms = 0\n";
    let broker = TestBroker::start(block);
    let (mut frozen, frozen_pid, publisher) = held_shm_publisher(&broker, "held");
    let before = generation(&broker);
    std::fs::write(
        &broker.config,
        broker.config_text(&block.replace(
            "publish_deadline_ms = 0",
            "publish_deadline_ms = 300\nbackpressure = \"drop_newest\"",
        )),
    )
    .expect("write");
    wait_for_generation_after(&broker, before);
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(!frozen.wait().success(), "detached, with the reason");
}

#[test]
fn a_topic_turned_to_drop_oldest_by_a_reload_gives_its_next_shm_subscriber_a_lossy_relay_ring() {
    const N: u64 = 2_000;
    let config = |backpressure: &str| {
        format!(
            "[shm]\nring_bytes = 4096\n\n[[topics]]\nname = \"relayed\"\nrouting = \"fanout\"\nmax_message_size = 1000\nbackpressure = \"{backpressure}\"\n"
        )
    };
    let broker = TestBroker::start(&config("block"));
    let client = common::shm_connect(&broker.socket).expect("shm session");
    // A subscriber under block, gone at once: its relay ring was lossless.
    drop(client.subscribe("relayed").expect("subscribe"));
    let before = generation(&broker);
    std::fs::write(&broker.config, broker.config_text(&config("drop_oldest"))).expect("write");
    wait_for_generation_after(&broker, before);
    // The session handles its frames in order: the detach above is done before this attach.
    let mut sub = client.subscribe("relayed").expect("subscribe");
    let message = |seq: u64| format!("{seq}:{}", "x".repeat(100));
    // Message 0 read first: a reader lapped before its first frame cannot count its loss
    // exactly (docs/shm-layout.md, the unit of `Lagged`).
    let out = run_to_end(broker.cmd().args(["pub", "relayed", &message(0)]));
    assert!(out.status.success(), "{}", out.stderr);
    let first = sub.recv_timeout(common::DEADLINE).expect("recv");
    assert_eq!(&first[..], message(0).as_bytes());
    // Socket subscribers get a batch only once the relay ring has it: when this one has
    // every message, so has the ring, which the shm subscriber has not read meanwhile.
    let socket_sub = spawn_sub(&broker, "relayed", &["--count", &(N - 1).to_string()]);
    let (status, stderr) = spawn_pub(&broker, "relayed", (1..N).map(message)).finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(socket_sub.take_lines(N as usize - 1).len(), N as usize - 1);
    // A lossy ring (drop_oldest, as the topic is now): lapped many times over, the
    // subscriber is told how many it lost, then reads the newest messages in order. A ring
    // kept from before the reload would be lossless: it takes what fits, the topic drops
    // the rest for it, and the subscriber is never told.
    let (mut received, mut skipped, mut next) = (1u64, 0u64, 1u64);
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while next < N {
        assert!(
            std::time::Instant::now() < deadline,
            "never got the last message: {received} received, told of {skipped} lost, next {next}"
        );
        match sub.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(payload) => {
                let text = String::from_utf8(payload.into_payload().to_vec()).expect("UTF-8");
                let seq: u64 = text
                    .split_once(':')
                    .and_then(|(seq, _)| seq.parse().ok())
                    .expect("a numbered message");
                assert_eq!(text, message(seq), "intact");
                assert_eq!(seq, next, "in order, every gap told before it");
                next = seq + 1;
                received += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Lagged(n)) => {
                skipped += n;
                next += n;
            }
            Err(error) => panic!("{error}"),
        }
    }
    assert!(skipped > 0, "the lapped subscriber was told of its loss");
    assert_eq!(
        received + skipped,
        N,
        "every message received or reported lost"
    );
}
