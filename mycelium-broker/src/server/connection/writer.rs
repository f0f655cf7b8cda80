//! The writer of a message connection: one task that flushes the connection's outbox to its
//! socket, the whole outbox per wake-up in one call.

use std::sync::Arc;

use mycelium_transport::outbox::Outbox;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;

/// Flushes the outbox to the socket until it is closed and empty, or the peer is gone.
pub(super) async fn write_loop(mut writer: OwnedWriteHalf, outbox: Arc<Outbox>) {
    if let Err(error) = outbox.flush_until_closed(&mut writer).await {
        tracing::debug!(%error, "write to client failed; discarding its queue");
        outbox.abort();
        return;
    }
    let _ = writer.shutdown().await;
}
