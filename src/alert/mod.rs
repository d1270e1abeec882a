//! Alerts: what becomes of a rules-stage [`CandidateAlert`](crate::rules::CandidateAlert) on its way
//! to the command hall. [`snapshot`] renders the annotated JPEG evidence picture (boxes, zone, track
//! ids, Chinese and English labels).

pub mod board;
pub mod snapshot;

pub use snapshot::{Overlay, OverlayBox, Renderer, SnapshotError};
