//! The broker's configuration state as frames carry it: [`ConfigStatus`], [`ReloadOutcome`].

/// What the last reload attempt did, as carried in `ReloadResult` (one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadOutcome {
    /// `0`: the file differed and its changes were applied (those that can be: see
    /// [`ConfigStatus::pending`]).
    Applied,
    /// `1`: the file loads and matches the running config; nothing changed.
    Unchanged,
    /// `2`: the file could not be read, parsed or validated; nothing changed;
    /// [`ConfigStatus::last_error`] says why.
    Failed,
}

impl ReloadOutcome {
    /// The outcome's wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ReloadOutcome::Applied => 0,
            ReloadOutcome::Unchanged => 1,
            ReloadOutcome::Failed => 2,
        }
    }

    /// The outcome for a wire value, or `None` for a value the protocol does not define (an
    /// unknown outcome cannot be acted on, so it is not kept).
    pub fn from_u8(v: u8) -> Option<ReloadOutcome> {
        match v {
            0 => Some(ReloadOutcome::Applied),
            1 => Some(ReloadOutcome::Unchanged),
            2 => Some(ReloadOutcome::Failed),
            _ => None,
        }
    }
}

/// The state of the broker's configuration, as carried in `Stats` and `ReloadResult`.
///
/// On the wire (the "config status block"): `generation u64 | reloads u64 | error_len u16 |
/// last_error | change_len u16 | last_change | pending_len u16 | pending`. Each text is UTF-8 of
/// at most [`ConfigStatus::MAX_TEXT_LEN`] bytes; encoding a longer one fails
/// ([`EncodeError::NameTooLong`](crate::error::EncodeError::NameTooLong)), so the broker passes
/// its status through [`ConfigStatus::truncated`] before encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigStatus {
    /// Bumped by every reload that applied a config; 1 is the config the broker started with.
    pub generation: u64,
    /// Reload attempts finished since the broker started: applied, unchanged or failed.
    pub reloads: u64,
    /// Why the last reload attempt failed, one diagnostic per line (`file:line:col: field: message`); empty when it did not fail.
    pub last_error: String,
    /// What the last applied reload changed, one line (`+topic signals, ~execution.buffer_size 50000→80000, -topic old`); empty before the first.
    pub last_change: String,
    /// Settings of the file the running broker does not follow (they need a restart, or were refused), one per line; empty when none.
    pub pending: String,
}

impl ConfigStatus {
    /// The longest `last_error`, `last_change` or `pending`, in bytes: each is behind a `u16`
    /// byte count.
    pub const MAX_TEXT_LEN: usize = u16::MAX as usize;

    /// The same status with each text cut to at most [`MAX_TEXT_LEN`](Self::MAX_TEXT_LEN)
    /// bytes, at a char boundary, so that it always encodes. The broker calls it before
    /// encoding a `Stats` or `ReloadResult`: diagnostics and change lists come from the
    /// operator's file and have no bound of their own. Texts that fit are kept as they are.
    pub fn truncated(mut self) -> ConfigStatus {
        for text in [
            &mut self.last_error,
            &mut self.last_change,
            &mut self.pending,
        ] {
            let len = truncate_utf8(text, Self::MAX_TEXT_LEN).len();
            text.truncate(len);
        }
        self
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends at a char boundary.
///
/// Used by [`ConfigStatus::truncated`]; also for any other text the caller must fit a length
/// prefix (an `Error` message, for one, is limited to `u16::MAX` bytes).
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // A char is at most 4 bytes, so a boundary lies within the last 4 positions up to `max`;
    // index 0 is always one, so the search cannot fail.
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod truncation {
    use super::*;

    #[test]
    fn a_text_that_fits_is_kept_whole() {
        assert_eq!(truncate_utf8("héllo", 6), "héllo");
        assert_eq!(truncate_utf8("", 0), "");
    }

    #[test]
    fn a_text_is_cut_at_the_last_char_boundary_within_the_limit() {
        // "é" is 2 bytes, "€" 3, "😀" 4: a cut inside any of them backs off to its start.
        assert_eq!(truncate_utf8("abé", 3), "ab");
        assert_eq!(truncate_utf8("a€", 3), "a");
        assert_eq!(truncate_utf8("a😀", 4), "a");
        assert_eq!(truncate_utf8("a😀", 5), "a😀");
        assert_eq!(truncate_utf8("😀", 0), "");
    }

    #[test]
    fn a_status_is_truncated_to_what_encodes() {
        let max = ConfigStatus::MAX_TEXT_LEN;
        // 21845 × 3 = 65535: "€" fills the limit exactly; one more byte in front pushes the
        // last char over it.
        let exact = "€".repeat(max / 3);
        let status = ConfigStatus {
            generation: 3,
            reloads: 9,
            last_error: format!("x{exact}"),
            last_change: exact.clone(),
            pending: "p".repeat(max + 10),
        }
        .truncated();
        assert_eq!(status.last_error.len(), max - 2);
        assert!(status.last_error.starts_with('x'));
        assert_eq!(status.last_change, exact);
        assert_eq!(status.pending.len(), max);
        assert_eq!((status.generation, status.reloads), (3, 9));
    }
}
