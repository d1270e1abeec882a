//! The alert stage: the rules stage's [`Alert`](crate::rules::Alert) gets its id, camera place and
//! snapshot on its way to the store and the command hall ([`board`]). [`snapshot`] renders the annotated JPEG evidence picture (boxes, zone, track
//! ids, Chinese and English labels).

pub mod board;
pub mod snapshot;

pub use snapshot::{Overlay, OverlayBox, Renderer, SnapshotError};
