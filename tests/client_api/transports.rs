//! Code written once against the `Broker` trait runs over either transport; `Transport::Auto`
//! takes shared memory where the broker offers it for a topic, and the socket where it does not.

use super::*;

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
fn the_same_generic_function_runs_embedded_against_the_in_process_broker() {
    let defaults = mycelium_config::TopicDefaults::default();
    let broker = mycelium_broker::LocalBroker::new(defaults.clone());
    broker
        .create_topic(defaults.topic("embedded"))
        .expect("create the topic");
    block_on(async {
        assert_eq!(
            round_trip(&broker, "embedded", b"in process").await,
            b"in process"
        );
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
