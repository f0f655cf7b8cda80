//! What the `mycelium` commands print is true and machine-readable where it says so: counts
//! that match what happened, `--json` output that is JSON alone, every problem of a config
//! file reported, messages without stray runs of spaces, and config files of absurd size
//! refused with a clear error.

mod common;

use std::path::Path;

use common::pubsub_support::run_to_end;
use common::TestBroker;

/// The text of every string literal in `source` (Rust), as the compiler sees it: a `\` at the
/// end of a line continues the literal without the next line's indentation. Comments, raw
/// strings and char literals are skipped. Approximate, but exact for this tree's code.
fn string_literals(source: &str) -> Vec<(usize, String)> {
    let s = source.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"//") {
            i = s[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(s.len(), |p| i + p);
        } else if s[i..].starts_with(b"/*") {
            i = source[i..].find("*/").map_or(s.len(), |p| i + p + 2);
        } else if s[i] == b'r'
            && (i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_'))
            && matches!(s.get(i + 1), Some(b'"' | b'#'))
        {
            let hashes = s[i + 1..].iter().take_while(|&&b| b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 1 + hashes + 1;
            i = source[start.min(s.len())..]
                .find(&close)
                .map_or(s.len(), |p| start + p + close.len());
        } else if s[i] == b'\'' {
            // A char literal ('"' among them) or a lifetime.
            if s.get(i + 1) == Some(&b'\\') {
                i += s[i + 2..]
                    .iter()
                    .position(|&b| b == b'\'')
                    .map_or(1, |p| p + 3);
            } else if s.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if s[i] == b'"' {
            let line = source[..i].matches('\n').count() + 1;
            let mut text = String::new();
            let mut j = i + 1;
            while j < s.len() && s[j] != b'"' {
                if s[j] == b'\\' {
                    if s.get(j + 1) == Some(&b'\n') {
                        j += 2;
                        while j < s.len() && s[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        continue;
                    }
                    text.push_str(&source[j..(j + 2).min(s.len())]);
                    j += 2;
                    continue;
                }
                let ch = source[j..].chars().next().unwrap_or(' ');
                text.push(ch);
                j += ch.len_utf8();
            }
            found.push((line, text));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    found
}

/// Every `.rs` file under `dir`, `target` excluded.
fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" {
                rust_files(&path, into);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// A message literal broken over lines without a `\` (or reflowed) carries the next line's
/// indentation: "run on the              built-in defaults". None in the tree.
#[test]
fn no_string_literal_carries_a_run_of_spaces_or_a_line_break_with_indentation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "tests",
        "benches",
        "mycelium-broker",
        "mycelium-config",
        "mycelium-transport",
        "fuzz",
        "peers",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let flawed = |text: &str| text.trim().contains("   ") || text.contains("\n  ");
    // The scanner itself: a literal broken without `\`, and one reflowed, are caught; a
    // continued one is not.
    let gap = " ".repeat(8);
    let samples = format!(
        "let a = \"broken\n{gap}here\"; let b = \"reflowed{gap}here\"; \
         let c = \"continued \\\n{gap}here\";"
    );
    let caught: Vec<bool> = string_literals(&samples)
        .iter()
        .map(|(_, text)| flawed(text))
        .collect();
    assert_eq!(caught, [true, true, false], "the scanner is wrong");
    let mut bad = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("reading a source file");
        for (line, text) in string_literals(&source) {
            if flawed(&text) {
                bad.push(format!("{}:{line}: {text:?}", file.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "string literals with a run of spaces:\n{}",
        bad.join("\n")
    );
}

/// The reload refused for an empty file says so in one clean sentence.
#[test]
fn the_empty_file_reload_message_has_no_run_of_spaces() {
    let broker = TestBroker::start(&common::fanout("kept"));
    std::fs::write(&broker.config, "").expect("emptying the config");
    let reload = run_to_end(broker.cmd().arg("reload"));
    assert_eq!(reload.status.code(), Some(1), "{}", reload.stdout);
    assert!(
        reload.stdout.contains("the file is empty"),
        "{}",
        reload.stdout
    );
    assert!(
        !reload.stdout.contains("   "),
        "a run of spaces in: {}",
        reload.stdout
    );
}

/// A topic removed mid-stream: `mycelium pub` counts as published only what the broker
/// accepted, says how many it refused, and exits 1.
#[test]
fn pub_to_a_topic_removed_mid_stream_prints_what_was_accepted() {
    use common::pubsub_support::topic_counter;
    use std::io::{Read, Write};
    use std::process::Stdio;
    let broker = TestBroker::start(&format!(
        "{}{}",
        common::fanout("doomed"),
        common::fanout("kept")
    ));
    let mut publisher = broker
        .cmd()
        .args(["pub", "doomed"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mycelium pub");
    let mut stdin = publisher.stdin.take().expect("stdin");
    let mut stderr = publisher.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    for n in 0..100 {
        writeln!(stdin, "before {n}").expect("feeding");
    }
    stdin.flush().expect("feeding");
    common::wait_until("the broker to take the first 100", || {
        topic_counter(&broker, "doomed", "published") == 100
    });
    broker.rewrite_config(&common::fanout("kept"));
    let reload = run_to_end(broker.cmd().arg("reload"));
    assert!(reload.status.success(), "{}", reload.stdout);
    for n in 0..50 {
        writeln!(stdin, "after {n}").expect("feeding");
    }
    drop(stdin);
    let status = common::wait_child(&mut publisher, "mycelium pub to exit");
    let stderr = log.join().unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("published 100 message(s) to doomed; the broker refused 50"),
        "{stderr}"
    );
}

/// What `mycelium pub` said it published to `topic` and the broker refused, from its summary
/// line `published N message(s) to TOPIC; the broker refused M`.
fn published_and_refused(stderr: &str, topic: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("published "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let rest = line.strip_prefix("published ").expect("prefix");
    let (accepted, rest) = rest.split_once(' ').expect("a count");
    let refused = rest
        .strip_prefix(&format!("message(s) to {topic}; the broker refused "))
        .unwrap_or_else(|| panic!("no refusal count: {line}"));
    (
        accepted.parse().expect("a number"),
        refused.trim().parse().expect("a number"),
    )
}

/// A `block` queue topic whose one consumer is stopped (SIGSTOP): the backlog fills, and the
/// rest of each later batch is given up after `publish_deadline_ms`, one `SlowConsumer`
/// notice per batch however many messages it drops. `mycelium pub` prints exactly what the
/// broker kept (the notice says how many it refuses): what the broker counts as published
/// less dropped, as delivered and queued, and what the consumers receive once it resumes
/// and a healthy second one joins.
#[test]
fn pub_to_a_queue_that_gives_batches_up_prints_exactly_what_was_accepted() {
    use common::pubsub_support::{spawn_pub, stats_json};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    const SENT: u64 = 3000;
    let broker = TestBroker::start(
        "[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\nbuffer_size = 20\nprefetch = 4\n\
         backpressure = \"block\"\npublish_deadline_ms = 20\n",
    );
    let stopped = common::spawn_sub(&broker, "jobs", &[]);
    let stopped_pid = Pid::from_raw(stopped.child.id() as i32);
    kill(stopped_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let (status, stderr) =
        spawn_pub(&broker, "jobs", (0..SENT).map(|i| format!("job-{i}"))).finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could take no more for 20 ms"), "{stderr}");
    let (accepted, refused) = published_and_refused(&stderr, "jobs");
    assert_eq!(accepted + refused, SENT, "{stderr}");
    let counters = |stats: &serde_json::Value| {
        let topic = &stats["topics"][0];
        let get = |name: &str| topic[name].as_u64().expect("a counter");
        (
            get("published"),
            get("delivered"),
            get("dropped"),
            get("queued"),
        )
    };
    let (published, delivered, dropped, queued) = counters(&stats_json(&broker));
    assert_eq!(published - dropped, accepted, "{stderr}");
    assert_eq!(delivered + queued, accepted, "{stderr}");
    assert!(
        queued > 0 && dropped > 0,
        "{published} {delivered} {dropped} {queued}"
    );
    // The stopped consumer resumes and a healthy one joins: between them they get exactly
    // what was accepted, each message once.
    let healthy = common::spawn_sub(&broker, "jobs", &[]);
    kill(stopped_pid, Signal::SIGCONT).expect("SIGCONT");
    let mut received = Vec::new();
    common::wait_until("the consumers to take what was accepted", || {
        received.extend(stopped.lines_so_far());
        received.extend(healthy.lines_so_far());
        received.len() as u64 >= accepted
    });
    common::wait_until("the broker to have handed everything out", || {
        let (_, delivered, _, queued) = counters(&stats_json(&broker));
        queued == 0 && delivered == accepted
    });
    for sub in [&stopped, &healthy] {
        let _ = kill(Pid::from_raw(sub.child.id() as i32), Signal::SIGKILL);
        received.extend(sub.lines_until_exit());
    }
    let distinct: std::collections::HashSet<&String> = received.iter().collect();
    assert_eq!(received.len() as u64, accepted, "{received:?}");
    assert_eq!(
        distinct.len(),
        received.len(),
        "each message once: {received:?}"
    );
}

/// A `block` fanout topic: a stopped subscriber (SIGSTOP) holds a batch of `mycelium pub`
/// back, with a healthy subscriber after it, when a reload removes the topic. The batch
/// reached neither subscriber whole: `mycelium pub` counts it refused (one notice, which says
/// how many of the batch were routed and how many not), and prints as accepted exactly what
/// the healthy subscriber received.
#[test]
fn pub_held_back_when_its_topic_is_removed_prints_exactly_what_every_subscriber_got() {
    use common::pubsub_support::{spawn_pub, stats_json};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    // 20 MB: far more than the stopped subscriber's socket takes (8 MiB at most).
    const SENT: usize = 20_000;
    let line = |i: usize| format!("{i:08}-{}", "x".repeat(1000));
    let doomed = "[[topics]]\nname = \"doomed\"\nrouting = \"fanout\"\nbuffer_size = 64\n\
                  backpressure = \"block\"\npublish_deadline_ms = 0\n";
    let broker = TestBroker::start(&format!("{doomed}{}", common::fanout("kept")));
    let stopped = common::spawn_sub(&broker, "doomed", &[]);
    let stopped_pid = Pid::from_raw(stopped.child.id() as i32);
    kill(stopped_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let healthy = common::spawn_sub(&broker, "doomed", &[]);
    let publisher = spawn_pub(&broker, "doomed", (0..SENT).map(line));
    // Held back by the stopped subscriber (the first): the healthy one has every message
    // published but the held batch, and the stopped one only part of it, so fewer copies
    // were delivered than published plus what the healthy one got. While batches flow, or
    // wait on the healthy one, every message published is (about to be) delivered twice.
    // The same counts twice in a row: held for good, not caught inside one routing call.
    let mut received: Vec<String> = Vec::new();
    let mut last = None;
    common::wait_until(
        "the publisher to be held back by the stopped subscriber",
        || {
            received.extend(healthy.lines_so_far());
            let stats = stats_json(&broker);
            let topic = stats["topics"]
                .as_array()
                .expect("topics")
                .iter()
                .find(|t| t["name"] == "doomed")
                .expect("doomed")
                .clone();
            let published = topic["published"].as_u64().expect("published");
            let delivered = topic["delivered"].as_u64().expect("delivered");
            let got = received.len() as u64;
            let held = got < published && delivered < published + got;
            let now = Some((published, delivered, got));
            let stable = held && last == now;
            last = now;
            stable
        },
    );
    broker.rewrite_config(&common::fanout("kept"));
    let reload = run_to_end(broker.cmd().arg("reload"));
    assert!(reload.status.success(), "{}", reload.stdout);
    let (status, stderr) = publisher.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let (accepted, refused) = published_and_refused(&stderr, "doomed");
    assert_eq!(accepted + refused, SENT as u64, "{stderr}");
    received.extend(healthy.lines_until_exit());
    assert_eq!(received.len() as u64, accepted, "{stderr}");
    assert!(
        stderr.contains("was held back by a slow subscriber: 0 were routed"),
        "{stderr}"
    );
    assert!(
        received.iter().enumerate().all(|(i, got)| *got == line(i)),
        "the healthy subscriber got the first {accepted} messages in order"
    );
    let _ = kill(stopped_pid, Signal::SIGCONT);
}

/// With `--json`, stdout is one JSON document and nothing else, for every command that has
/// the flag (`| jq` works); the human summary of `bench` goes to stderr.
#[test]
fn every_json_flag_prints_json_alone_on_stdout() {
    let broker = TestBroker::start(&format!(
        "{}{}{}",
        common::fanout("bench.fanout"),
        common::fanout("bench.ping"),
        common::fanout("bench.pong")
    ));
    let commands: [&[&str]; 5] = [
        &["stats", "--json"],
        &["reload", "--json"],
        &["bench", "--json", "--transport", "uds", "--count", "1000"],
        &["bench", "--json", "--transport", "uds", "--pingpong", "100"],
        &["bench", "--json", "--count", "1000"],
    ];
    for args in commands {
        let out = run_to_end(broker.cmd().args(args));
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&out.stdout);
        assert!(
            parsed.as_ref().is_ok_and(serde_json::Value::is_object),
            "{args:?}: stdout is not one JSON object: {:?}",
            out.stdout
        );
    }
}

/// `mycelium check` reports every problem, as the README says: a typo in three places is
/// three lines, each with its line number, together with an invalid value elsewhere.
#[test]
fn check_reports_every_unknown_field_and_every_invalid_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        "[server]\nmax_conections = 5\n\n\
         [[topics]]\nname = \"a\"\nrouting = \"fanout\"\nbufer_size = 5\n\n\
         [[topics]]\nname = \"b\"\nrouting = \"fanout\"\nbufer_size = 5\nbuffer_size = 0\n",
    )
    .expect("writing config");
    let out = run_to_end(
        std::process::Command::new(common::mycelium_bin())
            .args(["check", "--config"])
            .arg(&config),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let expected = [
        ":2:1: server.max_conections: unknown field",
        ":7:1: topics[0].bufer_size: unknown field",
        ":12:1: topics[1].bufer_size: unknown field",
        ":13:1: topics[1].buffer_size: must be greater than 0",
    ];
    assert_eq!(lines.len(), expected.len(), "{}", out.stdout);
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.contains(expected), "{line:?} lacks {expected:?}");
    }
}

/// A config file over 16 MiB is refused with a clear error, without being read whole: by
/// `mycelium check`, by `mycelium run` at start, and by a reload (the broker keeps running
/// its config).
#[test]
fn a_config_file_over_16_mib_is_refused_at_check_start_and_reload() {
    const LIMIT: u64 = 16 * 1024 * 1024;
    let too_large = |text: &str| text.contains("too large") && text.contains(&LIMIT.to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let huge = dir.path().join("huge.toml");
    // Sparse: the size is there, the disk blocks are not.
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(LIMIT + 1))
        .expect("a sparse file");
    let check = run_to_end(
        std::process::Command::new(common::mycelium_bin())
            .args(["check", "--config"])
            .arg(&huge),
    );
    assert_eq!(check.status.code(), Some(1), "{}", check.stdout);
    assert!(too_large(&check.stdout), "check: {}", check.stdout);
    let run = run_to_end(
        std::process::Command::new(common::mycelium_bin())
            .args(["run", "--config"])
            .arg(&huge),
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(too_large(&run.stderr), "run: {}", run.stderr);

    let broker = TestBroker::start(&common::fanout("kept"));
    // Grown in place past the limit (the socket_path line stays at its start).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&broker.config)
        .and_then(|f| f.set_len(LIMIT + 1))
        .expect("growing the config");
    let reload = run_to_end(broker.cmd().arg("reload"));
    assert_eq!(reload.status.code(), Some(1), "{}", reload.stdout);
    assert!(too_large(&reload.stdout), "reload: {}", reload.stdout);
    let stats = common::pubsub_support::stats_json(&broker);
    assert!(
        stats["topics"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "kept")),
        "the broker lost its running config: {stats}"
    );
}

/// `mycelium stats` counts shared-memory subscribers too, split by transport, in the table and
/// in `--json`.
#[test]
fn stats_counts_subscribers_of_both_transports() {
    let broker = TestBroker::start(&common::fanout("mixed"));
    let _shm = common::spawn_sub(&broker, "mixed", &["--transport", "shm"]);
    let json = common::pubsub_support::stats_json(&broker);
    let topic = json["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "mixed"))
        .cloned()
        .unwrap_or_else(|| panic!("no topic mixed in {json}"));
    assert_eq!(topic["shm_subscribers"], 1, "{topic}");
    assert_eq!(topic["socket_subscribers"], 0, "{topic}");
    assert_eq!(topic["subscribers"], 1, "{topic}");

    let _socket = common::spawn_sub(&broker, "mixed", &[]);
    let json = common::pubsub_support::stats_json(&broker);
    let topic = json["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "mixed"))
        .cloned()
        .unwrap_or_else(|| panic!("no topic mixed in {json}"));
    assert_eq!(
        (
            &topic["subscribers"],
            &topic["socket_subscribers"],
            &topic["shm_subscribers"]
        ),
        (&2.into(), &1.into(), &1.into()),
        "{topic}"
    );

    let table = run_to_end(broker.cmd().arg("stats"));
    assert!(table.status.success(), "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    let header = lines
        .iter()
        .find(|l| l.starts_with("TOPIC"))
        .unwrap_or_else(|| panic!("no header in {}", table.stdout));
    let row = lines
        .iter()
        .find(|l| l.starts_with("mixed"))
        .unwrap_or_else(|| panic!("no row in {}", table.stdout));
    let columns: Vec<&str> = header.split_whitespace().collect();
    let values: Vec<&str> = row.split_whitespace().collect();
    let value = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| values.get(i).copied())
            .unwrap_or_else(|| panic!("no column {name} in {header}"))
    };
    assert_eq!(value("SUBSCRIBERS"), "2", "{}", table.stdout);
    assert_eq!(value("SOCKET"), "1", "{}", table.stdout);
    assert_eq!(value("SHM"), "1", "{}", table.stdout);
}
