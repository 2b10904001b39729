//! Sparkplug B input, beside the JSON readings: ingest as a host application of the groups it
//! follows. Each message goes through its edge node's session
//! ([`aggregator_core::sparkplug::Sessions`]); the scrap metrics it resolves become readings
//! of the same windows, log and minute buckets as JSON readings. What cannot be resolved is
//! counted and answered with a rebirth request (NCMD), never guessed.
//!
//! A death marks its machines offline: their aggregates are published again at once with
//! `"offline": true` and keep their windows; a birth brings them back. Historical metrics go
//! only into their minute's bucket, while that minute is open.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aggregator_core::sparkplug::{
    self, DataType, MachineFrom, MessageType, MetricPattern, NodeKey, Presence, ResolvedMetric,
    SessionConfig, Sessions, Skipped, TimeFrom, Topic,
};
use aggregator_core::{Accepted, KeyId, Reading, Timestamp};
use rumqttc::Publish;
use service_kit::{SettingsError, ensure};

use super::Pipeline;
use crate::configuration::SparkplugSettings;
use crate::durability::redelivery::Delivery;

/// Devices remembered per edge node for its death: more are not marked offline with it.
const MAX_DEVICES_PER_NODE: usize = 4_096;

/// The Sparkplug settings checked.
#[derive(Debug, Clone)]
pub struct SparkplugConfig {
    /// The groups followed (`+`: every group).
    pub groups: Vec<String>,
    /// The host id whose STATE ingest publishes, if any.
    pub host_id: Option<String>,
    /// Which metric names carry scrap.
    pub pattern: MetricPattern,
    /// Which id is the machine.
    pub machine: MachineFrom,
    /// Which time a reading takes.
    pub time: TimeFrom,
    /// Reorder timeout, rebirth cool-down and node limit.
    pub session: SessionConfig,
}

impl SparkplugConfig {
    /// The checked settings, or `None` when no group is followed.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first bad `sparkplug.*` setting.
    pub fn new(settings: &SparkplugSettings) -> Result<Option<Self>, SettingsError> {
        for group in &settings.groups {
            let level = group == "+" || is_topic_level(group);
            let message = format!("{group:?} must be one topic level (no /, # or +) or +");
            ensure(level, "sparkplug.groups", message)?;
        }
        let host = &settings.host_id;
        let message = format!("{host:?} must be empty or one topic level (no /, # or +)");
        ensure(
            host.is_empty() || is_topic_level(host),
            "sparkplug.host_id",
            message,
        )?;
        let pattern = MetricPattern::new(&settings.metric_pattern)
            .map_err(|e| SettingsError::invalid("sparkplug.metric_pattern", e.to_string()))?;
        let machine = MachineFrom::parse(&settings.machine).ok_or_else(|| {
            let message = format!("must be device or node, not {:?}", settings.machine);
            SettingsError::invalid("sparkplug.machine", message)
        })?;
        let time = TimeFrom::parse(&settings.time).ok_or_else(|| {
            let message = format!("must be metric or arrival, not {:?}", settings.time);
            SettingsError::invalid("sparkplug.time", message)
        })?;
        if settings.groups.is_empty() {
            return Ok(None);
        }
        Ok(Some(SparkplugConfig {
            groups: settings.groups.clone(),
            host_id: (!host.is_empty()).then(|| host.clone()),
            pattern,
            machine,
            time,
            session: SessionConfig {
                reorder_timeout: Duration::from_millis(settings.reorder_timeout_ms),
                rebirth_cooldown: Duration::from_millis(settings.rebirth_cooldown_ms),
                max_nodes: settings.max_nodes,
            },
        }))
    }

    /// The subscriptions: every message of each group followed.
    pub fn filters(&self) -> Vec<String> {
        let namespace = sparkplug::topic::NAMESPACE;
        let groups = self.groups.iter();
        groups.map(|g| format!("{namespace}/{g}/#")).collect()
    }

    /// The topic of this host's STATE, if it publishes one.
    pub fn state_topic(&self) -> Option<String> {
        self.host_id.as_deref().map(sparkplug::topic::state_topic)
    }
}

/// A host application's STATE message: `{"online":true,"timestamp":1733...}`, the same
/// timestamp in the birth and in the will, as Sparkplug 3.0 asks.
pub fn state_payload(online: bool, at: Timestamp) -> Vec<u8> {
    let timestamp = at.unix_millis();
    format!("{{\"online\":{online},\"timestamp\":{timestamp}}}").into_bytes()
}

