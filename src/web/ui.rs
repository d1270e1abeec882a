//! The command-hall web UI: static files embedded in the binary, served at `/`.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// The UI's routes; `.merge()` into the main router.
pub fn router() -> Router {
    Router::new().route("/", get(|| async { Html("<!doctype html><title>千里眼</title>") }))
}
