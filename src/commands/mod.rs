//! The product's subcommands, one file each: `run`, `pub`/`sub` (and `sub`'s durable
//! subscriptions), `request`/`reply`, `check`, `stats`, `topics`, `groups`, `dlq`, `reload`.

pub(crate) mod check;
pub(crate) mod dlq;
mod durable_sub;
pub(crate) mod groups;
pub(crate) mod message_json;
pub(crate) mod pubsub;
pub(crate) mod reload;
pub(crate) mod request;
pub(crate) mod run;
mod start_position;
pub(crate) mod stats;
mod stats_rates;
mod stats_watch;
pub(crate) mod topics;