/// A host application's STATE as read, JSON.
#[derive(serde::Deserialize)]
struct State {
    online: bool,
}

/// Why a Sparkplug message or metric was refused, as the rejection counter labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparkplugRejection {
    /// Not a Sparkplug B payload (protobuf refused it) or not a Sparkplug topic.
    Invalid,
    /// A metric whose alias or datatype no birth declared.
    Unresolved,
    /// A scrap metric of a type that is no number, or null.
    NotNumeric,
    /// An edge node beyond `sparkplug.max_nodes`.
    TooManyNodes,
}

impl SparkplugRejection {
    /// Every one, for the counters exported before the first rejection.
    pub const ALL: [SparkplugRejection; 4] = [
        SparkplugRejection::Invalid,
        SparkplugRejection::Unresolved,
        SparkplugRejection::NotNumeric,
        SparkplugRejection::TooManyNodes,
    ];

    /// The reason label.
    pub fn as_str(self) -> &'static str {
        match self {
            SparkplugRejection::Invalid => "invalid_sparkplug",
            SparkplugRejection::Unresolved => "unresolved",
            SparkplugRejection::NotNumeric => "not_numeric",
            SparkplugRejection::TooManyNodes => "too_many_nodes",
        }
    }
}

/// The pipeline's Sparkplug state.
pub struct SparkplugInput {
    config: SparkplugConfig,
    sessions: Sessions,
    /// The machines each node's devices are, for its death.
    node_machines: HashMap<NodeKey, HashSet<String>>,
    /// Machines whose node or device is dead.
    offline: HashSet<String>,
}

impl SparkplugInput {
    /// No edge node known yet.
    pub fn new(config: SparkplugConfig) -> Self {
        SparkplugInput {
            sessions: Sessions::new(config.session),
            config,
            node_machines: HashMap::new(),
            offline: HashSet::new(),
        }
    }

    /// Whether `machine`'s node or device is dead.
    pub fn is_offline(&self, machine: &str) -> bool {
        !self.offline.is_empty() && self.offline.contains(machine)
    }

    /// Machines a previous run showed offline: they stay so until their birth.
    pub fn restore_offline<'m>(&mut self, machines: impl IntoIterator<Item = &'m str>) {
        self.offline.extend(machines.into_iter().map(str::to_owned));
    }

    /// When a missing sequence number runs out of time next.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let ms = self.sessions.next_lost_check()?;
        Timestamp::from_unix_millis(i64::try_from(ms).ok()?)
    }

    /// Records that `machine` is one of `node`'s.
    fn remember(&mut self, node: &NodeKey, machine: &str) {
        let machines = self.node_machines.entry(node.clone()).or_default();
        if machines.len() < MAX_DEVICES_PER_NODE && !machines.contains(machine) {
            machines.insert(machine.to_owned());
        }
    }

    /// The machines whose presence `presence` of `node` changes, and whether they are online.
    fn presence_change(&mut self, node: &NodeKey, presence: Presence) -> (Vec<String>, bool) {
        let (device, online) = match presence {
            Presence::Online { device } => (device, true),
            Presence::Offline { device } => (device, false),
        };
        let mode = self.config.machine;
        let Some(machine) = mode.presence(&node.node, device.as_deref()) else {
            return (Vec::new(), online);
        };
        let machine = machine.to_owned();
        if device.is_some() && online {
            self.remember(node, &machine);
        }
        let mut machines = vec![machine];
        if device.is_none() && !online {
            // A node's death takes its devices with it.
            let devices = self.node_machines.get(node).into_iter().flatten();
            machines.extend(devices.cloned());
        }
        for machine in &machines {
            if online {
                self.offline.remove(machine);
            } else {
                self.offline.insert(machine.clone());
            }
        }
        (machines, online)
    }
}

fn is_topic_level(text: &str) -> bool {
    !text.is_empty() && !text.contains(['/', '+', '#'])
}

fn millis(at: Timestamp) -> u64 {
    u64::try_from(at.unix_millis()).unwrap_or(0)
}

