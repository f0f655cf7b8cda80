//! `--from`: where a durable subscription starts reading its topic's log.
//!
//! - `earliest`: the oldest message the log still holds.
//! - A decimal number: the message at that offset.
//! - An RFC 3339 time in UTC (`2026-12-06T10:00:00Z`, fractions of a second allowed): the
//!   first message published at or after it.
//!
//! Anything else is refused with a message that lists these three forms, so clap reports it
//! as a usage error (exit 2).

use std::time::UNIX_EPOCH;

use mycelium_client::StartPosition;

/// What `--from` accepts, for error messages.
const FORMS: &str =
    "expected `earliest`, an offset (a whole number), or an RFC 3339 time in UTC such as 2026-12-06T10:00:00Z";

/// Parses a `--from` value (see the module docs).
pub(crate) fn parse_start(text: &str) -> Result<StartPosition, String> {
    if text.eq_ignore_ascii_case("earliest") {
        return Ok(StartPosition::Earliest);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(StartPosition::Offset)
            .map_err(|_| format!("offset '{text}' is too large (at most {})", u64::MAX));
    }
    let time = humantime::parse_rfc3339(text).map_err(|error| {
        if text.contains('T') || text.contains(':') {
            format!("'{text}' is not an RFC 3339 time in UTC ({error}); {FORMS}")
        } else {
            format!("'{text}': {FORMS}")
        }
    })?;
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("'{text}' is before 1970-01-01T00:00:00Z"))?;
    let nanos = u64::try_from(since_epoch.as_nanos())
        .map_err(|_| format!("'{text}' is too far in the future"))?;
    Ok(StartPosition::Timestamp(nanos))
}

/// Where `start` starts, in words (a time as RFC 3339), for messages to the user.
pub(crate) fn describe(start: StartPosition) -> String {
    match start {
        StartPosition::New => "new messages".to_owned(),
        StartPosition::Earliest => "the earliest retained message".to_owned(),
        StartPosition::Offset(offset) => format!("offset {offset}"),
        StartPosition::Timestamp(ns) => {
            let time = UNIX_EPOCH + std::time::Duration::from_nanos(ns);
            humantime::format_rfc3339_nanos(time).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_offsets_and_utc_times_are_accepted() {
        assert_eq!(parse_start("earliest"), Ok(StartPosition::Earliest));
        assert_eq!(parse_start("EARLIEST"), Ok(StartPosition::Earliest));
        assert_eq!(parse_start("0"), Ok(StartPosition::Offset(0)));
        assert_eq!(parse_start("42"), Ok(StartPosition::Offset(42)));
        assert_eq!(
            parse_start("18446744073709551615"),
            Ok(StartPosition::Offset(u64::MAX))
        );
        assert_eq!(
            parse_start("1970-01-01T00:00:01Z"),
            Ok(StartPosition::Timestamp(1_000_000_000))
        );
        assert_eq!(
            parse_start("2026-12-06T10:00:00.5Z"),
            Ok(StartPosition::Timestamp(1_796_551_200_500_000_000))
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_it_could_take() {
        for bad in ["", "latest", "-1", "+3", "1e3", "0x10", " 5", "yesterday"] {
            let error = parse_start(bad).expect_err(bad);
            assert!(error.contains("earliest"), "{bad}: {error}");
        }
        let error = parse_start("18446744073709551616").expect_err("too large");
        assert!(error.contains("too large"), "{error}");
        // A time without its zone, or in another zone, is not guessed at.
        for bad in [
            "2026-12-06T10:00:00",
            "2026-12-06T10:00:00+02:00",
            "2026-13-06T10:00:00Z",
        ] {
            let error = parse_start(bad).expect_err(bad);
            assert!(error.contains("RFC 3339"), "{bad}: {error}");
        }
    }

    #[test]
    fn descriptions_name_the_start() {
        assert_eq!(describe(StartPosition::Offset(7)), "offset 7");
        assert_eq!(
            describe(StartPosition::Timestamp(1_000_000_000)),
            "1970-01-01T00:00:01.000000000Z"
        );
    }
}
