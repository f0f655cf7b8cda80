//! Request/reply over one inbox per client (`docs/protocol.md` §7.10).
//!
//! - The first request subscribes the client to its inbox, `_INBOX.<client id>`, and starts
//!   one task that hands each reply to the request waiting for it, by correlation id. Later
//!   requests reuse both: one subscription per client, not one per request.
//! - A request is a publish stamped with a fresh id (its correlation id) and the inbox as its
//!   reply address. The first reply wins; a reply that comes after its request gave up is
//!   dropped.
//! - A no-responders reply (the broker's, at once when nobody subscribes to the topic) and an
//!   error reply (a responder's) become [`ReplyError`]s; the timeout is the requester's alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mycelium_transport::envelope::{Envelope, Headers, Reply, ReplyStatus, Stamper};
use mycelium_transport::{Message, RecvError};
use tokio::sync::{oneshot, OnceCell};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{PublishError, ReplyError};

/// Requests waiting for their reply, by correlation id.
type Pending = Arc<Mutex<HashMap<Uuid, oneshot::Sender<Message>>>>;

/// A client's request/reply state: its inbox and the requests in flight.
#[derive(Debug)]
pub(crate) struct Requests {
    inbox: String,
    /// Set once the inbox is subscribed and its dispatcher runs: the dispatcher's task, ended
    /// when the client's last handle goes (it holds the inbox subscription).
    ready: OnceCell<tokio::task::AbortHandle>,
    pending: Pending,
    stamper: Mutex<Stamper>,
}

impl Requests {
    /// The state of a client whose connections say `client_id` in their handshakes.
    pub(crate) fn new(client_id: Uuid) -> Requests {
        Requests {
            inbox: inbox_of(client_id),
            ready: OnceCell::new(),
            pending: Pending::default(),
            stamper: Mutex::new(Stamper::new()),
        }
    }

    /// The inbox replies come to.
    pub(crate) fn inbox(&self) -> &str {
        &self.inbox
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        if let Some(dispatcher) = self.ready.get() {
            dispatcher.abort();
        }
    }
}

/// The reply inbox of the client whose handshakes carry `client_id`: `_INBOX.` and the id in
/// base64url (`mycelium_transport::envelope::inbox_name`).
pub fn inbox_of(client_id: Uuid) -> String {
    mycelium_transport::envelope::inbox_name(client_id)
}

