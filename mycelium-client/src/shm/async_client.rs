//! The async entry points of [`ShmClient`]: the control path (connect, attach) is a blocking
//! request on a Unix socket, so from async code it runs on tokio's blocking pool; the data path
//! is [`AsyncShmSubscription`] and [`AsyncShmPublisher`].
//!
//! - Each call here costs one blocking-pool hand-off: these are control operations (a few per
//!   subscription's life), never per message.
//! - Dropping one of these futures does not stop the blocking call: a subscription or
//!   publisher granted meanwhile is dropped (detached) when the call returns.

use std::path::Path;

use crate::error::ClientError;
use crate::shm::async_publisher::AsyncShmPublisher;
use crate::shm::async_subscription::AsyncShmSubscription;
use crate::shm::client::ShmClient;
use crate::shm::options::ShmOptions;

/// Runs a blocking control operation on tokio's blocking pool.
async fn off_runtime<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ClientError::Shm(format!("the blocking call failed: {e}")))?
}

impl ShmClient {
    /// [`connect_with`](Self::connect_with) without blocking a runtime worker.
    ///
    /// # Errors
    ///
    /// As for [`connect_with`](Self::connect_with).
    pub(crate) async fn connect_with_async(
        path: impl AsRef<Path>,
        options: ShmOptions,
    ) -> Result<ShmClient, ClientError> {
        let path = path.as_ref().to_owned();
        off_runtime(move || ShmClient::connect_with(path, options)).await
    }

    /// [`subscribe_with`](Self::subscribe_with), as an [`AsyncShmSubscription`]: `no_echo`
    /// leaves out what this client's own publishers publish.
    ///
    /// # Errors
    ///
    /// As for [`subscribe_with`](Self::subscribe_with); [`ClientError::Shm`] if the
    /// forwarding thread cannot be started.
    pub(crate) async fn subscribe_async_with(
        &self,
        topic: &str,
        no_echo: bool,
    ) -> Result<AsyncShmSubscription, ClientError> {
        let (client, topic) = (self.clone(), topic.to_owned());
        let subscription = off_runtime(move || client.subscribe_with(&topic, no_echo)).await?;
        AsyncShmSubscription::new(subscription)
    }

    /// [`publisher`](Self::publisher), as an [`AsyncShmPublisher`].
    ///
    /// # Errors
    ///
    /// As for [`publisher`](Self::publisher).
    pub(crate) async fn publisher_async(
        &self,
        topic: &str,
    ) -> Result<AsyncShmPublisher, ClientError> {
        let (client, topic) = (self.clone(), topic.to_owned());
        let publisher = off_runtime(move || client.publisher(&topic)).await?;
        Ok(AsyncShmPublisher::new(publisher))
    }
}
