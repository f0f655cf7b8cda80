//! The bench header every payload starts with: sequence number and send time.

/// Throughput runs timestamp one message in this many.
pub(crate) const LATENCY_SAMPLE_EVERY: u64 = 16;
/// Bytes of bench header at the start of every payload.
pub(crate) const STAMP_LEN: usize = 16;
/// Round trips before the measured ones in ping-pong.
pub(crate) const PINGPONG_WARMUP: u64 = 1000;

pub(crate) fn now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}

pub(crate) fn stamp(buf: &mut [u8], seq: u64, timestamped: bool) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let ts = if timestamped { now_ns() } else { 0 };
    buf[8..16].copy_from_slice(&ts.to_le_bytes());
}

/// Writes `seq` and a given timestamp (a paced message's intended send time; 0: none).
pub(crate) fn stamp_with(buf: &mut [u8], seq: u64, ts_ns: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&ts_ns.to_le_bytes());
}

pub(crate) fn read_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let ts = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, ts))
}

/// The small headers a publisher of `--headers N` sends with every message.
pub(crate) fn bench_headers(count: u16) -> mycelium_client::envelope::Headers {
    let mut headers = mycelium_client::envelope::Headers::new();
    for i in 0..count {
        // `h<i>` and `v<i>` are valid keys and values for every i.
        let _ = headers.insert(format!("h{i}"), format!("v{i}"));
    }
    headers
}
