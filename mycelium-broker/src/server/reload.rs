//! Hot reload of the broker's config file, while producers and consumers keep running.
//!
//! - Three triggers: the file watcher (`mycelium_config::ConfigWatcher`, which watches the
//!   file's directory so a save by rename is seen, and debounces bursts), SIGHUP
//!   ([`ReloadHandle::signal`]) and a client's `ReloadRequest` ([`ReloadHandle::request`]).
//! - One task runs reloads one at a time. Triggers that arrive while one runs are served
//!   together by the next, so a request is always answered by a reload that started after it
//!   arrived, and a burst of edits costs a few reloads, never a queue of them.
//! - Each reload reads, parses and validates the whole file with the process's environment
//!   overrides (which therefore still win). An invalid file changes nothing: the broker keeps
//!   the config it runs, logs every diagnostic (`file:line:col: field: message`, as
//!   `mycelium check` prints them) and `Stats` shows the failure.
//! - A valid file is applied as a [`ConfigDiff`] against the running config: the registry
//!   makes its topic changes under one lock (`TopicRegistry::reconfigure`), removed topics'
//!   shared-memory attachments are ended, the `[shm]` and server settings are swapped, and
//!   only then is the generation bumped, so whoever sees the new generation in `Stats` sees
//!   the whole of it. Settings that cannot change live are kept at their running value and
//!   reported as needing a restart (or refused, for a live topic's routing).
//! - An empty file is refused: it is valid (the defaults, no topics), but on a live broker it
//!   is most often an editor caught between truncating and writing, and would remove every
//!   topic.
//! - A watcher report whose file bytes are the ones last read is skipped: an editor that
//!   rewrites the same text, or a neighbour's event, costs one read.
//! - The work runs on the blocking pool: the event loop keeps routing meanwhile.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mycelium_config::{BrokerConfig, ConfigDiff, ConfigError, ConfigWatcher, Takes};
use mycelium_transport::ReloadOutcome;

use crate::server::reload_handle::{ReloadAnswer, ReloadHandle, ReloadQueue, Trigger};
use crate::server::state::BrokerState;
/// Where a reload reads its config, and where the socket it chmods lives.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReloadSource {
    /// The config file the broker was started from; `None`: it runs on the built-in
    /// defaults, and a reload has nothing to read.
    pub(crate) config_file: Option<PathBuf>,
    /// The listening socket's path, whose mode follows `server.socket_mode`.
    pub(crate) socket_path: Option<PathBuf>,
}

/// Runs reloads until the queue's handles are gone (or the task is aborted at shutdown).
pub(crate) async fn run(state: Arc<BrokerState>, source: ReloadSource, mut queue: ReloadQueue) {
    // The watcher lives as long as this task; dropping it stops its thread.
    let _watcher = source
        .config_file
        .as_deref()
        .and_then(|path| start_watcher(path, state.reload.clone()));
    let mut last_text: Option<String> = None;
    while let Some(first) = queue.triggers.recv().await {
        let mut triggers = vec![first];
        while let Ok(more) = queue.triggers.try_recv() {
            triggers.push(more);
        }
        #[cfg(test)]
        if triggers.iter().any(|t| matches!(t, Trigger::Crash)) {
            panic!("the reload task was told to crash");
        }
        let forced = triggers.iter().any(|t| !matches!(t, Trigger::FileChanged));
        let (state_for_reload, source_for_reload) = (Arc::clone(&state), source.clone());
        let seen = last_text.take();
        let done = tokio::task::spawn_blocking(move || {
            reload(&state_for_reload, &source_for_reload, forced, seen)
        })
        .await;
        let answer = match done {
            Ok((answer, text)) => {
                last_text = text;
                answer
            }
            Err(error) => {
                tracing::error!(%error, "the config reload failed inside the broker (a bug): the running config may be partly updated; check `mycelium stats` and the file");
                Some(failure(
                    &state,
                    format!("the reload failed inside the broker: {error}"),
                ))
            }
        };
        for trigger in triggers {
            if let Trigger::Request(reply) = trigger {
                let answer = answer.clone().unwrap_or_else(|| ReloadAnswer {
                    outcome: ReloadOutcome::Unchanged,
                    status: state.config_status(),
                });
                let _ = reply.send(answer);
            }
        }
    }
}

fn start_watcher(path: &Path, handle: ReloadHandle) -> Option<ConfigWatcher> {
    match ConfigWatcher::start(path, move || handle.file_changed()) {
        Ok(watcher) => {
            tracing::info!(file = %path.display(), "watching the config file: edits are applied as they are saved");
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch the config file; reload with SIGHUP or `mycelium reload`");
            None
        }
    }
}

