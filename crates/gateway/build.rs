//! Embeds the dashboard: writes `$OUT_DIR/assets.rs`, a table of every file the page loads
//! (`frontend/index.html`, `styles.css`, `src/**`, `vendor/**`) with its URL path, content
//! type and ETag, the bytes pulled in by `include_bytes!`. A table generated here rather than
//! written by hand means a new module under `frontend/src/` is served without touching Rust;
//! the `rerun-if-changed` lines make cargo rebuild the gateway when any of those files, or
//! the set of them, changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files at the top of `frontend/` that the page loads.
const TOP_FILES: &[&str] = &["index.html", "styles.css"];
/// Folders of `frontend/` served whole.
const DIRS: &[&str] = &["src", "vendor"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let frontend = manifest.join("../../frontend");
    let frontend = frontend.canonicalize().unwrap_or_else(|e| {
        panic!(
            "the dashboard is embedded from {}: {e}; build from a full checkout",
            frontend.display()
        )
    });

    let mut files = Vec::new();
    for name in TOP_FILES {
        files.push(frontend.join(name));
    }
    for dir in DIRS {
        let dir = frontend.join(dir);
        // A folder's mtime changes when a file is added or removed; cargo also scans a
        // folder given here for any changed file inside.
        println!("cargo::rerun-if-changed={}", dir.display());
        collect(&dir, &mut files);
    }
    files.sort();
    let chart = frontend.join("vendor/chart.umd.js");
    assert!(
        files.contains(&chart),
        "{} is missing: run scripts/refresh-chartjs.sh",
        chart.display()
    );

    let mut table = String::from("&[\n");
    for file in &files {
        println!("cargo::rerun-if-changed={}", file.display());
        let bytes =
            std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let relative = file
            .strip_prefix(&frontend)
            .expect("collected under frontend");
        let url = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
        let _ = writeln!(
            table,
            "    Asset {{ path: {url:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}) }},",
            content_type(file),
            fnv1a64(&bytes),
            file.to_string_lossy(),
        );
    }
    table.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("assets.rs");
    std::fs::write(&out, table).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Every regular file under `dir`, hidden files left out (editor swap files, `.DS_Store`).
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// The `Content-Type` of a dashboard file. A file type not listed here fails the build, so
/// that nothing is ever served with a guessed type (`nosniff` makes browsers strict).
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("md") => "text/markdown; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => panic!(
            "{}: no content type known for this file; add one to crates/gateway/build.rs",
            file.display()
        ),
    }
}

/// FNV-1a, 64 bit: a content hash for the ETag, enough to tell versions of a file apart.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
