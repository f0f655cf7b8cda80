//! The properties the fuzz targets check on arbitrary bytes, as plain functions that panic on a
//! violation.
//!
//! - [`check_decode_frames`]: the `FrameCodec` decoder and `peek_frame` + `FrameView::to_frame`
//!   agree frame by frame; neither panics; a partial frame and a bad header consume nothing; a
//!   malformed body consumes exactly its frame; every decoded frame re-encodes to the bytes it came
//!   from (reserved `Error` flag bits aside) and decodes again to an equal frame; the handshake
//!   limit yields a prefix of what the post-handshake limit yields.
//! - [`check_decode_split`]: the same bytes fed in two chunks (split point from the first two input
//!   bytes), and byte by byte, decode to the same frames and errors as in one piece.
//! - [`check_handshake`]: the first frame of a fresh connection, read by the handshake both sides
//!   drive (`mycelium_transport::handshake`: [`ServerHandshake`] as the broker reads a `Hello`,
//!   [`ClientHandshake`] as a client reads the broker's answer), fed in chunks as a socket
//!   delivers them: a partial frame consumes nothing, a header error (an oversized `len` above
//!   all) is found from the header alone, so neither side ever buffers more than the limit; the
//!   machines agree with `peek_frame` under [`HANDSHAKE_MAX_FRAME_LEN`] + `FrameView::to_frame`
//!   and with the codec; and their decisions are classified as the broker
//!   ([`classify_first_frame`]) and the client ([`classify_welcome`]) act on them.
//!
//! This file is compiled twice: by the fuzz crate (`fuzz/src/lib.rs`) and, through `#[path]`, by
//! `mycelium-transport/tests/fuzz_corpus.rs`, which replays the committed corpus on stable so that
//! CI re-checks every past finding with exactly these checks.

use bytes::BytesMut;
use mycelium_transport::handshake::{
    ClientHandshake, Greeting, Opening, Refusal, ServerHandshake, Welcome, WelcomeError,
};
use mycelium_transport::{
    encode_frame, encode_message, kind, peek_frame, DecodeError, ErrorCode, Frame, FrameCodec,
    HANDSHAKE_MAX_FRAME_LEN, HEADER_LEN,
};
use tokio_util::codec::{Decoder, Encoder};
use uuid::Uuid;

/// The post-handshake limit the targets decode with: `max_frame_len` of a broker whose largest
/// topic takes the default 64 KiB payload (`max_message_size + 6`).
pub const FUZZ_MAX_FRAME_LEN: usize = 65_536 + 6;

/// Inputs longer than this are not also fed byte by byte in [`check_decode_split`], to keep the
/// fuzzer fast; the two-chunk split still covers them.
const BYTE_BY_BYTE_MAX: usize = 4096;

/// Offset of the `flags` byte in an `Error` frame: header, `request_id` (4), `code` (2).
const ERROR_FLAGS_OFFSET: usize = HEADER_LEN + 4 + 2;

/// One result of decoding at one position of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A whole, valid frame.
    Frame(Frame),
    /// A decode error: its code and its `Debug` text (`DecodeError` has no `PartialEq`).
    Error { code: ErrorCode, debug: String },
}

impl Step {
    fn error(error: &DecodeError) -> Step {
        Step::Error {
            code: error.error_code(),
            debug: format!("{error:?}"),
        }
    }
}

/// Everything a decoder made of a byte string.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    steps: Vec<Step>,
    /// True when decoding stopped at a header error (the stream cannot be resynchronised).
    stopped: bool,
    /// Bytes not consumed when decoding stopped.
    leftover: usize,
}

/// Checks every property of the decoders on `data` as one stream of frames; panics on a violation.
pub fn check_decode_frames(data: &[u8]) {
    let big = decode_with_codec(data, FUZZ_MAX_FRAME_LEN);
    let viewed = decode_with_peek(data, FUZZ_MAX_FRAME_LEN);
    assert_eq!(
        big, viewed,
        "the Decoder and peek_frame + to_frame disagree on {data:02x?}"
    );
    check_end_of_stream(data, &big, FUZZ_MAX_FRAME_LEN);

    let small = decode_with_codec(data, HANDSHAKE_MAX_FRAME_LEN);
    assert_eq!(small, decode_with_peek(data, HANDSHAKE_MAX_FRAME_LEN));
    check_smaller_limit_is_a_prefix(&small, &big);
}

