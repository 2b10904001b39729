//! `[[alarm]]` rules: what the config file says, its validation, and the lookup of the rule
//! that applies to a key: a few hash probes whatever the number of rules, done once per key,
//! whose [`Thresholds`] (a small `Copy` value) the service keeps beside the key's alarm.

use std::fmt;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::Metric;
use crate::topic::{TopicLevelError, validate_topic_level};

/// The machine pattern that matches every machine.
pub const ANY_MACHINE: &str = "*";

/// One `[[alarm]]` entry as written in the ingest config file.
///
/// ```toml
/// [[alarm]]
/// machine = "A1"       # or "*" for every machine
/// index = 2            # optional: every index when absent
/// sum_above = 30.0     # and/or avg_above
/// clear_below = 25.0   # optional hysteresis; default: the raise threshold
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmRule {
    /// A machine id, or `*` for every machine.
    pub machine: String,
    /// The scrap index; every index when absent.
    pub index: Option<u32>,
    /// Raise when the window's sum is above this.
    pub sum_above: Option<f64>,
    /// Raise when the window's average is above this.
    pub avg_above: Option<f64>,
    /// Clear only below this (hysteresis); default: the raise threshold.
    pub clear_below: Option<f64>,
}

impl fmt::Display for AlarmRule {
    /// The rule as it would be written in the file, on one line, for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine = {:?}", self.machine)?;
        // An index shows as an f64 shows a whole number: `2`.
        for (name, value) in [
            ("index", self.index.map(f64::from)),
            ("sum_above", self.sum_above),
            ("avg_above", self.avg_above),
            ("clear_below", self.clear_below),
        ] {
            if let Some(v) = value {
                write!(f, ", {name} = {v}")?;
            }
        }
        Ok(())
    }
}

/// What is wrong with one rule.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AlarmRuleProblem {
    /// `machine` is neither `*` nor a legal machine id.
    #[error("machine {0}")]
    BadMachine(TopicLevelError),
    /// Neither `sum_above` nor `avg_above` is set.
    #[error("needs sum_above or avg_above")]
    NoThreshold,
    /// A threshold is NaN or infinite.
    #[error("{field} must be a finite number")]
    NotFinite {
        /// The field, as written in the file.
        field: &'static str,
    },
    /// `clear_below` above the raise threshold would clear an alarm while it is still above.
    #[error("clear_below {clear} is above {field} {raise}")]
    ClearAboveRaise {
        /// `sum_above` or `avg_above`.
        field: &'static str,
        /// The raise threshold.
        raise: f64,
        /// The clear threshold.
        clear: f64,
    },
    /// `clear_below` with both metrics: it cannot be the clear level of a sum and an average.
    #[error(
        "clear_below is ambiguous with both sum_above and avg_above: drop clear_below or one metric"
    )]
    AmbiguousClear,
    /// Two rules for the same machine and index: which one should win?
    #[error("targets the same machine and index as rule {0}")]
    Duplicate(usize),
}

/// An invalid rule, named by its place in the file and its fields.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("[[alarm]] rule {number} ({rule}): {problem}")]
pub struct AlarmRuleError {
    /// Position of the rule in the file, counting from 1.
    pub number: usize,
    /// The rule's fields, as written.
    pub rule: String,
    /// What is wrong.
    pub problem: AlarmRuleProblem,
}

/// A raise threshold and its clear threshold (`clear <= raise`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    /// Raised when the metric is above this.
    pub raise: f64,
    /// Cleared when the metric is below this.
    pub clear: f64,
}

/// The thresholds that apply to one key: the most specific rule's, resolved once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Which rule this is (position in the file, from 1), for logs.
    pub rule: usize,
    /// The sum's band, if the rule has `sum_above`.
    pub sum: Option<Band>,
    /// The average's band, if the rule has `avg_above`.
    pub avg: Option<Band>,
}

impl Thresholds {
    /// The band of `metric`, if the rule has one.
    pub fn band(&self, metric: Metric) -> Option<Band> {
        match metric {
            Metric::Sum => self.sum,
            Metric::Avg => self.avg,
        }
    }
}

/// A validated rule set: thresholds by machine pattern, then by index (`None`: every index).
#[derive(Default, Debug)]
pub struct AlarmRules {
    by_machine: HashMap<Box<str>, HashMap<Option<u32>, Thresholds>>,
}

