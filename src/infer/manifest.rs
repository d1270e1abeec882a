//! Model manifests (`models/<name>.toml`): what a model expects and what its outputs mean.
//!
//! Raw serde structs (`deny_unknown_fields`) are turned by [`RawManifest::validate`] into a typed
//! [`ModelManifest`], reporting every problem at once with its field path. The manifest is checked against
//! the real model when a session loads it ([`super::session`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{InferError, Issue, ManifestError};

/// What a detected object is, in the vocabulary of rules and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A person on their feet (standing, walking, running, sitting).
    Person,
    /// A person lying on the ground.
    FallenPerson,
    /// Car, bus, truck (机动车).
    Vehicle,
    /// Bicycle, e-bike, tricycle (非机动车).
    NonMotorVehicle,
    /// An animal.
    Animal,
    /// Open fire.
    Fire,
    /// Smoke.
    Smoke,
    /// Anything else a model labels.
    Other,
}

impl ObjectKind {
    /// Every kind, in declaration order.
    pub const ALL: [ObjectKind; 8] = [
        Self::Person,
        Self::FallenPerson,
        Self::Vehicle,
        Self::NonMotorVehicle,
        Self::Animal,
        Self::Fire,
        Self::Smoke,
        Self::Other,
    ];

    /// The manifest/config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::FallenPerson => "fallen_person",
            Self::Vehicle => "vehicle",
            Self::NonMotorVehicle => "non_motor_vehicle",
            Self::Animal => "animal",
            Self::Fire => "fire",
            Self::Smoke => "smoke",
            Self::Other => "other",
        }
    }

    /// Chinese label for alert text, snapshots and the command-hall UI.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Person => "人员",
            Self::FallenPerson => "倒地人员",
            Self::Vehicle => "机动车",
            Self::NonMotorVehicle => "非机动车",
            Self::Animal => "动物",
            Self::Fire => "明火",
            Self::Smoke => "烟雾",
            Self::Other => "目标",
        }
    }

    /// English label for alert text and snapshots.
    pub fn en(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::FallenPerson => "fallen person",
            Self::Vehicle => "vehicle",
            Self::NonMotorVehicle => "non-motor vehicle",
            Self::Animal => "animal",
            Self::Fire => "fire",
            Self::Smoke => "smoke",
            Self::Other => "object",
        }
    }

    /// True for a person in any posture.
    pub fn is_person(self) -> bool {
        matches!(self, Self::Person | Self::FallenPerson)
    }

    /// Parses the manifest/config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Raw (as written)
// ---------------------------------------------------------------------------------------------------------

/// A manifest as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// Model name used in logs, metrics and alerts; defaults to the manifest's file stem.
    pub name: Option<String>,
    /// ONNX file, relative to the assets directory (`assets/`).
    pub file: String,
    /// Expected SHA-256 of the file (64 hex digits); checked before loading when present.
    pub sha256: Option<String>,
    /// `detector` (YOLOv8-style `[B, 4+C, N]` output) or `anomaly` (per-frame score, optional map).
    pub kind: String,
    /// Largest batch the model is run with (1..=64); the batcher never forms a larger one.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Where the file comes from (informational).
    pub source: Option<String>,
    /// The model's licence (informational; shown by `check-config`).
    pub license: Option<String>,
    /// The input tensor.
    pub input: RawInput,
    /// Required when `kind = "detector"`.
    pub detector: Option<RawDetector>,
    /// Required when `kind = "anomaly"`.
    pub anomaly: Option<RawAnomaly>,
}

