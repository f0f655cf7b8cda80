//! The opening of a connection, sans-IO: the one handshake both ends drive with their own I/O.
//!
//! - The client sends one first frame, `Hello` (a message connection) or `ShmHello` (a
//!   shared-memory control session), built by [`ClientHandshake::encode_hello`]; the broker
//!   answers `Welcome`, or a fatal `Error` and closes (`docs/protocol.md` §7.1, §7.8).
//! - Both machines take bytes in (the caller's read buffer) and hand decisions out. They consume
//!   exactly the first frame and leave whatever follows it in the buffer, for the session.
//! - Until the handshake is over every frame is at most [`HANDSHAKE_MAX_FRAME_LEN`] long, in both
//!   directions: a larger `len` is refused from the 4 length bytes, before its body is buffered.
//! - A partial frame is `Ok(None)`: the caller reads more, and decides how long it waits. Timeouts,
//!   EOF and the broker's own admission policy (connection limit, shared memory disabled) are the
//!   caller's; [`Refusal`] builds the fatal `Error` the broker sends for any of them.
//!
//! ```
//! use bytes::BytesMut;
//! use mycelium_transport::handshake::{ClientHandshake, Opening, ServerHandshake};
//! use mycelium_transport::{encode_frame, Frame};
//! use uuid::Uuid;
//!
//! let client = ClientHandshake::new(Opening::Messages, Uuid::nil(), "demo");
//! let mut wire = BytesMut::new();
//! client.encode_hello(&mut wire)?;
//!
//! let greeting = ServerHandshake::new().receive(&mut wire)?.expect("a whole Hello");
//! assert_eq!(greeting.opening, Opening::Messages);
//! assert_eq!(greeting.name, "demo");
//!
//! let welcome = Frame::Welcome {
//!     broker_id: Uuid::nil(),
//!     connection_id: 1,
//!     max_message_size: 1024,
//!     max_frame_len: 1034,
//!     server: "mycelium".into(),
//! };
//! encode_frame(&welcome, &mut wire)?;
//! let welcome = client.receive(&mut wire)?.expect("a whole Welcome");
//! assert_eq!(welcome.max_frame_len, 1034);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::{Buf, BytesMut};
use uuid::Uuid;

use crate::codec::{encode_frame, peek_frame};
use crate::error::{DecodeError, EncodeError};
use crate::frame::{ErrorCode, Frame, HANDSHAKE_MAX_FRAME_LEN, NO_REQUEST, NO_TOPIC};

/// What a connection is for, as its first frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `Hello`: a message connection (publish, subscribe, requests).
    Messages,
    /// `ShmHello`: a shared-memory control session (rings and segments travel as fds).
    SharedMemory,
}

/// The broker's `Welcome`: what a client learns when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Random per broker run: a client that sees it change knows the broker restarted.
    pub broker_id: Uuid,
    /// Unique within this broker run; names the connection in the broker's logs.
    pub connection_id: u64,
    /// The largest payload any topic accepts.
    pub max_message_size: u32,
    /// The largest `len` field the broker accepts from now on (a shared-memory session stays
    /// at [`HANDSHAKE_MAX_FRAME_LEN`]).
    pub max_frame_len: u32,
    /// The broker's name and version, e.g. `mycelium 0.1.0`.
    pub server: String,
}

/// Why the broker's answer does not open the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WelcomeError {
    /// The broker refused the connection with a fatal `Error`, and said why.
    #[error("broker refused: {message} ({code:?})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The broker's first frame decoded, but is neither `Welcome` nor `Error`.
    #[error("expected Welcome, got {0:?}")]
    Unexpected(Box<Frame>),
    /// The broker's first frame is not a frame (bad version, kind, length or body).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The client's side of the handshake: the first frame to send, then the broker's answer.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    opening: Opening,
    client_id: Uuid,
    name: String,
}

impl ClientHandshake {
    /// A handshake opening `opening` for the client `client_id`, labelled `name` in the
    /// broker's logs (at most [`MAX_NAME_LEN`](crate::frame::MAX_NAME_LEN) bytes).
    pub fn new(opening: Opening, client_id: Uuid, name: impl Into<String>) -> ClientHandshake {
        ClientHandshake {
            opening,
            client_id,
            name: name.into(),
        }
    }

    /// The first frame: `Hello` or `ShmHello`.
    pub fn hello(&self) -> Frame {
        let (client_id, name) = (self.client_id, self.name.clone());
        match self.opening {
            Opening::Messages => Frame::Hello { client_id, name },
            Opening::SharedMemory => Frame::ShmHello { client_id, name },
        }
    }

    /// Appends the first frame's bytes to `out`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::NameTooLong`] for a name longer than its one-byte prefix allows.
    pub fn encode_hello(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        encode_frame(&self.hello(), out)
    }

