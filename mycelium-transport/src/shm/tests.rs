//! Tests of the ring: behaviour, hostile memory, and (under `--cfg loom`) the memory orderings.

#[cfg(not(loom))]
mod unit {
    use crate::shm::layout::{
        data_offset, frame_size, required_size, CAPACITY_OFFSET, MAGIC_OFFSET,
        MAX_CONSUMERS_OFFSET, RING_VERSION, SLOTS_OFFSET, SLOT_STATE_OFFSET, VERSION_OFFSET,
    };
    use crate::shm::layout::{FRAME_ENVELOPE, FRAME_REFERENCE};
    use crate::shm::{
        attach, max_payload, FrameFlags, PushError, RingConsumer, RingError, RingRegion,
    };

    /// Payload `i` of a test stream: `len` bytes derived from `i`, so order and contents show.
    fn payload(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
    }

    fn recv(consumer: &mut RingConsumer) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        consumer
            .try_recv_into(&mut out)
            .expect("ring is not corrupt")
            .then_some(out)
    }

    #[test]
    fn frames_of_varied_sizes_round_trip_across_several_wraps() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut total = 0u64;
        for i in 0..2000 {
            let len = (i * 37) % 700;
            let sent = payload(i, len);
            producer.push_and_publish(&sent).unwrap();
            total += frame_size(len) as u64;
            assert_eq!(recv(&mut consumer).as_deref(), Some(&sent[..]), "frame {i}");
        }
        assert_eq!(recv(&mut consumer), None);
        assert!(total > 20 * 4096, "the stream wrapped the ring many times");
        assert!(
            consumer.position() >= total,
            "padding frames are counted too"
        );
    }

    #[test]
    fn marked_frames_keep_their_mark_across_wraps_of_a_lossless_ring() {
        // Reference frames (16-byte bodies, as the payload segments' references) between
        // data frames of varied sizes, through a lossless 4 KiB ring many times over. The
        // producer pushes in bursts until the ring is full, so frames wrap at every offset
        // and padding frames come before data frames. One consumer reads frame by frame
        // (`try_recv_marked`), the other in batches (`try_recv_batch_marked`); each gets every
        // frame, in order, with its own flags: reference or not, envelope or not, in every
        // combination (the envelope bit rides on data and reference frames alike).
        const CAPACITY: u64 = 4096;
        let (region, mut producer) = RingRegion::new_in_memory(CAPACITY, 2).unwrap();
        let mut single = RingConsumer::join(&region).unwrap();
        let mut batched = RingConsumer::join(&region).unwrap();
        let marked = |i: usize| i % 3 == 1 || i % 7 == 0;
        let flags = |i: usize| FrameFlags::new(marked(i), i % 2 == 0);
        let body = |i: usize| {
            if marked(i) {
                payload(i, crate::shm::reference::REFERENCE_LEN)
            } else {
                payload(i, [1, 0, 200, 13, max_payload(CAPACITY), 640][i % 6])
            }
        };
        const TOTAL: usize = 3000;
        let (mut next_single, mut next_batched) = (0, 0);
        let mut sent = 0;
        let mut wrapped_before = [0usize; 2];
        let mut out = Vec::new();
        while next_single < TOTAL || next_batched < TOTAL {
            // A burst: push until the ring is full (or the stream ends).
            while sent < TOTAL {
                let frame = body(sent);
                let offset = producer.position() % CAPACITY;
                let wraps = offset + frame_size(frame.len()) as u64 > CAPACITY;
                match producer.try_push_marked(&frame, flags(sent)) {
                    Ok(()) => {
                        if wraps {
                            wrapped_before[usize::from(marked(sent))] += 1;
                        }
                        sent += 1;
                    }
                    Err(PushError::Full) => break,
                    Err(other) => panic!("frame {sent}: {other}"),
                }
            }
            producer.publish();
            // Drain both consumers: one frame at a time, and in batches of up to 5.
            while let Some(got) = single.try_recv_marked(&mut out).unwrap() {
                assert_eq!(got, flags(next_single), "frame {next_single}: flags");
                assert_eq!(out, body(next_single), "frame {next_single}: bytes");
                next_single += 1;
            }
            while batched
                .try_recv_batch_marked(5, |frame, got| {
                    assert_eq!(got, flags(next_batched), "batch {next_batched}: flags");
                    assert_eq!(frame, body(next_batched), "batch {next_batched}: bytes");
                    next_batched += 1;
                })
                .unwrap()
                > 0
            {}
            assert_eq!((next_single, next_batched), (sent, sent), "both read all");
        }
        assert_eq!(single.try_recv_marked(&mut out), Ok(None));
        assert!(
            producer.position() > 100 * CAPACITY,
            "the stream wrapped the ring many times"
        );
        // A reference frame takes one line, and a ring's end is always at least a line away,
        // so padding only ever comes before data frames.
        assert!(
            wrapped_before[0] > 10 && wrapped_before[1] == 0,
            "padding came before data frames, never before a one-line reference frame: {wrapped_before:?}"
        );
    }

    #[test]
    fn the_envelope_bit_is_bit_30_of_the_len_word_and_plain_frames_carry_no_flag() {
        // The bytes of the frame header, as a peer in another process sees them.
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.try_push(b"plain").unwrap();
        producer
            .try_push_marked(b"enveloped", FrameFlags::ENVELOPE)
            .unwrap();
        let both = FrameFlags::REFERENCE | FrameFlags::ENVELOPE;
        producer.try_push_marked(&[7; 16], both).unwrap();
        producer.publish();
        let len_word = |at: usize| {
            let mut bytes = [0u8; 4];
            region.read_data(data_offset(1), at, &mut bytes);
            u32::from_ne_bytes(bytes)
        };
        assert_eq!(
            len_word(0),
            5,
            "a plain frame's len word is its length alone"
        );
        assert_eq!(len_word(64), 9 | FRAME_ENVELOPE);
        assert_eq!(len_word(128), 16 | FRAME_ENVELOPE | FRAME_REFERENCE);
        let mut out = Vec::new();
        assert_eq!(
            consumer.try_recv_marked(&mut out),
            Ok(Some(FrameFlags::PLAIN))
        );
        assert_eq!(out, b"plain");
        assert_eq!(
            consumer.try_recv_marked(&mut out),
            Ok(Some(FrameFlags::ENVELOPE))
        );
        assert_eq!(out, b"enveloped");
        let got = consumer.try_recv_marked(&mut out).unwrap().unwrap();
        assert!(got.is_reference() && got.is_envelope());
        assert_eq!(out, [7; 16]);
    }

    #[test]
    fn flag_bits_scribbled_into_a_len_word_are_reported_never_read_as_length() {
        // A hostile writer sets both flag bits on a short frame: the consumer reads the
        // frame's real length and reports the flags as the claims they are.
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.try_push(b"hello").unwrap();
        producer.publish();
        region.scribble(
            data_offset(1),
            &(5 | FRAME_ENVELOPE | FRAME_REFERENCE).to_ne_bytes(),
        );
        let mut out = Vec::new();
        let got = consumer.try_recv_marked(&mut out).unwrap().unwrap();
        assert!(got.is_envelope() && got.is_reference());
        assert_eq!(out, b"hello");
    }

    #[test]
    fn batched_pushes_are_invisible_until_published() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.try_push(b"a").unwrap();
        producer.try_push(b"bc").unwrap();
        assert_eq!(producer.pending(), 2);
        assert_eq!(recv(&mut consumer), None);
        producer.publish();
        assert_eq!(producer.pending(), 0);
        let mut seen = Vec::new();
        let count = consumer
            .try_recv_batch(10, |p| seen.push(p.to_vec()))
            .unwrap();
        assert_eq!(count, 2);
        assert_eq!(seen, vec![b"a".to_vec(), b"bc".to_vec()]);
        assert_eq!(
            consumer
                .try_recv_batch(10, |_| panic!("no more frames"))
                .unwrap(),
            0
        );
    }

    #[test]
    fn two_consumers_each_see_every_frame_in_order() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut a = RingConsumer::join(&region).unwrap();
        let mut b = RingConsumer::join(&region).unwrap();
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        for i in 0..500 {
            producer.push_and_publish(&payload(i, i % 100)).unwrap();
            if i % 3 == 0 {
                a.try_recv_batch(usize::MAX, |p| seen_a.push(p.to_vec()))
                    .unwrap();
            }
            if i % 5 == 0 {
                b.try_recv_batch(usize::MAX, |p| seen_b.push(p.to_vec()))
                    .unwrap();
            }
        }
        a.try_recv_batch(usize::MAX, |p| seen_a.push(p.to_vec()))
            .unwrap();
        b.try_recv_batch(usize::MAX, |p| seen_b.push(p.to_vec()))
            .unwrap();
        let expected: Vec<_> = (0..500).map(|i| payload(i, i % 100)).collect();
        assert_eq!(seen_a, expected);
        assert_eq!(seen_b, expected);
    }

    #[test]
    fn a_late_consumer_starts_at_the_current_position() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        producer.push_and_publish(b"before").unwrap();
        let mut late = RingConsumer::join(&region).unwrap();
        assert_eq!(late.position(), frame_size(6) as u64);
        assert_eq!(recv(&mut late), None);
        producer.push_and_publish(b"after").unwrap();
        assert_eq!(recv(&mut late).as_deref(), Some(&b"after"[..]));
    }

    #[test]
    fn the_producer_is_full_when_the_slowest_consumer_is_a_capacity_behind() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut fast = RingConsumer::join(&region).unwrap();
        let mut slow = RingConsumer::join(&region).unwrap();
        let frame = vec![7u8; 1024 - 8]; // exactly a quarter of the ring per frame
        for _ in 0..4 {
            producer.push_and_publish(&frame).unwrap();
        }
        while recv(&mut fast).is_some() {}
        assert_eq!(producer.push_and_publish(&frame), Err(PushError::Full));
        assert_eq!(recv(&mut slow).as_deref(), Some(&frame[..]));
        producer.push_and_publish(&frame).unwrap();
        assert_eq!(producer.push_and_publish(&frame), Err(PushError::Full));
    }

    #[test]
    fn without_consumers_the_producer_never_blocks() {
        let (_region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        for i in 0..100 {
            producer.push_and_publish(&payload(i, 1000)).unwrap();
        }
    }

    #[test]
    fn unpublished_frames_are_published_when_the_ring_needs_room() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let frame = vec![1u8; 1024 - 8];
        for _ in 0..4 {
            producer.try_push(&frame).unwrap();
        }
        assert_eq!(producer.try_push(&frame), Err(PushError::Full));
        assert_eq!(producer.pending(), 0, "the full check published the batch");
        assert_eq!(recv(&mut consumer).as_deref(), Some(&frame[..]));
        producer.try_push(&frame).unwrap();
    }

    #[test]
    fn a_payload_over_half_the_ring_is_too_large() {
        let (_region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let max = max_payload(4096);
        assert_eq!(max, 2048 - 8);
        assert_eq!(producer.max_payload(), max);
        producer.push_and_publish(&vec![0; max]).unwrap();
        assert_eq!(
            producer.push_and_publish(&vec![0; max + 1]),
            Err(PushError::TooLarge { len: max + 1, max })
        );
    }

    #[test]
    fn a_dropped_consumer_frees_its_slot_for_reuse() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let first = RingConsumer::join(&region).unwrap();
        assert_eq!(first.slot_index(), 0);
        assert!(matches!(
            RingConsumer::join(&region),
            Err(RingError::NoFreeSlot)
        ));
        let frame = vec![0u8; 1024 - 8];
        for _ in 0..4 {
            producer.push_and_publish(&frame).unwrap();
        }
        assert_eq!(producer.push_and_publish(&frame), Err(PushError::Full));
        drop(first);
        producer.push_and_publish(&frame).unwrap();
        let mut second = RingConsumer::join(&region).unwrap();
        assert_eq!(second.slot_index(), 0);
        producer.push_and_publish(b"next").unwrap();
        assert_eq!(recv(&mut second).as_deref(), Some(&b"next"[..]));
    }

    #[test]
    fn the_layout_matches_the_documented_offsets() {
        assert_eq!(required_size(4096, 3), 128 + 3 * 64 + 4096);
        assert_eq!(data_offset(3), 320);
        let (region, _producer) = RingRegion::new_in_memory(8192, 3).unwrap();
        assert_eq!(region.len(), required_size(8192, 3));
        let geometry = attach(&region).unwrap();
        assert_eq!((geometry.capacity, geometry.max_consumers), (8192, 3));
    }

    #[test]
    fn attach_rejects_bad_magic_version_and_geometry() {
        let fresh = || RingRegion::new_in_memory(4096, 2).unwrap().0;

        let region = fresh();
        region.scribble(MAGIC_OFFSET, &0u64.to_ne_bytes());
        assert_eq!(attach(&region), Err(RingError::NotInitialised));

        let region = fresh();
        region.scribble(MAGIC_OFFSET, b"NOTARING");
        assert!(matches!(attach(&region), Err(RingError::BadMagic { .. })));
        assert!(matches!(
            RingConsumer::join(&region),
            Err(RingError::BadMagic { .. })
        ));

        let region = fresh();
        region.scribble(VERSION_OFFSET, &(RING_VERSION + 1).to_ne_bytes());
        assert_eq!(
            attach(&region),
            Err(RingError::VersionMismatch {
                found: RING_VERSION + 1,
                expected: RING_VERSION
            })
        );

        for capacity in [0u64, 4095, 4097, 2048, 8192, u64::MAX] {
            let region = fresh();
            region.scribble(CAPACITY_OFFSET, &capacity.to_ne_bytes());
            assert!(
                matches!(attach(&region), Err(RingError::BadGeometry(_))),
                "capacity {capacity}"
            );
        }
        for consumers in [0u32, 3, 1025, u32::MAX] {
            let region = fresh();
            region.scribble(MAX_CONSUMERS_OFFSET, &consumers.to_ne_bytes());
            assert!(
                matches!(attach(&region), Err(RingError::BadGeometry(_))),
                "consumers {consumers}"
            );
        }
    }

    #[test]
    fn creation_rejects_bad_geometry() {
        for (capacity, consumers) in [(4095, 1), (2048, 1), (4096, 0), (4096, 1025), (1 << 41, 1)] {
            assert!(matches!(
                RingRegion::new_in_memory(capacity, consumers),
                Err(RingError::BadGeometry(_))
            ));
        }
    }

    #[test]
    fn a_raw_region_must_be_aligned_and_hold_the_ring() {
        #[repr(C, align(64))]
        struct Aligned([u8; 4096 + 192]);
        let mut memory = Box::new(Aligned([0; 4096 + 192]));
        let base = std::ptr::NonNull::new(memory.0.as_mut_ptr()).unwrap();
        // SAFETY: `memory` outlives the region and is not otherwise touched while it lives.
        let region = unsafe { RingRegion::from_raw(base, 4096 + 192) }.unwrap();
        let region = std::sync::Arc::new(region);
        assert_eq!(attach(&region), Err(RingError::NotInitialised));
        // SAFETY: nothing else uses this region.
        let mut producer = unsafe { crate::shm::init(&region, 4096, 1) }.unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.push_and_publish(b"raw").unwrap();
        assert_eq!(recv(&mut consumer).as_deref(), Some(&b"raw"[..]));
        // SAFETY: as above; the span is inside `memory`.
        let too_small = unsafe { crate::shm::init(&region, 8192, 1) };
        assert!(matches!(too_small, Err(RingError::BadGeometry(_))));
        drop((consumer, producer, region));
        let unaligned = base.map_addr(|a| a.checked_add(8).unwrap());
        // SAFETY: the span is inside `memory`; the call fails on alignment before any use.
        let err = unsafe { RingRegion::from_raw(unaligned, 4096) };
        assert!(matches!(err, Err(RingError::BadGeometry(_))));
    }

    #[test]
    fn a_state_scribbled_free_does_not_let_the_consumer_read_out_of_bounds() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        region.scribble(SLOTS_OFFSET + SLOT_STATE_OFFSET, &0u32.to_ne_bytes());
        // The producer no longer sees the consumer and may lap it.
        for i in 0..10 {
            producer.push_and_publish(&payload(i, 1000)).unwrap();
        }
        let mut out = Vec::new();
        assert!(
            consumer.try_recv_into(&mut out).is_err(),
            "lapped consumer notices"
        );
    }
}

