//! [`SubjectTrie`]: values keyed by subject patterns, found by a concrete topic name.
//!
//! - One node per distinct pattern prefix: each node keys its literal next tokens in a map and
//!   has its own `*` child and the values of the patterns that end in `>` there, so a lookup
//!   walks the name's tokens, following at each step the literal child, the `*` child and the
//!   `>` values. Patterns that share no prefix with the name cost nothing beyond a map miss.
//! - A lookup allocates nothing; values are visited in no particular order, once per
//!   insertion (two insertions of one value under one pattern are visited twice).
//! - Removing the last value below a node removes the node, and maps and lists that shrank to
//!   a quarter of their capacity give memory back, so churn does not grow the trie.

use std::collections::HashMap;
use std::str::Split;

use super::pattern::{has_empty_token, Pattern, Token};

/// Values stored under subject patterns, looked up by concrete topic names.
///
/// ```
/// use mycelium_broker::{Pattern, SubjectTrie};
///
/// let star: Pattern = "orders.*".parse()?;
/// let mut trie = SubjectTrie::new();
/// trie.insert(&star, (7u64, 1u32));
/// trie.insert(&star, (8u64, 1u32));
///
/// let mut hits = 0;
/// trie.for_each_match("orders.eu", |_| hits += 1);
/// assert_eq!(hits, 2);
///
/// assert_eq!(trie.remove(&star, |&(conn, _)| conn == 7), Some((7, 1)));
/// assert_eq!(trie.len(), 1);
/// # Ok::<(), mycelium_broker::PatternParseError>(())
/// ```
#[derive(Debug)]
pub struct SubjectTrie<V> {
    root: Node<V>,
    /// Values held, over every pattern.
    len: usize,
}

/// The patterns sharing one prefix of tokens.
#[derive(Debug)]
struct Node<V> {
    /// Values of the patterns that end exactly here.
    values: Vec<V>,
    /// The next token when it is a literal.
    children: HashMap<Box<str>, Node<V>>,
    /// The next token when it is `*`.
    star: Option<Box<Node<V>>>,
    /// Values of the patterns whose next and last token is `>`: they match whatever non-empty
    /// rest a name has, so they need no node of their own.
    gt: Vec<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            children: HashMap::new(),
            star: None,
            gt: Vec::new(),
        }
    }
}

impl<V> Node<V> {
    /// Whether nothing is stored here or below: the node can go.
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.gt.is_empty()
            && self.star.is_none()
            && self.children.is_empty()
    }

    /// Visits the values of the patterns matching `token` followed by `rest`.
    fn visit<F: FnMut(&V)>(&self, token: &str, mut rest: Split<'_, char>, f: &mut F) {
        self.gt.iter().for_each(&mut *f);
        let next = rest.next();
        if let Some(star) = &self.star {
            star.visit_rest(next, rest.clone(), f);
        }
        if let Some(child) = self.children.get(token) {
            child.visit_rest(next, rest, f);
        }
    }

    /// Visits this node's values when the name has ended, or goes on with its next token.
    fn visit_rest<F: FnMut(&V)>(&self, next: Option<&str>, rest: Split<'_, char>, f: &mut F) {
        match next {
            None => self.values.iter().for_each(f),
            Some(token) => self.visit(token, rest, f),
        }
    }

    /// Takes one value matching `pred` from the pattern `tokens` below this node, and drops the
    /// nodes that leaves empty.
    fn remove<'p>(
        &mut self,
        mut tokens: impl Iterator<Item = Token<'p>>,
        pred: &mut impl FnMut(&V) -> bool,
    ) -> Option<V> {
        match tokens.next() {
            None => take(&mut self.values, pred),
            Some(Token::Gt) => take(&mut self.gt, pred),
            Some(Token::Star) => {
                let star = self.star.as_mut()?;
                let value = star.remove(tokens, pred);
                if star.is_empty() {
                    self.star = None;
                }
                value
            }
            Some(Token::Literal(token)) => {
                let child = self.children.get_mut(token)?;
                let value = child.remove(tokens, pred);
                if child.is_empty() {
                    self.children.remove(token);
                    if sparse(self.children.len(), self.children.capacity()) {
                        self.children.shrink_to(self.children.len() * 2);
                    }
                }
                value
            }
        }
    }

    /// Nodes here and below, this one included.
    #[cfg(test)]
    fn count(&self) -> usize {
        1 + self.star.as_ref().map_or(0, |star| star.count())
            + self.children.values().map(Node::count).sum::<usize>()
    }
}

