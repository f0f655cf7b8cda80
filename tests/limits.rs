//! Memory a peer can make the broker hold is bounded, even when the peer never reads.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{rss_kib, wait_until, TestBroker};
use mycelium::transport::{encode_frame, Frame};

#[test]
fn replies_to_a_peer_that_never_reads_stay_bounded() {
    // 500 topics make each Stats answer ~30 KB; 60 000 requests would be ~1.8 GB of answers.
    let topics: String = (0..500)
        .map(|i| {
            format!(
                "[[topics]]\nname = \"topic-with-a-longish-name-{i:04}\"\nrouting = \"fanout\"\n"
            )
        })
        .collect();
    let broker = TestBroker::start(&topics);
    let before = rss_kib(broker.pid());

    let mut raw = std::os::unix::net::UnixStream::connect(&broker.socket).expect("connect");
    let mut out = bytes::BytesMut::new();
    encode_frame(
        &Frame::Hello {
            client_id: uuid::Uuid::new_v4(),
            name: "silent".into(),
        },
        &mut out,
    )
    .expect("hello");
    for request_id in 1..=60_000u32 {
        encode_frame(&Frame::StatsRequest { request_id }, &mut out).expect("stats request");
    }
    raw.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // The broker stops reading once its answers back up, so this write may only partly
    // succeed: that is the point.
    let _ = raw.write_all(&out);

    // Give the broker every chance to read what it will read: wait until its RSS stops growing.
    let mut last = rss_kib(broker.pid());
    wait_until("the broker's memory to settle", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(broker.pid());
        let settled = now <= last + 1024;
        last = now;
        settled
    });
    let grown_mib = last.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 100,
        "the broker grew by {grown_mib} MiB for a peer that never reads"
    );

    // Everyone else is still served.
    let stats = broker
        .cmd()
        .args(["stats", "--json"])
        .output()
        .expect("stats");
    assert!(stats.status.success());
    drop(raw);
}
