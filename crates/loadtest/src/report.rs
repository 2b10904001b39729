//! One markdown table row per run, with the command and the machine's load next to the figure.

use std::fmt;
use std::time::Duration;

/// The header matching [`Row`]'s `Display`.
pub const HEADER: &str = "| figure | measured | target | verdict | command | load avg 1/5/15 min |\n|---|---|---|---|---|---|";

/// Whether a figure met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Target met.
    Met,
    /// Target missed.
    Missed,
    /// No target (information only).
    Info,
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`.
    pub fn from_ok(ok: bool) -> Self {
        if ok { Self::Met } else { Self::Missed }
    }

    /// `Info` for a figure without a target of its own, unless a check behind it failed.
    pub fn info_unless_missed(self) -> Self {
        if self == Self::Missed {
            self
        } else {
            Self::Info
        }
    }
}

/// One table row.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub figure: String,
    /// The result.
    pub measured: String,
    /// The target it is held against.
    pub target: String,
    /// Met or missed.
    pub verdict: Verdict,
    /// The command line that produced it.
    pub command: String,
    /// `/proc/loadavg` at the end of the run.
    pub load: String,
}

impl Row {
    /// A row for the current command line and load.
    pub fn new(
        figure: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Self {
            figure: figure.into(),
            measured: measured.into(),
            target: target.into(),
            verdict,
            command: format!("loadtest {}", args.join(" ")),
            load: load_average(),
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "-",
        };
        write!(
            f,
            "| {} | {} | {} | {} | `{}` | {} |",
            self.figure, self.measured, self.target, verdict, self.command, self.load
        )
    }
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Percentile `p` (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
