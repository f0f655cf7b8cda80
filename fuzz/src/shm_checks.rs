//! The properties the `shm_segment` fuzz target checks: arbitrary bytes as the contents of a
//! shared-memory segment that a subscriber maps, read through the transport's public API.
//!
//! - A **ring segment**: a sealed memfd holding the input's bytes, accepted with
//!   [`Segment::from_fd`] as a subscriber accepts one, then `attach`ed and read by a consumer
//!   that joined or adopted a slot, frame by frame and in batches, while a hostile peer scribbles
//!   over the header, the slots and the frames between reads (ops taken from the input). The
//!   broker's observers (`slot_backlog`, `slot_positions`, `reserve_slot`, `release_slot`, ...)
//!   and a producer adopting the same ring read it too.
//! - A **payload segment**: the input's bytes sealed in a payload memfd and opened with
//!   [`PayloadView::open`] under the claimed length and limit the input chooses.
//! - Checks: nothing panics (and nothing reads outside the mapping, which AddressSanitizer and the
//!   mapping's end would catch); a lossless consumer reports `Lagged` only if the ring claims to
//!   drop when full (`FULL_DROP`: a gap in the numbering, or the producer's drop announcement
//!   `next_seq`/`next_seq_at`, which the ops scribble and a producer writes when it drops),
//!   and then before any frame of its batch, with a count below 2^31 (the numbering's
//!   modulus, whatever the announcement says); on an error or with nothing to read its
//!   position stays put; every delivered frame is a whole frame of the
//!   ring as it is at that moment: its header (length word and tag) and payload lie inside the
//!   data region, at the consumer's position (or after a padding frame, or, lossy, at the
//!   producer's `oldest_pos`), and its bytes are the segment's bytes there; a batch hands over at
//!   most what was asked; a payload view shows exactly the first `len` bytes, or is refused with
//!   `BadSize`.
//!
//! Like `checks.rs`, this file is also compiled by `mycelium-transport/tests/fuzz_corpus.rs`,
//! which replays the committed corpus on stable.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use mycelium_transport::shm::layout::{
    data_offset, CAPACITY_OFFSET, FRAME_ALIGN, FRAME_ENVELOPE, FRAME_HEADER_LEN, FRAME_PADDING,
    FRAME_REFERENCE, MAX_CONSUMERS_OFFSET, MODE_LOSSY, MODE_OFFSET, OLDEST_POS_OFFSET,
};
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{
    attach, producer_dropped, producer_waiting, queue, release_slot, reserve_slot, slot_backlog,
    slot_positions, wake_consumer, FrameFlags, PayloadView, PayloadWriter, ReadError, RingConsumer,
    RingGeometry, RingProducer, RingRegion, Segment, SegmentError,
};

/// The largest segment the target builds: a ring of up to 64 KiB of data behind a header and
/// some slots. Longer inputs are cut.
pub const SHM_MAX_SEGMENT: usize = 64 * 1024 + 4096;

/// Bytes of one scribbling op in the input.
const OP_LEN: usize = 8;

/// Most ops one input runs.
const MAX_OPS: usize = 64;

/// Checks a segment built from `data`: byte 0 chooses the kind (bit 0: payload segment) and, for
/// a ring, how the consumer starts (bit 1: adopt slot 0 instead of joining); byte 1 is the
/// number of ops; then `8 * ops` bytes of ops (see [`Op`]); the rest is the segment's contents.
pub fn check_shm_segment(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 1 == 1 {
        check_payload_segment(rest);
        return;
    }
    let Some((&op_count, rest)) = rest.split_first() else {
        return;
    };
    let op_bytes = (usize::from(op_count) % (MAX_OPS + 1)) * OP_LEN;
    let (ops, contents) = rest.split_at(op_bytes.min(rest.len()));
    let contents = &contents[..contents.len().min(SHM_MAX_SEGMENT)];
    if contents.is_empty() {
        return;
    }
    let Some(mut ring) = HostileRing::new(contents) else {
        return;
    };
    ring.start_consumer(flags & 2 != 0, 0);
    ring.observe(0);
    for op in ops.chunks_exact(OP_LEN) {
        ring.run(Op::decode(op));
    }
    // Whatever the ops left, a last read and batch on the final state.
    ring.run(Op::decode(&[0, 0, 0, 0, 0, 0, 0, 0]));
    ring.run(Op::decode(&[1, 255, 0, 0, 0, 0, 0, 0]));
}

