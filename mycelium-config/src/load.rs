//! Loading a configuration: text, then environment overrides, then validation.
//!
//! - One pure function does the work: `(text, origin, env) -> Result<BrokerConfig, ConfigError>`.
//!   [`BrokerConfig::from_file`] and [`BrokerConfig::from_toml_str`] only add the file read and the
//!   process environment around it, so a hot reload can call the same code.
//! - A syntax error, or a value of the wrong type, stops loading at the first one
//!   ([`ConfigError::Parse`]); an override that cannot be applied stops it too
//!   ([`ConfigError::Env`]). Every unknown field (a typo) is reported, each with its line, and
//!   the rest of the file is still loaded and validated: [`ConfigError::Invalid`] lists every
//!   unknown field, then every invalid value (or the schema error that stopped loading).
//! - Every diagnostic names `origin`; a value from the file gets the line and column of its key, a
//!   value from the environment says which variable set it instead.
//!
//! ```
//! use std::path::Path;
//! use mycelium_config::{BrokerConfig, ConfigError};
//!
//! let text = "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nbuffer_size = 0\n";
//! let Err(ConfigError::Invalid(problems)) =
//!     BrokerConfig::from_toml_str_with_env(text, Path::new("broker.toml"), [])
//! else {
//!     panic!("buffer_size = 0 must be rejected");
//! };
//! assert_eq!(
//!     problems[0].to_string(),
//!     "broker.toml:4:1: topics[0].buffer_size: must be greater than 0"
//! );
//! ```

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::env::{self, Overrides};
use crate::locate::{line_col, SourceMap};
use crate::{BrokerConfig, ConfigError, Diagnostic, MAX_CONFIG_FILE_BYTES};

impl BrokerConfig {
    /// Reads `path`, parses it, applies the process's `MYCELIUM_*__*` overrides and validates.
    /// A file over [`MAX_CONFIG_FILE_BYTES`] is refused unread ([`ConfigError::TooLarge`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<BrokerConfig, ConfigError> {
        let path = path.as_ref();
        let text = read_config_file(path)?;
        load(&text, path, env::process_env()?)
    }

    /// Parses `text`, applies the process's `MYCELIUM_*__*` overrides and validates; `origin` only
    /// names the source in diagnostics.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<BrokerConfig, ConfigError> {
        load(text, origin, env::process_env()?)
    }

    /// As [`BrokerConfig::from_toml_str`], with the environment given explicitly: variables that
    /// are not `MYCELIUM_*__*` overrides are ignored.
    pub fn from_toml_str_with_env(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<BrokerConfig, ConfigError> {
        load(text, origin, env)
    }
}

/// The text of config file `path`, refused ([`ConfigError::TooLarge`]) if it is larger than
/// [`MAX_CONFIG_FILE_BYTES`]: by its size before it is read, and by what is read (at most one
/// byte more than the limit) in case it grows meanwhile. Every reader of a config file goes
/// through this: start-up, `mycelium check`, a reload, a client looking for the socket.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let too_large = |size| ConfigError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_CONFIG_FILE_BYTES,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    if size > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(size));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// The socket path a config names, read leniently from `text`: the environment's
/// `MYCELIUM_SERVER__SOCKET_PATH` if set, else `[server] socket_path` if the text is TOML and
/// names one as a string, else the default. `None` only when the text is not TOML at all.
///
/// For clients that only need to find a running broker: a file being edited may be invalid
/// elsewhere (the broker then runs on its last good config, on the same socket), and
/// `mycelium stats` must still reach the broker to say so.
///
/// ```
/// use std::path::Path;
/// let text = "[server]\nsocket_path = \"/run/m.sock\"\nmax_connections = 0\n";
/// assert_eq!(
///     mycelium_config::socket_path_leniently(text, []),
///     Some(Path::new("/run/m.sock").to_path_buf())
/// );
/// assert_eq!(mycelium_config::socket_path_leniently("[server", []), None);
/// ```
pub fn socket_path_leniently(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Option<std::path::PathBuf> {
    if let Some((_, value)) = env
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("MYCELIUM_SERVER__SOCKET_PATH"))
    {
        return Some(value.into());
    }
    let table: toml::Table = text.parse().ok()?;
    let named = table
        .get("server")
        .and_then(|server| server.get("socket_path"))
        .and_then(|path| path.as_str());
    Some(match named {
        Some(path) => path.into(),
        None => crate::ServerConfig::default().socket_path,
    })
}

