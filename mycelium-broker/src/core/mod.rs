//! The routing core: topics and the registry, the ways to subscribers (a [`Delivery`] per
//! subscriber, a [`Relay`] per topic for shared memory), and the in-process broker.
//!
//! [`Delivery`]: delivery::Delivery
//! [`Relay`]: relay::Relay

pub mod acl;
pub mod batch;
pub mod delivery;
pub mod ids;
pub mod local;
pub mod registry;
pub mod relay;
pub mod topic;
