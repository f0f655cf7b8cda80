//! One problem found in a configuration, located as precisely as the source allows.
//!
//! - `field` is a dotted path such as `topics[1].buffer_size` or `server.max_connections`; it is
//!   empty when the problem is not about one field (a TOML syntax error).
//! - `line` and `column` are 1-based and point at the key that sets the field, or at the enclosing
//!   table header when the key is absent; both are `None` when no source position exists (the value
//!   came from an environment override, or the config was built in code).
//! - `Display` renders `file:line:col: field: message`, leaving out whatever is unknown, which is the
//!   line `mycelium check` prints.
//!
//! ```
//! use std::path::PathBuf;
//! use mycelium_config::Diagnostic;
//!
//! let diagnostic = Diagnostic {
//!     file: PathBuf::from("broker.toml"),
//!     line: Some(12),
//!     column: Some(1),
//!     field: "topics[1].buffer_size".to_owned(),
//!     message: "must be greater than 0".to_owned(),
//! };
//! assert_eq!(
//!     diagnostic.to_string(),
//!     "broker.toml:12:1: topics[1].buffer_size: must be greater than 0"
//! );
//! ```

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the configuration came from; empty for a config built in code.
    pub file: PathBuf,
    /// 1-based line of the offending key, when the value came from the file.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key, when the value came from the file.
    pub column: Option<usize>,
    /// Dotted path of the field, such as `topics[1].buffer_size`; empty when no field applies.
    pub field: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl Diagnostic {
    /// A problem with `field` that has no source position yet.
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: PathBuf::new(),
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut location = self.file.display().to_string();
        if let Some(line) = self.line {
            if !location.is_empty() {
                location.push(':');
            }
            location.push_str(&line.to_string());
            if let Some(column) = self.column {
                location.push(':');
                location.push_str(&column.to_string());
            }
        }
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(
        file: &str,
        line: Option<usize>,
        column: Option<usize>,
        field: &str,
    ) -> Diagnostic {
        Diagnostic {
            file: PathBuf::from(file),
            line,
            column,
            field: field.to_owned(),
            message: "bad".to_owned(),
        }
    }

    #[test]
    fn display_leaves_out_an_unknown_line_and_column() {
        let d = diagnostic("broker.toml", None, None, "server.max_connections");
        assert_eq!(d.to_string(), "broker.toml: server.max_connections: bad");
    }

    #[test]
    fn display_leaves_out_an_empty_field() {
        let d = diagnostic("broker.toml", Some(3), Some(7), "");
        assert_eq!(d.to_string(), "broker.toml:3:7: bad");
    }

    #[test]
    fn display_without_a_file_starts_with_the_field() {
        let d = diagnostic("", None, None, "topics[0].name");
        assert_eq!(d.to_string(), "topics[0].name: bad");
    }

    #[test]
    fn display_shows_a_line_without_a_column() {
        let d = diagnostic("a.toml", Some(4), None, "x");
        assert_eq!(d.to_string(), "a.toml:4: x: bad");
    }
}
