//! [`Pattern`]: a validated subject pattern, and [`PatternParseError`], what is wrong with one.
//!
//! - A pattern is 1 to [`MAX_PATTERN_LEN`] bytes of `[A-Za-z0-9._-]` and the wildcards `*`
//!   and `>`, split on `.` into non-empty tokens.
//! - `*` matches exactly one token, `>` one or more and only as the last token; both stand
//!   alone as a whole token. A pattern without either is literal: a plain topic name.
//!
//! ```
//! use mycelium_broker::{Pattern, PatternParseError};
//!
//! let p: Pattern = "orders.*.created".parse()?;
//! assert!(p.matches("orders.eu.created"));
//! assert!(!p.matches("orders.eu.west.created"));
//! assert!(!p.is_literal());
//! assert_eq!(Pattern::parse("orders.>.x"), Err(PatternParseError::GtNotLast));
//! # Ok::<(), PatternParseError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// Longest pattern in bytes: 255, the longest topic name, since a literal pattern is one.
pub const MAX_PATTERN_LEN: usize = mycelium_config::MAX_TOPIC_NAME_LEN;

/// What is wrong with a pattern that [`Pattern::parse`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternParseError {
    /// The pattern is the empty string.
    #[error("pattern is empty")]
    Empty,
    /// The pattern is longer than [`MAX_PATTERN_LEN`] bytes.
    #[error("pattern is {len} bytes long, at most {MAX_PATTERN_LEN} allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9._-]` and the wildcards `*` and `>`.
    #[error("invalid character {ch:?} at byte {at}: patterns use [A-Za-z0-9._-] and the wildcards * and >")]
    InvalidCharacter {
        /// The character.
        ch: char,
        /// Its byte offset in the pattern.
        at: usize,
    },
    /// Two dots in a row, or a dot at either end.
    #[error("empty token at byte {at}: every token between dots must have at least one character")]
    EmptyToken {
        /// Byte offset where the empty token is (the start of the pattern, just after a dot, or
        /// its end).
        at: usize,
    },
    /// `*` or `>` inside a token with other characters, as in `orders.a*`.
    #[error("wildcard inside token {token:?}: * and > must stand alone between dots")]
    WildcardInToken {
        /// The token.
        token: String,
    },
    /// `>` followed by more tokens: it matches the rest of a name, so it can only come last.
    #[error("> must be the last token")]
    GtNotLast,
}

/// One token of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// Matches a name token equal to it.
    Literal(&'a str),
    /// `*`: matches any one token.
    Star,
    /// `>`: matches one or more tokens; always the last.
    Gt,
}

impl<'a> Token<'a> {
    fn of(text: &'a str) -> Self {
        match text {
            "*" => Token::Star,
            ">" => Token::Gt,
            literal => Token::Literal(literal),
        }
    }
}

/// A validated subject pattern (`orders.*`, `orders.>`, or a plain topic name).
///
/// Built by [`Pattern::parse`] (or `str::parse`), so every `Pattern` keeps the rules of the
/// [module](crate::core::subject); its text is kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Box<str>,
    literal: bool,
}

