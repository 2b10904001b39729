//! Topic names of the contract and the rules for a machine id as a topic level.
//!
//! A reading's topic is any topic ending in `machines/{id}/scrap`: a partitioning broker puts
//! a prefix in front (`shard/2/machines/A1/scrap`), so only the last three levels are read.

/// Filter the ingest subscribes to.
pub const READINGS_FILTER: &str = "machines/+/scrap";
/// Filter the gateway subscribes to.
pub const AGGREGATES_FILTER: &str = "aggregates/+/+";
/// Dead letters of rejected payloads (not retained).
pub const REJECTED_TOPIC: &str = "ingest/rejected";
/// Ingest liveness (retained, also the last will).
pub const INGEST_STATUS_TOPIC: &str = "status/ingest";
/// Per-shard ingest liveness when `shard_count > 1`: `status/ingest/{shard_index}`.
pub const INGEST_SHARD_STATUS_FILTER: &str = "status/ingest/+";
/// Alarm state changes (retained): `alarms/{machineId}/{scrapIndex}`.
pub const ALARMS_FILTER: &str = "alarms/+/+";
/// Trends (retained): `trends/{machineId}/{scrapIndex}`.
pub const TRENDS_FILTER: &str = "trends/+/+";
/// Every key's minute buckets, which the historian stores.
pub const HISTORY_FILTER: &str = "history/+/+";
/// Placeholder in a subscription topic template that stands for the shard index.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

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

/// Checks that `level` can stand as one level of a published topic: a bad id must never reach
/// a publish, since Mosquitto disconnects a client that publishes an invalid topic.
pub fn validate_topic_level(level: &str) -> Result<(), TopicLevelError> {
    match level.len() {
        0 => Err(TopicLevelError::Empty),
        n if n > MAX_MACHINE_ID_BYTES => Err(TopicLevelError::TooLong),
        _ => (level.chars().find(|c| matches!(c, '/' | '+' | '#' | '\0')))
            .map_or(Ok(()), |c| Err(TopicLevelError::IllegalChar(c))),
    }
}

/// The machine level of a reading's topic (`[prefix/]machines/{id}/scrap`), or `None` for
/// another shape. The level may be empty (`machines//scrap`): the caller validates it.
pub fn machine_from_readings_topic(topic: &str) -> Option<&str> {
    let rest = topic.strip_suffix("/scrap")?;
    let (before, machine) = rest.rsplit_once('/')?;
    // `machines` must be a whole level: `xmachines/A1/scrap` is not a reading's topic.
    (before == "machines" || before.ends_with("/machines")).then_some(machine)
}

/// A subscription topic template with every `{shard}` replaced by `shard_index`, e.g.
/// `shard/{shard}/machines/+/scrap` → `shard/2/machines/+/scrap`.
pub fn expand_shard_placeholder(template: &str, shard_index: u32) -> String {
    template.replace(SHARD_PLACEHOLDER, &shard_index.to_string())
}

/// `status/ingest/{shard_index}`: a shard's liveness topic when `shard_count > 1`.
pub fn shard_status_topic(shard_index: u32) -> String {
    format!("{INGEST_STATUS_TOPIC}/{shard_index}")
}

/// The shard index of `status/ingest/{k}`, or `None` for any other shape.
pub fn shard_from_status_topic(topic: &str) -> Option<u32> {
    let k = topic.strip_prefix(INGEST_STATUS_TOPIC)?.strip_prefix('/')?;
    // `u32::from_str` takes a leading `+`; a topic level `+5` is not a shard.
    k.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| k.parse().ok())?
}

/// `aggregates/{machine}/{index}`.
pub fn aggregate_topic(machine: &str, index: u32) -> String {
    key_topic("aggregates/", machine, index)
}

/// Splits `aggregates/{machine}/{index}` into its key, or `None` for any other shape.
pub fn key_from_aggregate_topic(topic: &str) -> Option<(&str, u32)> {
    key_from_topic("aggregates/", topic)
}

/// `alarms/{machine}/{index}`: a key's alarm state (retained).
pub fn alarm_topic(machine: &str, index: u32) -> String {
    key_topic("alarms/", machine, index)
}

