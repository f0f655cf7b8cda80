//! What a topic does when a subscriber's buffer is full.
//!
//! - TOML and environment overrides accept `"block"`, `"drop_oldest"`, `"drop_newest"` and
//!   `"disconnect"`.
//! - The default is [`Backpressure::Block`]: nothing is lost unless the operator asks for it.
//! - `Display` prints the same lowercase snake-case spelling, so a printed value reads back unchanged.
//!
//! ```
//! use mycelium_config::Backpressure;
//!
//! assert_eq!("drop_newest".parse::<Backpressure>(), Ok(Backpressure::DropNewest));
//! assert_eq!(Backpressure::default().to_string(), "block");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// What a topic does when a subscriber has `buffer_size` messages waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backpressure {
    /// The publisher waits until the subscriber makes room: lossless, but a slow subscriber slows
    /// its publishers.
    #[default]
    Block,
    /// The subscriber's oldest waiting messages are dropped to make room for the new one, so a
    /// slow subscriber always holds the newest messages; publishers and other subscribers go
    /// on. Over shared memory the topic's rings overwrite their oldest frames, and a lapped
    /// subscriber is told how many messages it missed.
    DropOldest,
    /// The new message is dropped for that subscriber only; publishers and other subscribers go on.
    DropNewest,
    /// The subscriber that cannot keep up is disconnected; publishers and other subscribers go on.
    Disconnect,
}

impl Backpressure {
    /// The lowercase snake-case spelling used in TOML and in `Display`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backpressure::Block => "block",
            Backpressure::DropOldest => "drop_oldest",
            Backpressure::DropNewest => "drop_newest",
            Backpressure::Disconnect => "disconnect",
        }
    }
}

impl fmt::Display for Backpressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no backpressure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseBackpressureError {
    input: String,
}

impl fmt::Display for ParseBackpressureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown backpressure `{}`, expected `block`, `drop_oldest`, `drop_newest` or `disconnect`",
            self.input
        )
    }
}

impl std::error::Error for ParseBackpressureError {}

impl FromStr for Backpressure {
    type Err = ParseBackpressureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Backpressure::Block),
            "drop_oldest" => Ok(Backpressure::DropOldest),
            "drop_newest" => Ok(Backpressure::DropNewest),
            "disconnect" => Ok(Backpressure::Disconnect),
            _ => Err(ParseBackpressureError {
                input: s.to_owned(),
            }),
        }
    }
}

// Hand-written rather than derived so TOML and environment overrides share one parser and one
// error message.
impl<'de> Deserialize<'de> for Backpressure {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_round_trips_through_display() {
        for policy in [
            Backpressure::Block,
            Backpressure::DropOldest,
            Backpressure::DropNewest,
            Backpressure::Disconnect,
        ] {
            assert_eq!(policy.to_string().parse(), Ok(policy));
        }
    }

    #[test]
    fn camel_case_spelling_is_rejected_with_the_choices() {
        let err = "DropNewest".parse::<Backpressure>().unwrap_err();
        assert!(err
            .to_string()
            .contains("`block`, `drop_oldest`, `drop_newest` or `disconnect`"));
    }

    #[test]
    fn drop_oldest_parses_and_prints_in_snake_case() {
        assert_eq!("drop_oldest".parse(), Ok(Backpressure::DropOldest));
        assert_eq!(Backpressure::DropOldest.to_string(), "drop_oldest");
        assert!("DropOldest".parse::<Backpressure>().is_err());
    }
}
