//! Topic names of the contract and the rules for a machine id as a topic level.

/// Filter the ingest subscribes to.
pub const READINGS_FILTER: &str = "machines/+/scrap";
/// Filter the gateway subscribes to.
pub const AGGREGATES_FILTER: &str = "aggregates/+/+";
/// Dead letters of rejected payloads (not retained).
pub const REJECTED_TOPIC: &str = "ingest/rejected";
/// Ingest liveness (retained, also the last will).
pub const INGEST_STATUS_TOPIC: &str = "status/ingest";

/// Longest machine id we accept, in bytes. MQTT allows 65 535-byte topics; a shop-floor id
/// is a few characters, and the cap keeps 100 000 keys from costing gigabytes.
pub const MAX_MACHINE_ID_BYTES: usize = 256;

/// Why a string cannot be a single topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicLevelError {
    /// Empty level.
    #[error("is empty")]
    Empty,
    /// Longer than [`MAX_MACHINE_ID_BYTES`].
    #[error("is longer than {MAX_MACHINE_ID_BYTES} bytes")]
    TooLong,
    /// Contains `/`, `+`, `#` or U+0000, which Mosquitto refuses in a published topic.
    #[error("contains {0:?}, which is not allowed in a topic level")]
    IllegalChar(char),
}

/// Checks that `level` can stand as one level of a published topic.
///
/// A bad id must never reach a publish: Mosquitto disconnects a client that publishes an
/// invalid topic.
pub fn validate_topic_level(level: &str) -> Result<(), TopicLevelError> {
    if level.is_empty() {
        return Err(TopicLevelError::Empty);
    }
    if level.len() > MAX_MACHINE_ID_BYTES {
        return Err(TopicLevelError::TooLong);
    }
    if let Some(c) = level.chars().find(|c| matches!(c, '/' | '+' | '#' | '\0')) {
        return Err(TopicLevelError::IllegalChar(c));
    }
    Ok(())
}

/// The machine level of `machines/{id}/scrap`, or `None` when the topic has another shape.
/// The level may be empty (`machines//scrap`); validation is the caller's next step.
pub fn machine_from_readings_topic(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("machines/")?;
    let machine = rest.strip_suffix("/scrap")?;
    (!machine.contains('/')).then_some(machine)
}

/// `aggregates/{machine}/{index}`.
pub fn aggregate_topic(machine: &str, index: u32) -> String {
    let mut topic = String::with_capacity(machine.len() + 22);
    topic.push_str("aggregates/");
    topic.push_str(machine);
    topic.push('/');
    topic.push_str(&index.to_string());
    topic
}

/// Splits `aggregates/{machine}/{index}` into its key, or `None` for any other shape.
pub fn key_from_aggregate_topic(topic: &str) -> Option<(&str, u32)> {
    let rest = topic.strip_prefix("aggregates/")?;
    let (machine, index) = rest.split_once('/')?;
    if machine.is_empty() || index.contains('/') {
        return None;
    }
    Some((machine, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_level_is_taken_from_the_topic() {
        assert_eq!(machine_from_readings_topic("machines/A1/scrap"), Some("A1"));
        assert_eq!(machine_from_readings_topic("machines//scrap"), Some(""));
        assert_eq!(machine_from_readings_topic("machines/a/b/scrap"), None);
        assert_eq!(machine_from_readings_topic("other/A1/scrap"), None);
    }

    #[test]
    fn aggregate_topics_round_trip() {
        let t = aggregate_topic("Presse 7", 0);
        assert_eq!(t, "aggregates/Presse 7/0");
        assert_eq!(key_from_aggregate_topic(&t), Some(("Presse 7", 0)));
        assert_eq!(key_from_aggregate_topic("aggregates/A1/x"), None);
        assert_eq!(key_from_aggregate_topic("aggregates/A1/1/2"), None);
        assert_eq!(key_from_aggregate_topic("aggregates//1"), None);
    }

    #[test]
    fn illegal_levels_are_refused() {
        assert_eq!(validate_topic_level(""), Err(TopicLevelError::Empty));
        for bad in ["a+b", "#", "a/b", "nul\0"] {
            assert!(validate_topic_level(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_topic_level(&"x".repeat(MAX_MACHINE_ID_BYTES + 1)),
            Err(TopicLevelError::TooLong)
        );
        assert!(validate_topic_level("<img src=x onerror=alert(1)>").is_ok());
        assert!(validate_topic_level("Maschine-Ä1").is_ok());
    }
}
