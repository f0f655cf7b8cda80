//! The typed shape of `broker.toml`: one file per section, plus the value types topics use.

mod acl;
mod backpressure;
mod broker;
mod durability;
mod duration;
mod fsync;
mod http;
mod metrics;
mod performance;
mod routing;
mod server;
mod shm;
mod storage;
mod topic;

pub use acl::{display_access, ParsePrincipalError, Principal, PrincipalId};
pub use backpressure::{Backpressure, ParseBackpressureError};
pub use broker::BrokerConfig;
pub use durability::Durability;
pub(crate) use durability::DEAD_LETTER_SUFFIX;
pub use duration::{ConfigDuration, ParseDurationError};
pub use fsync::{Fsync, ParseFsyncError, MAX_FSYNC_INTERVAL, MIN_FSYNC_INTERVAL};
pub use http::{HttpConfig, MAX_HTTP_BODY_BYTES};
pub use metrics::MetricsConfig;
pub use performance::PerformanceConfig;
pub use routing::{ParseRoutingError, Routing};
pub(crate) use server::parse_octal_mode;
pub use server::ServerConfig;
pub use shm::{
    ShmConfig, MAX_RING_BYTES, MAX_SHM_PUBLISHERS_PER_TOPIC, MAX_SHM_SUBSCRIBERS, MIN_RING_BYTES,
};
pub use storage::{StorageConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use topic::{TopicConfig, TopicDefaults};
