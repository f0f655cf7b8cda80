//! The client's public API as an application sees it: code written once against the
//! `Broker` trait runs over either transport, and every subscription keeps the receive
//! contract (messages, then the end once, then `None` as a stream).

mod common;

use std::future::poll_fn;
use std::pin::Pin;

use common::{block_on, fanout, TestBroker};
use futures_core::Stream;
use mycelium_client::{
    Broker, Client, ClientOptions, Receive, RecvError, SubscriptionEnd, Transport, TryRecvError,
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
