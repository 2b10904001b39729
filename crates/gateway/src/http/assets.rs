//! The dashboard files and the headers every answer carries.
//!
//! By default the gateway serves the copy of `frontend/` embedded in its binary at build time
//! (the table comes from `build.rs`), so it shows the full dashboard with its Chart.js from any
//! directory, with no files beside it and no internet access. With `http.static_dir` set it
//! serves that directory from disk instead, for frontend work (edit, reload): Chart.js then
//! comes from the directory's `vendor/` (the repository layout) or, failing that, from its
//! `node_modules/chart.js/dist`.
//!
//! Embedded files carry an ETag (a hash of their content) and `Cache-Control: no-cache`: a
//! wall screen that reloads revalidates every file and gets `304 Not Modified` until the
//! gateway is upgraded, then all new files at once, never a mix of old and new modules.
//! Dashboard files are sent gzip-compressed to clients that accept it.

use std::path::{Path, PathBuf};

use actix_files::{Files, NamedFile};
use actix_web::dev::HttpServiceFactory;
use actix_web::http::Method;
use actix_web::http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::{HttpRequest, HttpResponse, web};

/// The policy of every answer. Scripts, styles, images and connections only from the gateway
/// itself (`'self'` covers the page's own `ws:`/`wss:` origin), no plugins, no `<base>`, no
/// forms, and no framing by other sites (`frame-ancestors`, which a `<meta>` tag cannot set).
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
/// no-referrer` on every answer that does not set its own (the dashboard links nowhere, so
/// no other site ever needs to learn the gateway's address).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE))
        .add((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((REFERRER_POLICY, "no-referrer"))
}

/// One file of the embedded dashboard.
#[derive(Debug)]
pub struct Asset {
    /// URL path, e.g. `/src/main.js`.
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// Strong ETag, quotes included.
    pub etag: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
}

/// Every embedded file, from `frontend/` at build time.
pub static EMBEDDED: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded file at a URL path; `/` is `index.html`.
pub fn embedded(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    EMBEDDED.iter().find(|asset| asset.path == path)
}

/// The dashboard routes, to be registered after every other route: the embedded files, or
/// with `static_dir` those on disk (plus Chart.js at `/vendor/chart.umd.js` from `chart_js`).
pub fn service(static_dir: Option<(PathBuf, PathBuf)>) -> impl HttpServiceFactory {
    let scope = web::scope("").wrap(Compress::default());
    match static_dir {
        None => scope.default_service(web::to(serve_embedded)),
        Some((dir, chart_js)) => scope
            .route(
                "/vendor/chart.umd.js",
                web::get().to(move || NamedFile::open_async(chart_js.clone())),
            )
            .service(disk_files(&dir)),
    }
}

/// Where Chart.js is on disk below a `static_dir`: `vendor/chart.umd.js` when it exists,
/// else where `npm ci` puts it.
pub fn disk_chart_js(static_dir: &Path) -> PathBuf {
    let vendor = static_dir.join("vendor/chart.umd.js");
    if vendor.is_file() {
        vendor
    } else {
        static_dir.join("node_modules/chart.js/dist/chart.umd.js")
    }
}

/// `GET`/`HEAD` of an embedded file, `304` when the client's copy is current.
async fn serve_embedded(req: HttpRequest) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((ALLOW, "GET, HEAD"))
            .finish();
    }
    let Some(asset) = embedded(req.path()) else {
        return HttpResponse::NotFound().finish();
    };
    let current = (req.headers().get(IF_NONE_MATCH))
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| etag_matches(value, asset.etag));
    let mut response = if current {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((ETAG, asset.etag))
        .insert_header((CACHE_CONTROL, "no-cache"));
    if current {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks for it).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

/// `static_dir` at `/` with `index.html`; hidden files and `node_modules` are not served.
fn disk_files(static_dir: &Path) -> Files {
    Files::new("/", static_dir)
        .index_file("index.html")
        .path_filter(|path, _| {
            path.components()
                .next()
                .is_none_or(|first| first.as_os_str() != "node_modules")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_everything_it_loads_are_embedded() {
        let index = embedded("/").expect("index.html");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        let html = std::str::from_utf8(index.body).unwrap();
        assert!(html.contains("src/main.js"), "{html}");
        for path in ["/styles.css", "/src/main.js", "/vendor/chart.umd.js"] {
            assert!(embedded(path).is_some(), "{path} not embedded");
        }
        assert!(embedded("/README.md").is_none());
        assert!(embedded("/package.json").is_none());
    }

    #[test]
    fn etags_differ_between_files_and_are_quoted() {
        let a = embedded("/src/main.js").unwrap().etag;
        let b = embedded("/src/state.js").unwrap().etag;
        assert_ne!(a, b);
        assert!(a.starts_with('"') && a.ends_with('"'), "{a}");
    }

    #[test]
    fn if_none_match_is_compared_weakly() {
        assert!(etag_matches("\"1\"", "\"1\""));
        assert!(etag_matches("\"0\", W/\"1\"", "\"1\""));
        assert!(etag_matches("*", "\"1\""));
        assert!(!etag_matches("\"2\"", "\"1\""));
    }
}
