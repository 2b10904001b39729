//! The dashboard built into the binary: served from an empty working directory with nothing
//! beside the gateway, every file the page loads with its right content type, revalidation,
//! gzip, and the security headers on every answer.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use reqwest::{Client, Response, Url};
use test_support::Broker;

use crate::helpers::TestGateway;

/// The repository's `frontend/`, what the binary must carry.
fn frontend_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../frontend")
}

/// A client that neither compresses nor caches unless a test asks for it.
fn client() -> Client {
    Client::builder()
        .no_gzip()
        .build()
        .expect("build HTTP client")
}

async fn get(client: &Client, url: &Url) -> Response {
    client
        .get(url.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn header<'a>(response: &'a Response, name: &reqwest::header::HeaderName) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} has no {name} header", response.url()))
}

/// The relative URLs a file refers to: `src`/`href` attributes of the html; static and
/// dynamic imports and `new URL(...)` of the modules. Data URLs and absolute URLs are left out.
fn references(text: &str) -> Vec<String> {
    let openers = [
        "src=\"",
        "href=\"",
        "from '",
        "from \"",
        "import '",
        "import \"",
        "import('",
        "import(\"",
        "new URL('",
        "new URL(\"",
    ];
    let mut found = Vec::new();
    for opener in openers {
        let quote = opener.chars().last().expect("opener ends with a quote");
        for (at, _) in text.match_indices(opener) {
            let rest = &text[at + opener.len()..];
            let Some(end) = rest.find(quote) else {
                continue;
            };
            let target = &rest[..end];
            // `new URL(x, location.href)` is an API address, not a file the page loads.
            if opener.starts_with("new URL") && !rest[end + 1..].starts_with(", import.meta.url") {
                continue;
            }
            if !target.is_empty() && !target.contains(':') && !target.starts_with('#') {
                found.push(target.to_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_working_directory_serves_the_full_dashboard_and_its_chart() {
    let broker = Broker::start().await;
    let empty = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_in(Some(empty.path()), broker.port(), &[]).await;
    let client = client();
    let root = Url::parse(&gw.url("/")).unwrap();

    // Walk from the page through everything it loads, as a browser would.
    let mut pending = vec![root.clone()];
    let mut seen = BTreeSet::new();
    while let Some(url) = pending.pop() {
        if !seen.insert(url.path().to_owned()) {
            continue;
        }
        let response = get(&client, &url).await;
        assert_eq!(response.status(), 200, "GET {url}\n{}", gw.process.logs());
        let path = url.path().to_owned();
        let want_type = match path.rsplit('.').next() {
            _ if path == "/" => "text/html; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            other => panic!("the page loads {path}, of unexpected type {other:?}"),
        };
        assert_eq!(header(&response, &CONTENT_TYPE), want_type, "{path}");
        let body = response.bytes().await.unwrap();
        // The embedded copy is the repository's file, byte for byte.
        let file = if path == "/" {
            "/index.html"
        } else {
            path.as_str()
        };
        let on_disk = std::fs::read(frontend_dir().join(&file[1..])).unwrap();
        assert!(body == on_disk, "{path} differs from frontend{file}");
        let text = String::from_utf8(body.to_vec()).unwrap();
        for target in references(&text) {
            pending.push(url.join(&target).unwrap());
        }
    }
    for must in [
        "/",
        "/styles.css",
        "/src/main.js",
        "/src/chart-worker.js",
        "/vendor/chart.umd.js",
    ] {
        assert!(seen.contains(must), "{must} not reached; reached {seen:?}");
    }
    assert_eq!(
        get(&client, &root.join("/nothing-here.js").unwrap())
            .await
            .status(),
        404
    );
    assert!(!gw.process.stderr().contains("Chart.js not found"));
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_files_revalidate_and_compress() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    let client = client();
    let chart = Url::parse(&gw.url("/vendor/chart.umd.js")).unwrap();

    let first = get(&client, &chart).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, &CACHE_CONTROL), "no-cache");
    let etag = header(&first, &ETAG).to_owned();
    let full = first.bytes().await.unwrap().len();

    let again = client
        .get(chart.clone())
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = client
        .get(chart.clone())
        .header(IF_NONE_MATCH, "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    let gzipped = client
        .get(chart.clone())
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert_eq!(header(&gzipped, &CONTENT_ENCODING), "gzip");
    let compressed = gzipped.bytes().await.unwrap().len();
    assert!(compressed * 2 < full, "gzip {compressed} bytes of {full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let broker = Broker::start().await;
    let gw = TestGateway::start(broker.port(), &[]).await;
    gw.wait_healthy().await;
    let disk = tempfile::tempdir().unwrap();
    std::fs::write(disk.path().join("index.html"), "<!doctype html>").unwrap();
    let from_disk = TestGateway::start(
        broker.port(),
        &["--http-static-dir", disk.path().to_str().unwrap()],
    )
    .await;
    let client = client();
    let mut urls: Vec<String> = [
        "/",
        "/src/main.js",
        "/vendor/chart.umd.js",
        "/api/health",
        "/api/aggregates",
        "/metrics",
        "/missing",
    ]
    .iter()
    .map(|path| gw.url(path))
    .collect();
    urls.extend(["/", "/missing"].iter().map(|path| from_disk.url(path)));

    for url in urls {
        let response = get(&client, &Url::parse(&url).unwrap()).await;
        let csp = header(&response, &CONTENT_SECURITY_POLICY);
        assert!(csp.contains("frame-ancestors 'none'"), "{url}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{url}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{url}: {csp}");
        assert_eq!(
            header(&response, &X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{url}"
        );
        assert_eq!(header(&response, &REFERRER_POLICY), "no-referrer", "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_static_dir_falls_back_to_the_built_in_dashboard() {
    let broker = Broker::start().await;
    let gone = tempfile::tempdir().unwrap().path().join("frontend");
    let gw = TestGateway::start(
        broker.port(),
        &["--http-static-dir", gone.to_str().unwrap()],
    )
    .await;
    let client = client();
    let page = get(&client, &Url::parse(&gw.url("/")).unwrap()).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("src/main.js"));
    let chart = get(
        &client,
        &Url::parse(&gw.url("/vendor/chart.umd.js")).unwrap(),
    )
    .await;
    assert_eq!(chart.status(), 200);
    assert!(
        gw.process.stderr().contains("static directory not found"),
        "{}",
        gw.process.logs()
    );
}
