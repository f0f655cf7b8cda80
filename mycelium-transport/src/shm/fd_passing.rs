//! Passing file descriptors over a Unix stream socket (`SCM_RIGHTS`), for handing segment
//! memfds from the broker to its clients.
//!
//! - Blocking calls on any socket fd; the broker wraps them for its event loop later.
//! - The fds travel with the first byte of the payload, so a payload must not be empty.
//! - [`recv_fds`] parses the control buffer itself rather than through nix's iterator, which
//!   refuses to look at a truncated buffer: the fds the kernel did install must still be
//!   found and closed. Each is wrapped in an [`OwnedFd`] as soon as it is found, so every
//!   error path closes them.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, MsgFlags};

/// Most fds one message may carry (Linux's `SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Rounds `len` up as `CMSG_ALIGN` does on Linux (to the size of `size_t`).
const fn cmsg_align(len: usize) -> usize {
    len.next_multiple_of(size_of::<usize>())
}

/// Bytes of control buffer for one `SCM_RIGHTS` message of `fds` fds (`CMSG_SPACE`).
const fn cmsg_space(fds: usize) -> usize {
    cmsg_align(size_of::<libc::cmsghdr>()) + cmsg_align(fds * size_of::<RawFd>())
}

/// One `sendmsg` of `payload` with `fds` attached, for non-blocking sockets: returns how many
/// bytes the socket took (the fds went with them); the caller writes the rest as plain bytes.
///
/// # Errors
///
/// As for [`send_fds`]; `WouldBlock` means nothing was sent (and no fd passed).
pub fn send_fds_partial(
    socket: &impl AsFd,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_with_fds(socket, payload, fds, MsgFlags::MSG_DONTWAIT)
}

/// Sends `payload` with `fds` attached, as one `sendmsg` (plus plain sends if the socket took
/// only part of the payload; the fds go with the first part).
///
/// # Errors
///
/// `InvalidInput` for an empty payload or more than [`MAX_FDS_PER_MESSAGE`] fds; otherwise the
/// OS error (`EPIPE` when the peer is gone: `MSG_NOSIGNAL` keeps SIGPIPE away).
pub fn send_fds(socket: &impl AsFd, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let sent = send_with_fds(socket, payload, fds, MsgFlags::empty())?;
    let socket = socket.as_fd().as_raw_fd();
    let mut rest = &payload[sent..];
    while !rest.is_empty() {
        match sendmsg::<()>(
            socket,
            &[IoSlice::new(rest)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// The first `sendmsg` of `payload`, carrying `fds`, with `flags` besides `MSG_NOSIGNAL`;
/// returns the bytes the socket took.
fn send_with_fds(
    socket: &impl AsFd,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: MsgFlags,
) -> io::Result<usize> {
    if payload.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fds need at least one payload byte to travel with",
        ));
    }
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many fds for one message",
        ));
    }
    let socket = socket.as_fd().as_raw_fd();
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(
            socket,
            &[IoSlice::new(payload)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL | flags,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            Ok(sent) => return Ok(sent),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Receives up to `buf.len()` bytes and the fds that came with them (close-on-exec).
///
/// Returns `(0, [])` at end of stream. A stream socket may split or merge payloads; callers
/// frame their messages themselves (the fds arrive with the first byte of the payload they
/// were sent with).
///
/// # Errors
///
/// `InvalidInput` for an empty `buf`; `InvalidData` if the message carried more than
/// `max_fds` fds or its control data was truncated (`MSG_CTRUNC`): every fd received is then
/// closed before returning. Otherwise the OS error.
pub fn recv_fds(
    socket: &impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty receive buffer",
        ));
    }
    let socket = socket.as_fd().as_raw_fd();
    let mut control = vec![0u8; cmsg_space(max_fds.min(MAX_FDS_PER_MESSAGE))];
    let (bytes, flags) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(
            socket,
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Ok(msg) => break (msg.bytes, msg.flags),
            Err(errno) => return Err(errno.into()),
        }
    };
    let fds = take_fds(&control);
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message truncated: too many fds",
        ));
    }
    if fds.len() > max_fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} fds received, at most {max_fds} expected", fds.len()),
        ));
    }
    Ok((bytes, fds))
}

/// Takes ownership of every fd in the `SCM_RIGHTS` messages of a control buffer the kernel
/// filled (the buffer was zeroed before, so a zero length ends the list).
fn take_fds(control: &[u8]) -> Vec<OwnedFd> {
    let header = size_of::<libc::cmsghdr>();
    let word = |at: usize, len: usize| control.get(at..at + len);
    let mut fds = Vec::new();
    let mut at = 0;
    while let Some(hdr) = control.get(at..at + header) {
        let cmsg_len = read_usize(&hdr[offset_of!(libc::cmsghdr, cmsg_len)..]);
        let level = read_i32(&hdr[offset_of!(libc::cmsghdr, cmsg_level)..]);
        let kind = read_i32(&hdr[offset_of!(libc::cmsghdr, cmsg_type)..]);
        if cmsg_len < header || at + cmsg_len > control.len() {
            break;
        }
        let data_start = at + cmsg_align(header);
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            let count = (at + cmsg_len).saturating_sub(data_start) / size_of::<RawFd>();
            for i in 0..count {
                let Some(bytes) = word(data_start + i * size_of::<RawFd>(), size_of::<RawFd>())
                else {
                    break;
                };
                let raw = read_i32(bytes);
                // SAFETY: the kernel installed `raw` in our fd table for this message just now
                // (SCM_RIGHTS data), and nothing else knows of it: this is its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        at += cmsg_align(cmsg_len);
    }
    fds
}

/// A native-endian `usize` from the start of `bytes` (`cmsg_len` is a `size_t` on Linux/gnu).
fn read_usize(bytes: &[u8]) -> usize {
    let mut word = [0u8; size_of::<usize>()];
    word.copy_from_slice(&bytes[..size_of::<usize>()]);
    usize::from_ne_bytes(word)
}

/// A native-endian `i32` from the start of `bytes`.
fn read_i32(bytes: &[u8]) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    i32::from_ne_bytes(word)
}

const _: () = assert!(size_of::<RawFd>() == 4);

/// Fails to compile where `cmsg_len` is not a `size_t` (musl), which [`take_fds`] assumes.
#[allow(dead_code)]
fn cmsg_len_is_usize(header: &libc::cmsghdr) -> usize {
    header.cmsg_len
}