/// Checks that `data[2..]` fed in two chunks, split at the point the first two bytes of `data`
/// choose, and (for short inputs) byte by byte, decodes exactly as in one piece.
pub fn check_decode_split(data: &[u8]) {
    let (split_bytes, stream) = data.split_at(data.len().min(2));
    let mut split = [0u8; 2];
    split[..split_bytes.len()].copy_from_slice(split_bytes);
    let split = usize::from(u16::from_le_bytes(split)) % (stream.len() + 1);

    let whole = decode_with_codec(stream, FUZZ_MAX_FRAME_LEN);
    let (first, second) = stream.split_at(split);
    let in_two = decode_in_chunks(&[first, second], FUZZ_MAX_FRAME_LEN);
    assert_eq!(
        whole,
        in_two,
        "split at {split} of {} bytes decodes differently: {stream:02x?}",
        stream.len()
    );
    check_prefix_peek(stream, split, FUZZ_MAX_FRAME_LEN);

    if stream.len() <= BYTE_BY_BYTE_MAX {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let by_byte = decode_in_chunks(&bytes, FUZZ_MAX_FRAME_LEN);
        assert_eq!(
            whole, by_byte,
            "byte-by-byte feeding decodes differently: {stream:02x?}"
        );
    }
}

/// Decodes `data` with a `FrameCodec` until it needs more bytes or hits a header error, checking
/// the decoder contract on every call and the round trip of every frame.
fn decode_with_codec(data: &[u8], limit: usize) -> Decoded {
    decode_in_chunks(&[data], limit)
}

/// Feeds `chunks` one after the other into one buffer, decoding as far as possible after each.
fn decode_in_chunks(chunks: &[&[u8]], limit: usize) -> Decoded {
    let whole: Vec<u8> = chunks.concat();
    let mut codec = FrameCodec::new(limit);
    let mut buf = BytesMut::new();
    let mut steps = Vec::new();
    let mut consumed = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let result = codec.decode(&mut buf);
            let used = before - buf.len();
            match result {
                Ok(Some(frame)) => {
                    assert!(used >= HEADER_LEN, "a frame consumed only {used} bytes");
                    check_round_trip(&frame, &whole[consumed..consumed + used], limit);
                    steps.push(Step::Frame(frame));
                }
                Ok(None) => {
                    assert_eq!(used, 0, "a partial frame consumed bytes");
                    break;
                }
                Err(error) if used == 0 => {
                    assert!(
                        is_header_error(&error),
                        "{error:?} consumed nothing but is not a header error"
                    );
                    steps.push(Step::error(&error));
                    // Counting the chunks not fed yet too.
                    return Decoded {
                        steps,
                        stopped: true,
                        leftover: whole.len() - consumed,
                    };
                }
                Err(error) => {
                    assert!(
                        matches!(error, DecodeError::Malformed { .. }),
                        "only a malformed body may consume its frame, not {error:?}"
                    );
                    check_whole_frame_len(&whole[consumed..consumed + used], limit);
                    steps.push(Step::error(&error));
                }
            }
            consumed += used;
        }
    }
    Decoded {
        steps,
        stopped: false,
        leftover: buf.len(),
    }
}

