//! A broker whose log reader has gone (`mycelium run 2>&1 | head`, a supervisor's closed log
//! pipe) goes on serving: logging into a closed pipe fails quietly, reloads by SIGHUP, by a
//! file edit and by `mycelium reload` still happen, and SIGTERM still ends it gracefully (exit
//! 0, socket file removed).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::pubsub_support::run_to_end;
use common::{fanout, mycelium_bin, wait_child, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Names of the topics `mycelium stats --json` lists, and the number of reload attempts.
fn topics_and_reloads(socket: &std::path::Path, dir: &std::path::Path) -> (Vec<String>, u64) {
    let out = run_to_end(
        Command::new(mycelium_bin())
            .args(["stats", "--json", "--socket"])
            .arg(socket)
            .current_dir(dir),
    );
    assert!(
        out.status.success(),
        "mycelium stats failed: {}",
        out.stderr
    );
    let stats: serde_json::Value = serde_json::from_str(&out.stdout).expect("stats JSON");
    let names = stats["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    let reloads = stats["config"]["reloads"].as_u64().expect("config.reloads");
    (names, reloads)
}

#[test]
fn a_broker_whose_stderr_reader_is_gone_still_reloads_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("broker.sock");
    let config = dir.path().join("broker.toml");
    let head = format!("[server]\nsocket_path = \"{}\"\n\n", socket.display());
    std::fs::write(&config, format!("{head}{}", fanout("first"))).expect("writing config");
    let mut broker = Command::new(mycelium_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("MYCELIUM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the broker");
    let pid = Pid::from_raw(broker.id() as i32);
    {
        // Read the log until the broker serves, then close the pipe's read end, as `head`
        // does once it has its lines: every later log line meets EPIPE.
        let mut log = BufReader::new(broker.stderr.take().expect("stderr"));
        let mut line = String::new();
        loop {
            line.clear();
            let n = log.read_line(&mut line).expect("reading the broker's log");
            assert!(
                n > 0,
                "the broker's log ended before it accepted connections"
            );
            if line.contains("broker accepting connections") {
                break;
            }
        }
    }
    wait_until("the broker to accept connections", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });

    // SIGHUP: the reload happens (and logs into the closed pipe).
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    wait_until("the SIGHUP reload", || {
        topics_and_reloads(&socket, dir.path()).1 >= 1
    });

    // An edit is seen by the watcher and applied.
    std::fs::write(
        &config,
        format!("{head}{}{}", fanout("first"), fanout("second")),
    )
    .expect("rewriting config");
    wait_until("the edit to be applied", || {
        topics_and_reloads(&socket, dir.path())
            .0
            .contains(&"second".to_owned())
    });

    // `mycelium reload` is answered by a reload that reads the file.
    std::fs::write(
        &config,
        format!(
            "{head}{}{}{}",
            fanout("first"),
            fanout("second"),
            fanout("third")
        ),
    )
    .expect("rewriting config");
    let reload = run_to_end(
        Command::new(mycelium_bin())
            .args(["reload", "--socket"])
            .arg(&socket)
            .current_dir(dir.path()),
    );
    assert!(
        reload.status.success(),
        "mycelium reload failed: {}{}",
        reload.stdout,
        reload.stderr
    );
    assert!(
        topics_and_reloads(&socket, dir.path())
            .0
            .contains(&"third".to_owned()),
        "the reload did not apply the file: {}",
        reload.stdout
    );

    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let status = wait_child(&mut broker, "the broker to exit");
    assert_eq!(status.code(), Some(0), "the broker exited with {status}");
    assert!(
        !socket.exists(),
        "the broker left its socket file behind after SIGTERM"
    );
}