/// One reload attempt. `seen`: the text the last attempt read. Returns the answer (`None`
/// when a watcher-only attempt found the same bytes and did nothing) and the text read.
fn reload(
    state: &BrokerState,
    source: &ReloadSource,
    forced: bool,
    seen: Option<String>,
) -> (Option<ReloadAnswer>, Option<String>) {
    let started = std::time::Instant::now();
    let Some(path) = source.config_file.as_deref() else {
        let message = "the broker was started without a config file (no --config and no \
                       ./broker.toml): there is nothing to reload"
            .to_owned();
        tracing::warn!("{message}");
        return (Some(failure(state, message)), None);
    };
    // Capped: a file grown absurdly large is refused, not read whole.
    let text = match mycelium_config::read_config_file(path) {
        Ok(text) => text,
        Err(error) => return (Some(invalid(state, path, &error)), None),
    };
    if !forced && seen.as_deref() == Some(text.as_str()) {
        return (None, Some(text));
    }
    if text.trim().is_empty() {
        // An empty file is a valid config (every default, no topics), but on a running
        // broker it is far more often an editor caught between truncating the file and
        // writing it: applying it would remove every topic. Refused; a file of comments
        // only still means "the defaults".
        let message = format!(
            "{}: the file is empty; the broker keeps its running config (to run on the \
             built-in defaults, leave a comment in the file)",
            path.display()
        );
        tracing::error!("config reload refused: {message}");
        return (Some(failure(state, message)), Some(text));
    }
    let wanted = match BrokerConfig::from_toml_str(&text, path) {
        Ok(config) => config,
        Err(error) => return (Some(invalid(state, path, &error)), Some(text)),
    };
    let unresolved = crate::server::preflight::preflight(&wanted);
    if !unresolved.is_empty() {
        let message = unresolved
            .iter()
            .map(|problem| format!("{}: {problem}", path.display()))
            .collect::<Vec<_>>()
            .join("\n");
        tracing::error!(file = %path.display(), "config reload failed, still running the last good config: {}", message.replace('\n', "; "));
        return (Some(failure(state, message)), Some(text));
    }
    let running = state.config();
    let diff = ConfigDiff::between(&running, &wanted);
    // Only settings that need a restart (or were refused) differ: nothing to apply, and
    // `pending` still says what the file asks for.
    let inert = diff.added().is_empty()
        && diff.removed().is_empty()
        && diff
            .changes()
            .iter()
            .all(|change| matches!(change.takes, Takes::Restart | Takes::Refused));
    if inert {
        let pending = diff.pending();
        if pending.is_empty() {
            tracing::info!(file = %path.display(), "config reloaded: no change");
        } else {
            tracing::info!(file = %path.display(), "config reloaded: nothing to apply (what differs needs a restart or is refused)");
        }
        for line in &pending {
            tracing::warn!(file = %path.display(), "not applied: {line}");
        }
        state.update_config_status(|status| {
            status.reloads += 1;
            status.last_error.clear();
            status.pending = pending.join("\n");
        });
        let answer = ReloadAnswer {
            outcome: ReloadOutcome::Unchanged,
            status: state.config_status(),
        };
        return (Some(answer), Some(text));
    }
    let mut summary = diff.summary();
    let mut pending = diff.pending();
    let notes = apply(state, source, &running, &diff);
    if !notes.replaced.is_empty() {
        summary.push_str(&format!(
            ", ~{} (auto-created with the other routing: ended and declared anew)",
            notes.replaced.join(", ~")
        ));
    }
    pending.extend(notes.failures);
    state.update_config_status(|status| {
        status.generation += 1;
        status.reloads += 1;
        status.last_error.clear();
        status.last_change = summary.clone();
        status.pending = pending.join("\n");
    });
    let generation = state.config_status().generation;
    let took_us = started.elapsed().as_micros();
    tracing::info!(file = %path.display(), generation, took_us, "config reloaded: {summary}");
    for line in &pending {
        tracing::warn!(file = %path.display(), "not applied: {line}");
    }
    let answer = ReloadAnswer {
        outcome: ReloadOutcome::Applied,
        status: state.config_status(),
    };
    (Some(answer), Some(text))
}

/// What applying a diff had to say beyond the diff itself.
#[derive(Debug, Default)]
struct Applied {
    /// Auto-created topics that the file now declares with the other routing.
    replaced: Vec<String>,
    /// Changes that failed to take effect (a chmod), for `pending`.
    failures: Vec<String>,
}

/// Puts `diff` in force: topics, then the rings, then the socket's mode, then the config.
fn apply(
    state: &BrokerState,
    source: &ReloadSource,
    running: &BrokerConfig,
    diff: &ConfigDiff,
) -> Applied {
    let effective = diff.effective();
    let done = state.registry.reconfigure(effective, diff.removed());
    for (topic, dropped) in &done.removed {
        let attachments = state.shm.remove_topic(topic);
        tracing::info!(
            topic = topic.name(),
            dropped,
            shm_attachments = attachments,
            "topic removed: its subscribers were told"
        );
    }
    state.shm.set_config(effective.shm.clone());
    state
        .inflight
        .set_limit(effective.server.max_inflight_bytes);
    state.shm.topics_reconfigured(&done.changed);
    // A topic the registry could not make (a durable topic's log that would not open) is
    // reported as not applied, with why; the rest of the reload stands.
    let mut failures = done.failed;
    if running.server.socket_mode != effective.server.socket_mode {
        if let Some(socket) = &source.socket_path {
            let mode = std::fs::Permissions::from_mode(effective.server.socket_mode);
            if let Err(error) = std::fs::set_permissions(socket, mode) {
                tracing::warn!(socket = %socket.display(), %error, "cannot change the socket's mode");
                failures.push(format!(
                    "server.socket_mode: cannot chmod {}: {error}",
                    socket.display()
                ));
            }
        }
    }
    state.set_config(effective.clone());
    Applied {
        replaced: done.replaced,
        failures,
    }
}

/// Records and logs a reload whose file could not be read or loaded.
fn invalid(state: &BrokerState, path: &Path, error: &ConfigError) -> ReloadAnswer {
    let diagnostics = error.diagnostics();
    tracing::error!(
        file = %path.display(),
        "config reload failed, still running the last good config: {}",
        diagnostics.join("; ")
    );
    failure(state, diagnostics.join("\n"))
}

fn failure(state: &BrokerState, message: String) -> ReloadAnswer {
    state.update_config_status(|status| {
        status.reloads += 1;
        status.last_error = message;
    });
    ReloadAnswer {
        outcome: ReloadOutcome::Failed,
        status: state.config_status(),
    }
}