/// Decodes `data` with `peek_frame` and `FrameView::to_frame`, the broker's hot path.
fn decode_with_peek(data: &[u8], limit: usize) -> Decoded {
    let mut steps = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &data[offset..];
        match peek_frame(rest, limit) {
            Ok(Some((view, total))) => {
                check_whole_frame_len(&rest[..total], limit);
                assert_eq!(view.body, &rest[HEADER_LEN..total]);
                assert_eq!(view.kind, rest[5]);
                let decoded = view.to_frame();
                match (&decoded, view.message()) {
                    (Ok(Frame::Publish { topic_id, payload }), Some((id, bytes)))
                    | (Ok(Frame::Deliver { topic_id, payload }), Some((id, bytes)))
                    | (
                        Ok(Frame::PublishEnvelope {
                            topic_id,
                            message: payload,
                        }),
                        Some((id, bytes)),
                    )
                    | (
                        Ok(Frame::DeliverEnvelope {
                            topic_id,
                            message: payload,
                        }),
                        Some((id, bytes)),
                    ) => {
                        assert_eq!((*topic_id, &payload[..]), (id, bytes));
                    }
                    (Ok(frame), None) => assert!(
                        !matches!(
                            frame,
                            Frame::Publish { .. }
                                | Frame::Deliver { .. }
                                | Frame::PublishEnvelope { .. }
                                | Frame::DeliverEnvelope { .. }
                        ),
                        "FrameView::message missed the topic id of {frame:?}"
                    ),
                    // The hot path reads only the topic id; the envelope after it is checked
                    // by whoever reads the message (the broker's scan, the client).
                    (Err(_), Some(_))
                        if matches!(view.kind, kind::PUBLISH_ENVELOPE | kind::DELIVER_ENVELOPE) => {
                    }
                    (Err(_), Some(_)) => {
                        panic!("FrameView::message read a message that to_frame refused")
                    }
                    (Err(_), None) => {}
                    (Ok(frame), Some(_)) => {
                        panic!("FrameView::message read a message out of {frame:?}")
                    }
                }
                match (&decoded, view.durable_publish()) {
                    (
                        Ok(Frame::PublishDurable {
                            request_id,
                            topic_id,
                            enveloped,
                            message,
                        }),
                        Some(fields),
                    ) => assert_eq!(
                        (*request_id, *topic_id, *enveloped, &message[..]),
                        (
                            fields.request_id,
                            fields.topic_id,
                            fields.enveloped,
                            fields.message
                        )
                    ),
                    (Ok(frame @ Frame::PublishDurable { .. }), None) => {
                        panic!("FrameView::durable_publish missed {frame:?}")
                    }
                    (Ok(frame), Some(_)) => {
                        panic!("FrameView::durable_publish read fields out of {frame:?}")
                    }
                    // The view leaves the envelope to whoever reads the message: only it can
                    // make the frame malformed behind fields the view read.
                    (Err(_), Some(fields)) => assert!(
                        fields.enveloped,
                        "FrameView::durable_publish read a frame that to_frame refused"
                    ),
                    (_, None) => {}
                }
                steps.push(match decoded {
                    Ok(frame) => Step::Frame(frame),
                    Err(error) => {
                        assert!(matches!(error, DecodeError::Malformed { .. }));
                        Step::error(&error)
                    }
                });
                offset += total;
            }
            Ok(None) => {
                return Decoded {
                    steps,
                    stopped: false,
                    leftover: rest.len(),
                }
            }
            Err(error) => {
                assert!(is_header_error(&error), "peek_frame failed with {error:?}");
                steps.push(Step::error(&error));
                return Decoded {
                    steps,
                    stopped: true,
                    leftover: rest.len(),
                };
            }
        }
    }
}

/// `decode_eof` is clean exactly when decoding stopped on a frame boundary.
fn check_end_of_stream(data: &[u8], decoded: &Decoded, limit: usize) {
    if decoded.stopped {
        return;
    }
    let mut buf = BytesMut::from(&data[data.len() - decoded.leftover..]);
    match FrameCodec::new(limit).decode_eof(&mut buf) {
        Ok(None) => assert_eq!(decoded.leftover, 0, "decode_eof ignored leftover bytes"),
        Err(DecodeError::TruncatedAtEof) => {
            assert_ne!(decoded.leftover, 0, "decode_eof failed on a frame boundary")
        }
        other => panic!("decode_eof on a partial frame gave {other:?}"),
    }
}

