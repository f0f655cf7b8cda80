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
//! Run with `cargo bench --bench subject`.

use std::hint::black_box;

use criterion::Criterion;
use mycelium_broker::{Pattern, SubjectTrie};

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

// `criterion_group!` would generate an undocumented `pub fn`, which the workspace lints flag.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    for bench in [lookups, churn] {
        bench(&mut c);
    }
    c.final_summary();
}
