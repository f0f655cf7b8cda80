//! The codec: frames to bytes and back, as a `tokio_util` codec and as free functions.
//!
//! - [`FrameCodec`] decodes a stream into owned [`Frame`](crate::frame::Frame)s and encodes them;
//!   a partial frame is `Ok(None)`, never an error.
//! - [`peek_frame`] and [`FrameView`] give the broker's hot path a borrowed view of the next
//!   frame (and [`FrameView::durable_publish`] the fields of a `PublishDurable`);
//!   [`encode_message`] writes a `Publish`/`Deliver` without allocating, and
//!   [`encode_enveloped`] a `PublishEnvelope`/`DeliverEnvelope`;
//!   [`reserve_for_read`] sizes a read buffer for the next frames.
//! - Both decoding paths share one header check and one body parser, so they accept exactly the
//!   same bytes.

mod encode;
mod frame_codec;
mod parse;
mod peek;
mod reader;
mod reserve;

pub use encode::{encode_enveloped, encode_frame, encode_message};
pub use frame_codec::FrameCodec;
pub use peek::{peek_frame, DurablePublishView, FrameView};
pub use reserve::reserve_for_read;
