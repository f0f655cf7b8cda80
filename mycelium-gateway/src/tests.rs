//! The router against a real broker in this process: every status code of the API, bad
//! input, long polls, competing consumers, expiry, and the OpenAPI document kept true.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mycelium_broker::{bind_socket, BrokerHandle, Server};
use mycelium_config::BrokerConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::state::AppState;

mod dashboard;
mod websocket;

/// A running broker with the gateway's router over it.
struct Fixture {
    handle: BrokerHandle,
    state: AppState,
    router: Router,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

const TOPICS: &str = r#"
[topic_defaults]
auto_create = true

[[topics]]
name = "orders"
routing = "fanout"

[[topics]]
name = "stamped"
routing = "fanout"
stamp = true

[[topics]]
name = "small"
routing = "fanout"
max_message_size = 8
max_headers = 1
max_header_bytes = 16

[[topics]]
name = "jobs"
routing = "queue"

[[topics]]
name = "full"
routing = "fanout"
buffer_size = 1
backpressure = "block"

[[topics]]
name = "lossy"
routing = "fanout"
buffer_size = 2
backpressure = "drop_newest"

[[topics]]
name = "secure.guarded"
routing = "fanout"
publish = ["uid:0"]
subscribe = ["uid:0"]

[http]
max_body_bytes = 1024
max_wait_ms = 2000
"#;

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_topics(TOPICS).await
    }

    /// A broker on `topics` (the config after `[server]`).
    async fn with_topics(topics: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("broker.sock");
        let text = format!("[server]\nsocket_path = \"{}\"\n{topics}", socket.display());
        let config =
            BrokerConfig::from_toml_str(&text, &dir.path().join("broker.toml")).expect("config");
        let listener = bind_socket(&socket, 0o600).expect("bind");
        let server = Server::new(config).expect("server");
        let handle = server.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let _ = server
                .run(listener, Some(socket), async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let state = AppState::new(handle.clone());
        Fixture {
            router: crate::router::router(state.clone()),
            handle,
            state,
            stop: Some(stop),
            serving,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.into()).expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    async fn post(&self, uri: &str, body: &str) -> Answer {
        self.call(Method::POST, uri, &[], body.to_owned()).await
    }

    async fn subscribe(&self, topic: &str) -> String {
        let answer = self.post(&format!("/subscribe/{topic}"), "").await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.json["subscription"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.serving).await;
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

fn expect(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(
        (answer.status, answer.code()),
        (status, code),
        "{}",
        answer.text
    );
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message: {}",
        answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_with_headers_reaches_a_consumer_stamped() {
    let f = Fixture::new().await;
    let id = f.subscribe("stamped").await;
    let answer = f
        .call(
            Method::POST,
            "/publish/stamped",
            &[
                ("X-Mycelium-Header-Trace", "abc"),
                ("x-mycelium-header-k2", "v2"),
            ],
            "hello",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        (&answer.json["topic"], &answer.json["published"]),
        (&json!("stamped"), &json!(1))
    );
    let got = f.get(&format!("/consume/stamped?subscription={id}")).await;
    assert_eq!(
        (&answer.json["id"], &answer.json["timestamp"]),
        (&got.json["id"], &got.json["timestamp"]),
        "the publish answers the stamp the consumer sees"
    );
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.json["data"], "hello");
    assert_eq!(got.json["topic"], "stamped");
    assert_eq!(got.json["headers"], json!({"trace": "abc", "k2": "v2"}));
    assert!(got.json["id"]
        .as_str()
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
    assert!(got.json["timestamp"]
        .as_str()
        .is_some_and(|t| humantime::parse_rfc3339(t).is_ok()));
    let none = f.get(&format!("/consume/stamped?subscription={id}")).await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    // A binary payload comes back as base64; an unstamped topic has no id.
    let id = f.subscribe("orders").await;
    let plain = f
        .call(Method::POST, "/publish/orders", &[], vec![0u8, 1, 255])
        .await;
    assert_eq!(
        plain.json,
        json!({"topic": "orders", "published": 1}),
        "no stamp, no id"
    );
    let got = f.get(&format!("/consume/orders?subscription={id}")).await;
    assert_eq!(got.json["data_base64"], "AAH/");
    assert!(got.json.get("data").is_none());
    assert_eq!(
        (&got.json["id"], &got.json["timestamp"]),
        (&Value::Null, &Value::Null)
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_code() {
    let f = Fixture::new().await;
    // auto_create is on in the fixture: an invalid name is still 400.
    expect(
        &f.post("/publish/bad%20name", "x").await,
        StatusCode::BAD_REQUEST,
        "invalid_topic",
    );
    expect(
        &f.post("/subscribe/orders.a*", "").await,
        StatusCode::BAD_REQUEST,
        "invalid_topic",
    );
    // Body over max_body_bytes (1024), with and without Content-Length.
    expect(
        &f.post("/publish/orders", &"x".repeat(2000)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    let chunks = futures_stream(vec![vec![b'x'; 600], vec![b'y'; 600]]);
    expect(
        &f.call(
            Method::POST,
            "/publish/orders",
            &[],
            Body::from_stream(chunks),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    // Over the topic's own limits.
    expect(
        &f.post("/publish/small", "123456789").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "message_too_large",
    );
    expect(
        &f.call(
            Method::POST,
            "/publish/small",
            &[("x-mycelium-header-a", "1"), ("x-mycelium-header-b", "2")],
            "x",
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "headers_too_large",
    );
    expect(
        &f.call(
            Method::POST,
            "/publish/orders",
            &[("x-mycelium-header-", "1")],
            "x",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_header",
    );
    // Access lists: an HTTP peer has no uid.
    let denied = f.post("/publish/secure.guarded", "x").await;
    expect(&denied, StatusCode::FORBIDDEN, "access_lists");
    assert!(denied.text.contains("uid"), "{}", denied.text);
    // A pattern leaves such topics out.
    let id = f.subscribe("secure.*").await;
    let publisher = f
        .handle
        .local()
        .publisher("secure.guarded")
        .expect("in-process, unchecked");
    publisher.publish(b"secret").await.expect("published");
    f.call(Method::POST, "/publish/secure.open", &[], "open")
        .await;
    let got = f
        .get(&format!(
            "/consume/secure.*/batch?subscription={id}&wait_ms=500"
        ))
        .await;
    let topics: Vec<&Value> = got
        .json
        .as_array()
        .expect("array")
        .iter()
        .map(|m| &m["topic"])
        .collect();
    assert_eq!(topics, [&json!("secure.open")], "{}", got.text);
    expect(
        &f.post("/subscribe/secure.guarded", "").await,
        StatusCode::FORBIDDEN,
        "access_lists",
    );
    // Routes and methods.
    expect(&f.get("/nowhere").await, StatusCode::NOT_FOUND, "no_route");
    expect(
        &f.get("/publish/orders").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    expect(
        &f.call(Method::PUT, "/topics", &[], Body::empty()).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Malformed batches.
    expect(
        &f.post("/publish/batch/orders", "[\"a\",").await,
        StatusCode::BAD_REQUEST,
        "bad_json",
    );
    expect(
        &f.post("/publish/batch/orders", "{\"data\":\"a\"}").await,
        StatusCode::BAD_REQUEST,
        "bad_json",
    );
    // Subscriptions.
    expect(
        &f.get("/consume/orders?subscription=nope").await,
        StatusCode::BAD_REQUEST,
        "bad_subscription",
    );
    expect(
        &f.get("/consume/orders").await,
        StatusCode::BAD_REQUEST,
        "bad_query",
    );
    expect(
        &f.get("/consume/orders?subscription=1&wait_ms=soon").await,
        StatusCode::BAD_REQUEST,
        "bad_query",
    );
    let unknown = uuid::Uuid::new_v4();
    expect(
        &f.get(&format!("/consume/orders?subscription={unknown}"))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_subscription",
    );
    let id = f.subscribe("orders").await;
    expect(
        &f.get(&format!("/consume/stamped?subscription={id}")).await,
        StatusCode::NOT_FOUND,
        "unknown_subscription",
    );
    expect(
        &f.get(&format!("/consume/orders/batch?subscription={id}&limit=0"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_limit",
    );
    f.stop().await;
}

/// A body streamed in chunks, without a Content-Length.
fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Chunks(std::vec::IntoIter<Vec<u8>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next().map(Ok))
        }
    }
    Chunks(chunks.into_iter())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_are_404_without_auto_create() {
    let f =
        Fixture::with_topics(&TOPICS.replace("auto_create = true", "auto_create = false")).await;
    expect(
        &f.post("/publish/missing", "x").await,
        StatusCode::NOT_FOUND,
        "unknown_topic",
    );
    expect(
        &f.post("/publish/batch/missing", "[]").await,
        StatusCode::NOT_FOUND,
        "unknown_topic",
    );
    expect(
        &f.post("/subscribe/missing", "").await,
        StatusCode::NOT_FOUND,
        "unknown_topic",
    );
    expect(
        &f.get("/topics/missing/stats").await,
        StatusCode::NOT_FOUND,
        "unknown_topic",
    );
    expect(
        &f.call(Method::DELETE, "/topics/missing", &[], Body::empty())
            .await,
        StatusCode::NOT_FOUND,
        "unknown_topic",
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_published_in_order_or_not_at_all() {
    let f = Fixture::new().await;
    let id = f.subscribe("orders").await;
    let batch = json!(["one", {"data": "two", "headers": {"k": "v"}}, {"data_base64": "/w=="}]);
    let answer = f.post("/publish/batch/orders", &batch.to_string()).await;
    assert_eq!(
        answer.json,
        json!({"topic": "orders", "published": 3}),
        "{}",
        answer.text
    );
    let got = f
        .get(&format!("/consume/orders/batch?subscription={id}&limit=10"))
        .await;
    let got = got.json.as_array().expect("an array").clone();
    assert_eq!(got.len(), 3);
    assert_eq!(
        (&got[0]["data"], &got[1]["data"], &got[2]["data_base64"]),
        (&json!("one"), &json!("two"), &json!("/w=="))
    );
    assert_eq!(got[1]["headers"], json!({"k": "v"}));
    // One bad item (last) refuses all of them; so does one too large for the topic.
    for (bad, status, code) in [
        (
            json!(["ok", {"data": "a", "data_base64": "AA=="}]),
            StatusCode::BAD_REQUEST,
            "bad_batch",
        ),
        (
            json!(["ok", {"data_base64": "not base64!"}]),
            StatusCode::BAD_REQUEST,
            "bad_batch",
        ),
        (
            json!(["ok", {"data": "x", "headers": {"bad key": "v"}}]),
            StatusCode::BAD_REQUEST,
            "bad_batch",
        ),
        (json!(["ok", 42]), StatusCode::BAD_REQUEST, "bad_batch"),
        (
            json!(["ok", {"data": "x", "extra": 1}]),
            StatusCode::BAD_REQUEST,
            "bad_batch",
        ),
    ] {
        expect(
            &f.post("/publish/batch/orders", &bad.to_string()).await,
            status,
            code,
        );
    }
    expect(
        &f.post(
            "/publish/batch/small",
            &json!(["ok", "far too long"]).to_string(),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "message_too_large",
    );
    let nothing = f
        .get(&format!("/consume/orders/batch?subscription={id}"))
        .await;
    assert_eq!(
        nothing.json,
        json!([]),
        "nothing of a refused batch was published"
    );
    let stats = f.get("/topics/orders/stats").await;
    assert_eq!(stats.json["published"], 3);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_waits_and_wakes_up() {
    let f = Fixture::new().await;
    let id = f.subscribe("orders").await;
    let started = Instant::now();
    let none = f
        .get(&format!("/consume/orders?subscription={id}&wait_ms=300"))
        .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // Capped at max_wait_ms (2000).
    let started = Instant::now();
    let none = f
        .get(&format!(
            "/consume/orders/batch?subscription={id}&wait_ms=600000"
        ))
        .await;
    assert_eq!(none.json, json!([]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A message arriving meanwhile answers at once.
    let router = f.router.clone();
    let uri = format!("/consume/orders?subscription={id}&wait_ms=20000");
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let request = Request::get(uri).body(Body::empty()).expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice::<Value>(&bytes).expect("json"),
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.post("/publish/orders", "wake").await;
    let (status, message) = waiting.await.expect("the request");
    assert_eq!((status, &message["data"]), (StatusCode::OK, &json!("wake")));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_subscriptions_compete_and_fanout_ones_each_get_all() {
    let f = Fixture::new().await;
    let (a, b) = (f.subscribe("jobs").await, f.subscribe("jobs").await);
    let batch: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    f.post("/publish/batch/jobs", &json!(batch).to_string())
        .await;
    let mut seen = Vec::new();
    let mut each = [0, 0];
    for _ in 0..100 {
        for (n, id) in [&a, &b].into_iter().enumerate() {
            let got = f
                .get(&format!("/consume/jobs/batch?subscription={id}&limit=3"))
                .await;
            for message in got.json.as_array().expect("an array") {
                seen.push(
                    message["data"]
                        .as_str()
                        .expect("text")
                        .parse::<u32>()
                        .expect("a number"),
                );
                each[n] += 1;
            }
        }
        if seen.len() == 40 {
            break;
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<_>>(), "each message once");
    assert!(
        each[0] > 0 && each[1] > 0,
        "both consumers took some: {each:?}"
    );
    // Pattern subscriptions see fanout topics by their own names.
    let id = f.subscribe("orders.%3E").await;
    f.post("/publish/orders.eu", "1").await;
    f.post("/publish/orders.us.east", "2").await;
    // Both were routed before the publishes answered; a batch takes what is ready.
    let mut topics: Vec<String> = Vec::new();
    for _ in 0..2 {
        let got = f
            .get(&format!(
                "/consume/orders.%3E/batch?subscription={id}&wait_ms=1000"
            ))
            .await;
        topics.extend(
            got.json
                .as_array()
                .expect("array")
                .iter()
                .map(|m| m["topic"].as_str().expect("topic").to_owned()),
        );
        if topics.len() >= 2 {
            break;
        }
    }
    assert_eq!(topics, ["orders.eu", "orders.us.east"]);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_block_topic_answers_429_and_a_lossy_one_tells_the_lag() {
    let f = Fixture::new().await;
    let _stalled = f.subscribe("full").await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let answer = f.post("/publish/full", "x").await;
        let stop = answer.status == StatusCode::TOO_MANY_REQUESTS;
        answers.push(answer);
        if stop {
            break;
        }
    }
    let last = answers.last().expect("answers");
    expect(last, StatusCode::TOO_MANY_REQUESTS, "backpressure");
    assert_eq!(
        last.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(answers.len() >= 2, "the first fits");

    let id = f.subscribe("lossy").await;
    f.post(
        "/publish/batch/lossy",
        &json!(["0", "1", "2", "3", "4"]).to_string(),
    )
    .await;
    let kept = f
        .get(&format!("/consume/lossy/batch?subscription={id}"))
        .await;
    let kept = kept.json.as_array().expect("array").clone();
    assert_eq!(
        kept.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(),
        [json!("0"), json!("1")]
    );
    f.post("/publish/lossy", "5").await;
    let next = f
        .get(&format!("/consume/lossy?subscription={id}&wait_ms=1000"))
        .await;
    assert_eq!(
        (&next.json["data"], &next.json["lagged"]),
        (&json!("5"), &json!(3)),
        "{}",
        next.text
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscriptions_are_removed_and_busy_ones_kept() {
    let f = Fixture::new().await;
    let idle = f.subscribe("orders").await;
    let busy = f.subscribe("orders").await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    f.get(&format!("/consume/orders?subscription={busy}")).await;
    assert_eq!(f.state.subscriptions.sweep(50), 1);
    assert_eq!(f.state.subscriptions.len(), 1);
    expect(
        &f.get(&format!("/consume/orders?subscription={idle}")).await,
        StatusCode::NOT_FOUND,
        "unknown_subscription",
    );
    assert_eq!(
        f.get(&format!("/consume/orders?subscription={busy}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let topic = f.handle.registry().get_by_name("orders").expect("orders");
    assert_eq!(
        topic.subscriber_count(),
        1,
        "the removed subscription left the topic"
    );
    let ended = f
        .call(
            Method::DELETE,
            &format!("/subscribe/orders?subscription={busy}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.text);
    assert_eq!(topic.subscriber_count(), 0);
    expect(
        &f.call(
            Method::DELETE,
            &format!("/subscribe/orders?subscription={busy}"),
            &[],
            Body::empty(),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_subscription",
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_auto_created_topics_are_deleted() {
    let f = Fixture::new().await;
    f.post("/publish/made.here", "x").await;
    let id = f.subscribe("made.here").await;
    let listed = f.get("/topics").await;
    let made = listed.json["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == "made.here")
        .cloned()
        .expect("listed");
    assert_eq!(
        (&made["dynamic"], &made["published"], &made["subscribers"]),
        (&json!(true), &json!(1), &json!(1))
    );
    let deleted = f
        .call(Method::DELETE, "/topics/made.here", &[], Body::empty())
        .await;
    assert_eq!(
        deleted.json,
        json!({"topic": "made.here", "deleted": true}),
        "{}",
        deleted.text
    );
    expect(
        &f.get(&format!("/consume/made.here?subscription={id}"))
            .await,
        StatusCode::GONE,
        "subscription_ended",
    );
    expect(
        &f.get(&format!("/consume/made.here?subscription={id}"))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_subscription",
    );
    let refused = f
        .call(Method::DELETE, "/topics/orders", &[], Body::empty())
        .await;
    expect(&refused, StatusCode::CONFLICT, "declared_topic");
    assert!(refused.text.contains("declared"), "{}", refused.text);
    assert!(f.handle.registry().get_by_name("orders").is_some());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_every_request_answer_503_once_the_broker_stops() {
    let mut f = Fixture::new().await;
    let ok = f.get("/health").await;
    assert_eq!(
        (ok.status, ok.json.clone()),
        (StatusCode::OK, json!({"status": "serving"}))
    );
    let id = f.subscribe("orders").await;
    let router = f.router.clone();
    let uri = format!("/consume/orders?subscription={id}&wait_ms=20000");
    let waiting = tokio::spawn(async move {
        router
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
            .status()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = f.stop.take().map(|stop| stop.send(()));
    tokio::time::timeout(Duration::from_secs(30), f.handle.stopping())
        .await
        .expect("stopping");
    let started = Instant::now();
    assert_eq!(
        waiting.await.expect("request"),
        StatusCode::SERVICE_UNAVAILABLE,
        "the long poll ends"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let health = f.get("/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.json["status"], "shutting_down");
    expect(
        &f.post("/publish/orders", "x").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
    );
    expect(
        &f.post("/subscribe/orders", "").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_the_topics_figures() {
    let f = Fixture::new().await;
    let _id = f.subscribe("orders").await;
    f.post("/publish/orders", "x").await;
    let answer = f.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["content-type"],
        crate::prometheus::CONTENT_TYPE
    );
    for line in [
        "# TYPE mycelium_messages_published counter",
        "mycelium_messages_published_total{topic=\"orders\"} 1",
        "mycelium_messages_delivered_total{topic=\"orders\"} 1",
        "mycelium_messages_dropped_total{topic=\"orders\",reason=\"drop_newest\"} 0",
        "mycelium_messages_dropped_total{topic=\"orders\",reason=\"slow_consumer\"} 0",
        "mycelium_received_bytes_total{topic=\"orders\"} 1",
        "mycelium_sent_bytes_total{topic=\"orders\"} 1",
        "mycelium_subscribers{topic=\"orders\",transport=\"in_process\"} 1",
        "mycelium_subscribers{topic=\"orders\",transport=\"socket\"} 0",
        "mycelium_subscribers{topic=\"orders\",transport=\"shm\"} 0",
        "mycelium_topic_depth_messages{topic=\"jobs\"} 0",
        "mycelium_subscriber_lag_messages{topic=\"orders\"} 1",
        "# TYPE mycelium_delivery_latency_seconds histogram",
        "mycelium_delivery_latency_seconds_count 0",
        "mycelium_delivery_latency_seconds_bucket{le=\"+Inf\"} 0",
        "mycelium_connections{kind=\"messages\"} 0",
        "mycelium_connections{kind=\"shm\"} 0",
        "mycelium_connections{kind=\"websocket\"} 0",
        "mycelium_config_generation 1",
        "mycelium_config_reloads_total{result=\"ok\"} 0",
        "mycelium_config_reloads_total{result=\"failed\"} 0",
        "mycelium_config_last_reload_success 1",
        "mycelium_latency_recording 1",
        "# EOF",
    ] {
        assert!(
            answer.text.lines().any(|l| l == line),
            "no line {line:?} in\n{}",
            answer.text
        );
    }
    f.stop().await;
}

/// `GET /topics/{topic}/stats` carries the topic's metrics beside its counters: subscribers by
/// transport, drops by reason, bytes, depth and the slowest subscriber's lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_stats_carry_transport_lag_bytes_and_latency() {
    let f = Fixture::new().await;
    let _id = f.subscribe("orders").await;
    f.post("/publish/orders", "abc").await;
    f.post("/publish/orders", "de").await;
    let stats = f.get("/topics/orders/stats").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let t = &stats.json;
    assert_eq!(
        t["subscribers_by_transport"],
        json!({"socket": 0, "shm": 0, "in_process": 1})
    );
    assert_eq!(
        (&t["subscribers"], &t["shm_subscribers"]),
        (&json!(1), &json!(0))
    );
    assert_eq!((&t["published"], &t["delivered"]), (&json!(2), &json!(2)));
    assert_eq!((&t["bytes_in"], &t["bytes_out"]), (&json!(5), &json!(5)));
    assert_eq!(t["dropped_by"]["drop_newest"], json!(0));
    // Nobody consumed yet: both wait toward the HTTP subscription.
    assert_eq!(t["lag"], json!({"messages": 2, "shm_bytes": null}));
    assert_eq!(t["depth"], json!(2));
    // Publishes through the gateway are not timed: no latency sample.
    assert_eq!(
        t["latency"],
        json!({"count": 0, "p50_us": null, "p99_us": null, "p999_us": null})
    );
    f.stop().await;
}

/// The OpenAPI document names exactly the router's paths, each path answers exactly the
/// methods the document lists (405 for the others), and every operation's example request
/// succeeds with a status the document lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_router_and_its_examples_work() {
    let f = Fixture::new().await;
    let served = f.get("/openapi.json").await;
    assert_eq!(served.status, StatusCode::OK);
    let doc: Value = serde_json::from_str(crate::openapi::DOCUMENT).expect("valid JSON");
    assert_eq!(served.json, doc);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut routed: Vec<&str> = crate::router::routes()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    documented.sort_unstable();
    routed.sort_unstable();
    assert_eq!(documented, routed, "the document's paths are the router's");

    // Examples: a subscription to consume from, a dynamic topic to delete.
    f.post("/publish/orders.scratch", "x").await;
    let subscription = f.subscribe("orders").await;
    f.post("/publish/batch/orders", &json!(["a", "b", "c"]).to_string())
        .await;
    // Publishes and subscribes first, deletes last, so each example finds what it needs.
    let rank = |method: &str, path: &str| match (method, path) {
        ("post", _) => 0,
        ("get", _) => 1,
        (_, "/subscribe/{topic}") => 3,
        _ => 2,
    };
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete", "patch"] {
            match item.get(method) {
                Some(operation) => {
                    operations.push((rank(method, path), method, path.as_str(), operation))
                }
                None => {
                    let uri = path.replace("{topic}", "orders");
                    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                    let answer = f.call(m, &uri, &[], Body::empty()).await;
                    assert_eq!(
                        answer.status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is served but not documented"
                    );
                }
            }
        }
    }
    operations.sort_by_key(|(rank, ..)| *rank);
    for (_, method, path, operation) in operations {
        if operation["x-websocket"] == json!(true) {
            // Its handshake and frames are exercised by the tests in `websocket`; a plain
            // request answers with a status the document lists.
            let answer = f.get(path).await;
            expect(&answer, StatusCode::UPGRADE_REQUIRED, "websocket_required");
            assert!(
                operation["responses"].get("426").is_some(),
                "{path}: 426 listed"
            );
            assert!(
                operation["responses"].get("101").is_some(),
                "{path}: 101 listed"
            );
            continue;
        }
        let mut uri = path.to_owned();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().expect("name");
            let example = match &parameter["example"] {
                Value::String(s) => s.clone(),
                Value::Null => panic!("{method} {path}: parameter {name} has no example"),
                other => other.to_string(),
            };
            let example = if name == "subscription" {
                subscription.clone()
            } else {
                example
            };
            match parameter["in"].as_str() {
                Some("path") => uri = uri.replace(&format!("{{{name}}}"), &example),
                Some("query") => query.push(format!("{name}={example}")),
                Some("header") => headers.push((name.to_owned(), example)),
                other => panic!("{method} {path}: parameter in {other:?}"),
            }
        }
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        let body = match operation["requestBody"]["content"]
            .as_object()
            .and_then(|c| c.values().next())
        {
            Some(content) => match &content["example"] {
                Value::String(s) => s.clone(),
                Value::Null => panic!("{method} {path}: the request body has no example"),
                other => other.to_string(),
            },
            None => String::new(),
        };
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let answer = f.call(m, &uri, &header_refs, body).await;
        assert!(
            answer.status.is_success(),
            "{method} {uri}: {} {}",
            answer.status,
            answer.text
        );
        let listed = operation["responses"].get(answer.status.as_str()).is_some();
        assert!(
            listed,
            "{method} {path}: answered {} which the document does not list",
            answer.status
        );
    }
    f.stop().await;
}

/// The Grafana dashboard in docs/ queries only metric families `/metrics` serves (now, or
/// once their condition holds), and docs/http.md documents every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_served_metrics() {
    let dashboard: Value =
        serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).expect("JSON");
    let f = Fixture::new().await;
    let text = f.get("/metrics").await.text;
    let served: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("mycelium_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                queried.push(name);
            }
        }
    }
    assert!(queried.len() > 10, "{queried:?}");
    for name in &queried {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            served.contains(&family) || crate::prometheus::CONDITIONAL_FAMILIES.contains(&family),
            "the dashboard queries {name}, which /metrics does not serve ({served:?})"
        );
    }
    let documented = include_str!("../../docs/http.md");
    for family in served
        .iter()
        .chain(crate::prometheus::CONDITIONAL_FAMILIES.iter())
    {
        assert!(
            documented.contains(&format!("`{family}")),
            "docs/http.md does not document {family}"
        );
    }
    f.stop().await;
}
