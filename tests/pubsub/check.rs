//! `mycelium check` reports file:line diagnostics, and `mycelium help` lists every subcommand.

use super::*;

#[test]
fn check_reports_file_line_diagnostics_and_help_lists_every_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nsocket_path = \"/tmp/x.sock\"\n\n\
         [[topics]]\nname = \"a\"\nrouting = \"fanout\"\nbuffer_size = 0\n\n\
         [[topics]]\nname = \"a\"\nrouting = \"queue\"\nprefetch = 0\n",
    )
    .expect("write config");
    let check = |config: &std::path::Path| {
        let mut cmd = std::process::Command::new(mycelium_bin());
        cmd.arg("check").arg("--config").arg(config);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MYCELIUM_") {
                cmd.env_remove(name);
            }
        }
        run_to_end(&mut cmd)
    };
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let path = bad.display();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per problem: {}", out.stdout);
    assert!(
        lines[0].starts_with(&format!("{path}:7:1: topics[0].buffer_size: ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{path}:10:1: topics[1].name: duplicate")),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(&format!("{path}:12:1: topics[1].prefetch: ")),
        "{}",
        lines[2]
    );

    let syntax = dir.path().join("syntax.toml");
    std::fs::write(
        &syntax,
        "[server]\nsocket_path = \"/tmp/x.sock\"\n[[topics]\nname = \"a\"\n",
    )
    .expect("write config");
    let out = check(&syntax);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.starts_with(&format!("{}:3:", syntax.display())),
        "{}",
        out.stdout
    );

    let good = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/broker.toml"));
    let out = check(good);
    assert!(
        out.status.success(),
        "the example config is invalid: {}{}",
        out.stdout,
        out.stderr
    );

    let out = run_to_end(std::process::Command::new(mycelium_bin()).arg("--help"));
    assert!(out.status.success());
    let commands: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "run", "pub", "sub", "request", "reply", "check", "stats", "topics", "groups", "dlq",
            "reload", "bench", "help"
        ],
        "{}",
        out.stdout
    );
}
