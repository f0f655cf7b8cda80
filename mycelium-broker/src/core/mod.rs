//! The routing core: topics and the registry, the way to each subscriber (a [`Delivery`]),
//! the shared-memory relay's shape ([`relay`], installed by the server), and the in-process
//! broker.
//!
//! [`Delivery`]: delivery::Delivery

pub mod acl;
pub mod batch;
pub mod delivery;
#[cfg(test)]
pub(crate) mod delivery_conformance;
pub mod ids;
pub mod local;
pub mod registry;
pub mod relay;
pub mod topic;
