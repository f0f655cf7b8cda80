//! Every wire value of the frame's enums and kinds, checked against the protocol's numbers.

use super::*;

#[test]
fn every_error_code_survives_its_wire_value() {
    for v in 0..=u16::MAX {
        assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
    }
    assert_eq!(ErrorCode::from_u16(17), ErrorCode::MessageTooLarge);
    assert_eq!(ErrorCode::from_u16(22), ErrorCode::TopicRemoved);
    assert_eq!(ErrorCode::from_u16(1000), ErrorCode::Other(1000));
}

#[test]
fn routing_has_exactly_two_wire_values() {
    for v in 0..=u8::MAX {
        let expected = match v {
            0 => Some(RoutingKind::Fanout),
            1 => Some(RoutingKind::Queue),
            _ => None,
        };
        assert_eq!(RoutingKind::from_u8(v), expected);
        if let Some(r) = expected {
            assert_eq!(r.to_u8(), v);
        }
    }
}

#[test]
fn the_named_error_codes_have_their_documented_wire_values() {
    let codes = [
        (ErrorCode::Malformed, 1),
        (ErrorCode::UnsupportedVersion, 2),
        (ErrorCode::FrameTooLarge, 3),
        (ErrorCode::UnknownFrameKind, 4),
        (ErrorCode::HandshakeRequired, 5),
        (ErrorCode::TooManyConnections, 6),
        (ErrorCode::HandshakeTimeout, 7),
        (ErrorCode::HeartbeatTimeout, 8),
        (ErrorCode::UnknownTopic, 16),
        (ErrorCode::MessageTooLarge, 17),
        (ErrorCode::NotSubscribed, 18),
        (ErrorCode::AlreadySubscribed, 19),
        (ErrorCode::InvalidTopicName, 20),
        (ErrorCode::ShmRefused, 21),
        (ErrorCode::TopicRemoved, 22),
        (ErrorCode::PermissionDenied, 23),
        (ErrorCode::LimitExceeded, 24),
        (ErrorCode::HeadersTooLarge, 25),
        (ErrorCode::Unsupported, 26),
        (ErrorCode::StorageFailed, 27),
        (ErrorCode::ShuttingDown, 32),
        (ErrorCode::SlowConsumer, 33),
        (ErrorCode::Internal, 255),
    ];
    for (code, v) in codes {
        assert_eq!(code.to_u16(), v, "{code:?}");
        assert_eq!(ErrorCode::from_u16(v), code);
    }
    let named = (0..=u16::MAX)
        .filter(|&v| !matches!(ErrorCode::from_u16(v), ErrorCode::Other(_)))
        .count();
    assert_eq!(named, codes.len(), "every named code is listed above");
}

#[test]
fn reload_outcome_has_exactly_three_wire_values() {
    for v in 0..=u8::MAX {
        let expected = match v {
            0 => Some(ReloadOutcome::Applied),
            1 => Some(ReloadOutcome::Unchanged),
            2 => Some(ReloadOutcome::Failed),
            _ => None,
        };
        assert_eq!(ReloadOutcome::from_u8(v), expected);
        if let Some(o) = expected {
            assert_eq!(o.to_u8(), v);
        }
    }
}

#[test]
fn exactly_the_kind_constants_have_names() {
    let named: Vec<u8> = (0..=u8::MAX).filter(|&k| kind::name(k).is_some()).collect();
    assert_eq!(
        named,
        [
            kind::HELLO,
            kind::WELCOME,
            kind::SUBSCRIBE,
            kind::UNSUBSCRIBE,
            kind::ADVERTISE,
            kind::TOPIC_ACK,
            kind::ACK,
            kind::SHM_HELLO,
            kind::SUBSCRIBE_DURABLE,
            kind::PUBLISH,
            kind::DELIVER,
            kind::CREDIT,
            kind::LAGGED,
            kind::PUBLISH_ENVELOPE,
            kind::DELIVER_ENVELOPE,
            kind::ACK_MESSAGES,
            kind::NACK,
            kind::PUBLISH_DURABLE,
            kind::PUBLISHED,
            kind::PING,
            kind::PONG,
            kind::ERROR,
            kind::STATS_REQUEST,
            kind::STATS,
            kind::RELOAD_REQUEST,
            kind::RELOAD_RESULT,
            kind::GROUPS_REQUEST,
            kind::GROUPS,
            kind::SHM_ATTACH,
            kind::SHM_GRANT,
            kind::SHM_RING_ADDED,
            kind::SHM_RING_REMOVED,
            kind::SHM_DETACH,
            kind::SHM_DETACHED,
            kind::SHM_SEGMENT,
            kind::SHM_SEGMENT_ADDED,
            kind::SHM_TOPIC_RING_ADDED,
        ]
    );
}
