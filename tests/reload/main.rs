//! Hot reload of `broker.toml` end to end: a real broker process whose config file the test
//! edits (in place, by rename, in bursts, invalidly) while `mycelium pub`/`sub` processes
//! and the client library keep using it.
//!
//! Every wait is on the broker's own report of its reloads (`mycelium stats --json`:
//! `config.generation` for applied reloads, `config.reloads` for every attempt) or on a
//! process's output, with a deadline; nothing sleeps to synchronise.
//!
//! # Layout
//! - `topics`: topics added, removed and resized under load; routing changes and settings that
//!   need a restart are refused while the rest of the edit applies.
//! - `invalid_edits`: an invalid file changes nothing and is reported by file, line and field.
//! - `triggers`: what starts a reload (an in-place write, a save by rename, a burst of writes,
//!   SIGHUP, `mycelium reload`), and what a reload keeps (environment overrides) or applies at
//!   once (the socket's mode).
//! - `shared_memory`: reloads that remove or change a topic while shared-memory clients use it.

#[path = "../common/mod.rs"]
mod common;

mod invalid_edits;
mod shared_memory;
mod topics;
mod triggers;

use std::collections::BTreeSet;

use common::pubsub_support::{run_to_end, spawn_pub, stats_json, topic_counter};
use common::{block_on, fanout, spawn_sub, wait_until, TestBroker};
use mycelium_client::Client;
use mycelium_client::{RecvError, RecvTimeoutError, SubscriptionEnd};
use mycelium_transport::{ErrorCode, ReloadOutcome};

fn queue(name: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"queue\"\n")
}

fn topic_with(name: &str, routing: &str, extra: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"{routing}\"\n{extra}\n")
}

/// The broker's `config` status from `mycelium stats --json`.
fn config_status(broker: &TestBroker) -> serde_json::Value {
    stats_json(broker)["config"].clone()
}

fn generation(broker: &TestBroker) -> u64 {
    config_status(broker)["generation"]
        .as_u64()
        .expect("config.generation")
}

fn reloads(broker: &TestBroker) -> u64 {
    config_status(broker)["reloads"]
        .as_u64()
        .expect("config.reloads")
}

/// Waits until the broker has applied a reload past `generation`; returns the new status.
fn wait_for_generation_after(broker: &TestBroker, before: u64) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_until("the broker to apply the edited config", || {
        status = config_status(broker);
        status["generation"].as_u64().is_some_and(|g| g > before)
    });
    status
}

/// Waits until the broker has finished a reload attempt past `attempts`; returns the status.
fn wait_for_attempt_after(broker: &TestBroker, attempts: u64) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_until("the broker to attempt a reload", || {
        status = config_status(broker);
        status["reloads"].as_u64().is_some_and(|n| n > attempts)
    });
    status
}

fn topic_names(broker: &TestBroker) -> BTreeSet<String> {
    stats_json(broker)["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

fn lines(status: &serde_json::Value, key: &str) -> Vec<String> {
    status[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
