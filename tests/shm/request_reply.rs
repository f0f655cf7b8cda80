//! Request/reply over shared memory with the blocking client: the request goes into the
//! topic's ring and the reply comes back in the requester's inbox ring, with no broker on the
//! path; nobody reading the topic's ring is "no responders" within 100 µs; error replies and
//! timeouts are typed; a responder over the socket answers a shared-memory requester too.

use std::thread;

use mycelium_client::envelope::Headers;
use mycelium_client::{RecvTimeoutError, ReplyError};

use super::*;

const TOPICS: &str = "
[[topics]]
name = \"svc.echo\"
routing = \"fanout\"

[[topics]]
name = \"svc.quiet\"
routing = \"fanout\"
";

/// A thread answering `count` requests on `topic` over shared memory with their own payload,
/// the value of header `h` prefixed, or an error when the payload is `fail`.
fn responder(broker: &TestBroker, topic: &'static str, count: usize) -> thread::JoinHandle<()> {
    let client = shm_client(broker);
    let mut requests = client.subscribe(topic).expect("subscribe");
    thread::spawn(move || {
        for _ in 0..count {
            let request = match requests.recv_timeout(DEADLINE) {
                Ok(request) => request,
                Err(error) => panic!("no request: {error}"),
            };
            if &request[..] == b"fail" {
                client
                    .reply_error(&request, 409, "conflict")
                    .expect("error reply");
                continue;
            }
            let mut answer = request.header("h").unwrap_or("").as_bytes().to_vec();
            answer.extend_from_slice(&request);
            client.reply(&request, &answer).expect("reply");
        }
    })
}

#[test]
fn a_shared_memory_request_gets_its_reply_and_an_error_reply_fails_it() {
    let broker = TestBroker::start(TOPICS);
    let serving = responder(&broker, "svc.echo", 12);
    let requester = shm_client(&broker);
    for i in 0..10 {
        let payload = format!("ping {i}");
        let reply = requester
            .request("svc.echo", payload.as_bytes(), DEADLINE)
            .expect("a reply");
        assert_eq!(&reply[..], payload.as_bytes());
        assert!(
            reply.reply().is_some(),
            "a reply names the request it answers"
        );
    }
    let mut headers = Headers::new();
    headers.insert("h", "x-").expect("a header");
    let reply = requester
        .request_with("svc.echo", &headers, b"y", DEADLINE)
        .expect("a reply");
    assert_eq!(&reply[..], b"x-y");
    match requester.request("svc.echo", b"fail", DEADLINE) {
        Err(ReplyError::Responder {
            topic,
            code,
            message,
        }) => assert_eq!(
            (topic.as_str(), code, message.as_str()),
            ("svc.echo", 409, "conflict")
        ),
        other => panic!("expected the responder's error, got {other:?}"),
    }
    serving.join().expect("the responder");
}

#[test]
fn nobody_reading_is_no_responders_at_once_and_a_silent_reader_is_a_timeout() {
    let broker = TestBroker::start(TOPICS);
    let requester = shm_client(&broker);
    let started = Instant::now();
    match requester.request("svc.quiet", b"x", Duration::from_secs(60)) {
        Err(ReplyError::NoResponders { topic }) => assert_eq!(topic, "svc.quiet"),
        other => panic!("expected no responders, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "known at once, not at the timeout"
    );

    let listener = shm_client(&broker);
    let mut silent = listener.subscribe("svc.quiet").expect("subscribe");
    match requester.request("svc.quiet", b"x", Duration::from_millis(200)) {
        Err(ReplyError::Timeout { topic, .. }) => assert_eq!(topic, "svc.quiet"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The silent reader did get the request, with its reply address.
    let request = silent.recv_timeout(DEADLINE).expect("the request");
    assert!(request.reply_to().is_some_and(|r| r.starts_with("_INBOX.")));
    assert!(matches!(
        silent.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    ));
}

#[test]
fn a_socket_responder_answers_a_shared_memory_requester() {
    let broker = TestBroker::start(TOPICS);
    let socket = blocking::Client::connect(&broker.socket).expect("socket client");
    let mut requests = socket.subscribe("svc.echo").expect("subscribe");
    let serving = thread::spawn(move || {
        let request = requests.recv_timeout(DEADLINE).expect("a request");
        socket.reply(&request, b"from the socket").expect("reply");
        // Over the socket a reply is queued when `reply` returns: flush before the client goes.
        socket.flush().expect("flush");
    });
    let requester = shm_client(&broker);
    let reply = requester
        .request("svc.echo", b"q", DEADLINE)
        .expect("a reply");
    assert_eq!(&reply[..], b"from the socket");
    serving.join().expect("the responder");
}

#[test]
fn the_async_client_requests_and_replies_over_shared_memory() {
    let broker = TestBroker::start(TOPICS);
    common::block_on(async {
        let options = || {
            mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory)
        };
        let responder = mycelium_client::Client::connect_with(&broker.socket, options())
            .await
            .expect("connect");
        let mut requests = responder.subscribe("svc.echo").await.expect("subscribe");
        let serving = tokio::spawn(async move {
            for _ in 0..3 {
                let request = requests.recv().await.expect("a request");
                responder.reply(&request, &request).await.expect("reply");
            }
        });
        let requester = mycelium_client::Client::connect_with(&broker.socket, options())
            .await
            .expect("connect");
        for i in 0..3 {
            let payload = format!("async {i}");
            let reply = requester
                .request("svc.echo", payload.as_bytes(), DEADLINE)
                .await
                .expect("a reply");
            assert_eq!(&reply[..], payload.as_bytes());
        }
        match requester
            .request("svc.quiet", b"x", Duration::from_secs(60))
            .await
        {
            Err(ReplyError::NoResponders { .. }) => {}
            other => panic!("expected no responders, got {other:?}"),
        }
        serving.await.expect("the responder");
    });
}
