//! The client's public API as an application sees it: code written once against the
//! `Broker` trait runs over either transport, and every subscription keeps the receive
//! contract (messages, then the end once, then `None` as a stream).

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use common::{block_on, fanout, TestBroker, DEADLINE};
use futures_core::Stream;
use mycelium_client::{
    blocking, Broker, Client, ClientOptions, PublishError, Receive, RecvError, RecvTimeoutError,
    SubscriptionEnd, Transport, TryRecvError,
};

/// Application code that knows only the trait: subscribes, publishes, receives, unsubscribes.
async fn round_trip<B: Broker>(broker: &B, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut subscription = broker.subscribe(topic).await.expect("subscribe");
    assert_eq!(subscription.topic(), topic);
    broker.publish(topic, payload).await.expect("publish");
    let message = subscription.recv().await.expect("the message");
    assert_eq!(message.topic(), topic, "the message names its topic");
    broker.unsubscribe(subscription).await.expect("unsubscribe");
    message.payload().to_vec()
}

#[test]
fn one_generic_function_runs_against_a_broker_process_over_every_transport() {
    let broker = TestBroker::start(&format!("{}{}", fanout("socket"), fanout("shm")));
    block_on(async {
        for (transport, topic) in [
            (Transport::Socket, "socket"),
            (Transport::SharedMemory, "shm"),
            (Transport::Auto, "shm"),
        ] {
            let client =
                Client::connect_with(&broker.socket, ClientOptions::with_transport(transport))
                    .await
                    .expect("connect");
            let payload = format!("over {transport:?}");
            assert_eq!(
                round_trip(&client, topic, payload.as_bytes()).await,
                payload.as_bytes(),
                "{transport:?}"
            );
            client.close().await.expect("close");
        }
    });
}

#[test]
fn auto_falls_back_to_the_socket_where_the_broker_offers_no_shared_memory() {
    let broker = TestBroker::start(&format!("[shm]\nenabled = false\n\n{}", fanout("t")));
    block_on(async {
        let client = Client::connect_with(
            &broker.socket,
            ClientOptions::with_transport(Transport::Auto),
        )
        .await
        .expect("connect");
        let subscription = client.subscribe("t").await.expect("subscribe");
        assert_eq!(subscription.transport(), Transport::Socket);
        drop(subscription);
        assert_eq!(round_trip(&client, "t", b"fallback").await, b"fallback");
        client.close().await.expect("close");
    });
}

/// The stream's next item.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[test]
fn a_subscription_stream_yields_the_messages_then_the_end_once_then_none() {
    let broker = TestBroker::start(&fanout("t"));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut subscription = client.subscribe("t").await.expect("subscribe");
        client.publish("t", b"one").await.expect("publish");
        client.flush().await.expect("flush");
        let handle = client.clone();
        handle.close().await.expect("close");
        match next(&mut subscription).await {
            Some(Ok(message)) => assert_eq!(&message[..], b"one"),
            other => panic!("expected the message, got {other:?}"),
        }
        match next(&mut subscription).await {
            Some(Err(RecvError::Ended(SubscriptionEnd::Closed))) => {}
            other => panic!("expected the end, got {other:?}"),
        }
        assert!(
            next(&mut subscription).await.is_none(),
            "the end comes once"
        );
        assert!(
            next(&mut subscription).await.is_none(),
            "and then only None"
        );
        // `try_recv` keeps answering with the end.
        assert!(matches!(
            subscription.try_recv(),
            Err(TryRecvError::Ended(SubscriptionEnd::Closed))
        ));
    });
}

