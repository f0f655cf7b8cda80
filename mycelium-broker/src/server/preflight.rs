//! [`preflight`]: what a valid config still asks for that this broker refuses, checked before
//! it is put in force (at start and on every reload) and by `mycelium check`, so that the
//! check and the broker never disagree.

use mycelium_config::BrokerConfig;

use crate::core::acl::TopicAcl;
use crate::server::durability::unserved_durable_topics;

/// One line per refusal (empty when the broker would run `config`): durable topics it does
/// not serve yet, access lists naming users or groups this machine does not have.
pub fn preflight(config: &BrokerConfig) -> Vec<String> {
    let mut problems = unserved_durable_topics(config);
    problems.extend(TopicAcl::check_all(config));
    problems
}
