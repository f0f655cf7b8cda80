//! memfd segments and fd passing: a ring shared through a second mapping, `from_fd`'s checks,
//! `SCM_RIGHTS` round trips, and a real second process publishing into a ring.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mycelium_transport::shm::{
    recv_fds, send_fds, PushError, RingConsumer, RingError, Segment, SegmentError, REQUIRED_SEALS,
};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::fstat;

const MAX_SEGMENT: usize = 1 << 20;

/// Sends `fd` over a fresh socket pair and returns the fd that arrives at the other end.
fn pass_fd(fd: std::os::fd::BorrowedFd<'_>) -> OwnedFd {
    let (a, b) = UnixStream::pair().unwrap();
    send_fds(&a, b"seg", &[fd]).unwrap();
    let mut buf = [0u8; 16];
    let (n, mut fds) = recv_fds(&b, &mut buf, 1).unwrap();
    assert_eq!(&buf[..n], b"seg");
    assert_eq!(fds.len(), 1);
    fds.pop().unwrap()
}

/// Lines of /proc/self/maps that map the memfd called `name`.
fn mappings_of(name: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let needle = format!("/memfd:{name} ");
    maps.lines()
        .filter(|line| format!("{line} ").contains(&needle))
        .count()
}

/// Receives the next frame, polling until `deadline`.
fn recv_before(consumer: &mut RingConsumer, deadline: Instant) -> Vec<u8> {
    let mut buf = Vec::new();
    loop {
        if consumer.try_recv_into(&mut buf).unwrap() {
            return buf;
        }
        assert!(Instant::now() < deadline, "no frame before the deadline");
        std::thread::yield_now();
    }
}

#[test]
fn a_consumer_on_a_second_mapping_receives_frames_pushed_through_the_first() {
    let name = format!("mycelium-test-second-mapping-{}", std::process::id());
    let (segment, mut producer) = Segment::create_ring(&name, 4096, 4).unwrap();
    let received = Segment::from_fd(pass_fd(segment.fd()), MAX_SEGMENT).unwrap();
    assert_eq!(received.len(), segment.len());
    assert_eq!(
        mappings_of(&name),
        2,
        "the receiver must map the memory a second time"
    );

    let region = received.ring_region().unwrap();
    let mut consumer = RingConsumer::join(&region).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for round in 0..100u32 {
        let payload = vec![round as u8; (round as usize * 7) % 300];
        producer.push_and_publish(&payload).unwrap();
        assert_eq!(recv_before(&mut consumer, deadline), payload);
    }
}

#[test]
fn a_region_keeps_the_mapping_alive_after_its_segment_is_dropped() {
    let (segment, mut producer) = Segment::create_ring("mycelium-test-outlive", 4096, 1).unwrap();
    let region = segment.ring_region().unwrap();
    let mut consumer = RingConsumer::join(&region).unwrap();
    drop(segment);
    drop(region);
    producer.push_and_publish(b"still mapped").unwrap();
    let mut buf = Vec::new();
    assert!(consumer.try_recv_into(&mut buf).unwrap());
    assert_eq!(buf, b"still mapped");
}

#[test]
fn a_received_segment_cannot_be_resized() {
    let segment = Segment::create("mycelium-test-resize", 8192).unwrap();
    let fd = pass_fd(segment.fd());
    let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap();
    assert!(SealFlag::from_bits_truncate(seals).contains(REQUIRED_SEALS));
    assert_eq!(
        nix::unistd::ftruncate(&fd, 4096),
        Err(nix::errno::Errno::EPERM)
    );
    assert_eq!(
        nix::unistd::ftruncate(&fd, 16384),
        Err(nix::errno::Errno::EPERM)
    );
    assert!(fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)).is_err());
}

#[test]
fn from_fd_refuses_a_memfd_without_seals() {
    let fd = memfd_create("mycelium-test-unsealed", MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, 8192).unwrap();
    let err = Segment::from_fd(fd, MAX_SEGMENT).unwrap_err();
    assert!(matches!(err, SegmentError::NotSealed { .. }), "{err:?}");
}

#[test]
fn from_fd_refuses_a_memfd_sealed_against_shrinking_only() {
    let fd = memfd_create(
        "mycelium-test-half-sealed",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, 8192).unwrap();
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    let err = Segment::from_fd(fd, MAX_SEGMENT).unwrap_err();
    assert!(matches!(err, SegmentError::NotSealed { .. }), "{err:?}");
}

