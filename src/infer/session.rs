//! ONNX Runtime: the library (loaded once per process), execution providers, and sessions whose real
//! inputs and outputs are checked against their manifest when they load.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::session::{Session, SessionOutputs};
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::ep;
use super::error::InferError;
use super::manifest::{Layout, ModelKind, ModelManifest, OutputFormat};

/// Which ONNX Runtime execution provider runs the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ExecutionProvider {
    /// The CPU provider (always available).
    #[default]
    Cpu,
    /// NVIDIA CUDA (needs an `onnxruntime-gpu` library and CUDA/cuDNN).
    Cuda,
    /// NVIDIA TensorRT, with CUDA behind it for the nodes TensorRT does not take.
    TensorRt,
}

impl ExecutionProvider {
    /// Accepted config spellings.
    pub const NAMES: &'static [&'static str] = &["cpu", "cuda", "tensorrt"];

    /// Parses `cpu`, `cuda` or `tensorrt`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda),
            "tensorrt" => Some(Self::TensorRt),
            _ => None,
        }
    }

    /// The config spelling (what `provider_in_use()` reports).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::TensorRt => "tensorrt",
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sessions are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Requested provider.
    pub provider: ExecutionProvider,
    /// GPU index for `cuda`/`tensorrt`.
    pub device_id: i32,
    /// Run on the CPU (with a warning) when the requested provider cannot be registered, instead of
    /// failing at start-up.
    pub allow_cpu_fallback: bool,
    /// Threads ONNX Runtime uses inside one operator; 0 = its default (one per core).
    pub intra_threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            provider: ExecutionProvider::Cpu,
            device_id: 0,
            allow_cpu_fallback: false,
            intra_threads: 0,
        }
    }
}

/// The loaded ONNX Runtime library and its single environment.
///
/// `ort` allows one environment per process, ever; [`OrtRuntime::init`] creates it on first use and hands
/// the same one out afterwards.
pub struct OrtRuntime {
    env: ort::environment::Environment,
    library: PathBuf,
}

impl fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

impl OrtRuntime {
    /// Loads the ONNX Runtime shared library at `library` (once per process) and creates the environment.
    ///
    /// A later call with the same library returns the same runtime; one with a different library is an
    /// error, because a process cannot hold two.
    pub fn init(library: &Path) -> Result<&'static OrtRuntime, InferError> {
        let _guard = crate::sync::lock(&RUNTIME_INIT);
        let wanted = std::fs::canonicalize(library).map_err(|e| InferError::Runtime {
            path: library.to_owned(),
            message: format!("cannot open it: {e} (run scripts/setup, or fix `ort_library`)"),
        })?;
        if let Some(rt) = RUNTIME.get() {
            if rt.library == wanted {
                return Ok(rt);
            }
            return Err(InferError::Runtime {
                path: library.to_owned(),
                message: format!(
                    "this process already loaded ONNX Runtime from {}; only one library per process",
                    rt.library.display()
                ),
            });
        }
        let builder = ort::init_from(&wanted).map_err(|e| InferError::Runtime {
            path: library.to_owned(),
            message: e.to_string(),
        })?;
        let env = builder
            .with_name("qianliyan")
            .with_telemetry(false)
            .build()
            .map_err(|e| InferError::Runtime {
                path: library.to_owned(),
                message: e.to_string(),
            })?;
        tracing::info!(library = %wanted.display(), "ONNX Runtime loaded");
        let rt = RUNTIME.get_or_init(|| OrtRuntime {
            env,
            library: wanted,
        });
        Ok(rt)
    }

    /// The library this runtime was loaded from (symlinks resolved).
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether the loaded library was built with `provider` (it may still fail to register, e.g. without a
    /// GPU or CUDA libraries).
    pub fn has_provider(&self, provider: ExecutionProvider) -> bool {
        ep::compiled_in(provider).unwrap_or(false)
    }
}

/// Element counts of the outputs this stage reads, with their real shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputPlan {
    /// `[B, 4 + C, N]`.
    Detector,
    /// `[B]` or `[B, 1]`.
    Anomaly,
}

