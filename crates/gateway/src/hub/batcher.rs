//! When the hub turns pending changes into frames: at once after a quiet spell, at most
//! once per batch interval under load, the interval shrinking with the client count.
//!
//! Batching exists to bound the work of sending every frame to every client, not to delay a
//! lone change, so the first change after a quiet interval goes out at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Client frame sends per second the batcher aims to stay under: at 20 ms batches this is
/// reached at 4 000 clients; below it, frames go out sooner.
const SEND_BUDGET_PER_SEC: f64 = 200_000.0;

/// The pause between flushes for `clients` clients: long enough that `clients` sends per
/// flush stay within [`SEND_BUDGET_PER_SEC`], never longer than the configured `max`.
pub fn batch_interval(max: Duration, clients: usize) -> Duration {
    max.min(Duration::from_secs_f64(
        clients as f64 / SEND_BUDGET_PER_SEC,
    ))
}

impl Hub {
    /// Flushes changes until `shutdown`, at most once per batch interval: a change after a
    /// quiet interval is flushed at once (leading edge), so an idle dashboard sees it without
    /// delay; changes that arrive within the interval of the last flush wait for its end, so a
    /// busy one gets one frame per interval instead of one per change.
    ///
    /// Batching only pays when there are many clients to send each frame to, so the interval
    /// is `interval` at most but shrinks with the client count (see [`batch_interval`]): one
    /// dashboard gets every change at once, ten thousand get 20 ms batches.
    pub async fn run_batcher(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut last_flush: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                // One wake-up may stand for many changes.
                () = self.wake.notified() => {}
            }
            let interval = batch_interval(interval, self.client_count());
            if let Some(due) = last_flush.map(|at| at + interval)
                && due > tokio::time::Instant::now()
            {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            self.flush();
            last_flush = Some(tokio::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::fixtures::{agg, hub, json};
    use crate::hub::ClientSlot;

    #[test]
    fn batch_interval_grows_with_clients_up_to_the_setting() {
        let max = Duration::from_millis(20);
        assert_eq!(batch_interval(max, 0), Duration::ZERO);
        assert_eq!(batch_interval(max, 200), Duration::from_millis(1));
        assert_eq!(batch_interval(max, 2_000), Duration::from_millis(10));
        assert_eq!(batch_interval(max, 10_000), max);
        assert_eq!(batch_interval(Duration::ZERO, 10_000), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_a_quiet_interval_is_sent_at_once() {
        let hub = hub();
        let slots: Vec<ClientSlot> = (0..10_000)
            .map(|_| hub.try_admit(20_000).unwrap())
            .collect();
        let mut sub = hub.subscribe();
        let shutdown = CancellationToken::new();
        let batcher =
            tokio::spawn(Arc::clone(&hub).run_batcher(Duration::from_millis(20), shutdown.clone()));
        let start = tokio::time::Instant::now();
        hub.upsert(agg("A1", 1, 1.0));
        sub.frames.recv().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "leading edge: no wait");
        hub.upsert(agg("A1", 1, 2.0));
        hub.upsert(agg("A1", 1, 3.0));
        let frame = sub.frames.recv().await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(20),
            "under load: one frame per interval"
        );
        assert_eq!(json(&frame.text)["aggregates"][0]["sumLast60s"], 3.0);
        shutdown.cancel();
        batcher.await.unwrap();
        drop(slots);
    }
}
