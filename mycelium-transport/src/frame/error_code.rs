//! [`ErrorCode`]: why the broker refused something, two bytes on the wire.

/// Why the broker refused something, carried in an `Error` frame (two bytes).
///
/// Unknown codes from a newer broker decode as [`ErrorCode::Other`] so old clients keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `1`: a frame could not be decoded (bad length, truncated body, invalid UTF-8 …).
    Malformed,
    /// `2`: the frame's version byte is not one the broker speaks.
    UnsupportedVersion,
    /// `3`: the frame's length exceeds the limit the broker announced.
    FrameTooLarge,
    /// `4`: the frame's kind byte is not known.
    UnknownFrameKind,
    /// `5`: a frame came before `Hello`, or `Hello` came twice, or a broker-only frame was sent.
    HandshakeRequired,
    /// `6`: the broker is at `max_connections`.
    TooManyConnections,
    /// `7`: the handshake did not complete within the connection timeout.
    HandshakeTimeout,
    /// `8`: the connection sent nothing, and took nothing the broker sent it, through
    /// `heartbeat_misses` pings in a row: the broker drops it as dead.
    HeartbeatTimeout,
    /// `16`: the topic (named, or by id) does not exist and is not auto-created.
    UnknownTopic,
    /// `17`: a payload is larger than the topic's `max_message_size`; the message was not routed.
    MessageTooLarge,
    /// `18`: unsubscribe or credit for a topic this connection is not subscribed to.
    NotSubscribed,
    /// `19`: subscribe to a topic this connection is already subscribed to.
    AlreadySubscribed,
    /// `20`: a topic name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    InvalidTopicName,
    /// `21`: a shared-memory request was refused (wrong kind of connection, a limit reached,
    /// segments could not be created); the message says which.
    ShmRefused,
    /// `22`: the topic was removed from the broker's config by a reload: the subscription is
    /// ended, and publishes to its id are refused; the name may come back later with a new id.
    TopicRemoved,
    /// `23`: the topic's access list does not admit this peer (its uid and groups, as the
    /// kernel reports them for the socket) for this operation; the message names the topic
    /// and the list.
    PermissionDenied,
    /// `24`: a configured limit is reached (subscriptions per connection or in all); the
    /// message names the limit and its setting. Nothing was done.
    LimitExceeded,
    /// `25`: a message carries more headers, or more bytes of them, than its topic allows
    /// (`max_headers`, `max_header_bytes`); the message was not routed.
    HeadersTooLarge,
    /// `26`: the request asks for something this broker does not do in that case (for
    /// instance no echo on a queue topic, where each message goes to one consumer, or a
    /// durable subscription, durable publish or groups request on a topic that is not
    /// durable); the message says what. Nothing was done.
    Unsupported,
    /// `27`: a durable topic's log could not store a message (disk full, an I/O error): the
    /// message was refused (not routed); nothing the log already held is lost.
    StorageFailed,
    /// `32`: the broker is shutting down; no new work is accepted.
    ShuttingDown,
    /// `33`: this subscriber fell too far behind and its topic's policy is to disconnect it.
    SlowConsumer,
    /// `255`: a broker-side failure that is not the client's fault.
    Internal,
    /// Any other value, kept as received.
    Other(u16),
}

impl ErrorCode {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::FrameTooLarge => 3,
            ErrorCode::UnknownFrameKind => 4,
            ErrorCode::HandshakeRequired => 5,
            ErrorCode::TooManyConnections => 6,
            ErrorCode::HandshakeTimeout => 7,
            ErrorCode::HeartbeatTimeout => 8,
            ErrorCode::UnknownTopic => 16,
            ErrorCode::MessageTooLarge => 17,
            ErrorCode::NotSubscribed => 18,
            ErrorCode::AlreadySubscribed => 19,
            ErrorCode::InvalidTopicName => 20,
            ErrorCode::ShmRefused => 21,
            ErrorCode::TopicRemoved => 22,
            ErrorCode::PermissionDenied => 23,
            ErrorCode::LimitExceeded => 24,
            ErrorCode::HeadersTooLarge => 25,
            ErrorCode::Unsupported => 26,
            ErrorCode::StorageFailed => 27,
            ErrorCode::ShuttingDown => 32,
            ErrorCode::SlowConsumer => 33,
            ErrorCode::Internal => 255,
            ErrorCode::Other(v) => v,
        }
    }

    /// The code for a wire value; never fails.
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::FrameTooLarge,
            4 => ErrorCode::UnknownFrameKind,
            5 => ErrorCode::HandshakeRequired,
            6 => ErrorCode::TooManyConnections,
            7 => ErrorCode::HandshakeTimeout,
            8 => ErrorCode::HeartbeatTimeout,
            16 => ErrorCode::UnknownTopic,
            17 => ErrorCode::MessageTooLarge,
            18 => ErrorCode::NotSubscribed,
            19 => ErrorCode::AlreadySubscribed,
            20 => ErrorCode::InvalidTopicName,
            21 => ErrorCode::ShmRefused,
            22 => ErrorCode::TopicRemoved,
            23 => ErrorCode::PermissionDenied,
            24 => ErrorCode::LimitExceeded,
            25 => ErrorCode::HeadersTooLarge,
            26 => ErrorCode::Unsupported,
            27 => ErrorCode::StorageFailed,
            32 => ErrorCode::ShuttingDown,
            33 => ErrorCode::SlowConsumer,
            255 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }
}
