//! Minimal HTTP GET for health and metrics endpoints.

use std::time::Duration;

/// Per-request timeout: health endpoints answer at once or are broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `url` and returns the status code and body text.
///
/// # Errors
/// A description of the transport failure (connection refused, timeout, ...); an HTTP error
/// status is not an error here, it is returned as the status.
pub async fn try_http_get(url: &str) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("building HTTP client: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: reading body: {e}"))?;
    Ok((status, body))
}

/// GETs `url` and returns the status code and body text.
///
/// # Panics
/// When the request fails at the transport level; use [`try_http_get`] while a service may
/// still be starting.
pub async fn http_get(url: &str) -> (u16, String) {
    match try_http_get(url).await {
        Ok(answer) => answer,
        Err(e) => panic!("{e}"),
    }
}
