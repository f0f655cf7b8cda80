//! The routing core: topics, the registry, and the in-process [`Broker`](local::Broker).

pub mod acl;
pub mod batch;
pub mod delivery;
pub mod ids;
pub mod local;
pub mod registry;
pub mod topic;