/// `[input]`: the image tensor and how a frame becomes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// Input tensor name in the ONNX graph.
    pub name: String,
    /// Model input `[width, height]` in pixels, or `"native"`: each frame at its own size rounded up
    /// to a multiple of 32, never upscaled, the long side capped at `max_side` (the model needs symbolic
    /// height and width).
    pub size: RawSize,
    /// With `size = "native"`: the longest side analysed (default 640; a larger frame is shrunk).
    pub max_side: Option<u32>,
    /// Where a letterboxed picture sits: `centre` (default) or `top-left` (YOLOX trains so).
    #[serde(default = "default_anchor")]
    pub anchor: String,
    /// `nchw` (default) or `nhwc`.
    #[serde(default = "default_layout")]
    pub layout: String,
    /// Channel order the model expects: `rgb` (default) or `bgr`.
    #[serde(default = "default_colour")]
    pub colour: String,
    /// `stretch` (default; plain resize, aspect ratio not kept) or `letterbox` (scale to fit, pad).
    #[serde(default = "default_resize")]
    pub resize: String,
    /// Multiplier applied to 0..255 pixel values before mean/std (default 1/255).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Per-channel mean subtracted after scaling, in the model's channel order (default `[0, 0, 0]`).
    #[serde(default = "default_mean")]
    pub mean: Vec<f32>,
    /// Per-channel divisor applied after the mean, in the model's channel order (default `[1, 1, 1]`).
    #[serde(default = "default_std")]
    pub std: Vec<f32>,
    /// Grey level of letterbox padding, 0..255 (default 114, as Ultralytics trains with).
    #[serde(default = "default_pad_value")]
    pub pad_value: u8,
}

/// `[input] size`: `[width, height]` or `"native"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    /// `[width, height]`.
    Fixed(Vec<u32>),
    /// `"native"`.
    Word(String),
}

/// `[detector]`: the output tensor, its layout and the thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetector {
    /// `ultralytics` (default; YOLOv8 `[B, 4 + C, N]`: cx, cy, w, h in input pixels, then C class
    /// scores) or `yolox` (`[B, N, 5 + C]` on a grid of `strides` from the run's height and width: grid
    /// offsets, log sizes, objectness, C class scores; score = objectness × class).
    #[serde(default = "default_format")]
    pub format: String,
    /// With `format = "yolox"`: the head's strides, finest first (default `[8, 16, 32]`).
    pub strides: Option<Vec<u32>>,
    /// Object kinds passed on to tracking and rules (default: every kind the labels name); boxes of
    /// other kinds are dropped after NMS.
    pub keep: Option<Vec<String>>,
    /// The tracker's "high" score for this model's boxes (default: the tracker's own, 0.5): scores
    /// differ between models, so each states where its confident boxes start.
    pub track_high_score: Option<f32>,
    /// The score an unmatched box needs to start a track (default: the tracker's own, 0.6).
    pub track_start_score: Option<f32>,
    /// Output tensor name (default `output0`).
    #[serde(default = "default_detector_output")]
    pub output: String,
    /// Boxes whose best class score is below this are dropped (default 0.35).
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// Class-aware NMS: a box overlapping a higher-scored box of the same class by more than this IoU is
    /// dropped (default 0.45).
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// At most this many boxes per frame after NMS (default 300).
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// One entry per class, ids 0..C without gaps.
    pub labels: Vec<RawLabel>,
}

/// `[[detector.labels]]`: one class of the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabel {
    /// Class index in the model's output.
    pub id: usize,
    /// The model's own name for the class.
    pub name: String,
    /// Object kind it maps to (`person`, `fallen_person`, `vehicle`, `non_motor_vehicle`, `animal`,
    /// `fire`, `smoke`, `other`).
    pub kind: String,
}

/// `[anomaly]`: a per-frame anomaly score (anomalib-style names by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnomaly {
    /// Score output, shape `[B]` or `[B, 1]` (default `pred_score`).
    #[serde(default = "default_score_output")]
    pub score_output: String,
    /// Optional anomaly map output, `[B, 1, H, W]` or `[B, H, W]` (anomalib: `anomaly_map`).
    pub map_output: Option<String>,
    /// Score at or above which a frame counts as anomalous (default 0.5).
    #[serde(default = "default_anomaly_threshold")]
    pub threshold: f32,
}

