//! The one-byte frame kinds. Values are part of the protocol and never reused.

/// [`Frame::Hello`](super::Frame::Hello), client → broker.
pub const HELLO: u8 = 0x01;
/// [`Frame::Welcome`](super::Frame::Welcome), broker → client.
pub const WELCOME: u8 = 0x02;
/// [`Frame::Subscribe`](super::Frame::Subscribe), client → broker.
pub const SUBSCRIBE: u8 = 0x03;
/// [`Frame::Unsubscribe`](super::Frame::Unsubscribe), client → broker.
pub const UNSUBSCRIBE: u8 = 0x04;
/// [`Frame::Advertise`](super::Frame::Advertise), client → broker.
pub const ADVERTISE: u8 = 0x05;
/// [`Frame::TopicAck`](super::Frame::TopicAck), broker → client.
pub const TOPIC_ACK: u8 = 0x06;
/// [`Frame::Ack`](super::Frame::Ack), broker → client.
pub const ACK: u8 = 0x07;
/// [`Frame::ShmHello`](super::Frame::ShmHello), client → broker: opens a shared-memory
/// control session instead of a message connection.
pub const SHM_HELLO: u8 = 0x08;
/// [`Frame::SubscribeDurable`](super::Frame::SubscribeDurable), client → broker.
pub const SUBSCRIBE_DURABLE: u8 = 0x09;
/// [`Frame::Publish`](super::Frame::Publish), client → broker.
pub const PUBLISH: u8 = 0x10;
/// [`Frame::Deliver`](super::Frame::Deliver), broker → client.
pub const DELIVER: u8 = 0x11;
/// [`Frame::Credit`](super::Frame::Credit), client → broker.
pub const CREDIT: u8 = 0x12;
/// [`Frame::Lagged`](super::Frame::Lagged), broker → client.
pub const LAGGED: u8 = 0x13;
/// [`Frame::PublishEnvelope`](super::Frame::PublishEnvelope), client → broker.
pub const PUBLISH_ENVELOPE: u8 = 0x14;
/// [`Frame::DeliverEnvelope`](super::Frame::DeliverEnvelope), broker → client.
pub const DELIVER_ENVELOPE: u8 = 0x15;
/// [`Frame::AckMessages`](super::Frame::AckMessages), client → broker.
pub const ACK_MESSAGES: u8 = 0x16;
/// [`Frame::Nack`](super::Frame::Nack), client → broker.
pub const NACK: u8 = 0x17;
/// [`Frame::PublishDurable`](super::Frame::PublishDurable), client → broker.
pub const PUBLISH_DURABLE: u8 = 0x18;
/// [`Frame::Published`](super::Frame::Published), broker → client.
pub const PUBLISHED: u8 = 0x19;
/// [`Frame::Ping`](super::Frame::Ping), either way.
pub const PING: u8 = 0x20;
/// [`Frame::Pong`](super::Frame::Pong), either way.
pub const PONG: u8 = 0x21;
/// [`Frame::Error`](super::Frame::Error), broker → client.
pub const ERROR: u8 = 0x30;
/// [`Frame::StatsRequest`](super::Frame::StatsRequest), client → broker.
pub const STATS_REQUEST: u8 = 0x40;
/// [`Frame::Stats`](super::Frame::Stats), broker → client.
pub const STATS: u8 = 0x41;
/// [`Frame::ReloadRequest`](super::Frame::ReloadRequest), client → broker (message
/// connections only).
pub const RELOAD_REQUEST: u8 = 0x42;
/// [`Frame::ReloadResult`](super::Frame::ReloadResult), broker → client.
pub const RELOAD_RESULT: u8 = 0x43;
/// [`Frame::GroupsRequest`](super::Frame::GroupsRequest), client → broker.
pub const GROUPS_REQUEST: u8 = 0x44;
/// [`Frame::Groups`](super::Frame::Groups), broker → client.
pub const GROUPS: u8 = 0x45;
/// [`Frame::ShmAttach`](super::Frame::ShmAttach), client → broker (shm sessions only).
pub const SHM_ATTACH: u8 = 0x50;
/// [`Frame::ShmGrant`](super::Frame::ShmGrant), broker → client, with one fd per ring.
pub const SHM_GRANT: u8 = 0x51;
/// [`Frame::ShmRingAdded`](super::Frame::ShmRingAdded), broker → client, with one fd.
pub const SHM_RING_ADDED: u8 = 0x52;
/// [`Frame::ShmRingRemoved`](super::Frame::ShmRingRemoved), broker → client.
pub const SHM_RING_REMOVED: u8 = 0x53;
/// [`Frame::ShmDetach`](super::Frame::ShmDetach), client → broker.
pub const SHM_DETACH: u8 = 0x54;
/// [`Frame::ShmDetached`](super::Frame::ShmDetached), broker → client.
pub const SHM_DETACHED: u8 = 0x55;
/// [`Frame::ShmSegment`](super::Frame::ShmSegment), client → broker, with one fd.
pub const SHM_SEGMENT: u8 = 0x56;
/// [`Frame::ShmSegmentAdded`](super::Frame::ShmSegmentAdded), broker → client, with one fd
/// unless `dropped`.
pub const SHM_SEGMENT_ADDED: u8 = 0x57;
/// [`Frame::ShmTopicRingAdded`](super::Frame::ShmTopicRingAdded), broker → client, with one
/// fd.
pub const SHM_TOPIC_RING_ADDED: u8 = 0x58;

/// The name of a known kind (as in logs and `Malformed` errors), or `None` for a byte this
/// version of the protocol does not define. This is the one list of valid kinds.
pub fn name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        HELLO => "Hello",
        WELCOME => "Welcome",
        SUBSCRIBE => "Subscribe",
        UNSUBSCRIBE => "Unsubscribe",
        ADVERTISE => "Advertise",
        TOPIC_ACK => "TopicAck",
        ACK => "Ack",
        SHM_HELLO => "ShmHello",
        SUBSCRIBE_DURABLE => "SubscribeDurable",
        PUBLISH => "Publish",
        DELIVER => "Deliver",
        CREDIT => "Credit",
        LAGGED => "Lagged",
        PUBLISH_ENVELOPE => "PublishEnvelope",
        DELIVER_ENVELOPE => "DeliverEnvelope",
        ACK_MESSAGES => "AckMessages",
        NACK => "Nack",
        PUBLISH_DURABLE => "PublishDurable",
        PUBLISHED => "Published",
        PING => "Ping",
        PONG => "Pong",
        ERROR => "Error",
        STATS_REQUEST => "StatsRequest",
        STATS => "Stats",
        RELOAD_REQUEST => "ReloadRequest",
        RELOAD_RESULT => "ReloadResult",
        GROUPS_REQUEST => "GroupsRequest",
        GROUPS => "Groups",
        SHM_ATTACH => "ShmAttach",
        SHM_GRANT => "ShmGrant",
        SHM_RING_ADDED => "ShmRingAdded",
        SHM_RING_REMOVED => "ShmRingRemoved",
        SHM_DETACH => "ShmDetach",
        SHM_DETACHED => "ShmDetached",
        SHM_SEGMENT => "ShmSegment",
        SHM_SEGMENT_ADDED => "ShmSegmentAdded",
        SHM_TOPIC_RING_ADDED => "ShmTopicRingAdded",
        _ => return None,
    })
}