#[cfg(not(loom))]
mod corrupt {
    //! One test per check a consumer makes on a frame header read from the ring.

    use crate::shm::layout::{data_offset, WRITE_POS_OFFSET};
    use crate::shm::{ReadError, RingConsumer, RingProducer, RingRegion};
    use std::sync::Arc;

    /// A ring whose consumer sits at data offset 4032 with three frames published after it:
    /// a 48-byte payload at 4032 (56 bytes, leaving 8 before the end), a padding frame at
    /// 4088, and a 500-byte payload at 0.
    fn ring_near_the_end() -> (Arc<RingRegion>, RingProducer, RingConsumer) {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.push_and_publish(&[1; 2040]).unwrap();
        producer.push_and_publish(&[2; 1976]).unwrap();
        let mut out = Vec::new();
        while consumer.try_recv_into(&mut out).unwrap() {}
        assert_eq!(consumer.position(), 4032);
        producer.try_push(&[3; 48]).unwrap();
        producer.try_push(&[4; 500]).unwrap();
        producer.publish();
        (region, producer, consumer)
    }

    /// Overwrites the frame header at data offset `offset`.
    fn write_header(region: &RingRegion, offset: usize, len: u32, flags: u32) {
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_ne_bytes());
        header[4..].copy_from_slice(&flags.to_ne_bytes());
        region.scribble(data_offset(1) + offset, &header);
    }

    fn recv_error(consumer: &mut RingConsumer) -> ReadError {
        let mut out = Vec::new();
        let error = consumer
            .try_recv_into(&mut out)
            .expect_err("corruption is reported");
        let position = consumer.position();
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(error),
            "the error is sticky"
        );
        assert_eq!(consumer.position(), position, "the position did not move");
        error
    }

    #[test]
    fn the_untouched_ring_reads_back_with_a_padding_frame_skipped() {
        let (_region, _producer, mut consumer) = ring_near_the_end();
        let mut out = Vec::new();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, [3; 48]);
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, [4; 500]);
        assert_eq!(consumer.position(), 4096 + 512);
    }

    #[test]
    fn a_frame_crossing_the_end_of_the_ring_is_corrupt() {
        let (region, _producer, mut consumer) = ring_near_the_end();
        write_header(&region, 4032, 100, 0);
        assert_eq!(
            recv_error(&mut consumer),
            ReadError::Corrupt("frame crosses the end of the ring")
        );
    }

    #[test]
    fn a_frame_beyond_the_write_position_is_corrupt() {
        let (region, _producer, mut consumer) = ring_near_the_end();
        write_header(&region, 0, 600, 0);
        let mut out = Vec::new();
        assert!(
            consumer.try_recv_into(&mut out).unwrap(),
            "the frame before is intact"
        );
        assert_eq!(
            recv_error(&mut consumer),
            ReadError::Corrupt("frame beyond the write position")
        );
    }

    #[test]
    fn a_frame_longer_than_half_the_ring_is_corrupt() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.push_and_publish(&[1; 2040]).unwrap();
        producer.push_and_publish(&[2; 2040]).unwrap();
        write_header(&region, 0, 3000, 0);
        assert_eq!(
            recv_error(&mut consumer),
            ReadError::Corrupt("frame longer than the ring allows")
        );
    }

    #[test]
    fn padding_in_the_wrong_place_or_of_the_wrong_length_is_corrupt() {
        let (region, _producer, mut consumer) = ring_near_the_end();
        write_header(&region, 4032, 48, 1);
        assert_eq!(
            recv_error(&mut consumer),
            ReadError::Corrupt("padding frame does not reach the ring's end")
        );

        // Frames are whole lines, so a padding frame can end beyond a (line-aligned) write
        // position only where the ring's end is more than a line away: from 3968.
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.push_and_publish(&[1; 2040]).unwrap();
        producer.push_and_publish(&[2; 1912]).unwrap();
        let mut out = Vec::new();
        while consumer.try_recv_into(&mut out).unwrap() {}
        assert_eq!(consumer.position(), 3968);
        region.scribble(WRITE_POS_OFFSET, &(3968u64 + 64).to_ne_bytes());
        write_header(&region, 3968, 120, 1);
        assert_eq!(
            recv_error(&mut consumer),
            ReadError::Corrupt("padding frame beyond the write position")
        );

        let (region, _producer, mut consumer) = ring_near_the_end();
        let mut out = Vec::new();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        write_header(&region, 0, 4088, 1);
        assert_eq!(
            recv_error(&mut consumer),
            ReadError::Corrupt("padding frame at the start of the ring")
        );
    }

    #[test]
    fn a_lossless_consumer_ignores_the_sequence_bits_of_a_tag() {
        // Every tag is valid: bit 0 marks padding, the other 31 bits are a sequence number
        // that only a lossy consumer uses (to count lost messages).
        let (region, _producer, mut consumer) = ring_near_the_end();
        write_header(&region, 4032, 48, 1234 << 1);
        let mut out = Vec::new();
        assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
        assert_eq!(out, [3; 48]);
    }

    #[test]
    fn a_write_position_inside_a_frame_header_or_out_of_range_is_corrupt() {
        for (write_pos, reason) in [
            (4032 + 4, "write position not frame-aligned"),
            (4032 - 64, "write position behind or a capacity ahead"),
            (
                4032 + 4096 + 64,
                "write position behind or a capacity ahead",
            ),
        ] {
            let (region, _producer, mut consumer) = ring_near_the_end();
            region.scribble(WRITE_POS_OFFSET, &(write_pos as u64).to_ne_bytes());
            assert_eq!(
                recv_error(&mut consumer),
                ReadError::Corrupt(reason),
                "{write_pos}"
            );
        }
    }

    #[test]
    fn a_batch_keeps_the_frames_before_the_corruption() {
        let (region, _producer, mut consumer) = ring_near_the_end();
        write_header(&region, 0, 4000, 0);
        let mut seen = Vec::new();
        let result = consumer.try_recv_batch(usize::MAX, |p| seen.push(p.to_vec()));
        assert_eq!(
            result,
            Err(ReadError::Corrupt("frame longer than the ring allows"))
        );
        assert_eq!(seen, vec![vec![3; 48]]);
        assert_eq!(consumer.position(), 4032 + 64);
    }
}

#[cfg(not(loom))]
mod hostile {
    //! A peer scribbles random bytes over positions, slots and frames between operations.

    use crate::shm::layout::{data_offset, SLOTS_OFFSET, SLOT_SIZE, WRITE_POS_OFFSET};
    use crate::shm::{ReadError, RingConsumer, RingRegion};
    use proptest::prelude::*;
    use std::sync::atomic::Ordering;

    const CAPACITY: u64 = 4096;
    const CONSUMERS: u32 = 2;

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Publish,
        Recv(usize),
        Batch(usize),
        Rejoin(usize),
        /// Where (a selector for header positions, slots or data), offset, bytes.
        Scribble(u8, usize, Vec<u8>),
        /// A plausible frame header (offset, len, flags) at an 8-aligned data offset: random
        /// bytes rarely make a length small enough to get past the first checks.
        FakeHeader(usize, u32, u32),
        /// A plausible `write_pos`: the current one moved by a few words either way.
        NudgeWritePos(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..1200).prop_map(Op::Push),
            2 => Just(Op::Publish),
            3 => (0usize..2).prop_map(Op::Recv),
            2 => (0usize..2).prop_map(Op::Batch),
            1 => (0usize..2).prop_map(Op::Rejoin),
            1 => (0u8..3, any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
                .prop_map(|(w, o, b)| Op::Scribble(w, o, b)),
            1 => (0usize..512, 0u32..5000, 0u32..3).prop_map(|(o, l, f)| Op::FakeHeader(o, l, f)),
            1 => (-64i64..64).prop_map(Op::NudgeWritePos),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Before any scribble every consumer sees exactly what was published; after one,
        /// consumers and the producer only ever return values or errors, never panic or hang.
        #[test]
        fn consumers_survive_random_bytes_in_the_ring(ops in proptest::collection::vec(op(), 1..120)) {
            let (region, mut producer) = RingRegion::new_in_memory(CAPACITY, CONSUMERS).unwrap();
            let mut consumers: Vec<Option<RingConsumer>> =
                (0..CONSUMERS).map(|_| RingConsumer::join(&region).ok()).collect();
            let mut expected: Vec<std::collections::VecDeque<Vec<u8>>> =
                vec![Default::default(); CONSUMERS as usize];
            let mut unpublished = Vec::new();
            let mut scribbled = false;
            let data = data_offset(CONSUMERS);
            let mut out = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(len) => {
                        let frame: Vec<u8> = (0..len).map(|j| (n + j) as u8).collect();
                        let before = producer.pending();
                        if producer.try_push(&frame).is_ok() {
                            if producer.pending() != before + 1 {
                                // The push published the batch first to make room.
                                publish_to(&mut expected, &consumers, &mut unpublished);
                            }
                            unpublished.push(frame);
                        } else if producer.pending() == 0 {
                            publish_to(&mut expected, &consumers, &mut unpublished);
                        }
                    }
                    Op::Publish => {
                        producer.publish();
                        publish_to(&mut expected, &consumers, &mut unpublished);
                    }
                    Op::Recv(i) => {
                        if let Some(consumer) = consumers[i].as_mut() {
                            match consumer.try_recv_into(&mut out) {
                                Ok(true) if !scribbled => {
                                    let want = expected[i].pop_front();
                                    prop_assert_eq!(Some(&out), want.as_ref());
                                }
                                Ok(false) if !scribbled => prop_assert!(expected[i].is_empty()),
                                Err(e) if !scribbled => prop_assert!(false, "error {e} on a sound ring"),
                                _ => {}
                            }
                        }
                    }
                    Op::Batch(i) => {
                        if let Some(consumer) = consumers[i].as_mut() {
                            let mut seen = Vec::new();
                            let result = consumer.try_recv_batch(usize::MAX, |p| seen.push(p.to_vec()));
                            if !scribbled {
                                prop_assert!(result.is_ok());
                                let want: Vec<_> = expected[i].drain(..).collect();
                                prop_assert_eq!(seen, want);
                            }
                        }
                    }
                    Op::Rejoin(i) => {
                        consumers[i] = None;
                        expected[i].clear();
                        consumers[i] = RingConsumer::join(&region).ok();
                        if !scribbled {
                            prop_assert!(consumers[i].is_some());
                        }
                    }
                    Op::Scribble(which, offset, bytes) => {
                        let (start, span) = match which {
                            0 => (WRITE_POS_OFFSET, 8),
                            1 => (SLOTS_OFFSET, CONSUMERS as usize * SLOT_SIZE),
                            _ => (data, CAPACITY as usize),
                        };
                        let len = bytes.len().min(span);
                        let at = start + offset % (span - len + 1);
                        region.scribble(at, &bytes[..len]);
                        scribbled = true;
                    }
                    Op::FakeHeader(word, len, flags) => {
                        let mut header = [0u8; 8];
                        header[..4].copy_from_slice(&len.to_ne_bytes());
                        header[4..].copy_from_slice(&flags.to_ne_bytes());
                        region.scribble(data + word * 8, &header);
                        scribbled = true;
                    }
                    Op::NudgeWritePos(words) => {
                        let current = region.header().producer.write_pos.load(Ordering::Relaxed);
                        let moved = current.wrapping_add_signed(words * 8);
                        region.scribble(WRITE_POS_OFFSET, &moved.to_ne_bytes());
                        scribbled = true;
                    }
                }
            }
        }
    }

    /// Records the frames just published as expected by every live consumer.
    fn publish_to(
        expected: &mut [std::collections::VecDeque<Vec<u8>>],
        consumers: &[Option<RingConsumer>],
        unpublished: &mut Vec<Vec<u8>>,
    ) {
        for (queue, consumer) in expected.iter_mut().zip(consumers) {
            if consumer.is_some() {
                queue.extend(unpublished.iter().cloned());
            }
        }
        unpublished.clear();
    }

    #[test]
    fn a_seeded_scribbler_never_makes_a_consumer_panic() {
        seeded_scribbler(false);
    }

    #[test]
    fn a_seeded_scribbler_never_makes_a_lossy_consumer_panic() {
        seeded_scribbler(true);
    }

    fn seeded_scribbler(lossy: bool) {
        // xorshift64*: deterministic, so a failure reproduces.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let (region, mut producer) = if lossy {
            RingRegion::new_in_memory_lossy(CAPACITY, CONSUMERS).unwrap()
        } else {
            RingRegion::new_in_memory(CAPACITY, CONSUMERS).unwrap()
        };
        let mut consumer = Some(RingConsumer::join(&region).unwrap());
        let data = data_offset(CONSUMERS);
        let (mut ok, mut errors) = (0usize, 0usize);
        let mut out = Vec::new();
        for round in 0..20_000u64 {
            let _ = producer.push_and_publish(&vec![round as u8; (next() % 600) as usize]);
            let at = match next() % 4 {
                // Lossy: `write_pos`, `reserve_pos`, `dropped` and `oldest_pos`.
                0 => WRITE_POS_OFFSET + (next() % if lossy { 32 } else { 8 }) as usize,
                1 => SLOTS_OFFSET + (next() % 16) as usize,
                _ => data + (next() % CAPACITY) as usize,
            };
            region.scribble(at, &[next() as u8]);
            let reader = consumer.as_mut().expect("always rejoined");
            match reader.try_recv_into(&mut out) {
                Ok(_) | Err(ReadError::Lagged { .. }) => ok += 1,
                Err(ReadError::Corrupt(_)) => {
                    errors += 1;
                    // Start over on a fresh ring in the same memory, as an owner would.
                    drop(consumer.take());
                    producer = reinit(&region, lossy);
                    consumer =
                        Some(RingConsumer::join(&region).expect("fresh ring has free slots"));
                }
            }
        }
        assert!(
            ok > 0 && errors > 0,
            "both outcomes exercised: {ok} ok, {errors} errors"
        );
    }

    /// Re-creates the ring in `region`, as its owner would after disconnecting everyone.
    fn reinit(region: &std::sync::Arc<RingRegion>, lossy: bool) -> crate::shm::RingProducer {
        // SAFETY: the caller dropped its producer and consumer first, so the returned producer
        // is the only one and no consumer is attached.
        unsafe { crate::shm::init_with_mode(region, CAPACITY, CONSUMERS, lossy) }.unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A lossy ring under the same random ops: until the first scribble every frame a
        /// consumer returns is whole and current (its bytes follow from its first byte, and
        /// frames come in push order); after one, consumers only return values or errors.
        #[test]
        fn lossy_consumers_survive_random_bytes_in_the_ring(ops in proptest::collection::vec(op(), 1..120)) {
            let (region, mut producer) = RingRegion::new_in_memory_lossy(CAPACITY, CONSUMERS).unwrap();
            let mut consumers: Vec<Option<RingConsumer>> =
                (0..CONSUMERS).map(|_| RingConsumer::join(&region).ok()).collect();
            let mut last: Vec<Option<u8>> = vec![None; CONSUMERS as usize];
            let mut scribbled = false;
            let data = data_offset(CONSUMERS);
            let mut out = Vec::new();
            let check = |out: &[u8], last: &mut Option<u8>, scribbled: bool| -> Result<(), TestCaseError> {
                if scribbled || out.is_empty() {
                    return Ok(());
                }
                for (j, byte) in out.iter().enumerate() {
                    prop_assert_eq!(*byte, out[0].wrapping_add((2 * j) as u8), "a torn frame");
                }
                if let Some(previous) = *last {
                    // Push numbers stay below 120, so the first byte is the push number.
                    prop_assert!(out[0] > previous, "frames out of order");
                }
                *last = Some(out[0]);
                Ok(())
            };
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(len) => {
                        // Byte j of push n is n + 2j: a mix of two frames shows.
                        let frame: Vec<u8> = (0..len).map(|j| (n + 2 * j) as u8).collect();
                        prop_assert!(producer.try_push(&frame).is_ok(), "a lossy ring is never full");
                    }
                    Op::Publish => producer.publish(),
                    Op::Recv(i) => {
                        if let Some(consumer) = consumers[i].as_mut() {
                            match consumer.try_recv_into(&mut out) {
                                Ok(true) => check(&out, &mut last[i], scribbled)?,
                                Ok(false) | Err(ReadError::Lagged { .. }) => {}
                                Err(e) => prop_assert!(scribbled, "error {e} on a sound ring"),
                            }
                        }
                    }
                    Op::Batch(i) => {
                        if let Some(consumer) = consumers[i].as_mut() {
                            let mut seen = Vec::new();
                            let result = consumer.try_recv_batch(usize::MAX, |p| seen.push(p.to_vec()));
                            for frame in &seen {
                                check(frame, &mut last[i], scribbled)?;
                            }
                            if let Err(ReadError::Corrupt(e)) = result {
                                prop_assert!(scribbled, "error {e} on a sound ring");
                            }
                        }
                    }
                    Op::Rejoin(i) => {
                        consumers[i] = None;
                        last[i] = None;
                        consumers[i] = RingConsumer::join(&region).ok();
                    }
                    Op::Scribble(which, offset, bytes) => {
                        let (start, span) = match which {
                            // `write_pos` to `oldest_pos`.
                            0 => (WRITE_POS_OFFSET, 32),
                            1 => (SLOTS_OFFSET, CONSUMERS as usize * SLOT_SIZE),
                            _ => (data, CAPACITY as usize),
                        };
                        let len = bytes.len().min(span);
                        let at = start + offset % (span - len + 1);
                        region.scribble(at, &bytes[..len]);
                        scribbled = true;
                    }
                    Op::FakeHeader(word, len, flags) => {
                        let mut header = [0u8; 8];
                        header[..4].copy_from_slice(&len.to_ne_bytes());
                        header[4..].copy_from_slice(&flags.to_ne_bytes());
                        region.scribble(data + word * 8, &header);
                        scribbled = true;
                    }
                    Op::NudgeWritePos(words) => {
                        let current = region.header().producer.write_pos.load(Ordering::Relaxed);
                        let moved = current.wrapping_add_signed(words * 8);
                        region.scribble(WRITE_POS_OFFSET, &moved.to_ne_bytes());
                        scribbled = true;
                    }
                }
            }
        }
    }
}

