//! Alarm state of every tracked key: each change of a key's window (a reading, an expiry) is
//! evaluated against the key's most specific `[[alarm]]` rule, and a change of state is
//! published retained QoS 1 on `alarms/{machineId}/{scrapIndex}`.
//!
//! The logic is `aggregator_core::alarm`'s; this module keeps one [`KeyAlarm`] per key (the
//! rule is resolved once per key), publishes through the [`Outbox`] in order, and keeps the
//! `/metrics` figures.
//!
//! Restarts: nothing is evaluated until the start-up snapshot has been read
//! ([`Alarms::restore`]). A raised alarm read back is taken over with its `since` for a key
//! the replayed window tracks, so the first evaluation after the restart publishes nothing
//! unless the state really changed; for a key with nothing in its window it is cleared.

use std::sync::Arc;

use aggregator_core::alarm::{AlarmChange, AlarmMessage, AlarmRules, AlarmState, KeyAlarm, Metric};
use aggregator_core::topic::alarm_topic;
use aggregator_core::{KeyId, Timestamp, WindowStore, WindowTotals};
use hashbrown::HashMap;

use crate::metrics::Metrics;
use crate::pipeline::outbox::Outbox;
use crate::restart::snapshot::ReadBack;

/// The alarm state of every tracked key.
pub struct Alarms {
    rules: Arc<AlarmRules>,
    /// Per key: its alarm, or `None` when no rule applies to it.
    states: HashMap<KeyId, Option<KeyAlarm>>,
    /// The start-up snapshot has been taken into account; evaluations wait until then.
    ready: bool,
    /// Alarms raised now (the gauge).
    raised: i64,
    metrics: Metrics,
}

impl Alarms {
    /// No alarm raised, waiting for the start-up snapshot.
    pub fn new(rules: Arc<AlarmRules>, metrics: Metrics) -> Self {
        Alarms {
            rules,
            states: HashMap::new(),
            ready: false,
            raised: 0,
            metrics,
        }
    }

    /// Evaluates the key `id` after its window changed at `now`, publishing a change of state.
    pub fn evaluate(&mut self, store: &WindowStore, id: KeyId, now: Timestamp, out: &mut Outbox) {
        // No rules: nothing to do on the hot path beyond this check.
        if !self.ready || self.rules.is_empty() {
            return;
        }
        let (Some(key), Some(totals)) = (store.key(id), store.totals(id)) else {
            return;
        };
        let rules = &self.rules;
        let state = self.states.entry(id).or_insert_with(|| {
            rules
                .resolve(&key.machine, key.scrap_index)
                .map(KeyAlarm::new)
        });
        if let Some(change) = state.as_mut().and_then(|alarm| alarm.evaluate(totals, now)) {
            self.publish(&key.machine, key.scrap_index, &change, now, out);
        }
    }

    /// Takes the retained alarms of the previous run into account and starts evaluating.
    ///
    /// A raised alarm of a tracked key is taken over (same metric and `since`); one whose key
    /// is not tracked, or whose metric no rule of this configuration watches any more, is
    /// cleared at once, since this process will not clear it otherwise. Every tracked key is
    /// then evaluated. `read` says whether `retained` was read from the broker at all.
    pub fn restore(
        &mut self,
        store: &WindowStore,
        retained: Vec<AlarmMessage>,
        read: ReadBack,
        now: Timestamp,
        out: &mut Outbox,
    ) {
        if self.ready {
            return;
        }
        let mut taken_over = 0_usize;
        for message in retained {
            let Ok(Some((metric, since))) = message.raised_state() else {
                continue;
            };
            let (machine, index) = (message.machine_id.as_str(), message.scrap_index);
            // Counted as raised either way: taken over, or raised until the clear below.
            self.raised += 1;
            let id = store.lookup(machine, index);
            let alarm = id.and_then(|id| {
                self.states
                    .entry(id)
                    .or_insert_with(|| self.rules.resolve(machine, index).map(KeyAlarm::new))
                    .as_mut()
            });
            if alarm.is_some_and(|alarm| alarm.restore_raised(metric, since)) {
                taken_over += 1;
                continue;
            }
            // An untracked key's window is empty: sum 0, no average.
            let empty = WindowTotals { sum: 0.0, count: 0 };
            let totals = id.and_then(|id| store.totals(id)).unwrap_or(empty);
            let change = AlarmChange {
                state: AlarmState::Cleared,
                metric,
                value: value_of(metric, &totals),
                threshold: message.threshold,
                since: now,
            };
            self.publish(machine, index, &change, now, out);
        }
        self.metrics.alarms_raised.set(self.raised.max(0));
        if read.happened() {
            let complete = read == ReadBack::Complete;
            tracing::info!(
                rules = self.rules.len(),
                taken_over,
                complete,
                "alarms: retained state read back, evaluating"
            );
        } else {
            tracing::info!(
                rules = self.rules.len(),
                "alarms: no retained state was read, evaluating from the windows alone"
            );
        }
        self.ready = true;
        for id in store.key_ids() {
            self.evaluate(store, id, now, out);
        }
    }

