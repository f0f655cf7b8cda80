//! Headers: string keys and values on a message, owned for publishing ([`Headers`]) and
//! borrowed from received bytes for reading ([`HeaderIter`]).
//!
//! - A key is 1 to 255 bytes of HTTP token characters (`A-Z a-z 0-9` and
//!   ``! # $ % & ' * + - . ^ _ ` | ~``), so headers map onto HTTP and back without escaping; a
//!   value is any UTF-8 of at most 65535 bytes. Keys are case-sensitive and may repeat.
//! - [`Headers::insert`] refuses a bad key or value at once with a [`HeaderError`] naming it;
//!   the count and total size are bounded per topic by the broker (`max_headers`,
//!   `max_header_bytes`), which the client checks before sending.

use bytes::BufMut;

/// Why a header cannot be carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The key is empty.
    #[error("a header key must not be empty")]
    EmptyKey,
    /// The key is longer than 255 bytes.
    #[error("header key of {len} bytes is longer than 255")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The key holds a character outside the HTTP token set.
    #[error(
        "header key {key:?} has {found:?}: keys are A-Z a-z 0-9 and ! # $ % & ' * + - . ^ _ ` | ~"
    )]
    BadKeyCharacter {
        /// The key.
        key: String,
        /// The first character not allowed.
        found: char,
    },
    /// The value is longer than 65535 bytes.
    #[error("value of header {key:?} is {len} bytes, longer than 65535")]
    ValueTooLong {
        /// The key.
        key: String,
        /// The value's length in bytes.
        len: usize,
    },
    /// More than 65535 headers.
    #[error("more than 65535 headers")]
    TooMany,
}

/// Whether `byte` may appear in a header key (an HTTP token character).
pub(crate) fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Checks a key: 1-255 token characters.
pub(crate) fn check_key(key: &str) -> Result<(), HeaderError> {
    if key.is_empty() {
        return Err(HeaderError::EmptyKey);
    }
    if key.len() > 255 {
        return Err(HeaderError::KeyTooLong { len: key.len() });
    }
    if let Some(found) = key
        .chars()
        .find(|&c| !c.is_ascii() || !is_key_byte(c as u8))
    {
        return Err(HeaderError::BadKeyCharacter {
            key: key.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Headers to publish with a message, in insertion order.
///
/// ```
/// use mycelium_transport::envelope::Headers;
///
/// let mut headers = Headers::new();
/// headers.insert("trace-id", "4bf92f35")?;
/// headers.insert("content-type", "application/json")?;
/// assert_eq!(headers.get("trace-id"), Some("4bf92f35"));
/// assert!(headers.insert("bad key", "x").is_err());
/// # Ok::<(), mycelium_transport::envelope::HeaderError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
    /// Bytes of every key and value (what `max_header_bytes` bounds).
    bytes: usize,
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Adds a header after the others (a key may repeat).
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<&mut Headers, HeaderError> {
        let (key, value) = (key.into(), value.into());
        check_key(&key)?;
        if value.len() > usize::from(u16::MAX) {
            return Err(HeaderError::ValueTooLong {
                len: value.len(),
                key,
            });
        }
        if self.entries.len() == usize::from(u16::MAX) {
            return Err(HeaderError::TooMany);
        }
        self.bytes += key.len() + value.len();
        self.entries.push((key, value));
        Ok(self)
    }

    /// The first value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every header in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all keys and values together: what a topic's `max_header_bytes` bounds.
    pub fn byte_len(&self) -> usize {
        self.bytes
    }

    /// Bytes of the encoded block: count, and per header the two length prefixes.
    pub(crate) fn encoded_len(&self) -> usize {
        2 + self.entries.len() * 3 + self.bytes
    }

    pub(crate) fn put(&self, dst: &mut impl BufMut) {
        // Counts and lengths were bounded by `insert`.
        dst.put_u16_le(self.entries.len() as u16);
        for (key, value) in &self.entries {
            dst.put_u8(key.len() as u8);
            dst.put_slice(key.as_bytes());
            dst.put_u16_le(value.len() as u16);
            dst.put_slice(value.as_bytes());
        }
    }
}

impl<K: Into<String>, V: Into<String>> TryFrom<Vec<(K, V)>> for Headers {
    type Error = HeaderError;
    fn try_from(pairs: Vec<(K, V)>) -> Result<Headers, HeaderError> {
        let mut headers = Headers::new();
        for (k, v) in pairs {
            headers.insert(k, v)?;
        }
        Ok(headers)
    }
}

/// The headers of a received message, read from its bytes (which were checked when it
/// arrived).
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    /// The entries not yet handed out (after the count).
    rest: &'a [u8],
    left: u16,
}

impl<'a> HeaderIter<'a> {
    /// Over a header block already checked by [`EnvelopeView::parse`](super::EnvelopeView::parse).
    pub(crate) fn new(block: &'a [u8], count: u16) -> HeaderIter<'a> {
        HeaderIter {
            rest: block,
            left: count,
        }
    }

    /// Headers not yet handed out.
    pub fn remaining(&self) -> usize {
        usize::from(self.left)
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.left == 0 {
            return None;
        }
        // The block was checked whole when the message arrived; a failure here can only mean
        // a block that was not, and ends the iteration rather than panicking.
        let (key, rest) = split_str(self.rest, 1)?;
        let (value, rest) = split_str(rest, 2)?;
        self.rest = rest;
        self.left -= 1;
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

/// Splits a string with a `prefix`-byte little-endian length off the front of `bytes`.
fn split_str(bytes: &[u8], prefix: usize) -> Option<(&str, &[u8])> {
    let (len, rest) = bytes.split_at_checked(prefix)?;
    let len = match *len {
        [n] => usize::from(n),
        [a, b] => usize::from(u16::from_le_bytes([a, b])),
        _ => return None,
    };
    let (text, rest) = rest.split_at_checked(len)?;
    Some((std::str::from_utf8(text).ok()?, rest))
}
