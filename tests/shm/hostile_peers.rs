//! Hostile shared-memory clients, speaking the raw protocol: one that scribbles over its ring,
//! one that sends bogus segments and reference frames. They hurt only their own messages.

use super::*;

#[test]
fn a_client_scribbling_over_its_ring_hurts_only_its_own_messages() {
    let broker = TestBroker::start(&format!("{}{}", fanout("victim"), fanout("bystander")));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("victim").expect("subscribe");
    let mut bystander_sub = client.subscribe("bystander").expect("subscribe");
    let mut bystander_pub = shm_client(&broker)
        .publisher("bystander")
        .expect("publisher");

    let mut hostile = RawConnection::open_shm(&broker.socket, "scribbler");
    hostile.send_frame(&Frame::ShmAttach {
        request_id: 1,
        role: ShmRole::Publish,
        no_echo: false,
        topic: "victim".into(),
    });
    let (grant, fds) = hostile.recv_with_fds();
    assert!(matches!(grant, Frame::ShmGrant { .. }), "{grant:?}");
    assert_eq!(fds.len(), 1);
    let file = std::fs::File::from(fds.into_iter().next().expect("fd"));
    // SAFETY: the mapping is only written through this slice, in this scope; other processes
    // writing the same memory at the same time is exactly what the test is about.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map the ring");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..50 {
        for byte in map.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        // The subscriber reads whatever it makes of that: never a panic or a hang.
        match recv_within(&mut sub, Duration::from_millis(5)) {
            // A ring found corrupt is dropped and counted as a fault, not an error.
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(other) => panic!("round {round}: unexpected error {other}"),
        }
    }
    // Everyone else is untouched.
    for seq in 0..100 {
        bystander_pub
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    for seq in 0..100 {
        assert_eq!(check_message(&recv(&mut bystander_sub)), Ok(seq));
    }
    let stats = stats_json(&broker);
    assert!(
        stats["topics"].is_array(),
        "the broker still answers: {stats}"
    );
}