    /// Publishes every raised alarm again (after a reconnect: a broker that crashed may have
    /// lost its retained messages). Same state and `since`, so subscribers see no change.
    pub fn republish_raised(&mut self, store: &WindowStore, now: Timestamp, out: &mut Outbox) {
        for (id, state) in &self.states {
            let (Some(alarm), Some(key), Some(totals)) =
                (state.as_ref(), store.key(*id), store.totals(*id))
            else {
                continue;
            };
            let Some((metric, since)) = alarm.raised() else {
                continue;
            };
            let Some(band) = alarm.thresholds().band(metric) else {
                continue;
            };
            let change = AlarmChange {
                state: AlarmState::Raised,
                metric,
                value: value_of(metric, &totals),
                threshold: band.raise,
                since,
            };
            send(&key.machine, key.scrap_index, &change, now, out);
        }
    }

    /// Drops the state of keys the store no longer tracks (after forgetting): their retained
    /// alarm is cleared by the outbox.
    pub fn forget_untracked(&mut self, store: &WindowStore) {
        let mut dropped_raised = 0_i64;
        self.states.retain(|id, state| {
            let keep = store.key(*id).is_some();
            if !keep && state.as_ref().is_some_and(|a| a.raised().is_some()) {
                dropped_raised += 1;
            }
            keep
        });
        if dropped_raised > 0 {
            self.raised -= dropped_raised;
            self.metrics.alarms_raised.set(self.raised.max(0));
        }
    }

    /// Counts and logs a change of state, and publishes it.
    fn publish(
        &mut self,
        machine: &str,
        index: u32,
        change: &AlarmChange,
        now: Timestamp,
        out: &mut Outbox,
    ) {
        match change.state {
            AlarmState::Raised => {
                self.raised += 1;
                self.metrics.alarm_raises.inc();
            }
            AlarmState::Cleared => {
                self.raised -= 1;
                self.metrics.alarm_clears.inc();
            }
        }
        self.metrics.alarms_raised.set(self.raised.max(0));
        tracing::info!(
            machine,
            scrap_index = index,
            state = ?change.state,
            metric = change.metric.as_str(),
            value = ?change.value,
            threshold = change.threshold,
            "alarm"
        );
        send(machine, index, change, now, out);
    }
}

fn value_of(metric: Metric, totals: &WindowTotals) -> Option<f64> {
    match metric {
        Metric::Sum => Some(totals.sum),
        Metric::Avg => totals.avg(),
    }
}

fn send(machine: &str, index: u32, change: &AlarmChange, now: Timestamp, out: &mut Outbox) {
    let message = AlarmMessage::new(machine, index, change, now);
    // Plain numbers and strings: serialization cannot fail.
    let payload = serde_json::to_vec(&message).unwrap_or_default();
    out.publish_in_order(alarm_topic(machine, index), payload, now);
}
