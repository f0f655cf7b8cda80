//! The dashboard in a real browser: headless Chromium loads `/` of `mycelium run` while
//! `mycelium pub` publishes steadily on a topic; the page lists the topic and the rate it
//! displays for it rises above 0. Chromium is driven over its DevTools protocol
//! (`Page.navigate`, then `Runtime.evaluate` reading the table) from Python's `websockets`.
//!
//! Skipped, saying so, when `chromium` or Python's `websockets` is missing (`.ci/run`
//! installs both).

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pubsub_support::spawn_pub;
use common::{free_port, http_serving, wait_until, TestBroker};
use serde_json::Value;

/// Reads Chromium's DevTools port from `argv[1]` (its `DevToolsActivePort` file), opens
/// `argv[2]` in its page, and prints, every half second, what the dashboard's row for
/// topic `argv[3]` shows, until its rate is above 0 (exit 0) or 20 s passed (exit 1).
const DRIVER: &str = r#"
import asyncio, json, sys, time, urllib.request
try:
    from websockets.asyncio.client import connect
except ImportError:
    from websockets import connect

port_file, url, topic = sys.argv[1], sys.argv[2], sys.argv[3]

def devtools_port():
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            return int(open(port_file).read().split("\n")[0])
        except (OSError, ValueError):
            time.sleep(0.1)
    raise SystemExit("chromium wrote no DevToolsActivePort")

async def main():
    port = devtools_port()
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
    page = next(t for t in targets if t.get("type") == "page")
    async with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
        counter = 0
        async def call(method, params):
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") == counter:
                    return answer
        await call("Page.navigate", {"url": url})
        expression = """(() => {
            const row = [...document.querySelectorAll('#topics tbody tr')]
                .find((r) => r.dataset.topic === %s);
            if (!row) return null;
            const text = (name) => row.querySelector('.' + name).textContent;
            return JSON.stringify({rate: text('rate'), published: text('published'),
                routing: text('routing'), polls: window.mycelium.polls});
        })()""" % json.dumps(topic)
        deadline = time.time() + 20
        while time.time() < deadline:
            answer = await call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
            value = answer.get("result", {}).get("result", {}).get("value")
            print(json.dumps({"row": json.loads(value) if value else None}), flush=True)
            if value and float(json.loads(value)["rate"].replace(",", "")) > 0:
                return 0
            await asyncio.sleep(0.5)
        return 1

sys.exit(asyncio.run(main()))
"#;

/// A process group killed when dropped: Chromium and the helpers it started.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_lists_a_topic_and_its_rate_rises_in_chromium() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(chromium) = chromium else {
        println!("SKIPPED: chromium is needed (apt-get install -y chromium)");
        return;
    };
    let python = Command::new("python3")
        .args(["-c", "import websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        println!(
            "SKIPPED: python3 with the websockets package drives chromium (pip install websockets)"
        );
        return;
    }
    let started = Instant::now();
    let port = free_port();
    let broker = TestBroker::start(&format!(
        "[[topics]]\nname = \"dash.orders\"\nrouting = \"fanout\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    wait_until("the gateway to listen", || http_serving(port));
    // A steady stream, about 50 messages a second, until the publisher is dropped. The
    // feeder's 8 KiB buffer reaches `mycelium pub` every 4 of these 2 KiB lines.
    let padding = "x".repeat(2048);
    let _publisher = spawn_pub(
        &broker,
        "dash.orders",
        (0..).map(move |i: u64| {
            std::thread::sleep(Duration::from_millis(20));
            format!("order {i} {padding}")
        }),
    );

    let profile = tempfile::tempdir().expect("temp dir");
    let _browser = Group(
        Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromium starts"),
    );
    let output = Command::new("python3")
        .args(["-c", DRIVER])
        .arg(profile.path().join("DevToolsActivePort"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg("dash.orders")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    assert!(
        output.status.success(),
        "the dashboard did not show a rate above 0 for dash.orders within 20 s; it showed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = &last["row"];
    assert_eq!(row["routing"], "fanout", "{row}");
    let rate: f64 = row["rate"]
        .as_str()
        .and_then(|r| r.replace(',', "").parse().ok())
        .expect("a rate");
    assert!(rate > 0.0 && rate < 10_000.0, "{row}");
    println!("the dashboard showed {row} after {:?}", started.elapsed());
    drop(broker);
}
