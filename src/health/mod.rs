//! Camera health. In: session events, access-unit arrivals and decoded small frames per camera (fed
//! to one [`CameraTracker`] each, plain method calls, nothing queued here). Out: [`Transition`]s from
//! [`CameraTracker::poll`], each reported once; the poller ([`run_poller`], once a second) stores them
//! in the [`Ledger`] (SQLite, on its own thread) and hands them to the feed and ZeroMQ. Nothing here
//! drops: the ledger's queue (created by `app.rs`) makes the poller wait when it is full, and
//! transitions must never be dropped (they are the online-rate record).
//!
//! - `state`: the vocabulary (states, offline reasons, quality faults, [`Status`]) and [`summarize`];
//! - `tracker`: the per-camera state machine (grace, stall watchdog, fault hysteresis, fps);
//! - `vqd`: video-quality diagnosis on a 160×120 grey copy of a frame;
//! - `ledger`: transitions in SQLite and time-weighted availability by camera, area, day, month
//!   (days and months of China Standard Time, from [`crate::time`]);
//! - `ledger_thread`: the ledger on its own thread behind a bounded queue, and [`LedgerHandle`];
//! - `poller`: polls every tracker once a second, through [`Watched`], and sends each transition to
//!   the ledger and to every [`TransitionSink`].

mod ledger;
mod ledger_thread;
mod poller;
mod state;
mod tracker;
mod vqd;

pub use ledger::{AvailabilityRow, GroupBy, Ledger, LedgerError, NO_AREA};
pub use ledger_thread::{LedgerCmd, LedgerHandle, spawn_ledger};
pub use poller::{POLL_EVERY, TransitionSink, Watched, run_poller};
pub use state::{CameraState, OfflineReason, QualityFault, Status, Summary, Transition, summarize};
pub use tracker::{CameraTracker, TrackerConfig};
pub use vqd::{GREY_H, GREY_W, NightOverride, VqdConfig, VqdDetector, VqdError, VqdSample};
