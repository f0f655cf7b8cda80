//! A broker that dies (SIGKILL) and is restarted: clients get a clear `BrokerGone` and never
//! hang; the reconnecting subscription and publisher come back on their own; the restarted
//! broker replaces the dead one's socket file without manual cleanup.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{block_on, fanout, mycelium_bin, wait_until, TestBroker};
use mycelium_client::Client;
use mycelium_client::{
    Backoff, ConnectError, ConnectionEvent, ReconnectingPublisher, ReconnectingSubscription,
    RecvError, RequestError, SubscriptionEnd,
};
use nix::sys::signal::Signal;

/// A second broker process on `broker`'s config (and so its socket path); killed on drop.
struct Restarted(Child);

impl Restarted {
    fn start(broker: &TestBroker) -> Restarted {
        let child = Command::new(mycelium_bin())
            .args(["run", "--config"])
            .arg(&broker.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restarting the broker");
        let restarted = Restarted(child);
        wait_until("the restarted broker to accept connections", || {
            std::os::unix::net::UnixStream::connect(&broker.socket).is_ok()
        });
        restarted
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fast_backoff() -> Backoff {
    Backoff::exponential(Duration::from_millis(5), Duration::from_millis(100), None)
}

#[test]
fn a_killed_broker_ends_a_plain_subscription_with_broker_gone() {
    let mut broker = TestBroker::start(&fanout("t"));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = client.subscribe("t").await.expect("subscribe");
        broker.signal(Signal::SIGKILL);
        match sub.recv().await {
            Err(RecvError::Ended(SubscriptionEnd::BrokerGone { .. })) => {}
            other => panic!("expected BrokerGone, got {other:?}"),
        }
        match sub.recv().await {
            Err(RecvError::Ended(SubscriptionEnd::BrokerGone { .. })) => {}
            other => panic!("nothing after the end but the end again, got {other:?}"),
        }
        assert!(matches!(
            client.flush().await,
            Err(RequestError::BrokerGone(_))
        ));
    });
    wait_until("the broker to be gone", || !broker.is_running());
}

#[test]
fn a_reconnecting_subscription_and_publisher_come_back_after_a_broker_restart() {
    let mut broker = TestBroker::start(&fanout("t"));
    let socket = broker.socket.clone();
    // One runtime for the whole test: the clients' tasks live in it.
    block_on(async {
        let mut sub = ReconnectingSubscription::new(&socket, "t", fast_backoff())
            .await
            .expect("subscribe");
        let mut publisher = ReconnectingPublisher::new(&socket, "t", fast_backoff())
            .await
            .expect("publisher");
        publisher
            .publish_confirmed(b"before")
            .await
            .expect("publish");
        match sub.recv().await {
            Ok(m) => assert_eq!(&m.payload()[..], b"before"),
            other => panic!("expected the message, got {other:?}"),
        }
        let mut events = sub.events();
        broker.signal(Signal::SIGKILL);
        wait_until("the broker to be gone", || !broker.is_running());
        assert!(socket.exists(), "SIGKILL leaves the socket file behind");
        // The new broker replaces the dead one's socket file itself.
        let _restarted = Restarted::start(&broker);
        // `recv` reconnects on the way to the next message; the event says when it is back.
        let receiving = tokio::spawn(async move { sub.recv().await });
        match events.recv().await {
            Ok(ConnectionEvent::Reconnected { attempts }) => assert!(attempts >= 1),
            other => panic!("expected Reconnected, got {other:?}"),
        }
        // The publisher's old connection is dead: it reconnects and sends again.
        publisher
            .publish_confirmed(b"after")
            .await
            .expect("publish");
        match receiving.await.expect("the receiving task") {
            Ok(m) => assert_eq!(&m.payload()[..], b"after"),
            other => panic!("expected the message after the restart, got {other:?}"),
        }
    });
}

#[test]
fn a_reconnecting_subscription_gives_up_when_its_backoff_does() {
    let mut broker = TestBroker::start(&fanout("t"));
    let backoff = Backoff::exponential(Duration::from_millis(1), Duration::from_millis(5), Some(3));
    block_on(async {
        let mut sub = ReconnectingSubscription::new(&broker.socket, "t", backoff)
            .await
            .expect("subscribe");
        broker.signal(Signal::SIGKILL);
        wait_until("the broker to be gone", || !broker.is_running());
        match sub.recv().await {
            Err(RecvError::Ended(SubscriptionEnd::Failed(error)))
                if matches!(
                    error.downcast_ref::<ConnectError>(),
                    Some(ConnectError::Unreachable { .. })
                ) => {}
            other => panic!("expected the last connect error, got {other:?}"),
        }
    });
}