    /// Reads the broker's answer from the front of `buf`: `Ok(None)` while it is partial
    /// (nothing consumed), else the first frame is consumed and decided. Bytes behind it stay
    /// in `buf`: they are the session's.
    ///
    /// # Errors
    ///
    /// [`WelcomeError::Refused`] for a fatal `Error`, [`WelcomeError::Unexpected`] for any other
    /// frame, [`WelcomeError::Decode`] for bytes that are not a frame under the handshake limit.
    pub fn receive(&self, buf: &mut BytesMut) -> Result<Option<Welcome>, WelcomeError> {
        let Some(frame) = first_frame(buf)? else {
            return Ok(None);
        };
        match frame {
            Frame::Welcome {
                broker_id,
                connection_id,
                max_message_size,
                max_frame_len,
                server,
            } => Ok(Some(Welcome {
                broker_id,
                connection_id,
                max_message_size,
                max_frame_len,
                server,
            })),
            Frame::Error { code, message, .. } => Err(WelcomeError::Refused { code, message }),
            other => Err(WelcomeError::Unexpected(Box::new(other))),
        }
    }
}

/// A client's first frame, accepted as a `Hello` or `ShmHello`. Whether the connection is
/// opened is the broker's policy: it answers `Welcome`, or a [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// What the client opens.
    pub opening: Opening,
    /// Chosen by the client.
    pub client_id: Uuid,
    /// The client's label for logs; may be empty.
    pub name: String,
}

/// A fatal refusal of a connection in its handshake: the `Error` frame to send before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct Refusal {
    /// The code the `Error` frame carries.
    pub code: ErrorCode,
    /// The explanation it carries.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`, explained by `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The refusal of a first frame that does not decode: the code the decode error maps to.
    pub(crate) fn from_decode(error: &DecodeError) -> Refusal {
        Refusal::new(error.error_code(), error.to_string())
    }

    /// The fatal `Error` frame to send ([`NO_REQUEST`], [`NO_TOPIC`]).
    pub fn to_frame(&self) -> Frame {
        Frame::Error {
            request_id: NO_REQUEST,
            code: self.code,
            fatal: true,
            topic_id: NO_TOPIC,
            message: self.message.clone(),
            refused: 0,
        }
    }
}

/// The broker's side of the handshake: reads a connection's first frame and says what it opens.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerHandshake {
    _priv: (),
}

impl ServerHandshake {
    /// A handshake waiting for its first frame.
    pub fn new() -> ServerHandshake {
        ServerHandshake::default()
    }

    /// Reads the first frame from the front of `buf`: `Ok(None)` while it is partial (nothing
    /// consumed), else it is consumed and decided. Bytes behind it stay in `buf`.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to send: the decode error's code for bytes that are not a frame under the
    /// handshake limit (an oversized `len` is refused from its 4 bytes), `HandshakeRequired`
    /// for a first frame other than `Hello` or `ShmHello`.
    pub fn receive(&self, buf: &mut BytesMut) -> Result<Option<Greeting>, Refusal> {
        let frame = first_frame(buf).map_err(|e| Refusal::from_decode(&e))?;
        match frame {
            None => Ok(None),
            Some(Frame::Hello { client_id, name }) => Ok(Some(Greeting {
                opening: Opening::Messages,
                client_id,
                name,
            })),
            Some(Frame::ShmHello { client_id, name }) => Ok(Some(Greeting {
                opening: Opening::SharedMemory,
                client_id,
                name,
            })),
            Some(_) => Err(Refusal::new(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            )),
        }
    }
}

/// The first frame of `buf` under the handshake limit, consumed; `None` while it is partial.
fn first_frame(buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
    match peek_frame(buf, HANDSHAKE_MAX_FRAME_LEN)? {
        None => Ok(None),
        Some((view, used)) => {
            let frame = view.to_frame();
            buf.advance(used);
            frame.map(Some)
        }
    }
}

#[cfg(test)]
mod outcomes {
    use super::*;
    use crate::frame::{kind, HEADER_LEN, PROTOCOL_VERSION};
    use bytes::BufMut;

    fn welcome_frame() -> Frame {
        Frame::Welcome {
            broker_id: Uuid::from_u128(7),
            connection_id: 3,
            max_message_size: 1 << 20,
            max_frame_len: (1 << 20) + 8,
            server: "mycelium test".into(),
        }
    }

    fn wire(frames: &[Frame]) -> BytesMut {
        let mut buf = BytesMut::new();
        for frame in frames {
            encode_frame(frame, &mut buf).expect("encodes");
        }
        buf
    }

    fn client() -> ClientHandshake {
        ClientHandshake::new(Opening::Messages, Uuid::from_u128(1), "c")
    }