/// Removes a request from the pending map when its caller stops waiting, whatever the reason.
struct Waiting<'a> {
    pending: &'a Pending,
    id: Uuid,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Client {
    /// Sends `payload` as a request on `topic` and waits up to `timeout` for the first reply.
    ///
    /// Fails with [`ReplyError::NoResponders`] at once when nobody subscribes to `topic`,
    /// with [`ReplyError::Responder`] when the responder answers with an error, and with
    /// [`ReplyError::Timeout`] when no reply comes in time. On a queue topic exactly one
    /// consumer gets the request.
    pub async fn request(
        &self,
        topic: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ReplyError> {
        self.request_with(topic, &Headers::new(), payload, timeout)
            .await
    }

    /// [`request`](Self::request) with `headers` on the request.
    pub async fn request_with(
        &self,
        topic: &str,
        headers: &Headers,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ReplyError> {
        let requests = self.requests();
        self.open_inbox().await?;
        let publisher = self.cached_publisher(topic).await?;
        // Over shared memory the broker does not see the request: a ring nobody reads is
        // the publisher's own sign that nobody can answer.
        if !publisher.may_have_readers().await {
            return Err(ReplyError::NoResponders {
                topic: topic.to_owned(),
            });
        }
        let stamp = requests
            .stamper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stamp();
        let (sender, receiver) = oneshot::channel();
        requests
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stamp.id, sender);
        let _waiting = Waiting {
            pending: &requests.pending,
            id: stamp.id,
        };
        let envelope = Envelope {
            stamp: Some(stamp),
            reply_to: Some(requests.inbox()),
            headers: Some(headers),
            ..Envelope::default()
        };
        publisher.publish_envelope(&envelope, payload).await?;
        let reply = match tokio::time::timeout(timeout, receiver).await {
            Err(_) => {
                return Err(ReplyError::Timeout {
                    topic: topic.to_owned(),
                    waited: timeout,
                })
            }
            Ok(Err(_)) => return Err(ReplyError::InboxEnded),
            Ok(Ok(reply)) => reply,
        };
        match reply.reply() {
            Some(answer) => outcome(topic, reply, answer),
            None => Ok(reply),
        }
    }

    /// Answers `request` (a message with a reply address and an id) with `payload`.
    pub async fn reply(&self, request: &Message, payload: &[u8]) -> Result<(), PublishError> {
        self.send_reply(request, ReplyStatus::Ok, 0, payload).await
    }

    /// Answers `request` with an error: the requester's [`request`](Self::request) fails with
    /// [`ReplyError::Responder`] carrying `code` and `message`.
    pub async fn reply_error(
        &self,
        request: &Message,
        code: u16,
        message: &str,
    ) -> Result<(), PublishError> {
        self.send_reply(request, ReplyStatus::Error, code, message.as_bytes())
            .await
    }

    async fn send_reply(
        &self,
        request: &Message,
        status: ReplyStatus,
        code: u16,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let (reply_to, envelope) = reply_envelope(request, status, code)?;
        let publisher = self.cached_publisher(reply_to).await?;
        publisher.publish_envelope(&envelope, payload).await
    }

    /// Subscribes to the inbox and starts its dispatcher, once.
    async fn open_inbox(&self) -> Result<(), ReplyError> {
        let requests = self.requests();
        requests
            .ready
            .get_or_try_init(|| async {
                let mut inbox = self.subscribe(requests.inbox()).await?;
                let pending = requests.pending.clone();
                let task = tokio::spawn(async move {
                    loop {
                        match inbox.recv().await {
                            Ok(reply) => dispatch(&pending, reply),
                            // A reply lost to a full inbox: its request times out.
                            Err(RecvError::Lagged(_)) => {}
                            Err(_) => break,
                        }
                    }
                    // Every request still waiting learns the inbox ended.
                    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                });
                Ok::<_, ReplyError>(task.abort_handle())
            })
            .await?;
        Ok(())
    }
}

/// Where the answer to `request` goes and its envelope, or `NotARequest` when `request` has no
/// reply address or no id.
pub(crate) fn reply_envelope(
    request: &Message,
    status: ReplyStatus,
    code: u16,
) -> Result<(&str, Envelope<'static>), PublishError> {
    // Each accessor reads its block by the lengths before it (the envelope was checked on
    // arrival).
    let (Some(reply_to), Some(correlation)) = (request.reply_to(), request.id()) else {
        return Err(PublishError::NotARequest);
    };
    let envelope = Envelope {
        reply: Some(Reply {
            status,
            code,
            correlation,
        }),
        ..Envelope::default()
    };
    Ok((reply_to, envelope))
}

/// What `reply` (whose REPLY block is `answer`) to a request on `topic` means for its
/// requester.
pub(crate) fn outcome(topic: &str, reply: Message, answer: Reply) -> Result<Message, ReplyError> {
    match answer.status {
        ReplyStatus::NoResponders => Err(ReplyError::NoResponders {
            topic: topic.to_owned(),
        }),
        ReplyStatus::Error => Err(ReplyError::Responder {
            topic: topic.to_owned(),
            code: answer.code,
            message: String::from_utf8_lossy(reply.payload()).into_owned(),
        }),
        ReplyStatus::Ok => Ok(reply),
    }
}

/// Hands `reply` to the request it answers, if that request still waits.
fn dispatch(pending: &Pending, reply: Message) {
    let Some(Reply { correlation, .. }) = reply.reply() else {
        return;
    };
    let waiting = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&correlation);
    if let Some(sender) = waiting {
        let _ = sender.send(reply);
    }
}
