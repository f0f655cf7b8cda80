//! Liveness and limits: heartbeats drop peers that are gone without closing
//! their socket, and keep idle or slow ones; subscription limits refuse with a clear error;
//! a graceful shutdown waits for slow subscribers only as long as configured.

mod common;

use std::time::{Duration, Instant};

use common::pubsub_support::topic_counter;
use common::raw::RawConnection;
use common::{block_on, fanout, spawn_sub, wait_until, TestBroker};
use mycelium_client::Client;
use mycelium_transport::{ErrorCode, Frame};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Heartbeats every 100 ms, two misses allowed: a dead peer goes within ~300 ms.
const FAST_HEARTBEAT: &str = "heartbeat_interval_ms = 100\nheartbeat_misses = 2";

/// Connects, answers nothing, and checks that the broker pings exactly `heartbeat_misses`
/// (2) times, then drops the connection with `HeartbeatTimeout`.
fn watch_silent_connection(socket: &std::path::Path) {
    let mut silent = RawConnection::open(socket, "silent");
    let mut pings = 0;
    let end = loop {
        match silent.next_frame() {
            Some(Frame::Ping { .. }) => pings += 1,
            Some(other) => break other,
            None => panic!("closed without saying why"),
        }
    };
    match end {
        Frame::Error {
            code,
            fatal,
            message,
            ..
        } => {
            assert_eq!(code, ErrorCode::HeartbeatTimeout, "{message}");
            assert!(fatal);
            assert!(message.contains("2 pings, 100 ms apart"), "{message}");
        }
        other => panic!("expected HeartbeatTimeout, got {other:?}"),
    }
    assert_eq!(pings, 2, "pinged exactly heartbeat_misses times");
    assert!(
        silent.next_frame().is_none(),
        "then the connection is closed"
    );
}

#[test]
fn a_connection_that_answers_no_ping_is_dropped_and_an_idle_client_that_answers_is_kept() {
    let broker = TestBroker::start_with(FAST_HEARTBEAT, &fanout("t"));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        // On a thread of its own: its blocking reads must not stop the client's tasks.
        let socket = broker.socket.clone();
        tokio::task::spawn_blocking(move || watch_silent_connection(&socket))
            .await
            .expect("the silent connection's checks");
        // The idle library client lived through the same silence: it answered every ping.
        let publisher = client.publisher("t").await.expect("still connected");
        publisher.publish(b"alive").await.expect("publish");
        client.flush().await.expect("still served");
        client.close().await.expect("close");
    });
}

#[test]
fn a_stopped_subscriber_process_is_dropped_and_its_subscription_released() {
    let broker = TestBroker::start_with(FAST_HEARTBEAT, &fanout("t"));
    let frozen = spawn_sub(&broker, "t", &[]);
    let pid = Pid::from_raw(frozen.child.id() as i32);
    assert_eq!(topic_counter(&broker, "t", "subscribers"), 1);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    wait_until("the stopped subscriber to be dropped", || {
        topic_counter(&broker, "t", "subscribers") == 0
    });
    let _ = kill(pid, Signal::SIGCONT);
}

#[test]
fn a_subscriber_receiving_a_stream_is_kept_under_a_short_heartbeat() {
    // The subscriber sends nothing of its own (fanout needs no credit): its pongs keep it.
    let broker = TestBroker::start_with(
        "heartbeat_interval_ms = 50\nheartbeat_misses = 1",
        &fanout("t"),
    );
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = client.subscribe("t").await.expect("subscribe");
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("t").await.expect("publisher");
        let started = Instant::now();
        let mut n = 0u32;
        // Far longer than the 100 ms a dead peer gets, with traffic the whole time.
        while started.elapsed() < Duration::from_millis(600) {
            p.publish(&n.to_le_bytes()).await.expect("publish");
            let got = sub.recv().await.expect("a message");
            assert_eq!(got.payload()[..], n.to_le_bytes());
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(n > 10);
        client.close().await.expect("close");
        publisher.close().await.expect("close");
    });
}

#[test]
fn subscriptions_beyond_the_per_connection_and_global_limits_are_refused() {
    let topics: String = (0..4).map(|i| fanout(&format!("t{i}"))).collect();
    let broker = TestBroker::start_with(
        "max_subscriptions_per_connection = 2\nmax_subscriptions = 3",
        &topics,
    );
    block_on(async {
        let a = Client::connect(&broker.socket).await.expect("connect");
        let _s0 = a.subscribe("t0").await.expect("first");
        let _s1 = a.subscribe("t1").await.expect("second");
        match a.subscribe("t2").await {
            Err(error) => {
                assert_eq!(error.code(), Some(ErrorCode::LimitExceeded));
                assert!(
                    error
                        .to_string()
                        .contains("server.max_subscriptions_per_connection = 2"),
                    "{error}"
                );
            }
            Ok(_) => panic!("a third subscription on one connection must be refused"),
        }
        let b = Client::connect(&broker.socket).await.expect("connect");
        let s2 = b.subscribe("t2").await.expect("the third in all");
        match b.subscribe("t3").await {
            Err(error) => {
                assert_eq!(error.code(), Some(ErrorCode::LimitExceeded));
                assert!(
                    error.to_string().contains("server.max_subscriptions = 3"),
                    "{error}"
                );
            }
            Ok(_) => panic!("a fourth subscription in all must be refused"),
        }
        // Giving one back makes room.
        s2.unsubscribe().await.expect("unsubscribe");
        let _s3 = b.subscribe("t3").await.expect("room again");
        a.close().await.expect("close");
        b.close().await.expect("close");
    });
}

#[test]
fn a_graceful_shutdown_gives_a_stopped_subscriber_only_the_configured_deadline() {
    let broker = TestBroker::start_with(
        "shutdown_deadline_ms = 300\nheartbeat_interval_ms = 0",
        "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nbackpressure = \"drop_newest\"\n",
    );
    let frozen = spawn_sub(&broker, "t", &[]);
    let pid = Pid::from_raw(frozen.child.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    // Enough to fill the stopped subscriber's socket and queue: the broker cannot flush it.
    let lines = (0..200_000).map(|i| format!("message-{i:08}-padding-padding-padding"));
    let (status, stderr) = common::pubsub_support::spawn_pub(&broker, "t", lines).finish();
    assert!(status.success(), "{stderr}");
    broker.signal(Signal::SIGTERM);
    let (status, log) = broker.wait();
    let _ = kill(pid, Signal::SIGCONT);
    assert!(status.success(), "a graceful shutdown exits 0: {status}");
    assert!(
        log.contains("did not take their messages before the deadline")
            && log.contains("deadline=300ms"),
        "{log}"
    );
}

#[test]
fn the_largest_intervals_a_config_can_name_mean_never_not_a_crash() {
    let broker = TestBroker::start_with(
        "heartbeat_interval_ms = 18446744073709551615\nshutdown_deadline_ms = 18446744073709551615",
        "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\npublish_deadline_ms = 18446744073709551615\n",
    );
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = client.subscribe("t").await.expect("subscribe");
        client.publish("t", b"still here").await.expect("publish");
        let got = sub.recv().await.expect("a message");
        assert_eq!(&got.payload()[..], b"still here");
        client.close().await.expect("close");
    });
    let mut broker = broker;
    assert!(broker.is_running(), "the broker must not have panicked");
}