/// Under the handshake limit the decoder yields the same steps as under the larger limit, up to
/// the first frame the smaller limit refuses as too large.
fn check_smaller_limit_is_a_prefix(small: &Decoded, big: &Decoded) {
    let same = small
        .steps
        .iter()
        .zip(&big.steps)
        .take_while(|(a, b)| a == b)
        .count();
    if same == small.steps.len() && same == big.steps.len() {
        assert_eq!(small, big);
        return;
    }
    assert_eq!(
        same + 1,
        small.steps.len(),
        "the limits disagree before the end: {small:?} vs {big:?}"
    );
    assert!(
        small.stopped
            && matches!(
                small.steps[same],
                Step::Error {
                    code: ErrorCode::FrameTooLarge,
                    ..
                }
            ),
        "the smaller limit stopped on something other than FrameTooLarge: {small:?} vs {big:?}"
    );
}

/// A peek at the first `split` bytes either waits for more or gives exactly what a peek at all of
/// `stream` gives: header errors surface as early as the bytes allow, never differently.
fn check_prefix_peek(stream: &[u8], split: usize, limit: usize) {
    let full = peek_frame(stream, limit);
    match peek_frame(&stream[..split], limit) {
        Ok(None) => {}
        Ok(Some((view, total))) => match &full {
            Ok(Some((full_view, full_total))) => {
                assert_eq!((view, total), (*full_view, *full_total));
            }
            other => panic!("a prefix holds a whole frame but the whole stream gives {other:?}"),
        },
        Err(error) => match &full {
            Err(full_error) => assert_eq!(format!("{error:?}"), format!("{full_error:?}")),
            other => panic!("a prefix fails with {error:?} but the whole stream gives {other:?}"),
        },
    }
}

/// The errors that leave the stream unsynchronised, and consume nothing.
fn is_header_error(error: &DecodeError) -> bool {
    match error {
        DecodeError::FrameTooLarge { .. }
        | DecodeError::UnsupportedVersion(_)
        | DecodeError::UnknownKind(_) => true,
        DecodeError::Malformed { kind_name, .. } => *kind_name == "unknown",
        _ => false,
    }
}

/// `wire` is one whole frame whose `len` field matches its size and respects `limit`.
fn check_whole_frame_len(wire: &[u8], limit: usize) {
    let len = u32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
    assert_eq!(wire.len(), len + 4, "the frame's size is not 4 + len");
    assert!((2..=limit).contains(&len), "len {len} outside 2..={limit}");
}

/// A decoded frame re-encodes to the bytes it was decoded from (with the reserved bits of an
/// `Error`'s flags cleared, as the encoder sends them), through every encoder, and decodes again
/// to an equal frame through both decoding paths.
fn check_round_trip(frame: &Frame, wire: &[u8], limit: usize) {
    check_whole_frame_len(wire, limit);
    let mut expected = wire.to_vec();
    if frame.kind() == kind::ERROR {
        expected[ERROR_FLAGS_OFFSET] &= 1;
    }

    let mut encoded = BytesMut::new();
    if let Err(error) = encode_frame(frame, &mut encoded) {
        panic!("decoded {frame:?} but cannot encode it: {error}");
    }
    assert_eq!(
        &encoded[..],
        &expected[..],
        "{frame:?} re-encodes to other bytes"
    );

    let mut through_codec = BytesMut::new();
    if let Err(error) = FrameCodec::new(limit).encode(frame, &mut through_codec) {
        panic!("the codec cannot encode {frame:?} within {limit}: {error}");
    }
    assert_eq!(
        through_codec, encoded,
        "the codec encodes {frame:?} differently"
    );

    if let Frame::Publish { topic_id, payload } | Frame::Deliver { topic_id, payload } = frame {
        let mut message = BytesMut::new();
        encode_message(&mut message, frame.kind(), *topic_id, payload);
        assert_eq!(
            message, encoded,
            "encode_message writes {frame:?} differently"
        );
    }

    match peek_frame(&encoded, limit) {
        Ok(Some((view, total))) if total == encoded.len() => match view.to_frame() {
            Ok(again) => assert_eq!(&again, frame, "to_frame after a round trip"),
            Err(error) => panic!("re-encoded {frame:?} does not parse: {error}"),
        },
        other => panic!("peek_frame on re-encoded {frame:?} gives {other:?}"),
    }
    match FrameCodec::new(limit).decode(&mut encoded) {
        Ok(Some(again)) => assert_eq!(&again, frame, "decode after a round trip"),
        other => panic!("re-encoded {frame:?} decodes to {other:?}"),
    }
    assert!(encoded.is_empty(), "a re-encoded frame left bytes behind");
}

