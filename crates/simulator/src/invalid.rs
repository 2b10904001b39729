//! The malformed payloads the simulator sends on purpose, one per rejection reason of the
//! contract ([`RejectionReason`]), so that every rejection path of ingest can be exercised
//! end to end. An ingest with default settings rejects each for its reason; [`write`] says how
//! each differs from a plain reading `{"machineId":"A1","scrapIndex":2,"value":1}`.
//!
//! `too_many_keys` is different: it is a *valid* reading for a machine id never used before
//! (`x<seed>-<n>`), so every one creates a new key. Ingest rejects them as `too_many_keys`
//! only once it holds `max_keys` keys: run ingest with a small `max_keys`, or send more than
//! `max_keys` of them (`--invalid-ratio 1 --invalid-kinds too_many_keys --count 100001`).

use std::io::Write as _;
use std::time::Duration;

use aggregator_core::RejectionReason;

use crate::generator::TimeStamps;

/// Payloads over this size are `too_large` for an ingest with the default
/// `max_payload_bytes` (64 KiB); the padding makes ours 65 KiB + a few bytes.
pub const TOO_LARGE_PADDING: usize = 65 * 1024;

/// How far in the past `late` readings are: far beyond the default 60 s window.
pub const LATE_BY: Duration = Duration::from_secs(3600);

/// How far in the future `future` readings are: far beyond the default 5 s skew.
pub const FUTURE_BY: Duration = Duration::from_secs(3600);

/// Appends the payload that ingest rejects for `reason`; `machine` is the topic's machine id.
pub(crate) fn write(
    reason: RejectionReason,
    machine: &str,
    scrap_index: u32,
    times: &TimeStamps,
    payload: &mut Vec<u8>,
) {
    use RejectionReason as R;
    let prefix = if reason == R::MachineMismatch {
        "not-"
    } else {
        ""
    };
    let _ = write!(
        payload,
        "{{\"machineId\":\"{prefix}{machine}\",\"scrapIndex\":{scrap_index}"
    );
    // Exhaustive over the core's reasons, so a reason added to the contract cannot be missed.
    let (value, time) = match reason {
        R::TooLarge | R::TooManyKeys => (",\"value\":1", None),
        // Cut right after the key: not JSON.
        R::InvalidJson => (",\"value\":", None),
        R::MissingField => ("", Some(&times.utc)),
        R::BadValue => (",\"value\":\"not-a-number\"", Some(&times.utc)),
        R::MachineMismatch => (",\"value\":1", Some(&times.utc)),
        R::Late => (",\"value\":1", Some(&times.late)),
        R::Future => (",\"value\":1", Some(&times.future)),
    };
    payload.extend_from_slice(value.as_bytes());
    if reason == R::InvalidJson {
        return;
    }
    if reason == R::TooLarge {
        payload.extend_from_slice(b",\"padding\":\"");
        payload.resize(payload.len() + TOO_LARGE_PADDING, b'x');
        payload.push(b'"');
    }
    if let Some(time) = time {
        let _ = write!(payload, ",\"timestamp\":\"{time}\"");
    }
    payload.push(b'}');
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
                let known = RejectionReason::ALL.map(RejectionReason::as_str).join(", ");
                format!("unknown reason {code:?}; known: {known}")
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
