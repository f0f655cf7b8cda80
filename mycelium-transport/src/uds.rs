//! Unix-domain-socket settings shared by the broker and its clients.
//!
//! - [`tune_stream`] enlarges a stream's kernel buffers to [`SOCKET_BUFFER_BYTES`], so a burst
//!   of frames is carried by a few large `read`/`write` calls instead of waking the other side
//!   every ~200 KiB (the Linux default). The kernel caps the request at `net.core.wmem_max` /
//!   `rmem_max` without failing, so an unprivileged process gets what the host allows.
//! - Failure to tune is not an error for the connection: the caller logs it and carries on.

use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};

/// The kernel buffer size asked for on each side of a connection.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Asks the kernel for [`SOCKET_BUFFER_BYTES`] of send and receive buffer on `socket`.
pub fn tune_stream(socket: &impl AsFd) -> std::io::Result<()> {
    setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER_BYTES).map_err(std::io::Error::from)?;
    setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER_BYTES).map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::getsockopt;

    #[test]
    fn tuning_sets_both_buffers_to_what_the_host_allows() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        tune_stream(&a).expect("tuned");
        // Linux stores twice the granted size, the request capped at the sysctl maximum.
        for (opt_is_send, sysctl) in [(true, "wmem_max"), (false, "rmem_max")] {
            let Ok(max) = std::fs::read_to_string(format!("/proc/sys/net/core/{sysctl}")) else {
                continue;
            };
            let max: usize = max.trim().parse().expect("a number in the sysctl");
            let got = if opt_is_send {
                getsockopt(&a, sockopt::SndBuf).expect("read SO_SNDBUF")
            } else {
                getsockopt(&a, sockopt::RcvBuf).expect("read SO_RCVBUF")
            };
            assert_eq!(got, 2 * SOCKET_BUFFER_BYTES.min(max), "{sysctl}");
        }
    }
}
