//! Garbage as the first bytes of a connection: random bytes, an HTTP request, fifty garbage
//! connections at once. Each gets the fatal error the header rules give, and the broker serves on.

use super::*;

/// Deterministic pseudo-random bytes (xorshift64*), so a failure replays.
fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The error a peer's first bytes must get when their header is already wrong, worked out from
/// the protocol's header rules (§9), not from the codec.
fn header_error(bytes: &[u8], limit: usize) -> ErrorCode {
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if len > limit {
        ErrorCode::FrameTooLarge
    } else if len < 2 {
        ErrorCode::Malformed
    } else if bytes[4] != PROTOCOL_VERSION {
        ErrorCode::UnsupportedVersion
    } else if kind::name(bytes[5]).is_none() {
        ErrorCode::UnknownFrameKind
    } else {
        panic!("test garbage {bytes:02x?} has a valid header; pick other bytes")
    }
}

/// Sends `bytes` as the first thing on a new connection and expects the fatal error the header
/// rules give for them.
fn assert_refused_before_handshake(broker: &TestBroker, name: &str, bytes: &[u8]) {
    let mut raw = connect(broker, name);
    raw.send(bytes);
    raw.expect_fatal(header_error(bytes, HANDSHAKE_MAX_FRAME_LEN));
}

#[test]
fn random_bytes_as_the_first_thing_get_a_fatal_error() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    for seed in [1, 2, 3, 0x5eed] {
        let bytes = pseudo_random_bytes(seed, 64);
        assert_refused_before_handshake(&broker, &format!("random-{seed}"), &bytes);
        healthy.check();
    }
    assert_refused_before_handshake(&broker, "zeros", &[0; 64]);
    assert_refused_before_handshake(&broker, "ones", &[0xff; 64]);
    healthy.check();
}

#[test]
fn an_http_request_gets_frame_too_large() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // "GET " read as a little-endian length is 0x20544547, far above the handshake limit.
    assert_eq!(
        header_error(request, HANDSHAKE_MAX_FRAME_LEN),
        ErrorCode::FrameTooLarge
    );
    assert_refused_before_handshake(&broker, "http", request);
    healthy.check();
}

#[test]
fn fifty_garbage_connections_at_once_leave_the_broker_serving() {
    let broker = start_broker();
    let mut healthy = Healthy::connect(&broker);
    let mut peers: Vec<(RawConnection, Vec<u8>)> = (0..50u64)
        .map(|i| {
            let bytes = match i % 5 {
                0 => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                1 => raw_frame(PROTOCOL_VERSION, 0x99, b"unknown kind"),
                2 => raw_frame(7, kind::HELLO, &[0; 20]),
                _ => pseudo_random_bytes(1000 + i, 64 + 37 * i as usize),
            };
            (connect(&broker, &format!("garbage-{i}")), bytes)
        })
        .collect();
    let barrier = std::sync::Barrier::new(peers.len());
    std::thread::scope(|scope| {
        for (raw, bytes) in &mut peers {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                raw.send(bytes);
                raw.expect_fatal(header_error(bytes, HANDSHAKE_MAX_FRAME_LEN));
            });
        }
    });
    healthy.check();

    let out = broker
        .cmd()
        .args(["stats", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .expect("running mycelium stats");
    assert!(
        out.status.success(),
        "mycelium stats --json failed: {out:?}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("mycelium stats --json prints JSON");
    // The healthy clients and the stats command itself; none of the refused peers.
    assert_eq!(doc["connections"], Healthy::CONNECTIONS + 1, "{doc}");
    let news = doc["topics"]
        .as_array()
        .and_then(|topics| topics.iter().find(|t| t["name"] == "news"))
        .unwrap_or_else(|| panic!("no news topic in {doc}"));
    assert_eq!(news["published"], 1, "{doc}");
    assert_eq!(news["subscribers"], 2, "{doc}");
}
