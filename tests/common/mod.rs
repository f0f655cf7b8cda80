//! Shared helpers for the integration tests: build and locate the `mycelium` binary, start a
//! real broker process on a private socket, run client processes, wait on conditions with
//! deadlines (never sleep-as-synchronisation). Which test binary holds which feature:
//! `tests/README.md`.
//!
//! - [`raw`]: the raw-protocol client, for tests that speak bytes to the broker.
//! - [`pubsub_support`]: short-lived CLI commands with a deadline, `mycelium pub` fed from a
//!   thread, `mycelium stats --json`, a subscriber's output read to its end.
//! - [`free_port`] and [`http_serving`]: a loopback port for the HTTP gateway, and whether
//!   something listens on it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod raw;

/// A loopback TCP port nobody listens on now: bound by the system's choice, then let go (for
/// the gateway's `[http] listen`, which must name its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether something accepts TCP connections on loopback `port`.
pub fn http_serving(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A `[[topics]]` entry declaring fanout topic `name` with default settings.
pub fn fanout(name: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"fanout\"\n")
}

/// Runs `future` on a fresh runtime, failing the test if it takes longer than [`DEADLINE`].
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            tokio::time::timeout(DEADLINE, future)
                .await
                .expect("the async part of the test timed out")
        })
}

/// The `mycelium` binary, which cargo builds (same profile and target dir) before the tests.
pub fn mycelium_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mycelium"))
}

/// Waits until `condition` holds, polling; panics with `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A broker process on a private socket in a temporary directory; killed on drop.
pub struct TestBroker {
    child: Option<Child>,
    /// The broker's socket.
    pub socket: PathBuf,
    /// The config file it runs on.
    pub config: PathBuf,
    /// Holds the socket and config; removed on drop.
    pub dir: tempfile::TempDir,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl TestBroker {
    /// Starts a broker whose config is `[server]` (socket in a temp dir, plus `server_extra`
    /// lines) followed by `rest` (topics, defaults, performance).
    pub fn start_with(server_extra: &str, rest: &str) -> TestBroker {
        TestBroker::start_with_env(server_extra, rest, &[])
    }

    /// [`TestBroker::start_with`], the broker process getting `env` on top of the test's.
    pub fn start_with_env(server_extra: &str, rest: &str, env: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("broker.sock");
        let config = dir.path().join("broker.toml");
        let text = format!(
            "[server]\nsocket_path = \"{}\"\n{server_extra}\n\n{rest}\n",
            socket.display()
        );
        std::fs::write(&config, text).expect("writing config");
        let mut child = Command::new(mycelium_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("MYCELIUM_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the broker");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let broker = TestBroker {
            child: Some(child),
            socket,
            config,
            dir,
            stderr: Some(stderr),
        };
        wait_until("the broker to accept connections", || {
            std::os::unix::net::UnixStream::connect(&broker.socket).is_ok()
        });
        broker
    }

    /// Starts a broker with default server settings and these topics etc.
    pub fn start(rest: &str) -> TestBroker {
        TestBroker::start_with("", rest)
    }

    /// A `mycelium` command aimed at this broker (via MYCELIUM_SOCKET).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(mycelium_bin());
        cmd.env("MYCELIUM_SOCKET", &self.socket)
            .env_remove("MYCELIUM_LOG")
            .current_dir(self.dir.path());
        cmd
    }

    /// The broker's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends a signal to the broker.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signal the broker");
    }

    /// True while the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Rewrites the broker's config file in place: the `[server]` section it started with
    /// (its socket), then `rest`.
    pub fn rewrite_config(&self, rest: &str) {
        std::fs::write(&self.config, self.config_text(rest)).expect("rewriting the config");
    }

    /// The text of a config with this broker's socket and `rest`.
    pub fn config_text(&self, rest: &str) -> String {
        format!(
            "[server]\nsocket_path = \"{}\"\n\n{rest}\n",
            self.socket.display()
        )
    }

    /// Waits for the broker to exit; returns its status and everything it logged.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("broker child");
        let status = wait_child(&mut child, "the broker to exit");
        let log = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, log)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a child with [`DEADLINE`], killing it and failing the test on timeout.
