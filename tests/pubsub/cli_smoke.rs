//! The README's first steps, as a new user runs them: pub/sub through the CLI.

use crate::common;

use crate::common::{spawn_sub, TestBroker};

#[test]
fn a_line_published_with_the_cli_reaches_a_cli_subscriber() {
    let broker = TestBroker::start("[[topics]]\nname = \"news\"\nrouting = \"fanout\"\n");
    let mut sub = spawn_sub(&broker, "news", &["--count", "2"]);
    let out = broker
        .cmd()
        .args(["pub", "news"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"first\nsecond\n")?;
            c.wait_with_output()
        });
    assert!(out.expect("pub ran").status.success());
    assert_eq!(sub.take_lines(2), vec!["first", "second"]);
    assert!(sub.wait().success());
}

fn pub_with_stdin(broker: &TestBroker, topic: &str, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = broker
        .cmd()
        .args(["pub", topic])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pub");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("pub ran")
}

#[test]
fn pub_skips_a_line_too_large_for_the_topic_publishes_the_rest_and_exits_1() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nmax_message_size = 16\n",
    );
    let sub = spawn_sub(&broker, "t", &["--count", "3"]);
    let out = pub_with_stdin(
        &broker,
        "t",
        b"one\nthis line is far too long\ntwo\r\nthree",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2:"), "{stderr}");
    assert!(stderr.contains("published 3 message(s)"), "{stderr}");
    assert_eq!(sub.take_lines(3), vec!["one", "two", "three"]);
}

#[test]
fn pub_passes_bytes_that_are_not_utf8_through() {
    let broker = TestBroker::start("[[topics]]\nname = \"bin\"\nrouting = \"fanout\"\n");
    let mut sub = broker
        .cmd()
        .args(["sub", "bin", "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sub");
    // Wait for the subscription before publishing.
    let mut err = std::io::BufReader::new(sub.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).expect("read stderr");
    assert_eq!(line.trim(), "subscribed to bin");
    let out = pub_with_stdin(&broker, "bin", b"\xff\xfe\x00raw\nok\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sub.wait_with_output().expect("sub ran");
    assert_eq!(got.stdout, b"\xff\xfe\x00raw\nok\n");
}

#[test]
fn stats_into_a_closed_pipe_exits_quietly() {
    let broker = TestBroker::start("[[topics]]\nname = \"t\"\nrouting = \"fanout\"\n");
    let mut child = broker
        .cmd()
        .arg("stats")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stats");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("stats ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn run_without_a_broker_toml_starts_on_the_defaults_and_env_overrides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("defaults.sock");
    let mut broker = std::process::Command::new(common::mycelium_bin())
        .arg("run")
        .current_dir(dir.path())
        .env("MYCELIUM_SERVER__SOCKET_PATH", &socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    common::wait_until("the broker on the defaults to listen", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(broker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    assert!(common::wait_child(&mut broker, "the broker to stop").success());
    let explicit = std::process::Command::new(common::mycelium_bin())
        .args(["run", "--config", "missing.toml"])
        .current_dir(dir.path())
        .env("MYCELIUM_SERVER__SOCKET_PATH", &socket)
        .output()
        .expect("run with a missing --config");
    assert!(!explicit.status.success());
    assert!(String::from_utf8_lossy(&explicit.stderr).contains("missing.toml"));
}
