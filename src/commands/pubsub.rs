//! `mycelium pub` and `mycelium sub`: one-shot publishing and line-per-message subscribing.
//!
//! - Either exits 1 with the broker's reason when its session or subscription ends under it.
//! - `sub --from`/`--group` read a durable topic's log instead: see `durable_sub`.
//! - `pub --transport shm` writes into a ring no broker reads for it, so it learns the end
//!   from the control socket: it polls that socket together with stdin (so it stops at once
//!   even while stdin is idle), and looks once more before it reports what it published; it
//!   never reports as published what went into a ring after the broker's end was readable.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use std::os::unix::ffi::OsStrExt;

use mycelium_client::blocking;
use mycelium_client::envelope::Headers;
use mycelium_client::{
    Client, ClientOptions, Message, PublishError, RecvError, RequestError, StartPosition,
    SubscriptionEnd, Transport as ClientTransport, TryRecvError,
};
use tokio::io::AsyncBufReadExt;

use crate::commands::durable_sub::DurableSub;
use crate::commands::message_json::JsonLines;
use crate::output::errln;
use crate::report::{connect_failed, ended, subscription_ended};
use crate::socket::{client_runtime, Transport};
use crate::SocketArgs;

/// Arguments of `mycelium pub`.
#[derive(Debug, clap::Args)]
pub struct PubArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The topic to publish on
    topic: String,
    /// The message (any bytes); without it, each line of stdin is published as one message:
    /// lines end at '\n' (a '\r' before it is dropped), and may hold any other bytes
    message: Option<std::ffi::OsString>,
    /// A header to send with every message, KEY=VALUE (repeat for more; a key may repeat).
    /// Keys are 1-255 characters from A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~; values any
    /// UTF-8 up to 65535 bytes. The topic bounds how many and how large (max_headers,
    /// max_header_bytes)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The data path: through the broker's socket, or a shared-memory ring of its own that
    /// subscribers read directly (fanout topics; socket subscribers get the messages through
    /// the broker)
    #[arg(long, value_enum, default_value = "uds")]
    transport: Transport,
}

/// Arguments of `mycelium sub`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("durable").args(["from", "group"]).multiple(true)))]
pub struct SubArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The topic to subscribe to
    topic: String,
    /// Exit after this many messages (at least 1; with --group, once they are acknowledged
    /// or rejected, and a message delivered again counts again)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print each message as one JSON object per line: id, topic, offset (only with --from
    /// or --group: the message's offset in the topic's log), timestamp (RFC 3339 with
    /// nanoseconds), headers, and data (UTF-8) or data_base64; id and timestamp are null
    /// when the topic does not stamp its messages
    #[arg(long)]
    json: bool,
    /// Read durable TOPIC's log from this point, then follow new messages as they are stored
    /// (no gap, no duplicate): `earliest` (the oldest message the log still holds), OFFSET (a
    /// whole number: the message at that offset), or a time in UTC as RFC 3339, e.g.
    /// 2026-12-06T10:00:00Z (the first message published at or after it). With --group it
    /// applies only to a group that does not exist yet (an existing group resumes where it
    /// stopped). Without --from and --group, sub receives only what is published from now
    /// on, from any topic
    #[arg(long, value_name = "earliest|OFFSET|TIME", value_parser = super::start_position::parse_start)]
    from: Option<StartPosition>,
    /// Join consumer group NAME on durable TOPIC: the group's members share its messages
    /// (each goes to one member), and each message is acknowledged once it has been written
    /// to stdout and flushed; one never acknowledged (this process was killed first) is
    /// delivered again to a member. A new group starts with messages published from now on
    /// unless --from says otherwise. NAME: 1-255 characters of A-Z a-z 0-9 . _ -
    #[arg(long, value_name = "NAME", value_parser = super::durable_sub::parse_group)]
    group: Option<String>,
    /// With --group: reject every message instead of acknowledging it, to test dead-letter
    /// policies: each is printed as usual, then handed back to be delivered again (a nack
    /// with requeue), so after the topic's max_deliveries deliveries the broker moves it to
    /// the topic's dead-letter topic
    #[arg(long, requires = "group")]
    reject: bool,
    /// With --from or --group: at most N messages in flight to this subscriber
    /// (unacknowledged in a group, not yet printed on a replay) [default: the broker's]
    #[arg(long, value_name = "N", requires = "durable", value_parser = clap::value_parser!(u32).range(1..))]
    prefetch: Option<u32>,
    /// The data path: through the broker's socket, or reading the publishers' shared-memory
    /// rings directly (fanout topics; socket publishers' messages come through the broker's
    /// relay ring)
    #[arg(long, value_enum, default_value = "uds")]
    transport: Transport,
}

