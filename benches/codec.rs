//! Codec throughput: writing and reading frames in memory, no socket.
//!
//! - Message paths run in batches of [`BATCH`] frames per iteration, so the figures read as
//!   messages per second (`Throughput::Elements`).
//! - `encode_message` writes into one reused buffer, as the broker's outboxes do.
//! - `peek_frame` is the broker's read path (a borrowed view, no allocation); the `Decoder` is the
//!   client's (owned `Frame`s whose payloads are zero-copy slices of the read buffer).
//! - A `Subscribe` stands for the control frames: checked lengths and an owned `String`.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput};
use mycelium_transport::{
    encode_frame, encode_message, kind, peek_frame, Frame, FrameCodec, MESSAGE_OVERHEAD,
};
use tokio_util::codec::Decoder;

/// Frames per measured iteration of the message benches.
const BATCH: usize = 1000;

/// Any topic id: the codec does not look at it.
const TOPIC_ID: u32 = 7;

/// Frame limit for the decoders: comfortably above every frame these benches write.
const MAX_FRAME_LEN: usize = 1 << 20;

/// `BATCH` Publish frames carrying `size`-byte payloads, back to back.
fn publish_frames(size: usize) -> BytesMut {
    let payload = vec![0xA5; size];
    let mut buf = BytesMut::with_capacity(BATCH * (size + MESSAGE_OVERHEAD));
    for _ in 0..BATCH {
        encode_message(&mut buf, kind::PUBLISH, TOPIC_ID, &payload);
    }
    buf
}

fn subscribe_frame() -> Frame {
    Frame::Subscribe {
        request_id: 42,
        prefetch: 256,
        no_echo: false,
        topic: "market_data.eu".to_owned(),
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/encode_message");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, size) in [("64B", 64), ("1KiB", 1024)] {
        let payload = vec![0x5A; size];
        let mut buf = BytesMut::with_capacity(BATCH * (size + MESSAGE_OVERHEAD));
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                for _ in 0..BATCH {
                    encode_message(&mut buf, kind::DELIVER, TOPIC_ID, black_box(&payload));
                }
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let wire = publish_frames(64);
    let mut group = c.benchmark_group("codec/decode_64B");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("peek_frame", |b| {
        b.iter(|| {
            let mut rest = black_box(&wire[..]);
            let mut bytes = 0;
            while let Some((view, used)) = peek_frame(rest, MAX_FRAME_LEN).expect("valid frames") {
                // The broker's hot path reads the topic id and payload of each message.
                let (topic_id, payload) = view.message().expect("a message frame");
                bytes += payload.len() + topic_id as usize;
                rest = &rest[used..];
            }
            black_box(bytes)
        })
    });
    let mut codec = FrameCodec::new(MAX_FRAME_LEN);
    group.bench_function("frame_codec", |b| {
        // The copy of the wire bytes is made outside the measurement: the decoder consumes it.
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut frames = 0;
                while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
                    black_box(&frame);
                    frames += 1;
                }
                assert_eq!(frames, BATCH);
                buf
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn control(c: &mut Criterion) {
    let frame = subscribe_frame();
    let mut wire = BytesMut::new();
    encode_frame(&frame, &mut wire).expect("a valid Subscribe");

    let mut group = c.benchmark_group("codec/control_subscribe");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(256);
    group.bench_function("encode_frame", |b| {
        b.iter(|| {
            buf.clear();
            encode_frame(black_box(&frame), &mut buf).expect("a valid Subscribe");
            black_box(buf.len())
        })
    });
    let mut codec = FrameCodec::new(MAX_FRAME_LEN);
    group.bench_function("frame_codec_decode", |b| {
        b.iter_batched(
            || wire.clone(),
            |mut buf| codec.decode(&mut buf).expect("valid").expect("whole"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`, which the workspace lints flag.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    for bench in [encode, decode, control] {
        bench(&mut c);
    }
    c.final_summary();
}
