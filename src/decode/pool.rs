//! The public handles: [`DecoderPool`] (shared keyframe decoders) and [`CameraDecoder`] (one camera, full
//! GOP). Both are thin: the work happens on their worker threads.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use gstreamer as gst;

use super::worker::{Counters, Lane, Mode};
use super::{
    DecodeConfig, DecodeError, DecodeEvent, DecodeStats, EncodedFrame, VideoCodec, camera_hash,
    check_available,
};

fn init(cfg: &DecodeConfig) -> Result<(), DecodeError> {
    gst::init().map_err(|e| DecodeError::Init {
        detail: e.to_string(),
    })?;
    if cfg.queue == 0 {
        return Err(DecodeError::Config {
            detail: "queue must be at least 1 frame".to_owned(),
        });
    }
    Ok(())
}

fn stats(counters: &Counters, lanes: &[Lane]) -> DecodeStats {
    DecodeStats {
        submitted: counters.submitted.load(Ordering::Relaxed),
        decoded: counters.decoded.load(Ordering::Relaxed),
        dropped: counters.drops(),
        pipeline_restarts: counters.restarts.load(Ordering::Relaxed),
        queue_depth: lanes.iter().map(Lane::depth).collect(),
    }
}

/// A fixed set of decode workers shared by all keyframe-only cameras.
pub struct DecoderPool {
    lanes: Vec<Lane>,
    counters: Arc<Counters>,
}

impl DecoderPool {
    /// Starts `cfg.workers` workers (threads `decode-0` …), each with its H.264 pipeline built and
    /// playing; H.265 pipelines are built on a worker's first H.265 frame. Fails if the decoder kind's
    /// H.264 elements are missing (naming the element), or the config is unusable.
    pub fn start(cfg: DecodeConfig, out: Sender<DecodeEvent>) -> Result<DecoderPool, DecodeError> {
        init(&cfg)?;
        if cfg.workers == 0 {
            return Err(DecodeError::Config {
                detail: "workers must be at least 1".to_owned(),
            });
        }
        // Said once here; each H.265 camera routed to a worker then gets an Error event per frame.
        if let Err(e) = check_available(cfg.kind, VideoCodec::H265) {
            tracing::warn!(error = %e, "H.265 cameras will not decode");
        }
        let counters = Arc::new(Counters::default());
        let mut lanes = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers {
            let lane = Lane::spawn(
                format!("decode-{i}"),
                Mode::Shared,
                cfg,
                VideoCodec::H264,
                out.clone(),
                counters.clone(),
            );
            match lane {
                Ok(lane) => lanes.push(lane),
                Err(e) => {
                    for lane in lanes {
                        lane.shutdown();
                    }
                    return Err(e);
                }
            }
        }
        tracing::info!(workers = cfg.workers, kind = %cfg.kind, queue = cfg.queue, "decoder pool started");
        Ok(DecoderPool { lanes, counters })
    }

    /// Queues a keyframe on its camera's worker. Never blocks: when the worker's bounded queue is full the
    /// OLDEST queued frame is dropped and counted. Delta frames are counted as `not_keyframe` and skipped
    /// (use a [`CameraDecoder`] for full-GOP cameras).
    pub fn submit(&self, frame: EncodedFrame) {
        if !frame.unit.keyframe {
            // Counted here so a delta frame never takes a queue slot from a keyframe.
            self.counters.submitted.fetch_add(1, Ordering::Relaxed);
            self.counters.not_keyframe.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let i = self.worker_for(&frame.camera);
        if let Some(lane) = self.lanes.get(i) {
            lane.submit(frame, &self.counters);
        }
    }

    /// The worker index a camera is routed to (stable across runs for a given worker count).
    pub fn worker_for(&self, camera: &str) -> usize {
        // `lanes` is never empty; the modulo result is below its length.
        (camera_hash(camera) % self.lanes.len().max(1) as u64) as usize
    }

    /// Counters since start and each worker's queue depth now.
    pub fn stats(&self) -> DecodeStats {
        stats(&self.counters, &self.lanes)
    }

    /// Closes the queues; every worker decodes what is queued, sends end-of-stream, drains, sets its
    /// pipelines to Null and exits; returns once all threads are joined. The `out` receiver must keep
    /// reading (or be dropped) until then.
    pub fn shutdown(self) {
        for lane in self.lanes {
            lane.shutdown();
        }
    }

    /// Test hook: make worker `i`'s pipeline for `codec` post a bus error.
    #[cfg(test)]
    pub(crate) fn inject_error(&self, i: usize, codec: VideoCodec) {
        if let Some(lane) = self.lanes.get(i) {
            lane.inject_error(codec);
        }
    }
}

/// One camera's own decoder, for full-GOP decoding (`keyframe_only = false`): every frame, in order.
///
/// Same template and output as the pool; one worker thread (`decode-<camera>`) plus the pipeline's
/// streaming thread. Delta frames before the first keyframe, or after a drop or an error, are skipped
/// (counted as `not_keyframe`) until the next keyframe, since they could only decode to garbage.
pub struct CameraDecoder {
    camera: Arc<str>,
    lane: Lane,
    counters: Arc<Counters>,
}

impl CameraDecoder {
    /// Builds and starts the camera's `codec` pipeline (`cfg.workers` is not used). Fails, naming the
    /// camera, if the decoder kind's element is missing or the pipeline cannot start.
    pub fn start(
        camera: Arc<str>,
        codec: VideoCodec,
        cfg: DecodeConfig,
        out: Sender<DecodeEvent>,
    ) -> Result<CameraDecoder, DecodeError> {
        let with_camera = |e: DecodeError| DecodeError::Camera {
            camera: camera.clone(),
            source: Box::new(e),
        };
        init(&cfg).map_err(with_camera)?;
        let counters = Arc::new(Counters::default());
        let lane = Lane::spawn(
            format!("decode-{camera}"),
            Mode::Dedicated,
            cfg,
            codec,
            out,
            counters.clone(),
        )
        .map_err(with_camera)?;
        Ok(CameraDecoder {
            camera,
            lane,
            counters,
        })
    }

    /// The camera this decoder serves.
    pub fn camera(&self) -> &Arc<str> {
        &self.camera
    }

    /// Queues a frame. Never blocks: when the bounded queue is full the OLDEST queued frame is dropped and
    /// counted, and decoding resumes at the next keyframe.
    pub fn submit(&self, frame: EncodedFrame) {
        self.lane.submit(frame, &self.counters);
    }

    /// Counters since start and the queue depth now.
    pub fn stats(&self) -> DecodeStats {
        stats(&self.counters, std::slice::from_ref(&self.lane))
    }

    /// Decodes what is queued, drains the pipeline, sets it to Null and joins the worker.
    pub fn shutdown(self) {
        self.lane.shutdown();
    }
}