/// One step of the input's script: `code u8 | arg u8 | offset u16 LE | value u32 LE`.
#[derive(Debug, Clone, Copy)]
struct Op {
    code: u8,
    arg: u8,
    offset: u16,
    value: u32,
}

impl Op {
    fn decode(bytes: &[u8]) -> Op {
        Op {
            code: bytes[0],
            arg: bytes[1],
            offset: u16::from_le_bytes([bytes[2], bytes[3]]),
            value: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}

/// A ring segment as a subscriber maps it, with the peer's fd to scribble through.
struct HostileRing {
    /// The memfd, written as another process would write the shared mapping.
    file: File,
    /// Size of the segment.
    len: usize,
    /// The subscriber's mapping of the segment (through `Segment::from_fd`).
    region: Arc<RingRegion>,
    /// The consumer under test and the geometry it validated when it started.
    consumer: Option<(RingConsumer, RingGeometry)>,
    /// A producer that adopted the ring, if it was fresh enough to adopt.
    producer: Option<RingProducer>,
}

impl HostileRing {
    /// A sealed memfd holding `contents`, received and mapped as a subscriber does.
    fn new(contents: &[u8]) -> Option<HostileRing> {
        let created = Segment::create("mycelium-fuzz-ring", contents.len()).ok()?;
        let fd = created.fd().try_clone_to_owned().ok()?;
        let file = File::from(created.fd().try_clone_to_owned().ok()?);
        drop(created);
        file.write_all_at(contents, 0).expect("writing the segment");
        let segment = match Segment::from_fd(fd, SHM_MAX_SEGMENT) {
            Ok(segment) => segment,
            Err(error) => panic!(
                "a sealed segment of {} bytes refused: {error}",
                contents.len()
            ),
        };
        assert_eq!(segment.len(), contents.len());
        let region = match segment.ring_region() {
            Ok(region) => region,
            Err(_) => return None,
        };
        assert_eq!(region.len(), contents.len());
        Some(HostileRing {
            file,
            len: contents.len(),
            region,
            consumer: None,
            producer: None,
        })
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let mut word = [0; 4];
        self.file
            .read_exact_at(&mut word, offset as u64)
            .expect("read");
        u32::from_ne_bytes(word)
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let mut word = [0; 8];
        self.file
            .read_exact_at(&mut word, offset as u64)
            .expect("read");
        u64::from_ne_bytes(word)
    }

    /// Drops the consumer under test and starts another, by adopting `slot` or by joining.
    fn start_consumer(&mut self, adopt: bool, slot: usize) {
        self.consumer = None;
        let started = if adopt {
            RingConsumer::adopt(&self.region, slot)
        } else {
            RingConsumer::join(&self.region)
        };
        let Ok(consumer) = started else {
            return;
        };
        // `attach` just validated the header, and nobody wrote it since: what it read is here.
        let geometry = RingGeometry {
            capacity: self.read_u64(CAPACITY_OFFSET),
            max_consumers: self.read_u32(MAX_CONSUMERS_OFFSET),
            lossy: self.read_u32(MODE_OFFSET) == MODE_LOSSY,
        };
        assert_eq!(attach(&self.region).ok(), Some(geometry));
        assert!(consumer.slot_index() < geometry.max_consumers as usize);
        assert_eq!(consumer.position() % FRAME_ALIGN as u64, 0);
        self.consumer = Some((consumer, geometry));
    }

    /// The third party's reads of slot `slot`: none may panic, whatever the header says.
    fn observe(&self, slot: usize) {
        let _ = slot_backlog(&self.region, slot);
        let _ = slot_positions(&self.region, slot);
        let _ = producer_dropped(&self.region);
        let _ = producer_waiting(&self.region);
        if let Some((consumer, _)) = &self.consumer {
            let _ = consumer.has_data();
            let _ = consumer.has_notice();
        }
    }

    fn run(&mut self, op: Op) {
        let slot = usize::from(op.arg);
        match op.code % 10 {
            0 => self.read_one(),
            1 => self.read_batch(usize::from(op.arg)),
            2 => {
                // Scribble a word anywhere (4-aligned, as the header's words are).
                let offset = (usize::from(op.offset) * 4) % self.len;
                let bytes = op.value.to_ne_bytes();
                let end = (offset + 4).min(self.len);
                self.file
                    .write_all_at(&bytes[..end - offset], offset as u64)
                    .expect("scribble");
            }
            3 => {
                // Move a 64-bit word (a position) by `value`, as a producer publishing would.
                let offset = (usize::from(op.offset) * 8) % self.len;
                if offset + 8 <= self.len {
                    let moved = self.read_u64(offset).wrapping_add(u64::from(op.value));
                    self.file
                        .write_all_at(&moved.to_ne_bytes(), offset as u64)
                        .expect("scribble");
                }
            }
            4 => self.start_consumer(op.value & 1 == 1, slot),
            5 => {
                if let Ok(index) = reserve_slot(&self.region) {
                    assert!(index < 1024);
                }
                let _ = release_slot(&self.region, slot);
                wake_consumer(&self.region, slot);
                self.observe(slot);
            }
            6 => self.push(op),
            7 => {
                if let Some((consumer, _)) = &self.consumer {
                    let _ = consumer.take_notice();
                }
                self.observe(slot);
            }
            8 => {
                // Write a frame header at the data offset `offset * 8` of the validated ring.
                if let Some((_, geometry)) = &self.consumer {
                    let at = data_offset(geometry.max_consumers)
                        + (usize::from(op.offset) * 8) % geometry.capacity as usize;
                    if at + 8 <= self.len {
                        let tag = u32::from(op.arg);
                        let mut header = [0; 8];
                        header[..4].copy_from_slice(&op.value.to_ne_bytes());
                        header[4..].copy_from_slice(&tag.to_ne_bytes());
                        self.file
                            .write_all_at(&header, at as u64)
                            .expect("scribble");
                    }
                }
            }
            _ => {
                // A producer publishes: `write_pos` moves by whole frames.
                if self.len >= 72 {
                    let step = u64::from(op.value % 64) * FRAME_ALIGN as u64;
                    let moved = self.read_u64(64).wrapping_add(step);
                    self.file
                        .write_all_at(&moved.to_ne_bytes(), 64)
                        .expect("scribble");
                }
            }
        }
    }

    /// A producer adopts the ring (if it is fresh) and pushes a frame (or, on a ring it drops
    /// on, offers it with `try_push_or_drop` or skips numbers, announcing the drop in the
    /// header): it reads the slots' positions from shared memory and must stay inside the
    /// ring whatever they say.
    fn push(&mut self, op: Op) {
        if self.producer.is_none() {
            self.producer = RingProducer::adopt(&self.region).ok();
        }
        let Some(producer) = &mut self.producer else {
            return;
        };
        let payload = vec![op.arg; (op.value % 1024) as usize];
        if producer.drops_when_full() && op.offset & 2 != 0 {
            if op.offset & 4 != 0 {
                producer.skip_dropped(u64::from(op.arg) + 1);
            } else {
                let _ = producer.try_push_or_drop(&payload);
            }
        } else {
            let _ = producer.try_push_marked(
                &payload,
                FrameFlags::new(op.offset & 1 == 1, op.offset & 8 != 0),
            );
        }
        let _ = producer.publish_and_wake();
    }

    /// One `try_recv_marked`, checked against the segment's bytes.
    fn read_one(&mut self) {
        let Some((consumer, geometry)) = &mut self.consumer else {
            return;
        };
        let geometry = *geometry;
        let before = consumer.position();
        let mut out = Vec::new();
        let result = consumer.try_recv_marked(&mut out);
        let after = consumer.position();
        match result {
            Ok(Some(flags)) => {
                let size = frame_size(out.len());
                let start = after.wrapping_sub(size as u64);
                check_frame_at(
                    &snapshot(&self.file, self.len),
                    &geometry,
                    start,
                    &out,
                    flags,
                );
                if !geometry.lossy {
                    check_lossless_start(&geometry, before, start);
                }
                check_delivered(&out, flags.is_reference(), consumer.slot_index());
            }
            Ok(None) | Err(ReadError::Corrupt(_)) => {
                if !geometry.lossy {
                    assert_eq!(before, after, "a lossless read without a frame moved on");
                }
            }
            Err(ReadError::Lagged { skipped }) => {
                // A dropping ring (`FULL_DROP`, which a hostile segment may claim) reports the
                // gaps in its numbering, before the frame after the gap or from the drop
                // announcement on an empty ring: it does not move.
                assert!(
                    geometry.lossy || consumer.reports_drops(),
                    "a lossless consumer that does not report drops reported a lag"
                );
                assert!(
                    skipped > 0 && skipped < 1 << 31,
                    "a lag of {skipped}: counts are below the numbering's modulus"
                );
                if !geometry.lossy {
                    assert_eq!(before, after, "a lossless lag moved on");
                }
            }
        }
    }

    /// One `try_recv_batch_marked` of at most `max` frames, each checked against the segment.
    fn read_batch(&mut self, max: usize) {
        let Some((consumer, geometry)) = &mut self.consumer else {
            return;
        };
        let geometry = *geometry;
        let before = consumer.position();
        let mut frames: Vec<(Vec<u8>, FrameFlags)> = Vec::new();
        let result = consumer.try_recv_batch_marked(max, |frame, flags| {
            frames.push((frame.to_vec(), flags));
        });
        let after = consumer.position();
        assert!(
            frames.len() <= max,
            "a batch of {max} handed over {}",
            frames.len()
        );
        match &result {
            Ok(count) => assert_eq!(*count, frames.len(), "the count is not what was handed"),
            Err(ReadError::Lagged { skipped }) => {
                assert!(geometry.lossy || consumer.reports_drops(), "a lossless lag");
                assert!(*skipped > 0 && *skipped < 1 << 31, "a lag of {skipped}");
                if !geometry.lossy {
                    assert!(frames.is_empty() && before == after, "a lag after frames");
                }
            }
            Err(ReadError::Corrupt(_)) => {}
        }
        let snapshot = snapshot(&self.file, self.len);
        let oldest = u64::from_ne_bytes(
            snapshot[OLDEST_POS_OFFSET..OLDEST_POS_OFFSET + 8]
                .try_into()
                .expect("8 bytes"),
        );
        let mut pos = before;
        for (frame, reference) in &frames {
            let start = if geometry.lossy {
                // At the position, after a padding frame, or resumed at the oldest intact frame.
                [
                    pos,
                    next_lap(&geometry, pos),
                    oldest,
                    next_lap(&geometry, oldest),
                ]
                .into_iter()
                .find(|&start| frame_matches(&snapshot, &geometry, start, frame, *reference))
                .unwrap_or_else(|| panic!("a lossy batch frame not found in the ring"))
            } else {
                let start = if frame_matches(&snapshot, &geometry, pos, frame, *reference) {
                    pos
                } else {
                    next_lap(&geometry, pos)
                };
                check_lossless_start(&geometry, pos, start);
                start
            };
            check_frame_at(&snapshot, &geometry, start, frame, *reference);
            check_delivered(frame, reference.is_reference(), consumer.slot_index());
            pos = start.wrapping_add(frame_size(frame.len()) as u64);
        }
        if !geometry.lossy {
            assert_eq!(after, pos, "the batch did not stop after its last frame");
        }
    }
}

/// The segment's bytes as they are now.
fn snapshot(file: &File, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, 0)
        .expect("reading the segment");
    bytes
}

/// Total bytes of a frame with `len` payload bytes (the transport's `frame_size`).
fn frame_size(len: usize) -> usize {
    (FRAME_HEADER_LEN + len).next_multiple_of(FRAME_ALIGN)
}

/// The first position of the ring's next lap after `pos` (where a padding frame leads).
/// Positions wrap like the consumer's (a peer may set them near `u64::MAX`).
fn next_lap(geometry: &RingGeometry, pos: u64) -> u64 {
    pos.wrapping_add(geometry.capacity - (pos & (geometry.capacity - 1)))
}

/// A lossless consumer reads the frame at its position, or the one after a padding frame.
fn check_lossless_start(geometry: &RingGeometry, pos: u64, start: u64) {
    assert!(
        start == pos || start == next_lap(geometry, pos),
        "a lossless frame at {start}, not at the position {pos} or after a padding frame"
    );
}

/// Whether the ring holds `payload` as a whole frame at position `start`.
fn frame_matches(
    snapshot: &[u8],
    geometry: &RingGeometry,
    start: u64,
    payload: &[u8],
    flags: FrameFlags,
) -> bool {
    let offset = (start & (geometry.capacity - 1)) as usize;
    let size = frame_size(payload.len());
    if offset + size > geometry.capacity as usize {
        return false;
    }
    let at = data_offset(geometry.max_consumers) + offset;
    let Some(header) = snapshot.get(at..at + FRAME_HEADER_LEN) else {
        return false;
    };
    let len_word = u32::from_ne_bytes(header[..4].try_into().expect("4 bytes"));
    let tag = u32::from_ne_bytes(header[4..].try_into().expect("4 bytes"));
    let mut expected = payload.len() as u32;
    if flags.is_reference() {
        expected |= FRAME_REFERENCE;
    }
    if flags.is_envelope() {
        expected |= FRAME_ENVELOPE;
    }
    let body = snapshot.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + payload.len());
    tag & FRAME_PADDING == 0 && len_word == expected && body == Some(payload)
}

