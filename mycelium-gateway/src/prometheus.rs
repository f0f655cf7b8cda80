//! `GET /metrics`: the broker's figures in the Prometheus (OpenMetrics) text format, rendered
//! with the `prometheus-client` crate from a snapshot taken per scrape.
//!
//! - Names follow Prometheus conventions: prefix `mycelium_`, units in names, `_total` on
//!   counters: `mycelium_messages_published_total{topic}`,
//!   `mycelium_messages_delivered_total{topic}`, `mycelium_messages_dropped_total{topic}`,
//!   `mycelium_subscribers{topic,transport}` (`socket` counts in-process and HTTP ones too,
//!   `shm`), `mycelium_topic_depth_messages{topic}`, `mycelium_connections`,
//!   `mycelium_config_generation`, `mycelium_config_reloads_total`,
//!   `mycelium_config_last_reload_success` (0/1), `mycelium_uptime_seconds`.
//! - Built from [`BrokerStatistics`] (what `mycelium stats` shows). Nothing is counted here:
//!   a scrape reads the broker's own counters, so the hot paths pay nothing for it.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mycelium_broker::BrokerStatistics;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// What `/metrics` answers with: OpenMetrics 1.0, which Prometheus scrapes natively.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// `statistics` in the OpenMetrics text format.
pub(crate) fn render(statistics: &BrokerStatistics) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("mycelium");

    let published = Family::<Labels, Counter>::default();
    let delivered = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let subscribers = Family::<Labels, Gauge>::default();
    let depth = Family::<Labels, Gauge>::default();
    for topic in &statistics.topics {
        let labels = vec![("topic", topic.name.clone())];
        published.get_or_create(&labels).inc_by(topic.published);
        delivered.get_or_create(&labels).inc_by(topic.delivered);
        dropped.get_or_create(&labels).inc_by(topic.dropped);
        depth
            .get_or_create(&labels)
            .set(i64::try_from(topic.queued).unwrap_or(i64::MAX));
        for (transport, count) in [
            ("socket", topic.subscribers),
            ("shm", topic.shm_subscribers),
        ] {
            subscribers
                .get_or_create(&vec![
                    ("topic", topic.name.clone()),
                    ("transport", transport.to_owned()),
                ])
                .set(i64::from(count));
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
        "Messages or copies discarded by the topic's backpressure policy",
        dropped,
    );
    registry.register(
        "subscribers",
        "Current subscribers by transport (socket counts in-process and HTTP subscribers too)",
        subscribers,
    );
    registry.register(
        "topic_depth_messages",
        "Messages waiting in a queue topic's backlog",
        depth,
    );

    let connections = Gauge::<i64>::default();
    connections.set(i64::try_from(statistics.connections).unwrap_or(i64::MAX));
    registry.register(
        "connections",
        "Connections past their handshake (message connections and shared-memory sessions)",
        connections,
    );
    let config = &statistics.config;
    let generation = Gauge::<i64>::default();
    generation.set(i64::try_from(config.generation).unwrap_or(i64::MAX));
    registry.register(
        "config_generation",
        "The config's generation: 1 at start, one more per applied reload",
        generation,
    );
    let reloads = Counter::<u64>::default();
    reloads.inc_by(config.reloads);
    registry.register(
        "config_reloads",
        "Reload attempts finished (applied, unchanged or failed)",
        reloads,
    );
    let success = Gauge::<i64>::default();
    success.set(i64::from(config.last_error.is_empty()));
    registry.register(
        "config_last_reload_success",
        "1 unless the last reload attempt failed",
        success,
    );
    let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    uptime.set(statistics.uptime.as_secs_f64());
    registry.register("uptime_seconds", "Time since the broker started", uptime);

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state.handle.statistics()) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the metrics failed",
        )
            .into_response(),
    }
}
