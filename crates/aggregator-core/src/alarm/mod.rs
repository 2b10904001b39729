//! Alarms: threshold rules on a key's window ([`rules`]), evaluated on every change, expiry
//! included, by a per-key state machine with hysteresis ([`state`]); state changes are
//! published as an [`AlarmMessage`] on `alarms/{machineId}/{scrapIndex}`.
//!
//! Semantics, where the contract (docs/contract.md) leaves room:
//! - "above" and "below" are strict: `sum_above = 30` raises at a sum over 30, and with the
//!   default `clear_below` (the raise threshold) the alarm clears below 30; at exactly 30 the
//!   state holds.
//! - A rule with both `sum_above` and `avg_above` raises when either is exceeded (the sum is
//!   looked at first) and clears when both are below their thresholds. `clear_below` is
//!   refused on such a rule: one number cannot be the clear level of a sum and an average.
//! - An empty window has no average: for `avg_above` it counts as below (no scrap, no alarm),
//!   so an emptied window clears an average alarm; a sum alarm clears when 0 is below its
//!   clear level.
//! - Precedence: machine+index over machine over `*`+index over `*`.

pub mod rules;
pub mod state;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

pub use rules::{AlarmRule, AlarmRuleError, AlarmRuleProblem, AlarmRules, Band, Thresholds};
pub use state::{AlarmChange, KeyAlarm};

/// Which window figure a threshold applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// The window's sum (`sum_above`).
    Sum,
    /// The window's average (`avg_above`).
    Avg,
}

impl Metric {
    /// `"sum"` or `"avg"`, as on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Metric::Sum => "sum",
            Metric::Avg => "avg",
        }
    }
}

/// Whether a key's alarm is raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    /// Above the raise threshold (and not yet below the clear threshold).
    Raised,
    /// Not raised.
    Cleared,
}

/// A key's alarm state change, as published retained on `alarms/{machineId}/{scrapIndex}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmMessage {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// `"raised"` or `"cleared"`.
    pub state: AlarmState,
    /// The metric that raised the alarm (`"sum"` or `"avg"`).
    pub metric: Metric,
    /// The metric's value at the change; `null` for the average of an empty window.
    pub value: Option<f64>,
    /// The threshold crossed: the raise one when raised, the clear one when cleared.
    pub threshold: f64,
    /// When the key entered this state, RFC 3339 UTC with milliseconds.
    pub since: String,
    /// Ingest-clock time of this message, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// Why a retained alarm payload could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum AlarmMessageError {
    /// Not the JSON of an [`AlarmMessage`].
    #[error("not an alarm message: {0}")]
    Json(#[from] serde_json::Error),
    /// `since` is not an RFC 3339 time.
    #[error("since: {0}")]
    Since(#[from] crate::timestamp::TimestampError),
}

impl AlarmMessage {
    /// The message for `change` of the key (`machine`, `scrap_index`) at `now`.
    pub fn new(machine: &str, scrap_index: u32, change: &AlarmChange, now: Timestamp) -> Self {
        AlarmMessage {
            machine_id: machine.to_owned(),
            scrap_index,
            state: change.state,
            metric: change.metric,
            value: change.value,
            threshold: change.threshold,
            since: change.since.to_rfc3339_millis(),
            timestamp: now.to_rfc3339_millis(),
        }
    }

    /// Parses a retained payload (an empty one means "no alarm": the caller skips it).
    pub fn parse(payload: &[u8]) -> Result<Self, AlarmMessageError> {
        Ok(serde_json::from_slice(payload)?)
    }

    /// For a raised alarm, its metric and since-when, to hand to
    /// [`KeyAlarm::restore_raised`] at start; `None` when cleared.
    pub fn raised_state(&self) -> Result<Option<(Metric, Timestamp)>, AlarmMessageError> {
        match self.state {
            AlarmState::Cleared => Ok(None),
            AlarmState::Raised => Ok(Some((self.metric, Timestamp::parse_rfc3339(&self.since)?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_json_has_the_contract_fields_in_order() {
        let since = Timestamp::parse_rfc3339("2026-01-01T12:00:30.123Z").unwrap();
        let change = AlarmChange {
            state: AlarmState::Raised,
            metric: Metric::Sum,
            value: Some(31.5),
            threshold: 30.0,
            since,
        };
        let msg = AlarmMessage::new("A1", 2, &change, since);
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"maschinenId":"A1","scrapIndex":2,"state":"raised","metric":"sum","value":31.5,"threshold":30.0,"since":"2026-01-01T12:00:30.123Z","timestamp":"2026-01-01T12:00:30.123Z"}"#
        );
        let back = AlarmMessage::parse(json.as_bytes()).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.raised_state().unwrap(), Some((Metric::Sum, since)));
    }

    #[test]
    fn a_cleared_average_of_an_empty_window_has_a_null_value() {
        let change = AlarmChange {
            state: AlarmState::Cleared,
            metric: Metric::Avg,
            value: None,
            threshold: 4.0,
            since: Timestamp::EPOCH,
        };
        let msg = AlarmMessage::new("A1", 0, &change, Timestamp::EPOCH);
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["state"], "cleared");
        assert_eq!(json["metric"], "avg");
        assert!(json["value"].is_null());
        assert_eq!(msg.raised_state().unwrap(), None);
    }

    #[test]
    fn bad_retained_payloads_are_errors() {
        assert!(AlarmMessage::parse(b"").is_err());
        assert!(AlarmMessage::parse(br#"{"maschinenId":"A1"}"#).is_err());
        let mut msg = serde_json::json!({"maschinenId":"A1","scrapIndex":1,"state":"raised",
            "metric":"sum","value":1.0,"threshold":0.5,"since":"yesterday","timestamp":"x"});
        let parsed: AlarmMessage = serde_json::from_value(msg.clone()).unwrap();
        assert!(parsed.raised_state().is_err());
        msg["state"] = "alarming".into();
        assert!(AlarmMessage::parse(msg.to_string().as_bytes()).is_err());
    }
}
