//! The malformed payloads the simulator sends on purpose, one per rejection reason of the
//! contract ([`RejectionReason`]), so that every rejection path of ingest can be exercised
//! end to end. Each is rejected by an ingest with default settings for its reason; the
//! payloads themselves are written by [`Generator`](crate::generator::Generator).
//!
//! `too_many_keys` is different: it is a *valid* reading for a machine id never used before
//! (`x<seed>-<n>`), so every one creates a new key. Ingest rejects them as `too_many_keys`
//! only once it holds `max_keys` keys: run ingest with a small `max_keys`, or send more than
//! `max_keys` of them (`--invalid-ratio 1 --invalid-kinds too_many_keys --count 100001`).

use aggregator_core::RejectionReason;

/// Payloads over this size are `too_large` for an ingest with the default
/// `max_payload_bytes` (64 KiB); the padding makes ours 65 KiB + a few bytes.
pub const TOO_LARGE_PADDING: usize = 65 * 1024;

/// How far in the past `late` readings are: far beyond the default 60 s window.
pub const LATE_BY_SECS: i64 = 3600;

/// How far in the future `future` readings are: far beyond the default 5 s skew.
pub const FUTURE_BY_SECS: i64 = 3600;

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
