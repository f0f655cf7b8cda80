//! Consumer groups end to end in the core: a real [`TopicLog`] in a temporary directory, fake
//! sinks and a fake dead-letter topic, tokio's clock paused (ack timeouts and delays take no
//! real time, and nothing depends on how fast the machine is).

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use mycelium_config::{Fsync, TopicDefaults};
use mycelium_storage::StartAt;
use mycelium_transport::envelope::EnvelopeView;
use mycelium_transport::outbox::Outbox;
use mycelium_transport::{kind, NackAction};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::core::batch::BatchRef;
use crate::core::delivery::{Delivered, Delivery, Ending, RoomWait};
use crate::core::durable::{
    ConsumerGroups, DeadLetterHeaders, DeadLetterReason, DeadLetters, GroupMembership, JoinError,
    TopicLog, DEAD_LETTER_REASON_HEADER, DELIVERY_COUNT_HEADER,
};
use crate::core::ids::TopicId;
use crate::core::topic::Topic;

/// A message a fake sink got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    sub: TopicId,
    offset: u64,
    count: u32,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct SinkState {
    got: Vec<Got>,
    /// Messages queued and not yet taken by the test (the subscriber).
    held: usize,
    closed: bool,
    /// Holds at most this many whatever the limit (a sink bounded by bytes).
    cap: Option<usize>,
}

/// A sink that parses what it is handed and holds it until the test takes it.
#[derive(Debug, Default)]
struct RecordingSink {
    state: Mutex<SinkState>,
    news: Notify,
    room: Notify,
}

impl RecordingSink {
    fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap()
    }

    /// Everything queued so far, as the subscriber reads it.
    fn take(&self) -> Vec<Got> {
        let got = {
            let mut state = self.lock();
            state.held = 0;
            std::mem::take(&mut state.got)
        };
        self.room.notify_one();
        got
    }

    /// Waits (in paused time) until `n` messages have come, and takes them.
    async fn next(&self, n: usize) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        loop {
            let news = self.news.notified();
            got.extend(self.take());
            if got.len() >= n {
                return got;
            }
            tokio::time::timeout_at(deadline, news)
                .await
                .unwrap_or_else(|_| panic!("{n} messages did not come; got {got:?}"));
        }
    }

    fn close(&self) {
        self.lock().closed = true;
    }
}

impl Delivery for RecordingSink {
    fn deliver(
        &self,
        topic: TopicId,
        batch: BatchRef<'_>,
        range: Range<usize>,
        limit: Option<usize>,
    ) -> Delivered {
        let mut state = self.lock();
        if state.closed {
            return Delivered::Closed;
        }
        let limit = limit.map(|l| state.cap.map_or(l, |cap| cap.min(l)));
        let room = match limit {
            Some(limit) if state.held == 0 => limit.max(1),
            Some(limit) => limit.saturating_sub(state.held),
            None => usize::MAX,
        };
        let n = range.len().min(room);
        for i in range.start..range.start + n {
            let item = batch.item(i);
            assert!(item.enveloped, "group deliveries carry envelopes");
            let view = EnvelopeView::parse(item.bytes).expect("a valid envelope");
            let count = view
                .headers()
                .find(|(k, _)| *k == DELIVERY_COUNT_HEADER)
                .map(|(_, v)| v.parse().expect("a decimal count"))
                .expect("a delivery count");
            state.got.push(Got {
                sub: topic,
                offset: view.offset.expect("an offset"),
                count,
                payload: view.payload.to_vec(),
            });
        }
        state.held += n;
        drop(state);
        self.news.notify_one();
        Delivered::Queued(n)
    }

    fn has_room(&self, _topic: TopicId, limit: usize) -> bool {
        let state = self.lock();
        state.closed || state.held < state.cap.map_or(limit, |cap| cap.min(limit))
    }

    fn wait_for_room(&self, topic: TopicId, limit: usize) -> RoomWait<'_> {
        Box::pin(async move {
            loop {
                let room = self.room.notified();
                if self.has_room(topic, limit) {
                    return;
                }
                room.await;
            }
        })
    }

    fn evict_oldest(&self, _topic: TopicId, _max: usize) -> usize {
        0
    }

    fn report_lost(&self, _topic: TopicId, _count: u64) {}

    fn end(&self, _topic: TopicId, _why: Ending<'_>) {}
}

