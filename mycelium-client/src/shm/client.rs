//! [`ShmClient`]: a cheap `Clone` handle over one shared-memory session, which makes its
//! publishers and subscriptions.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use mycelium_transport::ShmRole;

use crate::error::ClientError;
use crate::shm::options::ShmOptions;
use crate::shm::publisher::ShmPublisher;
use crate::shm::session::Session;
use crate::shm::subscription::ShmSubscription;
use crate::socket::BrokerInfo;

/// A shared-memory client: a cheap `Clone` handle over one control session. See the module
/// docs.
#[derive(Clone)]
pub(crate) struct ShmClient {
    session: Arc<Session>,
}

impl std::fmt::Debug for ShmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmClient")
            .field("info", self.session.broker_info())
            .finish_non_exhaustive()
    }
}

/// The control socket, for an event loop that waits on the broker alongside its own fds: it
/// becomes readable when the broker sends something (news for a subscription, the end of an
/// attachment) and when the session ends (the broker stopped or died). It is then up to a
/// call of this client to read it: [`ShmPublisher::check`], or any receive of a subscription.
/// Only poll it: a read or write of your own would break the session.
impl AsFd for ShmClient {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.session.stream().as_fd()
    }
}

impl ShmClient {
    /// Connects to the broker's socket at `path` and opens a shared-memory session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] when no broker answers; [`ClientError::Refused`] when the
    /// broker refuses (shared memory disabled, too many connections); [`ClientError::Timeout`].
    pub(crate) fn connect_with(
        path: impl AsRef<Path>,
        options: ShmOptions,
    ) -> Result<ShmClient, ClientError> {
        Ok(ShmClient {
            session: Arc::new(Session::connect(path, options)?),
        })
    }

    /// What the broker said in its `Welcome`.
    pub(crate) fn broker_info(&self) -> &BrokerInfo {
        self.session.broker_info()
    }

    /// A publisher on `topic`, writing into a ring of its own.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for an unknown topic, or a limit reached;
    /// [`ClientError::Shm`] if the ring handed over cannot be mapped.
    pub(crate) fn publisher(&self, topic: &str) -> Result<ShmPublisher, ClientError> {
        let (grant, mut rings) = self.session.attach(topic, ShmRole::Publish, false)?;
        if rings.len() != 1 {
            return Err(ClientError::Protocol(format!(
                "a publisher grant must carry one ring, got {}",
                rings.len()
            )));
        }
        let ring = rings.remove(0);
        ShmPublisher::new(Arc::clone(&self.session), topic, grant, ring.segment)
    }

    /// Subscribes to `topic`: on a fanout topic the subscription sees every message
    /// published from now on, by every publisher of the topic; on a queue topic it is one of
    /// the topic's consumers, and takes the messages dealt to it (`client::shm::queue`). With
    /// `no_echo` the subscription does not read the
    /// rings of this client's own publishers (of this session), so it never sees what they
    /// publish. The broker reserves no slot for it in those rings (told in `ShmAttach`), so
    /// none is left unread to hold a ring full, and it never hands them over.
    ///
    /// # Errors
    ///
    /// As for [`publisher`](Self::publisher).
    pub(crate) fn subscribe_with(
        &self,
        topic: &str,
        no_echo: bool,
    ) -> Result<ShmSubscription, ClientError> {
        let (grant, rings) = self.session.attach(topic, ShmRole::Subscribe, no_echo)?;
        ShmSubscription::new(Arc::clone(&self.session), topic, grant, rings)
    }
}
