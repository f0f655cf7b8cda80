//! The gateway's WebSocket across real processes, with a client no one here wrote: Python's
//! `websockets` subscribes to a pattern on `/ws` of `mycelium run` and receives every
//! message `mycelium pub` publishes on the socket, in order, with its topic, headers, id and
//! timestamp; what it publishes over the WebSocket reaches `mycelium sub` on the socket.
//!
//! Skipped, saying so, when `python3` or its `websockets` package is missing (`.ci/run`
//! installs it).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::pubsub_support::spawn_pub_with;
use common::{free_port, http_serving, spawn_sub, wait_until, TestBroker};
use serde_json::Value;

/// Subscribes to `argv[2]` on the WebSocket at `argv[1]`, prints the ack, then every
/// frame it receives (one JSON per line) until `argv[3]` messages came; then publishes
/// "from python" to `argv[4]` and prints that ack.
const CLIENT: &str = r#"
import asyncio, json, sys
try:
    from websockets.asyncio.client import connect
except ImportError:
    from websockets import connect

url, pattern, count, reply_topic = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

async def main():
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topic": pattern, "id": 1}))
        print(await ws.recv(), flush=True)
        got = 0
        while got < count:
            frame = await ws.recv()
            print(frame, flush=True)
            if json.loads(frame).get("type") == "message":
                got += 1
        await ws.send(json.dumps({"type": "publish", "topic": reply_topic,
                                  "data": "from python", "headers": {"via": "ws"}, "id": 2}))
        print(await ws.recv(), flush=True)

asyncio.run(asyncio.wait_for(main(), 60))
"#;

#[test]
fn pythons_websockets_receives_what_mycelium_pub_publishes_and_back() {
    let usable = Command::new("python3")
        .args(["-c", "import websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        println!("SKIPPED: python3 with the websockets package is needed (pip install websockets)");
        return;
    }
    let port = free_port();
    let broker = TestBroker::start(&format!(
        "[topic_defaults]\nauto_create = true\n\n\
         [[topics]]\nname = \"ws.stamped\"\nrouting = \"fanout\"\nstamp = true\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    wait_until("the gateway to listen", || http_serving(port));
    let reply = spawn_sub(&broker, "ws.reply", &[]);

    const N: usize = 200;
    let mut python = Command::new("python3")
        .args([
            "-c",
            CLIENT,
            &format!("ws://127.0.0.1:{port}/ws"),
            "ws.*",
            &N.to_string(),
            "ws.reply",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(python.stdout.take().expect("stdout")).lines();
    let mut next = || -> Value {
        let line = lines.next().expect("python printed a line").expect("UTF-8");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let ack = next();
    assert_eq!(
        ack,
        serde_json::json!({"type": "ack", "op": "subscribe", "topic": "ws.*", "id": 1})
    );

    // The ack came after the subscription was made: every message from here on reaches it.
    let publisher = spawn_pub_with(
        &broker,
        "ws.stamped",
        &["-H", "trace=abc", "-H", "n=1"],
        (0..N).map(|i| format!("message {i}")),
    );
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "mycelium pub failed: {stderr}");
    for i in 0..N {
        let frame = next();
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["subscription"], "ws.*");
        assert_eq!(frame["topic"], "ws.stamped");
        assert_eq!(frame["data"], format!("message {i}"), "in order, none lost");
        assert_eq!(
            frame["headers"],
            serde_json::json!({"trace": "abc", "n": "1"})
        );
        assert!(
            frame["id"].as_str().is_some_and(|id| id.len() == 36),
            "{frame}"
        );
        assert!(
            frame["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
            "{frame}"
        );
    }
    let ack = next();
    assert_eq!(
        ack,
        serde_json::json!({"type": "ack", "op": "publish", "topic": "ws.reply", "id": 2})
    );
    assert_eq!(reply.take_lines(1), ["from python"]);
    let output = python.wait_with_output().expect("python3 ran");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(broker);
}
