//! The receive contract, async and blocking: messages, then the end of the subscription once,
//! then `None` as a stream; and a blocking client may be dropped inside an async runtime.

use super::*;

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
fn a_blocking_socket_client_may_be_dropped_inside_an_async_runtime() {
    let broker = TestBroker::start(&fanout("t"));
    let client = blocking::Client::connect(&broker.socket).expect("connect");
    let subscription = client.subscribe("t").expect("subscribe");
    block_on(async move {
        drop(subscription);
        drop(client);
    });
}
