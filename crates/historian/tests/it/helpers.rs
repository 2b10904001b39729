//! Starting the historian against a test broker and store, building bucket messages, and
//! reading the tables back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use historian::bucket::Bucket;
use historian::configuration::StoreKind;
use historian::store::Store;
use sqlx::Row;
use tempfile::TempDir;
use test_support::{
    Broker, Postgres, Publisher, QoS, ServiceProcess, try_http_get, unique_client_id, wait_until,
};

/// Generous bound for anything that should happen within a second on an idle machine: the
/// test machine is shared with other builds.
pub const WAIT: Duration = Duration::from_secs(30);

/// Runs each named test (an `async fn(Backend)`) once against SQLite and once against
/// PostgreSQL, as `sqlite::name` and `postgres::name`.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(crate::helpers::Backend::sqlite()).await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(crate::helpers::Backend::postgres().await).await;
            })+
        }
    };
}
pub(crate) use on_both_stores;

/// The store a test runs against; dropped with the test.
pub enum Backend {
    /// A SQLite file in a temp dir.
    Sqlite(TempDir),
    /// A PostgreSQL server of the test's own.
    Postgres(Box<Postgres>),
}

impl Backend {
    /// A fresh SQLite file (created by the historian).
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A fresh PostgreSQL server.
    pub async fn postgres() -> Self {
        Self::Postgres(Box::new(Postgres::start().await))
    }

    /// The `store.url` of it.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}/historian.db", dir.path().display()),
            Self::Postgres(server) => server.url(),
        }
    }

    /// A pool on the same tables the historian writes.
    pub fn open(&self) -> Store {
        let kind = StoreKind::of(&self.url()).unwrap();
        Store::open(&self.url(), kind).unwrap()
    }
}

/// A running historian process and its HTTP address.
pub struct TestHistorian {
    /// The child process.
    pub process: ServiceProcess,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl TestHistorian {
    /// Starts a historian with a fresh client id and waits until `/health` is 200.
    pub async fn start(broker: &Broker, store: &Backend, extra: &[&str]) -> Self {
        let historian = Self::spawn(broker, store, &unique_client_id("historian"), extra).await;
        historian.wait_health(200).await;
        historian
    }

    /// Starts a historian with `client_id` and waits until its HTTP server listens.
    pub async fn spawn(broker: &Broker, store: &Backend, client_id: &str, extra: &[&str]) -> Self {
        let url = store.url();
        let mut args = vec![
            "--mqtt-client-id",
            client_id,
            "--mqtt-reconnect-max-ms",
            "500",
            "--store-url",
            &url,
            "--store-retry-max-ms",
            "500",
        ];
        args.extend_from_slice(extra);
        let (process, addr) = ServiceProcess::start_service(
            env!("CARGO_BIN_EXE_historian"),
            broker.host(),
            broker.port(),
            &args,
            [("RUST_LOG", "info"), ("NO_COLOR", "1")],
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        Self {
            process,
            base_url: format!("http://{addr}"),
        }
    }

    /// Waits until `/health` answers `status`.
    pub async fn wait_health(&self, status: u16) {
        let url = format!("{}/health", self.base_url);
        wait_until(WAIT, &format!("historian /health is {status}"), || async {
            try_http_get(&url).await.is_ok_and(|(s, _)| s == status)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.process.logs()));
    }

    /// `GET /health`: status and body.
    pub async fn health(&self) -> (u16, String) {
        test_support::http_get(&format!("{}/health", self.base_url)).await
    }

    /// The value of the unlabelled metric `name` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = test_support::http_get(&format!("{}/metrics", self.base_url)).await;
        test_support::Metrics::parse(&body)
            .get(name, &[])
            .unwrap_or(0.0)
    }

    /// Waits until the metric `name` is at least `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let what = format!("{name} >= {value}");
        let url = format!("{}/metrics", self.base_url);
        let result = wait_until(WAIT, &what, || async {
            try_http_get(&url).await.is_ok_and(|(_, body)| {
                test_support::Metrics::parse(&body)
                    .get(name, &[])
                    .is_some_and(|v| v >= value)
            })
        })
        .await;
        if let Err(e) = result {
            let (_, body) = test_support::http_get(&url).await;
            let ours: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("historian_"))
                .collect();
            panic!("{e}\n{}\n{}", ours.join("\n"), self.process.logs());
        }
    }
}

/// A bucket of `machine`, index 1, holding one reading of `sum` at revision 1.
pub fn one_reading(machine: &str, minute: i64, sum: f64, is_final: bool) -> Bucket {
    Bucket {
        machine: machine.into(),
        index: 1,
        minute,
        sum,
        count: 1,
        min: sum,
        max: sum,
        revision: 1,
        is_final,
    }
}