/// What `sub` exits with when its arguments contradict each other (a usage error, as clap's).
const USAGE: u8 = 2;

/// `KEY=VALUE` of `-H`, split at the first '=' and checked as a header.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))?;
    Headers::new()
        .insert(key, value)
        .map_err(|error| error.to_string())?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The headers of `-H`, in order.
pub(crate) fn headers_of(pairs: &[(String, String)]) -> anyhow::Result<Headers> {
    let mut headers = Headers::new();
    for (key, value) in pairs {
        headers.insert(key.as_str(), value.as_str())?;
    }
    Ok(headers)
}

/// Lines of a byte stream that arrives in pieces, each handed out as one message: lines end
/// at '\n' (a '\r' before it is dropped), the last one may lack it (and then keeps a final
/// '\r'), and may hold any other bytes. Numbered from 1.
#[derive(Default)]
struct Lines {
    /// The start of a line whose end has not arrived yet.
    pending: Vec<u8>,
    number: u64,
}

impl Lines {
    /// Hands every line that `bytes` completes to `each`.
    fn feed(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end);
            rest = &after[1..];
            if self.pending.is_empty() {
                self.emit(line, true, &mut each)?;
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.emit(&whole, true, &mut each)?;
                whole.clear();
                self.pending = whole;
            }
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    /// At the end of the stream: the last line, if it had no '\n'.
    fn finish(&mut self, each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let last = std::mem::take(&mut self.pending);
        self.emit(&last, false, each)
    }

    /// Hands out `line` (without its '\n'; `ended`: it had one, and a '\r' before it goes).
    fn emit(
        &mut self,
        line: &[u8],
        ended: bool,
        mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.number += 1;
        let line = match line.strip_suffix(b"\r") {
            Some(stripped) if ended => stripped,
            _ => line,
        };
        each(self.number, line)
    }
}

/// Waits until stdin has input (or has ended), watching the broker meanwhile: when the
/// session's socket turns readable (news, or the end of the session) the publisher looks at
/// it, so that a publisher whose broker died or ended its attachment stops at once, even
/// while no input comes.
fn wait_for_input(
    input: &std::fs::File,
    client: &blocking::Client,
    publisher: &mut blocking::Publisher,
) -> Result<(), PublishError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let Some(session) = client.session_fd() else {
            return Ok(());
        };
        let mut fds = [
            PollFd::new(input.as_fd(), PollFlags::POLLIN),
            PollFd::new(session, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            // The read that follows reports what is wrong with stdin.
            Err(_) => return Ok(()),
            Ok(_) => {}
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|events| !events.is_empty());
        let (input_ready, session_ready) = (ready(&fds[0]), ready(&fds[1]));
        if session_ready {
            publisher.check()?;
        }
        if input_ready {
            return Ok(());
        }
    }
}

/// Publishes each line of stdin (see [`Lines`]); a line too large for the topic is reported
/// and skipped, and counted in `refused`.
fn publish_stdin(
    client: &blocking::Client,
    publisher: &mut blocking::Publisher,
    headers: &Headers,
    sent: &mut u64,
    refused: &mut u64,
) -> anyhow::Result<()> {
    use std::io::Read;
    use std::os::fd::AsFd;
    // Unbuffered reads of our own, so that a poll of fd 0 says whether a read would wait
    // (std's stdin buffers behind the poll's back).
    let input = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading stdin")?,
    );
    let mut chunk = vec![0u8; 64 * 1024];
    let mut lines = Lines::default();
    loop {
        // Once per read of stdin (a slow stdin: once per line), never per message.
        wait_for_input(&input, client, publisher)?;
        let n = match (&input).read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading stdin"),
        };
        let each = |number: u64, line: &[u8]| {
            publish_line(publisher, headers, sent, refused, number, line)
        };
        if n == 0 {
            return lines.finish(each);
        }
        lines.feed(&chunk[..n], each)?;
    }
}

