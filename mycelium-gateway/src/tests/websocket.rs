//! `/ws` with a real WebSocket client (tokio-tungstenite) over TCP: the frames both ways,
//! patterns, binary payloads, bad frames, refused topics, the connection cap, a client
//! that never reads beside one that gets everything, competing queue consumers, and the
//! keepalive dropping a silent peer.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Fixture, TOPICS};
use crate::state::AppState;
use crate::websocket::{Keepalive, WebSockets};

/// Serves `state`'s router on a loopback port.
async fn serve(state: AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = crate::router::router(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    address
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// A frame from the gateway: a text frame's JSON, or a binary frame's JSON header and
/// payload.
#[derive(Debug)]
struct Frame {
    json: Value,
    payload: Option<Vec<u8>>,
}

impl Client {
    async fn connect(address: SocketAddr) -> Client {
        Client::try_connect(address).await.expect("connects")
    }

    async fn try_connect(address: SocketAddr) -> Result<Client, WsError> {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws")).await?;
        Ok(Client { ws })
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    async fn send_binary(&mut self, header: Value, payload: &[u8]) {
        let header = header.to_string();
        let mut frame = u32::try_from(header.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(header.as_bytes());
        frame.extend_from_slice(payload);
        self.ws.send(Message::binary(frame)).await.expect("send");
    }

    /// The next text or binary frame, within 10 s.
    async fn next(&mut self) -> Frame {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a frame within 10 s")
    }

    async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next.expect("open").expect("a frame") {
                Message::Text(text) => {
                    return Some(Frame {
                        json: serde_json::from_str(text.as_str()).expect("JSON"),
                        payload: None,
                    })
                }
                Message::Binary(bytes) => {
                    let n = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
                    return Some(Frame {
                        json: serde_json::from_slice(&bytes[4..4 + n]).expect("JSON header"),
                        payload: Some(bytes[4 + n..].to_vec()),
                    });
                }
                Message::Close(close) => panic!("closed: {close:?}"),
                _ => {}
            }
        }
    }

    /// Sends `frame` and returns the answer (the next frame, which must be an ack or an
    /// error carrying `frame`'s id).
    async fn request(&mut self, frame: Value) -> Value {
        let id = frame["id"].clone();
        self.send(frame).await;
        let answer = self.next().await.json;
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    async fn subscribe(&mut self, topic: &str) {
        let answer = self
            .request(json!({"type": "subscribe", "topic": topic, "id": topic}))
            .await;
        assert_eq!(answer["type"], "ack", "{answer}");
    }
}

fn assert_error(answer: &Value, code: &str) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_publish_and_unsubscribe_round_trip() {
    let f = Fixture::new().await;
    let address = serve(f.state.clone()).await;
    let (mut a, mut b) = (
        Client::connect(address).await,
        Client::connect(address).await,
    );
    let answer = a
        .request(json!({"type": "subscribe", "topic": "orders", "id": 1}))
        .await;
    assert_eq!(
        answer,
        json!({"type": "ack", "op": "subscribe", "topic": "orders", "id": 1})
    );
    let mut in_process = f.state.local.subscribe("orders").expect("subscribe");

    let answer = b
        .request(json!({"type": "publish", "topic": "orders", "data": "hello", "headers": {"trace": "abc"}, "id": "p1"}))
        .await;
    assert_eq!(
        answer,
        json!({"type": "ack", "op": "publish", "topic": "orders", "id": "p1"})
    );
    let delivered = a.next().await;
    assert_eq!(
        delivered.json,
        json!({"type": "message", "subscription": "orders", "id": null, "topic": "orders",
               "timestamp": null, "headers": {"trace": "abc"}, "data": "hello"})
    );
    // The same message reached the broker's other subscribers.
    let other = in_process.recv().await.expect("a message");
    assert_eq!(&other.payload()[..], b"hello");
    assert_eq!(other.header("trace"), Some("abc"));

    // A stamped topic: the publish's ack and the delivery carry the same id and time.
    a.subscribe("stamped").await;
    let ack = b
        .request(json!({"type": "publish", "topic": "stamped", "data": "s"}))
        .await;
    let delivered = a.next().await.json;
    assert!(ack["message_id"].is_string(), "{ack}");
    assert_eq!(delivered["id"], ack["message_id"]);
    assert_eq!(delivered["timestamp"], ack["timestamp"]);

    // Nothing of a subscription follows its unsubscribe's ack.
    let answer = a
        .request(json!({"type": "unsubscribe", "topic": "orders", "id": 2}))
        .await;
    assert_eq!(
        answer,
        json!({"type": "ack", "op": "unsubscribe", "topic": "orders", "id": 2})
    );
    b.request(json!({"type": "publish", "topic": "orders", "data": "late", "id": 3}))
        .await;
    let answer = a
        .request(json!({"type": "unsubscribe", "topic": "stamped", "id": 4}))
        .await;
    assert_eq!(answer["type"], "ack", "no message came first: {answer}");
    assert!(a.next_within(Duration::from_millis(200)).await.is_none());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_deliver_each_topic_by_its_name_and_skip_guarded_ones() {
    let f = Fixture::new().await;
    let address = serve(f.state.clone()).await;
    let mut a = Client::connect(address).await;
    a.subscribe("orders.*").await;
    a.subscribe("secure.>").await;
    f.post("/publish/orders.eu", "1").await;
    f.post("/publish/orders.us", "2").await;
    f.state
        .local
        .publisher("secure.open")
        .expect("publisher")
        .publish(b"open")
        .await
        .expect("published");
    // Guarded: published in process (the gateway would refuse it), never delivered here.
    f.state
        .local
        .publisher("secure.guarded")
        .expect("publisher")
        .publish(b"guarded")
        .await
        .expect("published");
    let mut got = Vec::new();
    for _ in 0..3 {
        let frame = a.next().await.json;
        got.push((
            frame["subscription"].as_str().expect("sub").to_owned(),
            frame["topic"].as_str().expect("topic").to_owned(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("orders.*".to_owned(), "orders.eu".to_owned()),
            ("orders.*".to_owned(), "orders.us".to_owned()),
            ("secure.>".to_owned(), "secure.open".to_owned()),
        ]
    );
    assert!(a.next_within(Duration::from_millis(200)).await.is_none());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_travel_in_binary_frames_or_base64_on_request() {
    let f = Fixture::new().await;
    let address = serve(f.state.clone()).await;
    let (mut a, mut b, mut c) = (
        Client::connect(address).await,
        Client::connect(address).await,
        Client::connect(address).await,
    );
    a.subscribe("bin").await;
    let answer = c
        .request(json!({"type": "subscribe", "topic": "bin", "binary": "base64", "id": 0}))
        .await;
    assert_eq!(answer["type"], "ack", "{answer}");
    let payload = [0xff, 0x00, 0x01, 0xfe];
    b.send_binary(
        json!({"type": "publish", "topic": "bin", "headers": {"k": "v"}, "id": 5}),
        &payload,
    )
    .await;
    let ack = b.next().await.json;
    assert_eq!(
        ack,
        json!({"type": "ack", "op": "publish", "topic": "bin", "id": 5})
    );
    let frame = a.next().await;
    assert_eq!(frame.payload.as_deref(), Some(&payload[..]));
    assert_eq!(
        frame.json,
        json!({"type": "message", "subscription": "bin", "id": null, "topic": "bin",
               "timestamp": null, "headers": {"k": "v"}})
    );
    let frame = c.next().await;
    assert_eq!(frame.payload, None);
    assert_eq!(frame.json["data_base64"], "/wAB/g==");
    // A UTF-8 payload stays text, whichever way it was sent; base64 in is bytes out.
    b.send_binary(json!({"type": "publish", "topic": "bin"}), b"plain")
        .await;
    assert_eq!(b.next().await.json["type"], "ack");
    b.request(json!({"type": "publish", "topic": "bin", "data_base64": "/w==", "id": 6}))
        .await;
    assert_eq!(a.next().await.json["data"], "plain");
    assert_eq!(a.next().await.payload.as_deref(), Some(&[0xff][..]));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_the_connection_goes_on() {
    let f = Fixture::new().await;
    let address = serve(f.state.clone()).await;
    let mut a = Client::connect(address).await;
    a.ws.send(Message::text("not json")).await.expect("send");
    assert_error(&a.next().await.json, "bad_json");
    let answer = a.request(json!({"type": "dance", "id": 1})).await;
    assert_error(&answer, "unknown_type");
    let answer = a.request(json!({"type": "subscribe", "id": 2})).await;
    assert_error(&answer, "bad_frame");
    let answer = a
        .request(json!({"type": "publish", "topic": "orders", "id": 3}))
        .await;
    assert_error(&answer, "bad_frame");
    a.ws.send(Message::binary(vec![0, 0])).await.expect("send");
    assert_error(&a.next().await.json, "bad_frame");
    let answer = a
        .request(json!({"type": "subscribe", "topic": "bad name", "id": 4}))
        .await;
    assert_error(&answer, "invalid_topic");
    let answer = a
        .request(json!({"type": "publish", "topic": "orders.*", "data": "x", "id": 5}))
        .await;
    assert_error(&answer, "invalid_topic");
    // Access lists: an HTTP peer has no uid.
    let answer = a
        .request(json!({"type": "subscribe", "topic": "secure.guarded", "id": 6}))
        .await;
    assert_error(&answer, "access_lists");
    let answer = a
        .request(json!({"type": "publish", "topic": "secure.guarded", "data": "x", "id": 7}))
        .await;
    assert_error(&answer, "access_lists");
    // Limits: the topic's, then [http] max_body_bytes (1024 here).
    let answer = a
        .request(json!({"type": "publish", "topic": "small", "data": "123456789", "id": 8}))
        .await;
    assert_error(&answer, "message_too_large");
    let answer = a
        .request(json!({"type": "publish", "topic": "orders", "data": "x".repeat(2000), "id": 9}))
        .await;
    assert_error(&answer, "body_too_large");
    let answer = a
        .request(json!({"type": "publish", "topic": "orders", "data": "x", "headers": {"": "v"}, "id": 10}))
        .await;
    assert_error(&answer, "bad_header");
    // Twice the same subscription; an unsubscribe of none.
    a.subscribe("orders").await;
    let answer = a
        .request(json!({"type": "subscribe", "topic": "orders", "id": 11}))
        .await;
    assert_error(&answer, "already_subscribed");
    let answer = a
        .request(json!({"type": "unsubscribe", "topic": "nothing", "id": 12}))
        .await;
    assert_error(&answer, "not_subscribed");
    // Still serving. Its own message and the publish's ack may come in either order.
    a.send(json!({"type": "publish", "topic": "orders", "data": "ok", "id": 13}))
        .await;
    let mut types = [a.next().await.json, a.next().await.json]
        .map(|frame| frame["type"].as_str().expect("type").to_owned());
    types.sort();
    assert_eq!(types, ["ack", "message"]);
    // A frame past the size limit closes the connection with 1009.
    let limit = crate::websocket::frame::size_limit(1024);
    a.ws.send(Message::text("x".repeat(limit + 1)))
        .await
        .expect("send");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.ws.next().await {
                Some(Ok(Message::Close(close))) => return close.map(|c| c.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(closed, Some(CloseCode::Size));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_websockets_are_refused_with_503() {
    let f = Fixture::with_topics(&format!("{TOPICS}max_websockets = 2\n")).await;
    let address = serve(f.state.clone()).await;
    let a = Client::connect(address).await;
    let _b = Client::connect(address).await;
    let metrics = f.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l == "mycelium_connections{kind=\"websocket\"} 2"),
        "{metrics}"
    );
    match Client::try_connect(address).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON error");
            assert_eq!(body["error"]["code"], "too_many_websockets");
        }
        other => panic!(
            "the third connection must be refused: {:?}",
            other.map(|_| ())
        ),
    }
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.state.websockets.open() > 1 {
        assert!(
            Instant::now() < deadline,
            "a closed connection gives its place back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _c = Client::connect(address).await;
    f.stop().await;
}

/// On a `drop_newest` topic, a client that stops reading does not hold back another: the
/// reading one gets every message, the stalled one is told what it lost when it reads
/// again, and what it gets plus what it lost is every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_slow_one_that_does() {
    let topics = TOPICS.replace(
        "[http]",
        "[[topics]]\nname = \"wide\"\nrouting = \"fanout\"\nbuffer_size = 16\nbackpressure = \"drop_newest\"\n\n[http]",
    );
    let f = Fixture::with_topics(&topics).await;
    let address = serve(f.state.clone()).await;
    let (mut good, mut stalled) = (
        Client::connect(address).await,
        Client::connect(address).await,
    );
    good.subscribe("wide").await;
    stalled.subscribe("wide").await;
    let publisher = f.state.local.publisher("wide").expect("publisher");
    // 400 x 60 KiB: far past what socket buffers, the connection's queue and the
    // subscription's buffer hold for the stalled client.
    const N: usize = 400;
    const CHUNK: usize = 8;
    let body = "x".repeat(60 << 10);
    let started = Instant::now();
    let mut received = 0;
    for sent in (0..N).step_by(CHUNK) {
        for i in sent..sent + CHUNK {
            publisher
                .publish(format!("{i:05}{body}").as_bytes())
                .await
                .expect("published");
        }
        // Paced by the good client alone: never more than one chunk ahead of it.
        while received < sent + CHUNK {
            let frame = good.next().await.json;
            assert_eq!(frame["type"], "message", "the good client loses nothing");
            let data = frame["data"].as_str().expect("data");
            assert_eq!(data[..5], format!("{received:05}"), "in order");
            received += 1;
        }
    }
    assert_eq!(received, N);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // The stalled client reads again: messages and lag notices add up to N.
    let (mut got, mut lagged) = (0, 0);
    while got + lagged < N {
        let frame = stalled.next().await.json;
        match frame["type"].as_str() {
            Some("message") => got += 1,
            Some("lagged") => {
                assert_eq!(frame["topic"], "wide");
                lagged += usize::try_from(frame["count"].as_u64().expect("count")).expect("fits");
            }
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
    assert_eq!(got + lagged, N);
    assert!(lagged > 0, "the stalled client lost some and was told");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_subscribers_over_websocket_compete() {
    let f = Fixture::new().await;
    let address = serve(f.state.clone()).await;
    let (mut a, mut b) = (
        Client::connect(address).await,
        Client::connect(address).await,
    );
    a.subscribe("jobs").await;
    b.subscribe("jobs").await;
    let publisher = f.state.local.publisher("jobs").expect("publisher");
    const N: u32 = 200;
    for i in 0..N {
        publisher
            .publish(i.to_string().as_bytes())
            .await
            .expect("published");
    }
    let mut seen = BTreeSet::new();
    let mut each = [0, 0];
    while seen.len() < N as usize {
        for (n, client) in [&mut a, &mut b].into_iter().enumerate() {
            if let Some(frame) = client.next_within(Duration::from_millis(50)).await {
                let data: u32 = frame.json["data"]
                    .as_str()
                    .expect("data")
                    .parse()
                    .expect("number");
                assert!(seen.insert(data), "{data} delivered twice");
                each[n] += 1;
            }
        }
    }
    assert!(each[0] > 0 && each[1] > 0, "both took some: {each:?}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_and_a_reading_one_kept() {
    let f = Fixture::new().await;
    let mut state = f.state.clone();
    state.websockets = Arc::new(WebSockets::with_keepalive(Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(600),
    }));
    let address = serve(state.clone()).await;
    let mut reading = Client::connect(address).await;
    let silent = Client::connect(address).await;
    assert_eq!(state.websockets.open(), 2);
    // The reading client answers pings as it reads; the silent one never polls its socket.
    assert!(reading
        .next_within(Duration::from_millis(1500))
        .await
        .is_none());
    assert_eq!(state.websockets.open(), 1, "the silent client was dropped");
    reading.subscribe("orders").await;
    drop(silent);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_shutting_down_closes_connections_with_1001() {
    let f = Fixture::new().await;
    let address = serve(f.state.clone()).await;
    let mut a = Client::connect(address).await;
    a.subscribe("orders").await;
    let handle = f.handle.clone();
    f.stop().await;
    assert!(handle.is_stopping());
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.ws.next().await {
                Some(Ok(Message::Close(close))) => return close.map(|c| c.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(closed, Some(CloseCode::Away));
}
