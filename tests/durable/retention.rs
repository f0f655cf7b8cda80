//! Retention deletes whole sealed segments, oldest first, and `mycelium topics` shows what is
//! left.

use super::common::pubsub_support::{run_to_end, spawn_pub_with};
use super::common::{wait_until, TestBroker};

fn topics_json(broker: &TestBroker) -> Vec<serde_json::Value> {
    let out = run_to_end(broker.cmd().args(["topics", "--json"]));
    assert!(out.status.success(), "{}", out.stderr);
    out.stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the log's directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[test]
fn retention_by_count_deletes_the_oldest_whole_segments_and_topics_shows_the_rest() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&format!(
        "[storage]\ndata_dir = \"{}\"\nsegment_bytes = 4096\n\n[[topics]]\nname = \"trimmed\"\n\
         routing = \"fanout\"\ndurable = true\nretention_messages = 20\n\n[[topics]]\n\
         name = \"fleeting\"\nrouting = \"fanout\"\n",
        data.path().display()
    ));
    // Twelve publishers one after another: a batch lies whole in one segment, so the log is
    // cut into several segments whatever the reads gather.
    for round in 0..12 {
        let lines =
            (0..25).map(move |n| format!("message {:04} {}", round * 25 + n, "x".repeat(40)));
        let (status, stderr) = spawn_pub_with(&broker, "trimmed", &[], lines).finish();
        assert!(status.success(), "{stderr}");
    }
    let log_dir = data.path().join("trimmed");
    wait_until("every message to be stored", || {
        topics_json(&broker)
            .iter()
            .any(|t| t["name"] == "trimmed" && t["next_offset"] == 300)
    });
    // Rounds run once a second: wait until one ran after the last message was stored.
    wait_until("retention to delete the oldest segments", || {
        let files = segments(&log_dir);
        // Done when deleting the oldest file left would keep fewer than 20.
        files.len() == 1
            || files
                .get(1)
                .and_then(|name| name.trim_end_matches(".log").parse::<u64>().ok())
                .is_some_and(|second| 300 - second < 20)
    });
    let topics = topics_json(&broker);
    let trimmed = topics
        .iter()
        .find(|t| t["name"] == "trimmed")
        .expect("listed");
    let first = trimmed["first_offset"].as_u64().expect("first_offset");
    let kept = trimmed["retained_messages"]
        .as_u64()
        .expect("retained_messages");
    assert_eq!(trimmed["last_offset"], 299);
    assert_eq!(first + kept, 300, "{trimmed}");
    // Whole segments only, and at least the newest 20 are kept.
    assert!(kept >= 20 && first > 0, "{trimmed}");
    let files = segments(&log_dir);
    assert_eq!(
        files.first().map(String::as_str),
        Some(format!("{first:020}.log").as_str()),
        "the oldest file left starts at the first offset: {files:?}"
    );
    let fleeting = topics
        .iter()
        .find(|t| t["name"] == "fleeting")
        .expect("listed");
    assert_eq!(fleeting["durable"], false);

    // The table says the same.
    let table = run_to_end(broker.cmd().arg("topics"));
    assert!(table.status.success(), "{}", table.stderr);
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with("trimmed"))
        .expect("a row for the durable topic");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "disk");
    assert_eq!(cells[2], kept.to_string());
    assert_eq!(cells[4..], [first.to_string(), "299".to_owned()]);
    assert!(table
        .stdout
        .lines()
        .any(|l| l.starts_with("fleeting") && l.contains("memory")));
    let durable_only = run_to_end(broker.cmd().args(["topics", "--durable"]));
    assert!(
        !durable_only.stdout.contains("fleeting"),
        "{}",
        durable_only.stdout
    );
}