/// One minute bucket as published and as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    pub machine: String,
    pub index: u32,
    /// Unix seconds.
    pub minute: i64,
    pub sum: f64,
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub revision: i64,
    pub is_final: bool,
}

impl Minute {
    /// A bucket of `machine`/`index` at `minute` with `count` readings summing to `sum`.
    pub fn new(machine: &str, index: u32, minute: i64, sum: f64, revision: i64) -> Self {
        Self {
            machine: machine.into(),
            index,
            minute,
            sum,
            count: revision.max(1),
            min: 0.5,
            max: sum.max(0.5),
            revision,
            is_final: false,
        }
    }

    /// `history/{machine}/{index}`.
    pub fn topic(&self) -> String {
        aggregator_core::topic::history_topic(&self.machine, self.index)
    }

    /// The JSON payload ingest would publish.
    pub fn payload(&self) -> String {
        let minute = aggregator_core::Timestamp::from_unix_millis(self.minute * 1_000)
            .unwrap()
            .to_rfc3339_millis();
        serde_json::json!({
            "maschinenId": self.machine, "scrapIndex": self.index, "minute": minute,
            "sum": self.sum, "count": self.count, "min": self.min, "max": self.max,
            "revision": self.revision, "final": self.is_final,
        })
        .to_string()
    }
}

/// The start of the UTC hour `hours_ago` hours before now, unix seconds.
pub fn hour_start(hours_ago: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now / 3_600 - hours_ago) * 3_600
}

/// Publishes `messages` (topic, payload) at QoS 1 and waits for the broker's PUBACKs.
pub async fn publish(broker: &Broker, messages: Vec<(String, Vec<u8>)>) {
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    publisher.disconnect().await;
}

/// Publishes `buckets` in order.
pub async fn publish_buckets(broker: &Broker, buckets: &[Minute]) {
    let messages = buckets
        .iter()
        .map(|b| (b.topic(), b.payload().into_bytes()))
        .collect();
    publish(broker, messages).await;
}

/// Every stored minute, in key order.
pub async fn stored_minutes(store: &Store) -> Vec<Minute> {
    let rows = sqlx::query(
        "SELECT machine, scrap_index, minute, sum, count, min, max, revision, is_final
         FROM minute_buckets ORDER BY machine, scrap_index, minute",
    )
    .fetch_all(store.pool())
    .await
    // Before the historian has created the tables there is nothing stored.
    .unwrap_or_else(|e| {
        eprintln!("reading the store: {e}");
        Vec::new()
    });
    rows.iter()
        .map(|row| Minute {
            machine: row.get(0),
            index: u32::try_from(row.get::<i64, _>(1)).unwrap(),
            minute: row.get(2),
            sum: row.get(3),
            count: row.get(4),
            min: row.get(5),
            max: row.get(6),
            revision: row.get(7),
            is_final: row.get::<i64, _>(8) == 1,
        })
        .collect()
}

/// One hourly rollup: (machine, index, hour, sum, count, min, max, minutes).
pub type Hour = (String, i64, i64, f64, i64, f64, f64, i64);

/// Every stored hour, in key order.
pub async fn stored_hours(store: &Store) -> Vec<Hour> {
    let rows = sqlx::query(
        "SELECT machine, scrap_index, hour, sum, count, min, max, minutes
         FROM hour_buckets ORDER BY machine, scrap_index, hour",
    )
    .fetch_all(store.pool())
    .await
    // Before the historian has created the tables there is nothing stored.
    .unwrap_or_else(|e| {
        eprintln!("reading the store: {e}");
        Vec::new()
    });
    rows.iter()
        .map(|row| {
            let get_i = |i| row.get::<i64, _>(i);
            let get_f = |i| row.get::<f64, _>(i);
            let machine: String = row.get(0);
            (
                machine,
                get_i(1),
                get_i(2),
                get_f(3),
                get_i(4),
                get_f(5),
                get_f(6),
                get_i(7),
            )
        })
        .collect()
}

/// Waits until the store holds exactly `expected` minutes (what the historian logged, if not).
pub async fn wait_stored(store: &Store, expected: &[Minute], historian: &TestHistorian) {
    let mut expected = expected.to_vec();
    expected.sort_by(|a, b| (&a.machine, a.index, a.minute).cmp(&(&b.machine, b.index, b.minute)));
    let result = wait_until(WAIT, "the store holds the expected minutes", || async {
        stored_minutes(store).await == expected
    })
    .await;
    if let Err(e) = result {
        let stored = stored_minutes(store).await;
        panic!(
            "{e}\nstored {} of {}: {:?}\n{}",
            stored.len(),
            expected.len(),
            stored.iter().take(5).collect::<Vec<_>>(),
            historian.process.logs()
        );
    }
}
