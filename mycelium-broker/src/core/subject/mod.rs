//! Subject patterns: wildcard topic names and the token trie that finds every pattern matching
//! a concrete topic name.
//!
//! - Names are split on `.` into tokens. A pattern's tokens are never empty; `*` stands for
//!   exactly one token and `>` for one or more, only as the last token. Both stand alone
//!   between dots (`orders.a*` is not a pattern). These are NATS subject semantics.
//! - A concrete name is matched token by token. A topic name with an empty token (`a..b`,
//!   `.a`, `a.`: legal topic names) is matched by no pattern, since no pattern has an empty
//!   token and wildcards stand for non-empty tokens.
//! - [`Pattern::matches`] tests one pattern; [`SubjectTrie`] holds many and visits those that
//!   match a name at the cost of a walk down the name's tokens, whatever the number of patterns
//!   that do not match.
//!
//! ```
//! use mycelium_broker::{Pattern, SubjectTrie};
//!
//! let mut trie = SubjectTrie::new();
//! trie.insert(&"orders.*".parse::<Pattern>()?, 1);
//! trie.insert(&"orders.>".parse::<Pattern>()?, 2);
//! trie.insert(&"billing.>".parse::<Pattern>()?, 3);
//!
//! let mut hits = Vec::new();
//! trie.for_each_match("orders.eu.created", |v| hits.push(*v));
//! assert_eq!(hits, [2]);
//! # Ok::<(), mycelium_broker::PatternParseError>(())
//! ```

mod pattern;
mod trie;

pub use pattern::{Pattern, PatternParseError, MAX_PATTERN_LEN};
pub use trie::SubjectTrie;
