//! A batch of messages as a topic routes it and a [`Delivery`](crate::core::delivery::Delivery)
//! receives it.
//!
//! - A batch is payload slices of plain messages (in-process publishers), [`Item`]s that say
//!   whether each message begins with an envelope (a queue's backlog, shared-memory
//!   publishers, enveloped in-process publishes), or a [`FrameRun`]: a socket publisher's
//!   frames, already relabelled as `Deliver`/`DeliverEnvelope`, which the socket sink queues
//!   without copying. The core never reads inside a message; every sink may read any batch
//!   as items ([`BatchRef::item`]).
//! - [`Batch`] is what [`Topic::publish`](crate::core::topic::Topic::publish) takes; it is
//!   generic there, so reading a payload costs a slice index, never a virtual call.

use std::ops::Range;

use bytes::Bytes;
use mycelium_transport::frame::{kind, MESSAGE_OVERHEAD};
use mycelium_transport::outbox::FrameRun;

/// One message of a batch, as it travels: its bytes, and whether they begin with an
/// envelope (`mycelium_transport::envelope`: flags, blocks, then the payload) or are the
/// payload alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    /// The envelope then the payload, or the payload alone.
    pub bytes: &'a [u8],
    /// Whether `bytes` begins with an envelope.
    pub enveloped: bool,
}

impl<'a> Item<'a> {
    /// A plain message.
    #[inline]
    pub fn plain(payload: &'a [u8]) -> Item<'a> {
        Item {
            bytes: payload,
            enveloped: false,
        }
    }
}

/// The enveloped messages laid back to back in `bytes`, each ending at the next of `ends`.
pub(crate) fn enveloped_items<'a>(bytes: &'a [u8], ends: &[usize]) -> Vec<Item<'a>> {
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let item = Item {
                bytes: bytes.get(start..end).unwrap_or_default(),
                enveloped: true,
            };
            start = end;
            item
        })
        .collect()
}

/// One message held by the broker beyond the batch it came in (a queue topic's backlog): its
/// bytes, owned, and whether they begin with an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedItem {
    /// The envelope then the payload, or the payload alone.
    pub bytes: Bytes,
    /// Whether `bytes` begins with an envelope.
    pub enveloped: bool,
}

impl OwnedItem {
    /// A message of `bytes`, enveloped or not.
    pub fn new(bytes: Bytes, enveloped: bool) -> OwnedItem {
        OwnedItem { bytes, enveloped }
    }

    /// The message borrowed, as a batch carries it.
    #[inline]
    pub fn item(&self) -> Item<'_> {
        Item {
            bytes: &self.bytes,
            enveloped: self.enveloped,
        }
    }
}

/// One batch of messages, borrowed: what a sink is handed.
#[derive(Debug, Clone, Copy)]
pub enum BatchRef<'a> {
    /// Plain messages: the payloads, one slice each.
    Payloads(&'a [&'a [u8]]),
    /// Messages that may carry envelopes.
    Items(&'a [Item<'a>]),
    /// `Deliver`/`DeliverEnvelope` frames as a socket publisher's batch was read and
    /// relabelled: the socket sink shares them as they are; other sinks read them as items.
    Frames(FrameRun<'a>),
}

impl<'a> BatchRef<'a> {
    /// Messages in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            BatchRef::Payloads(payloads) => payloads.len(),
            BatchRef::Items(items) => items.len(),
            BatchRef::Frames(run) => run.len(),
        }
    }

    /// True when the batch holds no message.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of messages `range` (each message's payload, with its envelope when it has
    /// one), for the byte counters. A frame run's are found from where its frames start and
    /// end, without visiting each; slices are summed (once per batch: routing reuses the
    /// whole batch's sum for every subscriber that takes all of it).
    pub fn bytes(&self, range: Range<usize>) -> u64 {
        if range.is_empty() {
            return 0;
        }
        match self {
            BatchRef::Payloads(payloads) => {
                payloads[range].iter().fold(0u64, |n, p| n + p.len() as u64)
            }
            BatchRef::Items(items) => items[range]
                .iter()
                .fold(0u64, |n, i| n + i.bytes.len() as u64),
            BatchRef::Frames(run) => {
                // The bodies lie back to back, each behind a frame header of the same
                // length: from the first body's start to the last one's end, less the
                // headers between.
                let (first, last) = (run.payload(range.start), run.payload(range.end - 1));
                let span = (last.as_ptr() as usize + last.len()) - first.as_ptr() as usize;
                (span - (range.len() - 1) * (MESSAGE_OVERHEAD)) as u64
            }
        }
    }

    /// Message `i`, as published.
    #[inline]
    pub fn item(&self, i: usize) -> Item<'a> {
        match self {
            BatchRef::Payloads(payloads) => Item::plain(payloads[i]),
            BatchRef::Items(items) => items[i],
            BatchRef::Frames(run) => Item {
                bytes: run.payload(i),
                enveloped: run.kind(i) == kind::DELIVER_ENVELOPE,
            },
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

    /// Message `i`.
    #[inline]
    fn item(&self, i: usize) -> Item<'_> {
        self.view().item(i)
    }
}

impl Batch for [&[u8]] {
    #[inline]
    fn view(&self) -> BatchRef<'_> {
        BatchRef::Payloads(self)
    }
}

impl Batch for [Item<'_>] {
    #[inline]
    fn view(&self) -> BatchRef<'_> {
        BatchRef::Items(self)
    }
}

impl Batch for FrameRun<'_> {
    #[inline]
    fn view(&self) -> BatchRef<'_> {
        BatchRef::Frames(*self)
    }
}
