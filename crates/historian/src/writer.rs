//! The writer task: reads messages from the link's channel, gathers them into a [`Batch`]
//! (up to `store.batch_size` messages, `store.batch_max_ms` from the first, or until none has
//! come for `store.batch_quiet_ms`), writes it in one
//! transaction and only then acknowledges its messages. A failed write is retried with a
//! backoff while the store is reported unavailable; nothing is read meanwhile, so the backlog
//! stays at the broker (and in the bounded channel) until the store is back.
//!
//! Stopping: the batch at hand, with the messages the link has already handed over (up to a
//! batch), is committed if the store takes it within the shutdown timeout and acknowledged;
//! otherwise it is abandoned unacknowledged and the broker delivers it again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Publish, QoS};
use service_kit::{Backoff, LogLimit};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::Batch;
use crate::bucket::{Bucket, Invalid, MAX_PAYLOAD_BYTES, decode};
use crate::configuration::HistorianConfig;
use crate::metrics::Metrics;
use crate::mqtt::Inbound;
use crate::store::{Pruned, Store, StoreError};

/// At most one warning of a kind per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How soon acknowledgements that found the client's queue full are offered again.
const ACK_RETRY: Duration = Duration::from_millis(5);
/// Seconds in a day.
const DAY_SECS: i64 = 86_400;

/// What acknowledges one message: its packet id in the connection generation it came in.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    qos: QoS,
    pkid: u16,
    generation: u64,
}

/// The writer and what it needs.
pub struct Writer {
    store: Store,
    client: AsyncClient,
    generation: Arc<AtomicU64>,
    metrics: Metrics,
    available: watch::Sender<bool>,
    batch_size: usize,
    batch_max: Duration,
    batch_quiet: Duration,
    shutdown_timeout: Duration,
    minute_days: u32,
    hour_days: u32,
    prune_every: Duration,
    backoff: Backoff,
    /// Acknowledgements of committed messages not yet taken by the client's queue.
    unsent: VecDeque<Ack>,
    invalid_log: LogLimit,
    store_log: LogLimit,
}

impl Writer {
    /// A writer for `config` that writes to `store`, acknowledges through `client` in the
    /// connection `generation`, and reports the store's state on `available`.
    pub fn new(
        config: &HistorianConfig,
        store: Store,
        client: AsyncClient,
        generation: Arc<AtomicU64>,
        metrics: Metrics,
        available: watch::Sender<bool>,
    ) -> Self {
        let settings = &config.settings;
        Self {
            store,
            client,
            generation,
            metrics,
            available,
            batch_size: settings.store.batch_size,
            batch_max: settings.store.batch_max(),
            batch_quiet: settings.store.batch_quiet(),
            shutdown_timeout: Duration::from_millis(settings.shutdown_timeout_ms),
            minute_days: settings.retention.minute_days,
            hour_days: settings.retention.hour_days,
            prune_every: Duration::from_secs(settings.retention.prune_interval_minutes * 60),
            backoff: settings.store.backoff(),
            unsent: VecDeque::new(),
            invalid_log: LogLimit::new(LOG_EVERY),
            store_log: LogLimit::new(LOG_EVERY),
        }
    }