/// Removes the first value matching `pred` from `values`.
fn take<V>(values: &mut Vec<V>, pred: &mut impl FnMut(&V) -> bool) -> Option<V> {
    let at = values.iter().position(pred)?;
    let value = values.swap_remove(at);
    if sparse(values.len(), values.capacity()) {
        values.shrink_to(values.len() * 2);
    }
    Some(value)
}

/// Whether a collection uses a quarter of its capacity or less, and the capacity is worth
/// giving back (small ones are left alone, so one insert-remove cycle does not reallocate).
fn sparse(len: usize, capacity: usize) -> bool {
    capacity > 8 && len * 4 <= capacity
}

impl<V> Default for SubjectTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SubjectTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }

    /// Stores `value` under `pattern`, beside any values already there.
    pub fn insert(&mut self, pattern: &Pattern, value: V) {
        let mut node = &mut self.root;
        for token in pattern.tokens() {
            match token {
                Token::Gt => {
                    // A parsed pattern has `>` only as its last token.
                    node.gt.push(value);
                    self.len += 1;
                    return;
                }
                Token::Star => node = node.star.get_or_insert_with(Box::default),
                Token::Literal(token) => {
                    // Looked up before inserting, so that a token already present costs no
                    // allocation of its key.
                    if !node.children.contains_key(token) {
                        node.children.insert(token.into(), Node::default());
                    }
                    node = node
                        .children
                        .get_mut(token)
                        .expect("the child exists: it was there or was inserted just above");
                }
            }
        }
        node.values.push(value);
        self.len += 1;
    }

    /// Removes and returns one value stored under `pattern` for which `pred` holds, or `None`
    /// when there is none. Nodes left empty are dropped.
    pub fn remove(&mut self, pattern: &Pattern, mut pred: impl FnMut(&V) -> bool) -> Option<V> {
        let value = self.root.remove(pattern.tokens(), &mut pred)?;
        self.len -= 1;
        Some(value)
    }

    /// Calls `f` with every value whose pattern matches the concrete topic name `topic`.
    ///
    /// A name with an empty token (`a..b`) matches nothing.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&V)) {
        if self.len == 0 || has_empty_token(topic) {
            return;
        }
        let mut tokens = topic.split('.');
        // A name that is not empty has a first token.
        if let Some(first) = tokens.next() {
            self.root.visit(first, tokens, &mut f);
        }
    }

    /// Values stored, over all patterns.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes in the trie, the root included.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.root.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::subject::pattern::matching::TABLE;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The values matching `name`, sorted.
    fn hits<V: Clone + Ord>(trie: &SubjectTrie<V>, name: &str) -> Vec<V> {
        let mut found = Vec::new();
        trie.for_each_match(name, |v| found.push(v.clone()));
        found.sort();
        found
    }

    #[test]
    fn agrees_with_the_matching_table() {
        for &(text, name, expected) in TABLE {
            let mut trie = SubjectTrie::new();
            trie.insert(&pattern(text), ());
            assert_eq!(
                hits(&trie, name).len(),
                usize::from(expected),
                "{text:?} against {name:?}"
            );
        }
    }

    #[test]
    fn finds_every_pattern_matching_one_name() {
        let matching = [
            "orders.eu.created",
            "orders.*.created",
            "orders.eu.*",
            "orders.*.*",
            "*.eu.created",
            "*.*.*",
            "orders.>",
            "orders.eu.>",
            "*.>",
            "*.eu.>",
            ">",
        ];
        let missing = [
            "orders",
            "orders.*",
            "orders.eu",
            "*.*",
            "*",
            "a.>",
            "orders.us.>",
            "orders.eu.created.>",
            "orders.eu.created.x",
            "orders.*.updated",
            "*.*.*.*",
            "created.>",
        ];
        let mut trie = SubjectTrie::new();
        for (i, text) in matching.iter().chain(&missing).enumerate() {
            trie.insert(&pattern(text), i);
        }
        assert_eq!(trie.len(), matching.len() + missing.len());
        let expected: Vec<usize> = (0..matching.len()).collect();
        assert_eq!(hits(&trie, "orders.eu.created"), expected);
    }

    #[test]
    fn gt_needs_a_token_after_its_prefix() {
        let mut trie = SubjectTrie::new();
        trie.insert(&pattern("a.>"), 1);
        trie.insert(&pattern(">"), 2);
        assert_eq!(hits(&trie, "a"), [2]);
        assert_eq!(hits(&trie, "a.b"), [1, 2]);
        assert_eq!(hits(&trie, "a.b.c.d"), [1, 2]);
        assert_eq!(hits(&trie, "b"), [2]);
    }

    #[test]
    fn star_star_needs_exactly_two_tokens() {
        let mut trie = SubjectTrie::new();
        trie.insert(&pattern("*.*"), 1);
        assert_eq!(hits(&trie, "a.b"), [1]);
        assert!(hits(&trie, "a").is_empty());
        assert!(hits(&trie, "a.b.c").is_empty());
    }

    #[test]
    fn literal_patterns_match_only_their_name() {
        let mut trie = SubjectTrie::new();
        trie.insert(&pattern("orders.eu"), 1);
        trie.insert(&pattern("orders"), 2);
        assert_eq!(hits(&trie, "orders.eu"), [1]);
        assert_eq!(hits(&trie, "orders"), [2]);
        assert!(hits(&trie, "orders.eu.x").is_empty());
        assert!(hits(&trie, "orders.us").is_empty());
    }

    #[test]
    fn names_with_empty_tokens_match_nothing() {
        let mut trie = SubjectTrie::new();
        for text in [">", "*", "a.>", "*.*", "a.*"] {
            trie.insert(&pattern(text), text);
        }
        for name in ["", ".", "a.", ".a", "a..b", "a.b."] {
            assert!(hits(&trie, name).is_empty(), "{name:?}");
        }
    }

    #[test]
    fn one_value_per_insertion() {
        let mut trie = SubjectTrie::new();
        let p = pattern("orders.*");
        trie.insert(&p, (1, 10));
        trie.insert(&p, (1, 10));
        trie.insert(&p, (2, 10));
        assert_eq!(hits(&trie, "orders.eu"), [(1, 10), (1, 10), (2, 10)]);
        assert_eq!(trie.remove(&p, |v| *v == (1, 10)), Some((1, 10)));
        assert_eq!(hits(&trie, "orders.eu"), [(1, 10), (2, 10)]);
    }

    #[test]
    fn remove_takes_the_value_the_predicate_picks() {
        let mut trie = SubjectTrie::new();
        let p = pattern("a.*.>");
        for id in 0..5 {
            trie.insert(&p, id);
        }
        assert_eq!(trie.remove(&p, |&id| id == 3), Some(3));
        assert_eq!(trie.remove(&p, |&id| id == 3), None);
        assert_eq!(trie.len(), 4);
        assert_eq!(hits(&trie, "a.b.c"), [0, 1, 2, 4]);
    }

    #[test]
    fn remove_of_an_absent_pattern_changes_nothing() {
        let mut trie = SubjectTrie::new();
        trie.insert(&pattern("a.b"), 1);
        let nodes = trie.node_count();
        for text in ["a", "a.b.c", "a.*", "a.>", "*.b", "x.y", ">"] {
            assert_eq!(trie.remove(&pattern(text), |_| true), None, "{text:?}");
        }
        assert_eq!(trie.remove(&pattern("a.b"), |&v| v == 2), None);
        assert_eq!(trie.node_count(), nodes);
        assert_eq!(trie.len(), 1);
    }

    #[test]
    fn removing_prunes_the_nodes_left_empty() {
        let mut trie = SubjectTrie::new();
        let deep = pattern("a.b.c.d");
        let star = pattern("a.*.c");
        let gt = pattern("a.b.>");
        trie.insert(&deep, 1);
        // root, a, a.b, a.b.c, a.b.c.d
        assert_eq!(trie.node_count(), 5);
        trie.insert(&star, 2);
        // + a.*, a.*.c
        assert_eq!(trie.node_count(), 7);
        trie.insert(&gt, 3);
        // `>` lives in a.b's node.
        assert_eq!(trie.node_count(), 7);

        assert_eq!(trie.remove(&deep, |_| true), Some(1));
        // a.b stays for a.b.>; a.b.c and a.b.c.d go.
        assert_eq!(trie.node_count(), 5);
        assert_eq!(trie.remove(&gt, |_| true), Some(3));
        // root, a, a.*, a.*.c
        assert_eq!(trie.node_count(), 4);
        assert_eq!(trie.remove(&star, |_| true), Some(2));
        assert_eq!(trie.node_count(), 1);
        assert!(trie.is_empty());
        assert!(hits(&trie, "a.b.c").is_empty());
    }

    #[test]
    fn churn_leaves_no_memory_behind() {
        let mut trie = SubjectTrie::new();
        let keep = pattern("keep.>");
        trie.insert(&keep, usize::MAX);
        let patterns: Vec<Pattern> = (0..2000)
            .map(|i| pattern(&format!("t{i}.*.x{}", i % 7)))
            .collect();
        for round in 0..3 {
            for (i, p) in patterns.iter().enumerate() {
                trie.insert(p, i);
            }
            assert_eq!(trie.len(), patterns.len() + 1, "round {round}");
            for (i, p) in patterns.iter().enumerate() {
                assert_eq!(trie.remove(p, |&v| v == i), Some(i));
            }
            // root, keep
            assert_eq!(trie.node_count(), 2, "round {round}");
            assert!(trie.root.children.capacity() <= 16, "round {round}");
        }
        assert_eq!(hits(&trie, "keep.it"), [usize::MAX]);
    }

    mod against_brute_force {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// A pattern over a small alphabet, so that many patterns match many names.
        fn pattern_text() -> impl Strategy<Value = String> {
            let token = prop_oneof![
                3 => prop::sample::select(vec!["a", "b", "c"]),
                2 => Just("*"),
            ];
            (vec(token, 0..5), any::<bool>()).prop_filter_map(
                "a pattern has a token",
                |(tokens, gt)| {
                    let mut tokens = tokens;
                    if gt {
                        tokens.push(">");
                    }
                    (!tokens.is_empty()).then(|| tokens.join("."))
                },
            )
        }

        /// A concrete name, now and then with an empty token.
        fn name() -> impl Strategy<Value = String> {
            let token = prop_oneof![
                10 => prop::sample::select(vec!["a", "b", "c", "d"]),
                1 => Just(""),
            ];
            vec(token, 1..7).prop_map(|tokens| tokens.join("."))
        }

        fn brute_force(patterns: &[Option<Pattern>], name: &str) -> Vec<usize> {
            patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| p.as_ref().is_some_and(|p| p.matches(name)))
                .map(|(i, _)| i)
                .collect()
        }

        proptest! {
            #[test]
            fn trie_finds_what_matches_finds(
                texts in vec(pattern_text(), 1..40),
                names in vec(name(), 1..40),
                removals in vec(any::<prop::sample::Index>(), 0..40),
            ) {
                let mut patterns: Vec<Option<Pattern>> =
                    texts.iter().map(|t| Some(pattern(t))).collect();
                let mut trie = SubjectTrie::new();
                for (i, p) in patterns.iter().enumerate() {
                    if let Some(p) = p {
                        trie.insert(p, i);
                    }
                }
                for name in &names {
                    prop_assert_eq!(hits(&trie, name), brute_force(&patterns, name), "{}", name);
                }

                for index in removals {
                    let i = index.index(patterns.len());
                    let removed = patterns[i].take().and_then(|p| trie.remove(&p, |&v| v == i));
                    let expected = texts[i].as_str();
                    prop_assert!(removed.is_none() || removed == Some(i), "{}", expected);
                }
                let left = patterns.iter().flatten().count();
                prop_assert_eq!(trie.len(), left);
                for name in &names {
                    prop_assert_eq!(hits(&trie, name), brute_force(&patterns, name), "{}", name);
                }

                for (i, p) in patterns.iter().enumerate() {
                    if let Some(p) = p {
                        prop_assert_eq!(trie.remove(p, |&v| v == i), Some(i));
                    }
                }
                prop_assert!(trie.is_empty());
                prop_assert_eq!(trie.node_count(), 1);
            }
        }
    }
}
