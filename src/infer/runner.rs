//! One model, one session, one set of buffers: frames in, [`Detections`] out. Used by each inference
//! thread, and directly by tests and the bench.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::Detections;
use super::error::InferError;
use super::manifest::{ModelKind, ModelManifest, OutputFormat};
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
    /// Input sizes already run at `max_batch` (a native-size model warms each size it meets once).
    warmed: Vec<(u32, u32)>,
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
            warmed: Vec::new(),
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
    ///
    /// A native-size model has no size until frames come: each size is warmed when first met (see
    /// [`warm_size`](Self::warm_size)); this warms none and returns zero.
    pub fn warm_up(&mut self) -> Result<std::time::Duration, InferError> {
        if self.manifest.input.native.is_some() {
            return Ok(std::time::Duration::ZERO);
        }
        let spec = &self.manifest.input;
        self.warm_size((spec.width, spec.height))
    }

    /// Runs one blank batch of `max_batch` images at input `size`, once per size; returns how long it
    /// took (zero when that size was warm already).
    pub fn warm_size(&mut self, size: (u32, u32)) -> Result<std::time::Duration, InferError> {
        if self.warmed.contains(&size) {
            return Ok(std::time::Duration::ZERO);
        }
        let t0 = Instant::now();
        let n = self.manifest.max_batch.max(1);
        let zeros = vec![0f32; n * 3 * size.0 as usize * size.1 as usize];
        self.session.run(&zeros, n, size)?;
        self.warmed.push(size);
        let took = t0.elapsed();
        if self.manifest.input.native.is_some() {
            tracing::info!(
                model = %self.manifest.name,
                width = size.0,
                height = size.1,
                batch = n,
                ms = took.as_millis() as u64,
                "inference warmed up for a new input size"
            );
        }
        Ok(took)
    }

    /// Runs `frames` (checked with [`super::check_frame`] beforehand) in batches of at most `max_batch`
    /// of one input size (the batcher sends one size; other callers may mix them); one [`Detections`]
    /// per frame, in order.
    pub fn run(&mut self, frames: &[Arc<DecodedFrame>]) -> Result<Vec<Detections>, InferError> {
        self.timing = StageTiming::default();
        let mut out = Vec::with_capacity(frames.len());
        let max = self.manifest.max_batch.max(1);
        let manifest = self.manifest.clone();
        let spec = &manifest.input;
        let mut start = 0;
        while start < frames.len() {
            let size = spec.analysed_size(frames[start].width, frames[start].height);
            let mut end = start + 1;
            while end < frames.len()
                && end - start < max
                && spec.analysed_size(frames[end].width, frames[end].height) == size
            {
                end += 1;
            }
            if spec.native.is_some() {
                self.warm_size(size)?;
            }
            self.run_chunk(&frames[start..end], &mut out)?;
            start = end;
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
        let size = self.pre.input_size();
        let outputs = self.session.run(self.pre.input(), n, size)?;
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
                if let OutputFormat::Yolox { strides } = &spec.format {
                    let (boxes, per_box) = match dims {
                        [b, r, c] if *b as usize == n && *r >= 0 && *c >= 6 => {
                            (*r as usize, *c as usize)
                        }
                        _ => {
                            return Err(output_err(
                                &spec.output,
                                format!(
                                    "run gave shape {shape} for a batch of {n}, expected [{n}, boxes, 5 + classes]"
                                ),
                            ));
                        }
                    };
                    let grid = postprocess::YoloxGrid::new(size, strides);
                    if grid.boxes() != boxes {
                        return Err(output_err(
                            &spec.output,
                            format!(
                                "run gave {boxes} boxes at {}×{}, the strides {strides:?} make {}",
                                size.0,
                                size.1,
                                grid.boxes()
                            ),
                        ));
                    }
                    for (i, (frame, geometry)) in frames.iter().zip(geometries).enumerate() {
                        let _span = tracing::trace_span!("postprocess", camera_id = %frame.camera)
                            .entered();
                        let objects = postprocess::decode_yolox(
                            data,
                            &grid,
                            per_box,
                            i,
                            spec,
                            geometry,
                            &mut self.scratch,
                        );
                        out.push(detections(frame, &model, objects, None, n, infer_ms));
                    }
                } else {
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
                        let _span = tracing::trace_span!("postprocess", camera_id = %frame.camera)
                            .entered();
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
