//! The history API over stored buckets: totals per hour, shift and day in plant time across
//! the autumn DST change, the same rows as a German CSV, the running and last shift, and bad
//! parameters named with a 400.

use serde_json::Value;
use test_support::{Broker, Collector, http_get, settings_file};

use crate::helpers::{
    Backend, Minute, TestHistorian, on_both_stores, publish_buckets, wait_stored,
};

on_both_stores!(totals_across_the_autumn_dst_change_are_exact_in_plant_time);

/// Three shifts a day in Berlin, the plant day from 06:00.
const BERLIN_SHIFTS: &str = r#"
[plant]
timezone = "Europe/Berlin"
day_start = "06:00"

[retention]
minute_days = 36500
hour_days = 36500

[[shift]]
name = "Early"
start = "06:00"
end = "14:00"

[[shift]]
name = "Late"
start = "14:00"
end = "22:00"

[[shift]]
name = "Night"
start = "22:00"
end = "06:00"
"#;

/// 2026-10-24T20:00:00Z: 22:00 CEST, the start of the night of 24 to 25 October, in which
/// 02:00-03:00 happens twice.
const NIGHT_START: i64 = 1_792_872_000;

async fn get_json(historian: &TestHistorian, path: &str) -> Value {
    let (status, body) = http_get(&format!("{}{path}", historian.base_url)).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn summary(rows: &Value) -> Vec<(String, f64, u64)> {
    let rows = rows.as_array().unwrap();
    let label = |r: &Value| {
        r["shift"]
            .as_str()
            .map_or_else(|| r["start"].as_str().unwrap().to_owned(), str::to_owned)
    };
    rows.iter()
        .map(|r| {
            (
                label(r),
                r["sum"].as_f64().unwrap(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn totals_across_the_autumn_dst_change_are_exact_in_plant_time(store: Backend) {
    let broker = Broker::start().await;
    let file = settings_file(BERLIN_SHIFTS);
    let historian = TestHistorian::start(
        &broker,
        &store,
        &["--config", file.path().to_str().unwrap()],
    )
    .await;
    // A reading of 1.0 every ten minutes from 20:00Z to 05:50Z: ten hours, 60 buckets, of
    // which the nine-hour night holds 54.
    let buckets: Vec<Minute> = (0..60)
        .map(|i| Minute {
            is_final: true,
            count: 1,
            min: 1.0,
            max: 1.0,
            ..Minute::new("A1", 1, NIGHT_START + 600 * i, 1.0, 1)
        })
        .collect();
    publish_buckets(&broker, &buckets).await;
    wait_stored(&store.open(), &buckets, &historian).await;

    let shifts = get_json(
        &historian,
        "/api/history?step=shift&from=2026-10-24&to=2026-10-25",
    )
    .await;
    assert_eq!(
        summary(&shifts),
        [
            ("Early".into(), 0.0, 0),
            ("Late".into(), 0.0, 0),
            ("Night".into(), 54.0, 54)
        ],
        "{shifts}"
    );
    let night = &shifts[2];
    assert_eq!(night["start"], "2026-10-24T22:00:00+02:00");
    assert_eq!(night["end"], "2026-10-25T06:00:00+01:00");
    assert_eq!(night["endUtc"], "2026-10-25T05:00:00.000Z");
    assert_eq!(
        (
            night["day"].as_str(),
            night["final"].as_bool(),
            night["avg"].as_f64()
        ),
        (Some("2026-10-24"), Some(true), Some(1.0))
    );

    // The plant day of 24 October runs 25 hours, to 06:00 CET; the next day holds the rest.
    let days = get_json(
        &historian,
        "/api/history?step=day&from=2026-10-24&to=2026-10-26&machines=A1",
    )
    .await;
    let sums: Vec<f64> = summary(&days).iter().map(|d| d.1).collect();
    assert_eq!(sums, [54.0, 6.0], "{days}");
    let hours = get_json(
        &historian,
        "/api/history?step=hour&from=2026-10-25&to=2026-10-26",
    )
    .await;
    let hours = hours.as_array().unwrap();
    assert_eq!(
        hours.len(),
        24,
        "the plant day of 25 October, 06:00 to 06:00, has 24 hours"
    );
    let night_hours = get_json(
        &historian,
        "/api/history?step=hour&from=2026-10-24T22:00&to=2026-10-25T06:00",
    )
    .await;
    let labels: Vec<&str> = night_hours
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["start"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 9, "{labels:?}");
    assert_eq!(
        &labels[4..6],
        ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    );
    let per_hour: Vec<f64> = summary(&night_hours).iter().map(|h| h.1).collect();
    assert_eq!(per_hour, [6.0; 9]);

    let (status, csv) = http_get(&format!(
        "{}/api/history.csv?step=shift&from=2026-10-24&to=2026-10-25&lang=de",
        historian.base_url
    ))
    .await;
    assert_eq!(status, 200, "{csv}");
    assert!(
        csv.starts_with("\u{feff}Maschine;Ausschussindex;Schicht;Tag;"),
        "{csv}"
    );
    assert!(
        csv.contains(
            "A1;1;Night;2026-10-24;2026-10-24 22:00;2026-10-25 06:00;2026-10-24T20:00:00.000Z;\
             2026-10-25T05:00:00.000Z;Europe/Berlin;54;54;1;ja\r\n"
        ),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_too_large_ranges_are_a_400_naming_the_parameter() {
    let broker = Broker::start().await;
    let store = Backend::sqlite();
    let historian = TestHistorian::start(&broker, &store, &["--api-max-rows", "1000"]).await;
    for (query, parameter) in [
        ("step=month", "`step`"),
        ("from=yesterday", "`from`"),
        ("from=2026-12-05&to=2026-12-01", "`to`"),
        ("colour=red", "`colour`"),
        ("machines=A%2F1", "`machines`"),
        ("step=minute&from=2026-01-01", "`from`"),
    ] {
        let (status, body) = http_get(&format!("{}/api/history?{query}", historian.base_url)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body.starts_with(&format!("query parameter {parameter}: ")),
            "{query}: {body}"
        );
    }
    let (status, body) = http_get(&format!("{}/api/shifts/current", historian.base_url)).await;
    assert_eq!(
        (status, body.as_str()),
        (404, "no [[shift]] rules are configured\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_shift_runs_and_the_last_one_is_whole() {
    let broker = Broker::start().await;
    let store = Backend::sqlite();
    let file = settings_file(
        "[[shift]]\nname = \"A\"\nstart = \"00:00\"\nend = \"08:00\"\n\
         [[shift]]\nname = \"B\"\nstart = \"08:00\"\nend = \"16:00\"\n\
         [[shift]]\nname = \"C\"\nstart = \"16:00\"\nend = \"00:00\"\n",
    );
    let args = [
        "--config",
        file.path().to_str().unwrap(),
        "--api-shift-topic-interval-secs",
        "1",
    ];
    let historian = TestHistorian::start(&broker, &store, &args).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let current_start = now - now % 28_800;
    let current_minute = current_start.max(now - now % 60 - 60);
    let buckets = [
        Minute {
            is_final: false,
            ..Minute::new("P7", 2, current_minute, 2.0, 1)
        },
        Minute {
            is_final: true,
            ..Minute::new("P7", 2, current_start - 1_800, 3.0, 1)
        },
        Minute {
            is_final: true,
            ..Minute::new("P7", 2, current_start - 28_800 - 60, 100.0, 1)
        },
    ];
    publish_buckets(&broker, &buckets).await;
    wait_stored(&store.open(), &buckets, &historian).await;
    let keys = get_json(&historian, "/api/shifts/current?machines=P7").await;
    let key = &keys[0];
    assert_eq!(
        (key["maschinenId"].as_str(), key["scrapIndex"].as_u64()),
        (Some("P7"), Some(2)),
        "{keys}"
    );
    assert_eq!(
        (
            key["current"]["sum"].as_f64(),
            key["current"]["final"].as_bool()
        ),
        (Some(2.0), Some(false)),
        "{keys}"
    );
    assert_eq!(
        key["previous"]["sum"].as_f64(),
        Some(3.0),
        "the shift before the last one is not counted: {keys}"
    );
    let ended_long_enough = now - current_start >= 120;
    assert_eq!(
        key["previous"]["final"].as_bool(),
        Some(ended_long_enough),
        "{keys}"
    );
    // The same totals on shifts/P7/2 for MQTT consumers, retained for the next subscriber.
    let totals = |m: &test_support::Message| {
        m.topic == "shifts/P7/2"
            && m.json()
                .is_ok_and(|v| v["current"]["sum"] == 2.0 && v["previous"]["sum"] == 3.0)
    };
    let live = Collector::start(broker.port(), &["shifts/#"]).await;
    let arrived = live
        .wait_for(|seen| seen.iter().any(totals), crate::helpers::WAIT)
        .await;
    arrived.unwrap_or_else(|e| panic!("{e}\n{}", historian.process.logs()));
    let later = Collector::start(broker.port(), &["shifts/#"]).await;
    let retained = |seen: &[test_support::Message]| seen.iter().any(|m| m.retain && totals(m));
    later
        .wait_for(retained, crate::helpers::WAIT)
        .await
        .unwrap();
}
