//! Where a consumer group's committed position is kept on disk: one small text file per group.
//!
//! - `<log dir>/groups/<group>.offset` holds the committed offset in decimal ASCII digits and
//!   one `\n` (`docs/storage-layout.md`, "Consumer group positions"). Anything else in it (no
//!   digits, other bytes, a number past `u64`, more than [`MAX_POSITION_FILE`] bytes) makes the
//!   file corrupt: [`load`] reports it and the group starts as new from the log's earliest
//!   message, since redelivering beats skipping.
//! - A write is atomic: the new position goes to `<group>.tmp`, is synced, and is renamed over
//!   the old file, so a crash leaves the old position or the new one, never a mix. A temporary
//!   file found at load is a write a crash cut short, and is removed.
//! - Writes never go backwards: a position at or below the last one written is not written
//!   again, so two writes racing (a periodic one and a flush) leave the newer.
//! - The directory is made at the first write; a topic without groups has none.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::core::durable::groups::is_group_name;

/// Suffix of a group's position file.
pub(crate) const POSITION_SUFFIX: &str = ".offset";

/// Suffix of a position being written.
const TEMP_SUFFIX: &str = ".tmp";

/// The largest position file read: 20 digits and a newline. A longer file is corrupt, and is
/// never read whole.
pub(crate) const MAX_POSITION_FILE: u64 = 21;

/// What [`load`] found for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// Its committed position.
    Committed(u64),
    /// Its file could not be read or is not a position: it starts again from the earliest
    /// message.
    Corrupt,
}

/// One group's position file, and the last position written to it.
#[derive(Debug)]
pub(crate) struct PositionFile {
    path: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
    /// The last position written (or read at load); `None` before the first. Held across a
    /// write, so writes of one group are one at a time and never go backwards.
    written: Mutex<Option<u64>>,
}

impl PositionFile {
    /// The position file of `group` in `dir`; `written` is what it holds now, if known.
    pub(crate) fn new(dir: &Path, group: &str, written: Option<u64>) -> PositionFile {
        PositionFile {
            path: dir.join(format!("{group}{POSITION_SUFFIX}")),
            temp: dir.join(format!("{group}{TEMP_SUFFIX}")),
            dir: dir.to_path_buf(),
            written: Mutex::new(written),
        }
    }

    /// Writes `committed` unless a position at or above it was written already. Failures are
    /// logged: the position is written again at the next change, and a lost position only
    /// means redeliveries.
    pub(crate) fn write(&self, committed: u64) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.is_some_and(|w| w >= committed) {
            return;
        }
        match self.write_now(committed) {
            Ok(()) => *written = Some(committed),
            Err(error) => tracing::warn!(
                file = %self.path.display(),
                committed,
                %error,
                "cannot write a consumer group's position; its acknowledged messages may be delivered again after a restart"
            ),
        }
    }

    fn write_now(&self, committed: u64) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut file = fs::File::create(&self.temp)?;
        writeln!(file, "{committed}")?;
        file.sync_data()?;
        drop(file);
        fs::rename(&self.temp, &self.path)
    }
}

/// The positions of the groups kept in `dir` (none when it does not exist), by name. Files
/// that are not a group's position are left alone; temporary files of cut-short writes are
/// removed.
pub(crate) fn load(dir: &Path) -> Vec<(String, Loaded)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot list the consumer groups' positions; the groups start as new");
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if let Some(group) = name.strip_suffix(TEMP_SUFFIX) {
            if is_group_name(group) {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        let Some(group) = name.strip_suffix(POSITION_SUFFIX) else {
            continue;
        };
        if !is_group_name(group) {
            continue;
        }
        let loaded = match read_position(&entry.path()) {
            Ok(committed) => Loaded::Committed(committed),
            Err(why) => {
                tracing::warn!(
                    file = %entry.path().display(),
                    group,
                    why,
                    "corrupt consumer group position; the group starts again from the earliest message"
                );
                Loaded::Corrupt
            }
        };
        found.push((group.to_owned(), loaded));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The committed offset in the file at `path`, or why there is none.
fn read_position(path: &Path) -> Result<u64, String> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_POSITION_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    parse_position(&bytes).ok_or_else(|| "not a decimal offset and a newline".to_owned())
}

/// Decimal digits then one `\n`, as a `u64`.
pub(crate) fn parse_position(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.strip_suffix(b"\n")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_digits_and_a_newline() {
        assert_eq!(parse_position(b"0\n"), Some(0));
        assert_eq!(parse_position(b"18446744073709551615\n"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"\n",
            b"12",
            b"12\n\n",
            b" 12\n",
            b"+12\n",
            b"-1\n",
            b"18446744073709551616\n",
            b"1a\n",
        ] {
            assert_eq!(parse_position(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn written_positions_load_back_and_never_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let groups = dir.path().join("groups");
        assert!(load(&groups).is_empty(), "no directory: no groups");
        let file = PositionFile::new(&groups, "workers", None);
        file.write(7);
        file.write(3);
        assert_eq!(
            load(&groups),
            vec![("workers".to_owned(), Loaded::Committed(7))]
        );
        file.write(9);
        assert_eq!(
            fs::read(groups.join("workers.offset")).unwrap(),
            b"9\n".to_vec()
        );
    }

    #[test]
    fn corrupt_files_are_reported_and_stray_files_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bad.offset"), b"not a number").unwrap();
        fs::write(dir.path().join("long.offset"), vec![b'1'; 4096]).unwrap();
        fs::write(dir.path().join("cut.tmp"), b"12").unwrap();
        fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        fs::write(dir.path().join("bad name.offset"), b"1\n").unwrap();
        assert_eq!(
            load(dir.path()),
            vec![
                ("bad".to_owned(), Loaded::Corrupt),
                ("long".to_owned(), Loaded::Corrupt),
            ]
        );
        assert!(
            !dir.path().join("cut.tmp").exists(),
            "a cut-short write is removed"
        );
        assert!(dir.path().join("notes.txt").exists());
    }
}