impl Pattern {
    /// Checks `text` against the pattern rules.
    ///
    /// # Errors
    /// [`PatternParseError`] names the first rule broken: the length, a character, then the
    /// tokens from left to right.
    pub fn parse(text: &str) -> Result<Self, PatternParseError> {
        if text.is_empty() {
            return Err(PatternParseError::Empty);
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(PatternParseError::TooLong { len: text.len() });
        }
        if let Some((at, ch)) = text.char_indices().find(|&(_, ch)| !allowed(ch)) {
            return Err(PatternParseError::InvalidCharacter { ch, at });
        }
        let mut literal = true;
        let mut at = 0;
        let mut tokens = text.split('.').peekable();
        while let Some(token) = tokens.next() {
            if token.is_empty() {
                return Err(PatternParseError::EmptyToken { at });
            }
            if token.len() > 1 && token.contains(['*', '>']) {
                return Err(PatternParseError::WildcardInToken {
                    token: token.to_owned(),
                });
            }
            match Token::of(token) {
                Token::Literal(_) => {}
                Token::Star => literal = false,
                Token::Gt if tokens.peek().is_some() => return Err(PatternParseError::GtNotLast),
                Token::Gt => literal = false,
            }
            at += token.len() + 1;
        }
        Ok(Self {
            text: text.into(),
            literal,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard: it is a plain topic name and matches only itself.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Whether the concrete topic name `name` matches this pattern.
    ///
    /// A name with an empty token matches no pattern (see the [module](crate::core::subject) contract).
    pub fn matches(&self, name: &str) -> bool {
        if has_empty_token(name) {
            return false;
        }
        let mut names = name.split('.');
        for token in self.tokens() {
            let Some(name_token) = names.next() else {
                return false;
            };
            match token {
                Token::Gt => return true,
                Token::Star => {}
                Token::Literal(literal) if literal == name_token => {}
                Token::Literal(_) => return false,
            }
        }
        names.next().is_none()
    }

    /// The pattern's tokens, left to right.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = Token<'_>> + Clone {
        self.text.split('.').map(Token::of)
    }
}

/// Whether `ch` may appear in a pattern.
fn allowed(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '*' | '>')
}

/// Whether the name is empty or has an empty token: such a name is matched by no pattern.
pub(crate) fn has_empty_token(name: &str) -> bool {
    name.is_empty() || name.starts_with('.') || name.ends_with('.') || name.contains("..")
}

impl FromStr for Pattern {
    type Err = PatternParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Pattern {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod parse {
    use super::*;

    #[test]
    fn accepts_literals_and_whole_token_wildcards() {
        for text in [
            "a",
            "orders",
            "orders.eu-west.v2",
            "under_score.Mixed.123",
            "*",
            ">",
            "*.*",
            "orders.*",
            "orders.>",
            "*.b.>",
            &"n".repeat(MAX_PATTERN_LEN),
        ] {
            let pattern = Pattern::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(pattern.as_str(), text);
            assert_eq!(pattern.to_string(), text);
        }
    }

    #[test]
    fn literal_means_no_wildcard_token() {
        let literal = |text: &str| Pattern::parse(text).map(|p| p.is_literal());
        assert_eq!(literal("orders.eu"), Ok(true));
        assert_eq!(literal("a"), Ok(true));
        assert_eq!(literal("orders.*"), Ok(false));
        assert_eq!(literal("orders.>"), Ok(false));
        assert_eq!(literal("*.orders"), Ok(false));
    }

    #[test]
    fn refuses_empty_and_too_long() {
        assert_eq!(Pattern::parse(""), Err(PatternParseError::Empty));
        let long = "n".repeat(MAX_PATTERN_LEN + 1);
        assert_eq!(
            Pattern::parse(&long),
            Err(PatternParseError::TooLong {
                len: MAX_PATTERN_LEN + 1
            })
        );
    }

    #[test]
    fn refuses_characters_outside_the_set() {
        let cases = [
            ("a b", ' ', 1),
            ("orders/eu", '/', 6),
            ("a.#", '#', 2),
            ("é.a", 'é', 0),
            ("a.é", 'é', 2),
            ("a\0", '\0', 1),
        ];
        for (text, ch, at) in cases {
            assert_eq!(
                Pattern::parse(text),
                Err(PatternParseError::InvalidCharacter { ch, at }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_empty_tokens_naming_where() {
        for (text, at) in [(".", 0), (".a", 0), ("a.", 2), ("a..b", 2), ("a.b..>", 4)] {
            assert_eq!(
                Pattern::parse(text),
                Err(PatternParseError::EmptyToken { at }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_wildcards_inside_tokens() {
        for (text, token) in [
            ("orders.a*", "a*"),
            ("*a", "*a"),
            ("a.**", "**"),
            ("a.>>", ">>"),
            ("a.b>", "b>"),
            ("*>", "*>"),
        ] {
            assert_eq!(
                Pattern::parse(text),
                Err(PatternParseError::WildcardInToken {
                    token: token.into()
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_gt_before_the_end() {
        for text in [">.a", "a.>.b", ">.>", "a.>.*"] {
            assert_eq!(
                Pattern::parse(text),
                Err(PatternParseError::GtNotLast),
                "{text:?}"
            );
        }
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            Pattern::parse("orders.a*").unwrap_err().to_string(),
            "wildcard inside token \"a*\": * and > must stand alone between dots"
        );
        assert_eq!(
            Pattern::parse("a.>.b").unwrap_err().to_string(),
            "> must be the last token"
        );
    }
}

#[cfg(test)]
pub(crate) mod matching {
    use super::*;

    /// `(pattern, name, matches)`; the trie's tests check it holds there too.
    pub(crate) const TABLE: &[(&str, &str, bool)] = &[
        // Literal patterns: only the same name.
        ("orders", "orders", true),
        ("orders.eu", "orders.eu", true),
        ("orders.eu", "orders", false),
        ("orders", "orders.eu", false),
        ("orders.eu", "orders.us", false),
        ("orders.eu", "orders.eu.x", false),
        // `*`: exactly one token.
        ("orders.*", "orders.eu", true),
        ("orders.*", "orders", false),
        ("orders.*", "orders.eu.created", false),
        ("orders.*", "billing.eu", false),
        ("*", "orders", true),
        ("*", "orders.eu", false),
        ("*.*", "a.b", true),
        ("*.*", "a", false),
        ("*.*", "a.b.c", false),
        ("*.eu.*", "orders.eu.created", true),
        ("*.eu.*", "orders.us.created", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        // `>`: one or more tokens.
        ("orders.>", "orders.eu", true),
        ("orders.>", "orders.eu.created", true),
        ("orders.>", "orders", false),
        ("orders.>", "ordersx.eu", false),
        ("a.>", "a", false),
        (">", "a", true),
        (">", "a.b.c.d", true),
        ("*.>", "a", false),
        ("*.>", "a.b", true),
        ("a.*.>", "a.b", false),
        ("a.*.>", "a.b.c", true),
        // Token boundaries: a prefix of a token is not a token.
        ("order.*", "orders.eu", false),
        ("orders.e", "orders.eu", false),
        // Names with an empty token match nothing.
        (">", "", false),
        (">", ".", false),
        (">", "a..b", false),
        ("*", "", false),
        ("a.>", "a.", false),
        ("a.>", "a.b.", false),
        ("*.b", ".b", false),
    ];

    #[test]
    fn table() {
        for &(pattern, name, expected) in TABLE {
            let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
            assert_eq!(p.matches(name), expected, "{pattern:?} against {name:?}");
        }
    }
}
