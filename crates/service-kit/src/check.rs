//! Range checks described once per setting, so a binary's validation reads as a table of
//! limits instead of a list of `if`s, and every message has the same shape.

use std::fmt::Display;
use std::ops::RangeInclusive;

use crate::SettingsError;

/// `value` when it lies in `range`, else an error naming `setting`, the range and the value.
///
/// # Errors
/// [`SettingsError::Invalid`] when `value` is outside `range`.
pub fn in_range<T: PartialOrd + Display + Copy>(
    setting: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, SettingsError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(SettingsError::invalid(
            setting,
            format!("must be {} to {}, not {value}", range.start(), range.end()),
        ))
    }
}

/// `value` when it is at least `min`, else an error naming `setting`.
///
/// # Errors
/// [`SettingsError::Invalid`] when `value` is below `min`.
pub fn at_least<T: PartialOrd + Display + Copy>(
    setting: &str,
    value: T,
    min: T,
) -> Result<T, SettingsError> {
    if value >= min {
        Ok(value)
    } else {
        Err(SettingsError::invalid(
            setting,
            format!("must be at least {min}, not {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_inside_pass_and_outside_are_named() {
        assert_eq!(in_range("window_seconds", 60_u64, 1..=86_400).unwrap(), 60);
        let err = in_range("window_seconds", 0_u64, 1..=86_400).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting `window_seconds`: must be 1 to 86400, not 0"
        );
        assert_eq!(at_least("rate", 2.5, 0.1).unwrap(), 2.5);
        let err = at_least("batch_size", 0_usize, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting `batch_size`: must be at least 1, not 0"
        );
    }
}