/// One model's ONNX Runtime session, checked against its manifest.
pub struct ModelSession {
    session: Session,
    manifest: Arc<ModelManifest>,
    provider: ExecutionProvider,
    plan: OutputPlan,
}

impl fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSession")
            .field("model", &self.manifest.name)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl ModelSession {
    /// Builds a session for `manifest` with the configured provider and checks the model's real input and
    /// output names and shapes against the manifest.
    pub fn load(
        rt: &OrtRuntime,
        manifest: Arc<ModelManifest>,
        cfg: &SessionConfig,
    ) -> Result<Self, InferError> {
        let model = manifest.name.to_string();
        if !manifest.file.is_file() {
            return Err(InferError::ModelFileMissing {
                model,
                path: manifest.file.clone(),
            });
        }
        let load_err = |message: String| InferError::Load {
            model: model.clone(),
            path: manifest.file.clone(),
            message,
        };
        // Memory patterns off: with them ONNX Runtime plans one block per input shape it meets, so
        // every new batch size grew the arena in a step (two steps of 44.6 MB in a 75 s soak after the
        // max-batch warm-up). Without them tensors come from the arena's free chunks, which the warm-up
        // at max_batch has already sized.
        let mut builder = Session::builder(&rt.env)
            .map_err(|e| load_err(e.to_string()))?
            .with_memory_pattern(false)
            .map_err(|e| load_err(e.to_string()))?;
        if cfg.intra_threads > 0 {
            builder = builder
                .with_intra_threads(cfg.intra_threads)
                .map_err(|e| load_err(e.to_string()))?;
        }

        let provider = match cfg.provider {
            ExecutionProvider::Cpu => ExecutionProvider::Cpu,
            wanted => {
                let registered = match ep::compiled_in(wanted) {
                    Ok(true) => ep::append(&mut builder, wanted, cfg.device_id),
                    Ok(false) => Err(format!(
                        "the ONNX Runtime library {} was built without it (a GPU build such as PyPI \
                         onnxruntime-gpu is needed)",
                        rt.library.display()
                    )),
                    Err(e) => Err(e),
                };
                match registered {
                    Ok(()) => wanted,
                    Err(reason) if cfg.allow_cpu_fallback => {
                        tracing::warn!(
                            model = %model,
                            requested = wanted.as_str(),
                            %reason,
                            "execution provider unavailable; running on the CPU (allow_cpu_fallback)"
                        );
                        ExecutionProvider::Cpu
                    }
                    Err(reason) => {
                        return Err(InferError::ProviderUnavailable {
                            model,
                            provider: wanted.as_str(),
                            reason,
                        });
                    }
                }
            }
        };

        let session = builder
            .commit_from_file(&manifest.file)
            .map_err(|e| load_err(e.to_string()))?;
        let plan = check_io(&session, &manifest)?;
        tracing::info!(
            model = %model,
            provider = provider.as_str(),
            requested = cfg.provider.as_str(),
            file = %manifest.file.display(),
            "model session ready"
        );
        Ok(Self {
            session,
            manifest,
            provider,
            plan,
        })
    }

    /// The provider actually running this session (`cpu`, `cuda`, `tensorrt`).
    pub fn provider_in_use(&self) -> &'static str {
        self.provider.as_str()
    }

    /// The provider actually running this session.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// The manifest this session was checked against.
    pub fn manifest(&self) -> &Arc<ModelManifest> {
        &self.manifest
    }

    /// Runs `batch` images of `size` (width, height) laid out as the manifest says (`input` holds
    /// exactly `batch` images). `size` is the manifest's fixed size, or a native-size model's
    /// [`super::manifest::InputSpec::analysed_size`].
    pub fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        size: (u32, u32),
    ) -> Result<SessionOutputs<'_>, InferError> {
        let spec = &self.manifest.input;
        let (w, h) = (size.0 as usize, size.1 as usize);
        let shape = match spec.layout {
            Layout::Nchw => [batch, 3, h, w],
            Layout::Nhwc => [batch, h, w, 3],
        };
        let run_err = |message: String| InferError::Run {
            model: self.manifest.name.to_string(),
            batch,
            message,
        };
        if input.len() != batch * 3 * h * w {
            return Err(run_err(format!(
                "input holds {} values, a batch of {batch} needs {}",
                input.len(),
                batch * 3 * h * w
            )));
        }
        let tensor =
            TensorRef::from_array_view((shape, input)).map_err(|e| run_err(e.to_string()))?;
        let name = spec.name.as_str();
        let model = self.manifest.name.to_string();
        self.session
            .run(ort::inputs![name => tensor])
            .map_err(|e| InferError::Run {
                model,
                batch,
                message: e.to_string(),
            })
    }

    /// `true` for detectors (boxes), `false` for anomaly models (scores).
    pub fn is_detector(&self) -> bool {
        self.plan == OutputPlan::Detector
    }
}

