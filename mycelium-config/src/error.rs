//! Why a configuration could not be loaded, or its file could not be watched.
//!
//! - Each variant is one stage of loading: reading the file, parsing it, applying environment
//!   overrides, validating the result. A caller matches on the stage; the source error is kept.
//! - [`ConfigError::diagnostics`] renders every problem as one line, the form `mycelium check`
//!   prints.
//! - [`WatchError`] says why a [`ConfigWatcher`](crate::ConfigWatcher) could not start.
//!
//! ```
//! use std::path::Path;
//! use mycelium_config::{BrokerConfig, ConfigError};
//!
//! let text = "[performance]\nworker_threads = 0\nbatch_size = 0\n";
//! let err = BrokerConfig::from_toml_str_with_env(text, Path::new("b.toml"), []).unwrap_err();
//! assert!(matches!(err, ConfigError::Invalid(_)));
//! assert_eq!(err.diagnostics().len(), 2);
//! ```

use std::path::PathBuf;

use crate::Diagnostic;

/// Why loading a configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`](crate::MAX_CONFIG_FILE_BYTES): it is
    /// refused unread.
    #[error(
        "config file {} is too large: {size} bytes or more, the limit is {limit} bytes",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size as found (at least this much: a file that grew while it was read counts
        /// what was read).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not valid TOML or does not match the schema (a value of the wrong type, a
    /// missing required field): one diagnostic with line and column. Unknown fields are
    /// [`ConfigError::Invalid`], every one of them.
    #[error("{0}")]
    Parse(Diagnostic),
    /// An environment override could not be applied (unknown section, field or topic, or a value of
    /// the wrong type).
    #[error("environment override {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration is invalid: every problem found. First every unknown field in the
    /// file, then every invalid value in field order (or, instead, the schema error that
    /// stopped loading the rest).
    #[error("{}", summarize(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// One human-readable line per problem.
    pub fn diagnostics(&self) -> Vec<String> {
        match self {
            ConfigError::Read { path, source } => {
                vec![format!("{}: cannot read: {source}", path.display())]
            }
            ConfigError::TooLarge { path, size, limit } => vec![format!(
                "{}: too large: {size} bytes or more, the limit is {limit} bytes \
                 (MAX_CONFIG_FILE_BYTES)",
                path.display()
            )],
            ConfigError::Parse(diagnostic) => vec![diagnostic.to_string()],
            ConfigError::Env { .. } => vec![self.to_string()],
            ConfigError::Invalid(diagnostics) => {
                diagnostics.iter().map(ToString::to_string).collect()
            }
        }
    }
}

/// Why a [`ConfigWatcher`](crate::ConfigWatcher) could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The path ends in no file name (`/`, `..`), so there is no file to watch.
    #[error("cannot watch {}: it names no file", path.display())]
    NoFileName {
        /// The path that was given.
        path: PathBuf,
    },
    /// The path is relative and the current directory could not be read to resolve it.
    #[error("cannot watch {}: cannot read the current directory: {source}", path.display())]
    CurrentDir {
        /// The path that was given.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A directory to watch (the file's, or its symlink target's) could not be watched: it does
    /// not exist, is not readable, or the inotify watch limit is reached.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// The directory that could not be watched.
        path: PathBuf,
        /// What the watcher reported.
        #[source]
        source: notify::Error,
    },
    /// The watcher's thread could not be started.
    #[error("cannot start the config watcher thread: {source}")]
    Thread {
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
}

fn summarize(diagnostics: &[Diagnostic]) -> String {
    match diagnostics {
        [] => "invalid configuration".to_owned(),
        [only] => only.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more problems)", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(field: &str) -> Diagnostic {
        Diagnostic::new(field, "must be greater than 0")
    }

    #[test]
    fn invalid_displays_the_first_problem_and_counts_the_rest() {
        let one = ConfigError::Invalid(vec![problem("a")]);
        assert_eq!(one.to_string(), "a: must be greater than 0");
        let three = ConfigError::Invalid(vec![problem("a"), problem("b"), problem("c")]);
        assert_eq!(
            three.to_string(),
            "a: must be greater than 0 (and 2 more problems)"
        );
    }

    #[test]
    fn diagnostics_gives_one_line_per_problem() {
        let err = ConfigError::Invalid(vec![problem("a"), problem("b")]);
        assert_eq!(
            err.diagnostics(),
            ["a: must be greater than 0", "b: must be greater than 0"]
        );
    }

    #[test]
    fn read_diagnostics_name_the_path() {
        let err = ConfigError::Read {
            path: PathBuf::from("/nope/broker.toml"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let lines = err.diagnostics();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("/nope/broker.toml: cannot read: "));
    }

    #[test]
    fn env_diagnostics_name_the_variable() {
        let err = ConfigError::Env {
            var: "MYCELIUM_SERVER__NOPE".to_owned(),
            message: "unknown field".to_owned(),
        };
        assert_eq!(
            err.diagnostics(),
            ["environment override MYCELIUM_SERVER__NOPE: unknown field"]
        );
    }
}