/// What the broker makes of a connection's first frame (`mycelium-broker`'s
/// `server/connection.rs`, `serve`): the handshake's decision, then the broker's policy on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstFrame {
    /// `Hello`: a message connection, for the client it names.
    Messages { client_id: Uuid, name: String },
    /// `ShmHello` on a broker with `shm.enabled`: a shared-memory control session, for the
    /// client it names.
    ShmSession { client_id: Uuid, name: String },
    /// The broker answers with this fatal error and closes: `ShmRefused` for `ShmHello` with
    /// shared memory disabled, `HandshakeRequired` for any other frame, the decode error's code
    /// for a frame that does not decode.
    Refused(ErrorCode),
}

/// The broker's classification of the first frame, `decided` being what its
/// [`ServerHandshake`] said; `shm_enabled` is `shm.enabled`.
pub fn classify_first_frame(decided: Result<Greeting, Refusal>, shm_enabled: bool) -> FirstFrame {
    match decided {
        Ok(Greeting {
            opening: Opening::Messages,
            client_id,
            name,
        }) => FirstFrame::Messages { client_id, name },
        Ok(Greeting {
            opening: Opening::SharedMemory,
            client_id,
            name,
        }) if shm_enabled => FirstFrame::ShmSession { client_id, name },
        Ok(Greeting {
            opening: Opening::SharedMemory,
            ..
        }) => FirstFrame::Refused(ErrorCode::ShmRefused),
        Err(refusal) => FirstFrame::Refused(refusal.code),
    }
}

/// What a client makes of the broker's first frame (`mycelium-client/src/socket/handshake.rs`, and the
/// shared-memory client's `take_handshake_answer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WelcomeAnswer {
    /// `Welcome`: the broker's limits, which the client adopts.
    Welcome {
        max_message_size: u32,
        max_frame_len: u32,
    },
    /// An `Error` frame: the broker refused the connection (`ClientError::Refused`).
    Refused(ErrorCode),
    /// Any other frame, or one that does not decode (`ClientError::Protocol`).
    Protocol,
}

/// The client's classification of the broker's first frame, `decided` being what its
/// [`ClientHandshake`] said.
pub fn classify_welcome(decided: Result<Welcome, WelcomeError>) -> WelcomeAnswer {
    match decided {
        Ok(welcome) => WelcomeAnswer::Welcome {
            max_message_size: welcome.max_message_size,
            max_frame_len: welcome.max_frame_len,
        },
        Err(WelcomeError::Refused { code, .. }) => WelcomeAnswer::Refused(code),
        Err(_) => WelcomeAnswer::Protocol,
    }
}

/// Feeds `stream` to a handshake `chunk` bytes at a time, as a socket delivers them, until it
/// decides (`receive` gives `Ok(Some)` or `Err`); `None` if the stream ends first. Checks that
/// while it waits nothing is consumed and never more than the handshake limit is buffered.
fn drive<T, E>(
    stream: &[u8],
    chunk: usize,
    mut receive: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> Option<Result<T, E>> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        let before = buf.len();
        match receive(&mut buf) {
            Ok(None) => {
                assert_eq!(buf.len(), before, "a partial first frame consumed bytes");
                assert!(
                    buf.len() < 4 + HANDSHAKE_MAX_FRAME_LEN,
                    "{} bytes buffered and still no decision under the handshake limit",
                    buf.len()
                );
            }
            decided => return decided.transpose(),
        }
        if fed == stream.len() {
            return None;
        }
        let next = (fed + chunk).min(stream.len());
        buf.extend_from_slice(&stream[fed..next]);
        fed = next;
    }
}