/// Formats dims with `?` for dynamic ones.
fn dims(shape: &[i64]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "?".to_owned()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn names(outlets: &[ort::value::Outlet]) -> String {
    let n: Vec<String> = outlets.iter().map(|o| format!("`{}`", o.name())).collect();
    n.join(", ")
}

/// The model's f32 tensor shape for `name`, or a [`InferError::Shape`] naming what is wrong.
fn tensor_shape(
    outlets: &[ort::value::Outlet],
    name: &str,
    what: &str,
    model: &str,
) -> Result<Vec<i64>, InferError> {
    let shape_err = |problem: String| InferError::Shape {
        model: model.to_owned(),
        tensor: name.to_owned(),
        problem,
    };
    let outlet = outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
        shape_err(format!(
            "the model has no {what} of that name; its {what}s are {}",
            names(outlets)
        ))
    })?;
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != TensorElementType::Float32 {
                return Err(shape_err(format!(
                    "element type is {ty}, the stage needs f32"
                )));
            }
            Ok(shape.iter().copied().collect())
        }
        other => Err(shape_err(format!("is not a tensor ({other:?})"))),
    }
}

/// Checks the batch dimension: dynamic, or fixed at 1 with `max_batch = 1`.
fn check_batch_dim(d: i64, max_batch: usize, shape: &[i64]) -> Result<(), String> {
    if d < 0 || (d == 1 && max_batch == 1) {
        return Ok(());
    }
    Err(format!(
        "batch dimension is fixed at {d} (shape {}), but the batcher sends 1..={max_batch} frames \
         (manifest max_batch = {max_batch}): export the model with a dynamic batch \
         (scripts/model_tools/make_batch_dynamic.py) or set max_batch = 1",
        dims(shape)
    ))
}

