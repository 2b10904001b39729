//! Which Sparkplug metric is which scrap reading: the machine is the device id, else the edge
//! node's id; the scrap index comes from the metric's name through a pattern such as
//! `scrap/{index}`.

/// A metric-name pattern with one `{index}`: the text before and after it must match, and the
/// part between must be a scrap index (digits, at most `u32::MAX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricPattern {
    prefix: String,
    suffix: String,
}

/// Why a pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} must hold `{{index}}` exactly once, e.g. \"scrap/{{index}}\"")]
pub struct PatternError(pub String);

/// Where the index goes in a pattern.
const INDEX: &str = "{index}";

impl MetricPattern {
    /// Checks `pattern`.
    ///
    /// # Errors
    /// [`PatternError`] unless `{index}` occurs exactly once.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        match pattern.split_once(INDEX) {
            Some((prefix, suffix)) if !suffix.contains(INDEX) => Ok(MetricPattern {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
            }),
            _ => Err(PatternError(pattern.to_owned())),
        }
    }

    /// The scrap index `name` carries, or `None` when it is not a scrap metric.
    pub fn index(&self, name: &str) -> Option<u32> {
        let digits = name
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

impl Default for MetricPattern {
    fn default() -> Self {
        MetricPattern {
            prefix: "scrap/".into(),
            suffix: String::new(),
        }
    }
}

/// Which id names a metric's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MachineFrom {
    /// The device, else the edge node (a node's own metrics).
    #[default]
    Device,
    /// The edge node, for all its devices: one machine per node.
    Node,
}

impl MachineFrom {
    /// `device` or `node`, as the settings write it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "device" => Some(MachineFrom::Device),
            "node" => Some(MachineFrom::Node),
            _ => None,
        }
    }

    /// The machine of a metric of `node` (and `device`).
    pub fn machine<'a>(self, node: &'a str, device: Option<&'a str>) -> &'a str {
        match self {
            MachineFrom::Device => device.unwrap_or(node),
            MachineFrom::Node => node,
        }
    }

    /// The machine whose presence a birth or death of `node` (and `device`) changes; `None`
    /// for a device's in [`MachineFrom::Node`]: its node, the machine, lives on.
    pub fn presence<'a>(self, node: &'a str, device: Option<&'a str>) -> Option<&'a str> {
        match (self, device) {
            (MachineFrom::Node, Some(_)) => None,
            _ => Some(self.machine(node, device)),
        }
    }
}

/// Which time a reading takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFrom {
    /// The metric's timestamp, else the payload's, else the time of receipt.
    #[default]
    Metric,
    /// The time of receipt, for edge nodes whose clocks are wrong.
    Arrival,
}

impl TimeFrom {
    /// `metric` or `arrival`, as the settings write it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "metric" => Some(TimeFrom::Metric),
            "arrival" => Some(TimeFrom::Arrival),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_read_between_the_patterns_ends() {
        let default = MetricPattern::default();
        assert_eq!(default.index("scrap/2"), Some(2));
        assert_eq!(default.index("scrap/4294967295"), Some(u32::MAX));
        for name in [
            "scrap/",
            "scrap/-1",
            "scrap/+1",
            "scrap/1.0",
            "scrap/4294967296",
            "Scrap/1",
            "scrap/1/x",
            "temp",
        ] {
            assert_eq!(default.index(name), None, "{name}");
        }
        let custom = MetricPattern::new("Line/Reject Count {index} (pcs)").unwrap();
        assert_eq!(custom.index("Line/Reject Count 7 (pcs)"), Some(7));
        assert_eq!(custom.index("Line/Reject Count 7"), None);
    }

    #[test]
    fn a_pattern_holds_the_index_once() {
        assert!(MetricPattern::new("scrap").is_err());
        assert!(MetricPattern::new("{index}/{index}").is_err());
        assert_eq!(
            MetricPattern::new("scrap/{index}").unwrap(),
            MetricPattern::default()
        );
        let message = MetricPattern::new("scrap").unwrap_err().to_string();
        assert_eq!(
            message,
            "\"scrap\" must hold `{index}` exactly once, e.g. \"scrap/{index}\""
        );
    }

    #[test]
    fn the_machine_is_the_device_else_the_node_unless_nodes_are_machines() {
        let device = MachineFrom::parse("device").unwrap();
        assert_eq!(device.machine("Line-1", Some("A1")), "A1");
        assert_eq!(device.machine("Line-1", None), "Line-1");
        assert_eq!(device.presence("Line-1", Some("A1")), Some("A1"));
        let node = MachineFrom::parse("node").unwrap();
        assert_eq!(node.machine("Line-1", Some("A1")), "Line-1");
        assert_eq!(node.presence("Line-1", Some("A1")), None);
        assert_eq!(node.presence("Line-1", None), Some("Line-1"));
        assert_eq!(MachineFrom::parse("Device"), None);
        assert_eq!(TimeFrom::parse("arrival"), Some(TimeFrom::Arrival));
        assert_eq!(TimeFrom::parse("payload"), None);
    }
}
