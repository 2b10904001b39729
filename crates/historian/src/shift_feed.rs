//! The retained `shifts/{machineId}/{scrapIndex}`: each key's running shift total and its last
//! shift's, as `/api/shifts/current` answers them, for MES and other consumers that read MQTT.
//! Recomputed from the store every `api.shift_topic_interval_secs`; a key's message goes out
//! again only when it changed, so a quiet plant costs one query per interval.

use std::collections::HashMap;
use std::time::Duration;

use aggregator_core::topic::shift_topic;
use rumqttc::{AsyncClient, QoS};
use service_kit::LogLimit;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiState, current_shifts, now};
use crate::metrics::Metrics;

/// Publishes the shift topics until `stop` fires, from the moment `store_ready` is first true
/// (the tables exist). Does nothing without shift rules.
pub async fn run(
    state: ApiState,
    client: AsyncClient,
    interval: Duration,
    metrics: Metrics,
    mut store_ready: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    if !state.calendar.has_shifts() {
        return;
    }
    tokio::select! {
        () = stop.cancelled() => return,
        ready = store_ready.wait_for(|ready| *ready) => if ready.is_err() { return },
    }
    let mut sent: HashMap<(String, u32), String> = HashMap::new();
    let mut failures = LogLimit::new(Duration::from_secs(10));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let keys = match current_shifts(&state, &[], None, now()).await {
            Ok(keys) => keys,
            Err(e) => {
                if let Some(skipped) = failures.admit_at(tokio::time::Instant::now()) {
                    tracing::warn!(error = %e, skipped, "shift totals not published: the store failed");
                }
                continue;
            }
        };
        for key in keys {
            // unwrap: a struct of strings, numbers and options always serializes.
            let payload = serde_json::to_string(&key).unwrap();
            let id = (key.machine_id, key.scrap_index);
            if sent.get(&id) == Some(&payload) {
                continue;
            }
            let topic = shift_topic(&id.0, id.1);
            // A full queue (the broker is away) skips the key; the next round tries again.
            if client
                .try_publish(topic, QoS::AtLeastOnce, true, payload.clone())
                .is_ok()
            {
                metrics.shifts_published.inc();
                sent.insert(id, payload);
            }
        }
    }
}
