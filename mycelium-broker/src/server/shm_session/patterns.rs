//! Pattern attachments of a shared-memory session: a `ShmAttach(Subscribe)` of `orders.*` or
//! `orders.>` is one attachment over every matching topic, those that exist and those created
//! later.
//!
//! - The registry matches topics to the pattern under the socket's rules (fanout topics only,
//!   those the peer may read, never a reply inbox: [`crate::core::patterns`]), through a
//!   watching [`PatternSubscription`] that tells this session each topic it matched.
//! - Each is attached as a plain shared-memory subscriber would be (a slot in the topic's
//!   relay ring and in every publisher ring, `no_echo` as asked), under the pattern's
//!   attachment id, at once: on the thread that made the topic, before whoever made it can
//!   publish, so nothing published on a new topic is missed. The session then hands each
//!   ring over as a `ShmTopicRingAdded` naming the topic: rings do not carry it, the
//!   subscriber maps ring to topic.
//! - The `ShmGrant` (flag `ACK_PATTERN`, no ring, `topic_id` `NO_TOPIC`) comes after the rings
//!   of the topics matching then were attached and before their `ShmTopicRingAdded` frames:
//!   nothing published on them after the grant is missed.
//! - Limits: the pattern counts as one attachment toward
//!   [`MAX_ATTACHMENTS_PER_SESSION`], and so does each topic it holds. A topic that cannot be
//!   attached (that limit reached, its rings full at `shm.max_subscribers`) is skipped for
//!   this pattern with a warning in the broker's log; the attachment goes on with the others.
//! - A topic removed (reload) or reclaimed (idle) takes its rings from the attachment
//!   (`ShmRingRemoved` for each) and the attachment goes on. A slow consumer detached by the
//!   watchdog on one topic ends the whole pattern attachment, as on the socket.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mycelium_config::Routing;
use mycelium_transport::frame::{MessageRules, NO_TOPIC};
use mycelium_transport::limits::MAX_ATTACHMENTS_PER_SESSION;
use mycelium_transport::shm::{wake_consumer, RingRegion};
use mycelium_transport::{ErrorCode, Frame, RoutingKind, ShmRing, ShmRole};
use tokio::sync::mpsc;

use crate::core::patterns::{OnMatch, PatternSubscription};
use crate::core::subject::Pattern;
use crate::core::topic::Topic;
use crate::server::shm::{Grant, SessionEvent, SessionId, ShmRings};

use super::{error_frame, End, Session};

/// A topic attached to a pattern attachment, for its session to hand the rings over.
pub(super) type Matched = (u32, Arc<Topic>, Grant);

/// Whether a subscribed name is a pattern rather than a topic name.
pub(super) fn is_pattern(name: &str) -> bool {
    name.contains(['*', '>'])
}

/// A pattern attachment the session holds.
pub(super) struct SessionPattern {
    /// In the registry's pattern index while the attachment lasts; removed from it before
    /// the attachment's rings are let go.
    subscription: Arc<PatternSubscription>,
    /// False once the session ended the attachment: held while a topic is attached, so a
    /// topic is either attached before the end (and detached by it) or not at all.
    live: Arc<Mutex<bool>>,
    /// A relay ring (weakly: a topic removed since must not keep its ring mapped) and the
    /// attachment's slot in it, to wake when a topic joins, so that a subscriber asleep on its
    /// rings looks at its control socket.
    wake: Option<(Weak<RingRegion>, u32)>,
}

/// What attaches the topics a pattern matches, on the thread that made each topic.
struct Attacher {
    shm: Arc<ShmRings>,
    session: SessionId,
    attachment: u32,
    no_echo: bool,
    events: mpsc::UnboundedSender<SessionEvent>,
    matched: mpsc::UnboundedSender<Matched>,
    live: Arc<Mutex<bool>>,
    /// The session's pattern attachments, which count toward its limit.
    patterns: Arc<AtomicUsize>,
}

impl Attacher {
    fn attach(&self, topic: &Arc<Topic>) {
        if topic.routing() != Routing::Fanout {
            return;
        }
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if !*live {
            return;
        }
        let held = self.shm.attachments_of(self.session) + self.patterns.load(Ordering::Relaxed);
        if held >= MAX_ATTACHMENTS_PER_SESSION {
            tracing::warn!(
                session = self.session,
                attachment = self.attachment,
                topic = topic.name(),
                "shared-memory pattern skips a matching topic: the session holds \
                 {MAX_ATTACHMENTS_PER_SESSION} attachments"
            );
            return;
        }
        match self.shm.attach_pattern_topic(
            topic,
            self.session,
            self.events.clone(),
            self.no_echo,
            self.attachment,
        ) {
            Ok(grant) => {
                // A session that is gone has its patterns ended by its own task.
                let _ = self
                    .matched
                    .send((self.attachment, Arc::clone(topic), grant));
            }
            Err(refusal) => {
                tracing::warn!(session = self.session, attachment = self.attachment, topic = topic.name(), %refusal, "shared-memory pattern skips a matching topic");
            }
        }
        drop(live);
    }
}

impl Session {
    /// Attachments the session holds toward [`MAX_ATTACHMENTS_PER_SESSION`]: each topic
    /// attachment (a pattern's included), and each pattern itself.
    pub(super) fn attachments_held(&self) -> usize {
        self.state.shm.attachments_of(self.id) + self.patterns.len()
    }