fn load(
    text: &str,
    origin: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BrokerConfig, ConfigError> {
    let document = DeTable::parse(text)
        .map_err(|err| ConfigError::Parse(parse_diagnostic(text, origin, None, &err)))?;
    let map = SourceMap::new(text, document.get_ref());
    // The document is kept for span lookups, so the deserializer gets its own copy; unknown
    // fields are taken out of that copy one by one (serde stops at the first), so that every
    // one of them is reported, with what the rest of the file gets wrong.
    let mut unknown = Vec::new();
    let mut pruned = document.clone();
    let mut config = loop {
        let err = match BrokerConfig::deserialize(toml::de::Deserializer::from(pruned.clone())) {
            Ok(config) => break config,
            Err(err) => err,
        };
        let diagnostic = parse_diagnostic(text, origin, Some(&map), &err);
        let removed = err.message().starts_with("unknown field")
            && unknown.len() < MAX_UNKNOWN_FIELDS
            && err
                .span()
                .is_some_and(|span| remove_key_at(pruned.get_mut(), span.start));
        if !removed {
            if unknown.is_empty() {
                return Err(ConfigError::Parse(diagnostic));
            }
            // Another schema error (a wrong type) stops loading: it comes after the unknown
            // fields, as the last problem found.
            in_file_order(&mut unknown);
            unknown.push(diagnostic);
            return Err(ConfigError::Invalid(unknown));
        }
        unknown.push(diagnostic);
    };
    in_file_order(&mut unknown);
    let overrides = env::apply(&mut config, env)?;
    let problems = config.validate();
    if problems.is_empty() && unknown.is_empty() {
        return Ok(config);
    }
    unknown.extend(
        problems
            .into_iter()
            .map(|problem| locate(problem, origin, &map, &overrides)),
    );
    Err(ConfigError::Invalid(unknown))
}

/// The deserializer finds unknown fields in its own order (tables by key): sort them as a
/// reader of the file meets them.
fn in_file_order(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.line, d.column));
}

/// Unknown fields reported at most, each costing one more pass over the document: a file of
/// thousands of them is not a config with typos, and its first hundred say so.
const MAX_UNKNOWN_FIELDS: usize = 100;

/// Takes out of `table` (at any depth) the entry whose key starts at byte `offset`, where the
/// deserializer reported an unknown field; false if there is none.
fn remove_key_at(table: &mut DeTable<'_>, offset: usize) -> bool {
    let key = table
        .keys()
        .find(|key| key.span().start == offset)
        .map(|key| key.get_ref().to_string());
    if let Some(key) = key {
        return table.remove(key.as_str()).is_some();
    }
    table
        .iter_mut()
        .any(|(_, value)| remove_key_in(value.get_mut(), offset))
}

fn remove_key_in(value: &mut DeValue<'_>, offset: usize) -> bool {
    match value {
        DeValue::Table(table) => remove_key_at(table, offset),
        DeValue::Array(array) => array
            .iter_mut()
            .any(|element| remove_key_in(element.get_mut(), offset)),
        _ => false,
    }
}

/// A parse or schema error as a diagnostic; `map` is `None` when the text is not TOML at all.
fn parse_diagnostic(
    text: &str,
    origin: &Path,
    map: Option<&SourceMap<'_, '_>>,
    err: &toml::de::Error,
) -> Diagnostic {
    let offset = err.span().map(|span| span.start);
    let mut field = match (map, offset) {
        (Some(map), Some(offset)) => map.path_at(offset),
        _ => String::new(),
    };
    let message = err.message().trim_end().to_owned();
    // A missing field has no span of its own; serde points at the enclosing table, so the name
    // comes from the message.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
    {
        field = if field.is_empty() {
            missing.to_owned()
        } else {
            format!("{field}.{missing}")
        };
    }
    let position = offset.map(|offset| line_col(text, offset));
    Diagnostic {
        file: origin.to_path_buf(),
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        field,
        message,
    }
}