impl AlarmRules {
    /// Validates `rules` (in file order) and builds the lookup; the first invalid rule is
    /// reported with its number and fields.
    pub fn new(rules: &[AlarmRule]) -> Result<Self, AlarmRuleError> {
        let mut set = AlarmRules::default();
        for (i, rule) in rules.iter().enumerate() {
            let number = i + 1;
            let error = |problem| AlarmRuleError {
                number,
                rule: rule.to_string(),
                problem,
            };
            let thresholds = validate(number, rule).map_err(error)?;
            let by_index = set.by_machine.entry(rule.machine.as_str().into());
            if let Some(first) = by_index.or_default().insert(rule.index, thresholds) {
                return Err(error(AlarmRuleProblem::Duplicate(first.rule)));
            }
        }
        Ok(set)
    }

    /// The thresholds of the most specific rule for (`machine`, `index`): machine+index, then
    /// machine, then `*`+index, then `*`. `None` when no rule applies.
    pub fn resolve(&self, machine: &str, index: u32) -> Option<Thresholds> {
        // A machine named `*` has no rules of its own: a `*` rule is the wildcard.
        [machine, ANY_MACHINE]
            .into_iter()
            .filter_map(|pattern| self.by_machine.get(pattern))
            .find_map(|by_index| by_index.get(&Some(index)).or(by_index.get(&None)))
            .copied()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.by_machine.values().map(HashMap::len).sum()
    }

    /// Whether there are no rules (alarm evaluation can be skipped entirely).
    pub fn is_empty(&self) -> bool {
        self.by_machine.is_empty()
    }
}

