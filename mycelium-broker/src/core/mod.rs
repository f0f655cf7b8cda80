//! The routing core: topics and the registry, the way to each subscriber (a [`Delivery`]),
//! the shared-memory relay's shape ([`relay`], installed by the server), the in-process
//! broker, wildcard subject patterns ([`subject`]), and the latency histograms
//! ([`latency`]).
//!
//! [`Delivery`]: delivery::Delivery

pub mod acl;
pub mod batch;
pub mod delivery;
#[cfg(test)]
pub(crate) mod delivery_conformance;
pub mod durable;
pub mod ids;
pub mod latency;
pub mod local;
pub mod patterns;
pub mod registry;
pub mod relay;
pub mod subject;
pub mod topic;
