//! A stand-in broker for the command line's durable subscriptions: a listener in the test
//! that speaks the broker's side of the protocol by hand, so that what `mycelium sub --group`
//! and `mycelium dlq redrive` send (acknowledgements, nacks, confirmed publishes) can be read
//! frame by frame.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use bytes::BytesMut;
use mycelium_transport::envelope::{Envelope, Headers};
use mycelium_transport::{
    encode_enveloped, encode_frame, kind, Frame, FrameCodec, MessageRules, RoutingKind,
    StartPosition, DURABLE_SUBSCRIPTION_BIT,
};
use tokio_util::codec::Decoder;

use super::common::DEADLINE;

/// The id the stand-in gives every durable subscription.
pub const SUBSCRIPTION: u32 = DURABLE_SUBSCRIPTION_BIT | 1;

/// What a `SubscribeDurable` asked for: its start, group and topic.
pub type Asked = (StartPosition, Option<String>, String);

/// A listening socket that plays the broker's side of the protocol.
pub struct StandIn {
    listener: UnixListener,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StandIn {
    pub fn bind() -> StandIn {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stand-in.sock");
        let listener = UnixListener::bind(&path).expect("binding the stand-in's socket");
        StandIn {
            listener,
            path,
            _dir: dir,
        }
    }

    /// Accepts one client and answers its `Hello` with a `Welcome`.
    pub fn accept(&self) -> Peer {
        let (stream, _) = self.listener.accept().expect("a client connects");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut peer = Peer {
            stream,
            buf: BytesMut::new(),
            codec: FrameCodec::new(1 << 20),
        };
        match peer.recv() {
            Frame::Hello { .. } => {}
            other => panic!("expected Hello, got {other:?}"),
        }
        peer.send(&Frame::Welcome {
            broker_id: uuid::Uuid::new_v4(),
            connection_id: 1,
            max_message_size: 1 << 16,
            max_frame_len: 1 << 20,
            server: "stand-in".into(),
        });
        peer
    }
}

/// The stand-in's end of one client connection.
pub struct Peer {
    stream: UnixStream,
    buf: BytesMut,
    codec: FrameCodec,
}

impl Peer {
    pub fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        encode_frame(frame, &mut out).expect("encodable");
        self.send_bytes(&out);
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("writing to the client");
    }

    /// The next frame from the client, or `None` once it closed the connection (panics
    /// after [`DEADLINE`]).
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("a valid frame") {
                return Some(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading from the client: {e}"),
            }
        }
    }

    /// The next frame that is not a `Ping`, answering the pings on the way; `None` once the
    /// client closed the connection.
    pub fn next_answering_pings(&mut self) -> Option<Frame> {
        loop {
            match self.next()? {
                Frame::Ping { token } => self.send(&Frame::Pong { token }),
                other => return Some(other),
            }
        }
    }

    /// As [`next_answering_pings`](Self::next_answering_pings), the connection still open.
    pub fn recv(&mut self) -> Frame {
        self.next_answering_pings()
            .expect("the client closed the connection")
    }

    /// Answers the client's next `SubscribeDurable` with a `TopicAck` granting `prefetch`;
    /// returns its start, group and topic.
    pub fn ack_durable(&mut self, prefetch: u32) -> Asked {
        match self.recv() {
            Frame::SubscribeDurable {
                request_id,
                start,
                group,
                topic,
                ..
            } => {
                self.send(&topic_ack(request_id, SUBSCRIPTION, prefetch));
                (start, group, topic)
            }
            other => panic!("expected SubscribeDurable, got {other:?}"),
        }
    }

    /// Delivers one message of the durable subscription at `offset`, with `headers`.
    pub fn deliver(&mut self, offset: u64, headers: &[(&str, &str)], payload: &[u8]) {
        let mut pairs = Headers::new();
        for (key, value) in headers {
            pairs.insert(*key, *value).expect("a valid header");
        }
        let envelope = Envelope {
            headers: Some(&pairs),
            offset: Some(offset),
            ..Envelope::default()
        };
        let mut out = BytesMut::new();
        encode_enveloped(
            &mut out,
            kind::DELIVER_ENVELOPE,
            SUBSCRIPTION,
            &envelope,
            payload,
        )
        .expect("a small frame");
        self.send_bytes(&out);
    }
}

/// A fanout topic's `TopicAck` for `request_id`.
pub fn topic_ack(request_id: u32, topic_id: u32, prefetch: u32) -> Frame {
    Frame::TopicAck {
        request_id,
        topic_id,
        routing: RoutingKind::Fanout,
        max_message_size: 1 << 16,
        prefetch,
        pattern: false,
        rules: MessageRules::default(),
    }
}
