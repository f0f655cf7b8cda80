//! `GET /metrics`: the broker's figures in the Prometheus (OpenMetrics) text format, rendered
//! with the `prometheus-client` crate from one [`BrokerMetrics`] snapshot per scrape.
//!
//! - Names follow Prometheus conventions: prefix `mycelium_`, base units in names (seconds,
//!   bytes), `_total` on counters. Per topic: `mycelium_messages_published_total{topic}`,
//!   `mycelium_messages_delivered_total{topic}`, `mycelium_messages_dropped_total{topic,reason}`
//!   (every reason the broker knows, zeros included, so a rate query never misses a series),
//!   `mycelium_received_bytes_total{topic}`, `mycelium_sent_bytes_total{topic}`,
//!   `mycelium_subscribers{topic,transport}` (`socket`, `shm`, `in_process`: the gateway's and
//!   other in-process subscribers), `mycelium_topic_depth_messages{topic}`,
//!   `mycelium_topic_backlog_messages{topic}`, `mycelium_subscriber_lag_messages{topic}` (the
//!   fullest socket or in-process subscriber's queue) and `mycelium_subscriber_lag_bytes{topic}`
//!   (the slowest shared-memory reader), the latter two only for topics with such subscribers,
//!   and `mycelium_topic_delivery_latency_seconds{topic,quantile}` (0.5, 0.99, 0.999) for topics
//!   with samples. Broker-wide: `mycelium_delivery_latency_seconds` (a histogram),
//!   `mycelium_connections{kind}` (`messages`, `shm`, `websocket`), `mycelium_config_generation`,
//!   `mycelium_config_reloads_total{result}` (`ok`, `failed`),
//!   `mycelium_config_last_reload_success` (0/1, 1 before any reload),
//!   `mycelium_config_last_reload_timestamp_seconds` (after the first reload),
//!   `mycelium_latency_recording` (0/1: `[metrics] enabled`), `mycelium_uptime_seconds`.
//! - The histogram's `le` bounds are fixed (1 µs to 10 s); each counts the samples of the
//!   broker's own log-linear buckets that lie wholly below it, so a count may lag the true one
//!   by the samples of one bucket (at most 12.5 % wide) straddling the bound.
//! - Nothing is counted here: a scrape reads the broker's counters, so the hot paths pay
//!   nothing for it.

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mycelium_broker::{BrokerMetrics, DropReason, LatencySnapshot};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// What `/metrics` answers with: OpenMetrics 1.0, which Prometheus scrapes natively.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `le` bounds of `mycelium_delivery_latency_seconds`, in seconds.
const LATENCY_BOUNDS: [f64; 22] = [
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Families with no sample at all until their condition holds (subscribers of a kind, latency
/// samples, a reload), and so absent from the text until then.
#[cfg(test)]
pub(crate) const CONDITIONAL_FAMILIES: [&str; 4] = [
    "mycelium_subscriber_lag_messages",
    "mycelium_subscriber_lag_bytes",
    "mycelium_topic_delivery_latency_seconds",
    "mycelium_config_last_reload_timestamp_seconds",
];

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn to_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A latency snapshot as an OpenMetrics histogram of [`LATENCY_BOUNDS`].
#[derive(Debug)]
struct LatencyHistogram(LatencySnapshot);

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder sums the buckets it is given into the cumulative `le` counts.
        let mut below_previous = 0;
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .map(|&bound| {
                let below = self.0.count_below(Duration::from_secs_f64(bound));
                let in_bucket = below.saturating_sub(below_previous);
                below_previous = below;
                (bound, in_bucket)
            })
            .collect();
        buckets.push((f64::MAX, self.0.count.saturating_sub(below_previous)));
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum.as_secs_f64(),
            self.0.count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `metrics` in the OpenMetrics text format, with the gateway's `websockets` open now.
pub(crate) fn render(
    metrics: &BrokerMetrics,
    websockets: usize,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("mycelium");
    register_topics(&mut registry, metrics);
    register_broker(&mut registry, metrics, websockets);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

fn register_topics(registry: &mut Registry, metrics: &BrokerMetrics) {
    let published = Family::<Labels, Counter>::default();
    let delivered = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let received = Family::<Labels, Counter>::default();
    let sent = Family::<Labels, Counter>::default();
    let subscribers = Family::<Labels, Gauge>::default();
    let depth = Family::<Labels, Gauge>::default();
    let backlog = Family::<Labels, Gauge>::default();
    let lag_messages = Family::<Labels, Gauge>::default();
    let lag_bytes = Family::<Labels, Gauge>::default();
    let latency = Family::<Labels, FloatGauge>::default();
    for topic in &metrics.topics {
        let name = || ("topic", topic.name.clone());
        let labels = vec![name()];
        published.get_or_create(&labels).inc_by(topic.published);
        delivered.get_or_create(&labels).inc_by(topic.delivered);
        received.get_or_create(&labels).inc_by(topic.bytes_in);
        sent.get_or_create(&labels).inc_by(topic.bytes_out);
        depth.get_or_create(&labels).set(to_i64(topic.depth));
        backlog.get_or_create(&labels).set(to_i64(topic.backlog));
        for reason in DropReason::ALL {
            dropped
                .get_or_create(&vec![name(), ("reason", reason.as_str().to_owned())])
                .inc_by(topic.dropped_by.get(reason));
        }
        let counts = topic.subscribers;
        for (transport, count) in [
            ("socket", counts.socket),
            ("shm", counts.shm),
            ("in_process", counts.in_process),
        ] {
            subscribers
                .get_or_create(&vec![name(), ("transport", transport.to_owned())])
                .set(to_i64(count));
        }
        if let Some(queued) = topic.lag.queued_messages {
            lag_messages.get_or_create(&labels).set(to_i64(queued));
        }
        if let Some(bytes) = topic.lag.shm_bytes {
            lag_bytes.get_or_create(&labels).set(to_i64(bytes));
        }
        let summary = topic.latency;
        for (quantile, value) in [
            ("0.5", summary.p50),
            ("0.99", summary.p99),
            ("0.999", summary.p999),
        ] {
            if let Some(value) = value {
                latency
                    .get_or_create(&vec![name(), ("quantile", quantile.to_owned())])
                    .set(value.as_secs_f64());
            }
        }
    }
    registry.register(
        "messages_published",
        "Messages accepted from publishers",
        published,
    );
    registry.register(
        "messages_delivered",
        "Message copies handed to subscribers",
        delivered,
    );
    registry.register(
        "messages_dropped",
        "Message copies lost, by reason (the topic's backpressure policy, a slow consumer \
         detached, the publish deadline, the topic removed, an invalid message, shared memory)",
        dropped,
    );
    registry.register(
        "received_bytes",
        "Bytes of the messages accepted from publishers (payloads with their envelopes)",
        received,
    );
    registry.register(
        "sent_bytes",
        "Bytes of the message copies handed to subscribers",
        sent,
    );
    registry.register(
        "subscribers",
        "Current subscribers by transport",
        subscribers,
    );
    registry.register(
        "topic_depth_messages",
        "Messages waiting: a queue topic's backlog plus what is queued toward socket and \
         in-process subscribers",
        depth,
    );
    registry.register(
        "topic_backlog_messages",
        "Messages in a queue topic's backlog",
        backlog,
    );
    registry.register(
        "subscriber_lag_messages",
        "Messages queued toward the topic's fullest socket or in-process subscriber",
        lag_messages,
    );
    registry.register(
        "subscriber_lag_bytes",
        "Bytes the topic's slowest shared-memory subscriber has yet to read",
        lag_bytes,
    );
    registry.register(
        "topic_delivery_latency_seconds",
        "Publish-to-deliver latency through the broker, per topic (one sample per routed batch)",
        latency,
    );
}

fn register_broker(registry: &mut Registry, metrics: &BrokerMetrics, websockets: usize) {
    registry.register(
        "delivery_latency_seconds",
        "Publish-to-deliver latency through the broker, all topics (one sample per routed batch)",
        LatencyHistogram(metrics.latency.clone()),
    );
    let connections = Family::<Labels, Gauge>::default();
    for (kind, count) in [
        ("messages", metrics.connections.messages),
        ("shm", metrics.connections.shm_sessions),
        ("websocket", websockets),
    ] {
        connections
            .get_or_create(&vec![("kind", kind.to_owned())])
            .set(to_i64(count));
    }
    registry.register(
        "connections",
        "Connections past their handshake: message connections, shared-memory sessions and the \
         gateway's WebSockets",
        connections,
    );
    let config = &metrics.config;
    let generation = Gauge::<i64>::default();
    generation.set(to_i64(config.generation));
    registry.register(
        "config_generation",
        "The config's generation: 1 at start, one more per applied reload",
        generation,
    );
    let reloads = Family::<Labels, Counter>::default();
    reloads
        .get_or_create(&vec![("result", "ok".to_owned())])
        .inc_by(config.reloads_ok);
    reloads
        .get_or_create(&vec![("result", "failed".to_owned())])
        .inc_by(config.reloads_failed);
    registry.register("config_reloads", "Reload attempts finished", reloads);
    let success = Gauge::<i64>::default();
    success.set(i64::from(config.last.as_ref().is_none_or(|l| l.success)));
    registry.register(
        "config_last_reload_success",
        "1 unless the last reload attempt failed",
        success,
    );
    if let Some(last) = &config.last {
        let at = FloatGauge::default();
        at.set(
            last.at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        registry.register(
            "config_last_reload_timestamp_seconds",
            "When the last reload attempt finished, in seconds since the Unix epoch",
            at,
        );
    }
    let recording = Gauge::<i64>::default();
    recording.set(i64::from(metrics.latency_enabled));
    registry.register(
        "latency_recording",
        "1 while the broker records latency ([metrics] enabled)",
        recording,
    );
    let uptime = FloatGauge::default();
    uptime.set(metrics.uptime.as_secs_f64());
    registry.register("uptime_seconds", "Time since the broker started", uptime);
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state.handle.metrics(), state.websockets.open()) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the metrics failed",
        )
            .into_response(),
    }
}
