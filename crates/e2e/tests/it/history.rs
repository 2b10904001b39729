//! Shift totals end to end with the real binaries: readings with ids and times cross a shift
//! boundary while ingest and the historian are SIGKILLed and restarted and the broker is
//! restarted; every minute, hour and shift total that the gateway then passes on from the
//! historian equals the sum of the readings the broker acknowledged, and publishing
//! every history message again, reversed and twice, changes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use test_support::{
    Broker, Collector, Publisher, QoS, http_get, settings_file, try_http_get, unique_client_id,
    wait_until,
};

use crate::helpers::TestService;

/// Window of the test's ingest: short, so that minutes close soon after they end, and long
/// enough that readings queued while ingest restarts on a busy machine are not late.
const WINDOW_SECONDS: &str = "45";
/// Readings per second.
const RATE: u64 = 4;

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `HH:MM` of a unix second, UTC.
fn clock(second: i64) -> String {
    let minutes = second.rem_euclid(86_400) / 60;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn rfc3339(millis: i64) -> String {
    aggregator_core::Timestamp::from_unix_millis(millis)
        .unwrap()
        .to_rfc3339_millis()
}

/// One reading the test sent: its id, event time (unix ms) and value.
#[derive(Debug, Clone)]
struct Sent {
    id: u64,
    millis: i64,
    value: f64,
}

impl Sent {
    fn payload(&self) -> String {
        json!({"scrapIndex": 1, "value": self.value, "timestamp": rfc3339(self.millis), "id": format!("r-{}", self.id)})
            .to_string()
    }
}

/// Publishes `reading` until the broker acknowledges it (reconnecting across a broker
/// restart); the same id is sent again, so a copy that did arrive counts once.
async fn publish_acknowledged(port: u16, publisher: &mut Option<Publisher>, reading: &Sent) {
    loop {
        if publisher.is_none() {
            match Publisher::try_connect(port, Duration::from_secs(2)).await {
                Ok(p) => *publisher = Some(p),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let p = publisher.as_mut().unwrap();
        let sent = p
            .publish(
                "machines/E1/scrap",
                QoS::AtLeastOnce,
                false,
                reading.payload(),
            )
            .await;
        if sent.is_ok() && p.flush(Duration::from_secs(5)).await.is_ok() {
            return;
        }
        *publisher = None;
    }
}

/// The rows of `/api/history` through the gateway, `None` while it does not answer 200.
async fn rows(gateway: &TestService, query: &str) -> Option<Vec<Value>> {
    let (status, body) = try_http_get(&gateway.url(&format!("/api/history?machines=E1&{query}")))
        .await
        .ok()?;
    (status == 200)
        .then(|| {
            serde_json::from_str::<Value>(&body)
                .ok()?
                .as_array()
                .cloned()
        })
        .flatten()
}

/// `start` (RFC 3339 UTC) -> sum of every row.
fn sums(rows: &[Value]) -> BTreeMap<String, f64> {
    rows.iter()
        .map(|r| {
            (
                r["startUtc"].as_str().unwrap().to_owned(),
                r["sum"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Sums of `sent` per period of `seconds`, keyed like [`sums`]; an offset shifts the grid.
fn expected(sent: &[Sent], period_start: impl Fn(i64) -> i64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for r in sent {
        *out.entry(rfc3339(period_start(r.millis.div_euclid(1000)) * 1000))
            .or_insert(0.0) += r.value;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_totals_stay_exact_through_kills_and_a_broker_restart() {
    let mut broker = Broker::start().await;
    let port = broker.port();
    let data = tempfile::tempdir().unwrap();
    let start = unix_millis() / 1000;
    // The shift boundary: the first whole minute at least 45 s from now.
    let boundary = (start + 45).div_euclid(60) * 60 + 60;
    let shifts = settings_file(&format!(
        "[[shift]]\nname = \"Before\"\nstart = \"{}\"\nend = \"{}\"\n\
         [[shift]]\nname = \"After\"\nstart = \"{}\"\nend = \"{}\"\n",
        clock(boundary - 7_200),
        clock(boundary),
        clock(boundary),
        clock(boundary - 7_200),
    ));
    let ingest_id = unique_client_id("e2e-history-ingest");
    let data_dir = data.path().to_str().unwrap().to_owned();
    let ingest_args = [
        "--mqtt-client-id",
        &ingest_id,
        "--data-dir",
        &data_dir,
        "--window-seconds",
        WINDOW_SECONDS,
        "--history-interval-seconds",
        "1",
    ];
    let store = format!("sqlite://{}/historian.db", data.path().display());
    let historian_id = unique_client_id("e2e-historian");
    let shifts_path = shifts.path().to_str().unwrap().to_owned();
    let historian_args = [
        "--mqtt-client-id",
        &historian_id,
        "--store-url",
        &store,
        "--config",
        &shifts_path,
        "--api-final-after-secs",
        "60",
    ];
    let ingest = TestService::start_at("ingest", "127.0.0.1", port, &ingest_args, "/health").await;
    let historian =
        TestService::start_at("historian", "127.0.0.1", port, &historian_args, "/health").await;
    let history = Collector::start(port, &["history/#"]).await;

    // Readings until 25 s past the boundary, while ingest, the historian and the broker go
    // down and come back.
    let until = (boundary + 25) * 1000;
    let publishing = async {
        let mut sent = Vec::new();
        let mut publisher = None;
        let mut id = 0;
        while unix_millis() < until {
            id += 1;
            let reading = Sent {
                id,
                millis: unix_millis(),
                value: (id % 7) as f64 + 0.25,
            };
            publish_acknowledged(port, &mut publisher, &reading).await;
            sent.push(reading);
            tokio::time::sleep(Duration::from_millis(1000 / RATE)).await;
        }
        sent
    };
    let chaos = async {
        let mut ingest = ingest;
        let mut historian = historian;
        tokio::time::sleep(Duration::from_secs(12)).await;
        ingest.process.kill().await;
        let ingest =
            TestService::start_at("ingest", "127.0.0.1", port, &ingest_args, "/health").await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        historian.process.kill().await;
        let historian =
            TestService::start_at("historian", "127.0.0.1", port, &historian_args, "/health").await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        broker.stop().await;
        broker.restart().await;
        (ingest, historian)
    };
    let (sent, (ingest, historian)) = tokio::join!(publishing, chaos);
    // The gateway passes the questions to the historian at its address now: a restarted one
    // listens on a new port.
    let gateway = TestService::gateway(port, &["--history-url", &historian.base_url]).await;
    let first_minute = sent[0].millis.div_euclid(60_000) * 60;
    let last_minute = sent.last().unwrap().millis.div_euclid(60_000) * 60;
    let range = format!(
        "from={}&to={}",
        rfc3339(first_minute * 1000),
        rfc3339((last_minute + 60) * 1000)
    );

    let by_minute = expected(&sent, |s| s.div_euclid(60) * 60);
    let minutes = format!("step=minute&{range}");
    let finals = wait_until(
        Duration::from_secs(200),
        "every minute final with its expected sum",
        || async {
            rows(&gateway, &minutes).await.is_some_and(|rows| {
                let all_final = rows.iter().all(|r| r["final"] == true);
                all_final
                    && sums(&rows)
                        .into_iter()
                        .filter(|(_, s)| *s != 0.0)
                        .collect::<BTreeMap<_, _>>()
                        == by_minute
            })
        },
    )
    .await;
    if let Err(e) = finals {
        let got = rows(&gateway, &minutes).await;
        panic!(
            "{e}\nexpected {by_minute:?}\ngot {got:?}\n{}\n{}",
            ingest.process.logs(),
            historian.process.logs()
        );
    }
    let hours = rows(&gateway, &format!("step=hour&{range}")).await.unwrap();
    assert_eq!(
        sums(&hours),
        expected(&sent, |s| s.div_euclid(3_600) * 3_600)
    );
    let shifts = rows(&gateway, &format!("step=shift&{range}"))
        .await
        .unwrap();
    let before: f64 = sent
        .iter()
        .filter(|r| r.millis < boundary * 1000)
        .map(|r| r.value)
        .sum();
    let after: f64 = sent
        .iter()
        .filter(|r| r.millis >= boundary * 1000)
        .map(|r| r.value)
        .sum();
    let got: Vec<(&str, f64)> = shifts
        .iter()
        .map(|r| (r["shift"].as_str().unwrap(), r["sum"].as_f64().unwrap()))
        .collect();
    assert_eq!(got, [("Before", before), ("After", after)]);
    assert!(
        before > 0.0 && after > 0.0,
        "readings on both sides of the boundary"
    );

    // Every history message once more, newest first, twice: nothing changes.
    let before_replay = rows(&gateway, &minutes).await.unwrap();
    let messages = history.messages();
    let received = historian_received(&historian).await;
    let mut publisher = Publisher::connect(port).await;
    let copies = messages
        .iter()
        .rev()
        .chain(messages.iter().rev())
        .map(|m| (m.topic.clone(), m.payload.clone()));
    publisher
        .publish_all(QoS::AtLeastOnce, copies, Duration::from_secs(30))
        .await
        .unwrap();
    let want = received + 2.0 * messages.len() as f64;
    wait_until(
        Duration::from_secs(60),
        "the historian received every copy",
        || async { historian_received(&historian).await >= want },
    )
    .await
    .unwrap();
    assert_eq!(rows(&gateway, &minutes).await.unwrap(), before_replay);
}

async fn historian_received(historian: &TestService) -> f64 {
    let (_, body) = http_get(&historian.url("/metrics")).await;
    test_support::Metrics::parse(&body)
        .get("historian_messages_received_total", &[])
        .unwrap_or(0.0)
}