/// Fills in where the offending value of a validation problem came from.
fn locate(
    mut problem: Diagnostic,
    origin: &Path,
    map: &SourceMap<'_, '_>,
    overrides: &Overrides,
) -> Diagnostic {
    problem.file = origin.to_path_buf();
    if let Some(var) = overrides.var_for(&problem.field) {
        problem.message = format!("{} (set by {var})", problem.message);
    } else if let Some((line, column)) = map.position_of(&problem.field) {
        problem.line = Some(line);
        problem.column = Some(column);
    }
    problem
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{
        Backpressure, HttpConfig, MetricsConfig, PerformanceConfig, Routing, ServerConfig,
        ShmConfig, StorageConfig, TopicConfig, TopicDefaults,
    };

    const ORIGIN: &str = "broker.toml";

    /// The example from the task, without comments; `the_shipped_example_loads` checks the
    /// commented copy at the workspace root.
    const EXAMPLE: &str = r#"
[server]
socket_path = "/tmp/mycelium.sock"
max_connections = 1000
connection_timeout_ms = 30000

[[topics]]
name = "market_data"
routing = "fanout"
buffer_size = 100000
max_message_size = 65536

[[topics]]
name = "execution"
routing = "queue"
buffer_size = 50000
max_message_size = 16384
prefetch = 256

[topic_defaults]
auto_create = false

[performance]
worker_threads = 2
channel_capacity = 100000
batch_size = 1000
flush_interval_ms = 1
"#;

    fn load_with(text: &str, pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        let env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        BrokerConfig::from_toml_str_with_env(text, Path::new(ORIGIN), env)
    }

    fn parse_error(text: &str) -> Diagnostic {
        match load_with(text, &[]) {
            Err(ConfigError::Parse(diagnostic)) => diagnostic,
            other => panic!("expected a Parse error, got {other:?}"),
        }
    }

    fn invalid(text: &str, pairs: &[(&str, &str)]) -> Vec<Diagnostic> {
        match load_with(text, pairs) {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    fn expected_example() -> BrokerConfig {
        BrokerConfig {
            server: ServerConfig {
                socket_path: PathBuf::from("/tmp/mycelium.sock"),
                max_connections: 1000,
                connection_timeout_ms: 30_000,
                socket_mode: 0o660,
                ..ServerConfig::default()
            },
            topics: vec![
                TopicConfig {
                    name: "market_data".to_owned(),
                    routing: Routing::Fanout,
                    buffer_size: 100_000,
                    max_message_size: 65_536,
                    backpressure: Backpressure::Block,
                    prefetch: 256,
                    publish_deadline_ms: 10_000,
                    stamp: false,
                    max_headers: 32,
                    max_header_bytes: 4096,
                    publish: None,
                    subscribe: None,
                    durable: false,
                    retention: None,
                    retention_bytes: None,
                    retention_messages: None,
                    fsync: None,
                    ack_timeout_ms: None,
                    max_deliveries: None,
                    dead_letter: None,
                },
                TopicConfig {
                    name: "execution".to_owned(),
                    routing: Routing::Queue,
                    buffer_size: 50_000,
                    max_message_size: 16_384,
                    backpressure: Backpressure::Block,
                    prefetch: 256,
                    publish_deadline_ms: 10_000,
                    stamp: false,
                    max_headers: 32,
                    max_header_bytes: 4096,
                    publish: None,
                    subscribe: None,
                    durable: false,
                    retention: None,
                    retention_bytes: None,
                    retention_messages: None,
                    fsync: None,
                    ack_timeout_ms: None,
                    max_deliveries: None,
                    dead_letter: None,
                },
            ],
            topic_defaults: TopicDefaults::default(),
            performance: PerformanceConfig {
                worker_threads: 2,
                channel_capacity: 100_000,
                batch_size: 1000,
                flush_interval_ms: 1,
                busy_poll_us: 50,
            },
            shm: ShmConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            storage: StorageConfig::default(),
        }
    }

    #[test]
    fn the_example_parses_to_the_expected_values() {
        assert_eq!(load_with(EXAMPLE, &[]).unwrap(), expected_example());
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config = BrokerConfig::from_toml_str_with_env(&text, &path, []).unwrap();
        // The shipped file adds a durable topic and the topics `mycelium bench` uses to the
        // seed example.
        let added: Vec<TopicConfig> = config.topics.split_off(2);
        let names: Vec<&str> = added.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "orders",
                "bench.fanout",
                "bench.queue",
                "bench.ping",
                "bench.pong",
                "bench.durable",
                "bench.request"
            ]
        );
        assert_eq!(added[2].routing, Routing::Queue);
        let durable: Vec<&str> = added
            .iter()
            .filter(|t| t.durability().is_some())
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(durable, ["orders", "bench.durable"]);
        // ... keeps their logs in a directory a fresh machine can write ...
        assert_eq!(
            config.storage.data_dir.as_deref(),
            Some(Path::new("/tmp/mycelium-data"))
        );
        config.storage.data_dir = None;
        // ... and runs the broker on one worker thread, as measured best on 2 cores.
        assert_eq!(config.performance.worker_threads, 1);
        config.performance.worker_threads = 2;
        // ... and gives the handshake the default deadline, not the seed's 30 s.
        assert_eq!(config.server.connection_timeout_ms, 5_000);
        config.server.connection_timeout_ms = 30_000;
        assert_eq!(config, expected_example());
    }

    #[test]
    fn an_empty_file_gives_the_default_config() {
        assert_eq!(load_with("", &[]).unwrap(), BrokerConfig::default());
    }

    #[test]
    fn sections_may_be_partial() {
        let config = load_with("[server]\nmax_connections = 3\n", &[]).unwrap();
        assert_eq!(config.server.max_connections, 3);
        assert_eq!(
            config.server.socket_path,
            PathBuf::from("/tmp/mycelium.sock")
        );
    }

    #[test]
    fn seed_and_lowercase_routing_spellings_are_accepted() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"Fanout\"\n\
                    [[topics]]\nname = \"b\"\nrouting = \"Queue\"\n\
                    [[topics]]\nname = \"c\"\nrouting = \"queue\"\n";
        let config = load_with(text, &[]).unwrap();
        let routings: Vec<Routing> = config.topics.iter().map(|t| t.routing).collect();
        assert_eq!(routings, [Routing::Fanout, Routing::Queue, Routing::Queue]);
    }

    #[test]
    fn an_unknown_routing_is_a_parse_error_at_its_line() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\n\n\
                    [[topics]]\nname = \"b\"\nrouting = \"Broadcast\"\n";
        let diagnostic = parse_error(text);
        assert_eq!((diagnostic.line, diagnostic.column), (Some(7), Some(11)));
        assert_eq!(diagnostic.field, "topics[1].routing");
        assert_eq!(
            diagnostic.to_string(),
            "broker.toml:7:11: topics[1].routing: unknown routing `Broadcast`, \
             expected `fanout` or `queue`"
        );
    }

    #[test]
    fn a_toml_syntax_error_is_a_parse_error_at_its_line() {
        let diagnostic = parse_error("[server]\nmax_connections = 5\n\n[[topics]\nname = \"a\"\n");
        assert_eq!(diagnostic.line, Some(4));
        assert_eq!(diagnostic.field, "");
        assert_eq!(diagnostic.file, PathBuf::from(ORIGIN));
    }

    #[test]
    fn a_duplicate_key_is_a_parse_error_at_the_second_one() {
        let diagnostic = parse_error("[server]\nmax_connections = 5\nmax_connections = 6\n");
        assert_eq!(diagnostic.line, Some(3));
    }

    #[test]
    fn an_unknown_field_is_reported_naming_the_field_and_line() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\nbufer_size = 5\n";
        let problems = invalid(text, &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(4));
        assert_eq!(problems[0].field, "topics[0].bufer_size");
        assert!(
            problems[0]
                .message
                .starts_with("unknown field `bufer_size`"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_durable_topic_loads_with_storage_and_is_located_without_it() {
        let topic = "[[topics]]\nname = \"orders\"\nrouting = \"fanout\"\ndurable = true\n\
                     retention = \"7d\"\nfsync = \"interval:10ms\"\n";
        let config = load_with(
            &format!(
                "[storage]\ndata_dir = \"/var/lib/mycelium\"\nsegment_bytes = 4096\n\n{topic}"
            ),
            &[],
        )
        .expect("loads");
        assert_eq!(
            config.storage.data_dir.as_deref(),
            Some(Path::new("/var/lib/mycelium"))
        );
        let durability = config.topics[0].durability().expect("durable");
        assert_eq!(durability.fsync.to_string(), "interval:10ms");
        let problems = invalid(topic, &[]);
        let found: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(found, [(Some(4), "topics[0].durable")], "{problems:?}");
        let problems = invalid(
            "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nfsync = \"never\"\n",
            &[],
        );
        assert_eq!(
            (problems[0].line, problems[0].field.as_str()),
            (Some(4), "topics[0].fsync")
        );
    }

    #[test]
    fn every_unknown_field_is_reported_with_its_line() {
        let text = "[server]\nmax_conections = 5\n\n\
                    [[topics]]\nname = \"a\"\nrouting = \"fanout\"\nbufer_size = 5\n\n\
                    [[topics]]\nname = \"b\"\nrouting = \"queue\"\nprefech = 5\n\n\
                    [perfomance]\nworker_threads = 2\n";
        let problems = invalid(text, &[]);
        let found: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (Some(2), "server.max_conections"),
                (Some(7), "topics[0].bufer_size"),
                (Some(12), "topics[1].prefech"),
                (Some(14), "perfomance"),
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_fields_come_with_every_invalid_value_of_the_rest() {
        let text = "[server]\nmax_conections = 5\n\n[performance]\nworker_threads = 0\n\
                    batch_size = 0\n";
        let problems = invalid(text, &[]);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "server.max_conections",
                "performance.worker_threads",
                "performance.batch_size"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_fields_come_with_the_type_error_that_stops_loading() {
        let text = "[server]\nmax_conections = 5\nmax_connections = \"many\"\n";
        let problems = invalid(text, &[]);
        let found: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (Some(2), "server.max_conections"),
                (Some(3), "server.max_connections")
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn an_unknown_section_is_reported_at_its_header() {
        let problems = invalid("[perfomance]\nworker_threads = 2\n", &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(1));
        assert_eq!(problems[0].field, "perfomance");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_parse_error_at_the_value() {
        let diagnostic = parse_error("[performance]\n\nworker_threads = \"two\"\n");
        assert_eq!(diagnostic.line, Some(3));
        assert_eq!(diagnostic.field, "performance.worker_threads");
    }

    #[test]
    fn a_missing_routing_names_the_field_at_the_topic_header() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\n\n[[topics]]\nname = \"b\"\n";
        let diagnostic = parse_error(text);
        assert_eq!(diagnostic.line, Some(5));
        assert_eq!(diagnostic.field, "topics[1].routing");
    }

    #[test]
    fn a_zero_buffer_size_in_the_second_topic_is_reported_at_its_line() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\n\n\
                    [[topics]]\nname = \"b\"\nrouting = \"queue\"\nbuffer_size = 0\n";
        let problems = invalid(text, &[]);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "broker.toml:8:1: topics[1].buffer_size: must be greater than 0"
        );
    }

    #[test]
    fn header_limits_out_of_range_are_reported_at_their_lines() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\nmax_headers = 2000\n\n\
                    [topic_defaults]\nstamp = true\nmax_header_bytes = 70000\n";
        let problems: Vec<String> = invalid(text, &[]).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            problems,
            [
                "broker.toml:4:1: topics[0].max_headers: must be at most 1024, got 2000",
                "broker.toml:8:1: topic_defaults.max_header_bytes: must be at most 65535, got 70000",
            ]
        );
    }

    #[test]
    fn the_envelope_settings_and_idle_timeout_load_from_topics_and_defaults() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\nstamp = true\n\
                    max_headers = 4\nmax_header_bytes = 100\n\n\
                    [topic_defaults]\nidle_timeout_ms = 0\nmax_headers = 0\n";
        let config = load_with(text, &[]).unwrap();
        let a = &config.topics[0];
        assert_eq!((a.stamp, a.max_headers, a.max_header_bytes), (true, 4, 100));
        let defaults = &config.topic_defaults;
        assert_eq!(
            (
                defaults.idle_timeout_ms,
                defaults.stamp,
                defaults.max_headers
            ),
            (0, false, 0)
        );
        assert_eq!(defaults.max_header_bytes, 4096);
    }

    #[test]
    fn a_duplicate_topic_name_is_reported_at_the_second_name_line() {
        let text = "[[topics]]\nname = \"a\"\nrouting = \"fanout\"\n\n\
                    [[topics]]\nrouting = \"queue\"\nname = \"a\"\n";
        let problems = invalid(text, &[]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "topics[1].name");
        assert_eq!((problems[0].line, problems[0].column), (Some(7), Some(1)));
    }

    #[test]
    fn several_problems_are_all_reported_with_their_lines() {
        let text = "[server]\nmax_connections = 0\nsocket_mode = \"1777\"\n\n\
                    [[topics]]\nname = \"bad name\"\nrouting = \"fanout\"\nprefetch = 0\n\n\
                    [performance]\nworker_threads = 2000\nbatch_size = 0\n";
        let lines: Vec<String> = invalid(text, &[]).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "broker.toml:2:1: server.max_connections: must be greater than 0",
                "broker.toml:3:1: server.socket_mode: must be at most 0o777 (permission bits \
                 only), got 0o1777",
                "broker.toml:6:1: topics[0].name: contains ' '; only ASCII letters, digits, '.', \
                 '_' and '-' are allowed",
                "broker.toml:8:1: topics[0].prefetch: must be greater than 0",
                "broker.toml:11:1: performance.worker_threads: must be between 1 and 1024, got 2000",
                "broker.toml:12:1: performance.batch_size: must be greater than 0",
            ]
        );
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_located_too() {
        let text = "performance.batch_size = 0\n\
                    topics = [\n  { name = \"a\", routing = \"fanout\" },\n  \
                    { name = \"b\", routing = \"fanout\", prefetch = 0 },\n]\n";
        let problems = invalid(text, &[]);
        let located: Vec<(String, Option<usize>)> =
            problems.into_iter().map(|d| (d.field, d.line)).collect();
        assert_eq!(
            located,
            [
                ("topics[1].prefetch".to_owned(), Some(4)),
                ("performance.batch_size".to_owned(), Some(1)),
            ]
        );
    }

    #[test]
    fn env_overrides_replace_file_values() {
        let config = load_with(
            EXAMPLE,
            &[
                ("MYCELIUM_SERVER__SOCKET_PATH", "/run/m.sock"),
                ("MYCELIUM_PERFORMANCE__WORKER_THREADS", "4"),
                ("MYCELIUM_TOPICS__MARKET_DATA__BUFFER_SIZE", "5000"),
                ("MYCELIUM_TOPIC_DEFAULTS__AUTO_CREATE", "true"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.socket_path, PathBuf::from("/run/m.sock"));
        assert_eq!(config.performance.worker_threads, 4);
        assert_eq!(
            config.topic("market_data").map(|t| t.buffer_size),
            Some(5000)
        );
        assert_eq!(
            config.topic("execution").map(|t| t.buffer_size),
            Some(50_000)
        );
        assert!(config.topic_defaults.auto_create);
    }

    #[test]
    fn an_unknown_override_is_an_env_error() {
        let err = load_with(
            EXAMPLE,
            &[("MYCELIUM_TOPICS__MARKETDATA__BUFFER_SIZE", "5")],
        )
        .unwrap_err();
        let ConfigError::Env { var, message } = err else {
            panic!("expected an Env error, got {err:?}");
        };
        assert_eq!(var, "MYCELIUM_TOPICS__MARKETDATA__BUFFER_SIZE");
        assert!(message.contains("MARKET_DATA"), "{message}");
    }

    #[test]
    fn an_override_with_a_bad_value_is_an_env_error_naming_the_variable() {
        let err =
            load_with(EXAMPLE, &[("MYCELIUM_PERFORMANCE__WORKER_THREADS", "many")]).unwrap_err();
        assert_eq!(
            err.diagnostics(),
            [
                "environment override MYCELIUM_PERFORMANCE__WORKER_THREADS: expected a \
              non-negative integer, got `many`: invalid digit found in string"
            ]
        );
    }

    #[test]
    fn an_invalid_value_set_by_the_environment_names_the_variable_instead_of_a_line() {
        let problems = invalid(EXAMPLE, &[("MYCELIUM_PERFORMANCE__WORKER_THREADS", "0")]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, None);
        assert_eq!(
            problems[0].to_string(),
            "broker.toml: performance.worker_threads: must be between 1 and 1024, got 0 \
             (set by MYCELIUM_PERFORMANCE__WORKER_THREADS)"
        );
    }

    #[test]
    fn an_env_set_invalid_topic_field_names_the_variable() {
        let problems = invalid(EXAMPLE, &[("MYCELIUM_TOPICS__EXECUTION__PREFETCH", "0")]);
        assert_eq!(problems[0].field, "topics[1].prefetch");
        assert!(problems[0]
            .message
            .ends_with("(set by MYCELIUM_TOPICS__EXECUTION__PREFETCH)"));
    }

    #[test]
    fn an_override_can_repair_an_invalid_file_value() {
        let text = "[performance]\nworker_threads = 0\n";
        let config = load_with(text, &[("MYCELIUM_PERFORMANCE__WORKER_THREADS", "3")]).unwrap();
        assert_eq!(config.performance.worker_threads, 3);
    }

    #[test]
    fn backpressure_drop_oldest_is_read_from_a_file() {
        let text = "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nbackpressure = \"drop_oldest\"\n\n[topic_defaults]\nbackpressure = \"drop_oldest\"\n";
        let config = load_with(text, &[]).unwrap();
        assert_eq!(config.topics[0].backpressure, Backpressure::DropOldest);
        assert_eq!(config.topic_defaults.backpressure, Backpressure::DropOldest);
        let problem = parse_error(
            "[[topics]]\nname = \"t\"\nrouting = \"fanout\"\nbackpressure = \"oldest\"\n",
        );
        assert!(
            problem.to_string().contains("`drop_oldest`"),
            "the choices are listed: {problem}"
        );
    }

    #[test]
    fn from_file_reads_and_validates_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, "[performance]\nbatch_size = 0\n").unwrap();
        let err = BrokerConfig::from_file(&path).unwrap_err();
        let ConfigError::Invalid(problems) = err else {
            panic!("expected Invalid, got {err:?}");
        };
        assert_eq!(problems[0].file, path);
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn from_file_on_a_missing_file_is_a_read_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        match BrokerConfig::from_file(&path) {
            Err(ConfigError::Read { path: got, source }) => {
                assert_eq!(got, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected a Read error, got {other:?}"),
        }
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.toml");
        // Sparse: the size is there, the disk blocks are not.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_CONFIG_FILE_BYTES + 1).unwrap();
        match BrokerConfig::from_file(&path) {
            Err(ConfigError::TooLarge {
                path: got,
                size,
                limit,
            }) => {
                assert_eq!(got, path);
                assert_eq!(size, MAX_CONFIG_FILE_BYTES + 1);
                assert_eq!(limit, MAX_CONFIG_FILE_BYTES);
            }
            other => panic!("expected a TooLarge error, got {other:?}"),
        }
        // At the limit it is read (and then fails to parse: it is all NUL bytes).
        file.set_len(MAX_CONFIG_FILE_BYTES).unwrap();
        assert!(matches!(
            BrokerConfig::from_file(&path),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn a_file_that_grows_while_read_is_cut_at_the_limit() {
        // A FIFO has no size to check: only the capped read stops it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut fifo = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .unwrap();
            let chunk = vec![b'#'; 1 << 20];
            // Stops at EPIPE once the reader has had enough.
            for _ in 0..64 {
                if fifo.write_all(&chunk).is_err() {
                    return false;
                }
            }
            true
        });
        match read_config_file(&path) {
            Err(ConfigError::TooLarge { size, .. }) => assert_eq!(size, MAX_CONFIG_FILE_BYTES + 1),
            other => panic!("expected a TooLarge error, got {other:?}"),
        }
        drop(std::fs::remove_file(&path));
        assert!(!writer.join().unwrap(), "the whole 64 MiB was read");
    }
}