/// The broker's handshake on `stream`, read `chunk` bytes at a time.
fn server_decision(stream: &[u8], chunk: usize) -> Option<Result<Greeting, Refusal>> {
    let handshake = ServerHandshake::new();
    drive(stream, chunk, |buf| handshake.receive(buf))
}

/// A client's handshake on `stream`, read `chunk` bytes at a time.
fn client_decision(stream: &[u8], chunk: usize) -> Option<Result<Welcome, WelcomeError>> {
    let handshake = ClientHandshake::new(Opening::Messages, Uuid::nil(), "fuzz");
    drive(stream, chunk, |buf| handshake.receive(buf))
}

/// How reading the first frame ended.
#[derive(Debug)]
enum FirstRead {
    /// A whole frame arrived: what it decoded to, and its size on the wire.
    Frame(Result<Frame, DecodeError>, usize),
    /// The header is refused before the frame is whole.
    HeaderError(DecodeError),
    /// The stream ended inside the first frame (the broker's timeout or `Gone`).
    Incomplete,
}

/// Reads the first frame of `stream` as `read_one_frame` does, the socket delivering `chunk`
/// bytes per read: peek, and read more only while the frame is partial. Checks that a partial
/// frame consumes nothing and never needs more than the handshake limit buffered, and that the
/// bytes behind the frame stay in the buffer for what follows.
fn read_first_frame(stream: &[u8], chunk: usize) -> FirstRead {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    loop {
        match peek_frame(&buf, HANDSHAKE_MAX_FRAME_LEN) {
            Ok(Some((view, used))) => {
                check_whole_frame_len(&buf[..used], HANDSHAKE_MAX_FRAME_LEN);
                let frame = view.to_frame();
                let _ = buf.split_to(used);
                assert_eq!(
                    &buf[..],
                    &stream[used..fed],
                    "the bytes behind the first frame were not kept"
                );
                return FirstRead::Frame(frame, used);
            }
            Ok(None) => {
                assert!(
                    buf.len() < 4 + HANDSHAKE_MAX_FRAME_LEN,
                    "{} bytes buffered and still no whole frame under the handshake limit",
                    buf.len()
                );
            }
            Err(error) => {
                assert!(is_header_error(&error), "peek_frame failed with {error:?}");
                return FirstRead::HeaderError(error);
            }
        }
        if fed == stream.len() {
            return FirstRead::Incomplete;
        }
        let next = (fed + chunk).min(stream.len());
        buf.extend_from_slice(&stream[fed..next]);
        fed = next;
    }
}

