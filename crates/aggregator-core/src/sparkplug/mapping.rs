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

/// The machine a metric belongs to: its device, else its edge node.
pub fn machine<'a>(node: &'a str, device: Option<&'a str>) -> &'a str {
    device.unwrap_or(node)
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
    fn the_machine_is_the_device_else_the_node() {
        assert_eq!(machine("Line-1", Some("A1")), "A1");
        assert_eq!(machine("Line-1", None), "Line-1");
    }
}