#[cfg(not(loom))]
mod lossy {
    //! The lossy (overwrite) mode: the producer never blocks, a lapped consumer reports
    //! `Lagged` with the number of messages it lost, then reads only whole, current frames.

    use crate::shm::layout::{data_offset, frame_size, OLDEST_POS_OFFSET};
    use crate::shm::{PushError, ReadError, RingConsumer, RingProducer, RingRegion};
    use std::sync::Arc;

    /// Frame `seq`: its sequence number, then bytes derived from it, so a frame mixed from
    /// two writes (or a stale one) shows.
    fn frame(seq: u64, len: usize) -> Vec<u8> {
        let mut bytes = seq.to_ne_bytes().to_vec();
        bytes.extend((0..len).map(|j| (seq as usize * 7 + j) as u8));
        bytes
    }

    /// The sequence number of a received frame, after checking every byte of it.
    fn check(out: &[u8]) -> u64 {
        let seq = u64::from_ne_bytes(out[..8].try_into().expect("frames carry a sequence"));
        assert_eq!(out, frame(seq, out.len() - 8), "frame {seq} is torn");
        seq
    }

    #[test]
    fn a_lossy_producer_never_reports_full() {
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let _idle = RingConsumer::join(&region).unwrap();
        for seq in 0..1000 {
            assert_eq!(producer.push_and_publish(&frame(seq, 300)), Ok(()));
        }
        assert!(matches!(
            producer.try_push(&[0; 4096]),
            Err(PushError::TooLarge { .. })
        ));
    }

    /// Payload bytes of frame `seq` in the varied-size tests (plus 8 for the sequence): sizes
    /// from 8 to 507 bytes, so frames wrap at every offset and padding frames come and go.
    fn varied(seq: u64) -> usize {
        (seq as usize * 37) % 500
    }

    /// Which of the frames pushed into a fresh lossy ring of `capacity` bytes, with these
    /// payload lengths, are still whole: a model of the layout (frames, padding frames before
    /// a wrap), independent of the ring code. A frame is whole while it starts at or after
    /// `end - capacity`, `end` being where the last frame ends.
    fn intact(capacity: u64, lens: &[usize]) -> std::ops::Range<u64> {
        let mut pos = 0u64;
        let mut starts = Vec::new();
        for &len in lens {
            let size = frame_size(len) as u64;
            let tail = capacity - pos % capacity;
            if size > tail {
                pos += tail;
            }
            starts.push(pos);
            pos += size;
        }
        let floor = pos.saturating_sub(capacity);
        let first = starts
            .iter()
            .position(|&start| start >= floor)
            .unwrap_or(lens.len());
        first as u64..lens.len() as u64
    }

    /// Pushes and publishes frame `seq` of the varied sizes, recording its length.
    fn push_varied(producer: &mut RingProducer, lens: &mut Vec<usize>, seq: u64) {
        let payload = frame(seq, varied(seq));
        lens.push(payload.len());
        producer.push_and_publish(&payload).unwrap();
    }

    /// Reads until the ring is empty, expecting exactly frames `range`, in order.
    fn expect_frames(consumer: &mut RingConsumer, range: std::ops::Range<u64>) {
        let mut out = Vec::new();
        for seq in range {
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true), "frame {seq}");
            assert_eq!(check(&out), seq);
        }
        assert_eq!(consumer.try_recv_into(&mut out), Ok(false), "nothing more");
    }

    #[test]
    fn a_lapped_consumer_gets_the_exact_lag_then_every_intact_frame_without_a_new_publish() {
        // Lapped by different amounts (a part of a ring to several rings), with frames of
        // varied sizes: every wrap point, with and without a padding frame.
        for last in [30u64, 34, 41, 47, 58, 77, 120, 333] {
            let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut lens = Vec::new();
            let mut out = Vec::new();
            push_varied(&mut producer, &mut lens, 0);
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
            assert_eq!(check(&out), 0);
            for seq in 1..=last {
                push_varied(&mut producer, &mut lens, seq);
            }
            let whole = intact(4096, &lens);
            assert!(whole.start > 1, "lapped after {last}");
            // Told at once (no new frame needed) of exactly the frames overwritten unread...
            assert_eq!(
                consumer.try_recv_into(&mut out),
                Err(ReadError::Lagged {
                    skipped: whole.start - 1
                }),
                "after {last}"
            );
            // ...then it reads every frame still whole, oldest first.
            expect_frames(&mut consumer, whole);
            push_varied(&mut producer, &mut lens, last + 1);
            expect_frames(&mut consumer, last + 1..last + 2);
        }
    }

    #[test]
    fn reference_frames_count_as_whole_frames_when_a_lapped_consumer_resumes() {
        // Every third frame is a reference frame (FRAME_REFERENCE in its `len` word): the
        // producer's walk to the oldest intact frame must step over it by its real size, or
        // it would give up and resume consumers past frames that are still whole.
        for last in [30u64, 47, 120] {
            let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut lens = Vec::new();
            let mut out = Vec::new();
            for seq in 0..=last {
                let payload = frame(seq, varied(seq));
                lens.push(payload.len());
                let flags = crate::shm::FrameFlags::new(seq % 3 == 1, seq % 2 == 0);
                producer.try_push_marked(&payload, flags).unwrap();
                producer.publish();
                if seq == 0 {
                    assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
                }
            }
            let whole = intact(4096, &lens);
            assert!(whole.start > 1, "lapped after {last}");
            assert_eq!(
                consumer.try_recv_marked(&mut out),
                Err(ReadError::Lagged {
                    skipped: whole.start - 1
                }),
                "after {last}"
            );
            for seq in whole {
                assert_eq!(
                    consumer.try_recv_marked(&mut out),
                    Ok(Some(crate::shm::FrameFlags::new(
                        seq % 3 == 1,
                        seq % 2 == 0
                    ))),
                    "frame {seq} and its flags"
                );
                assert_eq!(check(&out), seq);
            }
            assert_eq!(consumer.try_recv_marked(&mut out), Ok(None), "nothing more");
        }
    }

    #[test]
    fn a_consumer_lapped_inside_a_batch_gets_the_frames_first_and_the_lag_next() {
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut lens = Vec::new();
        for seq in 0..5 {
            push_varied(&mut producer, &mut lens, seq);
        }
        // The batch hands over frame 0; then, before it reads on, the producer laps it.
        let mut seen = Vec::new();
        let delivered = consumer.try_recv_batch(10, |p| {
            seen.push(check(p));
            if seen.len() == 1 {
                for seq in 5..=60 {
                    push_varied(&mut producer, &mut lens, seq);
                }
            }
        });
        assert_eq!(delivered, Ok(1));
        assert_eq!(seen, [0]);
        let whole = intact(4096, &lens);
        let mut out = Vec::new();
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(ReadError::Lagged {
                skipped: whole.start - 1
            })
        );
        seen.clear();
        assert_eq!(
            consumer.try_recv_batch(usize::MAX, |p| seen.push(check(p))),
            Ok(whole.clone().count())
        );
        assert_eq!(seen, whole.collect::<Vec<_>>());
    }

    #[test]
    fn a_consumer_lapped_before_its_first_frame_reports_a_lag_of_at_least_one() {
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut lens = Vec::new();
        let mut out = Vec::new();
        for seq in 0..100 {
            push_varied(&mut producer, &mut lens, seq);
        }
        // It never learnt the number it started at: a lower bound, then the intact frames.
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 1 })
        );
        expect_frames(&mut consumer, intact(4096, &lens));
    }

    #[test]
    fn a_consumer_whose_published_frames_were_all_overwritten_by_a_pending_batch_waits_for_it() {
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut lens = Vec::new();
        let mut out = Vec::new();
        for seq in 0..4 {
            push_varied(&mut producer, &mut lens, seq);
        }
        assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
        // Over a ring of frames pushed but not published: nothing published is whole.
        for seq in 4..=40 {
            let payload = frame(seq, varied(seq));
            lens.push(payload.len());
            producer.try_push(&payload).unwrap();
        }
        assert_eq!(consumer.try_recv_into(&mut out), Ok(false));
        producer.publish();
        let whole = intact(4096, &lens);
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(ReadError::Lagged {
                skipped: whole.start - 1
            })
        );
        expect_frames(&mut consumer, whole);
    }

    /// A consumer that read frame 0 of a ring since lapped by frames 1 to 100 (varied sizes).
    fn lapped_ring() -> (Arc<RingRegion>, RingProducer, RingConsumer, Vec<usize>) {
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut lens = Vec::new();
        push_varied(&mut producer, &mut lens, 0);
        assert_eq!(consumer.try_recv_into(&mut Vec::new()), Ok(true));
        for seq in 1..=100 {
            push_varied(&mut producer, &mut lens, seq);
        }
        (region, producer, consumer, lens)
    }

    fn oldest_pos(region: &RingRegion) -> u64 {
        region
            .header()
            .producer
            .oldest_pos
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn a_scribbled_oldest_position_is_corrupt_or_costs_only_the_intact_frames() {
        let mut out = Vec::new();
        // Misaligned, or not beyond the lapped position: corrupt, and it stays so.
        for junk in [|real: u64| real + 3, |_| 0, |_| 8] {
            let (region, _producer, mut consumer, _) = lapped_ring();
            region.scribble(OLDEST_POS_OFFSET, &junk(oldest_pos(&region)).to_ne_bytes());
            assert!(matches!(
                consumer.try_recv_into(&mut out),
                Err(ReadError::Corrupt(_))
            ));
            assert!(matches!(
                consumer.try_recv_into(&mut out),
                Err(ReadError::Corrupt(_))
            ));
        }
        // Far ahead: the consumer jumps to the write position, and the next frame tells it
        // the exact count (the producer never reads the word back: it stores a sound one).
        let (region, mut producer, mut consumer, mut lens) = lapped_ring();
        region.scribble(OLDEST_POS_OFFSET, &(u64::MAX - 63).to_ne_bytes());
        assert_eq!(consumer.try_recv_into(&mut out), Ok(false));
        push_varied(&mut producer, &mut lens, 101);
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 100 })
        );
        expect_frames(&mut consumer, 101..102);
        // Inside a frame: whatever the bytes there say, reads return (no panic, no hang).
        for shift in [8u64, 16, 64, 256] {
            let (region, _producer, mut consumer, _) = lapped_ring();
            region.scribble(
                OLDEST_POS_OFFSET,
                &(oldest_pos(&region) + shift).to_ne_bytes(),
            );
            for _ in 0..50 {
                let _ = consumer.try_recv_into(&mut out);
            }
        }
    }

    #[test]
    fn scribbled_frame_headers_stop_the_producers_walk_at_the_frame_it_writes() {
        let mut out = Vec::new();
        // Headers the walk must refuse: too long, crossing the end, padding not reaching the
        // end, padding at offset 0.
        // (`case` 4: a length that fits, which takes the walk into a payload whose bytes it
        // then refuses.)
        let bad = |case: usize, offset: usize| -> (u32, u32) {
            match case {
                0 => (5000, 0),
                1 => ((4096 - offset) as u32, 0),
                2 => (16, 1),
                3 => (4088, 1),
                _ => (2000, 0),
            }
        };
        for case in 0..5 {
            let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut lens = Vec::new();
            push_varied(&mut producer, &mut lens, 0);
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
            for seq in 1..=10 {
                push_varied(&mut producer, &mut lens, seq);
            }
            // Scribble over the header of a frame the walk has not passed yet (frame 5; case
            // 3 over frame 0's, at offset 0).
            let start: u64 = if case == 3 {
                0
            } else {
                lens[..5].iter().map(|&len| frame_size(len) as u64).sum()
            };
            let offset = start as usize % 4096;
            let (len, tag) = bad(case, offset);
            let mut bytes = len.to_ne_bytes().to_vec();
            bytes.extend(tag.to_ne_bytes());
            region.scribble(data_offset(1) + offset, &bytes);
            // Lap the consumer well past the scribble: the walk stops at the frame being
            // written, and later walks go on from there, frame by frame.
            for seq in 11..=120 {
                push_varied(&mut producer, &mut lens, seq);
            }
            let whole = intact(4096, &lens);
            assert_eq!(
                consumer.try_recv_into(&mut out),
                Err(ReadError::Lagged {
                    skipped: whole.start - 1
                }),
                "case {case}"
            );
            expect_frames(&mut consumer, whole);
        }
        // A plausible but wrong length sends the walk into a payload: it must still end, and
        // so must every read.
        for shrink in [8u32, 16, 104] {
            let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut lens = Vec::new();
            push_varied(&mut producer, &mut lens, 0);
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
            for seq in 1..=10 {
                push_varied(&mut producer, &mut lens, seq);
            }
            let start: usize = lens[..5].iter().map(|&len| frame_size(len)).sum();
            let len = (lens[5] as u32).saturating_sub(shrink);
            region.scribble(data_offset(1) + start % 4096, &len.to_ne_bytes());
            for seq in 11..=120 {
                push_varied(&mut producer, &mut lens, seq);
                let _ = consumer.try_recv_into(&mut out);
            }
            for _ in 0..200 {
                let _ = consumer.try_recv_into(&mut out);
            }
        }
    }

    #[test]
    fn a_slow_consumer_on_another_thread_sees_only_whole_frames_and_counts_every_loss() {
        const FRAMES: u64 = 200_000;
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut out = Vec::new();
        // Frame 0 is read before the race starts, so every later loss has an exact count.
        producer.push_and_publish(&frame(0, 40)).unwrap();
        assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_done = std::sync::Arc::clone(&done);
        let writer = std::thread::spawn(move || {
            for seq in 1..FRAMES {
                let len = (seq as usize * 13) % 300;
                producer.push_and_publish(&frame(seq, len)).unwrap();
            }
            writer_done.store(true, std::sync::atomic::Ordering::Release);
            producer
        });
        let (mut delivered, mut skipped, mut lags) = (1u64, 0u64, 0u64);
        let mut last = 0u64;
        let mut account = |result: Result<bool, ReadError>, out: &[u8]| match result {
            Ok(true) => {
                let seq = check(out);
                assert_eq!(seq, last + 1, "in order, no silent gap");
                last = seq;
                delivered += 1;
                true
            }
            Ok(false) => false,
            Err(ReadError::Lagged { skipped: n }) => {
                assert!(n > 0);
                last += n;
                skipped += n;
                lags += 1;
                true
            }
            Err(error) => panic!("{error}"),
        };
        for round in 0u64.. {
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            let result = consumer.try_recv_into(&mut out);
            if !account(result, &out) && finished {
                break;
            }
            if round % 64 == 0 {
                // Be slow now and then, so the producer laps us.
                std::thread::yield_now();
            }
        }
        let mut producer = writer.join().unwrap();
        // A lap at the very end is reported with the next frame: push one more.
        producer.push_and_publish(&frame(FRAMES, 8)).unwrap();
        while account(consumer.try_recv_into(&mut out), &out) {}
        assert_eq!(last, FRAMES);
        assert_eq!(
            delivered + skipped,
            FRAMES + 1,
            "every message is delivered or counted"
        );
        assert!(delivered > 1, "some frames got through");
        eprintln!("{delivered} delivered, {skipped} skipped in {lags} lags");
    }
}