#[test]
fn hostile_segments_and_reference_frames_are_refused_without_harm() {
    let broker = TestBroker::start(&large_topics());
    // A short request timeout bounds the wait for a segment that never comes.
    let options = ShmOptions {
        request_timeout: Duration::from_millis(300),
        ..ShmOptions::default()
    };
    let client = common::shm_connect_with(&broker.socket, options).expect("session");
    let mut sub = client.subscribe("big").expect("subscribe");
    let mut hostile = RawConnection::open_shm(&broker.socket, "scribbler");
    hostile.send_frame(&Frame::ShmAttach {
        request_id: 1,
        role: ShmRole::Publish,
        no_echo: false,
        topic: "big".into(),
    });
    let (grant, fds) = hostile.recv_with_fds();
    let Frame::ShmGrant { attachment, .. } = grant else {
        panic!("{grant:?}")
    };
    let ring_fd = fds.into_iter().next().expect("ring fd");
    let send_segment = |hostile: &mut RawConnection, segment: u64, len: u32, fd| {
        let frame = Frame::ShmSegment {
            request_id: 10 + segment as u32,
            attachment,
            segment,
            len,
            recipient: mycelium_transport::NO_SLOT,
        };
        hostile.send_frame_with_fds(&frame, &[fd]);
        hostile.recv()
    };
    let refused = |answer: Frame| {
        matches!(
            answer,
            Frame::Error {
                code: ErrorCode::ShmRefused,
                fatal: false,
                ..
            }
        )
    };
    // An unsealed memfd: refused.
    let unsealed = nix::sys::memfd::memfd_create("hostile", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .expect("memfd");
    nix::unistd::ftruncate(&unsealed, 1 << 20).expect("size");
    let answer = send_segment(&mut hostile, 1, 1 << 20, unsealed.as_fd());
    assert!(refused(answer.clone()), "unsealed: {answer:?}");
    // A sealed segment smaller than it claims: refused.
    let mut tiny = mycelium_transport::shm::PayloadWriter::create("tiny", 4096).expect("seg");
    tiny.as_mut_slice().fill(1);
    let tiny = tiny.seal().expect("seal");
    let answer = send_segment(&mut hostile, 2, 1 << 20, tiny.fd());
    assert!(refused(answer.clone()), "too small: {answer:?}");
    // Not a memfd at all (the ring's own fd has no write seal): refused.
    let answer = send_segment(&mut hostile, 3, 1 << 20, ring_fd.as_fd());
    assert!(refused(answer.clone()), "ring fd: {answer:?}");
    // Bogus reference frames in the ring: junk bytes, a reference to a segment never sent,
    // and a length the segment does not have. The subscriber reports errors, never reads out
    // of bounds or hangs beyond its request timeout, and the session goes on.
    let segment = mycelium_transport::shm::Segment::from_fd(ring_fd, 1 << 30).expect("map");
    let region = segment.ring_region().expect("region");
    let mut producer = mycelium_transport::shm::RingProducer::adopt(&region).expect("adopt");
    producer
        .try_push_marked(b"junk", mycelium_transport::shm::FrameFlags::REFERENCE)
        .expect("push");
    let missing = mycelium_transport::shm::reference::SegmentRef {
        segment: 77,
        len: 1 << 20,
    };
    producer
        .try_push_marked(
            &missing.encode(),
            mycelium_transport::shm::FrameFlags::REFERENCE,
        )
        .expect("push");
    producer.try_push(b"after").expect("push");
    producer.publish_and_wake().expect("publish");
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "the good message never came");
        match recv_within(&mut sub, Duration::from_millis(50)) {
            Ok(Some(message)) => {
                assert_eq!(message, b"after");
                break;
            }
            Ok(None) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(sub.faults(), 2, "one fault per bogus reference frame");
    assert_no_payload_memfds("self");
}

#[test]
fn the_brokers_reader_skips_bogus_reference_frames_and_keeps_serving_socket_subscribers() {
    let broker = TestBroker::start(&format!("{}{}", large_topics(), fanout("calm")));
    let big = timed_socket_subscriber(&broker, "big", 3);
    let calm = timed_socket_subscriber(&broker, "calm", 1);
    // A hostile shared-memory publisher on "big", writing raw frames into its ring.
    let mut hostile = RawConnection::open_shm(&broker.socket, "scribbler");
    hostile.send_frame(&Frame::ShmAttach {
        request_id: 1,
        role: ShmRole::Publish,
        no_echo: false,
        topic: "big".into(),
    });
    let (grant, fds) = hostile.recv_with_fds();
    let Frame::ShmGrant { attachment, .. } = grant else {
        panic!("{grant:?}")
    };
    let ring_fd = fds.into_iter().next().expect("ring fd");
    let segment = mycelium_transport::shm::Segment::from_fd(ring_fd, 1 << 30).expect("map");
    let region = segment.ring_region().expect("region");
    let mut producer = mycelium_transport::shm::RingProducer::adopt(&region).expect("adopt");
    use mycelium_transport::shm::reference::SegmentRef;
    // A malformed reference body (not 16 bytes), one with a non-zero reserved word, and a
    // well-formed reference to a segment never handed over; then a good message.
    producer
        .try_push_marked(b"junk", mycelium_transport::shm::FrameFlags::REFERENCE)
        .expect("push");
    let mut reserved = SegmentRef {
        segment: 5,
        len: 100,
    }
    .encode();
    reserved[12] = 1;
    producer
        .try_push_marked(&reserved, mycelium_transport::shm::FrameFlags::REFERENCE)
        .expect("push");
    let missing = SegmentRef {
        segment: 77,
        len: 1 << 20,
    };
    producer
        .try_push_marked(
            &missing.encode(),
            mycelium_transport::shm::FrameFlags::REFERENCE,
        )
        .expect("push");
    producer.try_push(b"after").expect("push");
    producer.publish_and_wake().expect("publish");
    let published = Instant::now();
    // Meanwhile another topic goes on as usual.
    let mut calm_pub = shm_client(&broker).publisher("calm").expect("publisher");
    calm_pub.publish(b"calm").expect("publish");
    // A good large message through a real segment, then a small one: both reach "big"'s
    // socket subscriber after "after", and nothing of the bogus frames does.
    let len = 3 * SMALL_RING;
    let mut writer = mycelium_transport::shm::PayloadWriter::create("good", len).expect("seg");
    writer
        .as_mut_slice()
        .copy_from_slice(&large_message(1, len));
    let sealed = writer.seal().expect("seal");
    let good = SegmentRef {
        segment: 100,
        len: len as u32,
    };
    let frame = Frame::ShmSegment {
        request_id: 2,
        attachment,
        segment: good.segment,
        len: good.len,
        recipient: mycelium_transport::NO_SLOT,
    };
    hostile.send_frame_with_fds(&frame, &[sealed.fd()]);
    let answer = hostile.recv();
    assert!(matches!(answer, Frame::Ack { .. }), "{answer:?}");
    drop(sealed);
    producer
        .try_push_marked(
            &good.encode(),
            mycelium_transport::shm::FrameFlags::REFERENCE,
        )
        .expect("push");
    producer.try_push(b"last").expect("push");
    producer.publish_and_wake().expect("publish");
    let calm = calm.join().expect("calm subscriber");
    assert_eq!(calm[0].0, b"calm");
    let big = big.join().expect("big subscriber");
    let messages: Vec<&[u8]> = big.iter().map(|(m, _)| &m[..]).collect();
    assert_eq!(messages[0], b"after");
    assert!(
        messages[1] == large_message(1, len),
        "the good large message"
    );
    assert_eq!(messages[2], b"last");
    // The reader waited for the missing segment (its SEGMENT_WAIT): the other topic's reader
    // did not wait with it.
    assert!(
        calm[0].1 < big[0].1,
        "'calm' got its message {:?} after the bogus frames, 'big' {:?}",
        calm[0].1 - published,
        big[0].1 - published
    );
    // Each bogus frame counted as dropped on its topic, nothing on the other.
    assert_eq!(topic_counter(&broker, "big", "dropped"), 3);
    assert_eq!(topic_counter(&broker, "calm", "dropped"), 0);
    drop((producer, region, segment, hostile, calm_pub));
    assert_no_payload_memfds(&broker.pid().to_string());
    broker.signal(Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "the broker exited with {status}: {log}");
    assert_eq!(
        log.matches("malformed reference frame: skipped").count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("no payload segment for a reference frame: skipped")
            .count(),
        1,
        "{log}"
    );
}