fn default_max_batch() -> usize {
    8
}
fn default_layout() -> String {
    "nchw".into()
}
fn default_colour() -> String {
    "rgb".into()
}
fn default_resize() -> String {
    "stretch".into()
}
fn default_anchor() -> String {
    "centre".into()
}
fn default_format() -> String {
    "ultralytics".into()
}
fn default_scale() -> f32 {
    1.0 / 255.0
}
fn default_mean() -> Vec<f32> {
    vec![0.0; 3]
}
fn default_std() -> Vec<f32> {
    vec![1.0; 3]
}
fn default_pad_value() -> u8 {
    114
}
fn default_detector_output() -> String {
    "output0".into()
}
fn default_score_threshold() -> f32 {
    0.35
}
fn default_nms_iou() -> f32 {
    0.45
}
fn default_max_detections() -> usize {
    300
}
fn default_score_output() -> String {
    "pred_score".into()
}
fn default_anomaly_threshold() -> f32 {
    0.5
}

// ---------------------------------------------------------------------------------------------------------
// Typed (validated)
// ---------------------------------------------------------------------------------------------------------

/// Tensor memory layout of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[B, C, H, W]`.
    Nchw,
    /// `[B, H, W, C]`.
    Nhwc,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV's order; no swap).
    Bgr,
}

/// How a frame is fitted to the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Plain resize to the input size; the aspect ratio is not kept.
    Stretch,
    /// Scale to fit keeping the aspect ratio, centre, pad the rest.
    Letterbox,
}

/// Where a letterboxed picture sits in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Centred, padding split on both sides.
    Centre,
    /// At the top-left corner, padding right and below.
    TopLeft,
}

/// Multiple that a native input size is rounded up to (the detectors' largest stride).
pub const NATIVE_MULTIPLE: u32 = 32;

/// The image input of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Tensor name.
    pub name: String,
    /// Width in pixels (with `native`: the cap, `max_side`).
    pub width: u32,
    /// Height in pixels (with `native`: the cap, `max_side`).
    pub height: u32,
    /// `Some(max_side)`: each frame analysed at its own size (see [`InputSpec::analysed_size`]).
    pub native: Option<u32>,
    /// Where a letterboxed picture sits.
    pub anchor: Anchor,
    /// Memory layout.
    pub layout: Layout,
    /// Channel order.
    pub colour: ColourOrder,
    /// Fit mode.
    pub resize: ResizeMode,
    /// `value = (pixel * scale - mean[c]) / std[c]`.
    pub scale: f32,
    /// Per-channel mean, model channel order.
    pub mean: [f32; 3],
    /// Per-channel std, model channel order.
    pub std: [f32; 3],
    /// Letterbox padding grey level.
    pub pad_value: u8,
}

impl InputSpec {
    /// The input size `(width, height)` a `frame_w × frame_h` frame is analysed at: the fixed size, or
    /// (native) the frame's own size, shrunk so its long side is at most `max_side`, rounded up to a
    /// multiple of 32. Frames of one camera fleet fall into few such sizes; the batcher batches each
    /// size apart.
    pub fn analysed_size(&self, frame_w: u32, frame_h: u32) -> (u32, u32) {
        let Some(max_side) = self.native else {
            return (self.width, self.height);
        };
        let (w, h) = (frame_w.max(1), frame_h.max(1));
        let scale = (f64::from(max_side) / f64::from(w.max(h))).min(1.0);
        let up = |v: u32| {
            let scaled = (f64::from(v) * scale).round().max(1.0) as u32;
            scaled.div_ceil(NATIVE_MULTIPLE) * NATIVE_MULTIPLE
        };
        (up(w), up(h))
    }
}

/// How a detector's output tensor is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// YOLOv8 (Ultralytics): `[B, 4 + C, N]`, boxes in input pixels.
    Ultralytics,
    /// YOLOX: `[B, N, 5 + C]` over the grids of these strides (finest first), decoded at run time.
    Yolox {
        /// The head's strides.
        strides: Vec<u32>,
    },
}

/// One class of a detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The model's name for it.
    pub name: String,
    /// What it means to rules.
    pub kind: ObjectKind,
}

/// A detector's output and thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSpec {
    /// Output tensor name.
    pub output: String,
    /// How the output is laid out.
    pub format: OutputFormat,
    /// Kinds passed on; `None` = all.
    pub keep: Option<Vec<ObjectKind>>,
    /// The tracker's "high" score for this model's boxes (first association stage).
    pub track_high_score: Option<f32>,
    /// The score an unmatched box needs to start a track.
    pub track_start_score: Option<f32>,
    /// Minimum best-class score.
    pub score_threshold: f32,
    /// Class-aware NMS IoU.
    pub nms_iou: f32,
    /// Cap on boxes per frame.
    pub max_detections: usize,
    /// Index = class id.
    pub labels: Vec<Label>,
}