/// A delivered frame lies whole inside the ring's data region at `start`, header and payload
/// equal to the segment's bytes there.
fn check_frame_at(
    snapshot: &[u8],
    geometry: &RingGeometry,
    start: u64,
    payload: &[u8],
    flags: FrameFlags,
) {
    assert_eq!(
        start % FRAME_ALIGN as u64,
        0,
        "a frame at unaligned {start}"
    );
    assert!(
        payload.len() <= geometry.capacity as usize / 2,
        "a frame of {} bytes in a ring of {}",
        payload.len(),
        geometry.capacity
    );
    assert!(
        frame_matches(snapshot, geometry, start, payload, flags),
        "the {}-byte frame delivered is not the ring's frame at {start}",
        payload.len()
    );
}

/// What a subscriber does next with a delivered frame: a reference names a payload segment, a
/// queue frame is addressed to a slot; neither may panic on what a peer wrote.
fn check_delivered(frame: &[u8], reference: bool, slot: usize) {
    if reference {
        let _ = SegmentRef::decode(frame);
    }
    if let Some(message) = queue::addressed_to(frame, slot) {
        assert_eq!(message.len() + queue::QUEUE_PREFIX, frame.len());
        assert_eq!(message, &frame[queue::QUEUE_PREFIX..]);
    }
}

