//! The client library's lifecycle under pressure: subscriptions dropped or unsubscribed while
//! full must not wedge the connection they share.

use std::time::Duration;

use crate::common::{block_on, fanout, wait_until, TestBroker, DEADLINE};
use mycelium_client::{Client, ClientOptions, PublishError, SUBSCRIPTION_BUFFER};

const TOPICS: &str = "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nbuffer_size = 200000\n\
                      [performance]\nchannel_capacity = 200000\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Fills `t`'s subscription in `sub_client` until the client's reader waits for room in it.
async fn fill(broker: &TestBroker, sub: &mycelium_client::Subscription) {
    let publisher_client = Client::connect(&broker.socket)
        .await
        .expect("publisher connects");
    let publisher = publisher_client.publisher("t").await.expect("advertise");
    for i in 0..(SUBSCRIPTION_BUFFER as u32 + 150_000) {
        publisher.publish(&i.to_le_bytes()).await.expect("publish");
    }
    publisher_client.close().await.expect("publisher flushed");
    wait_until("the subscription to fill up", || {
        sub.pending() >= SUBSCRIPTION_BUFFER
    });
}

fn short_timeouts() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

#[test]
fn dropping_a_full_subscription_leaves_its_connection_usable() {
    let broker = TestBroker::start(TOPICS);
    runtime().block_on(async {
        let client = Client::connect_with(&broker.socket, short_timeouts())
            .await
            .expect("connect");
        let sub = client.subscribe("t").await.expect("subscribe");
        fill(&broker, &sub).await;
        drop(sub);
        client
            .flush()
            .await
            .expect("the connection still answers after the drop");
        let again = client.subscribe("t").await;
        assert!(
            again.is_ok() || matches!(again, Err(ref e) if e.code().is_some()),
            "{again:?}"
        );
    });
}

#[test]
fn unsubscribing_a_full_subscription_is_confirmed_promptly() {
    let broker = TestBroker::start(TOPICS);
    runtime().block_on(async {
        let client = Client::connect_with(&broker.socket, short_timeouts())
            .await
            .expect("connect");
        let sub = client.subscribe("t").await.expect("subscribe");
        fill(&broker, &sub).await;
        sub.unsubscribe()
            .await
            .expect("unsubscribe confirmed before the request timeout");
        client.flush().await.expect("flush");
        let mut fresh = client
            .subscribe("t")
            .await
            .expect("subscribe again after unsubscribing");
        client.publish("t", b"after").await.expect("publish");
        // Deliveries still in flight for the old subscription are discarded; the new one gets this.
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match fresh.recv().await {
                    Ok(m) if &m[..] == b"after" => return true,
                    Ok(_) => continue,
                    _ => return false,
                }
            }
        })
        .await;
        assert_eq!(got, Ok(true));
    });
}

#[test]
fn a_socket_publishers_check_reports_a_broker_that_died() {
    let broker = TestBroker::start(&fanout("t"));
    let socket = broker.socket.clone();
    block_on(async move {
        let client = Client::connect(&socket).await.expect("connect");
        let publisher = client.publisher("t").await.expect("publisher");
        publisher.check().await.expect("the broker serves");
        drop(broker); // SIGKILL
        let start = std::time::Instant::now();
        loop {
            match publisher.check().await {
                Ok(()) => {
                    assert!(start.elapsed() < DEADLINE, "check never saw the broker die");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(PublishError::BrokerGone(_)) => break,
                Err(other) => panic!("expected BrokerGone, got {other:?}"),
            }
        }
    });
}
