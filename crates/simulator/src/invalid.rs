//! The malformed payloads the simulator sends on purpose, one per rejection reason of the
//! contract ([`RejectionReason`]), so that every rejection path of ingest can be exercised
//! end to end. Each is rejected by an ingest with default settings for its reason.
//! [`Malformed::of`] is the table of how each payload differs from a plain reading
//! `{"machineId":"A1","scrapIndex":2,"value":1}`; [`Generator`](crate::generator::Generator)
//! picks the reason and the machine and has the payload written.
//!
//! `too_many_keys` is different: it is a *valid* reading for a machine id never used before
//! (`x<seed>-<n>`), so every one creates a new key. Ingest rejects them as `too_many_keys`
//! only once it holds `max_keys` keys: run ingest with a small `max_keys`, or send more than
//! `max_keys` of them (`--invalid-ratio 1 --invalid-kinds too_many_keys --count 100001`).

use std::io::Write as _;

use aggregator_core::RejectionReason;

use crate::generator::TimeStamps;

/// Payloads over this size are `too_large` for an ingest with the default
/// `max_payload_bytes` (64 KiB); the padding makes ours 65 KiB + a few bytes.
pub const TOO_LARGE_PADDING: usize = 65 * 1024;

/// How far in the past `late` readings are: far beyond the default 60 s window.
pub const LATE_BY_SECS: i64 = 3600;

/// How far in the future `future` readings are: far beyond the default 5 s skew.
pub const FUTURE_BY_SECS: i64 = 3600;

/// How the payload of one rejection reason differs from a plain reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// Topic and payload name a machine id never used before instead of the configured one.
    pub(crate) fresh_machine: bool,
    /// Written before the machine id in `machineId` (`not-` names another machine).
    pub(crate) machine_prefix: &'static str,
    /// The `value` field.
    pub(crate) value: Value,
    /// Bytes of a `padding` field after the value; 0 for none.
    pub(crate) padding: usize,
    /// The `timestamp` field, if any.
    pub(crate) time: Option<When>,
}

/// The `value` field of a malformed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// No `value` field.
    Missing,
    /// This JSON text as the value.
    Json(&'static str),
    /// The payload ends right after `"value":`, so it is not JSON.
    Cut,
}

/// The instant a malformed payload's `timestamp` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// The send time.
    Now,
    /// [`LATE_BY_SECS`] before it.
    Late,
    /// [`FUTURE_BY_SECS`] after it.
    Future,
}

impl Malformed {
    /// A plain reading, `{"machineId":"<id>","scrapIndex":<n>,"value":1}`.
    const PLAIN: Self = Self {
        fresh_machine: false,
        machine_prefix: "",
        value: Value::Json("1"),
        padding: 0,
        time: None,
    };

    /// The payload that ingest rejects for `reason`. The match is exhaustive over the core's
    /// reasons, so a reason added to the contract cannot be missed here.
    pub(crate) const fn of(reason: RejectionReason) -> Self {
        let plain = Self::PLAIN;
        match reason {
            RejectionReason::TooLarge => Self {
                padding: TOO_LARGE_PADDING,
                ..plain
            },
            RejectionReason::InvalidJson => Self {
                value: Value::Cut,
                ..plain
            },
            RejectionReason::MissingField => Self {
                value: Value::Missing,
                time: Some(When::Now),
                ..plain
            },
            RejectionReason::BadValue => Self {
                value: Value::Json("\"not-a-number\""),
                time: Some(When::Now),
                ..plain
            },
            RejectionReason::MachineMismatch => Self {
                machine_prefix: "not-",
                time: Some(When::Now),
                ..plain
            },
            RejectionReason::Late => Self {
                time: Some(When::Late),
                ..plain
            },
            RejectionReason::Future => Self {
                time: Some(When::Future),
                ..plain
            },
            // A valid reading: only the count of keys makes it a rejection (module docs).
            RejectionReason::TooManyKeys => Self {
                fresh_machine: true,
                ..plain
            },
        }
    }

    /// Appends the payload for `machine` (the topic's machine id) to `payload`.
    pub(crate) fn write(
        &self,
        machine: &str,
        scrap_index: u32,
        times: &TimeStamps,
        payload: &mut Vec<u8>,
    ) {
        let _ = write!(
            payload,
            "{{\"machineId\":\"{}{machine}\",\"scrapIndex\":{scrap_index}",
            self.machine_prefix
        );
        match self.value {
            Value::Missing => {}
            Value::Json(value) => {
                let _ = write!(payload, ",\"value\":{value}");
            }
            Value::Cut => {
                payload.extend_from_slice(b",\"value\":");
                return;
            }
        }
        if self.padding > 0 {
            payload.extend_from_slice(b",\"padding\":\"");
            payload.resize(payload.len() + self.padding, b'x');
            payload.push(b'"');
        }
        if let Some(when) = self.time {
            let _ = write!(payload, ",\"timestamp\":\"{}\"", times.rfc3339(when));
        }
        payload.push(b'}');
    }
}

/// Parses a comma-separated list of reason codes (`--invalid-kinds`); empty means all
/// reasons, in the order of [`RejectionReason::ALL`]. Repeated codes count once.
///
/// # Errors
/// A message naming the unknown code and the known ones.
pub fn parse_reasons(text: &str) -> Result<Vec<RejectionReason>, String> {
    let mut reasons = Vec::new();
    for code in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let reason = RejectionReason::ALL
            .into_iter()
            .find(|r| r.as_str() == code)
            .ok_or_else(|| {
                let known: Vec<&str> = RejectionReason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {code:?}; known: {}", known.join(", "))
            })?;
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    if reasons.is_empty() {
        reasons = RejectionReason::ALL.to_vec();
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parsing() {
        assert_eq!(parse_reasons("").unwrap().len(), 8);
        assert_eq!(
            parse_reasons("late, future,late").unwrap(),
            [RejectionReason::Late, RejectionReason::Future]
        );
        assert!(parse_reasons("bogus").unwrap_err().contains("too_large"));
    }
}
