//! qianliyan (千里眼): camera health, batched ONNX analysis and alert delivery for county
//! public-security command centres. See `../shared/design/ARCHITECTURE.md` for the data flow.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod activity;
pub mod alert;
pub mod app;
pub mod auth;
pub mod batch;
pub mod camera;
pub mod camsim;
pub mod clip;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod db;
pub mod decode;
pub mod delivery;
pub mod gb28181;
pub mod health;
pub mod infer;
pub mod ingest;
pub mod queue;
pub mod rules;
pub mod sample;
pub mod scenario;
pub mod settings;
pub mod shutdown;
pub mod sqlite;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod time;
pub mod track;
pub mod web;
