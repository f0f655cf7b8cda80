//! The `max_connections` limit: every connection beyond it is refused with
//! `TooManyConnections`, and a slot freed by a closing client is taken by the next.

use super::*;

/// Whether a failed connect means "the broker is at max_connections". Besides the documented
/// `Refused { code: TooManyConnections }` this accepts the handshake failing with a broken pipe
/// or reset, which is what the client currently reports when the broker's refusal (sent and
/// closed without reading the Hello) wins the race against the client's Hello; see
/// `every_connection_beyond_max_connections_is_refused_with_too_many_connections`.
fn refused_for_max_connections(error: &ConnectError) -> bool {
    matches!(error, ConnectError::Refused { code, .. } if *code == ErrorCode::TooManyConnections)
}

/// Connects clients until `n` are in, retrying while the broker is at its limit.
async fn connect_n(socket: &std::path::Path, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    while clients.len() < n {
        match Client::connect(socket).await {
            Ok(client) => clients.push(client),
            Err(e) if refused_for_max_connections(&e) => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("connect failed: {e:?}"),
        }
    }
    clients
}

#[test]
fn every_connection_beyond_max_connections_is_refused_with_too_many_connections() {
    const ATTEMPTS: usize = 100;
    let broker = TestBroker::start_with("max_connections = 2", &fanout("t"));
    block_on(async {
        // TestBroker's start-up probe may hold a slot for a moment; once two clients are in,
        // the broker is exactly at its limit and stays there.
        let _clients = connect_n(&broker.socket, 2).await;
        let mut wrong = Vec::new();
        for _ in 0..ATTEMPTS {
            match Client::connect(&broker.socket).await {
                Err(ConnectError::Refused {
                    code: ErrorCode::TooManyConnections,
                    message,
                }) => {
                    assert!(message.contains("max_connections = 2"), "{message}");
                }
                other => wrong.push(format!("{other:?}")),
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {ATTEMPTS} connections beyond the limit were not refused with \
             TooManyConnections: {wrong:?}",
            wrong.len()
        );
    });
}

#[test]
fn a_slot_freed_by_a_closing_client_is_taken_by_the_next_connection() {
    let broker = TestBroker::start_with("max_connections = 2", &fanout("t"));
    block_on(async {
        let mut clients = connect_n(&broker.socket, 2).await;
        match Client::connect(&broker.socket).await {
            Err(e) => assert!(refused_for_max_connections(&e), "{e:?}"),
            Ok(_) => panic!("a third connection was accepted at max_connections = 2"),
        }
        // The two accepted clients still work.
        let mut sub = clients[0].subscribe("t").await.expect("subscribe");
        clients[1].publish("t", b"hello").await.expect("publish");
        let message = sub.recv().await.expect("a message");
        assert_eq!(&message[..], b"hello");

        clients
            .pop()
            .expect("a client")
            .close()
            .await
            .expect("close");
        let replacement = connect_n(&broker.socket, 1).await.pop().expect("a client");
        replacement
            .publish("t", b"from the replacement")
            .await
            .expect("publish");
        replacement.flush().await.expect("flush");
        let message = sub.recv().await.expect("a message");
        assert_eq!(&message[..], b"from the replacement");
    });
}
