//! A durable topic's fsync policy: `"always"`, `"interval:<duration>"` or `"never"`.
//!
//! - `always`: a publish is confirmed only once its message is on disk; it survives power loss.
//! - `interval:<d>`: the log is synced at most `d` after a write; a crash of the machine may lose
//!   up to `d` of confirmed messages, a crash of the broker alone loses none. Validation bounds
//!   `d` to [`MIN_FSYNC_INTERVAL`]..=[`MAX_FSYNC_INTERVAL`].
//! - `never`: the operating system writes the page cache back when it chooses.
//! - Matching is exact and case-sensitive on `always`, `never` and the `interval:` prefix, as
//!   TOML's other enum strings are; the duration follows [`ConfigDuration`].
//!
//! ```
//! use mycelium_config::Fsync;
//!
//! let fsync: Fsync = "interval:10ms".parse()?;
//! assert_eq!(fsync.to_string(), "interval:10ms");
//! assert_eq!(Fsync::default(), Fsync::Always);
//! # Ok::<(), mycelium_config::ParseFsyncError>(())
//! ```

use std::fmt::{self, Display};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ConfigDuration, ParseDurationError};

/// Shortest `interval:` a topic may use: 1 ms. Shorter than this is `always` in all but name,
/// at the cost of a timer.
pub const MIN_FSYNC_INTERVAL: Duration = Duration::from_millis(1);

/// Longest `interval:` a topic may use: 10 s. A longer window of confirmed-but-unsynced messages
/// is better stated honestly as `never`.
pub const MAX_FSYNC_INTERVAL: Duration = Duration::from_secs(10);

const INTERVAL_PREFIX: &str = "interval:";

/// When a durable topic's log is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Before a publish is confirmed.
    #[default]
    Always,
    /// At most this long after a write.
    Interval(ConfigDuration),
    /// When the operating system writes its page cache back.
    Never,
}

/// Why an fsync policy did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFsyncError {
    /// Not `always`, `never` or `interval:<duration>`.
    #[error("unknown fsync policy {0:?}, expected \"always\", \"interval:<duration>\" (such as \"interval:10ms\") or \"never\"")]
    Unknown(String),
    /// `interval:` with a duration that did not parse.
    #[error("fsync interval: {0}")]
    Interval(#[source] ParseDurationError),
}

impl FromStr for Fsync {
    type Err = ParseFsyncError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            _ => match text.strip_prefix(INTERVAL_PREFIX) {
                Some(duration) => duration
                    .parse()
                    .map(Fsync::Interval)
                    .map_err(ParseFsyncError::Interval),
                None => Err(ParseFsyncError::Unknown(text.to_owned())),
            },
        }
    }
}

impl Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fsync::Always => f.write_str("always"),
            Fsync::Interval(d) => write!(f, "{INTERVAL_PREFIX}{d}"),
            Fsync::Never => f.write_str("never"),
        }
    }
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_policies_parse_and_display_as_written() {
        for text in [
            "always",
            "never",
            "interval:10ms",
            "interval:1s",
            "interval:1m30s",
        ] {
            let fsync: Fsync = text.parse().expect(text);
            assert_eq!(fsync.to_string(), text);
        }
        assert_eq!(
            "interval:10ms".parse(),
            Ok(Fsync::Interval(
                ConfigDuration::from_millis(10).expect("non-zero")
            ))
        );
    }

    #[test]
    fn other_spellings_are_refused_with_the_expected_forms() {
        for bad in ["", "Always", "sometimes", "interval", "10ms"] {
            let err = bad.parse::<Fsync>().expect_err(bad);
            assert!(matches!(err, ParseFsyncError::Unknown(_)), "{bad}");
            assert!(err.to_string().contains("\"interval:<duration>\""), "{bad}");
        }
    }

    #[test]
    fn a_bad_interval_says_what_is_wrong_with_the_duration() {
        let err = "interval:0ms".parse::<Fsync>().expect_err("zero");
        assert_eq!(
            err.to_string(),
            "fsync interval: duration `0ms` is zero; it must be longer than that"
        );
        assert!(matches!(
            "interval:".parse::<Fsync>(),
            Err(ParseFsyncError::Interval(ParseDurationError::Empty))
        ));
    }
}