impl Pipeline {
    /// One message on a Sparkplug topic; returns how many readings it brought into a window.
    pub(super) fn ingest_sparkplug(&mut self, publish: &Publish, now: Timestamp) -> u64 {
        self.metrics.sparkplug_messages.inc();
        let edge = match Topic::parse(&publish.topic) {
            Some(Topic::Edge {
                group,
                kind,
                node,
                device,
            }) => (group, kind, node, device),
            Some(Topic::State { host }) => {
                self.read_state(host, publish);
                return 0;
            }
            None => {
                let detail = "not a Sparkplug B topic";
                self.reject_sparkplug(SparkplugRejection::Invalid, publish, 1, detail);
                return 0;
            }
        };
        let (group, kind, node, device) = edge;
        if publish.payload.is_empty() {
            // The clear of a retained message, passed on by the broker: no message.
            self.metrics.readings_retained_ignored.inc();
            return 0;
        }
        let is_data = matches!(kind, MessageType::NodeData | MessageType::DeviceData);
        if publish.retain && is_data {
            // A stored copy: counted when it was live. Retained births still declare aliases.
            self.metrics.readings_retained_ignored.inc();
            return 0;
        }
        let max = self.limits.max_payload_bytes;
        let payload = match sparkplug::decode(&publish.payload, max) {
            Ok(payload) => payload,
            Err(e) => {
                let detail = e.to_string();
                self.reject_sparkplug(SparkplugRejection::Invalid, publish, 1, &detail);
                return 0;
            }
        };
        let key = NodeKey {
            group: group.to_owned(),
            node: node.to_owned(),
        };
        let Some(input) = &mut self.sparkplug else {
            return 0;
        };
        let applied = input
            .sessions
            .apply(&key, kind, device, payload, millis(now));
        self.metrics
            .sparkplug_nodes
            .set(super::gauge(input.sessions.len()));
        self.count_skipped(applied.skipped, publish);
        if applied.unresolved > 0 {
            let detail = "metrics whose alias or datatype no birth declared";
            let n = applied.unresolved as u64;
            self.reject_sparkplug(SparkplugRejection::Unresolved, publish, n, detail);
        }
        if applied.rebirth {
            self.request_rebirth(&key, now);
        }
        if let Some(presence) = applied.presence {
            self.change_presence(&key, presence, now);
        }
        let delivery = Delivery::of(publish);
        let accepted: u64 = applied
            .metrics
            .into_iter()
            .map(|metric| u64::from(self.take_metric(&key, metric, delivery, publish, now)))
            .sum();
        if accepted > 0
            && let Some(d) = delivery
        {
            self.redeliveries.logged(d);
        }
        accepted
    }

    /// Counts why a message was not taken.
    fn count_skipped(&mut self, skipped: Option<Skipped>, publish: &Publish) {
        match skipped {
            None | Some(Skipped::Command) => {}
            Some(Skipped::Duplicate) => {
                self.metrics.sparkplug_duplicates.inc();
            }
            Some(Skipped::StaleDeath) => {
                self.metrics.sparkplug_stale_deaths.inc();
            }
            Some(Skipped::TooManyNodes) => {
                let detail = "a new edge node while sparkplug.max_nodes are known";
                self.reject_sparkplug(SparkplugRejection::TooManyNodes, publish, 1, detail);
            }
        }
    }

    /// One resolved metric: a reading when it is a number of a scrap metric; true when a
    /// window took it.
    fn take_metric(
        &mut self,
        node: &NodeKey,
        metric: ResolvedMetric,
        delivery: Option<Delivery>,
        publish: &Publish,
        now: Timestamp,
    ) -> bool {
        let Some(input) = &self.sparkplug else {
            return false;
        };
        let Some(scrap_index) = input.config.pattern.index(&metric.name) else {
            self.metrics.sparkplug_metrics_ignored.inc();
            return false;
        };
        let machine = input
            .config
            .machine
            .machine(&node.node, metric.device.as_deref());
        if !self.shard.owns(machine) {
            self.metrics.readings_other_shard.inc();
            return false;
        }
        let value = DataType::numeric(metric.datatype)
            .zip(metric.value.as_ref())
            .and_then(|(datatype, value)| datatype.number(value));
        let Some(value) = value else {
            let detail = format!(
                "metric {:?} of datatype {} holds no finite number",
                metric.name, metric.datatype
            );
            self.reject_sparkplug(SparkplugRejection::NotNumeric, publish, 1, &detail);
            return false;
        };
        let stamped = metric.timestamp.and_then(|ms| i64::try_from(ms).ok());
        let stamped = stamped.and_then(Timestamp::from_unix_millis);
        let stamped = stamped.filter(|_| input.config.time == TimeFrom::Metric);
        let reading = Reading {
            machine,
            scrap_index,
            value,
            event_time: stamped.unwrap_or(now),
            time_from_payload: stamped.is_some(),
        };
        if metric.is_historical {
            // Recorded earlier and sent late: history, never the live window.
            let counter = if self.count_in_history(&reading, now) {
                &self.metrics.sparkplug_historical
            } else {
                &self.metrics.sparkplug_historical_dropped
            };
            counter.inc();
            return false;
        }
        match self.store.accept_with_id(&reading, None, now) {
            Ok(Accepted::Counted(id)) => {
                if let Some(log) = &mut self.log {
                    log.append_reading(&reading, delivery, None);
                }
                self.count_in_history(&reading, now);
                self.changed(id, now);
                if let Some(input) = &mut self.sparkplug {
                    input.remember(node, machine);
                }
                true
            }
            Ok(Accepted::Duplicate { .. }) => false,
            Err(rejection) => {
                self.reject(&rejection, publish, now);
                false
            }
        }
    }

