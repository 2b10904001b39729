//! The workload the settings describe, parsed from their text: which machines send, on which
//! scrap indices, with which values, for how long. Malformed payloads are [`crate::invalid`]'s.

use std::time::Duration;

use aggregator_core::topic::validate_topic_level;

/// Inclusive range of reading values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueRange {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Draw whole numbers (both bounds were integers).
    pub integers: bool,
}

impl ValueRange {
    /// Parses `MIN..MAX` (also `MIN..=MAX`).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (a, b) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?} is not MIN..MAX"))?;
        let b = b.strip_prefix('=').unwrap_or(b);
        let parse = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{s:?} is not a finite number"))
        };
        let (min, max) = (parse(a)?, parse(b)?);
        if min > max {
            return Err(format!("minimum {min} is above maximum {max}"));
        }
        let integers =
            min.fract() == 0.0 && max.fract() == 0.0 && min.abs() < 1e15 && max.abs() < 1e15;
        Ok(Self { min, max, integers })
    }
}

/// Parses `90`, `90s`, `500ms`, `2m`, `1h`, `1.5s`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 500ms, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A list `A1,B1`, or a count `N` giving `M1..MN`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_machines(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u32>() {
        if n == 0 {
            return Err("a machine count must be at least 1".into());
        }
        return Ok((1..=n).map(|i| format!("M{i}")).collect());
    }
    let machines: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if machines.is_empty() {
        return Err("no machine ids given".into());
    }
    for id in &machines {
        validate_topic_level(id).map_err(|e| format!("machine id {id:?} {e}"))?;
    }
    Ok(machines)
}

/// A list `1,2,5`, a range `A..B` (inclusive) or a count `N` giving `1..N`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_indices(text: &str) -> Result<Vec<u32>, String> {
    let text = text.trim();
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a non-negative integer"))
    };
    let indices: Vec<u32> = if let Some((a, b)) = text.split_once("..") {
        let (a, b) = (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?);
        if a > b {
            return Err(format!("range {a}..{b} is empty"));
        }
        if b - a >= 1_000_000 {
            return Err(format!("range {a}..{b} has more than a million indices"));
        }
        (a..=b).collect()
    } else if !text.contains(',') {
        let n = number(text)?;
        if n == 0 || n > 1_000_000 {
            return Err("an index count must be 1 to 1000000".into());
        }
        (1..=n).collect()
    } else {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(number)
            .collect::<Result<_, _>>()?
    };
    if indices.is_empty() {
        return Err("no indices given".into());
    }
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_and_counts() {
        assert_eq!(parse_indices("0..2").unwrap(), [0, 1, 2]);
        assert_eq!(parse_indices("4").unwrap(), [1, 2, 3, 4]);
        assert_eq!(parse_indices("7,0").unwrap(), [7, 0]);
        assert_eq!(parse_machines(" A1 , B2 ").unwrap(), ["A1", "B2"]);
        let range = ValueRange::parse("0.5..2.5").unwrap();
        assert_eq!((range.min, range.max, range.integers), (0.5, 2.5, false));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    }
}