    #[test]
    fn a_welcome_is_accepted_and_what_follows_it_is_left_for_the_session() {
        let ping = Frame::Ping { token: 9 };
        let mut buf = wire(&[welcome_frame(), ping.clone()]);
        let welcome = client().receive(&mut buf).expect("accepted");
        assert_eq!(
            welcome,
            Some(Welcome {
                broker_id: Uuid::from_u128(7),
                connection_id: 3,
                max_message_size: 1 << 20,
                max_frame_len: (1 << 20) + 8,
                server: "mycelium test".into(),
            })
        );
        assert_eq!(buf, wire(&[ping]));
    }

    #[test]
    fn a_hello_and_a_shm_hello_are_greetings_of_their_kind() {
        for opening in [Opening::Messages, Opening::SharedMemory] {
            let hs = ClientHandshake::new(opening, Uuid::from_u128(5), "name");
            let mut buf = BytesMut::new();
            hs.encode_hello(&mut buf).expect("encodes");
            let greeting = ServerHandshake::new().receive(&mut buf).expect("accepted");
            assert_eq!(
                greeting,
                Some(Greeting {
                    opening,
                    client_id: Uuid::from_u128(5),
                    name: "name".into(),
                })
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_frame_of_another_version_is_refused_with_unsupported_version() {
        let mut hello = BytesMut::new();
        client().encode_hello(&mut hello).expect("encodes");
        hello[4] = PROTOCOL_VERSION + 1;
        let refusal = ServerHandshake::new()
            .receive(&mut hello.clone())
            .expect_err("refused");
        assert_eq!(refusal.code, ErrorCode::UnsupportedVersion);
        match client().receive(&mut hello) {
            Err(WelcomeError::Decode(DecodeError::UnsupportedVersion(v))) => {
                assert_eq!(v, PROTOCOL_VERSION + 1)
            }
            other => panic!("expected a version mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_refusal_reaches_the_client_with_its_code_and_message() {
        let refusal = Refusal::new(ErrorCode::TooManyConnections, "full");
        let mut buf = wire(&[refusal.to_frame()]);
        match client().receive(&mut buf) {
            Err(WelcomeError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::TooManyConnections);
                assert_eq!(message, "full");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn a_first_frame_other_than_hello_is_refused_with_handshake_required() {
        let mut buf = wire(&[Frame::Ping { token: 1 }]);
        let refusal = ServerHandshake::new()
            .receive(&mut buf)
            .expect_err("refused");
        assert_eq!(refusal.code, ErrorCode::HandshakeRequired);
        let mut buf = wire(&[Frame::Ping { token: 1 }]);
        assert!(matches!(
            client().receive(&mut buf),
            Err(WelcomeError::Unexpected(frame)) if *frame == Frame::Ping { token: 1 }
        ));
    }

    #[test]
    fn a_malformed_first_frame_is_refused_with_malformed() {
        // A Hello whose name count runs past the body.
        let mut buf = BytesMut::new();
        buf.put_u32_le(2 + 16 + 1);
        buf.put_u8(PROTOCOL_VERSION);
        buf.put_u8(kind::HELLO);
        buf.put_slice(&[0; 16]);
        buf.put_u8(200);
        let refusal = ServerHandshake::new()
            .receive(&mut buf.clone())
            .expect_err("refused");
        assert_eq!(refusal.code, ErrorCode::Malformed);
        buf[5] = kind::WELCOME;
        assert!(matches!(
            client().receive(&mut buf),
            Err(WelcomeError::Decode(DecodeError::Malformed { .. }))
        ));
    }

    #[test]
    fn an_oversized_first_frame_is_refused_from_its_length_bytes() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(HANDSHAKE_MAX_FRAME_LEN as u32 + 1);
        let refusal = ServerHandshake::new()
            .receive(&mut buf.clone())
            .expect_err("refused");
        assert_eq!(refusal.code, ErrorCode::FrameTooLarge);
        assert!(matches!(
            client().receive(&mut buf),
            Err(WelcomeError::Decode(DecodeError::FrameTooLarge { .. }))
        ));
    }

    #[test]
    fn a_partial_frame_consumes_nothing_so_the_caller_can_time_out() {
        let whole = wire(&[welcome_frame()]);
        for end in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..end]);
            assert!(client().receive(&mut part).expect("partial").is_none());
            assert_eq!(part.len(), end);
        }
        let mut hello = BytesMut::new();
        client().encode_hello(&mut hello).expect("encodes");
        let mut part = BytesMut::from(&hello[..HEADER_LEN]);
        assert!(ServerHandshake::new()
            .receive(&mut part)
            .expect("partial")
            .is_none());
        // What the broker sends when its wait ends decodes as a refusal on the client.
        let timeout = Refusal::new(ErrorCode::HandshakeTimeout, "no Hello in time");
        let mut buf = wire(&[timeout.to_frame()]);
        assert!(matches!(
            client().receive(&mut buf),
            Err(WelcomeError::Refused {
                code: ErrorCode::HandshakeTimeout,
                ..
            })
        ));
    }
}