fn validate(number: usize, rule: &AlarmRule) -> Result<Thresholds, AlarmRuleProblem> {
    if rule.machine != ANY_MACHINE {
        validate_topic_level(&rule.machine).map_err(AlarmRuleProblem::BadMachine)?;
    }
    for (field, value) in [
        ("sum_above", rule.sum_above),
        ("avg_above", rule.avg_above),
        ("clear_below", rule.clear_below),
    ] {
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(AlarmRuleProblem::NotFinite { field });
        }
    }
    let band = |field: &'static str, raise: f64| {
        let clear = rule.clear_below.unwrap_or(raise);
        if clear > raise {
            return Err(AlarmRuleProblem::ClearAboveRaise {
                field,
                raise,
                clear,
            });
        }
        Ok(Band { raise, clear })
    };
    match (rule.sum_above, rule.avg_above) {
        (None, None) => Err(AlarmRuleProblem::NoThreshold),
        (Some(_), Some(_)) if rule.clear_below.is_some() => Err(AlarmRuleProblem::AmbiguousClear),
        (sum, avg) => Ok(Thresholds {
            rule: number,
            sum: sum.map(|raise| band("sum_above", raise)).transpose()?,
            avg: avg.map(|raise| band("avg_above", raise)).transpose()?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(machine: &str, index: Option<u32>, sum: Option<f64>) -> AlarmRule {
        AlarmRule {
            machine: machine.into(),
            index,
            sum_above: sum,
            avg_above: None,
            clear_below: None,
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = AlarmRules::new(&[
            rule("*", None, Some(1.0)),
            rule("*", Some(2), Some(2.0)),
            rule("A1", None, Some(3.0)),
            rule("A1", Some(2), Some(4.0)),
        ])
        .unwrap();
        let raise = |m: &str, i| rules.resolve(m, i).and_then(|t| t.sum).map(|b| b.raise);
        assert_eq!(raise("A1", 2), Some(4.0));
        assert_eq!(raise("A1", 1), Some(3.0));
        assert_eq!(raise("B1", 2), Some(2.0));
        assert_eq!(raise("B1", 1), Some(1.0));
        assert_eq!(rules.resolve("A1", 2).unwrap().rule, 4);
        assert_eq!(rules.len(), 4);
    }

    #[test]
    fn no_rule_no_thresholds() {
        let rules = AlarmRules::new(&[rule("A1", Some(1), Some(1.0))]).unwrap();
        assert_eq!(rules.resolve("A1", 2), None);
        assert_eq!(rules.resolve("B1", 1), None);
        assert!(AlarmRules::new(&[]).unwrap().is_empty());
    }

    #[test]
    fn clear_defaults_to_the_raise_threshold() {
        let mut r = rule("A1", None, Some(30.0));
        r.avg_above = Some(4.0);
        let t = AlarmRules::new(&[r]).unwrap().resolve("A1", 0).unwrap();
        assert_eq!(
            t.sum,
            Some(Band {
                raise: 30.0,
                clear: 30.0
            })
        );
        assert_eq!(
            t.avg,
            Some(Band {
                raise: 4.0,
                clear: 4.0
            })
        );
    }

    #[test]
    fn errors_name_the_rule_and_the_problem() {
        let good = rule("A1", None, Some(1.0));
        let cases: Vec<(AlarmRule, AlarmRuleProblem)> = vec![
            (rule("A1", None, None), AlarmRuleProblem::NoThreshold),
            (
                rule("", None, Some(1.0)),
                AlarmRuleProblem::BadMachine(TopicLevelError::Empty),
            ),
            (
                rule("A/1", None, Some(1.0)),
                AlarmRuleProblem::BadMachine(TopicLevelError::IllegalChar('/')),
            ),
            (
                rule("A1", None, Some(f64::NAN)),
                AlarmRuleProblem::NotFinite { field: "sum_above" },
            ),
            (
                AlarmRule {
                    clear_below: Some(35.0),
                    ..rule("B1", Some(2), Some(30.0))
                },
                AlarmRuleProblem::ClearAboveRaise {
                    field: "sum_above",
                    raise: 30.0,
                    clear: 35.0,
                },
            ),
            (
                AlarmRule {
                    avg_above: Some(3.0),
                    clear_below: Some(2.0),
                    ..rule("B1", None, Some(30.0))
                },
                AlarmRuleProblem::AmbiguousClear,
            ),
            (rule("A1", None, Some(2.0)), AlarmRuleProblem::Duplicate(1)),
        ];
        for (bad, problem) in cases {
            let err = AlarmRules::new(&[good.clone(), bad.clone()]).unwrap_err();
            assert_eq!(err.number, 2);
            assert_eq!(err.problem, problem);
            assert_eq!(err.rule, bad.to_string());
        }
        let err = AlarmRules::new(&[
            good,
            AlarmRule {
                clear_below: Some(35.0),
                ..rule("B1", Some(2), Some(30.0))
            },
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "[[alarm]] rule 2 (machine = \"B1\", index = 2, sum_above = 30, clear_below = 35): \
             clear_below 35 is above sum_above 30"
        );
    }

    #[test]
    fn the_same_index_on_star_and_a_machine_is_no_duplicate() {
        assert!(
            AlarmRules::new(&[
                rule("*", Some(1), Some(1.0)),
                rule("A1", Some(1), Some(1.0)),
                rule("*", None, Some(1.0)),
            ])
            .is_ok()
        );
    }

    proptest::proptest! {
        /// The lookup tables agree with a scan that ranks every matching rule by specificity.
        #[test]
        fn resolve_matches_a_specificity_scan(
            targets in proptest::collection::btree_set(
                (proptest::option::of(0..4_usize), proptest::option::of(0..3_u32)), 0..20),
            keys in proptest::collection::vec((0..5_usize, 0..4_u32), 1..30),
        ) {
            const MACHINES: [&str; 5] = ["A1", "B1", "C1", "D1", "E1"];
            let rules: Vec<AlarmRule> = targets
                .iter()
                .enumerate()
                .map(|(n, &(m, i))| rule(m.map_or("*", |m| MACHINES[m]), i, Some(n as f64)))
                .collect();
            let set = AlarmRules::new(&rules).unwrap();
            for (m, index) in keys {
                let machine = MACHINES[m];
                let best = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| (r.machine == "*" || r.machine == machine)
                        && r.index.is_none_or(|i| i == index))
                    .max_by_key(|(_, r)| (r.machine != "*", r.index.is_some()))
                    .map(|(n, _)| n + 1);
                proptest::prop_assert_eq!(set.resolve(machine, index).map(|t| t.rule), best);
            }
        }
    }

    #[test]
    fn rules_deserialize_from_the_config_shape_and_refuse_typos() {
        let json =
            serde_json::json!({"machine":"A1","index":2,"sum_above":30.0,"clear_below":25.0});
        let r: AlarmRule = serde_json::from_value(json).unwrap();
        assert_eq!(r.index, Some(2));
        assert_eq!(r.avg_above, None);
        let typo = serde_json::json!({"machine":"A1","sum_above":30.0,"clear_belw":25.0});
        assert!(serde_json::from_value::<AlarmRule>(typo).is_err());
    }
}
