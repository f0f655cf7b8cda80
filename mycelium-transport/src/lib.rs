//! The Mycelium wire protocol: length-prefixed binary frames over a Unix stream socket.
//!
//! - Every frame is `len: u32 LE | version: u8 | kind: u8 | body`; `len` counts the bytes after
//!   itself. All integers are little-endian; strings are UTF-8 behind a byte count.
//! - Decoding never panics on a peer's bytes, never treats a partial frame as an error, and checks
//!   every length from the wire before reserving memory for it.
//! - Anything the encoder writes, the decoder accepts and decodes to an equal [`Frame`].
//! - This crate knows nothing of topics' semantics or the broker; `docs/protocol.md` is the
//!   specification a client in another language can be written from.
//!
//! ```
//! use bytes::BytesMut;
//! use mycelium_transport::{Frame, FrameCodec};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = FrameCodec::default();
//! let mut buf = BytesMut::new();
//! let ping = Frame::Ping { token: 42 };
//! codec.encode(&ping, &mut buf)?;
//! assert_eq!(&buf[..], &[10, 0, 0, 0, 3, 0x20, 42, 0, 0, 0, 0, 0, 0, 0]);
//! assert_eq!(codec.decode(&mut buf)?, Some(ping));
//! assert!(buf.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`message`]: [`Message`], what every subscription hands out; [`receive`]: the receive
//!   contract every subscription keeps ([`Receive`], [`RecvError`], [`SubscriptionEnd`]);
//!   [`broker`]: the [`Broker`] trait, implemented by the in-process broker and the client.
//! - [`frame`]: the frames as Rust values, the kind bytes, error codes and the broker's
//!   [`ConfigStatus`].
//! - [`limits`]: every limit both ends must agree on ([`HANDSHAKE_MAX_FRAME_LEN`],
//!   [`MAX_NAME_LEN`], [`MAX_RINGS_PER_GRANT`], [`limits::MAX_SEGMENTS_IN_FLIGHT`], ...), once.
//! - [`handshake`]: the opening of a connection, sans-IO: [`ClientHandshake`] and
//!   [`ServerHandshake`] take bytes and hand out a [`Welcome`](handshake::Welcome), a
//!   [`Greeting`](handshake::Greeting) or a refusal; each side drives them with its own I/O.
//! - [`codec`]: [`FrameCodec`] (the `tokio_util` codec), [`peek_frame`]/[`FrameView`] for reading
//!   without allocating, [`encode_frame`], [`encode_message`] and [`encode_enveloped`] for
//!   writing.
//! - [`error`]: [`DecodeError`] and [`EncodeError`].
//! - [`outbox`]: the bounded, coalescing queue of frames toward one peer, drained by one writer.
//! - [`uds`]: socket settings shared by both ends of a Unix-socket connection.
//! - [`shm`]: the shared-memory broadcast ring ([`RingProducer`](shm::RingProducer),
//!   [`RingConsumer`](shm::RingConsumer)), memfd and payload segments, fd passing, the
//!   control-socket reader ([`ControlReader`](shm::ControlReader)) and the table of payload
//!   segments in flight ([`SegmentTable`](shm::SegmentTable)), both used by the client and the
//!   broker alike. Its `region`, `ring`, `segment`, `fd_passing`, `wake`, `loan` and `barrier`
//!   modules hold the crate's only `unsafe`, and none of it is exported: every public function
//!   is safe.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod broker;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod message;
pub mod outbox;
pub mod receive;
pub mod shm;
pub mod uds;

pub use broker::Broker;
pub use codec::{
    encode_enveloped, encode_frame, encode_message, peek_frame, FrameCodec, FrameView,
};
pub use error::{DecodeError, EncodeError};
pub use frame::{
    kind, ConfigStatus, ErrorCode, Frame, GroupStats, LogStats, MessageRules, NackAction,
    ReloadOutcome, RoutingKind, ShmRing, ShmRole, StartPosition, TopicStats,
    DURABLE_SUBSCRIPTION_BIT, HANDSHAKE_MAX_FRAME_LEN, HEADER_LEN, MAX_NAME_LEN,
    MAX_RINGS_PER_GRANT, MESSAGE_OVERHEAD, NO_REQUEST, NO_SLOT, NO_TOPIC, PROTOCOL_VERSION,
};
pub use handshake::{ClientHandshake, ServerHandshake};
pub use message::{Message, TopicName};
pub use receive::{
    Receive, RecvError, RecvTimeoutError, StreamState, SubscriptionEnd, TryRecvError,
};
