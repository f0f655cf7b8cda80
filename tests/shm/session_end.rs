//! The end of a shared-memory session or attachment, as each kind of client learns it: the
//! broker SIGKILLed under a publisher (the CLI fed from a slow or an idle stdin, the library's
//! synchronous and async publishers, writing or waiting on a full ring) and under a
//! subscription; a subscriber SIGSTOPped while the broker's watchdog detaches it, or while a
//! reload removes its topic, then SIGCONTed; a publisher whose topic a reload removed. Each
//! must report the broker's reason (`BrokerGone`, `SlowConsumer`, `TopicRemoved`) soon, never
//! a secondary symptom (a freed slot, a refused request), never carry on as if published.
//!
//! Every wait is on a condition with a deadline; nothing here sleeps to synchronise.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::pubsub_support::stats_json;
use crate::common::{fanout, spawn_sub, wait_child, wait_until, TestBroker, DEADLINE};
use mycelium_client::blocking::LOOK_EVERY;
use mycelium_client::{
    Client, ClientOptions, PublishError, RecvError, RecvTimeoutError, SubscriptionEnd, Transport,
};
use mycelium_transport::ErrorCode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Publishes that must fail once the broker's end is readable; far above [`LOOK_EVERY`], so
/// that a publisher that never looks fails the test instead of hanging it.
const MANY: u32 = 100_000;

/// SIGKILLs the broker and waits until it is gone (its sockets closed by the kernel).
fn kill_broker(broker: &mut TestBroker) {
    broker.signal(Signal::SIGKILL);
    wait_until("the broker to die", || !broker.is_running());
}

/// Waits until a reload has taken `topic` out of the broker's stats.
fn wait_topic_gone(broker: &TestBroker, topic: &str) {
    wait_until("the reload to remove the topic", || {
        stats_json(broker)["topics"]
            .as_array()
            .is_some_and(|topics| topics.iter().all(|t| t["name"] != topic))
    });
}

