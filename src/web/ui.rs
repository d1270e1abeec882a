//! The command-hall web UI: static files from `web/ui/` embedded in the binary, served at `/` (the app)
//! and `/ui/...` (its modules, styles and icon).
//!
//! No build step: plain JS modules and CSS. URLs carry no content hash, so every answer says
//! `Cache-Control: no-cache` with a strong `ETag` (a hash of the bytes, computed at compile time):
//! browsers revalidate each load and get `304 Not Modified` until the binary changes.
//!
//! For work on the UI, `QLY_UI_DIR=web/ui` makes the server read the same files from that folder on
//! each request instead (edit, reload the browser, no rebuild).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    /// Path under `web/ui/`.
    path: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
    /// FNV-1a 64 of `bytes`.
    hash: u64,
}

/// FNV-1a, 64 bit: a strong enough validator for files that only change with the binary.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

const fn ends_with(b: &[u8], ext: &[u8]) -> bool {
    if b.len() < ext.len() {
        return false;
    }
    let mut i = 0;
    while i < ext.len() {
        if b[b.len() - ext.len() + i] != ext[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn content_type(path: &str) -> &'static str {
    let b = path.as_bytes();
    if ends_with(b, b".html") {
        "text/html; charset=utf-8"
    } else if ends_with(b, b".js") || ends_with(b, b".mjs") {
        "text/javascript; charset=utf-8"
    } else if ends_with(b, b".css") {
        "text/css; charset=utf-8"
    } else if ends_with(b, b".svg") {
        "image/svg+xml"
    } else if ends_with(b, b".json") {
        "application/json"
    } else if ends_with(b, b".png") {
        "image/png"
    } else {
        "application/octet-stream"
    }
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$({
            const BYTES: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/ui/", $path));
            Asset { path: $path, bytes: BYTES, content_type: content_type($path), hash: fnv1a(BYTES) }
        }),*]
    };
}

/// Every file of `web/ui/` (a unit test checks the list against the folder).
static ASSETS: &[Asset] = assets![
    "index.html",
    "favicon.svg",
    "css/app.css",
    "js/main.js",
    "js/api.js",
    "js/dom.js",
    "js/i18n.js",
    "js/feed.js",
    "js/sound.js",
    "js/areas.js",
    "js/alert_common.js",
    "js/pages/login.js",
    "js/pages/alerts.js",
    "js/pages/cameras.js",
    "js/pages/rates.js",
    "js/pages/rules.js",
    "js/pages/station.js",
    "js/pages/delivery.js",
    "js/pages/users.js",
    "js/pages/audit.js",
    "js/pages/gb.js",
];

/// The app page may load only its own scripts and styles; images from the API; the feed on the same host.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The asset's bytes and hash: embedded, or read from `QLY_UI_DIR` when that is set.
async fn contents(asset: &Asset) -> Result<(std::borrow::Cow<'static, [u8]>, u64), Response> {
    let Some(dir) = std::env::var_os("QLY_UI_DIR") else {
        return Ok((asset.bytes.into(), asset.hash));
    };
    let path = std::path::Path::new(&dir).join(asset.path);
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let hash = fnv1a(&bytes);
            Ok((bytes.into(), hash))
        }
        Err(e) => Err((
            StatusCode::NOT_FOUND,
            format!("QLY_UI_DIR: {}: {e}", path.display()),
        )
            .into_response()),
    }
}

async fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let (bytes, hash) = match contents(asset).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let etag = format!("\"{hash:016x}\"");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.path.ends_with(".html") {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (out, bytes).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(a) => serve(a, &headers).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(a) => serve(a, &headers).await,
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI file {path:?}"),
        )
            .into_response(),
    }
}

/// The UI's routes; `.merge()` into the main router.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn files(dir: &std::path::Path, base: &std::path::Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).expect("web/ui is readable") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                files(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).expect("under web/ui");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_web_ui_is_embedded_with_a_known_content_type() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/ui");
        let mut on_disk = BTreeSet::new();
        files(&base, &base, &mut on_disk);
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        assert_eq!(
            on_disk, embedded,
            "web/ui and ui::ASSETS differ: add new files to ASSETS"
        );
        for a in ASSETS {
            assert_ne!(a.content_type, "application/octet-stream", "{}", a.path);
        }
    }

    #[tokio::test]
    async fn serves_the_app_with_validators_and_revalidates_with_304() {
        let res = index(HeaderMap::new()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let etag = res.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(index(again).await.status(), StatusCode::NOT_MODIFIED);

        let res = file(Path("js/main.js".into()), HeaderMap::new()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let res = file(Path("css/app.css".into()), HeaderMap::new()).await;
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        let res = file(Path("../Cargo.toml".into()), HeaderMap::new()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
