//! The dashboard's files as served: the page, its script and style sheet, with their
//! content types, and nothing fetched from elsewhere. (A real browser runs the page in the
//! root package's `tests/dashboard_browser.rs`.)

use axum::http::{header, StatusCode};

use super::Fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_script_and_style_are_served_self_contained() {
    let f = Fixture::new().await;
    for (path, content_type, marker) in [
        ("/", "text/html", "<canvas"),
        ("/dashboard.js", "text/javascript", "fetch(\"/topics\""),
        ("/dashboard.css", "text/css", "canvas"),
    ] {
        let answer = f.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        let served = answer.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ASCII");
        assert!(served.starts_with(content_type), "{path}: {served}");
        assert!(answer.text.contains(marker), "{path}");
        // No CDN: the machine running the broker may have no internet.
        for external in ["http://", "https://", "//cdn"] {
            assert!(!answer.text.contains(external), "{path} loads {external}");
        }
    }
    let page = f.get("/").await.text;
    assert!(page.contains("src=\"/dashboard.js\""));
    assert!(page.contains("href=\"/dashboard.css\""));
    f.stop().await;
}