/// Publishes line `number` of stdin; one too large for the topic is reported and skipped.
fn publish_line(
    publisher: &mut blocking::Publisher,
    headers: &Headers,
    sent: &mut u64,
    refused: &mut u64,
    number: u64,
    line: &[u8],
) -> anyhow::Result<()> {
    let published = if headers.is_empty() {
        publisher.publish(line)
    } else {
        publisher.publish_with(headers, line)
    };
    match published {
        Ok(()) => *sent += 1,
        Err(error @ PublishError::MessageTooLarge { .. }) => {
            errln!("line {number}: {error}; skipped");
            *refused += 1;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

fn publish_shm(args: PubArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let headers = headers_of(&args.headers)?;
    let client = shm_client(path)?;
    let mut publisher = client.publisher(&args.topic)?;
    let (mut sent, mut refused) = (0u64, 0u64);
    let published = match &args.message {
        Some(message) if headers.is_empty() => publisher
            .publish(message.as_bytes())
            .map_err(anyhow::Error::from),
        Some(message) => publisher
            .publish_with(&headers, message.as_bytes())
            .map_err(anyhow::Error::from),
        None => publish_stdin(&client, &mut publisher, &headers, &mut sent, &mut refused),
    };
    if args.message.is_some() && published.is_ok() {
        sent += 1;
    }
    // What was written since the publisher last looked went into a ring that nobody may read
    // any more: look once more before calling it published.
    let published = published.and_then(|()| publisher.check().map_err(anyhow::Error::from));
    if let Err(error) = published {
        let ended = matches!(
            error.downcast_ref::<PublishError>(),
            Some(PublishError::BrokerGone(_) | PublishError::Refused { .. })
        );
        if ended {
            return Err(error.context(format!(
                "publishing to {} over shared memory stopped after {sent} message(s) (any \
                 written after the broker's end went unread)",
                args.topic
            )));
        }
        return Err(error);
    }
    errln!("published {sent} message(s) to {}", args.topic);
    if publisher.dropped() > 0 {
        // drop_newest: "published" counts what was handed over, as over the socket.
        errln!(
            "{} of them dropped: the ring was full (backpressure = drop_newest)",
            publisher.dropped()
        );
    }
    if refused > 0 {
        anyhow::bail!(
            "{refused} line(s) were too large for topic {} and were not published",
            args.topic
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A blocking client whose publishers and subscriptions use shared memory.
fn shm_client(path: &std::path::Path) -> anyhow::Result<blocking::Client> {
    let options = ClientOptions::with_transport(ClientTransport::SharedMemory);
    blocking::Client::connect_with(path, options).map_err(connect_failed)
}

/// What a shared-memory subscriber's `Lagged` means: a lossy ring (`drop_oldest`) overwrote
/// the messages, or a publisher (or the broker's relay) dropped them for lack of room
/// (`drop_newest`).
const SHM_LOST: &str =
    "were lost before they were read (overwritten under drop_oldest, dropped under drop_newest)";

fn subscribe_shm(args: SubArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let client = shm_client(path)?;
    let mut subscription = client.subscribe(&args.topic)?;
    errln!("subscribed to {}", args.topic);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut received = 0u64;
    let mut lines = Printer::new(args.json);
    loop {
        let message = match subscription.try_recv() {
            Err(TryRecvError::Lagged(skipped)) => {
                // drop_oldest / drop_newest: news, not a failure; the next message is intact.
                errln!("lagged: {skipped} message(s) {SHM_LOST}");
                continue;
            }
            Err(TryRecvError::Ended(end)) => return Err(ended(end)),
            Ok(message) => message,
            Err(_) => {
                // Nothing more is ready: show what we have before waiting.
                if flush_or_gone(&mut out)? {
                    return Ok(ExitCode::SUCCESS);
                }
                match subscription.recv() {
                    Ok(message) => message,
                    Err(RecvError::Lagged(skipped)) => {
                        errln!("lagged: {skipped} message(s) {SHM_LOST}");
                        continue;
                    }
                    Err(RecvError::Ended(end)) => return Err(subscription_ended(&args.topic, end)),
                    Err(error) => {
                        return Err(anyhow::Error::new(error)
                            .context(format!("subscription to {} ended", args.topic)))
                    }
                }
            }
        };
        if lines.write(&mut out, &message)? {
            return Ok(ExitCode::SUCCESS);
        }
        received += 1;
        if Some(received) == args.count {
            flush_or_gone(&mut out)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
}

pub fn publish(args: PubArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    if args.transport == Transport::Shm {
        return publish_shm(args, &path);
    }
    let headers = headers_of(&args.headers)?;
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await.map_err(connect_failed)?;
        let publisher = client.publisher(&args.topic).await?;
        let (mut sent, mut refused) = (0u64, 0u64);
        match &args.message {
            Some(message) => {
                send(&publisher, &headers, message.as_bytes()).await?;
                sent += 1;
            }
            None => {
                // Bytes, not text: a line may hold anything but '\n'. A line the client refuses
                // (too large) is reported and skipped; the rest still go out.
                let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
                let mut line = Vec::new();
                let mut number = 0u64;
                loop {
                    line.clear();
                    if stdin
                        .read_until(b'\n', &mut line)
                        .await
                        .context("reading stdin")?
                        == 0
                    {
                        break;
                    }
                    number += 1;
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    match send(&publisher, &headers, &line).await {
                        Ok(()) => sent += 1,
                        Err(error @ PublishError::MessageTooLarge { .. }) => {
                            errln!("line {number}: {error}; skipped");
                            refused += 1;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        // The flush proves the broker processed every message, and reports any it refused:
        // what was accepted is what was sent less what it refused (a topic removed
        // mid-stream refuses every publish from then on).
        let flushed = client.flush().await;
        let refused_by_broker = client.refused_publishes();
        let closed = client.close().await;
        let accepted = sent.saturating_sub(refused_by_broker);
        if refused_by_broker == 0 {
            errln!("published {accepted} message(s) to {}", args.topic);
        } else {
            errln!(
                "published {accepted} message(s) to {}; the broker refused {refused_by_broker}",
                args.topic
            );
        }
        flushed?;
        closed?;
        if refused > 0 {
            anyhow::bail!(
                "{refused} line(s) were too large for topic {} and were not published",
                args.topic
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Publishes one message, with the `-H` headers if there are any.
async fn send(
    publisher: &mycelium_client::Publisher,
    headers: &Headers,
    payload: &[u8],
) -> Result<(), PublishError> {
    if headers.is_empty() {
        publisher.publish(payload).await
    } else {
        publisher.publish_with(headers, payload).await
    }
}

pub fn subscribe(args: SubArgs) -> anyhow::Result<ExitCode> {
    let path = args.socket.resolve()?;
    if args.from.is_some() || args.group.is_some() {
        if args.transport == Transport::Shm {
            errln!("error: --from and --group read the topic's log through the broker's socket: --transport shm does not apply to them");
            return Ok(ExitCode::from(USAGE));
        }
        let sub = DurableSub {
            topic: args.topic,
            start: args.from,
            group: args.group,
            reject: args.reject,
            prefetch: args.prefetch.unwrap_or(0),
            count: args.count,
            json: args.json,
        };
        return super::durable_sub::subscribe(&path, sub);
    }
    if args.transport == Transport::Shm {
        return subscribe_shm(args, &path);
    }
    client_runtime()?.block_on(async move {
        let client = Client::connect(&path).await.map_err(connect_failed)?;
        let mut subscription = client.subscribe(&args.topic).await?;
        errln!("subscribed to {}", args.topic);
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut received = 0u64;
        let mut lines = Printer::new(args.json);
        loop {
            let next = match subscription.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Lagged(skipped)) => Err(RecvError::Lagged(skipped)),
                Err(TryRecvError::Ended(end)) => Err(RecvError::Ended(end)),
                Err(_) => {
                    // Nothing more is ready: show what we have before waiting.
                    if flush_or_gone(&mut out)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                    // Returns on a loss report too, so that a loss nothing follows is
                    // printed (at the top of the loop) rather than waiting for a message.
                    subscription.recv().await
                }
            };
            let message = match next {
                Ok(message) => message,
                Err(RecvError::Lagged(skipped)) => {
                    // A drop_newest / drop_oldest topic dropped messages for us: say how many.
                    errln!("lagged: {skipped} message(s) were dropped by the broker (the topic's backpressure)");
                    continue;
                }
                Err(RecvError::Ended(SubscriptionEnd::Closed)) => return Ok(ExitCode::SUCCESS),
                Err(RecvError::Ended(end)) => {
                    return Err(socket_subscription_ended(&client, &args.topic, end).await)
                }
                Err(error) => {
                    return Err(error).context(format!("subscription to {} ended", args.topic))
                }
            };
            if lines.write(&mut out, &message)? {
                return Ok(ExitCode::SUCCESS);
            }
            received += 1;
            if Some(received) == args.count {
                flush_or_gone(&mut out)?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}

/// Why a socket subscription ended: the subscription says the broker is gone, and the
/// connection (asked with a flush, which answers at once once it is gone) says why.
pub(super) async fn socket_subscription_ended(
    client: &Client,
    topic: &str,
    end: SubscriptionEnd,
) -> anyhow::Error {
    if let SubscriptionEnd::BrokerGone { .. } = end {
        if let Err(error @ RequestError::BrokerGone(Some(_))) = client.flush().await {
            return anyhow::Error::new(error).context(format!("subscription to {topic} ended"));
        }
    }
    subscription_ended(topic, end)
}

/// How `sub` prints messages: the payload and a newline, or one JSON object per line.
pub(super) enum Printer {
    Payloads,
    Json(JsonLines),
}

impl Printer {
    pub(super) fn new(json: bool) -> Printer {
        if json {
            Printer::Json(JsonLines::default())
        } else {
            Printer::Payloads
        }
    }

    /// Writes one message. Returns true if stdout is gone (a closed pipe): the reader has
    /// what it wanted, which is not an error.
    pub(super) fn write(
        &mut self,
        out: &mut impl Write,
        message: &Message,
    ) -> anyhow::Result<bool> {
        match self {
            Printer::Payloads => write_bytes(out, message.payload()).and_then(|gone| {
                if gone {
                    Ok(true)
                } else {
                    write_bytes(out, b"\n")
                }
            }),
            Printer::Json(json) => json.write(out, message),
        }
    }
}

/// Writes `bytes`. Returns true if stdout is gone (a closed pipe).
pub(super) fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(bytes) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

pub(super) fn flush_or_gone(out: &mut impl Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    /// The lines `Lines` hands out when the stream arrives in `pieces`.
    fn split(pieces: &[&[u8]]) -> Vec<(u64, Vec<u8>)> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for piece in pieces {
            lines
                .feed(piece, |n, line| {
                    out.push((n, line.to_vec()));
                    Ok(())
                })
                .expect("feed");
        }
        lines
            .finish(|n, line| {
                out.push((n, line.to_vec()));
                Ok(())
            })
            .expect("finish");
        out
    }

    #[test]
    fn lines_split_across_reads_as_read_until_would() {
        let whole: &[u8] = b"a\r\n\nb\xffc\rd\nlast\r";
        let expected: Vec<(u64, Vec<u8>)> = vec![
            (1, b"a".to_vec()),
            (2, b"".to_vec()),
            (3, b"b\xffc\rd".to_vec()),
            // Unterminated: kept whole, as `read_until` and the socket path keep it.
            (4, b"last\r".to_vec()),
        ];
        assert_eq!(split(&[whole]), expected);
        // Every cut of the stream into two reads, including one between '\r' and '\n'.
        for cut in 0..=whole.len() {
            assert_eq!(
                split(&[&whole[..cut], &whole[cut..]]),
                expected,
                "cut {cut}"
            );
        }
        let bytewise: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(split(&bytewise), expected);
    }

    #[test]
    fn no_input_and_a_final_newline_make_no_empty_last_line() {
        assert!(split(&[]).is_empty());
        assert_eq!(split(&[b"x\n"]), vec![(1, b"x".to_vec())]);
    }
}
