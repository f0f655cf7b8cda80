//! Wildcard matching: the cost of finding the pattern subscriptions a topic name reaches, with
//! [`PATTERNS`] patterns in a [`SubjectTrie`].
//!
//! - `lookup/none_of_10000`: no pattern matches the name. The patterns share its prefixes in
//!   every way a trie walk has to try (the same first token, a `*` in its place, a `>` below
//!   it) and differ further down, so the figure is the walk, not a miss at the root.
//! - `lookup/one_of_10000`: the same patterns and one that matches.
//! - `lookup/empty`: an empty trie, the floor.
//! - `scan/none_of_10000`: [`Pattern::matches`] over every pattern, what the trie saves.
//! - `churn/*`: one insert and one remove in the trie of 10 000, under a prefix that exists
//!   (`existing_prefix`: only the value list changes) or a new one (`new_prefix`: three nodes
//!   are made and pruned).
//!
//! - `route/*`: what a publish costs once patterns are in place (matching happens at topic
//!   creation, so this is the routing itself): a batch of [`ROUTED`] 64-byte messages published
//!   on a topic with one plain subscriber (`plain_subscriber`), with that subscriber's place
//!   taken by a pattern subscription matching among 10 000 that do not
//!   (`pattern_among_10000`: each message is enveloped with its topic for the pattern), and
//!   with no subscriber but 10 000 patterns that do not match (`no_match_among_10000`, against
//!   `no_subscriber`). Per message: divide by [`ROUTED`].
//!
//! Run with `cargo bench --bench subject`.

use std::hint::black_box;

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use mycelium_broker::{
    Pattern, PatternSubscription, PeerIdentity, PublishCursor, SubjectTrie, Topic, TopicRegistry,
};
use mycelium_config::TopicDefaults;
use mycelium_transport::outbox::{Drained, Outbox};

/// Patterns in the trie.
const PATTERNS: usize = 10_000;

/// The topic name looked up.
const NAME: &str = "orders.eu.created";

/// A pattern that matches [`NAME`] and no other pattern in the set.
const MATCHING: &str = "orders.*.created";

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).expect("the bench's patterns are valid")
}

/// [`PATTERNS`] patterns, none matching [`NAME`], spread over the branches its walk visits.
fn non_matching() -> Vec<Pattern> {
    (0..PATTERNS)
        .map(|i| match i % 5 {
            0 => format!("svc{i}.*"),
            1 => format!("orders.*.t{i}"),
            2 => format!("orders.r{i}.>"),
            3 => format!("*.x{i}.*"),
            _ => format!("orders.eu.created{i}.>"),
        })
        .map(|text| pattern(&text))
        .collect()
}

fn trie_of(patterns: &[Pattern]) -> SubjectTrie<(u64, u32)> {
    let mut trie = SubjectTrie::new();
    for (i, p) in patterns.iter().enumerate() {
        trie.insert(p, (i as u64, 1));
    }
    trie
}

/// Calls to the visitor: the matches found.
fn lookup(trie: &SubjectTrie<(u64, u32)>, name: &str) -> usize {
    let mut found = 0;
    trie.for_each_match(name, |v| {
        black_box(v);
        found += 1;
    });
    found
}

fn lookups(c: &mut Criterion) {
    let patterns = non_matching();
    let mut group = c.benchmark_group("lookup");

    let empty = SubjectTrie::new();
    group.bench_function("empty", |b| b.iter(|| lookup(&empty, black_box(NAME))));

    let mut trie = trie_of(&patterns);
    assert_eq!(lookup(&trie, NAME), 0);
    group.bench_function("none_of_10000", |b| {
        b.iter(|| lookup(&trie, black_box(NAME)))
    });

    trie.insert(&pattern(MATCHING), (u64::MAX, 1));
    assert_eq!(lookup(&trie, NAME), 1);
    group.bench_function("one_of_10000", |b| {
        b.iter(|| lookup(&trie, black_box(NAME)))
    });
    group.finish();

    let mut group = c.benchmark_group("scan");
    group.bench_function("none_of_10000", |b| {
        b.iter(|| {
            patterns
                .iter()
                .filter(|p| p.matches(black_box(NAME)))
                .count()
        })
    });
    group.finish();
}

fn churn(c: &mut Criterion) {
    let mut trie = trie_of(&non_matching());
    let mut group = c.benchmark_group("churn");
    for (label, text) in [
        ("existing_prefix", "orders.*.t1"),
        ("new_prefix", "fresh.*.churn"),
    ] {
        let p = pattern(text);
        group.bench_function(label, |b| {
            b.iter(|| {
                trie.insert(&p, (u64::MAX, 7));
                trie.remove(&p, |v| v.1 == 7)
            })
        });
    }
    group.finish();
    assert_eq!(trie.len(), PATTERNS);
}

/// Messages per routed batch.
const ROUTED: usize = 1000;

/// A registry with topic [`NAME`] and, if `patterns`, [`PATTERNS`] pattern subscriptions that
/// do not match it; `subscriber` adds one plain subscriber or one matching pattern.
fn routing_setup(patterns: bool, subscriber: Option<bool>) -> (Arc<Topic>, Arc<Outbox>) {
    let registry = TopicRegistry::new(TopicDefaults {
        auto_create: true,
        buffer_size: 1_000_000,
        ..TopicDefaults::default()
    });
    let outbox = Arc::new(Outbox::new());
    let subscription = |pattern: Pattern, key: u32| {
        PatternSubscription::new(
            pattern,
            key,
            Arc::new(PeerIdentity::new(0, 0, 0)),
            outbox.clone(),
            1_000_000,
            0,
            None,
        )
    };
    if patterns {
        for (i, p) in non_matching().into_iter().enumerate() {
            registry.subscribe_pattern(&subscription(p, (1 << 31) | i as u32));
        }
    }
    let topic = registry.resolve(NAME).expect("auto-created");
    match subscriber {
        Some(true) => registry.subscribe_pattern(&subscription(pattern(MATCHING), u32::MAX - 1)),
        Some(false) => {
            topic.subscribe(registry.next_subscriber_id(), outbox.clone(), 1_000_000, 0);
        }
        None => {}
    }
    (topic, outbox)
}

fn route(c: &mut Criterion) {
    let payload = [7u8; 64];
    let batch: Vec<&[u8]> = vec![&payload[..]; ROUTED];
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(ROUTED as u64));
    for (name, patterns, subscriber) in [
        ("no_subscriber", false, None),
        ("no_match_among_10000", true, None),
        ("plain_subscriber", false, Some(false)),
        ("pattern_among_10000", true, Some(true)),
    ] {
        let (topic, outbox) = routing_setup(patterns, subscriber);
        let mut drained = Drained::default();
        let mut chunks = std::collections::VecDeque::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let progress =
                    topic.publish(black_box(batch.as_slice()), &mut PublishCursor::default());
                black_box(progress);
                // What a connection's writer does: take everything queued, hand it on.
                outbox.take(&mut drained);
                drained.drain_chunks(&mut chunks);
                chunks.clear();
            })
        });
        let expected = if subscriber.is_some() { 1 } else { 0 };
        assert_eq!(topic.subscriber_count(), expected, "{name}");
    }
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`, which the workspace lints flag.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    for bench in [lookups, churn, route] {
        bench(&mut c);
    }
    c.final_summary();
}