    /// A host application's STATE, read as JSON (never protobuf) and counted.
    fn read_state(&mut self, host: &str, publish: &Publish) {
        match serde_json::from_slice::<State>(&publish.payload) {
            Ok(state) => {
                self.metrics.sparkplug_states.inc();
                tracing::debug!(host, online = state.online, "Sparkplug host STATE");
            }
            Err(e) => {
                let detail = format!("STATE of host {host:?} is not its JSON: {e}");
                self.reject_sparkplug(SparkplugRejection::Invalid, publish, 1, &detail);
            }
        }
    }

    /// Marks the machines of a birth or death online or offline, and publishes their
    /// aggregates again now.
    fn change_presence(&mut self, node: &NodeKey, presence: Presence, now: Timestamp) {
        let Some(input) = &mut self.sparkplug else {
            return;
        };
        let (machines, online) = input.presence_change(node, presence);
        if !machines.is_empty() {
            tracing::info!(group = %node.group, node = %node.node, ?machines, online, "Sparkplug presence changed");
        }
        self.presence_changed(&machines, now);
    }

    /// Marks `machines`, offline in a previous run's retained aggregates, offline again: a
    /// node that died while ingest was away sends nothing until its next birth.
    pub(super) fn restore_offline<'m>(
        &mut self,
        machines: impl IntoIterator<Item = &'m str>,
        now: Timestamp,
    ) {
        let Some(input) = &mut self.sparkplug else {
            return;
        };
        let machines: Vec<String> = machines.into_iter().map(str::to_owned).collect();
        input.restore_offline(machines.iter().map(String::as_str));
        self.presence_changed(&machines, now);
    }

    /// After `machines` went offline or came back: the gauge, and every key of theirs
    /// published again, now or when its budget allows.
    fn presence_changed(&mut self, machines: &[String], now: Timestamp) {
        if let Some(input) = &self.sparkplug {
            let offline = super::gauge(input.offline.len());
            self.metrics.sparkplug_offline_machines.set(offline);
        }
        let store = &self.store;
        let of_machines = |id: &KeyId| {
            let key = store.key(*id);
            key.is_some_and(|k| machines.iter().any(|m| **m == *k.machine))
        };
        let ids: Vec<KeyId> = store.key_ids().filter(of_machines).collect();
        for id in ids {
            self.publish_soon(id, now);
        }
    }

    /// Asks `node` for its births again (NCMD `Node Control/Rebirth`).
    fn request_rebirth(&mut self, node: &NodeKey, now: Timestamp) {
        let topic =
            sparkplug::topic::edge_topic(&node.group, MessageType::NodeCommand, &node.node, None);
        let payload = sparkplug::rebirth_request(millis(now));
        if self.outbox.publish_command(topic, payload) {
            self.metrics.sparkplug_rebirth_requests.inc();
            tracing::info!(group = %node.group, node = %node.node, "asked a Sparkplug edge node for a rebirth");
        }
    }

    /// Asks the nodes whose missing sequence numbers ran out of time for a rebirth.
    pub(super) fn check_sequence_gaps(&mut self, now: Timestamp) {
        let Some(input) = &mut self.sparkplug else {
            return;
        };
        for node in input.sessions.lost(millis(now)) {
            self.request_rebirth(&node, now);
        }
    }

    /// Counts `n` rejections of `why` in `publish`, with one log line per interval.
    fn reject_sparkplug(
        &mut self,
        why: SparkplugRejection,
        publish: &Publish,
        n: u64,
        detail: &str,
    ) {
        self.metrics.sparkplug_rejected(why).inc_by(n);
        if let Some(suppressed) = self.sparkplug_log.admit_at(tokio::time::Instant::now()) {
            tracing::warn!(
                reason = why.as_str(),
                topic = %publish.topic,
                detail,
                suppressed_since_last = suppressed,
                "rejected a Sparkplug message"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SparkplugSettings {
        SparkplugSettings {
            groups: vec!["Plant1".into()],
            ..SparkplugSettings::default()
        }
    }

    #[test]
    fn no_group_is_no_sparkplug_and_groups_are_single_levels() {
        assert!(
            SparkplugConfig::new(&SparkplugSettings::default())
                .unwrap()
                .is_none()
        );
        let config = SparkplugConfig::new(&settings()).unwrap().unwrap();
        assert_eq!(config.filters(), ["spBv1.0/Plant1/#"]);
        assert_eq!(config.state_topic(), None);
        for bad in ["a/b", "#", "", "a+"] {
            let mut s = settings();
            s.groups = vec![bad.into()];
            let err = SparkplugConfig::new(&s).unwrap_err().to_string();
            assert!(err.contains("`sparkplug.groups`"), "{bad}: {err}");
        }
        let mut every = settings();
        every.groups = vec!["+".into()];
        every.host_id = "scrap-pulse".into();
        let config = SparkplugConfig::new(&every).unwrap().unwrap();
        assert_eq!(config.filters(), ["spBv1.0/+/#"]);
        assert_eq!(
            config.state_topic().as_deref(),
            Some("spBv1.0/STATE/scrap-pulse")
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Spoil = fn(&mut SparkplugSettings);
        let cases: [(&str, Spoil); 4] = [
            ("sparkplug.host_id", |s| s.host_id = "a/b".into()),
            ("sparkplug.metric_pattern", |s| {
                s.metric_pattern = "scrap".into()
            }),
            ("sparkplug.machine", |s| s.machine = "line".into()),
            ("sparkplug.time", |s| s.time = "payload".into()),
        ];
        for (key, spoil) in cases {
            let mut s = settings();
            spoil(&mut s);
            let err = SparkplugConfig::new(&s).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn the_state_is_json_with_the_same_timestamp_online_and_offline() {
        let at = Timestamp::from_unix_millis(1_796_601_600_123).unwrap();
        assert_eq!(
            state_payload(true, at),
            br#"{"online":true,"timestamp":1796601600123}"#
        );
        assert_eq!(
            state_payload(false, at),
            br#"{"online":false,"timestamp":1796601600123}"#
        );
    }

    fn key() -> NodeKey {
        NodeKey {
            group: "G".into(),
            node: "N1".into(),
        }
    }

    #[test]
    fn a_node_death_takes_its_devices_offline_and_births_bring_them_back_one_by_one() {
        let config = SparkplugConfig::new(&settings()).unwrap().unwrap();
        let mut input = SparkplugInput::new(config);
        let online = |device: &str| Presence::Online {
            device: Some(device.into()),
        };
        input.presence_change(&key(), online("A1"));
        input.presence_change(&key(), online("A2"));
        let (mut machines, up) = input.presence_change(&key(), Presence::Offline { device: None });
        machines.sort();
        assert_eq!(
            (machines, up),
            (vec!["A1".into(), "A2".into(), "N1".into()], false)
        );
        assert!(input.is_offline("A1") && input.is_offline("A2"));
        input.presence_change(&key(), Presence::Online { device: None });
        assert!(
            input.is_offline("A1"),
            "a device comes back with its own birth"
        );
        input.presence_change(&key(), online("A1"));
        assert!(!input.is_offline("A1") && input.is_offline("A2"));
        let (machines, _) = input.presence_change(
            &key(),
            Presence::Offline {
                device: Some("A1".into()),
            },
        );
        assert_eq!(machines, ["A1"]);
    }

    mod pipeline {
        use aggregator_core::sparkplug::{Metric, Payload, Value};
        use prost::Message;
        use rumqttc::{AsyncClient, MqttOptions, QoS};

        use super::*;
        use crate::metrics::Metrics;
        use crate::mqtt::{Clients, Inbound};
        use crate::pipeline::clock_now;

        /// A pipeline following group G that publishes every change.
        fn sparkplug_pipeline() -> (Pipeline, Metrics, [rumqttc::EventLoop; 2]) {
            pipeline_with(|settings| settings.publish.interval_ms = 0)
        }

        /// A pipeline following group G, with `change` made to the default settings.
        fn pipeline_with(
            change: impl FnOnce(&mut crate::configuration::Settings),
        ) -> (Pipeline, Metrics, [rumqttc::EventLoop; 2]) {
            let options = |id| MqttOptions::new(id, "localhost", 1);
            let (input, input_loop) = AsyncClient::new(options("i"), 64);
            let (output, output_loop) = AsyncClient::new(options("o"), 64);
            let mut settings = crate::configuration::Settings::default();
            settings.sparkplug.groups = vec!["G".into()];
            change(&mut settings);
            let config = settings.validate().unwrap();
            let metrics = Metrics::new();
            let clients = Clients { input, output };
            let pipeline = Pipeline::new(&config, Timestamp::EPOCH, clients, metrics.clone());
            (pipeline, metrics, [input_loop, output_loop])
        }

        fn metric(name: Option<&str>, alias: u64, value: Option<f64>) -> Metric {
            Metric {
                name: name.map(str::to_owned),
                alias: Some(alias),
                datatype: Some(10),
                value: value.map(Value::Double),
                ..Metric::default()
            }
        }

        fn message(
            kind: &str,
            device: Option<&str>,
            seq: Option<u64>,
            metrics: Vec<Metric>,
        ) -> Inbound {
            let topic = match device {
                Some(d) => format!("spBv1.0/G/{kind}/N1/{d}"),
                None => format!("spBv1.0/G/{kind}/N1"),
            };
            let payload = Payload {
                timestamp: None,
                metrics,
                seq,
            };
            Inbound::Reading(Publish::new(
                topic,
                QoS::AtMostOnce,
                payload.encode_to_vec(),
            ))
        }

        /// A DDATA of device D1 with sequence number `seq`: `value` by `alias`.
        fn d1_data(seq: u64, alias: u64, value: f64) -> Inbound {
            message(
                "DDATA",
                Some("D1"),
                Some(seq),
                vec![metric(None, alias, Some(value))],
            )
        }

        fn bd_seq(n: u64) -> Metric {
            Metric {
                name: Some("bdSeq".into()),
                datatype: Some(8),
                value: Some(Value::Long(n)),
                ..Metric::default()
            }
        }

        fn births() -> Vec<Inbound> {
            vec![
                message("NBIRTH", None, Some(0), vec![bd_seq(0)]),
                message(
                    "DBIRTH",
                    Some("D1"),
                    Some(1),
                    vec![metric(Some("scrap/4"), 7, None)],
                ),
            ]
        }

        fn offline(p: &Pipeline) -> bool {
            let id = p.store.lookup("D1", 4).unwrap();
            let (_, json) = p.aggregate_message(id, clock_now()).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
            json["offline"] == true
        }

        #[test]
        fn births_declare_aliases_data_counts_and_a_death_marks_the_machine_offline() {
            let (mut p, metrics, _loops) = sparkplug_pipeline();
            let now = clock_now();
            let mut batch = births();
            batch.push(d1_data(2, 7, 2.5));
            batch.push(d1_data(3, 7, 1.5));
            // An alias no birth declared: counted, never guessed, and a rebirth is asked for.
            batch.push(d1_data(4, 9, 9.0));
            batch.push(Inbound::Reading(Publish::new(
                "spBv1.0/G/DDATA/N1/D1",
                QoS::AtMostOnce,
                b"\x12\x05\x01".to_vec(),
            )));
            p.handle_batch(batch.into_iter(), now);
            let id = p.store.lookup("D1", 4).unwrap();
            let totals = p.store.totals(id).unwrap();
            assert_eq!((totals.count, totals.sum), (2, 4.0));
            let text = metrics.render();
            assert!(
                text.contains("ingest_readings_rejected_total{reason=\"unresolved\"} 1"),
                "{text}"
            );
            assert!(
                text.contains("ingest_readings_rejected_total{reason=\"invalid_sparkplug\"} 1"),
                "{text}"
            );
            assert!(
                text.contains("ingest_sparkplug_rebirth_requests_total 1"),
                "{text}"
            );
            assert!(!offline(&p));

            let death = message("NDEATH", None, None, vec![bd_seq(0)]);
            p.handle_batch([death].into_iter(), now);
            assert!(offline(&p), "the node's death takes its device offline");
            assert_eq!(
                p.store.totals(id).unwrap().count,
                2,
                "the window keeps its readings"
            );

            p.handle_batch(births().into_iter(), now);
            assert!(!offline(&p), "a birth brings it back");
        }

        #[test]
        fn a_shard_takes_births_of_every_device_but_counts_only_its_own_machines() {
            let (mut p, metrics, _loops) =
                pipeline_with(|s| (s.shard.count, s.shard.index) = (2, 0));
            let shard = p.shard.clone();
            let devices: Vec<String> = (0..8).map(|n| format!("D{n}")).collect();
            let mut batch = vec![message("NBIRTH", None, Some(0), vec![bd_seq(0)])];
            let mut seq = 0;
            for (n, device) in devices.iter().enumerate() {
                seq += 1;
                let declared = metric(Some("scrap/4"), n as u64, None);
                batch.push(message("DBIRTH", Some(device), Some(seq), vec![declared]));
            }
            for (n, device) in devices.iter().enumerate() {
                seq += 1;
                let value = metric(None, n as u64, Some(1.0));
                batch.push(message("DDATA", Some(device), Some(seq), vec![value]));
            }
            p.handle_batch(batch.into_iter(), clock_now());
            let owned = devices.iter().filter(|d| shard.owns(d)).count();
            assert!(
                owned > 0 && owned < devices.len(),
                "both shards own some: {owned}"
            );
            for device in &devices {
                let tracked = p.store.lookup(device, 4).is_some();
                assert_eq!(tracked, shard.owns(device), "{device}");
            }
            let other = devices.len() - owned;
            let text = metrics.render();
            let line = format!("ingest_readings_other_shard_total {other}");
            assert!(text.contains(&line), "{text}");
            assert!(
                text.contains("ingest_sparkplug_rebirth_requests_total 0"),
                "{text}"
            );
        }

        #[test]
        fn machines_a_previous_run_showed_offline_stay_offline_until_their_birth() {
            use crate::restart::snapshot::{ReadBack, RetainedAggregate, Snapshot};
            let (mut p, _metrics, _loops) = sparkplug_pipeline();
            let now = clock_now();
            let mut batch = births();
            batch.push(d1_data(2, 7, 2.5));
            p.handle_batch(batch.into_iter(), now);
            assert!(!offline(&p));
            let retained = |machine: &str, offline| RetainedAggregate {
                machine: machine.into(),
                scrap_index: 4,
                stamped: now,
                count: 1,
                offline,
            };
            let snapshot = Snapshot {
                aggregates: vec![retained("D1", true), retained("D2", false)],
                read: ReadBack::Complete,
                ..Snapshot::default()
            };
            p.handle_batch([Inbound::Retained(snapshot)].into_iter(), now);
            assert!(offline(&p));
            let birth = message(
                "DBIRTH",
                Some("D1"),
                Some(3),
                vec![metric(Some("scrap/4"), 7, None)],
            );
            p.handle_batch([birth].into_iter(), now);
            assert!(!offline(&p));
        }

        #[test]
        fn historical_metrics_stay_out_of_the_window_and_other_types_are_refused() {
            let (mut p, metrics, _loops) = sparkplug_pipeline();
            let now = clock_now();
            let mut batch = births();
            let mut historical = metric(None, 7, Some(5.0));
            historical.is_historical = Some(true);
            let mut text = metric(None, 7, None);
            text.datatype = Some(12);
            text.value = Some(Value::String("3".into()));
            let mut live = metric(None, 7, Some(1.0));
            live.timestamp = Some(millis(now));
            let temperature = metric(Some("temperature"), 99, Some(80.0));
            batch.push(message(
                "DDATA",
                Some("D1"),
                Some(2),
                vec![historical, text, live, temperature],
            ));
            p.handle_batch(batch.into_iter(), now);
            let id = p.store.lookup("D1", 4).unwrap();
            assert_eq!(p.store.totals(id).unwrap().count, 1);
            let text = metrics.render();
            assert!(
                text.contains("ingest_sparkplug_historical_total 1"),
                "{text}"
            );
            assert!(
                text.contains("ingest_readings_rejected_total{reason=\"not_numeric\"} 1"),
                "{text}"
            );
            assert!(
                text.contains("ingest_sparkplug_metrics_ignored_total 1"),
                "{text}"
            );
        }
    }
}
