//! A batch of messages as a topic routes it and a [`Delivery`](crate::core::delivery::Delivery)
//! receives it.
//!
//! - A batch is either payload slices (in-process publishers, a queue's backlog, shared-memory
//!   publishers) or a [`FrameRun`]: a socket publisher's frames, already relabelled as
//!   `Deliver`, which the socket sink queues without copying. The core never reads inside a
//!   run; every sink may read any batch as payloads ([`BatchRef::payload`]).
//! - [`Batch`] is what [`Topic::publish`](crate::core::topic::Topic::publish) takes; it is
//!   generic there, so reading a payload costs a slice index, never a virtual call.

use mycelium_transport::outbox::FrameRun;

/// One batch of messages, borrowed: what a sink is handed.
#[derive(Debug, Clone, Copy)]
pub enum BatchRef<'a> {
    /// The payloads, one slice each.
    Payloads(&'a [&'a [u8]]),
    /// `Deliver` frames as a socket publisher's batch was read and relabelled: the socket sink
    /// shares them as they are; other sinks read their payloads.
    Frames(FrameRun<'a>),
}

impl<'a> BatchRef<'a> {
    /// Messages in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            BatchRef::Payloads(payloads) => payloads.len(),
            BatchRef::Frames(run) => run.len(),
        }
    }

    /// True when the batch holds no message.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload of message `i`, as published.
    #[inline]
    pub fn payload(&self, i: usize) -> &'a [u8] {
        match self {
            BatchRef::Payloads(payloads) => payloads[i],
            BatchRef::Frames(run) => run.payload(i),
        }
    }
}

/// A batch of messages a topic can route: payload slices or a socket publisher's [`FrameRun`].
pub trait Batch {
    /// The batch as a sink receives it.
    fn view(&self) -> BatchRef<'_>;

    /// Messages in the batch.
    #[inline]
    fn len(&self) -> usize {
        self.view().len()
    }

    /// True when the batch is empty.
    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload of message `i`.
    #[inline]
    fn payload(&self, i: usize) -> &[u8] {
        self.view().payload(i)
    }
}

impl Batch for [&[u8]] {
    #[inline]
    fn view(&self) -> BatchRef<'_> {
        BatchRef::Payloads(self)
    }
}

impl Batch for FrameRun<'_> {
    #[inline]
    fn view(&self) -> BatchRef<'_> {
        BatchRef::Frames(*self)
    }
}