/// A frame-level anomaly model's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySpec {
    /// Score output name.
    pub score_output: String,
    /// Optional map output name (checked at load; not read per frame yet).
    pub map_output: Option<String>,
    /// Anomalous at or above this score.
    pub threshold: f32,
}

/// What a model produces; decides the postprocess.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelKind {
    /// Boxes with classes.
    Detector(DetectorSpec),
    /// One score per frame.
    Anomaly(AnomalySpec),
}

impl ModelKind {
    /// `detector` or `anomaly`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Detector(_) => "detector",
            Self::Anomaly(_) => "anomaly",
        }
    }
}

/// A validated model manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelManifest {
    /// Model name (logs, metrics, [`super::Detections::model`]).
    pub name: Arc<str>,
    /// Where the manifest was read from (or a label for in-memory text).
    pub origin: PathBuf,
    /// Resolved ONNX file path.
    pub file: PathBuf,
    /// Expected SHA-256, lower-case hex.
    pub sha256: Option<String>,
    /// Largest batch.
    pub max_batch: usize,
    /// Image input.
    pub input: InputSpec,
    /// Output interpretation.
    pub kind: ModelKind,
    /// Informational.
    pub source: Option<String>,
    /// Informational.
    pub license: Option<String>,
}

impl ModelManifest {
    /// Reads and validates a manifest file; `file` in it resolves against `assets_dir`.
    pub fn load(path: &Path, assets_dir: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path, assets_dir)
    }

    /// Parses and validates manifest text; `origin` names it in errors and gives the default name.
    pub fn from_toml(text: &str, origin: &Path, assets_dir: &Path) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        raw.validate(origin, assets_dir)
            .map_err(|issues| ManifestError::Invalid {
                path: origin.to_owned(),
                issues,
            })
    }

    /// The detector part, if this is a detector.
    pub fn detector(&self) -> Option<&DetectorSpec> {
        match &self.kind {
            ModelKind::Detector(d) => Some(d),
            ModelKind::Anomaly(_) => None,
        }
    }

    /// Checks that the model file exists and, when the manifest gives one, that its SHA-256 matches.
    /// Reads the whole file; call it once at start-up, not per session.
    pub fn verify_file(&self) -> Result<(), InferError> {
        let file = std::fs::File::open(&self.file).map_err(|_| InferError::ModelFileMissing {
            model: self.name.to_string(),
            path: self.file.clone(),
        })?;
        let Some(expected) = &self.sha256 else {
            return Ok(());
        };
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let read = std::io::copy(&mut std::io::BufReader::new(file), &mut hasher);
        let actual = read
            .map(|_| hex::encode(sha2::Digest::finalize(hasher)))
            .map_err(|e| InferError::Load {
                model: self.name.to_string(),
                path: self.file.clone(),
                message: format!("reading it for the checksum: {e}"),
            })?;
        if &actual != expected {
            return Err(InferError::Checksum {
                model: self.name.to_string(),
                path: self.file.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl RawManifest {
    /// Checks every field; all problems are returned at once with their field paths.
    pub fn validate(&self, origin: &Path, assets_dir: &Path) -> Result<ModelManifest, Vec<Issue>> {
        let mut issues = Vec::new();

        let name = match &self.name {
            Some(n) => n.clone(),
            None => origin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            issues.push(Issue::new(
                "name",
                format!("{name:?} must be 1..=64 characters of [A-Za-z0-9_.-]"),
            ));
        }

        if self.file.trim().is_empty() {
            issues.push(Issue::new(
                "file",
                "must name the ONNX file (relative to assets/)",
            ));
        }
        let file = assets_dir.join(&self.file);

        let sha256 = match &self.sha256 {
            None => None,
            Some(s) => {
                let lower = s.trim().to_ascii_lowercase();
                if lower.len() != 64 || !lower.chars().all(|c| c.is_ascii_hexdigit()) {
                    issues.push(Issue::new("sha256", "must be 64 hexadecimal digits"));
                }
                Some(lower)
            }
        };

        if !(1..=64).contains(&self.max_batch) {
            issues.push(Issue::new(
                "max_batch",
                format!("{} is out of range 1..=64", self.max_batch),
            ));
        }

        let input = self.input.validate(&mut issues);

        let kind = match self.kind.as_str() {
            "detector" => {
                if self.anomaly.is_some() {
                    issues.push(Issue::new(
                        "anomaly",
                        "only allowed with kind = \"anomaly\"",
                    ));
                }
                match &self.detector {
                    Some(d) => d.validate(&mut issues).map(ModelKind::Detector),
                    None => {
                        issues.push(Issue::new(
                            "detector",
                            "a [detector] table is required with kind = \"detector\"",
                        ));
                        None
                    }
                }
            }
            "anomaly" => {
                if self.detector.is_some() {
                    issues.push(Issue::new(
                        "detector",
                        "only allowed with kind = \"detector\"",
                    ));
                }
                match &self.anomaly {
                    Some(a) => a.validate(&mut issues).map(ModelKind::Anomaly),
                    None => {
                        issues.push(Issue::new(
                            "anomaly",
                            "an [anomaly] table is required with kind = \"anomaly\"",
                        ));
                        None
                    }
                }
            }
            other => {
                issues.push(Issue::new(
                    "kind",
                    format!("{other:?} is not one of \"detector\", \"anomaly\""),
                ));
                None
            }
        };

        match (input, kind) {
            (Some(input), Some(kind)) if issues.is_empty() => Ok(ModelManifest {
                name: name.into(),
                origin: origin.to_owned(),
                file,
                sha256,
                max_batch: self.max_batch,
                input,
                kind,
                source: self.source.clone(),
                license: self.license.clone(),
            }),
            _ => Err(issues),
        }
    }
}

impl RawInput {
    fn validate(&self, issues: &mut Vec<Issue>) -> Option<InputSpec> {
        let before = issues.len();
        if self.name.is_empty() {
            issues.push(Issue::new("input.name", "must name the input tensor"));
        }
        let (width, height, native) = match &self.size {
            RawSize::Fixed(v) => match v.as_slice() {
                [w, h] if (16..=4096).contains(w) && (16..=4096).contains(h) => (*w, *h, None),
                _ => {
                    issues.push(Issue::new(
                        "input.size",
                        format!("{v:?} must be [width, height], each 16..=4096, or \"native\""),
                    ));
                    (0, 0, None)
                }
            },
            RawSize::Word(w) if w == "native" => {
                let max_side = self.max_side.unwrap_or(640);
                if !(NATIVE_MULTIPLE..=4096).contains(&max_side)
                    || !max_side.is_multiple_of(NATIVE_MULTIPLE)
                {
                    issues.push(Issue::new(
                        "input.max_side",
                        format!("{max_side} must be a multiple of 32 in 32..=4096"),
                    ));
                }
                (max_side, max_side, Some(max_side))
            }
            RawSize::Word(w) => {
                issues.push(Issue::new(
                    "input.size",
                    format!("{w:?} must be [width, height] or \"native\""),
                ));
                (0, 0, None)
            }
        };
        if native.is_none() && self.max_side.is_some() {
            issues.push(Issue::new(
                "input.max_side",
                "only allowed with size = \"native\"",
            ));
        }
        let anchor = match self.anchor.as_str() {
            "centre" | "center" => Some(Anchor::Centre),
            "top-left" => Some(Anchor::TopLeft),
            other => {
                issues.push(Issue::new(
                    "input.anchor",
                    format!("{other:?} is not one of \"centre\", \"top-left\""),
                ));
                None
            }
        };
        let layout = match self.layout.as_str() {
            "nchw" | "NCHW" => Some(Layout::Nchw),
            "nhwc" | "NHWC" => Some(Layout::Nhwc),
            other => {
                issues.push(Issue::new(
                    "input.layout",
                    format!("{other:?} is not one of \"nchw\", \"nhwc\""),
                ));
                None
            }
        };
        let colour = match self.colour.as_str() {
            "rgb" | "RGB" => Some(ColourOrder::Rgb),
            "bgr" | "BGR" => Some(ColourOrder::Bgr),
            other => {
                issues.push(Issue::new(
                    "input.colour",
                    format!("{other:?} is not one of \"rgb\", \"bgr\""),
                ));
                None
            }
        };
        let resize = match self.resize.as_str() {
            "stretch" => Some(ResizeMode::Stretch),
            "letterbox" => Some(ResizeMode::Letterbox),
            other => {
                issues.push(Issue::new(
                    "input.resize",
                    format!("{other:?} is not one of \"stretch\", \"letterbox\""),
                ));
                None
            }
        };
        if native.is_some() && resize == Some(ResizeMode::Stretch) {
            issues.push(Issue::new(
                "input.resize",
                "size = \"native\" keeps the frame's proportions: use resize = \"letterbox\"",
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            issues.push(Issue::new("input.scale", "must be a positive number"));
        }
        let mean = three(&self.mean, "input.mean", issues, |v| v.is_finite());
        let std = three(&self.std, "input.std", issues, |v| v.is_finite() && v > 0.0);
        if issues.len() != before {
            return None;
        }
        Some(InputSpec {
            name: self.name.clone(),
            width,
            height,
            native,
            anchor: anchor?,
            layout: layout?,
            colour: colour?,
            resize: resize?,
            scale: self.scale,
            mean: mean?,
            std: std?,
            pad_value: self.pad_value,
        })
    }
}

fn three(
    v: &[f32],
    field: &str,
    issues: &mut Vec<Issue>,
    ok: impl Fn(f32) -> bool,
) -> Option<[f32; 3]> {
    match v {
        [a, b, c] if ok(*a) && ok(*b) && ok(*c) => Some([*a, *b, *c]),
        _ => {
            issues.push(Issue::new(
                field,
                format!("{v:?} must be three finite numbers (std: positive), model channel order"),
            ));
            None
        }
    }
}

fn unit_interval(v: f32, field: &str, issues: &mut Vec<Issue>) {
    if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
        issues.push(Issue::new(field, format!("{v} is out of range 0..=1")));
    }
}

impl RawDetector {
    fn validate(&self, issues: &mut Vec<Issue>) -> Option<DetectorSpec> {
        let before = issues.len();
        if self.output.is_empty() {
            issues.push(Issue::new("detector.output", "must name the output tensor"));
        }
        unit_interval(self.score_threshold, "detector.score_threshold", issues);
        unit_interval(self.nms_iou, "detector.nms_iou", issues);
        if self.max_detections == 0 {
            issues.push(Issue::new("detector.max_detections", "must be at least 1"));
        }
        let format = match self.format.as_str() {
            "ultralytics" => {
                if self.strides.is_some() {
                    issues.push(Issue::new(
                        "detector.strides",
                        "only allowed with format = \"yolox\"",
                    ));
                }
                Some(OutputFormat::Ultralytics)
            }
            "yolox" => {
                let strides = self.strides.clone().unwrap_or_else(|| vec![8, 16, 32]);
                if strides.is_empty()
                    || strides
                        .iter()
                        .any(|s| !s.is_power_of_two() || *s > NATIVE_MULTIPLE)
                {
                    issues.push(Issue::new(
                        "detector.strides",
                        format!("{strides:?} must be powers of two up to 32, finest first"),
                    ));
                }
                Some(OutputFormat::Yolox { strides })
            }
            other => {
                issues.push(Issue::new(
                    "detector.format",
                    format!("{other:?} is not one of \"ultralytics\", \"yolox\""),
                ));
                None
            }
        };
        for (name, v) in [
            ("detector.track_high_score", self.track_high_score),
            ("detector.track_start_score", self.track_start_score),
        ] {
            if let Some(v) = v {
                unit_interval(v, name, issues);
            }
        }
        let keep = self.keep.as_ref().map(|kinds| {
            kinds
                .iter()
                .enumerate()
                .filter_map(|(i, k)| {
                    let kind = ObjectKind::parse(k);
                    if kind.is_none() {
                        let names: Vec<_> = ObjectKind::ALL.iter().map(|k| k.as_str()).collect();
                        issues.push(Issue::new(
                            format!("detector.keep[{i}]"),
                            format!("{k:?} is not one of {}", names.join(", ")),
                        ));
                    }
                    kind
                })
                .collect::<Vec<_>>()
        });
        if self.labels.is_empty() {
            issues.push(Issue::new(
                "detector.labels",
                "must list the model's classes, ids 0..C",
            ));
        }
        let mut labels: Vec<Option<Label>> = vec![None; self.labels.len()];
        let mut seen = vec![false; self.labels.len()];
        for (i, l) in self.labels.iter().enumerate() {
            let path = format!("detector.labels[{i}]");
            let kind = ObjectKind::parse(&l.kind);
            if kind.is_none() {
                let names: Vec<_> = ObjectKind::ALL.iter().map(|k| k.as_str()).collect();
                issues.push(Issue::new(
                    format!("{path}.kind"),
                    format!("{:?} is not one of {}", l.kind, names.join(", ")),
                ));
            }
            if l.name.is_empty() {
                issues.push(Issue::new(format!("{path}.name"), "must not be empty"));
            }
            match (labels.get_mut(l.id), seen.get_mut(l.id)) {
                (Some(_), Some(true)) => issues.push(Issue::new(
                    format!("{path}.id"),
                    format!("{} is listed twice", l.id),
                )),
                (Some(slot), Some(seen)) => {
                    *seen = true;
                    if let Some(kind) = kind {
                        *slot = Some(Label {
                            name: l.name.clone(),
                            kind,
                        });
                    }
                }
                _ => issues.push(Issue::new(
                    format!("{path}.id"),
                    format!(
                        "{} is out of range: with {} labels, ids must be 0..{}",
                        l.id,
                        self.labels.len(),
                        self.labels.len()
                    ),
                )),
            }
        }
        if issues.len() != before {
            return None;
        }
        Some(DetectorSpec {
            output: self.output.clone(),
            format: format?,
            keep,
            track_high_score: self.track_high_score,
            track_start_score: self.track_start_score,
            score_threshold: self.score_threshold,
            nms_iou: self.nms_iou,
            max_detections: self.max_detections,
            labels: labels.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }
}

impl RawAnomaly {
    fn validate(&self, issues: &mut Vec<Issue>) -> Option<AnomalySpec> {
        let before = issues.len();
        if self.score_output.is_empty() {
            issues.push(Issue::new(
                "anomaly.score_output",
                "must name the score output",
            ));
        }
        if self.map_output.as_deref() == Some("") {
            issues.push(Issue::new(
                "anomaly.map_output",
                "must name the map output, or be left out",
            ));
        }
        if !self.threshold.is_finite() {
            issues.push(Issue::new("anomaly.threshold", "must be a finite number"));
        }
        if issues.len() != before {
            return None;
        }
        Some(AnomalySpec {
            score_output: self.score_output.clone(),
            map_output: self.map_output.clone(),
            threshold: self.threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSON_FALL: &str = include_str!("../../models/person_fall.toml");

    fn parse(text: &str) -> Result<ModelManifest, ManifestError> {
        ModelManifest::from_toml(text, Path::new("models/test.toml"), Path::new("/assets"))
    }

    #[test]
    fn shipped_manifest_parses() {
        let m = parse(PERSON_FALL).unwrap();
        assert_eq!(&*m.name, "person_fall");
        assert_eq!(m.file, Path::new("/assets/models/person_fall.onnx"));
        assert_eq!(m.max_batch, 8);
        assert_eq!(m.input.name, "images");
        assert_eq!((m.input.width, m.input.height), (640, 640));
        assert_eq!(m.input.layout, Layout::Nchw);
        assert_eq!(m.input.colour, ColourOrder::Rgb);
        assert_eq!(m.input.resize, ResizeMode::Stretch);
        assert!((m.input.scale - 1.0 / 255.0).abs() < 1e-9);
        let d = m.detector().unwrap();
        assert_eq!(d.output, "output0");
        assert_eq!(d.score_threshold, 0.35);
        assert_eq!(d.nms_iou, 0.45);
        assert_eq!(d.labels.len(), 2);
        assert_eq!(d.labels[0].kind, ObjectKind::Person);
        assert_eq!(d.labels[1].kind, ObjectKind::FallenPerson);
        assert_eq!(m.sha256.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn yolox_manifest_parses_and_native_sizes_round_up() {
        let m = parse(include_str!("../../models/yolox_nano.toml")).unwrap();
        assert_eq!(m.input.native, Some(640));
        assert_eq!(m.input.anchor, Anchor::TopLeft);
        assert_eq!(m.input.colour, ColourOrder::Bgr);
        let d = m.detector().unwrap();
        assert_eq!(
            d.format,
            OutputFormat::Yolox {
                strides: vec![8, 16, 32]
            }
        );
        assert_eq!(d.labels.len(), 80);
        assert_eq!(d.keep, Some(vec![ObjectKind::Person]));
        assert_eq!(d.labels[2].kind, ObjectKind::Vehicle);
        assert_eq!(
            m.input.analysed_size(704, 576),
            (640, 544),
            "D1: shrunk to 640 × 524"
        );
        assert_eq!(m.input.analysed_size(352, 240), (352, 256));
        assert_eq!(m.input.analysed_size(2560, 1440), (640, 384));
        assert_eq!(m.input.analysed_size(200, 1000), (128, 640));
        let bad = include_str!("../../models/yolox_nano.toml")
            .replace("max_side = 640", "max_side = 650")
            .replace("resize = \"letterbox\"", "resize = \"stretch\"")
            .replace("format = \"yolox\"", "format = \"yolo\"")
            .replace("keep = [\"person\"]", "keep = [\"people\"]");
        let Err(ManifestError::Invalid { issues, .. }) = parse(&bad) else {
            panic!("expected Invalid");
        };
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "input.max_side",
                "input.resize",
                "detector.format",
                "detector.keep[0]"
            ]
        );
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text = PERSON_FALL.replace("max_batch = 8", "max_batch = 8\nbatch = 4");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `batch`"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            file = "m.onnx"
            kind = "detector"
            max_batch = 0
            sha256 = "xyz"
            [input]
            name = "images"
            size = [640]
            layout = "chw"
            colour = "rgba"
            resize = "crop"
            std = [1.0, 0.0, 1.0]
            [detector]
            score_threshold = 1.5
            labels = [
                { id = 0, name = "Normal", kind = "human" },
                { id = 0, name = "Fall", kind = "fallen_person" },
                { id = 5, name = "Car", kind = "vehicle" },
            ]
        "#;
        let Err(ManifestError::Invalid { issues, .. }) = parse(text) else {
            panic!("expected Invalid");
        };
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        for want in [
            "sha256",
            "max_batch",
            "input.size",
            "input.layout",
            "input.colour",
            "input.resize",
            "input.std",
            "detector.score_threshold",
            "detector.labels[0].kind",
            "detector.labels[1].id",
            "detector.labels[2].id",
        ] {
            assert!(fields.contains(&want), "missing {want} in {fields:?}");
        }
    }

    #[test]
    fn kind_needs_its_table() {
        let text = r#"
            file = "a.onnx"
            kind = "anomaly"
            [input]
            name = "input"
            size = [256, 256]
        "#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("anomaly: an [anomaly] table is required"), "{e}");

        let ok = format!("{text}\n[anomaly]\nmap_output = \"anomaly_map\"\n");
        let m = parse(&ok).unwrap();
        let ModelKind::Anomaly(a) = &m.kind else {
            panic!("anomaly expected")
        };
        assert_eq!(a.score_output, "pred_score");
        assert_eq!(a.map_output.as_deref(), Some("anomaly_map"));
        assert_eq!(&*m.name, "test");
    }

    #[test]
    fn object_kinds_round_trip() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::parse(k.as_str()), Some(k));
            assert!(!k.zh().is_empty() && !k.en().is_empty());
        }
        assert_eq!(ObjectKind::parse("car"), None);
    }
}
