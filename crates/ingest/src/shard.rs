//! Which part of the machines this ingest process owns, and how it says so.
//!
//! A single process owns every machine and reports on `status/ingest`. Among N shards, machine
//! `m` belongs to shard [`shard_of`]`(m, N)`, the function of a NATS account mapping
//! (`partition(N,1)`), so the broker and ingest agree on the split.

use aggregator_core::Timestamp;
use aggregator_core::partition::shard_of;
use aggregator_core::topic::{
    INGEST_STATUS_TOPIC, SHARD_PLACEHOLDER, expand_shard_placeholder, shard_status_topic,
};
use serde::Serialize;

/// This process's shard: its index, the number of shards and its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in all (at least 1).
    pub count: u32,
    /// The subscription filter, `{shard}` already expanded.
    pub filter: String,
    /// True when the filter named `{shard}`: the broker sends this shard only its machines.
    pub partitioned_by_broker: bool,
}

impl Shard {
    /// The shard `index` of `count` subscribing to `template` (with `{shard}` expanded).
    pub fn new(index: u32, count: u32, template: &str) -> Self {
        Shard {
            index,
            count,
            filter: expand_shard_placeholder(template, index),
            partitioned_by_broker: template.contains(SHARD_PLACEHOLDER),
        }
    }

    /// Whether this process owns `machine`'s windows.
    pub fn owns(&self, machine: &str) -> bool {
        self.count <= 1 || shard_of(machine, self.count) == self.index
    }

    /// Whether each message must be checked with [`Shard::owns`] on arrival: the broker sends
    /// every machine to every shard.
    pub fn filters_on_arrival(&self) -> bool {
        self.count > 1 && !self.partitioned_by_broker
    }

    /// `status/ingest` alone, `status/ingest/{index}` among several shards.
    pub fn status_topic(&self) -> String {
        if self.count > 1 {
            shard_status_topic(self.index)
        } else {
            INGEST_STATUS_TOPIC.to_owned()
        }
    }

    /// The JSON of the status topic: `online` and `startedAt`, plus `shard` and `shardCount`
    /// among several shards.
    pub fn status_payload(&self, online: bool, started_at: Timestamp) -> Vec<u8> {
        let sharded = self.count > 1;
        let status = Status {
            online,
            started_at: started_at.to_rfc3339_millis(),
            shard: sharded.then_some(self.index),
            shard_count: sharded.then_some(self.count),
        };
        // A struct of a bool, a String and two numbers always serializes.
        serde_json::to_vec(&status).unwrap_or_default()
    }
}

/// Wire form of the status topic: `online` and `startedAt`, plus `shard` and `shardCount` among
/// several shards.
#[derive(Serialize)]
struct Status {
    online: bool,
    #[serde(rename = "startedAt")]
    started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<u32>,
    #[serde(rename = "shardCount", skip_serializing_if = "Option::is_none")]
    shard_count: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_process_keeps_the_plain_status_and_owns_everything() {
        let shard = Shard::new(0, 1, aggregator_core::topic::READINGS_FILTER);
        assert_eq!(shard.filter, "machines/+/scrap");
        assert_eq!(shard.status_topic(), "status/ingest");
        assert!(!shard.filters_on_arrival());
        assert!(shard.owns("anything"));
        let json = String::from_utf8(shard.status_payload(true, Timestamp::EPOCH)).unwrap();
        assert_eq!(
            json,
            r#"{"online":true,"startedAt":"1970-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn shards_split_the_machines_and_report_on_their_own_topic() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::new(i, 3, "machines/+/scrap"))
            .collect();
        for m in 0..100 {
            let machine = format!("M{m}");
            let owners = shards.iter().filter(|s| s.owns(&machine)).count();
            assert_eq!(owners, 1, "{machine}");
        }
        assert!(shards[1].filters_on_arrival());
        assert_eq!(shards[1].status_topic(), "status/ingest/1");
        let json = String::from_utf8(shards[2].status_payload(false, Timestamp::EPOCH)).unwrap();
        assert_eq!(
            json,
            r#"{"online":false,"startedAt":"1970-01-01T00:00:00.000Z","shard":2,"shardCount":3}"#
        );
    }

    #[test]
    fn a_shard_placeholder_means_the_broker_partitions() {
        let shard = Shard::new(2, 3, "shard/{shard}/machines/+/scrap");
        assert_eq!(shard.filter, "shard/2/machines/+/scrap");
        assert!(!shard.filters_on_arrival());
    }
}
