//! Errors of the inference stage: each names the model, tensor or camera it is about.

use std::fmt;
use std::path::PathBuf;

/// One problem in a manifest or inference config, with the field path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Field path, e.g. `input.size` or `detector.labels[1].kind`.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl Issue {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every issue on its own line, for the multi-problem error messages.
pub(crate) struct IssueList<'a>(pub(crate) &'a [Issue]);

impl fmt::Display for IssueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in self.0 {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

/// A model manifest (`models/<name>.toml`) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("model manifest {}: cannot read it: {source}", path.display())]
    Read {
        /// Manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or an unknown field.
    #[error("model manifest {}: {message}", path.display())]
    Parse {
        /// Manifest path.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Parsed, but some values are not acceptable; every problem is listed.
    #[error("model manifest {} has {} problem(s):{}", path.display(), issues.len(), IssueList(issues))]
    Invalid {
        /// Manifest path.
        path: PathBuf,
        /// All problems found.
        issues: Vec<Issue>,
    },
}

/// Why the inference stage could not start or could not process a batch.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The `[inference]` settings are unusable; every problem is listed.
    #[error("inference config has {} problem(s):{}", .0.len(), IssueList(.0))]
    Config(Vec<Issue>),
    /// The ONNX Runtime shared library could not be loaded or initialised.
    #[error("ONNX Runtime library {}: {message}", path.display())]
    Runtime {
        /// Library path as configured.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The model file named by the manifest does not exist.
    #[error("model {model}: file {} is missing (run scripts/setup, or fix `file` in its manifest)", path.display())]
    ModelFileMissing {
        /// Model name.
        model: String,
        /// Resolved path.
        path: PathBuf,
    },
    /// The model file's SHA-256 differs from the manifest's.
    #[error("model {model}: {} has sha256 {actual}, but its manifest says {expected}", path.display())]
    Checksum {
        /// Model name.
        model: String,
        /// Resolved path.
        path: PathBuf,
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The configured execution provider cannot be used and falling back to CPU was not allowed.
    #[error(
        "model {model}: execution provider `{provider}` cannot be used: {reason} \
         (set `allow_cpu_fallback = true` to run on the CPU instead)"
    )]
    ProviderUnavailable {
        /// Model name.
        model: String,
        /// Configured provider (`cuda`, `tensorrt`).
        provider: &'static str,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// ONNX Runtime could not create a session from the file (corrupt or unsupported model).
    #[error("model {model}: ONNX Runtime cannot load {}: {message}", path.display())]
    Load {
        /// Model name.
        model: String,
        /// Resolved path.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A model's real input or output does not match its manifest.
    #[error("model {model}: tensor `{tensor}`: {problem}")]
    Shape {
        /// Model name.
        model: String,
        /// Tensor name (as in the manifest, or as found in the model).
        tensor: String,
        /// The mismatch, with both sides spelled out.
        problem: String,
    },
    /// `Session::run` failed for a batch.
    #[error("model {model}: inference on a batch of {batch} failed: {message}")]
    Run {
        /// Model name.
        model: String,
        /// Frames in the batch.
        batch: usize,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A frame cannot be preprocessed (bad geometry or format); only this frame is skipped.
    #[error("camera {camera}: frame pts {pts_90k} cannot be analysed: {reason}")]
    Frame {
        /// Camera id.
        camera: String,
        /// Frame presentation time.
        pts_90k: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// OpenCV failed while preprocessing a frame.
    #[error("model {model}: preprocessing camera {camera}'s frame failed (OpenCV): {message}")]
    Preprocess {
        /// Model name.
        model: String,
        /// Camera id.
        camera: String,
        /// OpenCV's message.
        message: String,
    },
    /// An inference thread could not be spawned.
    #[error("cannot spawn inference thread {name}: {source}")]
    Thread {
        /// Thread name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl InferError {
    /// Whether trying again (the next batch, a restart) can help without changing config or files.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Run { .. } | Self::Preprocess { .. } | Self::Thread { .. }
        )
    }
}
