//! One model, one session, one set of buffers: frames in, [`Detections`] out. Used by each inference
//! thread, and directly by tests and the bench.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::Detections;
use super::error::InferError;
use super::manifest::{ModelKind, ModelManifest};
use super::postprocess::{self, PostScratch};
use super::preprocess::Preprocessor;
use super::session::{ModelSession, OrtRuntime, SessionConfig};
use crate::decode::DecodedFrame;

/// Where the time of the last [`ModelRunner::run`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTiming {
    /// Frames processed.
    pub frames: usize,
    /// OpenCV resize + normalisation, all frames.
    pub preprocess_ms: f64,
    /// `Session::run`, all batches.
    pub infer_ms: f64,
    /// Decode + NMS (or score extraction), all frames.
    pub postprocess_ms: f64,
}

/// A model session with its preprocessing and postprocessing.
#[derive(Debug)]
pub struct ModelRunner {
    session: ModelSession,
    manifest: Arc<ModelManifest>,
    pre: Preprocessor,
    scratch: PostScratch,
    timing: StageTiming,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl ModelRunner {
    /// Loads the model (checked against its manifest) and allocates the batch buffers.
    pub fn new(
        rt: &OrtRuntime,
        manifest: Arc<ModelManifest>,
        cfg: &SessionConfig,
    ) -> Result<Self, InferError> {
        let session = ModelSession::load(rt, manifest.clone(), cfg)?;
        let pre = Preprocessor::new(&manifest.name, &manifest.input, manifest.max_batch)?;
        Ok(Self {
            session,
            manifest,
            pre,
            scratch: PostScratch::default(),
            timing: StageTiming::default(),
        })
    }

    /// The provider actually running the model (`cpu`, `cuda`, `tensorrt`).
    pub fn provider_in_use(&self) -> &'static str {
        self.session.provider_in_use()
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Arc<ModelManifest> {
        &self.manifest
    }

    /// The session (for a bare `Session::run` loop in the bench).
    pub fn session_mut(&mut self) -> &mut ModelSession {
        &mut self.session
    }

    /// The preprocessor (its buffer holds the last batch's input).
    pub fn preprocessor_mut(&mut self) -> &mut Preprocessor {
        &mut self.pre
    }

    /// Timing of the last [`run`](Self::run).
    pub fn last_timing(&self) -> StageTiming {
        self.timing
    }

    /// Runs one batch of `max_batch` blank images and discards the result, so that ONNX Runtime allocates
    /// its largest working set (its CPU arena grows in steps with the batch size; a GPU provider builds
    /// its kernels) before the first real batch: memory is flat from then on, and the first alert is not
    /// late. Returns how long it took.
    pub fn warm_up(&mut self) -> Result<std::time::Duration, InferError> {
        let t0 = Instant::now();
        let spec = &self.manifest.input;
        let n = self.manifest.max_batch.max(1);
        let zeros = vec![0f32; n * 3 * spec.width as usize * spec.height as usize];
        self.session.run(&zeros, n)?;
        Ok(t0.elapsed())
    }

    /// Runs `frames` (checked with [`super::check_frame`] beforehand) in batches of at most `max_batch`;
    /// one [`Detections`] per frame, in order.
    pub fn run(&mut self, frames: &[Arc<DecodedFrame>]) -> Result<Vec<Detections>, InferError> {
        self.timing = StageTiming::default();
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(self.manifest.max_batch.max(1)) {
            self.run_chunk(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn run_chunk(
        &mut self,
        frames: &[Arc<DecodedFrame>],
        out: &mut Vec<Detections>,
    ) -> Result<(), InferError> {
        let n = frames.len();
        let t0 = Instant::now();
        self.pre.clear();
        for f in frames {
            self.pre.push(f)?;
        }
        let t1 = Instant::now();
        let manifest = &self.manifest;
        let model = manifest.name.clone();
        let outputs = self.session.run(self.pre.input(), n)?;
        let t2 = Instant::now();
        let infer_ms = ms(t2 - t1);
        let output_err = |tensor: &str, problem: String| InferError::Shape {
            model: model.to_string(),
            tensor: tensor.to_owned(),
            problem,
        };
        let geometries = self.pre.geometries();
        match &manifest.kind {
            ModelKind::Detector(spec) => {
                let value = outputs.get(&spec.output).ok_or_else(|| {
                    output_err(&spec.output, "missing from the run's outputs".into())
                })?;
                let (shape, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| output_err(&spec.output, e.to_string()))?;
                let dims: &[i64] = shape;
                let (rows, anchors) = match dims {
                    [b, r, a] if *b as usize == n && *r >= 5 && *a >= 0 => {
                        (*r as usize, *a as usize)
                    }
                    _ => {
                        return Err(output_err(
                            &spec.output,
                            format!(
                                "run gave shape {shape} for a batch of {n}, expected [{n}, 4 + classes, anchors]"
                            ),
                        ));
                    }
                };
                for (i, (frame, geometry)) in frames.iter().zip(geometries).enumerate() {
                    let _span =
                        tracing::trace_span!("postprocess", camera_id = %frame.camera).entered();
                    let objects = postprocess::decode_yolov8(
                        data,
                        rows,
                        anchors,
                        i,
                        spec,
                        geometry,
                        &mut self.scratch,
                    );
                    out.push(detections(frame, &model, objects, None, n, infer_ms));
                }
            }
            ModelKind::Anomaly(spec) => {
                let value = outputs.get(&spec.score_output).ok_or_else(|| {
                    output_err(&spec.score_output, "missing from the run's outputs".into())
                })?;
                let (shape, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| output_err(&spec.score_output, e.to_string()))?;
                if data.len() != n {
                    return Err(output_err(
                        &spec.score_output,
                        format!(
                            "run gave shape {shape} for a batch of {n}, expected [{n}] or [{n}, 1]"
                        ),
                    ));
                }
                for (i, frame) in frames.iter().enumerate() {
                    let score = postprocess::anomaly_score(data, i);
                    out.push(detections(frame, &model, Vec::new(), score, n, infer_ms));
                }
            }
        }
        let t3 = Instant::now();
        self.timing.frames += n;
        self.timing.preprocess_ms += ms(t1 - t0);
        self.timing.infer_ms += infer_ms;
        self.timing.postprocess_ms += ms(t3 - t2);
        Ok(())
    }
}

fn detections(
    frame: &DecodedFrame,
    model: &Arc<str>,
    objects: Vec<postprocess::Detection>,
    anomaly: Option<f32>,
    batch_size: usize,
    infer_ms: f64,
) -> Detections {
    Detections {
        camera: frame.camera.clone(),
        pts_90k: frame.pts_90k,
        arrival: frame.arrival,
        frame_size: (frame.width, frame.height),
        model: model.clone(),
        objects,
        anomaly,
        batch_size,
        infer_ms: infer_ms as f32,
    }
}