/// What the fake dead-letter topic got: the headers, and the message as it would publish it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeadLetter {
    reason: DeadLetterReason,
    topic: String,
    offset: u64,
    group: String,
    delivery_count: u32,
    message: Vec<u8>,
}

#[derive(Debug, Default)]
struct RecordingDeadLetters {
    got: Mutex<Vec<DeadLetter>>,
    /// Refuses this many before it takes any.
    refuse: Mutex<usize>,
}

impl RecordingDeadLetters {
    fn take(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.got.lock().unwrap())
    }
}

impl DeadLetters for RecordingDeadLetters {
    fn dead_letter(
        &self,
        source: &Topic,
        record_envelope: &[u8],
        payload: &[u8],
        headers: DeadLetterHeaders<'_>,
    ) -> Result<(), String> {
        let mut refuse = self.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return Err("the dead-letter topic is full".to_owned());
        }
        assert_eq!(source.name(), headers.topic);
        let mut message = BytesMut::new();
        headers.write_message(record_envelope, payload, &mut message);
        self.got.lock().unwrap().push(DeadLetter {
            reason: headers.reason,
            topic: headers.topic.to_owned(),
            offset: headers.offset,
            group: headers.group.to_owned(),
            delivery_count: headers.delivery_count,
            message: message.to_vec(),
        });
        Ok(())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    topic: Arc<Topic>,
    log: Arc<TopicLog>,
    dead: Arc<RecordingDeadLetters>,
}

struct Settings {
    ack_timeout_ms: u64,
    max_deliveries: u32,
    segment_bytes: u64,
    retention_messages: Option<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ack_timeout_ms: 30_000,
            max_deliveries: 5,
            segment_bytes: 1 << 20,
            retention_messages: None,
        }
    }
}

impl Fixture {
    fn new(settings: Settings) -> Fixture {
        Fixture::in_dir(tempfile::tempdir().unwrap(), settings)
    }

    /// A durable topic `t` whose log is (or was) in `dir`.
    fn in_dir(dir: tempfile::TempDir, settings: Settings) -> Fixture {
        let mut config = TopicDefaults::default().topic("t");
        config.durable = true;
        config.fsync = Some(Fsync::Never);
        config.ack_timeout_ms = Some(settings.ack_timeout_ms);
        config.max_deliveries = Some(settings.max_deliveries);
        config.retention_messages = settings.retention_messages;
        let durability = config.durability().unwrap();
        let log =
            Arc::new(TopicLog::open(dir.path(), "t", &durability, settings.segment_bytes).unwrap());
        let topic = Arc::new(Topic::new(7, config).with_log(Arc::clone(&log)));
        Fixture {
            dir,
            topic,
            log,
            dead: Arc::default(),
        }
    }

    fn groups(&self) -> &ConsumerGroups {
        self.log.groups()
    }

    fn join(
        &self,
        group: &str,
        start: StartAt,
        sink: &Arc<RecordingSink>,
        sub: TopicId,
        prefetch: u32,
    ) -> GroupMembership {
        self.try_join(
            group,
            start,
            Arc::clone(sink) as Arc<dyn Delivery>,
            sub,
            prefetch,
        )
        .unwrap()
    }

    fn try_join(
        &self,
        group: &str,
        start: StartAt,
        sink: Arc<dyn Delivery>,
        sub: TopicId,
        prefetch: u32,
    ) -> Result<GroupMembership, JoinError> {
        self.groups().join(
            &self.topic,
            &self.log,
            group,
            start,
            sink,
            sub,
            prefetch,
            Arc::clone(&self.dead) as Arc<dyn DeadLetters>,
        )
    }