/// Checks the handshake on `data`: the first byte chooses how many bytes each socket read
/// delivers (1 to 256) and whether the broker has shared memory enabled; the rest is the stream.
///
/// The broker side and the client side both read the stream's first frame. Either way: fed in
/// chunks it gives what it gives in one piece; a header error is found from the header alone (so
/// an oversized `len` is refused before any of the body is buffered); every prefix of a whole
/// frame is partial or fails with the same header error; the frame is what `FrameCodec` under the
/// handshake limit decodes; and the classification is the broker's and the client's.
pub fn check_handshake(data: &[u8]) {
    let (selector, stream) = match data.split_first() {
        Some((&selector, stream)) => (selector, stream),
        None => (0, data),
    };
    let chunk = usize::from(selector >> 1) * 2 + 1;
    let shm_enabled = selector & 1 == 0;

    let whole = read_first_frame(stream, stream.len().max(1));
    let chunked = read_first_frame(stream, chunk);
    assert_eq!(
        format!("{whole:?}"),
        format!("{chunked:?}"),
        "reading {chunk} bytes at a time changes the first frame of {stream:02x?}"
    );

    match &whole {
        FirstRead::HeaderError(error) => {
            // Found from the header's bytes alone: the body is never waited for.
            let header = &stream[..stream.len().min(HEADER_LEN)];
            match peek_frame(header, HANDSHAKE_MAX_FRAME_LEN) {
                Err(early) => assert_eq!(format!("{early:?}"), format!("{error:?}")),
                other => panic!("{error:?} needs more than the header, which gives {other:?}"),
            }
        }
        FirstRead::Frame(_, used) => {
            for end in 0..*used {
                match peek_frame(&stream[..end], HANDSHAKE_MAX_FRAME_LEN) {
                    Ok(None) => {}
                    other => panic!("a {end}-byte prefix of a {used}-byte frame gives {other:?}"),
                }
            }
        }
        FirstRead::Incomplete => {}
    }

    // The codec under the handshake limit agrees on the first frame.
    let mut buf = BytesMut::from(stream);
    let mut codec = FrameCodec::new(HANDSHAKE_MAX_FRAME_LEN);
    let before = buf.len();
    let by_codec = codec.decode(&mut buf);
    match (&whole, &by_codec) {
        (FirstRead::Frame(frame, used), _) => {
            assert_eq!(before - buf.len(), *used, "the codec consumed other bytes");
            match (frame, by_codec) {
                (Ok(a), Ok(Some(b))) => assert_eq!(a, &b),
                (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
                (a, b) => panic!("peek + to_frame gives {a:?}, the codec {b:?}"),
            }
        }
        (FirstRead::HeaderError(a), Err(b)) => {
            assert_eq!(before, buf.len(), "a header error consumed bytes");
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        (FirstRead::Incomplete, Ok(None)) => assert_eq!(before, buf.len()),
        (a, b) => panic!("peek gives {a:?}, the codec {b:?}"),
    }

    // The handshake machines decide as the reads above found, in one piece or in chunks.
    let server = server_decision(stream, stream.len().max(1));
    let client = client_decision(stream, stream.len().max(1));
    assert_eq!(
        format!("{server:?}"),
        format!("{:?}", server_decision(stream, chunk)),
        "reading {chunk} bytes at a time changes the broker's decision on {stream:02x?}"
    );
    assert_eq!(
        format!("{client:?}"),
        format!("{:?}", client_decision(stream, chunk)),
        "reading {chunk} bytes at a time changes the client's decision on {stream:02x?}"
    );
    let first = match whole {
        FirstRead::Frame(frame, _) => frame,
        FirstRead::HeaderError(error) => Err(error),
        FirstRead::Incomplete => {
            assert!(
                server.is_none() && client.is_none(),
                "a decision on a partial frame"
            );
            return;
        }
    };
    let (Some(server), Some(client)) = (server, client) else {
        panic!("no decision on a whole first frame: {first:?}");
    };
    check_classification(first, server, client, shm_enabled);
}

/// The classifications of the machines' decisions agree with the frame (`first`, from
/// `peek_frame` + `to_frame`): only `Hello` and (enabled) `ShmHello` open a connection, a refusal
/// carries the code the broker sends, and the client adopts a `Welcome`'s limits only from a
/// `Welcome`.
fn check_classification(
    first: Result<Frame, DecodeError>,
    server: Result<Greeting, Refusal>,
    client: Result<Welcome, WelcomeError>,
    shm_enabled: bool,
) {
    let kind = first.as_ref().ok().map(Frame::kind);
    let code = first.as_ref().err().map(DecodeError::error_code);
    if let (
        Ok(Frame::Hello { client_id, name } | Frame::ShmHello { client_id, name }),
        Ok(greeting),
    ) = (&first, &server)
    {
        assert_eq!((&greeting.client_id, &greeting.name), (client_id, name));
    }
    let broker = classify_first_frame(server, shm_enabled);
    match (&broker, kind) {
        (FirstFrame::Messages { .. }, Some(kind::HELLO)) => {}
        (FirstFrame::ShmSession { .. }, Some(kind::SHM_HELLO)) => assert!(shm_enabled),
        (FirstFrame::Refused(ErrorCode::ShmRefused), Some(kind::SHM_HELLO)) => {
            assert!(!shm_enabled)
        }
        (FirstFrame::Refused(ErrorCode::HandshakeRequired), Some(kind)) => {
            assert!(kind != kind::HELLO && kind != kind::SHM_HELLO)
        }
        (FirstFrame::Refused(refused), None) => assert_eq!(Some(*refused), code),
        (other, kind) => panic!("the broker classifies kind {kind:?} as {other:?}"),
    }
    let client = classify_welcome(client);
    match (&client, &first) {
        (WelcomeAnswer::Welcome { .. }, Ok(Frame::Welcome { .. }))
        | (WelcomeAnswer::Refused(_), Ok(Frame::Error { .. })) => {}
        (WelcomeAnswer::Protocol, Ok(frame)) => assert!(
            !matches!(frame, Frame::Welcome { .. } | Frame::Error { .. }),
            "the client does not recognise {frame:?}"
        ),
        (WelcomeAnswer::Protocol, Err(_)) => {}
        (answer, first) => panic!("the client classifies {first:?} as {answer:?}"),
    }
    if let Ok(frame) = &first {
        // What the broker answers a refusal with fits the handshake limit and decodes.
        if let FirstFrame::Refused(code) = broker {
            let refusal = Refusal::new(
                code,
                format!("the first frame must be Hello, not kind {}", frame.kind()),
            );
            let mut wire = BytesMut::new();
            encode_frame(&refusal.to_frame(), &mut wire).expect("an Error frame encodes");
            match client_decision(&wire, wire.len()) {
                Some(decided) => {
                    assert_eq!(classify_welcome(decided), WelcomeAnswer::Refused(code))
                }
                None => panic!("the refusal does not decode"),
            }
        }
    }
}

/// Checks the envelope reader on arbitrary bytes (an enveloped message: flags, blocks,
/// payload): no panic; what parses writes back to the same bytes through [`Envelope`] (but for
/// an empty header block, which a writer leaves out) and reads back the same; a [`Message`]
/// made of it answers every accessor (the OFFSET block's offset included), with the view's
/// payload.
pub fn check_envelope(data: &[u8]) {
    use mycelium_transport::envelope::{Envelope, EnvelopeView, Headers, HEADERS};
    use mycelium_transport::Message;

    let Ok(view) = EnvelopeView::parse(data) else {
        return;
    };
    assert_eq!(view.len + view.payload.len(), data.len());
    let mut headers = Headers::new();
    for (key, value) in view.headers() {
        if let Err(error) = headers.insert(key, value) {
            panic!("a header that parsed is refused by Headers: {error} in {data:02x?}");
        }
    }
    assert_eq!(headers.len(), view.header_count());
    assert_eq!(headers.byte_len(), view.header_bytes);
    let envelope = Envelope {
        stamp: view.stamp,
        topic: view.topic,
        reply_to: view.reply_to,
        reply: view.reply,
        headers: Some(&headers),
        offset: view.offset,
    };
    let mut written = BytesMut::new();
    envelope.encode(&mut written);
    written.extend_from_slice(view.payload);
    let empty_header_block = view.flags & HEADERS != 0 && view.header_count() == 0;
    if !empty_header_block {
        assert_eq!(
            &written[..],
            data,
            "the envelope does not write back to its bytes"
        );
    }
    let again = EnvelopeView::parse(&written).expect("what was written parses");
    assert_eq!(
        (
            again.stamp,
            again.topic,
            again.reply_to,
            again.reply,
            again.offset,
            again.payload
        ),
        (
            view.stamp,
            view.topic,
            view.reply_to,
            view.reply,
            view.offset,
            view.payload
        )
    );
    let message = Message::from_enveloped("fallback", bytes::Bytes::copy_from_slice(data))
        .expect("bytes that parse as a view make a message");
    assert_eq!(&message.payload()[..], view.payload);
    assert_eq!(message.topic(), view.topic.unwrap_or("fallback"));
    assert_eq!(message.id(), view.stamp.map(|s| s.id));
    assert_eq!(message.reply_to(), view.reply_to);
    assert_eq!(message.reply(), view.reply);
    assert_eq!(message.offset(), view.offset);
    assert_eq!(message.headers().count(), view.header_count());
}
