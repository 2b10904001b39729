//! The same seed gives the same messages; time values carry the send time, so they are
//! compared by form only.

use test_support::{Broker, Collector, Message};

use crate::helpers::{WAIT, run};

/// The messages with each time value replaced by the name of its form.
fn normalized(messages: &[Message]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let Ok(mut json) = m.json() else {
                return (m.topic.clone(), m.text());
            };
            for field in ["timestamp", "zeitstempel"] {
                if let Some(value) = json.get_mut(field) {
                    let form = match value {
                        serde_json::Value::Number(_) => "epoch-ms",
                        serde_json::Value::String(s) if s.ends_with('Z') => "rfc3339-utc",
                        serde_json::Value::String(_) => "rfc3339-offset",
                        _ => "other",
                    };
                    *value = serde_json::Value::String(form.into());
                }
            }
            (m.topic.clone(), json.to_string())
        })
        .collect()
}

async fn messages_for(seed: &str) -> Vec<(String, String)> {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let finished = run(
        broker.port(),
        &[
            "--count",
            "300",
            "--rate",
            "10000",
            "--seed",
            seed,
            "--invalid-ratio",
            "0.1",
            "--qos",
            "1",
        ],
    )
    .await;
    assert!(finished.status.success(), "{}", finished.stderr);
    normalized(&collector.wait_for(|m| m.len() >= 300, WAIT).await.unwrap())
}

#[tokio::test]
async fn same_seed_gives_same_messages() {
    let first = messages_for("42").await;
    let second = messages_for("42").await;
    assert_eq!(first, second);
    let other = messages_for("43").await;
    assert_ne!(first, other);
}
