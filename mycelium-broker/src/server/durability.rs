//! Durable topics (`durable = true`) are configured but not served by this broker yet: a
//! config asking for one is refused, at start and on reload, rather than run in memory while
//! its operator believes the messages are kept on disk.

use mycelium_config::BrokerConfig;

/// One problem per topic (and `[topic_defaults]`) that asks for durability.
pub(crate) fn unserved_durable_topics(config: &BrokerConfig) -> Vec<String> {
    let mut problems: Vec<String> = config
        .topics
        .iter()
        .filter(|topic| topic.durable)
        .map(|topic| {
            format!(
                "topic '{}': durable = true is not served by this broker yet (the storage \
                 layer exists, the broker does not write to it); remove the setting",
                topic.name
            )
        })
        .collect();
    if config.topic_defaults.durable {
        problems.push(
            "[topic_defaults] durable = true is not served by this broker yet; remove the \
             setting"
                .to_owned(),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_durable_topics_and_defaults_are_named() {
        let mut config = BrokerConfig::default();
        assert!(unserved_durable_topics(&config).is_empty());
        let mut kept = config.topic_defaults.topic("kept");
        kept.durable = true;
        config.topics.push(kept);
        config.topics.push(config.topic_defaults.topic("plain"));
        config.topic_defaults.durable = true;
        let problems = unserved_durable_topics(&config);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("topic 'kept'"));
        assert!(problems[1].contains("[topic_defaults]"));
    }
}