/// Splits `alarms/{machine}/{index}` into its key, or `None` for any other shape.
pub fn key_from_alarm_topic(topic: &str) -> Option<(&str, u32)> {
    key_from_topic("alarms/", topic)
}

/// `trends/{machine}/{index}`: a key's trend (retained).
pub fn trend_topic(machine: &str, index: u32) -> String {
    key_topic("trends/", machine, index)
}

/// Splits `trends/{machine}/{index}` into its key, or `None` for any other shape.
pub fn key_from_trend_topic(topic: &str) -> Option<(&str, u32)> {
    key_from_topic("trends/", topic)
}

/// `history/{machine}/{index}`: a key's minute buckets (QoS 1, not retained).
pub fn history_topic(machine: &str, index: u32) -> String {
    key_topic("history/", machine, index)
}

/// Splits `history/{machine}/{index}` into its key, or `None` for any other shape.
pub fn key_from_history_topic(topic: &str) -> Option<(&str, u32)> {
    key_from_topic("history/", topic)
}

/// `shifts/{machine}/{index}`: a key's current and last shift totals (retained).
pub fn shift_topic(machine: &str, index: u32) -> String {
    key_topic("shifts/", machine, index)
}

fn key_topic(root: &str, machine: &str, index: u32) -> String {
    format!("{root}{machine}/{index}")
}

fn key_from_topic<'t>(root: &str, topic: &'t str) -> Option<(&'t str, u32)> {
    let rest = topic.strip_prefix(root)?;
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
    fn a_prefix_in_front_of_machines_is_allowed() {
        assert_eq!(
            machine_from_readings_topic("shard/2/machines/A1/scrap"),
            Some("A1")
        );
        assert_eq!(
            machine_from_readings_topic("shard/2/machines//scrap"),
            Some("")
        );
        assert_eq!(
            machine_from_readings_topic("/machines/A1/scrap"),
            Some("A1")
        );
        assert_eq!(machine_from_readings_topic("xmachines/A1/scrap"), None);
        assert_eq!(
            machine_from_readings_topic("shard/machines/A1/scrapx"),
            None
        );
        assert_eq!(machine_from_readings_topic("machines/A1/scrap/x"), None);
        assert_eq!(machine_from_readings_topic("machines/scrap"), None);
    }

    proptest::proptest! {
        /// Whatever whole levels come before it, `machines/{id}/scrap` yields the id.
        #[test]
        fn any_prefix_of_whole_levels_is_read(
            prefix in proptest::collection::vec("[a-z0-9]{0,6}", 0..4),
            machine in "[^/]{0,12}",
        ) {
            let mut topic = String::new();
            for level in &prefix {
                topic.push_str(level);
                topic.push('/');
            }
            topic.push_str(&format!("machines/{machine}/scrap"));
            proptest::prop_assert_eq!(machine_from_readings_topic(&topic), Some(machine.as_str()));
        }
    }

    #[test]
    fn shard_templates_and_status_topics() {
        assert_eq!(
            expand_shard_placeholder("shard/{shard}/machines/+/scrap", 2),
            "shard/2/machines/+/scrap"
        );
        assert_eq!(
            expand_shard_placeholder(READINGS_FILTER, 2),
            READINGS_FILTER
        );
        assert_eq!(shard_status_topic(1), "status/ingest/1");
        assert_eq!(shard_from_status_topic("status/ingest/1"), Some(1));
        assert_eq!(shard_from_status_topic("status/ingest"), None);
        assert_eq!(shard_from_status_topic("status/ingest/"), None);
        assert_eq!(shard_from_status_topic("status/ingest/+1"), None);
        assert_eq!(shard_from_status_topic("status/ingestx/1"), None);
    }

    #[test]
    fn alarm_and_trend_topics_round_trip() {
        assert_eq!(alarm_topic("A1", 2), "alarms/A1/2");
        assert_eq!(trend_topic("A1", 2), "trends/A1/2");
        assert_eq!(key_from_alarm_topic("alarms/A1/2"), Some(("A1", 2)));
        assert_eq!(key_from_trend_topic("trends/A1/2"), Some(("A1", 2)));
        assert_eq!(key_from_alarm_topic("trends/A1/2"), None);
        assert_eq!(key_from_trend_topic("trends//2"), None);
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