#[test]
fn from_fd_refuses_a_file_that_cannot_be_sealed() {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let err = Segment::from_fd(OwnedFd::from(file), MAX_SEGMENT).unwrap_err();
    assert!(
        matches!(err, SegmentError::NotSealed { found: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn from_fd_refuses_a_segment_larger_than_expected() {
    let segment = Segment::create("mycelium-test-too-large", 8192).unwrap();
    let fd = segment.fd().try_clone_to_owned().unwrap();
    let err = Segment::from_fd(fd, 8191).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::BadSize {
                len: 8192,
                max: 8191
            }
        ),
        "{err:?}"
    );
    let fd = segment.fd().try_clone_to_owned().unwrap();
    assert_eq!(Segment::from_fd(fd, 8192).unwrap().len(), 8192);
}

#[test]
fn from_fd_refuses_an_empty_segment() {
    let fd = memfd_create(
        "mycelium-test-empty",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .unwrap();
    fcntl(&fd, FcntlArg::F_ADD_SEALS(REQUIRED_SEALS)).unwrap();
    let err = Segment::from_fd(fd, MAX_SEGMENT).unwrap_err();
    assert!(
        matches!(err, SegmentError::BadSize { len: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn a_segment_too_small_for_a_ring_header_has_no_ring_region() {
    let segment = Segment::create("mycelium-test-tiny", 64).unwrap();
    let received = Segment::from_fd(pass_fd(segment.fd()), MAX_SEGMENT).unwrap();
    assert!(matches!(
        received.ring_region(),
        Err(RingError::BadGeometry(_))
    ));
}

#[test]
fn a_segment_without_a_ring_is_not_initialised() {
    let segment = Segment::create("mycelium-test-blank", 8192).unwrap();
    let region = segment.ring_region().unwrap();
    assert!(matches!(
        RingConsumer::join(&region),
        Err(RingError::NotInitialised)
    ));
}

#[test]
fn create_ring_refuses_a_bad_geometry() {
    let Err(err) = Segment::create_ring("mycelium-test-bad-geometry", 1000, 1) else {
        panic!("a 1000-byte ring is not a power of two");
    };
    assert!(
        matches!(err, SegmentError::Ring(RingError::BadGeometry(_))),
        "{err:?}"
    );
}

#[test]
fn two_fds_travel_with_their_payload() {
    let first = Segment::create("mycelium-test-first", 4096).unwrap();
    let second = Segment::create("mycelium-test-second", 8192).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    send_fds(&a, b"two segments", &[first.fd(), second.fd()]).unwrap();

    let mut buf = [0u8; 64];
    let (n, fds) = recv_fds(&b, &mut buf, 2).unwrap();
    assert_eq!(&buf[..n], b"two segments");
    assert_eq!(fds.len(), 2);
    for (sent, got) in [first.fd(), second.fd()].iter().zip(&fds) {
        let (sent_stat, got_stat) = (fstat(sent).unwrap(), fstat(got).unwrap());
        assert_eq!(
            (sent_stat.st_dev, sent_stat.st_ino),
            (got_stat.st_dev, got_stat.st_ino)
        );
        assert_ne!(
            fcntl(got, FcntlArg::F_GETFD).unwrap() & nix::libc::FD_CLOEXEC,
            0,
            "received fds are close-on-exec"
        );
    }
}

#[test]
fn a_message_without_fds_arrives_with_none() {
    let (a, b) = UnixStream::pair().unwrap();
    send_fds(&a, b"plain", &[]).unwrap();
    let mut buf = [0u8; 16];
    let (n, fds) = recv_fds(&b, &mut buf, 4).unwrap();
    assert_eq!(&buf[..n], b"plain");
    assert!(fds.is_empty());
}

#[test]
fn recv_fds_reports_end_of_stream() {
    let (a, b) = UnixStream::pair().unwrap();
    drop(a);
    let mut buf = [0u8; 16];
    let (n, fds) = recv_fds(&b, &mut buf, 1).unwrap();
    assert_eq!(n, 0);
    assert!(fds.is_empty());
}

#[test]
fn send_fds_refuses_an_empty_payload() {
    let segment = Segment::create("mycelium-test-empty-payload", 4096).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let err = send_fds(&a, b"", &[segment.fd()]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Environment variable that turns [`child_publisher_mode`] on and names the parent's socket.
const CHILD_ENV: &str = "MYCELIUM_SHM_TEST_CHILD_SOCKET";
/// Frames the child publishes: many laps of a 4 KiB ring, so backpressure crosses processes.
const CHILD_FRAMES: u32 = 5_000;

fn child_frame(i: u32) -> Vec<u8> {
    let mut frame = format!("frame {i} ").into_bytes();
    frame.resize(8 + (i as usize * 13) % 200, (i % 251) as u8);
    frame
}

/// Child mode of [`a_child_process_publishes_frames_the_parent_reads`]; a no-op in a normal
/// test run. Creates the ring, sends its fd, waits for the parent to join, then publishes.
#[test]
fn child_publisher_mode() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (segment, mut producer) = Segment::create_ring("mycelium-test-child", 4096, 2).unwrap();
    send_fds(&stream, b"ring", &[segment.fd()]).unwrap();
    let mut joined = [0u8; 6];
    stream.read_exact(&mut joined).unwrap();
    assert_eq!(&joined, b"joined");

    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..CHILD_FRAMES {
        let frame = child_frame(i);
        loop {
            match producer.try_push(&frame) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    assert!(Instant::now() < deadline, "parent stopped reading");
                    std::thread::yield_now();
                }
                Err(err) => panic!("{err}"),
            }
        }
    }
    producer.publish();
}

#[test]
fn a_child_process_publishes_frames_the_parent_reads() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let (mut child, mut stream) = spawn_child("child_publisher_mode", CHILD_ENV);
    let deadline = Instant::now() + Duration::from_secs(30);

    let mut buf = [0u8; 16];
    let (n, mut fds) = recv_fds(&stream, &mut buf, 1).unwrap();
    assert_eq!(&buf[..n], b"ring");
    assert_eq!(fds.len(), 1);
    let segment = Segment::from_fd(fds.pop().unwrap(), MAX_SEGMENT).unwrap();
    let region = segment.ring_region().unwrap();
    let mut consumer = RingConsumer::join(&region).unwrap();
    stream.write_all(b"joined").unwrap();

    for i in 0..CHILD_FRAMES {
        assert_eq!(
            recv_before(&mut consumer, deadline),
            child_frame(i),
            "frame {i}"
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
    // The child is gone; its ring lives on in our mapping and holds nothing more.
    let mut rest = Vec::new();
    assert!(!consumer.try_recv_into(&mut rest).unwrap());
}

/// Environment variable that turns [`child_parked_consumer_mode`] on and names the parent's
/// socket.
const PARK_CHILD_ENV: &str = "MYCELIUM_SHM_TEST_PARK_CHILD_SOCKET";
/// Frames the parent publishes to the parked child, one per round.
const PARK_ROUNDS: u8 = 3;

/// Spawns this test binary in a child mode (`test` names it; `env` tells it the socket
/// path), and returns the child with the connected stream.
fn spawn_child(test: &str, env: &str) -> (std::process::Child, UnixStream) {
    let path = std::env::temp_dir().join(format!(
        "mycelium-shm-test-{}-{}.sock",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("child exited before connecting: {status}");
                }
                assert!(Instant::now() < deadline, "child never connected");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("{err}"),
        }
    };
    std::fs::remove_file(&path).unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (child, stream)
}

/// Child mode of [`a_consumer_parked_in_another_process_is_woken_through_the_shared_futex`];
/// a no-op in a normal test run. Receives the ring's fd, joins, then parks in
/// `recv_blocking` for each frame and acknowledges it.
#[test]
fn child_parked_consumer_mode() {
    let Ok(path) = std::env::var(PARK_CHILD_ENV) else {
        return;
    };
    let mut stream = UnixStream::connect(path).unwrap();
    let mut buf = [0u8; 16];
    let (n, mut fds) = recv_fds(&stream, &mut buf, 1).unwrap();
    assert_eq!(&buf[..n], b"ring");
    let segment = Segment::from_fd(fds.pop().unwrap(), MAX_SEGMENT).unwrap();
    let region = segment.ring_region().unwrap();
    let mut consumer = RingConsumer::join(&region).unwrap();
    stream.write_all(b"joined").unwrap();
    let mut out = Vec::new();
    for round in 0..PARK_ROUNDS {
        let start = Instant::now();
        // The timeout only bounds a failure: a lost cross-process wake-up would run it out.
        let got = consumer
            .recv_blocking(&mut out, Duration::ZERO, Some(Duration::from_secs(20)))
            .unwrap();
        assert!(got, "round {round}: no frame before the timeout");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "round {round}: woken only by the timeout"
        );
        assert_eq!(out, [round; 40]);
        stream.write_all(&[round]).unwrap();
    }
}

#[test]
fn a_consumer_parked_in_another_process_is_woken_through_the_shared_futex() {
    if std::env::var_os(PARK_CHILD_ENV).is_some() {
        return;
    }
    let name = format!("mycelium-test-futex-{}", std::process::id());
    let (segment, mut producer) = Segment::create_ring(&name, 4096, 2).unwrap();
    let (mut child, mut stream) = spawn_child("child_parked_consumer_mode", PARK_CHILD_ENV);
    send_fds(&stream, b"ring", &[segment.fd()]).unwrap();
    let mut joined = [0u8; 6];
    stream.read_exact(&mut joined).unwrap();
    assert_eq!(&joined, b"joined");
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in 0..PARK_ROUNDS {
        // Wait until the child has parked, and give it time to be asleep in the kernel.
        while producer.parked_consumers() == 0 {
            assert!(Instant::now() < deadline, "the child never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        producer.try_push(&[round; 40]).unwrap();
        assert_eq!(
            producer.publish_and_wake().unwrap(),
            1,
            "round {round}: the parked child"
        );
        let mut ack = [0u8; 1];
        stream.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [round]);
        // The child has decremented the count before it acknowledged (it parks again only
        // after this read).
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
    assert_eq!(producer.parked_consumers(), 0);
}