    /// Prepares the store, then writes batches until `shutdown` fires or the channel closes.
    ///
    /// # Errors
    /// [`StoreError::NewerSchema`]: the store belongs to a newer historian.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        if !self.prepare(shutdown).await? {
            return Ok(());
        }
        let mut prune_at = Instant::now();
        loop {
            let first = tokio::select! {
                biased;
                // What the link has handed over already is the batch at hand.
                () = shutdown.cancelled() => inbound.try_recv().ok(),
                () = tokio::time::sleep_until(prune_at) => {
                    self.prune().await;
                    prune_at = Instant::now() + self.prune_every;
                    continue;
                }
                () = tokio::time::sleep(ACK_RETRY), if !self.unsent.is_empty() => {
                    self.send_acks();
                    continue;
                }
                first = inbound.recv() => first,
            };
            let Some(first) = first else { break };
            let batch = self.gather(first, &mut inbound, shutdown).await;
            // Once stopping, one batch at most: what comes later is delivered again.
            if !self.commit(batch, shutdown).await || shutdown.is_cancelled() {
                break;
            }
        }
        // Queued before the DISCONNECT; what does not fit is delivered again.
        self.send_acks();
        Ok(())
    }

    /// Creates or upgrades the tables, retrying while the store is unreachable. False when
    /// `shutdown` fired first.
    async fn prepare(&mut self, shutdown: &CancellationToken) -> Result<bool, StoreError> {
        loop {
            match self.store.migrate().await {
                Ok(version) => {
                    tracing::info!(found_version = version, "store ready");
                    self.set_available(true);
                    return Ok(true);
                }
                Err(e @ StoreError::NewerSchema { .. }) => return Err(e),
                Err(e) => {
                    if !self.pause_after(&e, shutdown).await {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Reads messages into a batch until it is full, `batch_max` has passed since `first`,
    /// none has come for `batch_quiet` (the broker waits for acknowledgements) or the channel
    /// closes. Once `shutdown` fires it takes only what the channel holds already.
    async fn gather(
        &mut self,
        first: Inbound,
        inbound: &mut mpsc::Receiver<Inbound>,
        shutdown: &CancellationToken,
    ) -> Batch<Ack> {
        let deadline = Instant::now() + self.batch_max;
        let mut batch = Batch::default();
        self.add(&mut batch, first);
        while batch.len() < self.batch_size {
            let wait_until = deadline.min(Instant::now() + self.batch_quiet);
            let next = tokio::select! {
                biased;
                // Stopping: what is in the channel already joins the batch, nothing more.
                () = shutdown.cancelled() => inbound.try_recv().ok(),
                () = tokio::time::sleep_until(wait_until) => break,
                next = inbound.recv() => next,
            };
            match next {
                Some(message) => self.add(&mut batch, message),
                None => break,
            }
            self.send_acks();
        }
        batch
    }

    /// Adds one message: its bucket when it is valid and within retention, its ack always.
    fn add(&mut self, batch: &mut Batch<Ack>, message: Inbound) {
        let Inbound {
            publish,
            size,
            generation,
        } = message;
        let ack = Ack {
            qos: publish.qos,
            pkid: publish.pkid,
            generation,
        };
        let decoded = match size {
            size if size > MAX_PAYLOAD_BYTES => Err(Invalid::TooLarge(size)),
            _ => decode(&publish.topic, &publish.payload),
        };
        let bucket = match decoded {
            Ok(bucket) => self.within_retention(bucket),
            Err(reason) => {
                self.skip_invalid(&publish.topic, &reason);
                None
            }
        };
        batch.push(bucket, ack);
    }

    /// `bucket`, unless its minute is older than retention keeps (then counted).
    fn within_retention(&self, bucket: Bucket) -> Option<Bucket> {
        let oldest = unix_now() - i64::from(self.minute_days) * DAY_SECS;
        if bucket.minute < oldest {
            self.metrics.messages_expired.inc();
            return None;
        }
        Some(bucket)
    }

    /// Counts a malformed message and logs it, at most once per [`LOG_EVERY`].
    fn skip_invalid(&mut self, topic: &str, reason: &Invalid) {
        self.metrics.messages_invalid.inc();
        if let Some(suppressed) = self.invalid_log.admit_at(Instant::now()) {
            tracing::warn!(%topic, %reason, suppressed, "malformed history message skipped");
        }
    }

    /// Writes `batch` until it commits, then acknowledges it. False when `shutdown` fired
    /// while the store was failing: the batch is abandoned unacknowledged.
    async fn commit(&mut self, batch: Batch<Ack>, shutdown: &CancellationToken) -> bool {
        loop {
            let started = Instant::now();
            let attempt = self.store.write(&batch);
            let result = match shutdown.is_cancelled() {
                true => tokio::time::timeout(self.shutdown_timeout, attempt).await,
                false => Ok(attempt.await),
            };
            match result {
                Ok(Ok(written)) => {
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.minutes_written.inc_by(written.minutes);
                    self.metrics.batches_committed.inc();
                    self.set_available(true);
                    self.unsent.extend(batch.into_acks());
                    self.send_acks();
                    return true;
                }
                Ok(Err(e)) => {
                    if !self.pause_after(&e, shutdown).await {
                        return false;
                    }
                }
                Err(_) => {
                    tracing::warn!("the batch at hand did not commit in time; abandoned");
                    return false;
                }
            }
        }
    }

    /// Hands the acknowledgements of committed messages to the client, as many as its queue
    /// takes now. It never waits: the link may itself be waiting for room in the channel this
    /// task reads. Those of an earlier connection are dropped: the broker sends their messages
    /// again, and they are stored as copies.
    fn send_acks(&mut self) {
        let generation = self.generation.load(Ordering::SeqCst);
        while let Some(ack) = self.unsent.front() {
            if ack.generation == generation && ack.qos != QoS::AtMostOnce {
                let mut stand_in = Publish::new("", ack.qos, Vec::new());
                stand_in.pkid = ack.pkid;
                // The queue is full (or the link has stopped): offered again later.
                if self.client.try_ack(&stand_in).is_err() {
                    return;
                }
                self.metrics.messages_stored.inc();
            }
            self.unsent.pop_front();
        }
    }

    /// After a store error: reports the store unavailable, logs, pauses. False when
    /// `shutdown` fired.
    async fn pause_after(&mut self, error: &StoreError, shutdown: &CancellationToken) -> bool {
        self.metrics.store_errors.inc();
        self.set_available(false);
        let pause = self.backoff.next_delay();
        if let Some(suppressed) = self.store_log.admit_at(Instant::now()) {
            let retry_in_ms = pause.as_millis() as u64;
            tracing::warn!(%error, retry_in_ms, suppressed, "store unavailable; retrying");
        }
        !shutdown.is_cancelled()
            && tokio::time::timeout(pause, shutdown.cancelled())
                .await
                .is_err()
    }

    /// Deletes what retention no longer keeps; a failure is counted and tried next time.
    async fn prune(&mut self) {
        let now = unix_now();
        let minutes_before = now - i64::from(self.minute_days) * DAY_SECS;
        let hours_before = now - i64::from(self.hour_days) * DAY_SECS;
        match self.store.prune(minutes_before, hours_before).await {
            Ok(pruned) => {
                self.metrics.minutes_pruned.inc_by(pruned.minutes);
                self.metrics.hours_pruned.inc_by(pruned.hours);
                if pruned.minutes + pruned.hours + pruned.shifts > 0 {
                    let Pruned {
                        minutes,
                        hours,
                        shifts,
                    } = pruned;
                    tracing::info!(minutes, hours, shifts, "pruned");
                }
            }
            Err(error) => {
                self.metrics.store_errors.inc();
                tracing::warn!(%error, "pruning failed; trying again next time");
            }
        }
    }

    /// Reports the store's state on `/health` and the gauge.
    fn set_available(&mut self, available: bool) {
        if available {
            self.backoff.reset();
        }
        self.available
            .send_if_modified(|now| std::mem::replace(now, available) != available);
        self.metrics.store_available.set(i64::from(available));
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use aggregator_core::Timestamp;
    use aggregator_core::topic::history_topic;
    use aggregator_core::wire::HistoryBucket;
    use rumqttc::MqttOptions;

    use super::*;
    use crate::configuration::{BINARY, Settings};

    /// A history message for `machine`/1 at `minute` (unix seconds).
    fn message(machine: &str, minute: i64, pkid: u16) -> Inbound {
        let bucket = HistoryBucket {
            machine_id: machine.into(),
            scrap_index: 1,
            minute: Timestamp::from_unix_millis(minute * 1_000)
                .unwrap()
                .to_rfc3339_millis(),
            sum: 2.0,
            count: 1,
            min: 2.0,
            max: 2.0,
            revision: 1,
            is_final: false,
        };
        let payload = serde_json::to_vec(&bucket).unwrap();
        let mut publish = Publish::new(history_topic(machine, 1), QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        Inbound {
            size: publish.payload.len(),
            publish,
            generation: 0,
        }
    }

    /// Runs a writer on a new SQLite store with `batch_size`, its channel holding `held`
    /// messages when the stop has already been asked for; the rows stored afterwards.
    async fn stop_with_messages_held(batch_size: usize, held: u16) -> i64 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/historian.db", dir.path().display());
        let size = batch_size.to_string();
        let args = [
            "historian",
            "--store-url",
            &url,
            "--store-batch-size",
            &size,
        ];
        let config = BINARY
            .load::<Settings>(args, std::iter::empty())
            .unwrap()
            .validate()
            .unwrap();
        let store = Store::open(&url, config.store_kind).unwrap();
        // A client whose queue is never sent: acknowledgements wait in it.
        let (client, _unpolled) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 1_024);
        let (available, _) = watch::channel(false);
        let writer = Writer::new(
            &config,
            store.clone(),
            client,
            Arc::new(AtomicU64::new(0)),
            Metrics::new(),
            available,
        );
        let (tx, rx) = mpsc::channel(usize::from(held) + 1);
        let now = unix_now() / 60 * 60;
        for i in 0..held {
            tx.send(message("S", now - 60 * i64::from(i), i + 1))
                .await
                .unwrap();
        }
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        writer.run(rx, &shutdown).await.unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM minute_buckets")
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.close().await;
        stored
    }

    #[tokio::test]
    async fn a_stop_commits_what_the_link_has_handed_over() {
        assert_eq!(stop_with_messages_held(500, 30).await, 30);
    }

    #[tokio::test]
    async fn a_stop_commits_one_batch_at_most() {
        assert_eq!(stop_with_messages_held(10, 30).await, 10);
    }
}
