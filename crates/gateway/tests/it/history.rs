//! The history paths without a working historian: 401 without the token (before anything is
//! asked of the historian), 404 when none is configured, 502 when it cannot be reached. The
//! answers of a real historian passed through are tested end to end (crates/e2e).

use test_support::Broker;

use crate::helpers::TestGateway;

const TOKEN: &str = "history-token-for-tests-7a2";
const PATHS: [&str; 3] = ["/api/history", "/api/history.csv", "/api/shifts/current"];

async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_historian_the_history_paths_say_why() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &["--http-auth-token", TOKEN]).await;
    for path in PATHS {
        let url = gw.url(&format!("{path}?step=day"));
        assert_eq!(get(&url, None).await.0, 401, "{path}");
        let (status, body) = get(&url, Some(TOKEN)).await;
        assert_eq!(
            (status, body.as_str()),
            (404, "no historian is configured (history.url)\n")
        );
    }
    let (_, body) = get(&gw.url("/api/health"), None).await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["history"], false, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_historian_is_a_502_and_counted() {
    let broker = Broker::start().await;
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let gw = TestGateway::start(broker.port(), &["--history-url", &url]).await;
    let (status, body) = get(&gw.url("/api/history"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (502, "the historian is not reachable\n")
    );
    assert_eq!(gw.metric("gateway_history_errors_total").await, 1.0);
    // Configured is all /api/health tells: whether the historian answers is for the paths.
    let (_, body) = get(&gw.url("/api/health"), None).await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["history"], true, "{body}");
}

#[tokio::test]
async fn a_history_url_that_is_not_plain_http_is_named() {
    let gateway = env!("CARGO_BIN_EXE_gateway");
    let args = ["--history-url", "https://historian:9102"];
    let line = test_support::expect_settings_error(gateway, &args).await;
    assert!(
        line.contains("`history.url`") && line.contains("not an http:// URL"),
        "{line}"
    );
}
