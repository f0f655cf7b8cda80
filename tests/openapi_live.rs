//! The gateway's OpenAPI document checked against the live server by a tool no one here
//! wrote: schemathesis reads `/openapi.json` from `mycelium run` and sends every operation
//! generated requests (valid and invalid ones, its examples, boundary values, and chains
//! along the document's links, such as subscribe then consume), failing on any 5xx, any
//! response whose status, content type or body the document does not describe, a request
//! the document calls invalid that is answered 2xx, or one it calls valid that is refused;
//! and on the broker dying under it.
//!
//! `GET /ws` is left out: it is a WebSocket handshake (`"x-websocket": true`), whose 101
//! answer no HTTP request generator can make or follow; `tests/websocket_python.rs` covers
//! it. The seed is fixed, so a failure reproduces (schemathesis prints a `curl` line for
//! each).
//!
//! Skipped, saying so, when `python3` or its `schemathesis` package is missing (`.ci/run`
//! installs it).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_serving, wait_until, TestBroker};

/// Longest the whole schemathesis run may take before the test gives up on it.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn schemathesis_finds_the_live_gateway_as_its_openapi_document_says() {
    let usable = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        println!(
            "SKIPPED: python3 with the schemathesis package is needed (pip install schemathesis)"
        );
        return;
    }
    let port = free_port();
    // Every kind of topic a request can meet; long polls capped short so generated
    // `wait_ms` values cost little.
    let mut broker = TestBroker::start(&format!(
        "[topic_defaults]\nauto_create = true\n\n\
         [[topics]]\nname = \"orders\"\nrouting = \"fanout\"\n\n\
         [[topics]]\nname = \"jobs\"\nrouting = \"queue\"\n\n\
         [[topics]]\nname = \"stamped\"\nrouting = \"fanout\"\nstamp = true\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\nmax_wait_ms = 100\n"
    ));
    wait_until("the gateway to serve", || http_serving(port));

    let report = tempfile::tempdir().expect("a directory for schemathesis' files");
    let started = Instant::now();
    let mut child = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://127.0.0.1:{port}/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection,positive_data_acceptance",
            "--exclude-path",
            "/ws",
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--request-timeout",
            "5",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .current_dir(report.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running schemathesis");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("schemathesis' status") {
            break Some(status);
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    println!("{output}");
    println!(
        "schemathesis ran for {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !broker.is_running() {
        panic!("the broker died under schemathesis:\n{}", broker.wait().1);
    }
    match status {
        None => panic!("schemathesis did not finish within {RUN_DEADLINE:?}:\n{output}"),
        Some(status) => assert!(
            status.success(),
            "schemathesis found the gateway and its OpenAPI document disagreeing ({status}):\n{output}"
        ),
    }
    assert!(
        output.contains("passed") && !output.contains("0 generated"),
        "schemathesis tested nothing:\n{output}"
    );
}
