//! A length of time written for people: `500ms`, `90s`, `15m`, `24h`, `7d`, `1h30m`.
//!
//! - A duration is one or more `<digits><unit>` parts, units `ms`, `s`, `m`, `h`, `d`, largest
//!   first, each unit at most once; the parts add up. No spaces, signs or fractions.
//! - Empty text, zero (`0s`: a limit or an interval of nothing means nothing), an unknown or
//!   missing unit, a unit out of order and a total too large to represent are refused, each with
//!   its own message.
//! - [`Display`] writes the shortest form in the same syntax (`5400s` shows as `1h30m`), so a
//!   value reads back as itself.
//!
//! ```
//! use std::time::Duration;
//! use mycelium_config::ConfigDuration;
//!
//! let d: ConfigDuration = "1h30m".parse()?;
//! assert_eq!(d.get(), Duration::from_secs(5400));
//! assert_eq!(d.to_string(), "1h30m");
//! assert!("0s".parse::<ConfigDuration>().is_err());
//! # Ok::<(), mycelium_config::ParseDurationError>(())
//! ```

use std::fmt::{self, Display};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A non-zero duration of whole milliseconds, read from text such as `24h` or `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(Duration);

impl ConfigDuration {
    /// The duration; never zero.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// The duration of `ms` milliseconds, or `None` for 0.
    pub const fn from_millis(ms: u64) -> Option<ConfigDuration> {
        if ms == 0 {
            None
        } else {
            Some(ConfigDuration(Duration::from_millis(ms)))
        }
    }

    /// Whole milliseconds (the parser never produces a fraction of one).
    pub fn as_millis(self) -> u64 {
        // Built from a u64 of milliseconds, so it fits.
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// The text is empty.
    #[error("empty duration; write a number and a unit such as \"90s\" or \"24h\"")]
    Empty,
    /// The text adds up to zero.
    #[error("duration `{0}` is zero; it must be longer than that")]
    Zero(String),
    /// A part has digits but no unit, or the text has no digits where a part starts.
    #[error(
        "duration `{0}`: expected a number followed by a unit (ms, s, m, h, d), as in \"90s\""
    )]
    Malformed(String),
    /// A part's unit is not one of `ms`, `s`, `m`, `h`, `d`.
    #[error("duration `{text}`: unknown unit `{unit}`, expected ms, s, m, h or d")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// A unit appears twice or after a smaller one (`30m1h`).
    #[error("duration `{text}`: unit `{unit}` repeated or out of order; write larger units first, each once")]
    UnitOrder {
        /// The whole text.
        text: String,
        /// The unit found out of place.
        unit: String,
    },
    /// The total does not fit in 64 bits of milliseconds.
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

impl FromStr for ConfigDuration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        let malformed = || ParseDurationError::Malformed(text.to_owned());
        let overflow = || ParseDurationError::Overflow(text.to_owned());
        let mut rest = text;
        let mut total: u64 = 0;
        // Index into UNITS of the smallest unit seen so far: the next one must be smaller.
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let unit_len = rest[digits..]
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            if digits == 0 || unit_len == 0 {
                return Err(malformed());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| overflow())?;
            let unit = &rest[digits..digits + unit_len];
            let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
                return Err(ParseDurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: unit.to_owned(),
                });
            };
            if index < next_unit {
                return Err(ParseDurationError::UnitOrder {
                    text: text.to_owned(),
                    unit: unit.to_owned(),
                });
            }
            next_unit = index + 1;
            let ms = number.checked_mul(UNITS[index].1).ok_or_else(overflow)?;
            total = total.checked_add(ms).ok_or_else(overflow)?;
            rest = &rest[digits + unit_len..];
        }
        ConfigDuration::from_millis(total).ok_or_else(|| ParseDurationError::Zero(text.to_owned()))
    }
}

impl Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.as_millis();
        for (name, ms) in UNITS {
            if rest >= ms {
                write!(f, "{}{name}", rest / ms)?;
                rest %= ms;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        text.parse::<ConfigDuration>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .as_millis()
    }

    fn err(text: &str) -> ParseDurationError {
        text.parse::<ConfigDuration>().expect_err(text)
    }

    #[test]
    fn each_unit_and_combinations_parse() {
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("90s"), 90_000);
        assert_eq!(ms("15m"), 900_000);
        assert_eq!(ms("24h"), 86_400_000);
        assert_eq!(ms("7d"), 604_800_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("1d2h3m4s5ms"), 93_784_005);
        assert_eq!(ms("0h10m"), 600_000);
    }

    #[test]
    fn display_is_the_shortest_form_and_reads_back() {
        for (text, shown) in [
            ("5400s", "1h30m"),
            ("1000ms", "1s"),
            ("10ms", "10ms"),
            ("7d", "7d"),
            ("1d2h3m4s5ms", "1d2h3m4s5ms"),
        ] {
            let d: ConfigDuration = text.parse().expect(text);
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<ConfigDuration>(), Ok(d));
        }
    }

    #[test]
    fn empty_zero_and_malformed_text_is_refused() {
        assert_eq!(err(""), ParseDurationError::Empty);
        assert_eq!(err("0s"), ParseDurationError::Zero("0s".to_owned()));
        assert_eq!(err("0h0m"), ParseDurationError::Zero("0h0m".to_owned()));
        for bad in ["10", "s", "1h 30m", " 1s", "-1s", "1.5h", "1h30"] {
            assert_eq!(
                err(bad),
                ParseDurationError::Malformed(bad.to_owned()),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_units_and_units_out_of_order_are_named() {
        assert_eq!(
            err("3w").to_string(),
            "duration `3w`: unknown unit `w`, expected ms, s, m, h or d"
        );
        assert!(
            matches!(err("1sec"), ParseDurationError::UnknownUnit { unit, .. } if unit == "sec")
        );
        assert!(matches!(err("30m1h"), ParseDurationError::UnitOrder { unit, .. } if unit == "h"));
        assert!(matches!(err("1m1m"), ParseDurationError::UnitOrder { unit, .. } if unit == "m"));
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        assert_eq!(
            err("99999999999999999999ms"),
            ParseDurationError::Overflow("99999999999999999999ms".to_owned())
        );
        assert!(matches!(
            err("999999999999999d"),
            ParseDurationError::Overflow(_)
        ));
        assert!(matches!(
            err(&format!("{}d{}ms", u64::MAX / 86_400_000, u64::MAX)),
            ParseDurationError::Overflow(_)
        ));
        assert_eq!(ms(&format!("{}ms", u64::MAX)), u64::MAX);
    }

    #[test]
    fn deserializes_from_a_toml_string() {
        #[derive(Deserialize)]
        struct T {
            d: ConfigDuration,
        }
        let t: T = toml::from_str("d = \"15m\"").expect("parse");
        assert_eq!(t.d.as_millis(), 900_000);
        let e = toml::from_str::<T>("d = \"15x\"")
            .err()
            .map(|e| e.message().to_owned());
        assert_eq!(
            e.as_deref(),
            Some("duration `15x`: unknown unit `x`, expected ms, s, m, h or d")
        );
    }
}
