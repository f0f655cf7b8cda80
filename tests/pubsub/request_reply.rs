//! Request/reply across real processes: `mycelium request` against `mycelium reply`
//! responders (normal, erroring, two on a queue topic), a subscriber that never answers (the
//! timeout), nobody at all (no responders, at once), the library's typed errors and headers,
//! and a connection refused another client's inbox.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mycelium_client::envelope::Headers;
use mycelium_client::{inbox_of, Client, ClientOptions, ReplyError};
use mycelium_transport::handshake::Opening;
use mycelium_transport::{ClientHandshake, ErrorCode, Frame, NO_TOPIC};

use super::common::raw::RawConnection;
use super::common::{block_on, spawn_sub, TestBroker};
use super::{run_to_end, topic_counter};

const TOPICS: &str = "
[[topics]]
name = \"svc.work\"
routing = \"queue\"

[topic_defaults]
auto_create = true
";

/// A `mycelium reply` process, killed on drop.
struct Responder(Child);

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mycelium reply ARGS...` and waits until it is subscribed.
fn responder(broker: &TestBroker, args: &[&str]) -> Responder {
    let mut child = broker
        .cmd()
        .arg("reply")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mycelium reply");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    match lines.next() {
        Some(Ok(line)) if line.starts_with("replying on ") => {}
        other => panic!("mycelium reply did not start: {other:?}"),
    }
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Responder(child)
}

#[test]
fn a_responder_answers_and_an_erroring_one_fails_the_request_with_its_message() {
    let broker = TestBroker::start_with("", TOPICS);
    let _echo = responder(&broker, &["svc.echo", "pong"]);
    let out = run_to_end(broker.cmd().args(["request", "svc.echo", "ping"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "pong\n");

    let _failing = responder(
        &broker,
        &["--error", "db down", "--code", "503", "svc.fail"],
    );
    let out = run_to_end(broker.cmd().args(["request", "svc.fail", "x"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("db down") && out.stderr.contains("503"),
        "{}",
        out.stderr
    );
}

#[test]
fn nobody_subscribed_is_no_responders_at_once_and_a_silent_subscriber_is_a_timeout() {
    let broker = TestBroker::start_with("", TOPICS);
    let started = Instant::now();
    let out = run_to_end(
        broker
            .cmd()
            .args(["request", "--timeout", "60000", "svc.nobody", "x"]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no responders"), "{}", out.stderr);
    // Known at once, not after the 60 s timeout.
    assert!(started.elapsed() < Duration::from_secs(30));

    let _silent = spawn_sub(&broker, "svc.silent", &[]);
    let out = run_to_end(
        broker
            .cmd()
            .args(["request", "--timeout", "200", "svc.silent", "x"]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .contains("no reply on topic 'svc.silent' within 200ms"),
        "{}",
        out.stderr
    );
}

#[test]
fn on_a_queue_topic_exactly_one_of_two_responders_answers_each_request() {
    let broker = TestBroker::start_with("", TOPICS);
    let _a = responder(&broker, &["svc.work", "a"]);
    let _b = responder(&broker, &["svc.work", "b"]);
    let options = ClientOptions::default();
    let inbox = inbox_of(options.client_id);
    let answers = block_on(async {
        let client = Client::connect_with(&broker.socket, options)
            .await
            .expect("connect");
        let mut answers = Vec::new();
        for i in 0..20 {
            let reply = client
                .request(
                    "svc.work",
                    format!("{i}").as_bytes(),
                    Duration::from_secs(10),
                )
                .await
                .expect("a reply");
            answers.push(String::from_utf8(reply.payload().to_vec()).expect("UTF-8"));
        }
        client.flush().await.expect("flush");
        answers
    });
    assert!(answers.iter().all(|a| a == "a" || a == "b"), "{answers:?}");
    // One reply per request reached the inbox: neither responder answered twice.
    assert_eq!(topic_counter(&broker, &inbox, "published"), 20);
}

#[test]
fn the_library_sends_headers_with_a_request_and_types_every_failure() {
    let broker = TestBroker::start_with("", TOPICS);
    block_on(async {
        let responder = Client::connect(&broker.socket).await.expect("connect");
        let mut requests = responder.subscribe("svc.headers").await.expect("subscribe");
        let serve = tokio::spawn(async move {
            let request = requests.recv().await.expect("a request");
            let echoed = request.header("trace").unwrap_or("none").to_owned();
            responder
                .reply(&request, echoed.as_bytes())
                .await
                .expect("reply");
            let request = requests.recv().await.expect("a request");
            responder
                .reply_error(&request, 42, "refused")
                .await
                .expect("reply");
            let plain = mycelium_client::Message::new("svc.headers", &b"x"[..]);
            assert!(matches!(
                responder.reply(&plain, b"y").await,
                Err(mycelium_client::PublishError::NotARequest)
            ));
            responder
        });
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut headers = Headers::new();
        headers.insert("trace", "t-1").expect("a header");
        let reply = client
            .request_with("svc.headers", &headers, b"q", Duration::from_secs(10))
            .await
            .expect("a reply");
        assert_eq!(&reply[..], b"t-1");
        match client
            .request("svc.headers", b"q", Duration::from_secs(10))
            .await
        {
            Err(ReplyError::Responder {
                topic,
                code,
                message,
            }) => assert_eq!(
                (topic.as_str(), code, message.as_str()),
                ("svc.headers", 42, "refused")
            ),
            other => panic!("expected the responder's error, got {other:?}"),
        }
        match client
            .request("svc.none", b"q", Duration::from_secs(30))
            .await
        {
            Err(ReplyError::NoResponders { topic }) => assert_eq!(topic, "svc.none"),
            other => panic!("expected no responders, got {other:?}"),
        }
        drop(serve.await.expect("the responder"));
    });
}

#[test]
fn a_connection_may_subscribe_only_to_its_own_inbox() {
    let broker = TestBroker::start_with("", TOPICS);
    let mut raw = RawConnection::open(&broker.socket, "eavesdropper");
    let request = raw.request_id();
    raw.send_frame(&Frame::Subscribe {
        request_id: request,
        prefetch: 0,
        no_echo: false,
        topic: inbox_of(uuid::Uuid::new_v4()),
    });
    raw.expect_request_refused(ErrorCode::PermissionDenied, request, NO_TOPIC);
    // No pattern reaches an inbox either.
    raw.subscribe("_INBOX.*");
    let client_inbox = block_on(async {
        let options = ClientOptions::default();
        let inbox = inbox_of(options.client_id);
        let client = Client::connect_with(&broker.socket, options)
            .await
            .expect("connect");
        // Its own inbox is fine (made by its first request).
        let _ = client
            .request("svc.nobody", b"x", Duration::from_secs(30))
            .await;
        inbox
    });
    assert_eq!(topic_counter(&broker, &client_inbox, "published"), 1);
    raw.ping();

    // A client may name its own inbox in either form the protocol gives: the id in base64url
    // (what inbox_of writes) or in 32 hex digits; another client's is refused in both.
    let id = uuid::Uuid::new_v4();
    let mut own = RawConnection::connect(&broker.socket, "own inbox");
    own.send_frame(&ClientHandshake::new(Opening::Messages, id, "own inbox").hello());
    assert!(matches!(own.recv(), Frame::Welcome { .. }));
    own.subscribe(&inbox_of(id));
    own.subscribe(&format!("_INBOX.{}", id.simple()));
    let other = uuid::Uuid::new_v4();
    for foreign in [inbox_of(other), format!("_INBOX.{}", other.simple())] {
        let request = own.request_id();
        own.send_frame(&Frame::Subscribe {
            request_id: request,
            prefetch: 0,
            no_echo: false,
            topic: foreign,
        });
        own.expect_request_refused(ErrorCode::PermissionDenied, request, NO_TOPIC);
    }
    own.ping();
}

#[test]
fn an_inbox_is_reclaimed_once_its_requester_leaves_though_its_responder_stays() {
    let broker = TestBroker::start_with(
        "",
        "[topic_defaults]\nauto_create = true\nidle_timeout_ms = 200\n",
    );
    let _echo = responder(&broker, &["svc.echo", "pong"]);
    let options = ClientOptions::default();
    let inbox = inbox_of(options.client_id);
    block_on(async {
        let client = Client::connect_with(&broker.socket, options)
            .await
            .expect("connect");
        let reply = client
            .request("svc.echo", b"ping", Duration::from_secs(10))
            .await
            .expect("a reply");
        assert_eq!(&reply[..], b"pong");
        client.close().await.expect("close");
    });
    let listed = |name: &str| {
        super::stats_json(&broker)["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .any(|t| t["name"] == name)
    };
    // The responder answered the inbox and is still connected: its answer claims nothing.
    super::common::wait_until("the inbox to be reclaimed", || !listed(&inbox));
    assert!(
        listed("svc.echo"),
        "the topic its responder subscribes to stays"
    );
}
