//! The optional bearer token of `/ws` and every `/api/` path but `/api/health`: read once at
//! start-up from `[http]` ([`token`]), then asked of each request ([`authorized`]).
//!
//! Clients send `Authorization: Bearer <token>`. Browsers cannot set headers on a WebSocket
//! upgrade, so `/ws` also takes `?token=<token>` (the dashboard forwards the one in its own
//! page URL). `/`, `/api/health` and `/metrics` stay open: the dashboard's files hold no data,
//! and health and metrics are read by probes and scrapers that usually carry no token (put
//! them behind the network, not the token).

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::http::header;
use service_kit::{Secret, SettingsError, ensure};

use crate::configuration::HttpSettings;

/// The token from `http.auth_token` or the file `http.auth_token_file`; `None` when neither
/// is set.
///
/// # Errors
/// [`SettingsError::Invalid`] naming the setting: both set, an unreadable file, an empty token
/// or one that is not printable ASCII.
pub fn token(http: &HttpSettings) -> Result<Option<Secret>, SettingsError> {
    let invalid = |message| SettingsError::invalid("http.auth_token_file", message);
    let token = match (&http.auth_token, &http.auth_token_file) {
        (Some(_), Some(_)) => {
            let message = "set either http.auth_token or http.auth_token_file, not both";
            return Err(invalid(message.into()));
        }
        (Some(token), None) => token.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path);
            let text = text.map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            Secret::new(text.trim_end_matches(['\r', '\n']))
        }
        (None, None) => return Ok(None),
    };
    ensure(!token.is_empty(), "http.auth_token", "must not be empty")?;
    // Tokens travel in headers and query strings: visible ASCII only keeps both simple.
    let visible = token.expose().bytes().all(|b| b.is_ascii_graphic());
    ensure(
        visible,
        "http.auth_token",
        "must be printable ASCII without spaces",
    )?;
    Ok(Some(token))
}

/// Whether `req` may pass: always when no token is configured; else when the bearer header
/// or, if `query_token` is given (WebSocket upgrades), the query parameter matches.
/// Comparison is constant-time in the token's content.
pub fn authorized(req: &HttpRequest, expected: Option<&Secret>, query_token: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    from_header.is_some_and(|t| expected.matches(t.as_bytes()))
        || query_token.is_some_and(|t| expected.matches(t.as_bytes()))
}

/// 401 with the challenge that tells a client to send a bearer token.
pub fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body("missing or wrong bearer token\n")
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn no_token_configured_lets_everyone_in() {
        assert!(authorized(
            &TestRequest::default().to_http_request(),
            None,
            None
        ));
    }

    #[test]
    fn header_or_query_must_match() {
        let token = Secret::new("t0ken");
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request()
        };
        assert!(authorized(&with("Bearer t0ken"), Some(&token), None));
        assert!(authorized(&with("bearer  t0ken "), Some(&token), None));
        assert!(!authorized(&with("Bearer t0ke"), Some(&token), None));
        assert!(!authorized(&with("Basic t0ken"), Some(&token), None));
        assert!(!authorized(&with("t0ken"), Some(&token), None));
        let bare = TestRequest::default().to_http_request();
        assert!(!authorized(&bare, Some(&token), None));
        assert!(authorized(&bare, Some(&token), Some("t0ken")));
        assert!(!authorized(&bare, Some(&token), Some("other")));
        assert!(!authorized(&bare, Some(&token), Some("")));
    }
}
