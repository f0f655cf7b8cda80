//! How a topic delivers each message: to every subscriber, or to exactly one consumer.
//!
//! - TOML and environment overrides accept `"fanout"` / `"queue"`, and the capitalised `"Fanout"` /
//!   `"Queue"` that the seed configurations use; nothing else.
//! - `Display` prints the lowercase spelling, so a printed value reads back unchanged.
//!
//! ```
//! use mycelium_config::Routing;
//!
//! assert_eq!("Queue".parse::<Routing>(), Ok(Routing::Queue));
//! assert_eq!(Routing::Fanout.to_string(), "fanout");
//! assert!("broadcast".parse::<Routing>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// How a topic delivers each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Routing {
    /// Every subscriber receives every message.
    Fanout,
    /// Each message goes to exactly one consumer; consumers take turns, limited by their `prefetch`
    /// credit.
    Queue,
}

impl Routing {
    /// The lowercase spelling used in TOML and in `Display`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Routing::Fanout => "fanout",
            Routing::Queue => "queue",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no routing mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRoutingError {
    input: String,
}

impl fmt::Display for ParseRoutingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown routing `{}`, expected `fanout` or `queue`",
            self.input
        )
    }
}

impl std::error::Error for ParseRoutingError {}

impl FromStr for Routing {
    type Err = ParseRoutingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fanout" | "Fanout" => Ok(Routing::Fanout),
            "queue" | "Queue" => Ok(Routing::Queue),
            _ => Err(ParseRoutingError {
                input: s.to_owned(),
            }),
        }
    }
}

// Hand-written rather than derived so TOML and environment overrides share one parser and one
// error message.
impl<'de> Deserialize<'de> for Routing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_and_seed_spellings_both_parse() {
        assert_eq!("fanout".parse(), Ok(Routing::Fanout));
        assert_eq!("Fanout".parse(), Ok(Routing::Fanout));
        assert_eq!("queue".parse(), Ok(Routing::Queue));
        assert_eq!("Queue".parse(), Ok(Routing::Queue));
    }

    #[test]
    fn other_spellings_are_rejected_with_the_choices() {
        let err = "QUEUE".parse::<Routing>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown routing `QUEUE`, expected `fanout` or `queue`"
        );
    }

    #[test]
    fn display_round_trips_through_from_str() {
        for routing in [Routing::Fanout, Routing::Queue] {
            assert_eq!(routing.to_string().parse(), Ok(routing));
        }
    }
}
