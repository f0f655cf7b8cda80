//! Opening a socket connection: its options, the handshake (Hello → Welcome), and what the
//! broker announced in its `Welcome`.
//!
//! - The handshake is the transport's sans-IO [`ClientHandshake`], driven here over a tokio
//!   socket; bytes the broker sent after its `Welcome` are handed back with the stream.
//! - A broker that refuses the connection is reported with its own reason
//!   ([`welcome_error`]), even when the refusal closed the socket before the Hello was written.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use mycelium_transport::handshake::{ClientHandshake, Opening, Welcome, WelcomeError};
use mycelium_transport::HANDSHAKE_MAX_FRAME_LEN;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use uuid::Uuid;

use crate::error::ClientError;

/// The socket connection's options, taken from [`ClientOptions`](crate::ClientOptions).
#[derive(Debug, Clone)]
pub(crate) struct SocketOptions {
    /// Shown in the broker's logs.
    pub name: String,
    /// Identifies this client to the broker; random by default.
    pub client_id: Uuid,
    /// How long connecting and the handshake may take.
    pub connect_timeout: Duration,
    /// How long a request (subscribe, advertise, stats, flush) may wait for its answer.
    pub request_timeout: Duration,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            name: String::new(),
            client_id: Uuid::new_v4(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the broker said in its `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Random per broker run.
    pub broker_id: Uuid,
    /// This connection's id in the broker's logs.
    pub connection_id: u64,
    /// The largest payload any topic accepts.
    pub max_message_size: u32,
    /// The largest frame the broker accepts.
    pub max_frame_len: u32,
    /// The broker's name and version.
    pub server: String,
}

pub(super) async fn handshake(
    path: &PathBuf,
    options: &SocketOptions,
) -> Result<(UnixStream, BrokerInfo, BytesMut), ClientError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| ClientError::Connect {
            path: path.clone(),
            reason: e.to_string(),
            kind: e.kind(),
        })?;
    if let Err(error) = mycelium_transport::uds::tune_stream(&stream) {
        tracing::debug!(%error, "could not enlarge the socket buffers");
    }
    let handshake = ClientHandshake::new(Opening::Messages, options.client_id, &*options.name);
    let mut out = BytesMut::new();
    handshake
        .encode_hello(&mut out)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    // A broker that refuses the connection (max_connections) may have written its error and
    // closed before our Hello arrives, making the write fail: the refusal is still there to
    // read, and it is the better error to report.
    let write_error = stream.write_all(&out).await.err();
    let mut buf = BytesMut::with_capacity(HANDSHAKE_MAX_FRAME_LEN);
    loop {
        if let Some(welcome) = handshake.receive(&mut buf).map_err(welcome_error)? {
            return Ok((stream, BrokerInfo::from(welcome), buf));
        }
        buf.reserve(HANDSHAKE_MAX_FRAME_LEN);
        match stream.read_buf(&mut buf).await {
            Ok(0) => {
                return Err(ClientError::gone(match &write_error {
                    Some(e) => e.to_string(),
                    None => "the broker closed the connection during the handshake".to_owned(),
                }))
            }
            Ok(_) => {}
            Err(e) => return Err(ClientError::gone(write_error.unwrap_or(e).to_string())),
        }
    }
}

/// The client's error for a broker answer that does not open the connection.
pub(crate) fn welcome_error(error: WelcomeError) -> ClientError {
    match error {
        WelcomeError::Refused { code, message } => ClientError::Refused { code, message },
        WelcomeError::Decode(error) => ClientError::from(error),
        other => ClientError::Protocol(other.to_string()),
    }
}

impl From<Welcome> for BrokerInfo {
    fn from(welcome: Welcome) -> BrokerInfo {
        BrokerInfo {
            broker_id: welcome.broker_id,
            connection_id: welcome.connection_id,
            max_message_size: welcome.max_message_size,
            max_frame_len: welcome.max_frame_len,
            server: welcome.server,
        }
    }
}
