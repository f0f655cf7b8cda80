//! Admission: a socket's first frame, read within `connection_timeout_ms` and the handshake
//! budget, decides what the connection is (a message connection, a shared-memory session) or
//! why it is refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mycelium_transport::codec;
use mycelium_transport::handshake::{Greeting, Opening, ServerHandshake};
use mycelium_transport::{ErrorCode, Frame, HANDSHAKE_MAX_FRAME_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::acl::PeerIdentity;
use crate::server::shm_session;
use crate::server::state::{BrokerState, Handshake};

use super::reader::serve_messages;
use super::stop::{fatal, refused, Stop};

/// How long a refused socket gets to receive its fatal error frame.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Who a message connection is, once admitted: its id in this broker run, the client id its
/// `Hello` gave, and what the kernel says of the peer.
pub(super) struct Admitted {
    pub(super) id: u64,
    pub(super) client_id: uuid::Uuid,
    pub(super) peer: PeerIdentity,
}

/// Serves one accepted socket until the peer leaves, breaks the protocol, or `stop` fires.
///
/// The first frame decides what the connection is: `Hello` opens a message connection,
/// `ShmHello` a shared-memory control session (`shm_session`). The writer task of a message
/// connection is spawned on `writers` so that shutdown can wait for it to flush.
///
/// Until that frame the socket counts against the handshake budget
/// (`server.max_pending_handshakes`, which gives up the oldest for a newer socket), not
/// against `max_connections`: a client is refused at `max_connections` in answer to its
/// `Hello`, so sockets that never say anything cannot keep clients out.
pub(crate) async fn serve(
    mut stream: UnixStream,
    state: Arc<BrokerState>,
    stop: CancellationToken,
    writers: TaskTracker,
) {
    let id = state.next_connection_id();
    let peer = peer_identity(&stream);
    // The handshake's reads reserve what a first frame may need; nothing is held before.
    let mut buf = BytesMut::new();
    let handshake = state.begin_handshake(id);
    let first = first_frame(&mut stream, &mut buf, &state, &stop, &handshake).await;
    drop(handshake);
    let opened = first.is_ok() && state.try_open_socket();
    match first {
        Ok(_) if !opened => {
            let max = state.config().server.max_connections;
            tracing::warn!(max, "refusing a client: at max_connections");
            refuse(
                stream,
                fatal(
                    ErrorCode::TooManyConnections,
                    format!("the broker is at max_connections = {max}"),
                ),
            )
            .await;
        }
        Ok(Greeting {
            opening: Opening::Messages,
            client_id,
            name,
        }) => {
            tracing::debug!(connection = id, %client_id, name = %name, peer = %peer.describe(), "client connected");
            let who = Admitted {
                id,
                client_id,
                peer,
            };
            serve_messages(stream, buf, Arc::clone(&state), stop, writers, who).await;
        }
        Ok(Greeting {
            opening: Opening::SharedMemory,
            client_id,
            name,
        }) if state.shm.enabled() => {
            tracing::debug!(session = id, %client_id, name = %name, peer = %peer.describe(), "shared-memory client connected");
            let _counted = state.shm_session();
            shm_session::serve(stream, buf, Arc::clone(&state), stop, id, peer, client_id).await;
        }
        Ok(Greeting {
            opening: Opening::SharedMemory,
            ..
        }) => {
            let refusal = fatal(
                ErrorCode::ShmRefused,
                "shared memory is disabled on this broker (shm.enabled = false); use the socket transport",
            );
            refuse(stream, refusal).await;
        }
        Err(stop @ Stop::Fatal(_)) => refuse(stream, stop).await,
        Err(Stop::Gone | Stop::Shutdown) => {}
    }
    if opened {
        state.close_socket();
    }
}

/// Who the peer is, from `SO_PEERCRED`. Should the kernel not say (it always does for a
/// connected Unix socket), the peer is nobody: uid and gid `u32::MAX`, which no access list
/// names, so only topics without lists admit it.
fn peer_identity(stream: &UnixStream) -> PeerIdentity {
    match stream.peer_cred() {
        Ok(cred) => PeerIdentity::new(cred.uid(), cred.gid(), cred.pid().unwrap_or(0)),
        Err(error) => {
            tracing::warn!(%error, "cannot read the peer's credentials; treating it as nobody");
            PeerIdentity::new(u32::MAX, u32::MAX, 0)
        }
    }
}

/// Reads the first frame (within the connection timeout, and while newer sockets leave this
/// one its place in the handshake budget): a greeting, or why the connection ends.
async fn first_frame(
    stream: &mut UnixStream,
    buf: &mut BytesMut,
    state: &BrokerState,
    stop: &CancellationToken,
    handshake: &Handshake,
) -> Result<Greeting, Stop> {
    let timeout = Duration::from_millis(state.config().server.connection_timeout_ms);
    tokio::select! {
        _ = stop.cancelled() => Err(fatal(ErrorCode::ShuttingDown, "the broker is shutting down")),
        // `read_buf` is cancel-safe: what it read is in `buf`.
        _ = handshake.given_up() => match frame_already_sent(stream, buf) {
            // A client whose Hello was on its way when newer sockets arrived is served: only
            // a socket that has said nothing is given up.
            Some(result) => result,
            None => {
                let max = state.config().server.max_pending_handshakes;
                Err(fatal(
                    ErrorCode::HandshakeTimeout,
                    format!("no Hello yet, and newer connections need the room (server.max_pending_handshakes = {max})"),
                ))
            }
        },
        read = tokio::time::timeout(timeout, read_one_frame(stream, buf)) => match read {
            Err(_) => Err(fatal(
                ErrorCode::HandshakeTimeout,
                format!("no Hello within connection_timeout_ms = {}", timeout.as_millis()),
            )),
            Ok(result) => result,
        },
    }
}

/// The first frame if the peer has sent all of it already (read without waiting), or `None`.
fn frame_already_sent(stream: &UnixStream, buf: &mut BytesMut) -> Option<Result<Greeting, Stop>> {
    loop {
        match ServerHandshake::new().receive(buf) {
            Ok(Some(greeting)) => return Some(Ok(greeting)),
            Ok(None) => {}
            Err(refusal) => return Some(Err(refused(&refusal))),
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match stream.try_read_buf(buf) {
            Ok(0) => return Some(Err(Stop::Gone)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Sends the fatal error of `stop` to a peer that never completed its handshake, then closes.
async fn refuse(mut stream: UnixStream, stop: Stop) {
    let Stop::Fatal(frame) = stop else {
        return;
    };
    if let Frame::Error { code, message, .. } = &*frame {
        tracing::warn!(?code, %message, "refusing client");
    }
    let mut bytes = BytesMut::new();
    if codec::encode_frame(&frame, &mut bytes).is_ok() {
        let write = async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
    }
}

/// Reads until one whole frame (at most `HANDSHAKE_MAX_FRAME_LEN`) is in `buf`, and lets the
/// handshake decide it.
async fn read_one_frame(reader: &mut UnixStream, buf: &mut BytesMut) -> Result<Greeting, Stop> {
    loop {
        match ServerHandshake::new().receive(buf) {
            Ok(Some(greeting)) => return Ok(greeting),
            Ok(None) => {}
            Err(refusal) => return Err(refused(&refusal)),
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Stop::Gone),
            Ok(_) => {}
        }
    }
}
