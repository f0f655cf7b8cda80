//! `mycelium bench` over shared memory: it measures the shm path, and on lossy topics it counts
//! what it lost and still finishes.

use super::*;

#[test]
fn bench_measures_the_shm_path_and_reports_it() {
    let broker = TestBroker::start(&format!(
        "{}{}{}",
        fanout("bench.fanout"),
        fanout("bench.ping"),
        fanout("bench.pong")
    ));
    let out = broker
        .cmd()
        .args([
            "bench",
            "--transport",
            "shm",
            "--count",
            "200000",
            "--subscribers",
            "2",
            "--json",
        ])
        .output()
        .expect("bench ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("json line")).expect("json");
    assert_eq!(json["transport"], "shm");
    assert_eq!(json["received"], 400_000);
    assert_eq!(json["lost"], 0);
    assert_eq!(json["reordered"], 0);
    let out = broker
        .cmd()
        .args(["bench", "--pingpong", "2000", "--json"])
        .output()
        .expect("pingpong ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With --json stdout is the JSON document alone.
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        json["transport"], "shm",
        "shm is the default when available: {stdout}"
    );
}

#[test]
fn bench_on_a_lossy_or_dropping_topic_counts_what_it_lost_and_finishes() {
    for policy in ["drop_newest", "drop_oldest"] {
        let broker = TestBroker::start(&format!(
            "{}backpressure = \"{policy}\"\n\n[shm]\nring_bytes = 4096\n",
            fanout("bench.fanout")
        ));
        let out = broker
            .cmd()
            .args(["bench", "--transport", "shm", "--count", "300000"])
            .args(["--idle-timeout", "1", "--json"])
            .output()
            .expect("bench ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A subscriber told of a gap goes on (its tally sees the gap) instead of failing.
        let json: serde_json::Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("{policy}: no result\n{stdout}\n{stderr}"));
        let (received, lost) = (json["received"].as_u64(), json["lost"].as_u64());
        assert_eq!(json["reordered"], 0, "{policy}");
        assert!(
            received
                .zip(lost)
                .is_some_and(|(r, l)| r + l == 300_000 && r > 0),
            "{policy}: {json}"
        );
        // A lossy run is reported as such: exit status 1 when anything was lost.
        assert_eq!(out.status.success(), lost == Some(0), "{policy}: {stderr}");
    }
}
