//! `GET /`: the broker's dashboard, one HTML page with its script and style sheet
//! (`GET /dashboard.js`, `GET /dashboard.css`), written by hand in `dashboard/` beside this
//! file and compiled in: no build step, no library, nothing fetched from elsewhere.
//!
//! - The page polls `GET /topics` every second and shows each topic (routing, kind,
//!   subscribers, totals) with its publish and delivery rates, and draws the last minute
//!   of the rates and of the backlog on canvas line charts.
//! - It is served with `Cache-Control: no-cache`, so that a broker upgrade shows its own.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `GET /`.
pub(crate) async fn page() -> impl IntoResponse {
    file("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard.js`.
pub(crate) async fn script() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard.css`.
pub(crate) async fn style() -> impl IntoResponse {
    file("text/css; charset=utf-8", STYLE)
}