    /// Appends messages `m<i>` for `range`.
    fn publish(&self, range: Range<usize>) {
        let payloads: Vec<Vec<u8>> = range.map(|i| format!("m{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.log.append(refs.as_slice()).unwrap();
    }

    fn committed(&self, group: &str) -> u64 {
        self.stats(group).committed
    }

    fn stats(&self, group: &str) -> mycelium_transport::GroupStats {
        let next = self.log.figures().next_offset;
        self.groups()
            .stats(next)
            .into_iter()
            .find(|s| s.name == group)
            .unwrap_or_else(|| panic!("group {group} listed"))
    }

    /// Waits until `group`'s committed position is `expected`.
    async fn committed_reaches(&self, group: &str, expected: u64) {
        eventually(
            || self.committed(group) == expected,
            || {
                format!(
                    "committed {} never reached {expected}",
                    self.committed(group)
                )
            },
        )
        .await;
    }
}

/// Lets every task run until it waits (a few ms of paused time).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Polls `ok` every ms of paused time, for at most a minute of it.
async fn eventually(ok: impl Fn() -> bool, why: impl Fn() -> String) {
    for _ in 0..60_000 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{}", why());
}

fn offsets(got: &[Got]) -> Vec<u64> {
    got.iter().map(|g| g.offset).collect()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} took too long"))
}

#[tokio::test(start_paused = true)]
async fn two_members_share_the_messages_each_exactly_once_when_acked() {
    let f = Fixture::new(Settings::default());
    let (a, b) = (RecordingSink::new(), RecordingSink::new());
    let ma = f.join("workers", StartAt::Earliest, &a, 101, 10);
    let mb = f.join("workers", StartAt::Earliest, &b, 102, 10);
    settle().await;
    f.publish(0..20);
    let got_a = a.next(10).await;
    let got_b = b.next(10).await;
    assert_eq!(offsets(&got_a), vec![0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    assert_eq!(offsets(&got_b), vec![1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    assert!(got_a.iter().all(|g| g.sub == 101 && g.count == 1));
    assert!(got_b.iter().all(|g| g.sub == 102 && g.count == 1));
    assert_eq!(got_a[0].payload, b"m0");
    assert_eq!(f.stats("workers").pending, 20);
    assert_eq!(f.stats("workers").members, 2);

    ma.ack(&offsets(&got_a));
    mb.ack(&offsets(&got_b)[..5]);
    f.committed_reaches("workers", 11).await;
    mb.ack(&offsets(&got_b)[5..]);
    f.committed_reaches("workers", 20).await;
    assert_eq!(f.stats("workers").pending, 0);

    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        a.take().is_empty() && b.take().is_empty(),
        "nothing comes twice"
    );
    assert_eq!(f.stats("workers").redelivered, 0);
}

#[tokio::test(start_paused = true)]
async fn a_member_gets_no_more_than_its_prefetch_pending() {
    let f = Fixture::new(Settings::default());
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 2);
    f.publish(0..5);
    assert_eq!(offsets(&a.next(2).await), vec![0, 1]);
    settle().await;
    assert!(a.take().is_empty(), "two pending: the prefetch");
    m.ack(&[1]);
    assert_eq!(offsets(&a.next(1).await), vec![2]);
    m.ack(&[0, 2]);
    assert_eq!(offsets(&a.next(2).await), vec![3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_sink_is_full_gets_more_once_it_has_room() {
    let f = Fixture::new(Settings::default());
    let a = RecordingSink::new();
    a.lock().cap = Some(2);
    let _m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..5);
    settle().await;
    let first = a.take();
    assert_eq!(offsets(&first), vec![0, 1], "the sink holds two");
    assert_eq!(
        offsets(&a.next(2).await),
        vec![2, 3],
        "taking them made room: no ack needed, the prefetch is 10"
    );
    assert_eq!(offsets(&a.next(1).await), vec![4]);
    assert_eq!(f.stats("g").pending, 5);
}

#[tokio::test(start_paused = true)]
async fn a_group_starts_where_its_first_member_says_and_then_resumes() {
    let f = Fixture::new(Settings::default());
    f.publish(0..3);
    let a = RecordingSink::new();
    let m = f.join("new", StartAt::Latest, &a, 1, 10);
    settle().await;
    assert!(a.take().is_empty(), "a new group from now on");
    assert_eq!(f.committed("new"), 3);
    f.publish(3..4);
    assert_eq!(offsets(&a.next(1).await), vec![3]);
    drop(m);

    let b = RecordingSink::new();
    let _m = f.join("at", StartAt::Offset(1), &b, 2, 10);
    assert_eq!(offsets(&b.next(3).await), vec![1, 2, 3]);

    let c = RecordingSink::new();
    let _m = f.join("new", StartAt::Earliest, &c, 3, 10);
    assert_eq!(
        offsets(&c.next(1).await),
        vec![3],
        "an existing group ignores the start: 3 was delivered, never acked"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unacked_message_is_delivered_again_after_the_ack_timeout_counting_two() {
    let f = Fixture::new(Settings {
        ack_timeout_ms: 100,
        ..Settings::default()
    });
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..1);
    let first = a.next(1).await;
    let delivered_at = Instant::now();
    assert_eq!(first[0].count, 1);
    let again = a.next(1).await;
    assert!(Instant::now() - delivered_at >= Duration::from_millis(100));
    assert_eq!((again[0].offset, again[0].count), (0, 2));
    assert_eq!(f.stats("g").redelivered, 1);
    m.ack(&[0]);
    f.committed_reaches("g", 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_of_ack_timeout_applies_to_the_next_deliveries() {
    let f = Fixture::new(Settings {
        ack_timeout_ms: 60_000,
        ..Settings::default()
    });
    let a = RecordingSink::new();
    let _m = f.join("g", StartAt::Earliest, &a, 1, 10);
    let mut config = (*f.topic.config()).clone();
    config.ack_timeout_ms = Some(50);
    f.topic.set_config(config).unwrap();
    f.publish(0..1);
    a.next(1).await;
    let start = Instant::now();
    assert_eq!(a.next(1).await[0].count, 2);
    assert!(Instant::now() - start < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_member_that_leaves_has_its_pending_messages_delivered_again_at_once() {
    let f = Fixture::new(Settings::default());
    let (a, b) = (RecordingSink::new(), RecordingSink::new());
    let ma = f.join("g", StartAt::Earliest, &a, 1, 10);
    let mb = f.join("g", StartAt::Earliest, &b, 2, 10);
    settle().await;
    f.publish(0..2);
    assert_eq!(offsets(&a.next(1).await), vec![0]);
    assert_eq!(offsets(&b.next(1).await), vec![1]);
    let left_at = Instant::now();
    drop(ma);
    let again = b.next(1).await;
    assert_eq!((again[0].offset, again[0].count), (0, 2));
    assert!(
        Instant::now() - left_at < Duration::from_secs(1),
        "not after the 30 s ack timeout"
    );
    assert_eq!(f.stats("g").members, 1);
    mb.ack(&[0, 1]);
    f.committed_reaches("g", 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_sink_closed_is_dropped_and_its_messages_go_to_another() {
    let f = Fixture::new(Settings::default());
    let (a, b) = (RecordingSink::new(), RecordingSink::new());
    let _ma = f.join("g", StartAt::Earliest, &a, 1, 10);
    let _mb = f.join("g", StartAt::Earliest, &b, 2, 10);
    settle().await;
    a.close();
    f.publish(0..4);
    let started = Instant::now();
    let got = b.next(4).await;
    assert!(
        Instant::now() - started < Duration::from_secs(1),
        "at once, not after an ack timeout"
    );
    assert!(
        got.iter().all(|g| g.count == 1),
        "a closed sink delivered nothing"
    );
    let mut got = offsets(&got);
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3]);
    settle().await;
    assert!(b.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn nacks_requeue_now_requeue_later_or_dead_letter() {
    let f = Fixture::new(Settings::default());
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..3);
    assert_eq!(offsets(&a.next(3).await), vec![0, 1, 2]);

    m.nack(0, NackAction::Requeue);
    let again = a.next(1).await;
    assert_eq!((again[0].offset, again[0].count), (0, 2));

    m.nack(1, NackAction::RequeueAfter(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(a.take().is_empty(), "not before its delay");
    let later = a.next(1).await;
    assert_eq!((later[0].offset, later[0].count), (1, 2));

    m.nack(2, NackAction::DeadLetter);
    eventually(
        || f.stats("g").dead_lettered == 1,
        || "dead-lettered".to_owned(),
    )
    .await;
    let dead = f.dead.take();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].reason, dead[0].offset, dead[0].delivery_count),
        (DeadLetterReason::Rejected, 2, 1)
    );
    assert_eq!((dead[0].topic.as_str(), dead[0].group.as_str()), ("t", "g"));

    m.ack(&[0, 1]);
    f.committed_reaches("g", 3).await;
    assert_eq!(f.stats("g").redelivered, 2);
}

#[tokio::test(start_paused = true)]
async fn a_message_delivered_max_deliveries_times_is_dead_lettered_with_its_headers() {
    let f = Fixture::new(Settings {
        ack_timeout_ms: 100,
        max_deliveries: 2,
        ..Settings::default()
    });
    let a = RecordingSink::new();
    let _m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..1);
    let counts: Vec<u32> = a.next(2).await.iter().map(|g| g.count).collect();
    assert_eq!(counts, vec![1, 2]);
    f.committed_reaches("g", 1).await;
    assert!(a.take().is_empty(), "never a third delivery");
    let dead = f.dead.take();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].reason, dead[0].offset, dead[0].delivery_count),
        (DeadLetterReason::MaxDeliveries, 0, 2)
    );
    let view = EnvelopeView::parse(&dead[0].message).unwrap();
    let headers: Vec<(&str, &str)> = view.headers().collect();
    assert_eq!(
        headers,
        vec![
            (DEAD_LETTER_REASON_HEADER, "max-deliveries"),
            ("Mycelium-Dead-Letter-Topic", "t"),
            ("Mycelium-Dead-Letter-Offset", "0"),
            ("Mycelium-Dead-Letter-Group", "g"),
            (DELIVERY_COUNT_HEADER, "2"),
        ]
    );
    assert_eq!(view.payload, b"m0");
    assert_eq!(f.stats("g").dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_that_fails_keeps_the_message_and_is_tried_again() {
    let f = Fixture::new(Settings {
        ack_timeout_ms: 100,
        ..Settings::default()
    });
    *f.dead.refuse.lock().unwrap() = 1;
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..1);
    a.next(1).await;
    m.nack(0, NackAction::DeadLetter);
    settle().await;
    assert_eq!(
        f.committed("g"),
        0,
        "kept: the dead-letter topic refused it"
    );
    // Tried again an ack timeout later: delivered again (the nack was the member's word on
    // that delivery), then dead-lettered when nacked again.
    let again = a.next(1).await;
    assert_eq!((again[0].offset, again[0].count), (0, 2));
    m.nack(0, NackAction::DeadLetter);
    f.committed_reaches("g", 1).await;
    assert_eq!(f.dead.take().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_ack_after_a_redelivery_to_another_member_is_ignored() {
    let f = Fixture::new(Settings {
        ack_timeout_ms: 100,
        ..Settings::default()
    });
    let (a, b) = (RecordingSink::new(), RecordingSink::new());
    let ma = f.join("g", StartAt::Earliest, &a, 1, 10);
    let mb = f.join("g", StartAt::Earliest, &b, 2, 10);
    settle().await;
    f.publish(0..1);
    assert_eq!(offsets(&a.next(1).await), vec![0]);
    let again = b.next(1).await;
    assert_eq!((again[0].offset, again[0].count), (0, 2));
    ma.ack(&[0]);
    ma.nack(0, NackAction::Requeue);
    settle().await;
    assert_eq!(f.groups().late_answers("g"), 2);
    assert_eq!(f.committed("g"), 0, "still pending on b");
    assert_eq!(f.stats("g").pending, 1);
    mb.ack(&[0]);
    f.committed_reaches("g", 1).await;
}

#[tokio::test(start_paused = true)]
async fn the_committed_position_persists_and_a_reopened_log_resumes_from_it() {
    let f = Fixture::new(Settings::default());
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..5);
    assert_eq!(offsets(&a.next(5).await), vec![0, 1, 2, 3, 4]);
    m.ack(&[0, 1, 2, 4]);
    f.committed_reaches("g", 3).await;
    drop(m);
    settle().await;
    let file = f.dir.path().join("t").join("groups").join("g.offset");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"3\n",
        "written when the group parked"
    );

    let Fixture {
        dir, topic, log, ..
    } = f;
    drop(topic);
    drop(log);
    std::fs::write(dir.path().join("t/groups/broken.offset"), b"garbage").unwrap();
    let f = Fixture::in_dir(dir, Settings::default());
    let names: Vec<String> = f.groups().stats(5).into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["broken", "g"], "persisted groups are listed");
    assert_eq!(f.committed("g"), 3);

    let b = RecordingSink::new();
    let _m = f.join("g", StartAt::Latest, &b, 1, 10);
    assert_eq!(
        offsets(&b.next(2).await),
        vec![3, 4],
        "from the committed position, not the start asked for"
    );

    let c = RecordingSink::new();
    let _m = f.join("broken", StartAt::Latest, &c, 2, 10);
    assert_eq!(
        offsets(&c.next(5).await),
        vec![0, 1, 2, 3, 4],
        "a corrupt position starts from the earliest message"
    );
}

#[tokio::test(start_paused = true)]
async fn flush_writes_the_positions_of_running_groups() {
    let f = Fixture::new(Settings::default());
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..2);
    a.next(2).await;
    m.ack(&[0, 1]);
    f.committed_reaches("g", 2).await;
    f.groups().flush();
    let file = f.dir.path().join("t/groups/g.offset");
    assert_eq!(std::fs::read(file).unwrap(), b"2\n");
}

#[tokio::test(start_paused = true)]
async fn a_group_behind_retention_skips_to_the_first_offset_the_log_holds() {
    let f = Fixture::new(Settings {
        segment_bytes: 64,
        retention_messages: Some(2),
        ..Settings::default()
    });
    let a = RecordingSink::new();
    let m = f.join("g", StartAt::Earliest, &a, 1, 10);
    f.publish(0..1);
    assert_eq!(offsets(&a.next(1).await), vec![0]);
    drop(m);
    settle().await;
    for i in 1..10 {
        f.publish(i..i + 1);
    }
    assert!(f.log.enforce_retention() > 0);
    let first = f.log.figures().first_offset;
    assert!(first > 1, "retention deleted what the group had not read");

    let b = RecordingSink::new();
    let _m = f.join("g", StartAt::Earliest, &b, 2, 100);
    let expected: Vec<u64> = (first..10).collect();
    let got = b.next(expected.len()).await;
    assert_eq!(offsets(&got), expected);
    assert_eq!(f.committed("g"), first);
}

#[tokio::test(start_paused = true)]
async fn deliveries_through_an_outbox_are_deliver_envelope_frames_with_the_offset() {
    let f = Fixture::new(Settings::default());
    let outbox = Arc::new(Outbox::new());
    let _m = f
        .try_join(
            "g",
            StartAt::Earliest,
            Arc::clone(&outbox) as Arc<dyn Delivery>,
            (1 << 30) | 5,
            10,
        )
        .unwrap();
    f.publish(0..2);
    let mut frames = Vec::new();
    within("two frames", async {
        while frames.len() < 2 {
            frames.extend(crate::core::topic::test_support::drain_kinds(&outbox));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    for (i, (frame_kind, body)) in frames.iter().enumerate() {
        assert_eq!(*frame_kind, kind::DELIVER_ENVELOPE);
        let view = EnvelopeView::parse(body).unwrap();
        assert_eq!(view.offset, Some(i as u64));
        assert_eq!(view.payload, format!("m{i}").as_bytes());
    }
}

#[tokio::test(start_paused = true)]
async fn joining_checks_the_group_name() {
    let f = Fixture::new(Settings::default());
    for bad in ["", "a b", "é", &"x".repeat(249)] {
        let sink = RecordingSink::new() as Arc<dyn Delivery>;
        assert!(
            matches!(
                f.try_join(bad, StartAt::Earliest, sink, 1, 1),
                Err(JoinError::BadName { .. })
            ),
            "{bad:?}"
        );
    }
    let sink = RecordingSink::new() as Arc<dyn Delivery>;
    assert!(f
        .try_join(&"x".repeat(248), StartAt::Earliest, sink, 1, 1)
        .is_ok());
}

#[test]
fn joining_outside_a_runtime_is_refused() {
    let f = Fixture::new(Settings::default());
    let sink = RecordingSink::new() as Arc<dyn Delivery>;
    assert!(matches!(
        f.try_join("g", StartAt::Earliest, sink, 1, 1),
        Err(JoinError::NoRuntime(_))
    ));
}
