//! The README's first steps, as a new user runs them: pub/sub through the CLI.

mod common;

use common::{spawn_sub, TestBroker};

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