/// A `mycelium pub --transport shm` whose stdin this test writes by hand (and may hold open).
struct CliPublisher {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl CliPublisher {
    fn spawn(broker: &TestBroker, topic: &str) -> CliPublisher {
        let mut child = broker
            .cmd()
            .args(["pub", topic, "--transport", "shm"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mycelium pub");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        CliPublisher {
            stdin: child.stdin.take(),
            child,
            stderr: Some(stderr),
        }
    }

    /// Writes `lines` to its stdin (ignoring a publisher that has exited already).
    fn feed(&mut self, lines: impl IntoIterator<Item = String>) {
        if let Some(stdin) = &mut self.stdin {
            for line in lines {
                if writeln!(stdin, "{line}")
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for it to exit (with [`DEADLINE`], whether its stdin is open or not): its status
    /// and stderr.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        let status = wait_child(&mut self.child, "mycelium pub to exit");
        self.stdin = None;
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for CliPublisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `mycelium sub --transport shm` whose stderr is kept whole (the reason it ends with).
struct LoggedSubscriber {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl LoggedSubscriber {
    /// Starts it and returns once it said it is subscribed.
    fn spawn(broker: &TestBroker, topic: &str) -> LoggedSubscriber {
        let mut child = broker
            .cmd()
            .args(["sub", topic, "--transport", "shm"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mycelium sub");
        let err = child.stderr.take().expect("stderr");
        let (lines, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let expected = format!("subscribed to {topic}");
        loop {
            match stderr.recv_timeout(DEADLINE) {
                Ok(line) if line.trim() == expected => break,
                Ok(_) => continue,
                Err(_) => panic!("mycelium sub {topic} never said it was subscribed"),
            }
        }
        LoggedSubscriber { child, stderr }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for it to exit; its status and what it printed on stderr after subscribing.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        let status = wait_child(&mut self.child, "mycelium sub to exit");
        let mut text = String::new();
        while let Ok(line) = self.stderr.recv_timeout(DEADLINE) {
            text.push_str(&line);
            text.push('\n');
        }
        (status, text)
    }
}

impl Drop for LoggedSubscriber {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The broker dies under a shared-memory publisher: the publisher says so, soon.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_shm_cli_publisher_fed_slowly_fails_when_the_broker_dies_instead_of_claiming_it_published() {
    let mut broker = TestBroker::start(&fanout("slow"));
    let sub = spawn_sub(&broker, "slow", &["--transport", "shm"]);
    let mut publisher = CliPublisher::spawn(&broker, "slow");
    publisher.feed((0..100).map(|i| format!("line-{i}")));
    // Every line so far went through the ring: the publisher is attached and publishing.
    assert_eq!(sub.take_lines(100).len(), 100);
    kill_broker(&mut broker);
    // The rest of the input comes after the broker's death, as from a slow producer.
    publisher.feed((100..300).map(|i| format!("line-{i}")));
    publisher.close_stdin();
    let (status, stderr) = publisher.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the broker connection is gone"),
        "says why: {stderr}"
    );
    assert!(
        !stderr.contains("published 300"),
        "claims it published: {stderr}"
    );
}

#[test]
fn the_shm_cli_publisher_waiting_on_an_idle_stdin_exits_when_the_broker_dies() {
    let mut broker = TestBroker::start(&fanout("idle"));
    let sub = spawn_sub(&broker, "idle", &["--transport", "shm"]);
    let mut publisher = CliPublisher::spawn(&broker, "idle");
    publisher.feed(["first".to_owned()]);
    assert_eq!(sub.take_lines(1), ["first"]);
    kill_broker(&mut broker);
    // Its stdin stays open and silent: it must notice the broker's end by itself.
    let (status, stderr) = publisher.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the broker connection is gone"),
        "says why: {stderr}"
    );
}

#[test]
fn a_shm_publisher_learns_that_the_broker_died_within_look_every_messages() {
    let mut broker = TestBroker::start(&fanout("lib"));
    let client = common::shm_connect(&broker.socket).expect("session");
    let mut publisher = client.publisher("lib").expect("publisher");
    let mut checked = common::shm_connect(&broker.socket)
        .expect("session")
        .publisher("lib")
        .expect("publisher");
    publisher.publish(b"before").expect("publish");
    kill_broker(&mut broker);
    // The guarantee: at most LOOK_EVERY - 1 messages go unread into the orphaned ring.
    let mut written = 0u32;
    let error = loop {
        match publisher.publish(b"after") {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
        assert!(
            written < MANY,
            "{written} publishes after the broker's death all succeeded"
        );
    };
    assert!(matches!(error, PublishError::BrokerGone(_)), "{error:?}");
    assert!(written < LOOK_EVERY, "{written} written unawares");
    // Every later call says the same.
    let again = publisher.try_publish(b"again");
    assert!(
        matches!(again, Err(PublishError::BrokerGone(_))),
        "{again:?}"
    );
    // `check` looks at once.
    let checked = checked.check();
    assert!(
        matches!(checked, Err(PublishError::BrokerGone(_))),
        "{checked:?}"
    );
}

#[test]
fn a_shm_publisher_waiting_for_room_learns_that_the_broker_died() {
    // A subscriber that never reads fills the 4 KiB ring; the broker would free its slot if
    // it left, but a dead broker frees nothing: only the control socket tells.
    let mut broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\npublish_deadline_ms = 0\n\n[shm]\nring_bytes = 4096\n",
        fanout("full")
    ));
    let client = common::shm_connect(&broker.socket).expect("session");
    let _stalled = client.subscribe("full").expect("subscribe");
    let mut publisher = common::shm_connect(&broker.socket)
        .expect("session")
        .publisher("full")
        .expect("publisher");
    let written = Arc::new(AtomicU64::new(0));
    let (result_tx, result) = std::sync::mpsc::channel();
    {
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            // 248-byte payloads: 256-byte frames, 16 of which fill the ring.
            let payload = [7u8; 248];
            let outcome = loop {
                if let Err(error) = publisher.publish(&payload) {
                    break error;
                }
                written.fetch_add(1, Ordering::SeqCst);
            };
            let _ = result_tx.send(outcome);
        });
    }
    wait_until("the ring to fill", || {
        written.load(Ordering::SeqCst) >= 4096 / 256
    });
    kill_broker(&mut broker);
    let error = result
        .recv_timeout(DEADLINE)
        .expect("the publisher still waits on a ring whose broker is dead");
    assert!(matches!(error, PublishError::BrokerGone(_)), "{error:?}");
}

#[test]
fn an_async_shm_publisher_learns_that_the_broker_died_writing_or_waiting() {
    let mut broker = TestBroker::start(&format!(
        "{}{}max_message_size = 1000\npublish_deadline_ms = 0\n\n[shm]\nring_bytes = 4096\n",
        fanout("free"),
        fanout("full")
    ));
    // On a thread of its own: a publish stuck on the blocking pool would keep the runtime
    // from shutting down, and the test from ending.
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async_publisher_learns_of_the_death(&mut broker));
        let _ = done_tx.send(());
    });
    done.recv_timeout(DEADLINE * 2)
        .expect("the async publisher never learnt of the broker's death");
}

async fn async_publisher_learns_of_the_death(broker: &mut TestBroker) {
    {
        let options = ClientOptions::with_transport(Transport::SharedMemory);
        let client = Client::connect_with(&broker.socket, options)
            .await
            .expect("session");
        // A subscription that never reads (a blocking one: the async flavour's forwarding
        // thread would read): `full`'s ring fills and stays full.
        let stalled_client = common::shm_connect(&broker.socket).expect("session");
        let _stalled = stalled_client.subscribe("full").expect("subscribe");
        let free = client.publisher("free").await.expect("publisher");
        let full = client.publisher("full").await.expect("publisher");
        while full.try_publish(&[7u8; 248]).expect("try_publish") {}
        kill_broker(broker);
        // A publish that must wait for room (on the blocking pool).
        let waited = tokio::time::timeout(DEADLINE, full.publish(&[7u8; 248]))
            .await
            .expect("the publisher still waits on a ring whose broker is dead");
        assert!(
            matches!(waited, Err(PublishError::BrokerGone(_))),
            "{waited:?}"
        );
        // Publishes that find room at once.
        let mut written = 0u32;
        let error = loop {
            match free.publish(b"after").await {
                Ok(()) => written += 1,
                Err(error) => break error,
            }
            assert!(
                written < MANY,
                "{written} publishes after the death succeeded"
            );
        };
        assert!(matches!(error, PublishError::BrokerGone(_)), "{error:?}");
        assert!(written < LOOK_EVERY, "{written} written unawares");
        let checked = full.check().await;
        assert!(
            matches!(checked, Err(PublishError::BrokerGone(_))),
            "{checked:?}"
        );
    }
}

#[test]
fn shm_subscriptions_end_with_broker_gone_when_the_broker_dies() {
    let mut broker = TestBroker::start(&fanout("subs"));
    let client = common::shm_connect(&broker.socket).expect("session");
    let mut sync = client.subscribe("subs").expect("subscribe");
    let (mut asynchronous, runtime) = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let subscription = runtime
            .block_on(async {
                let options = ClientOptions::with_transport(Transport::SharedMemory);
                let client = Client::connect_with(&broker.socket, options).await?;
                client
                    .subscribe("subs")
                    .await
                    .map_err(Box::<dyn std::error::Error>::from)
            })
            .expect("subscribe");
        (subscription, runtime)
    };
    kill_broker(&mut broker);
    let ended = sync.recv_timeout(DEADLINE);
    assert!(
        matches!(
            ended,
            Err(RecvTimeoutError::Ended(SubscriptionEnd::BrokerGone { .. }))
        ),
        "{ended:?}"
    );
    let ended = runtime.block_on(async {
        tokio::time::timeout(DEADLINE, asynchronous.recv())
            .await
            .expect("the async subscription still waits on a dead broker")
    });
    assert!(
        matches!(
            ended,
            Err(RecvError::Ended(SubscriptionEnd::BrokerGone { .. }))
        ),
        "{ended:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// An attachment the broker ended (a reload removed its topic): the client is told why.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_shm_publisher_of_a_removed_topic_is_told_why_not_a_symptom() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 100000\n{}\n[shm]\nring_bytes = 4096\n",
        fanout("doomed"),
        fanout("kept")
    ));
    let client = common::shm_connect(&broker.socket).expect("session");
    let mut small = client.publisher("doomed").expect("publisher");
    let mut large = client.publisher("doomed").expect("publisher");
    broker.rewrite_config(&format!("[shm]\nring_bytes = 4096\n\n{}", fanout("kept")));
    wait_topic_gone(&broker, "doomed");
    let removed = |result: &Result<(), PublishError>| {
        matches!(
            result,
            Err(PublishError::Refused {
                code: ErrorCode::TopicRemoved,
                ..
            })
        )
    };
    let mut written = 0u32;
    let result = loop {
        match small.publish(b"into a ring nobody reads") {
            Ok(()) => written += 1,
            other => break other,
        }
        assert!(
            written < MANY,
            "{written} publishes after the removal succeeded"
        );
    };
    assert!(removed(&result), "{result:?}");
    assert!(written < LOOK_EVERY, "{written} written unawares");
    // A message too large for the ring asks the broker for its segment, which it refuses for
    // an attachment it no longer has: the reason to report is the removal, not the refusal.
    let result = large.publish(&vec![1u8; 50_000]);
    assert!(removed(&result), "{result:?}");
}

#[test]
fn the_shm_cli_publisher_of_a_removed_topic_exits_1_with_the_reason() {
    let broker = TestBroker::start(&format!("{}{}", fanout("doomed"), fanout("kept")));
    let sub = spawn_sub(&broker, "doomed", &["--transport", "shm"]);
    let mut publisher = CliPublisher::spawn(&broker, "doomed");
    publisher.feed(["first".to_owned()]);
    assert_eq!(sub.take_lines(1), ["first"]);
    broker.rewrite_config(&fanout("kept"));
    wait_topic_gone(&broker, "doomed");
    publisher.feed(["second".to_owned()]);
    let (status, stderr) = publisher.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TopicRemoved"), "says why: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// A subscriber the broker detached while it was stopped reports the broker's reason on
// SIGCONT, not the freed slot it meets first.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_stopped_shm_subscriber_detached_by_the_watchdog_reports_slow_consumer_on_sigcont() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\npublish_deadline_ms = 300\n\n[shm]\nring_bytes = 4096\n",
        fanout("held")
    ));
    let mut frozen = LoggedSubscriber::spawn(&broker, "held");
    kill(frozen.pid(), Signal::SIGSTOP).expect("SIGSTOP");
    // Attached after the stop: the frozen subscriber has this ring's ShmRingAdded (and its
    // reserved slot) waiting, and the watchdog frees that slot before it says why.
    let mut publisher = common::shm_connect(&broker.socket)
        .expect("session")
        .publisher("held")
        .expect("publisher");
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Far more than the ring holds: finishes only once the watchdog detached the frozen
        // subscriber (after publish_deadline_ms).
        for _ in 0..2000 {
            if let Err(error) = publisher.publish(&[5u8; 200]) {
                let _ = done_tx.send(Err(error));
                return;
            }
        }
        let _ = done_tx.send(Ok(()));
    });
    done.recv_timeout(DEADLINE)
        .expect("the publisher was held back past its deadline")
        .expect("publish");
    kill(frozen.pid(), Signal::SIGCONT).expect("SIGCONT");
    let (status, stderr) = frozen.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("SlowConsumer"),
        "the broker's reason: {stderr}"
    );
    assert!(!stderr.contains("slot not active"), "a symptom: {stderr}");
}

#[test]
fn a_stopped_shm_subscriber_of_a_removed_topic_reports_topic_removed_on_sigcont() {
    let broker = TestBroker::start(&format!("{}{}", fanout("doomed"), fanout("kept")));
    let mut frozen = LoggedSubscriber::spawn(&broker, "doomed");
    kill(frozen.pid(), Signal::SIGSTOP).expect("SIGSTOP");
    let publisher = common::shm_connect(&broker.socket)
        .expect("session")
        .publisher("doomed")
        .expect("publisher");
    broker.rewrite_config(&fanout("kept"));
    wait_topic_gone(&broker, "doomed");
    kill(frozen.pid(), Signal::SIGCONT).expect("SIGCONT");
    let (status, stderr) = frozen.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TopicRemoved"),
        "the broker's reason: {stderr}"
    );
    assert!(!stderr.contains("slot not active"), "a symptom: {stderr}");
    drop(publisher);
}