#[cfg(not(loom))]
mod wake {
    //! The wake protocol with real threads and real futexes. Every wait that a lost wake-up
    //! would hang is bounded by a channel timeout, so a failure fails instead of hanging.

    use crate::shm::layout::{
        PARKED, PARKED_CONSUMERS_OFFSET, PARKED_RUNNING, PRODUCER_PARKED_OFFSET, SLOTS_OFFSET,
        SLOT_PARKED_OFFSET, SLOT_READ_POS_OFFSET, SLOT_SIZE, WRITE_POS_OFFSET,
    };
    use crate::shm::{
        release_slot, reserve_slot, wait_any, PushError, RecvError, RingConsumer, RingError,
        RingRegion,
    };
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// Long enough that only a lost wake-up (or a hung thread) reaches it.
    const HANG: Duration = Duration::from_secs(30);

    fn payload(i: usize) -> Vec<u8> {
        let len = 1 + i % 61;
        (0..len).map(|j| (i.wrapping_mul(31) + j) as u8).collect()
    }

    #[test]
    fn the_wake_scan_lowers_the_count_of_a_consumer_that_died_parked() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let slot = reserve_slot(&region).unwrap();
        // The holder raised its flag and the count, then died without a word.
        region.scribble(PARKED_CONSUMERS_OFFSET, &1u32.to_ne_bytes());
        region.scribble(
            SLOTS_OFFSET + slot * SLOT_SIZE + SLOT_PARKED_OFFSET,
            &PARKED.to_ne_bytes(),
        );
        producer.try_push(b"one").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 1);
        assert_eq!(
            producer.parked_consumers(),
            0,
            "whoever clears the flag lowers the count"
        );
        producer.try_push(b"two").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
    }

    #[test]
    fn wake_consumer_wakes_only_a_parked_consumer_and_lowers_its_count() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let slot = reserve_slot(&region).unwrap();
        let mut consumer = RingConsumer::adopt(&region, slot).unwrap();
        // Running: nothing happens.
        crate::shm::wake_consumer(&region, slot);
        assert_eq!(producer.parked_consumers(), 0);
        let (tx, rx) = mpsc::channel();
        let sleeper = thread::spawn(move || {
            let mut out = Vec::new();
            let started = Instant::now();
            let got = consumer
                .recv_blocking(&mut out, Duration::ZERO, Some(HANG))
                .unwrap();
            tx.send((got, started.elapsed())).unwrap();
            consumer
        });
        let deadline = Instant::now() + HANG;
        while producer.parked_consumers() == 0 {
            assert!(Instant::now() < deadline, "the consumer never parked");
            thread::yield_now();
        }
        // Woken with nothing published, it goes back to sleep; a publish then ends its wait.
        crate::shm::wake_consumer(&region, slot);
        crate::shm::wake_consumer(&region, 99);
        producer.try_push(b"after the wake").unwrap();
        producer.publish_and_wake().unwrap();
        let (got, _) = rx.recv_timeout(HANG).unwrap();
        assert!(got);
        drop(sleeper.join().unwrap());
        assert_eq!(producer.parked_consumers(), 0);
    }

    #[test]
    fn a_producer_adopts_only_a_fresh_ring() {
        let (region, producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        drop(producer);
        let mut adopted = crate::shm::RingProducer::adopt(&region).unwrap();
        adopted.push_and_publish(b"from the adopter").unwrap();
        let mut out = Vec::new();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, b"from the adopter");
        assert!(matches!(
            crate::shm::RingProducer::adopt(&region),
            Err(RingError::BadGeometry(_))
        ));
    }

    /// Waits until consumer slot `index` of `region` is parked (bounded by `HANG`).
    fn wait_until_parked(region: &RingRegion, index: usize) {
        let start = Instant::now();
        let slot = region.slot(index).unwrap();
        while slot.parked.load(Ordering::SeqCst) != PARKED {
            assert!(start.elapsed() < HANG, "consumer never parked");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the producer of `region` is parked waiting for room (bounded by `HANG`).
    fn wait_until_producer_parked(region: &RingRegion) {
        let start = Instant::now();
        while region.header().producer_parked.load(Ordering::SeqCst) != PARKED {
            assert!(start.elapsed() < HANG, "producer never parked");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn parked_consumers(region: &RingRegion) -> u32 {
        region.header().parked_consumers.load(Ordering::SeqCst)
    }

    /// Raises slot `index`'s flag and the counter, as a consumer about to sleep (or one that
    /// died asleep) leaves them.
    fn mark_parked(region: &RingRegion, index: usize) {
        region
            .header()
            .parked_consumers
            .fetch_add(1, Ordering::SeqCst);
        region
            .slot(index)
            .unwrap()
            .parked
            .store(PARKED, Ordering::SeqCst);
    }

    #[test]
    fn a_parked_consumer_is_woken_by_a_publish() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let index = consumer.slot_index();
        let (done, received) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            // No timeout: only the wake (or a bug) ends this wait.
            let got = consumer.recv_blocking(&mut out, Duration::ZERO, None);
            done.send((got.unwrap(), out)).unwrap();
        });
        wait_until_parked(&region, index);
        assert_eq!(parked_consumers(&region), 1);
        assert_eq!(producer.parked_consumers(), 1);
        producer.try_push(b"wake up").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 1);
        let (got, out) = received
            .recv_timeout(HANG)
            .expect("the parked consumer was not woken");
        assert!(got);
        assert_eq!(out, b"wake up");
        reader.join().unwrap();
        assert_eq!(
            region.slot(index).unwrap().parked.load(Ordering::SeqCst),
            PARKED_RUNNING
        );
        assert_eq!(parked_consumers(&region), 0);
    }

    #[test]
    fn with_nobody_parked_the_wake_scan_is_skipped() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut out = Vec::new();
        for i in 0..100 {
            producer.try_push(&payload(i)).unwrap();
            assert_eq!(producer.publish_and_wake().unwrap(), 0);
            assert!(consumer.try_recv_into(&mut out).unwrap());
        }
        // A publish of nothing new scans nobody either.
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
        // The fast path reads only the counter: a raised flag with a zero counter is not even
        // looked at (so it is left as it is).
        region
            .slot(0)
            .unwrap()
            .parked
            .store(PARKED, Ordering::SeqCst);
        producer.try_push(b"x").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
        assert_eq!(
            region.slot(0).unwrap().parked.load(Ordering::SeqCst),
            PARKED
        );
    }

    #[test]
    fn one_park_is_woken_once_however_many_publishes_follow() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let _consumer = RingConsumer::join(&region).unwrap();
        mark_parked(&region, 0);
        producer.try_push(b"a").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 1);
        producer.try_push(b"b").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
        assert_eq!(
            region.slot(0).unwrap().parked.load(Ordering::SeqCst),
            PARKED_RUNNING
        );
    }

    #[test]
    fn frames_published_by_a_full_push_still_wake_the_consumer() {
        // `try_push` publishes pending frames on its own before reporting Full; the next
        // `publish_and_wake` must scan even though it publishes nothing new itself.
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let consumer = RingConsumer::join(&region).unwrap();
        let max = producer.max_payload();
        producer.try_push(&vec![1; max]).unwrap();
        mark_parked(&region, 0);
        assert_eq!(producer.try_push(&vec![2; max]), Ok(()));
        assert_eq!(producer.try_push(&vec![3; max]), Err(PushError::Full));
        assert_eq!(producer.pending(), 0);
        assert_eq!(producer.publish_and_wake().unwrap(), 1);
        drop(consumer);
    }

    #[test]
    fn a_timed_wait_with_nothing_published_returns_false() {
        let (region, _producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        let got = consumer
            .recv_blocking(
                &mut out,
                Duration::from_micros(50),
                Some(Duration::from_millis(20)),
            )
            .unwrap();
        assert!(!got);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(
            region.slot(0).unwrap().parked.load(Ordering::SeqCst),
            PARKED_RUNNING
        );
        assert_eq!(parked_consumers(&region), 0);
    }

    #[test]
    fn spurious_wakes_and_a_stuck_parked_flag_cost_only_extra_wakes() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        // A hostile peer wakes the futex word over and over with nothing published: the
        // consumer wakes, finds nothing, and waits out its timeout.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waker = {
            let (region, stop) = (region.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let word = &region.slot(0).unwrap().parked;
                    crate::shm::wake::wake(&region, word).unwrap();
                    thread::sleep(Duration::from_micros(100));
                }
            })
        };
        let mut out = Vec::new();
        let start = Instant::now();
        let got = consumer
            .recv_blocking(&mut out, Duration::ZERO, Some(Duration::from_millis(20)))
            .unwrap();
        assert!(!got);
        assert!(start.elapsed() < HANG);
        stop.store(true, Ordering::SeqCst);
        waker.join().unwrap();
        // A hostile peer pins the flag to a junk value (with the counter raised): every
        // publish wakes once, no more (and lowers the counter it finds raised).
        let flag = SLOTS_OFFSET + SLOT_PARKED_OFFSET;
        for i in 0..5 {
            region.scribble(PARKED_CONSUMERS_OFFSET, &1u32.to_ne_bytes());
            region.scribble(flag, &0xdead_beef_u32.to_ne_bytes());
            producer.try_push(&payload(i)).unwrap();
            assert_eq!(producer.publish_and_wake().unwrap(), 1);
            assert!(consumer
                .recv_blocking(&mut out, Duration::ZERO, Some(HANG))
                .unwrap());
            assert_eq!(out, payload(i));
        }
        // A junk flag while the consumer is about to wait: the futex sees a value other than
        // PARKED and returns at once; the consumer re-parks and times out as usual.
        region.scribble(flag, &7u32.to_ne_bytes());
        assert!(!consumer
            .recv_blocking(&mut out, Duration::ZERO, Some(Duration::from_millis(5)))
            .unwrap());
    }

    #[test]
    fn scribbled_counters_cost_scans_or_timeouts_never_a_hang_or_a_wrap() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut out = Vec::new();
        // A huge counter: every publish scans, and finds nobody parked.
        region.scribble(PARKED_CONSUMERS_OFFSET, &u32::MAX.to_ne_bytes());
        producer.push_and_publish(b"a").unwrap();
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
        assert!(consumer.try_recv_into(&mut out).unwrap());
        // A park cycle on a huge counter: the increment wraps to 0 (the fast path then skips
        // one scan: the timeout covers it) and the decrement does not underflow either way.
        assert!(!consumer
            .recv_blocking(&mut out, Duration::ZERO, Some(Duration::from_millis(2)))
            .unwrap());
        // A zeroed counter while the consumer sleeps: the producer skips its wake, and the
        // consumer finds the frame when its timeout re-checks, not never.
        region.scribble(PARKED_CONSUMERS_OFFSET, &0u32.to_ne_bytes());
        let index = consumer.slot_index();
        let (done, received) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            let got =
                consumer.recv_blocking(&mut out, Duration::ZERO, Some(Duration::from_millis(200)));
            done.send((got.unwrap(), out)).unwrap();
            consumer
        });
        wait_until_parked(&region, index);
        region.scribble(PARKED_CONSUMERS_OFFSET, &0u32.to_ne_bytes());
        producer.try_push(b"late").unwrap();
        assert_eq!(
            producer.publish_and_wake().unwrap(),
            0,
            "the zero hides the sleeper"
        );
        let (got, late) = received
            .recv_timeout(HANG)
            .expect("the timeout bounds the wait");
        assert!(got);
        assert_eq!(late, b"late");
        let mut consumer = reader.join().unwrap();
        assert_eq!(parked_consumers(&region), 0, "the decrement stops at zero");
        // A junk `producer_parked`: every read makes one spurious wake, and the flag is
        // cleared by the first.
        region.scribble(PRODUCER_PARKED_OFFSET, &0x55u32.to_ne_bytes());
        producer.push_and_publish(b"b").unwrap();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(
            region.header().producer_parked.load(Ordering::SeqCst),
            PARKED_RUNNING
        );
        // A junk `producer_parked` does not stop a full producer from timing out either.
        let frame = vec![0u8; 1024 - 8];
        while producer.push_and_publish(&frame).is_ok() {}
        region.scribble(PRODUCER_PARKED_OFFSET, &9u32.to_ne_bytes());
        let start = Instant::now();
        assert_eq!(
            producer.push_blocking(&frame, Duration::ZERO, Some(Duration::from_millis(20))),
            Err(PushError::Full)
        );
        assert!(start.elapsed() >= Duration::from_millis(20) && start.elapsed() < HANG);
    }

    #[test]
    fn a_wait_error_is_reported_not_hidden() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        producer.push_and_publish(b"x").unwrap();
        region.scribble(WRITE_POS_OFFSET, &3u64.to_ne_bytes());
        let mut out = Vec::new();
        let error = consumer
            .recv_blocking(&mut out, Duration::ZERO, None)
            .unwrap_err();
        assert!(matches!(error, RecvError::Read(_)), "{error}");
    }

    #[test]
    fn a_producer_blocked_on_a_full_ring_is_released_when_a_consumer_reads() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let frame = vec![5u8; 1024 - 8];
        for _ in 0..4 {
            producer.push_and_publish(&frame).unwrap();
        }
        let (done, finished) = mpsc::channel();
        let writer = thread::spawn(move || {
            // No timeout: only the consumer's wake (or a bug) ends this wait.
            let result = producer.push_blocking(b"fifth", Duration::ZERO, None);
            producer.publish();
            done.send(result).unwrap();
            producer
        });
        wait_until_producer_parked(&region);
        assert!(finished.try_recv().is_err(), "the ring is full");
        let mut out = Vec::new();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, frame);
        assert_eq!(
            finished
                .recv_timeout(HANG)
                .expect("the producer was not woken"),
            Ok(())
        );
        let _producer = writer.join().unwrap();
        for _ in 0..3 {
            assert!(consumer.try_recv_into(&mut out).unwrap());
        }
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, b"fifth");
        assert_eq!(
            region.header().producer_parked.load(Ordering::SeqCst),
            PARKED_RUNNING
        );
    }

    #[test]
    fn a_producer_blocked_on_a_full_ring_is_released_when_the_consumer_leaves() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let consumer = RingConsumer::join(&region).unwrap();
        let frame = vec![5u8; 1024 - 8];
        for _ in 0..4 {
            producer.push_and_publish(&frame).unwrap();
        }
        let (done, finished) = mpsc::channel();
        let writer = thread::spawn(move || {
            done.send(producer.push_blocking(&[1; 1016], Duration::from_micros(20), None))
                .unwrap();
        });
        wait_until_producer_parked(&region);
        drop(consumer);
        assert_eq!(finished.recv_timeout(HANG).expect("not woken"), Ok(()));
        writer.join().unwrap();
    }

    #[test]
    fn push_blocking_times_out_with_full_and_refuses_too_large_at_once() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let _consumer = RingConsumer::join(&region).unwrap();
        let frame = vec![5u8; 1024 - 8];
        for _ in 0..4 {
            producer
                .push_blocking(&frame, Duration::ZERO, Some(Duration::ZERO))
                .unwrap();
        }
        producer.publish();
        let start = Instant::now();
        assert_eq!(
            producer.push_blocking(
                &frame,
                Duration::from_micros(100),
                Some(Duration::from_millis(20))
            ),
            Err(PushError::Full)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(
            region.header().producer_parked.load(Ordering::SeqCst),
            PARKED_RUNNING
        );
        assert!(matches!(
            producer.push_blocking(&vec![0; 4096], Duration::ZERO, None),
            Err(PushError::TooLarge { .. })
        ));
        // Lossy rings are never full: push_blocking is try_push.
        let (region, mut lossy) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let _idle = RingConsumer::join(&region).unwrap();
        for _ in 0..20 {
            lossy.push_blocking(&frame, Duration::ZERO, None).unwrap();
            lossy.publish();
        }
    }

    #[test]
    fn releasing_a_dead_parked_slot_skips_its_wake_and_unblocks_the_producer() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        // The broker reserved slot 0 for a subscriber that adopted it, read nothing, parked
        // after the producer's last wake scan, and died there.
        let slot = reserve_slot(&region).unwrap();
        assert_eq!(slot, 0);
        let frame = vec![5u8; 1024 - 8];
        for _ in 0..4 {
            producer.try_push(&frame).unwrap();
        }
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
        mark_parked(&region, slot);
        // Before the release the dead slot holds the ring full.
        assert_eq!(
            producer.push_blocking(&frame, Duration::ZERO, Some(Duration::from_millis(5))),
            Err(PushError::Full)
        );
        let (done, finished) = mpsc::channel();
        let writer = thread::spawn(move || {
            let result = producer.push_blocking(&frame, Duration::ZERO, None);
            done.send(result).unwrap();
            producer
        });
        wait_until_producer_parked(&region);
        release_slot(&region, slot).unwrap();
        assert_eq!(finished.recv_timeout(HANG).expect("not woken"), Ok(()));
        let mut producer = writer.join().unwrap();
        let slot_ref = region.slot(slot).unwrap();
        assert_eq!(slot_ref.parked.load(Ordering::SeqCst), PARKED_RUNNING);
        assert_eq!(parked_consumers(&region), 0);
        // The wake scan no longer counts the dead slot, even with its flag scribbled back.
        slot_ref.parked.store(PARKED, Ordering::SeqCst);
        region.scribble(PARKED_CONSUMERS_OFFSET, &1u32.to_ne_bytes());
        assert_eq!(producer.publish_and_wake().unwrap(), 0);
        // Releasing again, or a free slot, changes nothing; out of range is an error.
        release_slot(&region, slot).unwrap();
        for index in [2, 1024, usize::MAX] {
            assert!(matches!(
                release_slot(&region, index),
                Err(RingError::BadSlot { .. })
            ));
        }
        // The counter never goes below zero.
        region.scribble(PARKED_CONSUMERS_OFFSET, &0u32.to_ne_bytes());
        region
            .slot(1)
            .unwrap()
            .parked
            .store(PARKED, Ordering::SeqCst);
        release_slot(&region, 1).unwrap();
        assert_eq!(parked_consumers(&region), 0);
    }

    #[test]
    fn a_reserved_slot_holds_frames_for_its_adopter() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        producer.push_and_publish(b"before").unwrap();
        let slot = reserve_slot(&region).unwrap();
        let frame = vec![5u8; 1024 - 8];
        // The reservation holds the producer a capacity beyond it: three frames fit after
        // "before" (the fourth would need a padding frame first).
        for _ in 0..3 {
            producer.push_and_publish(&frame).unwrap();
        }
        assert_eq!(producer.push_and_publish(&frame), Err(PushError::Full));
        let mut adopted = RingConsumer::adopt(&region, slot).unwrap();
        assert_eq!(adopted.slot_index(), slot);
        let mut out = Vec::new();
        for _ in 0..3 {
            assert!(adopted.try_recv_into(&mut out).unwrap());
            assert_eq!(out, frame);
        }
        assert!(!adopted.try_recv_into(&mut out).unwrap());
        drop(adopted);
        // The reserver owns the slot: dropping the adopter leaves it held...
        assert_eq!(
            region.slot(slot).unwrap().state.load(Ordering::SeqCst),
            crate::shm::layout::SLOT_ACTIVE
        );
        // ...until the reserver releases it.
        release_slot(&region, slot).unwrap();
        assert_eq!(
            region.slot(slot).unwrap().state.load(Ordering::SeqCst),
            crate::shm::layout::SLOT_FREE
        );
        assert_eq!(reserve_slot(&region).unwrap(), slot, "the slot was freed");
    }

    #[test]
    fn adopt_validates_the_slot() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 2).unwrap();
        for _ in 0..2 {
            producer.push_and_publish(&[1; 1000]).unwrap();
        }
        let bad = |result: Result<RingConsumer, RingError>| match result {
            Err(RingError::BadSlot { reason, .. }) => reason,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("adopted a bad slot"),
        };
        assert_eq!(bad(RingConsumer::adopt(&region, 2)), "index out of range");
        assert_eq!(
            bad(RingConsumer::adopt(&region, usize::MAX)),
            "index out of range"
        );
        assert_eq!(bad(RingConsumer::adopt(&region, 1)), "slot not active");
        let slot = reserve_slot(&region).unwrap();
        let read_pos = SLOTS_OFFSET + slot * SLOT_SIZE + SLOT_READ_POS_OFFSET;
        let write_pos = region.header().producer.write_pos.load(Ordering::SeqCst);
        for (pos, reason) in [
            (write_pos + 4, "read position not frame-aligned"),
            (write_pos + 64, "read position outside the ring's window"),
            (u64::MAX - 63, "read position outside the ring's window"),
        ] {
            region.scribble(read_pos, &pos.to_ne_bytes());
            assert_eq!(bad(RingConsumer::adopt(&region, slot)), reason, "{pos}");
        }
        // More than a capacity behind `write_pos`: its frames may be overwritten already.
        for _ in 0..4 {
            producer.push_and_publish(&[2; 1000]).unwrap();
        }
        region.scribble(read_pos, &0u64.to_ne_bytes());
        assert_eq!(
            bad(RingConsumer::adopt(&region, slot)),
            "read position outside the ring's window"
        );
        // Back at a frame boundary in the window: adopted, and it reads from there.
        let write_pos = region.header().producer.write_pos.load(Ordering::SeqCst);
        region.scribble(read_pos, &write_pos.to_ne_bytes());
        let mut consumer = RingConsumer::adopt(&region, slot).unwrap();
        producer.push_and_publish(b"adopted").unwrap();
        let mut out = Vec::new();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, b"adopted");
        // A corrupt `write_pos` is reported as such.
        drop(consumer);
        let slot = reserve_slot(&region).unwrap();
        region.scribble(WRITE_POS_OFFSET, &(write_pos + 3).to_ne_bytes());
        assert!(matches!(
            RingConsumer::adopt(&region, slot),
            Err(RingError::Corrupt(_))
        ));
    }

    #[test]
    fn a_lossy_ring_adopts_a_lapped_slot_and_reports_the_lag() {
        let (region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        let slot = reserve_slot(&region).unwrap();
        for i in 0..20 {
            producer.push_and_publish(&[i; 1000]).unwrap();
        }
        let mut consumer = RingConsumer::adopt(&region, slot).unwrap();
        let mut out = Vec::new();
        // A lag of at least one (the slot never read, so the count is a lower bound), then
        // the frames still whole: four 1008-byte frames a lap (and 64 bytes of padding), so
        // frames 16 to 19.
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(crate::shm::ReadError::Lagged { skipped: 1 })
        );
        for i in 16..20 {
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
            assert_eq!(out, [i; 1000]);
        }
        assert_eq!(consumer.try_recv_into(&mut out), Ok(false));
        producer.push_and_publish(&[99; 10]).unwrap();
        assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
        assert_eq!(out, [99; 10]);
    }

    #[test]
    fn wait_any_returns_when_any_of_three_rings_gets_a_frame() {
        let rings: Vec<_> = (0..3)
            .map(|_| RingRegion::new_in_memory(4096, 1).unwrap())
            .collect();
        let regions: Vec<_> = rings.iter().map(|(region, _)| region.clone()).collect();
        let mut producers: Vec<_> = rings.into_iter().map(|(_, producer)| producer).collect();
        let mut consumers: Vec<_> = regions
            .iter()
            .map(|region| RingConsumer::join(region).unwrap())
            .collect();
        // Nothing published: a timed wait times out, and leaves every flag and count clear.
        let refs: Vec<&RingConsumer> = consumers.iter().collect();
        let start = Instant::now();
        wait_any(&refs, Some(Duration::from_millis(20))).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        for region in &regions {
            assert_eq!(parked_consumers(region), 0);
            assert_eq!(
                region.slot(0).unwrap().parked.load(Ordering::SeqCst),
                PARKED_RUNNING
            );
        }
        // Data already waiting: it returns at once.
        producers[1].push_and_publish(b"ready").unwrap();
        wait_any(&refs, None).unwrap();
        assert!(refs[1].has_data() && !refs[0].has_data() && !refs[2].has_data());
        let mut out = Vec::new();
        assert!(consumers[1].try_recv_into(&mut out).unwrap());
        for target in [2usize, 0, 1] {
            let (done, woke) = mpsc::channel();
            let reader = thread::spawn(move || {
                let refs: Vec<&RingConsumer> = consumers.iter().collect();
                // No timeout: only the wake (or a bug) ends this wait.
                wait_any(&refs, None).unwrap();
                let ready: Vec<usize> = (0..3).filter(|&i| refs[i].has_data()).collect();
                done.send(ready).unwrap();
                consumers
            });
            for region in &regions {
                wait_until_parked(region, 0);
            }
            producers[target].try_push(&payload(target)).unwrap();
            assert_eq!(producers[target].publish_and_wake().unwrap(), 1);
            let ready = woke.recv_timeout(HANG).expect("wait_any was not woken");
            assert_eq!(ready, vec![target]);
            consumers = reader.join().unwrap();
            assert!(consumers[target].try_recv_into(&mut out).unwrap());
            assert_eq!(out, payload(target));
        }
        assert!(wait_any(&[], None).is_ok(), "nothing to wait for");
    }

    #[test]
    fn wait_any_over_more_consumers_than_futex_waitv_takes_still_wakes() {
        // 130 slots of one ring: above futex_waitv's 128, so the fallback polls in 1 ms slices.
        let (region, mut producer) = RingRegion::new_in_memory(4096, 130).unwrap();
        let consumers: Vec<_> = (0..130)
            .map(|_| RingConsumer::join(&region).unwrap())
            .collect();
        let refs: Vec<&RingConsumer> = consumers.iter().collect();
        let start = Instant::now();
        wait_any(&refs, Some(Duration::from_millis(5))).unwrap();
        assert!(start.elapsed() < HANG);
        assert_eq!(parked_consumers(&region), 0);
        let (done, woke) = mpsc::channel();
        let reader = thread::spawn(move || {
            let refs: Vec<&RingConsumer> = consumers.iter().collect();
            while !refs[129].has_data() {
                wait_any(&refs, None).unwrap();
            }
            done.send(()).unwrap();
        });
        wait_until_parked(&region, 0);
        producer.push_and_publish(b"x").unwrap();
        producer.publish_and_wake().unwrap();
        woke.recv_timeout(HANG)
            .expect("the fallback never re-checked");
        reader.join().unwrap();
    }

    #[test]
    fn many_frames_through_a_small_ring_with_a_consumer_that_always_parks() {
        const FRAMES: usize = 100_000;
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let (done, finished) = mpsc::channel();
        let reader_done = done.clone();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            for i in 0..FRAMES {
                let got = consumer.recv_blocking(&mut out, Duration::ZERO, None);
                assert!(got.unwrap());
                assert_eq!(out, payload(i), "frame {i}");
            }
            reader_done.send("reader").unwrap();
        });
        let writer = thread::spawn(move || {
            let mut wakes = 0;
            for i in 0..FRAMES {
                loop {
                    match producer.try_push(&payload(i)) {
                        Ok(()) => break,
                        Err(PushError::Full) => {
                            wakes += producer.publish_and_wake().unwrap();
                            thread::yield_now();
                        }
                        Err(error) => panic!("{error}"),
                    }
                }
                // Publish every frame and pause now and then, so the consumer keeps running
                // dry and parking (the wake path) rather than only reading a full ring.
                wakes += producer.publish_and_wake().unwrap();
                if i % 16 == 0 {
                    thread::yield_now();
                }
                if i % 500 == 0 {
                    thread::sleep(Duration::from_micros(50));
                }
            }
            wakes += producer.publish_and_wake().unwrap();
            assert!(wakes <= FRAMES);
            done.send("writer").unwrap();
        });
        for _ in 0..2 {
            finished
                .recv_timeout(HANG)
                .expect("a thread hung (a lost wake-up?)");
        }
        reader.join().unwrap();
        writer.join().unwrap();
    }

    #[test]
    fn many_frames_with_both_sides_blocking() {
        // The producer sleeps when the ring is full and the consumer when it is empty: both
        // wake paths, many times over, with no spin.
        const FRAMES: usize = 100_000;
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let (done, finished) = mpsc::channel();
        let reader_done = done.clone();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            for i in 0..FRAMES {
                let got = consumer.recv_blocking(&mut out, Duration::ZERO, None);
                assert!(got.unwrap());
                assert_eq!(out, payload(i * 7), "frame {i}");
                if i % 1000 == 0 {
                    // Fall behind now and then, so the producer fills the ring and parks.
                    thread::sleep(Duration::from_micros(200));
                }
            }
            reader_done.send("reader").unwrap();
        });
        let writer = thread::spawn(move || {
            for i in 0..FRAMES {
                producer
                    .push_blocking(&payload(i * 7), Duration::ZERO, None)
                    .unwrap();
                if i % 4 == 0 {
                    producer.publish_and_wake().unwrap();
                }
            }
            producer.publish_and_wake().unwrap();
            done.send("writer").unwrap();
        });
        for _ in 0..2 {
            finished
                .recv_timeout(HANG)
                .expect("a thread hung (a lost wake-up?)");
        }
        reader.join().unwrap();
        writer.join().unwrap();
    }
}

