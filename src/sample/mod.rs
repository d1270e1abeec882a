//! Sampling: what to decode, and what becomes of each decoded picture. The [`Gate`] takes every
//! access unit from the camera stage and decides, from the camera's activity (`activity/`), whether
//! it is decoded (see `gate.rs`). The dispatcher takes [`DecodeEvent`]s from the decoders (bounded;
//! the decoders drop their oldest frame when this falls behind). Out: a VQD sample into the camera's
//! health tracker, the camera's thumbnail when someone watches it, and a [`BatchInput`] for each
//! model's batcher — when a hand-over queue is full the frame is dropped for that model and counted
//! (`analysis_dropped`; the batcher keeps only each camera's newest frame anyway). While alerts wait
//! for a failing store, frames are not handed to analysis at all (counted as `store_blocked`): VQD and
//! thumbnails go on, nothing new piles up behind the waiting alerts. Each picture's grey grid tells
//! the camera's activity whether the picture moved; a picture of a camera that is still idle after
//! that was decoded for VQD only and is not offered to the detector (counted as `vqd_only`). The
//! dispatcher also takes [`InView`] messages from inference (people in view keep a camera active).

mod gate;

pub use gate::Gate;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::activity::{GreyGrid, InView, State};
use crate::batch::BatchInput;
use crate::camera::{CameraEntry, Fleet};
use crate::clock::Clock;
use crate::decode::{DecodeEvent, DecodedFrame};
use crate::health::VqdSample;
use crate::sync::lock;

/// Whether alerts are waiting for a failing store (then frames skip analysis), and how many frames
/// skipped it for that reason.
#[derive(Clone)]
pub struct StoreBlocked {
    /// True while the alert store fails.
    pub blocked: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Frames not handed to analysis because of it.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Decoded frames → VQD → the camera's tracker, its activity, and on to each model's batcher;
/// people in view → the camera's activity. Runs on its own thread until every decoder is gone or
/// `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn spawn_dispatcher(
    fleet: std::sync::Weak<Fleet>,
    rx: crossbeam_channel::Receiver<DecodeEvent>,
    in_view: Option<crossbeam_channel::Receiver<InView>>,
    clock: Arc<dyn Clock>,
    analysis: Vec<crossbeam_channel::Sender<BatchInput>>,
    analysis_dropped: Arc<std::sync::atomic::AtomicU64>,
    store_blocked: StoreBlocked,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("decode-dispatch".into()).spawn(move || {
        let mut in_view = in_view.unwrap_or_else(crossbeam_channel::never);
        // Ends when every decoder is gone (the channel closes) or, as a fallback, when told to stop.
        loop {
            let event = crossbeam_channel::select! {
                recv(rx) -> e => match e {
                    Ok(e) => e,
                    Err(_) => break,
                },
                recv(in_view) -> m => {
                    match m {
                        Ok(m) => {
                            if let Some(entry) = fleet.upgrade().and_then(|f| f.get(&m.camera)) {
                                let mut a = lock(&entry.activity);
                                a.on_people(clock.now(), m.people);
                                a.log_analysed(
                                    crate::time::unix_ms(m.arrival),
                                    crate::time::unix_ms(clock.wall()),
                                );
                            }
                        }
                        // Inference stopped: no more messages.
                        Err(_) => in_view = crossbeam_channel::never(),
                    }
                    continue;
                },
                default(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                },
            };
            match event {
                DecodeEvent::Frame(frame) => {
                    let Some(entry) = fleet.upgrade().and_then(|f| f.get(&frame.camera)) else { continue };
                    let grid = match VqdSample::measure(&frame.data, frame.width, frame.height, frame.stride) {
                        Ok(sample) => {
                            lock(&entry.tracker).on_decoded(&sample);
                            GreyGrid::from_cells(sample.cell_means())
                        }
                        Err(e) => {
                            tracing::warn!(camera_id = %frame.camera, error = %e, "frame not measurable");
                            None
                        }
                    };
                    entry.counters.analysed.fetch_add(1, Ordering::Relaxed);
                    refresh_thumbnail(&entry, &frame);
                    // Cameras that decode every frame are analysed at their rate whatever moves
                    // (and their pictures, a tenth of a second apart, say little of movement).
                    let keyframe_only = crate::sync::read(&entry.config).keyframe_only;
                    let state = if keyframe_only {
                        let now = clock.now();
                        let mut a = lock(&entry.activity);
                        if let Some(grid) = grid {
                            a.on_picture(now, grid);
                        }
                        if a.config().adaptive { a.state(now) } else { State::Active }
                    } else {
                        State::Active
                    };
                    if analysis.is_empty() {
                        continue;
                    }
                    if state == State::Idle {
                        // Decoded for VQD; nothing moves, nobody is in view: the detector is spared.
                        entry.counters.vqd_only.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let frame = Arc::new(frame);
                    if (store_blocked.blocked)() {
                        store_blocked.dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let (priority, configured_fps) = {
                            let c = crate::sync::read(&entry.config);
                            (c.priority, c.analysis_fps)
                        };
                        for tx in &analysis {
                            let input = BatchInput {
                                frame: frame.clone(),
                                priority,
                                configured_fps,
                            };
                            // The batcher keeps only each camera's newest frame anyway; a full
                            // hand-over queue means inference is far behind: drop and count.
                            if tx.try_send(input).is_err() {
                                analysis_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                DecodeEvent::Error { camera, detail } => {
                    tracing::warn!(camera_id = %camera, %detail, "decode error");
                    if let Some(entry) = fleet.upgrade().and_then(|f| f.get(&camera)) {
                        *lock(&entry.last_error) = Some(format!("decode: {detail}"));
                    }
                }
            }
        }
    })
}

/// Encodes the camera's thumbnail when someone is watching it and the last one is old enough.
fn refresh_thumbnail(entry: &CameraEntry, frame: &DecodedFrame) {
    let now = Instant::now();
    if !lock(&entry.thumbnail).due(now) {
        return;
    }
    match crate::alert::snapshot::frame_jpeg(frame, crate::camera::Thumbnail::MAX_WIDTH, 75) {
        Ok(jpeg) => {
            let mut t = lock(&entry.thumbnail);
            t.jpeg = Some((bytes::Bytes::from(jpeg), frame.decoded_at));
            t.encoded_at = Some(now);
        }
        Err(e) => {
            tracing::warn!(camera_id = %frame.camera, error = %e, "thumbnail not encoded");
            lock(&entry.thumbnail).encoded_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::PictureTuning;

    /// The activity grid is VQD's thumbnail of the same picture: the sizes agree, and a person
    /// walking in shows in it.
    #[test]
    fn the_vqd_thumbnail_feeds_the_picture_difference() {
        let (w, h) = (384usize, 288usize);
        let empty = vec![120u8; w * h * 3];
        let mut person = empty.clone();
        for y in 100..180 {
            for x in 200..230 {
                person[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[20, 20, 20]);
            }
        }
        let grid = |d: &[u8]| {
            let s = VqdSample::measure(d, w as u32, h as u32, w * 3).expect("measure");
            GreyGrid::from_cells(s.cell_means()).expect("the thumbnail has the grid's cells")
        };
        let t = PictureTuning::default();
        assert!(!grid(&empty).moved(&grid(&empty), &t));
        assert!(grid(&person).moved(&grid(&empty), &t));
    }
}
