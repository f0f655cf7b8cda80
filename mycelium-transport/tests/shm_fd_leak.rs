//! `recv_fds` closes every fd it received when it refuses a message. Alone in its test binary:
//! it counts the entries of /proc/self/fd, which tests running in parallel would disturb.
#![cfg(not(loom))]

use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;

use mycelium_transport::shm::{recv_fds, send_fds, Segment};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Sends `count` fds and receives them with room for `max_fds`; returns the error message.
fn refused(a: &UnixStream, b: &UnixStream, fds: &[BorrowedFd<'_>], max_fds: usize) -> String {
    send_fds(a, b"fds", fds).unwrap();
    let mut buf = [0u8; 16];
    let err = recv_fds(b, &mut buf, max_fds).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    err.to_string()
}

#[test]
fn refused_messages_leak_no_fds() {
    let segments: Vec<Segment> = (0..3)
        .map(|i| Segment::create(&format!("mycelium-test-leak-{i}"), 4096).unwrap())
        .collect();
    let fds: Vec<BorrowedFd<'_>> = segments.iter().map(Segment::fd).collect();
    let (a, b) = UnixStream::pair().unwrap();
    let before = open_fds();

    // Accepted: the fds are open while held and closed when dropped.
    send_fds(&a, b"fds", &fds[..2]).unwrap();
    let mut buf = [0u8; 16];
    let (_, received) = recv_fds(&b, &mut buf, 2).unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(open_fds(), before + 2);
    drop(received);
    assert_eq!(open_fds(), before);

    // Two fds, room for one: the control buffer (rounded up to 8 bytes) holds both, so the
    // count check refuses them.
    let message = refused(&a, &b, &fds[..2], 1);
    assert!(message.contains("2 fds received"), "{message}");
    assert_eq!(open_fds(), before);

    // Three fds, room for one: the kernel installs two and truncates (MSG_CTRUNC).
    let message = refused(&a, &b, &fds, 1);
    assert!(message.contains("truncated"), "{message}");
    assert_eq!(open_fds(), before);

    // No room at all.
    let message = refused(&a, &b, &fds[..1], 0);
    assert!(message.contains("truncated"), "{message}");
    assert_eq!(open_fds(), before);
}