pub fn wait_child(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A `mycelium sub` process whose stdout lines are collected; created by [`spawn_sub`].
pub struct SubProcess {
    /// The process.
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Its stderr lines after `subscribed to TOPIC` (notices such as `lagged: N ...`).
    notices: std::sync::mpsc::Receiver<String>,
}

/// Starts `mycelium sub TOPIC [args]` and returns once it printed `subscribed to TOPIC`.
pub fn spawn_sub(broker: &TestBroker, topic: &str, args: &[&str]) -> SubProcess {
    let mut child = broker
        .cmd()
        .arg("sub")
        .arg(topic)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mycelium sub");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (notice_tx, notices) = std::sync::mpsc::channel();
    let expected = format!("subscribed to {topic}");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if notice_tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match notices.recv_timeout(left) {
            Ok(line) if line.trim() == expected => break,
            Ok(_other_line) => continue,
            Err(_) => panic!("mycelium sub {topic} never said it was subscribed"),
        }
    }
    SubProcess {
        child,
        lines,
        notices,
    }
}

impl SubProcess {
    /// Collects `n` lines, failing after [`DEADLINE`].
    pub fn take_lines(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => panic!("got {} of {n} lines before the deadline", out.len()),
            }
        }
        out
    }

    /// Lines printed so far, without waiting.
    pub fn lines_so_far(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Collects stdout lines and the counts of its `lagged: N message(s) ...` notices on
    /// stderr until lines + lagged reach `total`; fails after [`DEADLINE`] saying how far it
    /// got. Returns the lines and the lagged count.
    pub fn take_lines_and_lagged(&self, total: u64) -> (Vec<String>, u64) {
        let start = Instant::now();
        let mut lines = Vec::new();
        let mut lagged = 0u64;
        loop {
            for notice in self.notices.try_iter() {
                if let Some(rest) = notice.trim().strip_prefix("lagged: ") {
                    let count = rest.split_whitespace().next().unwrap_or_default();
                    lagged += count
                        .parse::<u64>()
                        .unwrap_or_else(|_| panic!("a lagged notice without a count: {notice}"));
                }
            }
            if lines.len() as u64 + lagged >= total {
                return (lines, lagged);
            }
            assert!(
                start.elapsed() < DEADLINE,
                "got {} line(s) and {lagged} lagged of {total} before the deadline",
                lines.len()
            );
            // A bounded wait on the next line; notices are looked at between waits.
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                lines.push(line);
            }
        }
    }

    /// Waits for exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_child(&mut self.child, "mycelium sub to exit")
    }
}

impl Drop for SubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Running short-lived CLI commands with a deadline, feeding `mycelium pub` from a thread,
/// reading `mycelium stats --json`, and reading a subscriber's output to its end.
pub mod pubsub_support {
    use std::io::{Read, Write};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::thread::JoinHandle;
    use std::time::Instant;

    use super::{wait_child, SubProcess, TestBroker, DEADLINE};

    /// What a finished command printed, and how it exited.
    #[derive(Debug)]
    pub struct Finished {
        /// The exit status.
        pub status: ExitStatus,
        /// Everything on stdout.
        pub stdout: String,
        /// Everything on stderr.
        pub stderr: String,
    }

    fn read_all(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    }

