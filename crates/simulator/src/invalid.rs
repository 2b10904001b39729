//! The malformed payloads the simulator sends on purpose, one kind per rejection reason of
//! the contract, so that every rejection path of ingest can be exercised end to end.

use aggregator_core::RejectionReason;

/// Payloads over this size are `too_large` for an ingest with the default
/// `max_payload_bytes` (64 KiB); the padding makes ours 65 KiB + a few bytes.
pub const TOO_LARGE_PADDING: usize = 65 * 1024;

/// How far in the past `late` readings are: far beyond the default 60 s window.
pub const LATE_BY_SECS: i64 = 3600;

/// How far in the future `future` readings are: far beyond the default 5 s skew.
pub const FUTURE_BY_SECS: i64 = 3600;

/// A kind of malformed message; each is rejected by an ingest with default settings for the
/// reason of the same name.
///
/// `TooManyKeys` is different: it is a *valid* reading for a machine id never used before
/// (`x<seed>-<n>`), so every one creates a new key. Ingest rejects them as `too_many_keys`
/// only once it holds `max_keys` keys: run ingest with a small `max_keys`, or send more than
/// `max_keys` of them (`--invalid-ratio 1 --invalid-kinds too_many_keys --count 100001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidKind {
    /// Valid JSON with 65 KiB of padding.
    TooLarge,
    /// Truncated JSON.
    InvalidJson,
    /// No `value` field.
    MissingField,
    /// `value` is a word, not a number.
    BadValue,
    /// `machineId` names another machine than the topic.
    MachineMismatch,
    /// Time one hour in the past.
    Late,
    /// Time one hour in the future.
    Future,
    /// A reading on a fresh machine id (see the type docs).
    TooManyKeys,
}

impl InvalidKind {
    /// Every kind, in the order of the contract's reasons.
    pub const ALL: [InvalidKind; 8] = [
        InvalidKind::TooLarge,
        InvalidKind::InvalidJson,
        InvalidKind::MissingField,
        InvalidKind::BadValue,
        InvalidKind::MachineMismatch,
        InvalidKind::Late,
        InvalidKind::Future,
        InvalidKind::TooManyKeys,
    ];

    /// The rejection reason ingest gives this kind.
    pub const fn reason(self) -> RejectionReason {
        match self {
            InvalidKind::TooLarge => RejectionReason::TooLarge,
            InvalidKind::InvalidJson => RejectionReason::InvalidJson,
            InvalidKind::MissingField => RejectionReason::MissingField,
            InvalidKind::BadValue => RejectionReason::BadValue,
            InvalidKind::MachineMismatch => RejectionReason::MachineMismatch,
            InvalidKind::Late => RejectionReason::Late,
            InvalidKind::Future => RejectionReason::Future,
            InvalidKind::TooManyKeys => RejectionReason::TooManyKeys,
        }
    }

    /// The reason code, e.g. `"too_large"`.
    pub const fn as_str(self) -> &'static str {
        self.reason().as_str()
    }

    /// Parses a comma-separated list of reason codes; empty means all kinds.
    ///
    /// # Errors
    /// A message naming the unknown code and the known ones.
    pub fn parse_list(text: &str) -> Result<Vec<InvalidKind>, String> {
        let mut kinds = Vec::new();
        for code in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind = Self::ALL
                .into_iter()
                .find(|k| k.as_str() == code)
                .ok_or_else(|| {
                    let known: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                    format!("unknown reason {code:?}; known: {}", known.join(", "))
                })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            kinds = Self::ALL.to_vec();
        }
        Ok(kinds)
    }
}

impl std::fmt::Display for InvalidKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_the_contract_reasons_one_to_one() {
        let reasons: Vec<RejectionReason> = InvalidKind::ALL.iter().map(|k| k.reason()).collect();
        assert_eq!(reasons, RejectionReason::ALL);
    }

    #[test]
    fn list_parsing() {
        assert_eq!(InvalidKind::parse_list("").unwrap().len(), 8);
        assert_eq!(
            InvalidKind::parse_list("late, future,late").unwrap(),
            [InvalidKind::Late, InvalidKind::Future]
        );
        assert!(
            InvalidKind::parse_list("bogus")
                .unwrap_err()
                .contains("too_large")
        );
    }
}
