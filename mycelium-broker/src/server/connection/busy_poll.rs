//! Reading a socket by polling for a short window before sleeping on readiness
//! (`performance.busy_poll_us`).
//!
//! Contract of [`busy_poll`]: it looks at the socket at once and then between yields to the
//! runtime until `until`, and returns the first read that did not block (bytes, end of
//! stream, or an error). It returns `None`, having read nothing, once `until` has passed with
//! nothing to read, or as soon as `stopping()` says so, even while bytes keep coming: a peer
//! that never pauses must not keep its reader from a shutdown. The caller then waits on
//! readiness as usual, where the stop and the connection's end are seen.
//!
//! Why poll: waking a sleeping thread costs 20-25 µs on a VM, more than a whole hop through
//! the broker, and a request/reply round trip crosses the broker twice each way. A look is
//! tokio's `try_read`, which reads only once the runtime has seen the socket readable; what
//! makes that news arrive without a sleep is the yield: a worker whose only runnable task
//! yielded polls the kernel's readiness with a zero timeout instead of parking. Yielding also
//! keeps every other task of the worker running. An idle connection costs nothing, because
//! the window runs from the connection's last read.

use std::io;
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::unix::OwnedReadHalf;

/// Reads into `buf` from `reader` by polling until `until`; see the module's contract.
pub(super) async fn busy_poll(
    reader: &OwnedReadHalf,
    buf: &mut BytesMut,
    until: Instant,
    stopping: impl Fn() -> bool,
) -> Option<io::Result<usize>> {
    loop {
        if stopping() {
            return None;
        }
        match reader.try_read_buf(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            read => return Some(read),
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// A connected pair: the test's end (std, blocking) and the reader's half (tokio).
    fn pair() -> (std::os::unix::net::UnixStream, OwnedReadHalf) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        theirs.set_nonblocking(true).expect("nonblocking");
        let theirs = tokio::net::UnixStream::from_std(theirs).expect("tokio stream");
        let (reader, _writer) = theirs.into_split();
        (ours, reader)
    }

    fn in_micros(us: u64) -> Instant {
        Instant::now() + Duration::from_micros(us)
    }

    #[tokio::test]
    async fn bytes_already_there_are_read() {
        let (mut peer, reader) = pair();
        peer.write_all(b"hello").expect("write");
        let mut buf = BytesMut::with_capacity(64);
        let read = busy_poll(&reader, &mut buf, in_micros(10_000_000), || false).await;
        assert_eq!(read.map(|r| r.expect("read")), Some(5));
        assert_eq!(&buf[..], b"hello");
    }

    #[tokio::test]
    async fn bytes_sent_within_the_window_are_read_by_polling() {
        let (mut peer, reader) = pair();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            peer.write_all(b"late").expect("write");
            peer
        });
        let mut buf = BytesMut::with_capacity(64);
        // A window far longer than the sender's pause: the read happens inside it.
        let read = busy_poll(&reader, &mut buf, in_micros(10_000_000), || false).await;
        assert_eq!(read.map(|r| r.expect("read")), Some(4));
        assert_eq!(&buf[..], b"late");
        drop(sender.join());
    }

    #[tokio::test]
    async fn a_silent_peer_ends_the_poll_once_the_window_has_passed() {
        let (_peer, reader) = pair();
        let mut buf = BytesMut::with_capacity(64);
        let until = in_micros(2_000);
        assert!(busy_poll(&reader, &mut buf, until, || false)
            .await
            .is_none());
        assert!(Instant::now() >= until);
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn a_closed_peer_is_the_end_of_stream() {
        let (peer, reader) = pair();
        drop(peer);
        let mut buf = BytesMut::with_capacity(64);
        let read = busy_poll(&reader, &mut buf, in_micros(10_000_000), || false).await;
        assert_eq!(read.map(|r| r.expect("read")), Some(0));
    }

    #[tokio::test]
    async fn stopping_ends_the_poll_even_with_bytes_waiting() {
        let (mut peer, reader) = pair();
        peer.write_all(b"more and more").expect("write");
        let mut buf = BytesMut::with_capacity(64);
        let read = busy_poll(&reader, &mut buf, in_micros(10_000_000), || true).await;
        assert!(read.is_none());
        assert!(buf.is_empty(), "nothing read once stopping");
    }
}