/// A payload segment of `data[4..]`, opened under the claimed length `data[0..2]` (LE; 0 means
/// the whole segment) and the limit `data[2..4]` (LE, in bytes; 0 means no smaller than the
/// segment).
fn check_payload_segment(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (head, contents) = data.split_at(4);
    let contents = &contents[..contents.len().min(SHM_MAX_SEGMENT)];
    if contents.is_empty() {
        assert!(matches!(
            PayloadWriter::create("mycelium-fuzz-payload", 0),
            Err(SegmentError::BadSize { .. })
        ));
        return;
    }
    let claimed = match usize::from(u16::from_le_bytes([head[0], head[1]])) {
        0 => contents.len(),
        len => len,
    };
    let max_len = match usize::from(u16::from_le_bytes([head[2], head[3]])) {
        0 => contents.len().max(claimed),
        max => max,
    };
    let mut writer =
        PayloadWriter::create("mycelium-fuzz-payload", contents.len()).expect("payload memfd");
    writer.as_mut_slice().copy_from_slice(contents);
    let sealed = writer.seal().expect("sealing the payload");
    match PayloadView::open(sealed.fd(), claimed, max_len) {
        Ok(view) => {
            assert!(claimed <= contents.len() && claimed <= max_len && contents.len() <= max_len);
            assert!(
                view.as_slice() == &contents[..claimed],
                "the view shows other bytes"
            );
        }
        Err(SegmentError::BadSize { .. }) => assert!(
            claimed > contents.len() || claimed > max_len || contents.len() > max_len,
            "a {claimed}-byte view of {} bytes under {max_len} refused",
            contents.len()
        ),
        Err(error) => panic!("opening a sealed payload failed: {error}"),
    }
    let _ = SegmentRef::decode(&contents[..contents.len().min(16)]);
}
