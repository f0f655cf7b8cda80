//! A broker whose log reader has gone (`mycelium run 2>&1 | head`, a supervisor's closed log
//! pipe) goes on serving: logging into a closed pipe fails quietly, reloads by SIGHUP, by a
//! file edit and by `mycelium reload` still happen, and SIGTERM still ends it gracefully (exit
//! 0, socket file removed). The client commands likewise lose their stderr lines, never their
//! work, and the binary writes through no panicking print macro.

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

/// Reads the broker's log up to the line that says it accepts connections.
fn read_log_until_serving(log: &mut impl BufRead) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = log.read_line(&mut line).expect("reading the broker's log");
        assert!(
            n > 0,
            "the broker's log ended before it accepted connections"
        );
        if line.contains("broker accepting connections") {
            return;
        }
    }
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
        read_log_until_serving(&mut BufReader::new(broker.stderr.take().expect("stderr")));
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

/// The client commands too: `mycelium pub` whose stderr reader is gone still publishes and
/// exits 0 (its closing "published" line is lost, not a panic with status 101).
/// A log reader that is alive but stopped (a paused `| less`, a stuck log shipper): the pipe
/// fills, and a broker that wrote its log from the tasks that log stopped serving once it was
/// full. The log is written off the serving threads and dropped when it cannot keep up.
#[test]
fn a_broker_whose_stderr_reader_stopped_reading_goes_on_serving() {
    const CONNECTIONS: usize = 2000;
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("broker.sock");
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket_path = \"{}\"\nmax_connections = {}\n\n{}",
            socket.display(),
            CONNECTIONS + 10,
            fanout("t")
        ),
    )
    .expect("writing config");
    let mut broker = Command::new(mycelium_bin())
        .args(["run", "--config"])
        .arg(&config)
        // Two lines a connection (connected, disconnected): far more than a pipe holds.
        .env("MYCELIUM_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the broker");
    // Read the log until the broker serves, then keep the pipe open and read no more.
    let mut log = BufReader::new(broker.stderr.take().expect("stderr"));
    read_log_until_serving(&mut log);
    // On a thread, so that a broker that stops serving fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    let client_socket = socket.clone();
    std::thread::spawn(move || {
        for _ in 0..CONNECTIONS {
            drop(common::raw::handshaken(&client_socket, None));
        }
        let served = common::block_on(async {
            let client = mycelium_client::Client::connect(&client_socket).await?;
            let mut sub = client.subscribe("t").await?;
            client.publish("t", b"still here").await?;
            let message = sub.recv().await;
            client.close().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(message)
        });
        let _ = done.send(served);
    });
    let served = finished.recv_timeout(common::DEADLINE);
    kill(Pid::from_raw(broker.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    match served {
        Ok(Ok(Ok(message))) => assert_eq!(&message[..], b"still here"),
        Ok(other) => panic!("the broker answered wrongly: {other:?}"),
        Err(_) => {
            let _ = broker.kill();
            panic!(
                "the broker stopped serving {CONNECTIONS} connections and a round trip while \
                 its stderr reader was not reading"
            )
        }
    }
    // The rest of the log, then the exit: a graceful one.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut log, &mut rest);
    let status = wait_child(&mut broker, "the broker to exit");
    assert!(status.success(), "the broker exited with {status}");
    assert!(!socket.exists(), "the socket file was left behind");
}

#[test]
fn pub_with_a_closed_stderr_publishes_and_exits_0() {
    let broker = common::TestBroker::start(&fanout("quiet"));
    let sub = common::spawn_sub(&broker, "quiet", &["--count", "1"]);
    let mut publisher = broker
        .cmd()
        .args(["pub", "quiet", "hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mycelium pub");
    // Closed before the publisher writes anything to it.
    drop(publisher.stderr.take());
    let status = wait_child(&mut publisher, "mycelium pub to exit");
    assert_eq!(status.code(), Some(0), "mycelium pub exited with {status}");
    assert_eq!(sub.take_lines(1), ["hello"]);
}

/// The class: `print!`-family macros panic when their stream fails. The `mycelium` binary
/// writes through `output.rs` (`outln!`, `errln!`, `humanln!`) and the log, never through them.
#[test]
fn the_binary_uses_no_panicking_print_macro() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut pending = vec![dir];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the binary's sources") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.file_name().is_some_and(|n| n == "output.rs")
                || path.extension().is_none_or(|e| e != "rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let uses = |name: &str| {
                    code.match_indices(name).any(|(at, _)| {
                        !code[..at]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                };
                if ["println!(", "eprintln!(", "print!(", "eprint!("]
                    .iter()
                    .any(|m| uses(m))
                {
                    found.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "panicking print macros:\n{}",
        found.join("\n")
    );
}