#[test]
fn the_blocking_client_over_the_socket_keeps_the_same_contract() {
    let broker = TestBroker::start(&fanout("t"));
    let client = blocking::Client::connect(&broker.socket).expect("connect");
    let mut sub = client.subscribe("t").expect("subscribe");
    assert_eq!(sub.transport(), Transport::Socket);
    let mut publisher = client.publisher("t").expect("publisher");
    assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(
        sub.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    ));
    publisher.publish(b"one").expect("publish");
    publisher
        .publish_batch(&[b"two", b"three"])
        .expect("publish a batch");
    client.flush().expect("flush");
    let message = sub.recv().expect("one");
    assert_eq!((&message[..], message.topic()), (&b"one"[..], "t"));
    let mut buf = Vec::new();
    assert!(sub
        .recv_timeout_into(&mut buf, Some(DEADLINE))
        .expect("two"));
    assert_eq!(buf, b"two");
    let mut batch = Vec::new();
    let taken = sub
        .try_recv_batch(16, |payload| batch.push(payload.to_vec()))
        .expect("the rest");
    assert_eq!((taken, batch), (1, vec![b"three".to_vec()]));
    assert!(matches!(
        publisher.loan(4),
        Err(PublishError::LoanUnsupported)
    ));
    let stats = client.stats().expect("stats");
    let t = stats
        .topics
        .iter()
        .find(|t| t.name == "t")
        .expect("topic t");
    assert_eq!(t.published, 3);
}

#[test]
fn the_blocking_client_on_auto_takes_shared_memory_where_the_broker_offers_it() {
    let broker = TestBroker::start(&fanout("t"));
    let options = ClientOptions::with_transport(Transport::Auto);
    let client = blocking::Client::connect_with(&broker.socket, options).expect("connect");
    let mut sub = client.subscribe("t").expect("subscribe");
    let mut publisher = client.publisher("t").expect("publisher");
    assert_eq!(sub.transport(), Transport::SharedMemory);
    assert_eq!(publisher.transport(), Transport::SharedMemory);
    let mut loan = publisher.loan(4).expect("a loan over shared memory");
    loan.as_mut_slice().copy_from_slice(b"tock");
    loan.commit().expect("commit");
    let message = sub.recv_timeout(DEADLINE).expect("the loaned message");
    assert_eq!((&message[..], message.topic()), (&b"tock"[..], "t"));
    // A socket subscription of the same client hears the shared-memory publisher too.
    let mut over_socket = client
        .subscribe_over("t", Transport::Socket)
        .expect("subscribe over the socket");
    publisher.publish(b"both").expect("publish");
    assert_eq!(&sub.recv_timeout(DEADLINE).expect("shm")[..], b"both");
    assert_eq!(
        &over_socket.recv_timeout(DEADLINE).expect("socket")[..],
        b"both"
    );
}

#[test]
fn auto_takes_the_socket_for_a_topic_the_broker_refuses_shared_memory() {
    // A queue topic under drop_oldest gets no shared memory (an overwritten frame would be
    // lost uncounted by its only consumer); the fanout topic next to it does.
    let broker = TestBroker::start(&format!(
        "[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\nbackpressure = \"drop_oldest\"\n{}",
        fanout("ticks")
    ));
    block_on(async {
        let client = Client::connect_with(
            &broker.socket,
            ClientOptions::with_transport(Transport::Auto),
        )
        .await
        .expect("connect");
        let jobs = client.subscribe("jobs").await.expect("subscribe");
        assert_eq!(jobs.transport(), Transport::Socket);
        let ticks = client.subscribe("ticks").await.expect("subscribe");
        assert_eq!(ticks.transport(), Transport::SharedMemory);
        drop(jobs);
        assert_eq!(round_trip(&client, "jobs", b"job").await, b"job");
        client.close().await.expect("close");
    });
}

#[test]
fn a_blocking_socket_client_may_be_dropped_inside_an_async_runtime() {
    let broker = TestBroker::start(&fanout("t"));
    let client = blocking::Client::connect(&broker.socket).expect("connect");
    let subscription = client.subscribe("t").expect("subscribe");
    block_on(async move {
        drop(subscription);
        drop(client);
    });
}