    /// Answers a `ShmAttach(Subscribe)` of a pattern.
    pub(super) async fn attach_pattern(
        &mut self,
        request_id: u32,
        no_echo: bool,
        text: &str,
    ) -> Result<(), End> {
        let pattern: Pattern = match text.parse() {
            Ok(pattern) => pattern,
            Err(error) => {
                let message = format!("invalid pattern '{text}': {error}");
                let refusal = error_frame(request_id, ErrorCode::InvalidTopicName, false, message);
                return self.send(&refusal, &[]).await.map_err(|_| End::Gone);
            }
        };
        let held = self.attachments_held();
        if held >= MAX_ATTACHMENTS_PER_SESSION {
            let message = format!(
                "this session already holds {held} shared-memory attachments (at most \
                 {MAX_ATTACHMENTS_PER_SESSION}); detach some or open another session"
            );
            let refusal = error_frame(request_id, ErrorCode::ShmRefused, false, message);
            return self.send(&refusal, &[]).await.map_err(|_| End::Gone);
        }
        let attachment = self.state.shm.next_attachment_id();
        let live = Arc::new(Mutex::new(true));
        let attacher = Attacher {
            shm: Arc::clone(&self.state.shm),
            session: self.id,
            attachment,
            no_echo,
            events: self.events_tx.clone(),
            matched: self.matches_tx.clone(),
            live: Arc::clone(&live),
            patterns: Arc::clone(&self.pattern_count),
        };
        let on_match: OnMatch = Arc::new(move |topic: &Arc<Topic>| attacher.attach(topic));
        let subscription =
            PatternSubscription::watching(pattern, attachment, Arc::clone(&self.peer), on_match);
        self.patterns.insert(
            attachment,
            SessionPattern {
                subscription: Arc::clone(&subscription),
                live,
                wake: None,
            },
        );
        self.pattern_count
            .store(self.patterns.len(), Ordering::Relaxed);
        // The topics matching now are attached before the grant goes out, and handed over
        // right after it. Creating their relay rings maps and pre-faults memory: off the
        // event loop.
        let state = Arc::clone(&self.state);
        let for_scan = Arc::clone(&subscription);
        let scanned =
            tokio::task::spawn_blocking(move || state.registry.subscribe_pattern(&for_scan)).await;
        if let Err(error) = scanned {
            tracing::warn!(session = self.id, %error, "matching a shared-memory pattern failed");
        }
        let mut now = Vec::new();
        while let Ok(matched) = self.matches.try_recv() {
            now.push(matched);
        }
        tracing::debug!(
            session = self.id,
            pattern = text,
            attachment,
            topics = now.len(),
            "shared-memory pattern attach"
        );
        let config = self.state.config();
        let defaults = &config.topic_defaults;
        let grant = Frame::ShmGrant {
            request_id,
            attachment,
            topic_id: NO_TOPIC,
            role: ShmRole::Subscribe,
            routing: RoutingKind::Fanout,
            max_message_size: u32::try_from(self.state.registry.max_message_size())
                .unwrap_or(u32::MAX),
            rings: Vec::new(),
            rules: MessageRules {
                stamp: defaults.stamp,
                max_headers: defaults.max_headers,
                max_header_bytes: defaults.max_header_bytes,
            },
            pattern: true,
        };
        self.send(&grant, &[]).await.map_err(|_| End::Gone)?;
        for matched in now {
            self.pattern_matched(matched).await?;
        }
        Ok(())
    }

    /// A topic was attached to a pattern attachment: hands its rings over (the relay ring
    /// first), then wakes the subscriber on a ring it already reads. Nothing to do for an
    /// attachment the session has ended since (the end detached the topic too).
    pub(super) async fn pattern_matched(&mut self, matched: Matched) -> Result<(), End> {
        let (attachment, topic, grant) = matched;
        if !self.patterns.contains_key(&attachment) {
            return Ok(());
        }
        for (ring, slot) in &grant.rings {
            let frame = Frame::ShmTopicRingAdded {
                attachment,
                ring: ShmRing {
                    ring_id: ring.id,
                    slot: *slot,
                },
                topic_id: topic.id(),
                topic: topic.name().to_owned(),
            };
            let fds: [BorrowedFd<'_>; 1] = [ring.segment.fd()];
            self.send(&frame, &fds).await.map_err(|_| End::Gone)?;
        }
        if let Some(pattern) = self.patterns.get_mut(&attachment) {
            if let Some((ring, slot)) = &pattern.wake {
                if let Some(region) = ring.upgrade() {
                    wake_consumer(&region, *slot as usize);
                }
            }
            if let Some((relay, slot)) = grant.rings.first() {
                pattern.wake = Some((Arc::downgrade(relay.region()), *slot));
            }
        }
        Ok(())
    }

    /// Ends pattern attachment `attachment`: no topic is matched to it from now on, and every
    /// topic's part of it is detached.
    pub(super) fn end_pattern(&mut self, attachment: u32) {
        if let Some(pattern) = self.patterns.remove(&attachment) {
            self.pattern_count
                .store(self.patterns.len(), Ordering::Relaxed);
            *pattern.live.lock().unwrap_or_else(|p| p.into_inner()) = false;
            self.state
                .registry
                .unsubscribe_pattern(&pattern.subscription);
            self.state.shm.detach_pattern(self.id, attachment);
        }
    }

    /// Ends every pattern attachment (the session is ending).
    pub(super) fn end_patterns(&mut self) {
        let attachments: Vec<u32> = self.patterns.keys().copied().collect();
        for attachment in attachments {
            self.end_pattern(attachment);
        }
    }
}