fn check_io(session: &Session, m: &ModelManifest) -> Result<OutputPlan, InferError> {
    let model = m.name.as_ref();
    let spec = &m.input;
    let input = tensor_shape(session.inputs(), &spec.name, "input", model)?;
    let shape_err = |tensor: &str, problem: String| InferError::Shape {
        model: model.to_owned(),
        tensor: tensor.to_owned(),
        problem,
    };
    if session.inputs().len() > 1 {
        return Err(shape_err(
            &spec.name,
            format!(
                "the model has {} inputs ({}); this stage feeds exactly one image input",
                session.inputs().len(),
                names(session.inputs())
            ),
        ));
    }
    let (w, h) = (i64::from(spec.width), i64::from(spec.height));
    let (hw_dims, fixed_hw) = match spec.layout {
        Layout::Nchw => (2..4, input.get(2..4)),
        Layout::Nhwc => (1..3, input.get(1..3)),
    };
    if spec.native.is_some() && fixed_hw.is_some_and(|d| d.iter().any(|v| *v >= 0)) {
        return Err(shape_err(
            &spec.name,
            format!(
                "model input shape is {}: its height and width are fixed, but the manifest says \
                 size = \"native\" (each frame at its own size): make them symbolic \
                 (scripts/model_tools/make_yolox_dynamic.py) or give size = [width, height]",
                dims(&input)
            ),
        ));
    }
    let (expected, layout) = match spec.layout {
        Layout::Nchw => ([-1, 3, h, w], "[batch, 3, height, width] (nchw)"),
        Layout::Nhwc => ([-1, h, w, 3], "[batch, height, width, 3] (nhwc)"),
    };
    let mismatch = input.len() != 4
        || input[1..]
            .iter()
            .zip(&expected[1..])
            .enumerate()
            .any(|(i, (real, want))| {
                let native_hw = spec.native.is_some() && hw_dims.contains(&(i + 1));
                *real >= 0 && real != want && !native_hw
            });
    if mismatch {
        return Err(shape_err(
            &spec.name,
            format!(
                "model input shape is {}, the manifest says {} = {} for size [{w}, {h}]",
                dims(&input),
                layout,
                dims(&expected)
            ),
        ));
    }
    check_batch_dim(input[0], m.max_batch, &input).map_err(|p| shape_err(&spec.name, p))?;

    match &m.kind {
        ModelKind::Detector(d) => {
            let out = tensor_shape(session.outputs(), &d.output, "output", model)?;
            if let OutputFormat::Yolox { .. } = d.format {
                let per_box = 5 + d.labels.len() as i64;
                if out.len() != 3 || (out[2] >= 0 && out[2] != per_box) {
                    return Err(shape_err(
                        &d.output,
                        format!(
                            "shape is {}, a YOLOX output is [batch, boxes, 5 + classes] = [?, ?, {per_box}] \
                             for the manifest's {} labels",
                            dims(&out),
                            d.labels.len()
                        ),
                    ));
                }
                check_batch_dim(out[0], m.max_batch, &out).map_err(|p| shape_err(&d.output, p))?;
                return Ok(OutputPlan::Detector);
            }
            let rows = 4 + d.labels.len() as i64;
            if out.len() != 3 {
                return Err(shape_err(
                    &d.output,
                    format!(
                        "shape is {}, a YOLOv8-style detector output is [batch, 4 + classes, anchors]",
                        dims(&out)
                    ),
                ));
            }
            if out[1] >= 0 && out[1] != rows {
                return Err(shape_err(
                    &d.output,
                    format!(
                        "shape is {}: {} values per box, but the manifest lists {} labels (4 + {} = {rows})",
                        dims(&out),
                        out[1],
                        d.labels.len(),
                        d.labels.len()
                    ),
                ));
            }
            check_batch_dim(out[0], m.max_batch, &out).map_err(|p| shape_err(&d.output, p))?;
            Ok(OutputPlan::Detector)
        }
        ModelKind::Anomaly(a) => {
            let score = tensor_shape(session.outputs(), &a.score_output, "output", model)?;
            let ok = match score.as_slice() {
                [_] => true,
                [_, one] => *one == 1 || *one < 0,
                _ => false,
            };
            if !ok {
                return Err(shape_err(
                    &a.score_output,
                    format!(
                        "shape is {}, a per-frame score is [batch] or [batch, 1]",
                        dims(&score)
                    ),
                ));
            }
            check_batch_dim(score[0], m.max_batch, &score)
                .map_err(|p| shape_err(&a.score_output, p))?;
            if let Some(map) = &a.map_output {
                let map_shape = tensor_shape(session.outputs(), map, "output", model)?;
                if !(3..=4).contains(&map_shape.len()) {
                    return Err(shape_err(
                        map,
                        format!(
                            "shape is {}, an anomaly map is [batch, 1, height, width] or [batch, height, width]",
                            dims(&map_shape)
                        ),
                    ));
                }
            }
            Ok(OutputPlan::Anomaly)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for n in ExecutionProvider::NAMES {
            assert_eq!(ExecutionProvider::parse(n).unwrap().as_str(), *n);
        }
        assert_eq!(ExecutionProvider::parse("CUDA"), None);
    }

    #[test]
    fn dims_show_dynamic_as_question_mark() {
        assert_eq!(dims(&[-1, 3, 640, 640]), "[?, 3, 640, 640]");
    }

    #[test]
    fn batch_dim_rules() {
        assert!(check_batch_dim(-1, 8, &[-1, 3, 640, 640]).is_ok());
        assert!(check_batch_dim(1, 1, &[1, 3, 640, 640]).is_ok());
        let e = check_batch_dim(1, 8, &[1, 3, 640, 640]).unwrap_err();
        assert!(
            e.contains("fixed at 1") && e.contains("max_batch = 8"),
            "{e}"
        );
    }
}
