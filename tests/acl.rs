//! Per-topic access lists end to end: a real broker checks `publish` and `subscribe` lists
//! against the identity the kernel gives for each client's socket (`SO_PEERCRED`).
//!
//! Tests that run clients under other uids need root (they use `setuid` through
//! `CommandExt::uid`, and create a user and a group when they need names): they say so and
//! pass without checking anything when not run as root. The rest run as anyone.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::pubsub_support::{run_to_end, stats_json};
use common::{block_on, fanout, mycelium_bin, wait_until, TestBroker};
use mycelium_client::Client;
use mycelium_transport::ErrorCode;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A broker whose socket and directory other users can reach, so that only the access lists
/// decide.
fn open_broker(rest: &str) -> TestBroker {
    let broker = TestBroker::start_with("socket_mode = \"0666\"", rest);
    std::fs::set_permissions(broker.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the broker's directory");
    broker
}

/// A `mycelium` command aimed at `broker`, run as `uid`:`gid` (no supplementary groups).
fn as_user(broker: &TestBroker, uid: u32, gid: u32) -> Command {
    let mut cmd = broker.cmd();
    // std drops the supplementary groups when a root parent sets the uid.
    cmd.uid(uid).gid(gid);
    cmd
}

fn generation(broker: &TestBroker) -> u64 {
    stats_json(broker)["config"]["generation"]
        .as_u64()
        .expect("generation")
}

fn guarded(publish: &str, subscribe: &str) -> String {
    format!(
        "[[topics]]\nname = \"guarded\"\nrouting = \"fanout\"\npublish = {publish}\nsubscribe = {subscribe}\n"
    )
}

#[test]
fn lists_admit_exactly_the_uids_and_gids_they_name_and_root_is_not_special() {
    if !is_root() {
        eprintln!("skipped: running clients under other uids needs root");
        return;
    }
    let broker = open_broker(&format!(
        "{}{}",
        guarded(r#"["uid:0", "uid:4242"]"#, r#"["gid:4343"]"#),
        fanout("open")
    ));
    // uid 4242 may publish, but not subscribe (its gid is not 4343).
    let out = run_to_end(as_user(&broker, 4242, 4242).args(["pub", "guarded", "hello"]));
    assert!(out.status.success(), "{}", out.stderr);
    let out = run_to_end(as_user(&broker, 4242, 4242).args(["sub", "guarded", "--count", "1"]));
    assert!(!out.status.success(), "uid 4242 must not subscribe");
    assert!(
        out.stderr
            .contains("permission denied: uid 4242 (gid 4242, pid ")
            && out
                .stderr
                .contains("may not subscribe to topic 'guarded' (subscribe = [\"gid:4343\"])"),
        "{}",
        out.stderr
    );
    // Root is checked like anyone: gid 0 is not in the subscribe list.
    let out = run_to_end(broker.cmd().args(["sub", "guarded", "--count", "1"]));
    assert!(!out.status.success(), "root must not subscribe either");
    assert!(out.stderr.contains("PermissionDenied"), "{}", out.stderr);
    // uid 4343 is not in the publish list.
    let out = run_to_end(as_user(&broker, 4343, 4343).args(["pub", "guarded", "x"]));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("may not publish to topic 'guarded'"),
        "{}",
        out.stderr
    );
    // A peer in gid 4343 subscribes and gets what root publishes; other topics are open.
    let mut sub = as_user(&broker, 5000, 4343)
        .args(["sub", "guarded", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sub");
    wait_until("the gid 4343 subscriber to be counted", || {
        common::pubsub_support::topic_counter(&broker, "guarded", "subscribers") == 1
    });
    let out = run_to_end(broker.cmd().args(["pub", "guarded", "for-4343"]));
    assert!(out.status.success(), "{}", out.stderr);
    let status = common::wait_child(&mut sub, "the gid 4343 subscriber");
    assert!(status.success());
    let mut line = String::new();
    std::io::Read::read_to_string(&mut sub.stdout.take().expect("stdout"), &mut line)
        .expect("read");
    assert_eq!(line.trim(), "for-4343");
    let out = run_to_end(as_user(&broker, 4343, 4343).args(["pub", "open", "anyone"]));
    assert!(out.status.success(), "{}", out.stderr);
}

/// A user and a group created for one test, removed on drop.
struct TempAccount {
    user: String,
    group: String,
}

impl TempAccount {
    fn create(tag: &str) -> Option<TempAccount> {
        let (user, group) = (format!("myc{tag}u"), format!("myc{tag}g"));
        let ok = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
        if !ok(Command::new("groupadd").arg(&group)) {
            return None;
        }
        let account = TempAccount {
            user: user.clone(),
            group: group.clone(),
        };
        // Primary group "nogroup"-like: its own fresh group would make the check trivial,
        // so the user's primary group is root's (0) and the named group is supplementary.
        if !ok(Command::new("useradd")
            .args(["-M", "-N", "-g", "0", "-G"])
            .arg(&group)
            .arg(&user))
        {
            return None;
        }
        Some(account)
    }

    fn uid(&self) -> u32 {
        nix::unistd::User::from_name(&self.user)
            .ok()
            .flatten()
            .expect("the user exists")
            .uid
            .as_raw()
    }
}

impl Drop for TempAccount {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}

#[test]
fn a_named_group_admits_the_users_that_belong_to_it() {
    if !is_root() {
        eprintln!("skipped: creating a user and a group needs root");
        return;
    }
    let tag = std::process::id() % 100_000;
    let Some(account) = TempAccount::create(&tag.to_string()) else {
        eprintln!("skipped: useradd/groupadd are not usable here");
        return;
    };
    let broker = open_broker(&guarded(
        r#"["uid:0"]"#,
        &format!(r#"["gid:{}"]"#, account.group),
    ));
    let uid = account.uid();
    // The peer's primary gid (0) is not the group: membership comes from the group database.
    let mut sub = as_user(&broker, uid, 0)
        .args(["sub", "guarded", "--count", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sub");
    wait_until("the member to be subscribed", || {
        common::pubsub_support::topic_counter(&broker, "guarded", "subscribers") == 1
    });
    let out = run_to_end(broker.cmd().args(["pub", "guarded", "m"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(common::wait_child(&mut sub, "the member's subscriber").success());
    // A uid that is no member is refused.
    let out = run_to_end(as_user(&broker, 4242, 0).args(["sub", "guarded", "--count", "1"]));
    assert!(!out.status.success());
    assert!(out.stderr.contains("PermissionDenied"), "{}", out.stderr);
}

#[test]
fn a_reload_that_revokes_publishing_refuses_the_next_publish_of_a_connected_client() {
    let broker = TestBroker::start(&guarded(r#"["uid:0", "uid:1"]"#, r#"["uid:0", "uid:1"]"#));
    let me = nix::unistd::Uid::effective().as_raw();
    if me != 0 {
        // The lists above name uid 0 and 1; a non-root run needs its own uid in them.
        let text = guarded(&format!(r#"["uid:{me}"]"#), &format!(r#"["uid:{me}"]"#));
        let before = generation(&broker);
        broker.rewrite_config(&text);
        wait_until("the broker to admit this uid", || {
            generation(&broker) > before
        });
    }
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let publisher = client.publisher("guarded").await.expect("admitted");
        publisher.publish(b"before").await.expect("publish");
        client.flush().await.expect("accepted");
        let before = generation(&broker);
        broker.rewrite_config(&guarded(r#"["uid:4294967294"]"#, "[]"));
        wait_until("the reload", || generation(&broker) > before);
        publisher.publish(b"after").await.expect("queued");
        match client.flush().await {
            Err(error) => {
                assert_eq!(error.code(), Some(ErrorCode::PermissionDenied), "{error}");
                assert!(error.to_string().contains("may not publish"), "{error}");
            }
            Ok(()) => panic!("a revoked publisher must be refused"),
        }
        // Subscribing is refused too (an empty list admits nobody).
        match client.subscribe("guarded").await {
            Err(error) => assert_eq!(error.code(), Some(ErrorCode::PermissionDenied)),
            Ok(_) => panic!("subscribe = [] admits nobody"),
        }
        client.close().await.expect("close");
    });
}

#[test]
fn a_shared_memory_attach_is_checked_like_a_subscribe() {
    let broker = TestBroker::start(&guarded("[]", "[]"));
    let out = run_to_end(broker.cmd().args(["sub", "guarded", "--transport", "shm"]));
    assert!(!out.status.success());
    assert!(out.stderr.contains("may not subscribe"), "{}", out.stderr);
    let out = run_to_end(
        broker
            .cmd()
            .args(["pub", "guarded", "x", "--transport", "shm"]),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("may not publish"), "{}", out.stderr);
}

#[test]
fn an_unknown_user_or_group_name_stops_the_broker_from_starting_and_fails_a_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("broker.toml");
    let socket = dir.path().join("b.sock");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket_path = \"{}\"\n{}",
            socket.display(),
            guarded(r#"["gid:no-such-group-mycelium"]"#, r#"["uid:0"]"#)
        ),
    )
    .expect("write");
    let out = run_to_end(
        Command::new(mycelium_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("MYCELIUM_LOG"),
    );
    assert!(!out.status.success(), "the broker must not start");
    assert!(
        out.stderr
            .contains("no group named `no-such-group-mycelium` on this machine"),
        "{}",
        out.stderr
    );
    // A running broker keeps its config when a reload names nobody.
    let broker = TestBroker::start(&fanout("open"));
    let attempts = stats_json(&broker)["config"]["reloads"]
        .as_u64()
        .expect("reloads");
    broker.rewrite_config(&guarded(r#"["uid:no-such-user-mycelium"]"#, "[]"));
    let mut status = serde_json::Value::Null;
    wait_until("the failed reload", || {
        status = stats_json(&broker)["config"].clone();
        status["reloads"].as_u64().is_some_and(|n| n > attempts)
    });
    assert_eq!(status["last_reload_failed"], true, "{status}");
    assert!(
        status["last_error"][0]
            .as_str()
            .is_some_and(|e| e.contains("publish entry `uid:no-such-user-mycelium`")),
        "{status}"
    );
    assert_eq!(status["generation"], 1);
}
