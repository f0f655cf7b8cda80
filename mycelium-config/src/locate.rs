//! Maps between byte offsets in a TOML document and dotted field paths such as `topics[1].name`.
//!
//! - [`SourceMap::position_of`] answers "which line sets this field": it returns the key that sets
//!   the field, or the closest enclosing entry that exists in the file (a topic's `[[topics]]` header
//!   when the field itself was left to its default).
//! - [`SourceMap::path_at`] answers the reverse for parse errors: the deepest field whose key or value
//!   covers an offset, or an empty path when the offset is outside every entry.
//! - [`line_col`] turns an offset into a 1-based line and character column, and never panics, even
//!   for an offset past the end or inside a multi-byte character.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A parsed document together with its text, for span lookups.
pub(crate) struct SourceMap<'a, 'i> {
    text: &'i str,
    root: &'a DeTable<'i>,
}

impl<'a, 'i> SourceMap<'a, 'i> {
    pub(crate) fn new(text: &'i str, root: &'a DeTable<'i>) -> Self {
        SourceMap { text, root }
    }

    /// Line and column of the entry that sets `path`, or of its closest enclosing entry.
    pub(crate) fn position_of(&self, path: &str) -> Option<(usize, usize)> {
        let mut table = self.root;
        let mut found = None;
        for segment in path.split('.') {
            let (name, index) = split_index(segment);
            let Some((key, value)) = table.iter().find(|(key, _)| key.get_ref() == name) else {
                break;
            };
            // A table's own span starts at its `[header]`, which reads better than the bare key.
            found = Some(match value.get_ref() {
                DeValue::Table(_) => value.span().start,
                _ => key.span().start,
            });
            let mut value = value;
            if let Some(index) = index {
                let Some(element) = value.get_ref().as_array().and_then(|a| a.get(index)) else {
                    break;
                };
                found = Some(element.span().start);
                value = element;
            }
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found.map(|offset| line_col(self.text, offset))
    }

    /// The deepest field path whose key or value covers `offset`; empty when none does.
    pub(crate) fn path_at(&self, offset: usize) -> String {
        let mut best = Best::default();
        visit_table(self.root, "", 0, offset, &mut best);
        best.path
    }
}

/// The deepest match seen so far during [`SourceMap::path_at`].
#[derive(Default)]
struct Best {
    depth: usize,
    path: String,
}

impl Best {
    fn offer(&mut self, depth: usize, path: &str) {
        if self.path.is_empty() || depth > self.depth {
            self.depth = depth;
            self.path = path.to_owned();
        }
    }
}

// Array-of-tables spans cover only the `[[header]]`, not the body, so containment cannot prune the
// walk: every entry is visited. Documents are small, so this costs nothing that matters.
fn visit_table(table: &DeTable<'_>, prefix: &str, depth: usize, offset: usize, best: &mut Best) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if covers(&key.span(), offset) || covers(&value.span(), offset) {
            best.offer(depth + 1, &path);
        }
        visit_value(value.get_ref(), &path, depth + 1, offset, best);
    }
}

fn visit_value(value: &DeValue<'_>, path: &str, depth: usize, offset: usize, best: &mut Best) {
    match value {
        DeValue::Table(table) => visit_table(table, path, depth, offset, best),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                let path = format!("{path}[{index}]");
                if covers(&element.span(), offset) {
                    best.offer(depth + 1, &path);
                }
                visit_value(element.get_ref(), &path, depth + 1, offset, best);
            }
        }
        _ => {}
    }
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// Splits `topics[1]` into `("topics", Some(1))`; a segment without a valid index is all name.
fn split_index(segment: &str) -> (&str, Option<usize>) {
    segment
        .strip_suffix(']')
        .and_then(|rest| rest.split_once('['))
        .and_then(|(name, index)| Some((name, Some(index.parse().ok()?))))
        .unwrap_or((segment, None))
}

/// 1-based line and character column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
[server]
max_connections = 5

[[topics]]
name = \"a\"
routing = \"fanout\"

[[topics]]
name = \"b\"
routing = \"queue\"
buffer_size = 0
";

    fn with_map<R>(text: &str, f: impl FnOnce(&SourceMap<'_, '_>) -> R) -> R {
        let doc = DeTable::parse(text).unwrap();
        f(&SourceMap::new(text, doc.get_ref()))
    }

    #[test]
    fn position_of_points_at_the_key_that_sets_a_field() {
        with_map(DOC, |map| {
            assert_eq!(map.position_of("topics[1].buffer_size"), Some((11, 1)));
            assert_eq!(map.position_of("topics[1].name"), Some((9, 1)));
            assert_eq!(map.position_of("server.max_connections"), Some((2, 1)));
        });
    }

    #[test]
    fn position_of_falls_back_to_the_enclosing_table_header() {
        with_map(DOC, |map| {
            assert_eq!(map.position_of("topics[0].prefetch"), Some((4, 1)));
            assert_eq!(map.position_of("server.socket_path"), Some((1, 1)));
        });
    }

    #[test]
    fn position_of_a_section_missing_from_the_file_is_unknown() {
        with_map(DOC, |map| {
            assert_eq!(map.position_of("performance.worker_threads"), None);
        });
    }

    #[test]
    fn path_at_names_the_deepest_field_under_an_offset() {
        with_map(DOC, |map| {
            let offset = DOC.find("buffer_size").unwrap() + 3;
            assert_eq!(map.path_at(offset), "topics[1].buffer_size");
            let offset = DOC.find("\"queue\"").unwrap();
            assert_eq!(map.path_at(offset), "topics[1].routing");
        });
    }

    #[test]
    fn path_at_finds_fields_inside_inline_tables() {
        let text = "topics = [{ name = \"a\", routing = \"fanout\" }, { name = \"b\", bad = 1 }]";
        with_map(text, |map| {
            assert_eq!(map.path_at(text.find("bad").unwrap()), "topics[1].bad");
        });
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        assert_eq!(line_col("a\nxé=1", 5), (2, 3));
        assert_eq!(line_col("", 0), (1, 1));
    }

    #[test]
    fn line_col_survives_offsets_past_the_end_or_inside_a_character() {
        assert_eq!(line_col("ab\n", 99), (2, 1));
        assert_eq!(line_col("é", 1), (1, 1));
    }

    #[test]
    fn split_index_reads_array_indices_only_when_well_formed() {
        assert_eq!(split_index("topics[12]"), ("topics", Some(12)));
        assert_eq!(split_index("server"), ("server", None));
        assert_eq!(split_index("odd[x]"), ("odd[x]", None));
    }
}