    /// Runs `cmd` with stdin closed, collecting its output; fails the test after [`DEADLINE`].
    pub fn run_to_end(cmd: &mut Command) -> Finished {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a mycelium command");
        let stdout = read_all(child.stdout.take().expect("stdout"));
        let stderr = read_all(child.stderr.take().expect("stderr"));
        let status = wait_child(&mut child, "a mycelium command to exit");
        Finished {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// A `mycelium pub TOPIC` process reading its messages from stdin, fed by a thread.
    pub struct PubProcess {
        child: Child,
        feeder: Option<JoinHandle<()>>,
        stderr: Option<JoinHandle<String>>,
    }

    /// Starts `mycelium pub TOPIC` and a thread that writes each item of `lines` as one line of
    /// its stdin, then closes it. The iterator runs on the feeder thread, so it may block (for
    /// example on a channel) to pace the stream.
    pub fn spawn_pub<I>(broker: &TestBroker, topic: &str, lines: I) -> PubProcess
    where
        I: IntoIterator<Item = String> + Send + 'static,
    {
        spawn_pub_with(broker, topic, &[], lines)
    }

    /// [`spawn_pub`] with extra arguments for `mycelium pub` (such as `--transport shm`).
    pub fn spawn_pub_with<I>(
        broker: &TestBroker,
        topic: &str,
        args: &[&str],
        lines: I,
    ) -> PubProcess
    where
        I: IntoIterator<Item = String> + Send + 'static,
    {
        let mut child = broker
            .cmd()
            .arg("pub")
            .arg(topic)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mycelium pub");
        let stdin = child.stdin.take().expect("stdin");
        let stderr = read_all(child.stderr.take().expect("stderr"));
        let feeder = std::thread::spawn(move || {
            let mut stdin = std::io::BufWriter::new(stdin);
            for line in lines {
                if writeln!(stdin, "{line}").is_err() {
                    return;
                }
            }
            let _ = stdin.flush();
        });
        PubProcess {
            child,
            feeder: Some(feeder),
            stderr: Some(stderr),
        }
    }

    impl PubProcess {
        /// The process id.
        pub fn pid(&self) -> i32 {
            self.child.id() as i32
        }

        /// Waits for the publisher to exit; returns its status and stderr.
        pub fn finish(mut self) -> (ExitStatus, String) {
            let status = wait_child(&mut self.child, "mycelium pub to exit");
            if let Some(feeder) = self.feeder.take() {
                let _ = feeder.join();
            }
            let stderr = self
                .stderr
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default();
            (status, stderr)
        }
    }

    impl Drop for PubProcess {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// `mycelium stats --json` of `broker`, parsed.
    pub fn stats_json(broker: &TestBroker) -> serde_json::Value {
        let out = run_to_end(broker.cmd().args(["stats", "--json"]));
        assert!(
            out.status.success(),
            "mycelium stats failed: {}",
            out.stderr
        );
        serde_json::from_str(&out.stdout).expect("mycelium stats --json prints JSON")
    }

    /// One counter (`subscribers`, `published`, `delivered`, `dropped`, `queued`) of `topic`.
    pub fn topic_counter(broker: &TestBroker, topic: &str, counter: &str) -> u64 {
        let stats = stats_json(broker);
        let entry = stats["topics"]
            .as_array()
            .expect("a topics array")
            .iter()
            .find(|t| t["name"] == topic)
            .unwrap_or_else(|| panic!("no topic {topic} in {stats}"));
        entry[counter]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {counter} in {entry}"))
    }

    impl SubProcess {
        /// Every line not yet taken, up to the end of the process's stdout (it exited or was
        /// killed); fails the test if stdout is still open after [`DEADLINE`].
        pub fn lines_until_exit(&self) -> Vec<String> {
            let start = Instant::now();
            let mut out = Vec::new();
            loop {
                let left = DEADLINE.saturating_sub(start.elapsed());
                match self.lines.recv_timeout(left) {
                    Ok(line) => out.push(line),
                    Err(RecvTimeoutError::Disconnected) => return out,
                    Err(RecvTimeoutError::Timeout) => {
                        panic!("mycelium sub kept its stdout open past the deadline")
                    }
                }
            }
        }
    }
}

/// Lets this process (and the brokers it starts next, which inherit the limit) hold `fds`
/// file descriptors, as far as the hard limit allows.
pub fn allow_fds(fds: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("RLIMIT_NOFILE");
    if soft < fds {
        setrlimit(Resource::RLIMIT_NOFILE, fds.min(hard), hard).expect("raising RLIMIT_NOFILE");
    }
}

/// A blocking client whose subscriptions and publishers use shared memory.
pub fn shm_connect(
    socket: &Path,
) -> Result<mycelium_client::blocking::Client, mycelium_client::ConnectError> {
    shm_connect_with(socket, mycelium_client::ShmOptions::default())
}

/// [`shm_connect`] with the shared-memory session's options.
pub fn shm_connect_with(
    socket: &Path,
    shm: mycelium_client::ShmOptions,
) -> Result<mycelium_client::blocking::Client, mycelium_client::ConnectError> {
    let options = mycelium_client::ClientOptions {
        shm,
        ..mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory)
    };
    mycelium_client::blocking::Client::connect_with(socket, options)
}
