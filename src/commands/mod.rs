//! The product's subcommands, one file each: `run`, `pub`/`sub`, `request`/`reply`, `check`,
//! `stats`, `topics`, `reload`.

pub(crate) mod check;
pub(crate) mod message_json;
pub(crate) mod pubsub;
pub(crate) mod reload;
pub(crate) mod request;
pub(crate) mod run;
pub(crate) mod stats;
mod stats_rates;
mod stats_watch;
pub(crate) mod topics;