#[cfg(loom)]
mod loom_tests {
    //! Loom explores every interleaving (up to its preemption bound) of these tiny models;
    //! payload bytes live in `loom::cell::UnsafeCell` words (see `region.rs`), so a missing
    //! Release/Acquire pair shows as a reported data race.

    use crate::shm::{
        release_slot, reserve_slot, set_drop_when_full, PushError, ReadError, RecvError,
        RingConsumer, RingProducer, RingRegion,
    };
    use loom::thread;
    use std::time::Duration;

    fn frame(i: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|j| i.wrapping_mul(17).wrapping_add(j as u8))
            .collect()
    }

    #[test]
    fn published_frames_arrive_whole_and_in_order() {
        loom::model(|| {
            let (region, mut producer) = RingRegion::new_in_memory(64, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let writer = thread::spawn(move || {
                for i in 0..3u8 {
                    producer
                        .push_and_publish(&frame(i, 4 + i as usize))
                        .unwrap();
                }
            });
            let mut out = Vec::new();
            let mut got = 0u8;
            while got < 3 {
                if consumer.try_recv_into(&mut out).unwrap() {
                    assert_eq!(out, frame(got, 4 + got as usize));
                    got += 1;
                } else {
                    thread::yield_now();
                }
            }
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_consumer_joining_while_the_producer_writes_sees_a_whole_suffix() {
        // Unbounded, this model takes ~10 minutes; two preemptions cover the join/scan race
        // (the failure without the fences needs one) in a few seconds.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            // The join/scan SeqCst fences decide whether the producer counts the newcomer;
            // without them it could wrap onto frames the newcomer is about to read.
            let (region, mut producer) = RingRegion::new_in_memory(64, 1).unwrap();
            let done = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let writer_done = done.clone();
            let writer = thread::spawn(move || {
                for i in 0..3u8 {
                    loop {
                        match producer.push_and_publish(&frame(i, 24)) {
                            Ok(()) => break,
                            Err(PushError::Full) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                writer_done.store(true, loom::sync::atomic::Ordering::Release);
            });
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut seen = Vec::new();
            let mut out = Vec::new();
            loop {
                let finished = done.load(loom::sync::atomic::Ordering::Acquire);
                if consumer.try_recv_into(&mut out).unwrap() {
                    seen.push(out.clone());
                } else if finished {
                    break;
                } else {
                    thread::yield_now();
                }
            }
            let first = 3 - seen.len() as u8;
            let expected: Vec<_> = (first..3).map(|i| frame(i, 24)).collect();
            assert_eq!(seen, expected);
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_consumer_release_lets_the_producer_reuse_space_without_tearing() {
        loom::model(|| {
            // Two 32-byte frames fill the 64-byte ring; the third must reuse the first's bytes.
            let (region, mut producer) = RingRegion::new_in_memory(64, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let writer = thread::spawn(move || {
                for i in 0..3u8 {
                    loop {
                        match producer.push_and_publish(&frame(i, 24)) {
                            Ok(()) => break,
                            Err(PushError::Full) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
            let mut out = Vec::new();
            let mut got = 0u8;
            while got < 3 {
                if consumer.try_recv_into(&mut out).unwrap() {
                    assert_eq!(out, frame(got, 24));
                    got += 1;
                } else {
                    thread::yield_now();
                }
            }
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_parked_consumer_never_misses_a_wake_up() {
        // A lost wake-up leaves the consumer waiting on the model futex's condvar after the
        // producer has finished, which loom reports as a deadlock. The producer's fast path
        // (`parked_consumers` read as 0: no scan) is part of the model. Unbounded this takes
        // about five minutes; six preemptions take a few seconds, and a lost wake-up (either
        // Dekker fence removed) shows with one.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(6);
        builder.check(|| {
            let (region, mut producer) = RingRegion::new_in_memory(64, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let writer = thread::spawn(move || {
                for i in 0..2u8 {
                    producer.try_push(&frame(i, 4)).unwrap();
                    producer.publish_and_wake().unwrap();
                }
            });
            let mut out = Vec::new();
            for i in 0..2u8 {
                let got = consumer
                    .recv_blocking(&mut out, Duration::ZERO, None)
                    .unwrap();
                assert!(got);
                assert_eq!(out, frame(i, 4));
            }
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_producer_parked_on_a_full_ring_never_misses_a_wake_up() {
        // Two 32-byte frames fill the 64-byte ring; the third makes the producer park until the
        // consumer's read (the `read_pos` store, fence, `producer_parked` check) wakes it. A
        // lost wake-up is a loom deadlock. The consumer polls, so only the producer parks.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(4);
        builder.check(|| {
            let (region, mut producer) = RingRegion::new_in_memory(64, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            producer.push_and_publish(&frame(0, 24)).unwrap();
            producer.push_and_publish(&frame(1, 24)).unwrap();
            let writer = thread::spawn(move || {
                producer
                    .push_blocking(&frame(2, 24), Duration::ZERO, None)
                    .unwrap();
                producer.publish();
            });
            let mut out = Vec::new();
            assert!(consumer.try_recv_into(&mut out).unwrap());
            assert_eq!(out, frame(0, 24));
            writer.join().unwrap();
            assert!(consumer.try_recv_into(&mut out).unwrap());
            assert_eq!(out, frame(1, 24));
            assert!(consumer.try_recv_into(&mut out).unwrap());
            assert_eq!(out, frame(2, 24));
        });
    }

    #[test]
    fn release_slot_wakes_a_producer_parked_on_a_dead_slot() {
        // A reserved slot whose holder never read fills the ring; the producer parks until a
        // third party's `release_slot` (the `state` store, fence, `producer_parked` check)
        // wakes it.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(4);
        builder.check(|| {
            let (region, mut producer) = RingRegion::new_in_memory(64, 1).unwrap();
            let slot = reserve_slot(&region).unwrap();
            producer.push_and_publish(&frame(0, 24)).unwrap();
            producer.push_and_publish(&frame(1, 24)).unwrap();
            let writer = thread::spawn(move || {
                producer
                    .push_blocking(&frame(2, 24), Duration::ZERO, None)
                    .unwrap();
            });
            release_slot(&region, slot).unwrap();
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_lapped_lossy_consumer_resumes_at_a_whole_frame_and_counts_exactly() {
        // Frame 0 is read first (so every loss has an exact count); then frames 1 to 6, 16
        // bytes each, go through a 64-byte lossy ring (one and a half laps) while the
        // consumer reads three times, and reads what is left once the producer is done. Every
        // byte of payload i is i, so a copy mixed from two frames (the producer overwriting
        // while the consumer copies, at its position or at the `oldest_pos` it resumed at)
        // shows. Each frame must be the one the count so far predicts, and at the end
        // delivered + skipped must be every frame, the last ones read without a new publish.
        // The data words are Relaxed atomics here (`region.rs`): the seqlock fences, not
        // loom's race detector, must catch the overlap.
        const FRAMES: u8 = 7;
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let (region, mut producer) = RingRegion::new_in_memory_lossy(64, 1).unwrap();
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut out = Vec::new();
            producer.push_and_publish(&[0; 8]).unwrap();
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
            let writer = thread::spawn(move || {
                for i in 1..FRAMES {
                    producer.push_and_publish(&[i; 8]).unwrap();
                }
            });
            let mut next = 1u64;
            let mut account = |result: Result<bool, ReadError>, out: &[u8]| match result {
                Ok(true) => {
                    assert_eq!(out.len(), 8);
                    assert!(out.iter().all(|&b| b == out[0]), "torn payload {out:?}");
                    assert_eq!(u64::from(out[0]), next, "stale payload or a wrong count");
                    next += 1;
                    true
                }
                Ok(false) => false,
                Err(ReadError::Lagged { skipped }) => {
                    assert!(skipped > 0);
                    next += skipped;
                    true
                }
                Err(error) => panic!("{error}"),
            };
            for _ in 0..3 {
                if !account(consumer.try_recv_into(&mut out), &out) {
                    thread::yield_now();
                }
            }
            writer.join().unwrap();
            for _ in 0..2 * FRAMES {
                if !account(consumer.try_recv_into(&mut out), &out) {
                    break;
                }
            }
            assert_eq!(next, u64::from(FRAMES), "every frame delivered or counted");
        });
    }

    /// Accounts for what a consumer of a dropping ring got: frame `i` has payload `[i; 8]`;
    /// `next` is the number the next frame must carry, given every frame and gap so far.
    fn account_drops(next: &mut u64, result: Result<bool, ReadError>, out: &[u8]) -> bool {
        match result {
            Ok(true) => {
                assert_eq!(out, [*next as u8; 8], "a frame reported lost, or one twice");
                *next += 1;
                true
            }
            Ok(false) => false,
            Err(ReadError::Lagged { skipped }) => {
                assert!(skipped > 0 && skipped < 1 << 31, "a bogus count {skipped}");
                *next += skipped;
                true
            }
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn each_number_of_a_dropping_ring_is_received_or_reported_exactly_once() {
        // The producer pushes 0, drops 1, pushes 2, drops 3 (loss at the end: nothing
        // after it) while the consumer reads three times, then reads what is left. Every
        // number must be received (its frame, in order) or reported (in a `Lagged` before
        // the next frame, or from the drop announcement once the ring is empty) exactly
        // once. The race: the consumer finds the ring empty and checks the announcement
        // while the producer drops, then pushes, then drops again. Loading `write_pos`
        // before the announcement (or `next_seq` before `next_seq_at`) lets the consumer
        // pair an old position with a newer number, report frame 2 (still in the ring) as
        // lost, and then read it: the model fails; so it does with any of the four
        // Release/Acquire pairs of the announcement weakened to Relaxed.
        // Small enough to explore exhaustively (no preemption bound) in well under a second.
        loom::model(|| {
            let (region, creator) = RingRegion::new_in_memory(64, 1).unwrap();
            drop(creator);
            set_drop_when_full(&region);
            let mut consumer = RingConsumer::join(&region).unwrap();
            assert!(consumer.reports_drops());
            let mut producer = RingProducer::adopt(&region).unwrap();
            let writer = thread::spawn(move || {
                producer.try_push(&[0; 8]).unwrap();
                producer.publish_and_wake().unwrap();
                producer.skip_dropped(1);
                producer.publish_and_wake().unwrap();
                // Frame 2 is published by the drop itself (as when the broker's relay skips a
                // number after frames it pushed): no fence of a wake scan stands between
                // that `write_pos` store and the announcement, only the Release of
                // `next_seq`.
                producer.try_push(&[2; 8]).unwrap();
                producer.skip_dropped(1);
                producer.publish_and_wake().unwrap();
            });
            let mut out = Vec::new();
            let mut next = 0u64;
            for _ in 0..3 {
                if !account_drops(&mut next, consumer.try_recv_into(&mut out), &out) {
                    thread::yield_now();
                }
            }
            writer.join().unwrap();
            for _ in 0..8 {
                if !account_drops(&mut next, consumer.try_recv_into(&mut out), &out) {
                    break;
                }
            }
            assert_eq!(
                next, 4,
                "every number received or reported, the last drop at once"
            );
            assert_eq!(
                consumer.try_recv_into(&mut out),
                Ok(false),
                "reported twice"
            );
        });
    }

    #[test]
    fn a_consumer_asleep_on_an_empty_dropping_ring_hears_of_a_drop() {
        // The consumer has read frame 0 and sleeps on the empty ring (another consumer would
        // be the one holding it full); the producer drops 1 and calls `publish_and_wake`,
        // which publishes nothing new. The drop announcement and the wake scan after it,
        // against the park re-check of the announcement (`has_data`), are a Dekker pair: a
        // lost wake-up is a loom deadlock (the consumer has no timeout).
        // Small enough to explore exhaustively (no preemption bound) in well under a second.
        loom::model(|| {
            let (region, creator) = RingRegion::new_in_memory(64, 1).unwrap();
            drop(creator);
            set_drop_when_full(&region);
            let mut consumer = RingConsumer::join(&region).unwrap();
            let mut producer = RingProducer::adopt(&region).unwrap();
            // Published and woken for: the drop's call publishes nothing new.
            producer.try_push(&[0; 8]).unwrap();
            producer.publish_and_wake().unwrap();
            let mut out = Vec::new();
            assert_eq!(consumer.try_recv_into(&mut out), Ok(true));
            let writer = thread::spawn(move || {
                producer.skip_dropped(1);
                producer.publish_and_wake().unwrap();
            });
            let told = consumer.recv_blocking(&mut out, Duration::ZERO, None);
            assert!(
                matches!(told, Err(RecvError::Read(ReadError::Lagged { skipped: 1 }))),
                "{told:?}"
            );
            writer.join().unwrap();
        });
    }
}

#[cfg(not(loom))]
mod loans {
    //! Frames written in place through a loan.

    use crate::shm::{PushError, RingConsumer, RingRegion};

    #[test]
    fn a_committed_loan_is_a_frame_and_a_dropped_one_is_nothing() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut loan = producer.try_loan(5).unwrap();
        loan.as_mut_slice().copy_from_slice(b"hello");
        loan.commit();
        {
            // Written, then abandoned without a commit.
            let mut dropped = producer.try_loan(7).unwrap();
            dropped.as_mut_slice().copy_from_slice(b"dropped");
        }
        let mut short = producer.try_loan(100).unwrap();
        short.as_mut_slice()[..3].copy_from_slice(b"abc");
        short.commit_len(3);
        producer.push_and_publish(b"after").unwrap();
        let mut out = Vec::new();
        for expected in [&b"hello"[..], b"abc", b"after"] {
            assert!(consumer.try_recv_into(&mut out).unwrap());
            assert_eq!(out, expected);
        }
        assert!(!consumer.try_recv_into(&mut out).unwrap());
    }

    #[test]
    fn loans_wrap_the_ring_and_respect_its_limits() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        let mut out = Vec::new();
        for i in 0..2000u32 {
            let len = 1 + (i as usize * 37) % 900;
            let mut loan = producer.try_loan(len).unwrap();
            loan.as_mut_slice().fill(i as u8);
            loan.commit();
            producer.publish();
            assert!(consumer.try_recv_into(&mut out).unwrap());
            assert_eq!(out, vec![i as u8; len]);
        }
        assert!(matches!(
            producer.try_loan(4096),
            Err(PushError::TooLarge { .. })
        ));
        // Full: the consumer has not read the frames below.
        while producer.try_push(&[0; 500]).is_ok() {}
        assert!(matches!(producer.try_loan(500), Err(PushError::Full)));
        assert!(matches!(
            producer.loan_blocking(
                500,
                std::time::Duration::ZERO,
                Some(std::time::Duration::from_millis(10))
            ),
            Err(PushError::Full)
        ));
    }

    #[test]
    fn a_lossy_ring_lends_nothing() {
        let (_region, mut producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        assert!(matches!(producer.try_loan(8), Err(PushError::LossyLoan)));
    }
}

#[cfg(not(loom))]
mod drop_when_full {
    //! A lossless ring whose producer drops what does not fit (`drop_newest`).

    use crate::shm::layout::DROPPED_OFFSET;
    use crate::shm::sync::Arc;
    use crate::shm::{
        producer_dropped, set_drop_when_full, PushError, ReadError, RingConsumer, RingProducer,
        RingRegion,
    };

    #[test]
    fn a_producer_that_drops_never_reports_full_and_counts_every_drop_in_the_header() {
        let (region, creator) = RingRegion::new_in_memory(4096, 2).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let mut stuck = RingConsumer::join(&region).unwrap();
        let mut producer = RingProducer::adopt(&region).unwrap();
        assert!(producer.drops_when_full());
        let payload = [7u8; 100];
        let (mut kept, mut dropped) = (0u64, 0u64);
        for _ in 0..200 {
            if producer.try_push_or_drop(&payload).unwrap() {
                kept += 1;
            } else {
                dropped += 1;
            }
            producer.publish_and_wake().unwrap();
        }
        assert!(dropped > 0 && kept > 0);
        assert_eq!(producer.dropped(), dropped);
        assert_eq!(producer_dropped(&region), dropped);
        // The consumer that did not read gets exactly the frames that were kept, whole.
        let mut out = Vec::new();
        let mut read = 0;
        for _ in 0..kept {
            assert!(stuck.try_recv_into(&mut out).unwrap());
            assert_eq!(out, payload);
            read += 1;
        }
        // Then, with nothing after them, the drops (all at the end here), once.
        assert_eq!(
            stuck.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: dropped })
        );
        assert_eq!(stuck.try_recv_into(&mut out), Ok(false));
        assert_eq!(read + producer_dropped(&region), 200);
        // Room again: nothing more is dropped.
        assert!(producer.try_push_or_drop(&payload).unwrap());
        assert!(matches!(
            producer.try_push_or_drop(&[0u8; 4096]),
            Err(PushError::TooLarge { .. })
        ));
        assert_eq!(
            producer.dropped(),
            dropped,
            "too large is an error, not a drop"
        );
    }

    #[test]
    fn a_ring_adopted_without_the_policy_waits_and_a_scribbled_counter_is_only_reported() {
        let (region, creator) = RingRegion::new_in_memory(4096, 1).unwrap();
        drop(creator);
        let mut producer = RingProducer::adopt(&region).unwrap();
        assert!(!producer.drops_when_full());
        region.scribble(DROPPED_OFFSET, &u64::MAX.to_ne_bytes());
        assert_eq!(producer_dropped(&region), u64::MAX);
        assert_eq!(producer.dropped(), 0, "the producer counts on its own");
        producer.push_and_publish(b"x").unwrap();
    }

    /// What a consumer saw, checked against the messages pushed (numbered 0..): every
    /// message it received is the one after the previous plus the gap reported between them.
    #[derive(Default)]
    struct Seen {
        next: u64,
        received: u64,
        reported: u64,
        pending_gap: u64,
    }

    impl Seen {
        /// A gap may come in pieces (what was announced when the consumer found the ring
        /// empty, then what was dropped after), so several in a row add up.
        fn lagged(&mut self, skipped: u64) {
            assert!(skipped > 0);
            self.pending_gap += skipped;
            self.reported += skipped;
        }

        fn message(&mut self, payload: &[u8]) {
            let number = u64::from_ne_bytes(payload[..8].try_into().unwrap());
            assert_eq!(
                number,
                self.next + self.pending_gap,
                "message {number} after {} with a gap of {} reported",
                self.next,
                self.pending_gap
            );
            self.pending_gap = 0;
            self.next = number + 1;
            self.received += 1;
        }
    }

    fn drain_one_by_one(consumer: &mut RingConsumer, seen: &mut Seen) {
        let mut out = Vec::new();
        loop {
            match consumer.try_recv_into(&mut out) {
                Ok(true) => seen.message(&out),
                Ok(false) => return,
                Err(ReadError::Lagged { skipped }) => seen.lagged(skipped),
                Err(error) => panic!("{error}"),
            }
        }
    }

    fn drain_in_batches(consumer: &mut RingConsumer, seen: &mut Seen, max: usize) {
        loop {
            match consumer.try_recv_batch(max, |payload| seen.message(payload)) {
                Ok(0) => return,
                Ok(_) => {}
                Err(ReadError::Lagged { skipped }) => seen.lagged(skipped),
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// Pushes `total` numbered messages of 100 bytes (two lines a frame, 32 in the ring);
    /// `slow` reads only every `slow_every` pushes, `fast` after each, so the ring fills on
    /// the slow one's account and drops; both drain at the end, and a last message is kept.
    fn run(batch: Option<usize>, slow_every: u64, total: u64) -> (Seen, Seen, u64) {
        let (region, creator) = RingRegion::new_in_memory(4096, 2).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let mut slow = RingConsumer::join(&region).unwrap();
        let mut fast = RingConsumer::join(&region).unwrap();
        assert!(slow.reports_drops() && fast.reports_drops());
        let mut producer = RingProducer::adopt(&region).unwrap();
        let (mut slow_seen, mut fast_seen) = (Seen::default(), Seen::default());
        let drain = |consumer: &mut RingConsumer, seen: &mut Seen| match batch {
            Some(max) => drain_in_batches(consumer, seen, max),
            None => drain_one_by_one(consumer, seen),
        };
        for number in 0..total {
            let mut payload = [0u8; 100];
            payload[..8].copy_from_slice(&number.to_ne_bytes());
            if number == total - 1 {
                drain(&mut slow, &mut slow_seen);
                drain(&mut fast, &mut fast_seen);
                assert!(
                    producer.try_push_or_drop(&payload).unwrap(),
                    "room at the end"
                );
            } else {
                producer.try_push_or_drop(&payload).unwrap();
            }
            producer.publish_and_wake().unwrap();
            drain(&mut fast, &mut fast_seen);
            if number % slow_every == slow_every - 1 {
                drain(&mut slow, &mut slow_seen);
            }
        }
        drain(&mut slow, &mut slow_seen);
        drain(&mut fast, &mut fast_seen);
        (slow_seen, fast_seen, producer.dropped())
    }

    #[test]
    fn every_consumer_is_told_of_each_drop_before_the_message_after_it() {
        for batch in [None, Some(1), Some(5), Some(64)] {
            let (slow, fast, dropped) = run(batch, 100, 2000);
            assert!(
                dropped > 1000,
                "{batch:?}: the slow consumer makes the ring drop"
            );
            for seen in [&slow, &fast] {
                assert_eq!(seen.received + seen.reported, 2000, "{batch:?}");
                assert_eq!(
                    seen.reported, dropped,
                    "{batch:?}: one ring, the same drops"
                );
                assert_eq!(seen.next, 2000, "{batch:?}: the last message arrived");
            }
        }
    }

    #[test]
    fn a_consumer_that_joins_late_learns_the_numbering_from_its_first_frame() {
        let (region, creator) = RingRegion::new_in_memory(4096, 2).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let mut producer = RingProducer::adopt(&region).unwrap();
        let mut holder = RingConsumer::join(&region).unwrap();
        for _ in 0..40 {
            producer.try_push_or_drop(&[1u8; 100]).unwrap();
        }
        producer.publish_and_wake().unwrap();
        assert_eq!(producer.dropped(), 8);
        // Joins at the write position, after 40 numbers were taken.
        let mut late = RingConsumer::join(&region).unwrap();
        // Nothing to read, and it cannot count what was dropped before it: no report.
        let mut out = Vec::new();
        assert_eq!(late.try_recv_into(&mut out), Ok(false));
        assert_eq!(late.try_recv_batch(8, |_| ()), Ok(0));
        assert!(!late.has_data());
        // The holder, which knows the numbering, is told of the 8 drops once it has read
        // the 32 frames before them, with no frame after them.
        for _ in 0..32 {
            assert!(holder.try_recv_into(&mut out).unwrap());
        }
        assert!(holder.has_data(), "the announced drops are news");
        assert_eq!(
            holder.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 8 })
        );
        assert!(!holder.has_data());
        assert_eq!(holder.try_recv_into(&mut out), Ok(false));
        producer.try_push_or_drop(&[2u8; 100]).unwrap();
        producer.skip_dropped(3);
        producer.try_push_or_drop(&[3u8; 100]).unwrap();
        producer.publish_and_wake().unwrap();
        assert!(late.try_recv_into(&mut out).unwrap());
        assert_eq!(out, [2u8; 100], "no gap before the first frame it sees");
        assert!(matches!(
            late.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 3 })
        ));
        assert!(late.try_recv_into(&mut out).unwrap());
        assert_eq!(out, [3u8; 100]);
        assert_eq!(producer.dropped(), 11, "skip_dropped counts");
        assert_eq!(producer_dropped(&region), 11);
    }

    #[test]
    fn drops_are_not_reported_where_they_mean_nothing() {
        // A queue consumer turns the reports off.
        let (region, creator) = RingRegion::new_in_memory(4096, 1).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let mut producer = RingProducer::adopt(&region).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        consumer.ignore_drops();
        assert!(!consumer.reports_drops());
        producer.skip_dropped(5);
        producer.push_and_publish(b"a").unwrap();
        let mut out = Vec::new();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(consumer.try_recv_batch(8, |_| ()).unwrap(), 0);
        // A ring whose producer waits never drops, so its consumers do not look: a gap in
        // the numbering (here made by hand) is not theirs to report.
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        assert!(!consumer.reports_drops(), "only a dropping ring reports");
        producer.skip_dropped(5);
        producer.push_and_publish(b"b").unwrap();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        // Nor does a lossy ring: there the numbering counts laps.
        let (region, _producer) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        set_drop_when_full(&region);
        assert!(!RingConsumer::join(&region).unwrap().reports_drops());
    }

    #[test]
    fn the_policy_means_nothing_to_a_lossy_ring() {
        let (region, creator) = RingRegion::new_in_memory_lossy(4096, 1).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let producer = RingProducer::adopt(&region).unwrap();
        assert!(!producer.drops_when_full());
    }

    /// A ring of 4096 bytes marked `FULL_DROP`, its adopted producer and `n` consumers that
    /// start at position 0 (so they know the numbering from the first frame).
    fn dropping_ring(n: usize) -> (Arc<RingRegion>, RingProducer, Vec<RingConsumer>) {
        let (region, creator) = RingRegion::new_in_memory(4096, 4).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let consumers = (0..n)
            .map(|_| RingConsumer::join(&region).unwrap())
            .collect();
        let producer = RingProducer::adopt(&region).unwrap();
        (region, producer, consumers)
    }

    /// Message `number`: 100 bytes (two lines a frame: 32 fill the ring), numbered.
    fn numbered(number: u64) -> [u8; 100] {
        let mut payload = [0u8; 100];
        payload[..8].copy_from_slice(&number.to_ne_bytes());
        payload
    }

    /// Pushes messages `range` with `try_push_or_drop` and `publish_and_wake` after each,
    /// as `ShmPublisher::publish` does; returns how many were kept.
    fn publish_range(producer: &mut RingProducer, range: std::ops::Range<u64>) -> u64 {
        let mut kept = 0;
        for number in range {
            if producer.try_push_or_drop(&numbered(number)).unwrap() {
                kept += 1;
            }
            producer.publish_and_wake().unwrap();
        }
        kept
    }

    #[test]
    fn drops_at_the_end_of_a_burst_are_reported_once_the_frames_before_them_are_read() {
        for batch in [None, Some(1), Some(7), Some(64)] {
            let (_region, mut producer, mut consumers) = dropping_ring(1);
            let mut consumer = consumers.pop().unwrap();
            // 32 fit, the last 18 are dropped, and nothing is published after them.
            assert_eq!(publish_range(&mut producer, 0..50), 32, "{batch:?}");
            assert_eq!(producer.dropped(), 18);
            let mut seen = Seen::default();
            let drain = |consumer: &mut RingConsumer, seen: &mut Seen| match batch {
                Some(max) => drain_in_batches(consumer, seen, max),
                None => drain_one_by_one(consumer, seen),
            };
            drain(&mut consumer, &mut seen);
            assert_eq!(seen.received, 32, "{batch:?}");
            assert_eq!(seen.reported, 18, "{batch:?}: told at once, exactly");
            // Found empty again: the same announcement is not reported twice.
            drain(&mut consumer, &mut seen);
            assert_eq!(seen.reported, 18, "{batch:?}");
            assert!(!consumer.has_data());
            // More drops at the same place (numbers skipped by hand, as the broker's relay
            // skips what it could not take): reported in turn.
            producer.skip_dropped(5);
            producer.publish_and_wake().unwrap();
            drain(&mut consumer, &mut seen);
            assert_eq!(seen.reported, 23, "{batch:?}");
            // The message after the drops: no second report of them.
            producer.try_push_or_drop(&numbered(55)).unwrap();
            producer.publish_and_wake().unwrap();
            drain(&mut consumer, &mut seen);
            assert_eq!((seen.received, seen.reported), (33, 23), "{batch:?}");
            assert_eq!(seen.next, 56, "{batch:?}");
            assert_eq!(seen.received + seen.reported, 56, "{batch:?}");
        }
    }

    #[test]
    fn an_announcement_made_before_frames_the_consumer_has_read_is_not_a_loss() {
        let (_region, mut producer, mut consumers) = dropping_ring(1);
        let mut consumer = consumers.pop().unwrap();
        let mut out = Vec::new();
        // Drops (0..3), then frames 3 and 4: the announcement "the frame at 0 is number 3"
        // is stale once the consumer has read frame 3. (With the number alone, and no
        // position, the consumer would take 3 for a loss of 2^31 - 2.)
        producer.skip_dropped(3);
        producer.try_push(&numbered(3)).unwrap();
        producer.try_push(&numbered(4)).unwrap();
        producer.publish_and_wake().unwrap();
        assert_eq!(
            consumer.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 3 })
        );
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, numbered(3));
        assert!(consumer.try_recv_into(&mut out).unwrap());
        assert_eq!(out, numbered(4));
        assert!(!consumer.has_data());
        assert_eq!(consumer.try_recv_into(&mut out), Ok(false));
        assert_eq!(consumer.try_recv_batch(8, |_| ()), Ok(0));
    }

    #[test]
    fn a_drop_then_a_push_in_either_order_against_the_consumers_read_counts_each_once() {
        // The orderings a single thread can produce around the empty check: the drop seen
        // on an empty ring then the frame; the drop and the frame both there before the
        // consumer looks; a frame, a drop, a frame, a drop, with reads between each.
        let (_region, mut producer, mut consumers) = dropping_ring(2);
        let mut b = consumers.pop().unwrap();
        let mut a = consumers.pop().unwrap();
        let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
        let mut number = 0;
        let push = |producer: &mut RingProducer, number: &mut u64| {
            producer.try_push(&numbered(*number)).unwrap();
            producer.publish_and_wake().unwrap();
            *number += 1;
        };
        let drop_one = |producer: &mut RingProducer, number: &mut u64| {
            producer.skip_dropped(1);
            producer.publish_and_wake().unwrap();
            *number += 1;
        };
        for round in 0..20 {
            match round % 4 {
                0 => {
                    push(&mut producer, &mut number);
                    drain_one_by_one(&mut a, &mut seen_a);
                    drop_one(&mut producer, &mut number);
                    drain_one_by_one(&mut a, &mut seen_a);
                    push(&mut producer, &mut number);
                }
                1 => {
                    drop_one(&mut producer, &mut number);
                    push(&mut producer, &mut number);
                    drain_in_batches(&mut a, &mut seen_a, 64);
                }
                2 => {
                    drop_one(&mut producer, &mut number);
                    drain_in_batches(&mut a, &mut seen_a, 64);
                    drop_one(&mut producer, &mut number);
                    drain_in_batches(&mut a, &mut seen_a, 64);
                }
                _ => {
                    push(&mut producer, &mut number);
                    drop_one(&mut producer, &mut number);
                    drop_one(&mut producer, &mut number);
                    push(&mut producer, &mut number);
                    drop_one(&mut producer, &mut number);
                }
            }
            if round % 3 == 0 {
                drain_in_batches(&mut b, &mut seen_b, 3);
            }
        }
        drain_one_by_one(&mut a, &mut seen_a);
        drain_one_by_one(&mut b, &mut seen_b);
        for seen in [&seen_a, &seen_b] {
            assert_eq!(seen.received + seen.reported, number);
            assert_eq!(seen.reported, producer.dropped());
        }
    }

    #[test]
    fn a_consumer_asleep_on_an_empty_ring_is_woken_by_a_drop() {
        use std::sync::mpsc;
        use std::time::Duration;
        // `slow` never reads, so the ring fills on its account; `fast` keeps up and sleeps
        // on the empty ring (no timeout: only the producer's wake can end the wait).
        let (region, mut producer, mut consumers) = dropping_ring(2);
        let fast = consumers.pop().unwrap();
        let _slow = consumers.pop().unwrap();
        let index = fast.slot_index();
        let (done, results) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut fast = fast;
            let mut out = Vec::new();
            loop {
                // Ok: a frame; Err(skipped): told of a drop.
                let result = match fast.recv_blocking(&mut out, Duration::ZERO, None) {
                    Ok(got) => Ok(got),
                    Err(crate::shm::RecvError::Read(ReadError::Lagged { skipped })) => Err(skipped),
                    Err(error) => panic!("{error}"),
                };
                done.send(result).unwrap();
                if result.is_err() {
                    return;
                }
            }
        });
        let hang = Duration::from_secs(30);
        for number in 0..32 {
            assert!(producer.try_push_or_drop(&numbered(number)).unwrap());
            producer.publish_and_wake().unwrap();
            assert_eq!(results.recv_timeout(hang), Ok(Ok(true)));
        }
        // Wait until it sleeps again on the empty ring (polling a condition, bounded).
        let start = std::time::Instant::now();
        let slot = region.slot(index).unwrap();
        while slot.parked.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < hang, "the consumer never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!producer.try_push_or_drop(&numbered(32)).unwrap());
        producer.publish_and_wake().unwrap();
        assert_eq!(
            results.recv_timeout(hang),
            Ok(Err(1)),
            "the sleeping consumer was not told of the drop"
        );
        reader.join().unwrap();
    }

    #[test]
    fn a_scribbled_announcement_yields_a_bounded_count_never_a_read() {
        use crate::shm::layout::{NEXT_SEQ_AT_OFFSET, NEXT_SEQ_OFFSET};
        let (region, mut producer, mut consumers) = dropping_ring(1);
        let mut consumer = consumers.pop().unwrap();
        let mut out = Vec::new();
        producer.push_and_publish(&numbered(0)).unwrap();
        assert!(consumer.try_recv_into(&mut out).unwrap());
        let pos = consumer.position();
        // Any number at our position: one report below 2^31, then nothing more.
        for junk in [0u64, 2, 1 << 31, u64::MAX, (1 << 31) + 1, 12345] {
            region.scribble(NEXT_SEQ_OFFSET, &junk.to_ne_bytes());
            region.scribble(NEXT_SEQ_AT_OFFSET, &pos.to_ne_bytes());
            match consumer.try_recv_into(&mut out) {
                Err(ReadError::Lagged { skipped }) => {
                    assert!(skipped > 0 && skipped < 1 << 31, "{junk}: {skipped}")
                }
                Ok(false) => {}
                other => panic!("{junk}: {other:?}"),
            }
            assert_eq!(consumer.try_recv_into(&mut out), Ok(false), "{junk}");
            assert_eq!(
                consumer.position(),
                pos,
                "an announcement never moves a reader"
            );
        }
        // Any position other than ours: nothing.
        for at in [0, pos + 64, pos - 64, u64::MAX, pos + 1] {
            region.scribble(NEXT_SEQ_AT_OFFSET, &at.to_ne_bytes());
            region.scribble(NEXT_SEQ_OFFSET, &777u64.to_ne_bytes());
            assert_eq!(consumer.try_recv_into(&mut out), Ok(false), "{at}");
        }
        // The producer never reads the words back, and a ring with an announcement is not
        // fresh: no producer adopts it.
        // The next frame is read whole (after a junk count, since the junk number is now
        // the one expected).
        producer.push_and_publish(&numbered(1)).unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            match consumer.try_recv_into(&mut out) {
                Ok(true) => got.push(out.clone()),
                Ok(false) => break,
                Err(ReadError::Lagged { skipped }) => assert!(skipped < 1 << 31),
                Err(error) => panic!("{error}"),
            }
        }
        assert_eq!(got, [numbered(1)]);
        let (fresh, creator) = RingRegion::new_in_memory(4096, 1).unwrap();
        drop(creator);
        fresh.scribble(NEXT_SEQ_OFFSET, &1u64.to_ne_bytes());
        assert!(RingProducer::adopt(&fresh).is_err());
    }
}

#[cfg(not(loom))]
mod trailing_padding {
    //! A padding frame published with no frame after it yet: a loan taken across the ring's
    //! end and dropped without a commit leaves one, and any later publish (a drop included)
    //! makes it visible; a hostile producer can write one too. Consumers step over it at once,
    //! so that the park re-check (`has_data`) and the read agree and nobody busy-loops, and a
    //! drop announced there is about the position the consumer stops at.

    use crate::shm::consumer::UNSLEPT_ROUNDS;
    use crate::shm::layout::{data_offset, FRAME_PADDING, WRITE_POS_OFFSET};
    use crate::shm::sync::Arc;
    use crate::shm::{
        set_drop_when_full, ReadError, RecvError, RingConsumer, RingProducer, RingRegion,
    };
    use std::time::Duration;

    /// Four frames, published: three of 1 024 bytes (payload 1 016) and one of 512, which
    /// leave 512 bytes before the end of a 4 096-byte ring.
    fn four_frames(producer: &mut RingProducer) {
        for i in 0..3u8 {
            producer.try_push(&[i; 1016]).unwrap();
        }
        producer.try_push(&[3; 504]).unwrap();
        producer.publish_and_wake().unwrap();
    }

    /// Lends 1 000 bytes (a 1 024-byte frame: it does not fit in the 512 left, so a padding
    /// frame goes at 3 584 and the frame at 0), writes them and drops the loan uncommitted.
    fn drop_a_wrapped_loan(producer: &mut RingProducer) {
        assert_eq!(producer.position(), 3584);
        {
            // Written, then abandoned without a commit.
            let mut loan = producer.try_loan(1000).unwrap();
            loan.as_mut_slice().fill(0xEE);
        }
        assert_eq!(producer.position(), 4096, "the padding frame was written");
    }

    /// Reads everything there is, then checks that the park re-check agrees that there is
    /// nothing (a consumer that reads, finds nothing, and is told "data" by `has_data` spins).
    fn drain(consumer: &mut RingConsumer) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        while consumer.try_recv_into(&mut out).unwrap() {
            frames.push(out.clone());
        }
        assert!(
            !consumer.has_data(),
            "has_data says there is something at {} that try_recv_into does not find",
            consumer.position()
        );
        frames
    }

    /// `recv_blocking` with a timeout on a ring nobody writes to meanwhile: returns nothing,
    /// and every round of it slept (a round that went back to reading without sleeping is a
    /// disagreement between the re-check and the read: a busy loop until the timeout).
    fn recv_blocking_sleeps(consumer: &mut RingConsumer, spin: Duration) -> Result<(), RecvError> {
        UNSLEPT_ROUNDS.with(|rounds| rounds.set(0));
        let mut out = Vec::new();
        let received = consumer.recv_blocking(&mut out, spin, Some(Duration::from_millis(20)));
        let unslept = UNSLEPT_ROUNDS.with(std::cell::Cell::get);
        assert_eq!(
            unslept, 0,
            "recv_blocking went back to reading {unslept} times without sleeping"
        );
        assert!(!received?, "nothing was published");
        Ok(())
    }

    #[test]
    fn a_consumer_steps_over_the_padding_of_a_dropped_wrapped_loan_and_sleeps() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 3).unwrap();
        let mut blocking = RingConsumer::join(&region).unwrap();
        let mut single = RingConsumer::join(&region).unwrap();
        let mut batch = RingConsumer::join(&region).unwrap();
        four_frames(&mut producer);
        assert_eq!(drain(&mut blocking).len(), 4);
        assert_eq!(drain(&mut single).len(), 4);
        assert_eq!(batch.try_recv_batch(64, |_| ()).unwrap(), 4);
        drop_a_wrapped_loan(&mut producer);
        // Nothing pushed since: this publishes the padding frame alone.
        producer.publish_and_wake().unwrap();

        // The symptom: woken by the padding frame, finding no frame, waking again...
        recv_blocking_sleeps(&mut blocking, Duration::ZERO).unwrap();
        assert_eq!(blocking.position(), 4096, "stopped after the padding frame");
        assert!(!blocking.has_data());
        // ... with a spin first, too.
        recv_blocking_sleeps(&mut blocking, Duration::from_micros(200)).unwrap();

        assert!(drain(&mut single).is_empty());
        assert_eq!(single.position(), 4096);
        assert_eq!(batch.try_recv_batch(64, |_| ()).unwrap(), 0);
        assert_eq!(batch.position(), 4096);
        assert!(!batch.has_data());
        // Stepping over it told the producer: the padding frame holds no room.
        for (_, read_pos) in producer.active_consumers() {
            assert_eq!(read_pos, 4096);
        }

        // The next frame, at offset 0, reaches everyone, exactly once.
        producer.push_and_publish(b"after").unwrap();
        producer.publish_and_wake().unwrap();
        assert_eq!(drain(&mut blocking), [b"after".to_vec()]);
        assert_eq!(drain(&mut single), [b"after".to_vec()]);
        let mut got = Vec::new();
        assert_eq!(
            batch.try_recv_batch(64, |f| got.push(f.to_vec())).unwrap(),
            1
        );
        assert_eq!(got, [b"after".to_vec()]);
    }

    #[test]
    fn a_batch_that_ends_at_a_trailing_padding_frame_steps_over_it_on_the_next_call() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        four_frames(&mut producer);
        // At 1 024 the consumer lets the producer write up to 5 120: the loan's padding frame
        // and frame fit.
        assert_eq!(consumer.try_recv_batch(1, |_| ()).unwrap(), 1);
        drop_a_wrapped_loan(&mut producer);
        producer.publish_and_wake().unwrap();
        // Three frames, then the padding frame with nothing after it.
        assert_eq!(consumer.try_recv_batch(64, |_| ()).unwrap(), 3);
        assert_eq!(consumer.try_recv_batch(64, |_| ()).unwrap(), 0);
        assert_eq!(consumer.position(), 4096);
        assert!(!consumer.has_data());
        recv_blocking_sleeps(&mut consumer, Duration::ZERO).unwrap();
    }

    #[test]
    fn a_drop_after_a_dropped_wrapped_loan_is_told_at_once_and_once() {
        let (region, creator) = RingRegion::new_in_memory(4096, 3).unwrap();
        drop(creator);
        set_drop_when_full(&region);
        let mut slow = RingConsumer::join(&region).unwrap();
        let mut fast = RingConsumer::join(&region).unwrap();
        let mut batch = RingConsumer::join(&region).unwrap();
        let mut producer = RingProducer::adopt(&region).unwrap();
        four_frames(&mut producer); // numbers 0 to 3
        let mut out = Vec::new();
        assert!(slow.try_recv_into(&mut out).unwrap());
        assert_eq!(drain(&mut fast).len(), 4);
        assert_eq!(batch.try_recv_batch(64, |_| ()).unwrap(), 4);
        // `slow` at 1 024 allows frames up to 5 120: the loan's padding and 1 024-byte frame
        // fit, a 2 048-byte frame after the padding does not.
        drop_a_wrapped_loan(&mut producer);
        assert!(
            !producer.try_push_or_drop(&[4; 2000]).unwrap(),
            "number 4 dropped"
        );
        producer.publish_and_wake().unwrap();

        // Announced at 4 096, past the padding frame: that is where the readers stop.
        assert_eq!(
            fast.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 1 })
        );
        assert_eq!(fast.position(), 4096);
        assert!(drain(&mut fast).is_empty());
        assert_eq!(
            batch.try_recv_batch(64, |_| ()),
            Err(ReadError::Lagged { skipped: 1 })
        );
        assert_eq!(batch.position(), 4096);
        assert_eq!(batch.try_recv_batch(64, |_| ()), Ok(0));
        assert!(!batch.has_data());
        recv_blocking_sleeps(&mut fast, Duration::ZERO).unwrap();

        // Room again: number 5 is not reported as a gap by those that were told.
        assert!(slow.try_recv_into(&mut out).unwrap());
        assert!(producer.try_push_or_drop(b"five").unwrap());
        producer.publish_and_wake().unwrap();
        assert_eq!(drain(&mut fast), [b"five".to_vec()]);
        let mut got = Vec::new();
        assert_eq!(batch.try_recv_batch(64, |f| got.push(f.to_vec())), Ok(1));
        assert_eq!(got, [b"five".to_vec()]);
        // The slow one hears of it from the gap before number 5, once.
        assert!(slow.try_recv_into(&mut out).unwrap());
        assert!(slow.try_recv_into(&mut out).unwrap());
        assert_eq!(
            slow.try_recv_into(&mut out),
            Err(ReadError::Lagged { skipped: 1 })
        );
        assert_eq!(drain(&mut slow), [b"five".to_vec()]);
    }

    /// A hostile producer publishes a padding frame with nothing after it (its header at the
    /// old `write_pos`, `write_pos` moved to the ring's end).
    fn hostile_trailing_padding(region: &Arc<RingRegion>) {
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(512u32 - 8).to_ne_bytes());
        header[4..].copy_from_slice(&FRAME_PADDING.to_ne_bytes());
        region.scribble(data_offset(1) + 3584, &header);
        region.scribble(WRITE_POS_OFFSET, &4096u64.to_ne_bytes());
    }

    #[test]
    fn a_hostile_trailing_padding_frame_costs_no_busy_loop_lossless_or_lossy() {
        for lossy in [false, true] {
            let (region, mut producer) = if lossy {
                RingRegion::new_in_memory_lossy(4096, 1).unwrap()
            } else {
                RingRegion::new_in_memory(4096, 1).unwrap()
            };
            let mut consumer = RingConsumer::join(&region).unwrap();
            four_frames(&mut producer);
            assert_eq!(drain(&mut consumer).len(), 4, "lossy: {lossy}");
            hostile_trailing_padding(&region);
            recv_blocking_sleeps(&mut consumer, Duration::ZERO).unwrap();
            assert_eq!(consumer.position(), 4096, "lossy: {lossy}");
            assert!(drain(&mut consumer).is_empty());
        }
    }

    #[test]
    fn the_read_and_the_park_re_check_agree_in_every_other_quiet_state() {
        let (region, mut producer) = RingRegion::new_in_memory(4096, 1).unwrap();
        let mut consumer = RingConsumer::join(&region).unwrap();
        // Empty.
        assert!(drain(&mut consumer).is_empty());
        recv_blocking_sleeps(&mut consumer, Duration::ZERO).unwrap();
        // A frame written but not published: invisible to both.
        producer.try_push(b"later").unwrap();
        assert!(drain(&mut consumer).is_empty());
        recv_blocking_sleeps(&mut consumer, Duration::ZERO).unwrap();
        // Published; then a zero-length frame and a reference frame.
        producer.publish_and_wake().unwrap();
        producer.try_push(b"").unwrap();
        producer
            .try_push_marked(&[0; 16], crate::shm::FrameFlags::REFERENCE)
            .unwrap();
        producer.publish_and_wake().unwrap();
        assert_eq!(
            drain(&mut consumer),
            [b"later".to_vec(), vec![], vec![0; 16]]
        );
        recv_blocking_sleeps(&mut consumer, Duration::ZERO).unwrap();
        // A hostile padding header at `write_pos`, not published: invisible to both.
        let at = consumer.position() as usize % 4096;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&((4096 - at - 8) as u32).to_ne_bytes());
        header[4..].copy_from_slice(&FRAME_PADDING.to_ne_bytes());
        region.scribble(data_offset(1) + at, &header);
        assert!(drain(&mut consumer).is_empty());
        recv_blocking_sleeps(&mut consumer, Duration::ZERO).unwrap();
        // A `write_pos` scribbled behind the consumer or inside a frame: an error, returned
        // by `recv_blocking` at once, not a loop.
        let position = consumer.position();
        region.scribble(WRITE_POS_OFFSET, &(position - 64).to_ne_bytes());
        let mut out = Vec::new();
        assert!(matches!(
            consumer.recv_blocking(&mut out, Duration::ZERO, None),
            Err(RecvError::Read(ReadError::Corrupt(_)))
        ));
        region.scribble(WRITE_POS_OFFSET, &(position + 8).to_ne_bytes());
        assert!(matches!(
            consumer.recv_blocking(&mut out, Duration::ZERO, None),
            Err(RecvError::Read(ReadError::Corrupt(_)))
        ));
    }
}
