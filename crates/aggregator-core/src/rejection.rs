//! Why a payload was not used: one variant per reason of the contract, each carrying what an
//! operator needs to fix the sender.

use crate::timestamp::Timestamp;

/// Declares [`RejectionReason`] and [`Rejection::reason`] from one list of the variants
/// [`Rejection`] has, so that [`RejectionReason::ALL`] and [`RejectionReason::COUNT`] (and
/// every array sized by them) grow with a new reason on their own.
macro_rules! rejection_reasons {
    ($($variant:ident => $code:literal,)+) => {
        /// The reason codes of `docs/contract.md`, as used in metrics labels and dead letters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RejectionReason {
            $(#[doc = concat!("`", $code, "`: see [`Rejection::", stringify!($variant), "`].")]
            $variant,)+
        }

        impl RejectionReason {
            /// Every reason, in the order of the contract; a reason's place here is its
            /// [`RejectionReason::index`].
            pub const ALL: [RejectionReason; RejectionReason::COUNT] =
                [$(RejectionReason::$variant,)+];

            /// How many reasons there are: the length of per-reason arrays.
            pub const COUNT: usize = [$($code,)+].len();

            /// The snake_case code of the contract, e.g. `"too_large"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(RejectionReason::$variant => $code,)+
                }
            }
        }

        impl Rejection {
            /// The stable reason code of this rejection.
            pub fn reason(&self) -> RejectionReason {
                match self {
                    $(Rejection::$variant { .. } => RejectionReason::$variant,)+
                }
            }
        }
    };
}

rejection_reasons! {
    TooLarge => "too_large",
    InvalidJson => "invalid_json",
    MissingField => "missing_field",
    BadValue => "bad_value",
    MachineMismatch => "machine_mismatch",
    Late => "late",
    Future => "future",
    TooManyKeys => "too_many_keys",
}

impl RejectionReason {
    /// This reason's place in [`RejectionReason::ALL`]: the index of per-reason arrays.
    pub const fn index(self) -> usize {
        // Declared in the order of ALL, with implicit discriminants 0, 1, 2, ...
        self as usize
    }
}

impl std::fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload that cannot be used, with the detail needed to fix the sender.
///
/// The `Display` text is the human detail; [`Rejection::reason`] is the stable code.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The payload is larger than the configured limit.
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
        /// The configured `max_payload_bytes`.
        limit: usize,
    },
    /// The payload is not a JSON object.
    #[error("payload is not a JSON object: {detail}")]
    InvalidJson {
        /// What the JSON parser said.
        detail: String,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field (or topic level) that is missing, named as the sender would write it.
        field: &'static str,
    },
    /// A field is present but unusable.
    #[error("bad value for `{field}`: {detail}")]
    BadValue {
        /// Field name as the sender wrote it.
        field: String,
        /// Why the value was refused.
        detail: String,
    },
    /// Payload machine id differs from the topic's.
    #[error(
        "payload machine id {payload_machine:?} differs from topic machine id {topic_machine:?}"
    )]
    MachineMismatch {
        /// The machine id from the topic level (authoritative).
        topic_machine: String,
        /// The machine id in the payload.
        payload_machine: String,
    },
    /// The reading is already outside the window.
    #[error("reading time {event_time} is not after the window start {window_start}")]
    Late {
        /// The reading's event time.
        event_time: Timestamp,
        /// `now - window`: readings at or before this instant are outside the window.
        window_start: Timestamp,
    },
    /// The reading is too far in the future.
    #[error("reading time {event_time} is after the latest accepted time {latest_accepted}")]
    Future {
        /// The reading's event time.
        event_time: Timestamp,
        /// `now + max_future_skew`.
        latest_accepted: Timestamp,
    },
    /// Accepting the reading would create one key too many.
    #[error("new key would exceed max_keys = {limit}")]
    TooManyKeys {
        /// The configured `max_keys`.
        limit: usize,
    },
}

impl Rejection {
    pub(crate) fn bad_value(field: &str, detail: impl Into<String>) -> Self {
        Rejection::BadValue {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_those_of_the_contract() {
        let codes: Vec<&str> = RejectionReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "too_large",
                "invalid_json",
                "missing_field",
                "bad_value",
                "machine_mismatch",
                "late",
                "future",
                "too_many_keys"
            ]
        );
    }

    #[test]
    fn every_reason_indexes_its_place_in_all() {
        assert_eq!(RejectionReason::ALL.len(), RejectionReason::COUNT);
        for (i, reason) in RejectionReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }
}
