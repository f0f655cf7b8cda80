//! The async layer: `AsyncShmSubscription` and `AsyncShmPublisher` on a tokio runtime.

use super::*;

/// One worker thread: a publish or receive that blocked it would stop the other side too. The
/// runtime runs on a thread of its own, so such a deadlock (where no tokio timer can fire)
/// fails the test after [`DEADLINE`] instead of hanging it.
#[test]
fn async_shm_clients_round_trip_without_blocking_the_runtime_through_a_small_ring() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async_round_trip());
        let _ = done.send(());
    });
    finished
        .recv_timeout(DEADLINE * 2)
        .expect("the round trip finished (a blocked runtime deadlocks it)");
}

async fn async_round_trip() {
    const N: u64 = 20_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 16384\n",
        fanout("async_ticks")
    ));
    let client = mycelium_client::Client::connect_with(
        &broker.socket,
        mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory),
    )
    .await
    .expect("session");
    let mut subscription = client.subscribe("async_ticks").await.expect("sub");
    let publisher = client.publisher("async_ticks").await.expect("pub");
    // 20 000 messages of up to 300 bytes through a 16 KiB ring and a 1024-message channel:
    // the publisher waits for room many times, and only this task's receives make room.
    let publishing = tokio::spawn(async move {
        for seq in 0..N {
            publisher
                .publish(checked_message(seq).as_bytes())
                .await
                .expect("publish");
        }
    });
    let receiving = async {
        for expected in 0..N {
            let message = subscription.recv().await.expect("recv");
            assert_eq!(check_message(&message), Ok(expected), "in publish order");
        }
    };
    tokio::time::timeout(DEADLINE, receiving)
        .await
        .expect("every message within the deadline");
    tokio::time::timeout(DEADLINE, publishing)
        .await
        .expect("the publisher finished")
        .expect("no panic");
}

#[tokio::test]
async fn dropping_a_recv_future_loses_no_message() {
    const N: u64 = 5_000;
    let broker = TestBroker::start(&fanout("async_cancel"));
    let client = mycelium_client::Client::connect_with(
        &broker.socket,
        mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory),
    )
    .await
    .expect("session");
    let mut subscription = client.subscribe("async_cancel").await.expect("sub");
    // The publisher is another process: the CLI over shared memory.
    let publisher = spawn_pub_with(
        &broker,
        "async_cancel",
        &["--transport", "shm"],
        (0..N).map(checked_message),
    );
    let (mut got, mut cancelled) = (Vec::new(), 0u64);
    let start = Instant::now();
    while (got.len() as u64) < N {
        assert!(start.elapsed() < DEADLINE, "got {} of {N}", got.len());
        // A deadline that often fires first: the recv future is dropped half-way, many times.
        tokio::select! {
            message = subscription.recv() => {
                got.push(check_message(&message.expect("recv")).expect("intact"));
            }
            _ = tokio::time::sleep(Duration::from_micros(20)) => cancelled += 1,
        }
    }
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "every message, once, in order"
    );
    assert!(
        cancelled > 0,
        "no recv was ever cancelled: the test proved nothing"
    );
    let (status, stderr) = tokio::task::spawn_blocking(move || publisher.finish())
        .await
        .expect("join");
    assert!(status.success(), "{stderr}");
}

#[tokio::test]
async fn an_async_queue_consumer_shares_socket_publishers_messages() {
    const N: u64 = 10_000;
    let broker = TestBroker::start(&queue("async_jobs"));
    let client = mycelium_client::Client::connect_with(
        &broker.socket,
        mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory),
    )
    .await
    .expect("session");
    let mut consumer = client.subscribe("async_jobs").await.expect("sub");
    let socket_consumer = spawn_sub(&broker, "async_jobs", &[]);
    let publisher = spawn_pub(&broker, "async_jobs", (0..N).map(checked_message));
    let mut from_shm = Vec::new();
    let mut from_socket = Vec::new();
    let start = Instant::now();
    while ((from_shm.len() + from_socket.len()) as u64) < N {
        assert!(start.elapsed() < DEADLINE, "stalled");
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(10), consumer.recv()).await
        {
            from_shm.push(check_message(&message.expect("recv")).expect("intact"));
        }
        from_socket.extend(
            socket_consumer
                .lines_so_far()
                .iter()
                .map(|line| check_message(line.as_bytes()).expect("intact")),
        );
    }
    let (status, stderr) = tokio::task::spawn_blocking(move || publisher.finish())
        .await
        .expect("join");
    assert!(status.success(), "{stderr}");
    assert!(
        !from_shm.is_empty() && !from_socket.is_empty(),
        "both got work"
    );
    assert_exactly_once(&[from_shm, from_socket], N);
}
