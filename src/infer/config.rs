//! `[inference]` settings: raw serde struct → [`RawInferConfig::validate`] → [`InferSettings`].
//! `config/` embeds the raw struct and calls `validate` with its field path prefix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::InferConfig;
use super::error::Issue;
use super::manifest::ModelManifest;
use super::session::{ExecutionProvider, SessionConfig};
use crate::batch::{BatchConfig, BudgetConfig};

/// `[inference]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInferConfig {
    /// ONNX Runtime shared library; relative to the assets directory (default
    /// `onnxruntime/libonnxruntime.so`, made by scripts/setup).
    #[serde(default = "default_ort_library")]
    pub ort_library: String,
    /// Model manifests to run (`models/<name>.toml`), relative to the config file's directory.
    #[serde(default)]
    pub models: Vec<String>,
    /// A fall model's manifest (e.g. `models/person_fall.toml`), relative to the config file's
    /// directory: each person detector runs it as a second pass on frames where a person lies, so that
    /// `fall` rules can run. Absent: no fall pass, and `fall` rules are refused (unless a detector
    /// labels fallen people itself).
    pub fall_model: Option<String>,
    /// Execution provider: `cpu` (default), `cuda` or `tensorrt`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// GPU index for `cuda`/`tensorrt`.
    #[serde(default)]
    pub device_id: i32,
    /// Run on the CPU (logged) when the provider cannot be used, instead of refusing to start.
    #[serde(default)]
    pub allow_cpu_fallback: bool,
    /// Inference threads per model, each with its own session (default 1).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Threads ONNX Runtime uses inside one operator; 0 = one per core (default).
    #[serde(default)]
    pub intra_op_threads: usize,
    /// A batch leaves this long after its first frame even if not full (default 50).
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Frames a camera may have waiting in the batcher, 1 or 2 (default 1); newer replace older.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// Keep inference this busy at most, 0.05..=1 (default 0.9); above it the budget lowers rates.
    #[serde(default = "default_target_utilisation")]
    pub target_utilisation: f64,
    /// The budget never lowers a camera below this many frames per second (default 0.1).
    #[serde(default = "default_min_fps")]
    pub min_fps: f64,
}

impl Default for RawInferConfig {
    fn default() -> Self {
        Self {
            ort_library: default_ort_library(),
            models: Vec::new(),
            fall_model: None,
            provider: default_provider(),
            device_id: 0,
            allow_cpu_fallback: false,
            threads: default_threads(),
            intra_op_threads: 0,
            max_wait_ms: default_max_wait_ms(),
            queue_depth: default_queue_depth(),
            target_utilisation: default_target_utilisation(),
            min_fps: default_min_fps(),
        }
    }
}

fn default_ort_library() -> String {
    "onnxruntime/libonnxruntime.so".into()
}
fn default_provider() -> String {
    "cpu".into()
}
fn default_threads() -> usize {
    1
}
fn default_max_wait_ms() -> u64 {
    50
}
fn default_queue_depth() -> usize {
    1
}
fn default_target_utilisation() -> f64 {
    0.9
}
fn default_min_fps() -> f64 {
    0.1
}

/// Validated `[inference]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InferSettings {
    /// Resolved ONNX Runtime library path.
    pub ort_library: PathBuf,
    /// Resolved manifest paths.
    pub models: Vec<PathBuf>,
    /// Resolved fall model manifest path.
    pub fall_model: Option<PathBuf>,
    /// Threads and sessions.
    pub infer: InferConfig,
    /// Batcher timer.
    pub max_wait: Duration,
    /// Batcher per-camera depth.
    pub queue_depth: usize,
    /// Budget (its `workers` = `infer.threads`).
    pub budget: BudgetConfig,
}

impl InferSettings {
    /// The batcher settings for one model.
    pub fn batch_config(&self, manifest: &ModelManifest) -> BatchConfig {
        BatchConfig {
            max_batch: manifest.max_batch,
            max_wait: self.max_wait,
            queue_depth: self.queue_depth,
            one_size: manifest.input.native.is_some(),
        }
    }
}

impl RawInferConfig {
    /// Checks every field; `prefix` (e.g. `inference`) starts each field path. `config_dir` resolves
    /// `models`, `assets_dir` resolves `ort_library`.
    pub fn validate(
        &self,
        prefix: &str,
        config_dir: &Path,
        assets_dir: &Path,
    ) -> Result<InferSettings, Vec<Issue>> {
        let mut issues = Vec::new();
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if self.ort_library.trim().is_empty() {
            issues.push(Issue::new(
                field("ort_library"),
                "must name the ONNX Runtime library",
            ));
        }
        let provider = ExecutionProvider::parse(&self.provider);
        if provider.is_none() {
            issues.push(Issue::new(
                field("provider"),
                format!(
                    "{:?} is not one of {}",
                    self.provider,
                    ExecutionProvider::NAMES.join(", ")
                ),
            ));
        }
        if self.device_id < 0 {
            issues.push(Issue::new(field("device_id"), "must be 0 or more"));
        }
        if !(1..=64).contains(&self.threads) {
            issues.push(Issue::new(
                field("threads"),
                format!("{} is out of range 1..=64", self.threads),
            ));
        }
        if self.intra_op_threads > 256 {
            issues.push(Issue::new(
                field("intra_op_threads"),
                "must be 0..=256 (0 = one per core)",
            ));
        }
        if !(1..=10_000).contains(&self.max_wait_ms) {
            issues.push(Issue::new(
                field("max_wait_ms"),
                format!("{} is out of range 1..=10000", self.max_wait_ms),
            ));
        }
        if !(1..=2).contains(&self.queue_depth) {
            issues.push(Issue::new(
                field("queue_depth"),
                format!("{} must be 1 or 2", self.queue_depth),
            ));
        }
        if !(self.target_utilisation.is_finite() && (0.05..=1.0).contains(&self.target_utilisation))
        {
            issues.push(Issue::new(
                field("target_utilisation"),
                format!("{} is out of range 0.05..=1", self.target_utilisation),
            ));
        }
        if !(self.min_fps.is_finite() && self.min_fps >= 0.0) {
            issues.push(Issue::new(field("min_fps"), "must be 0 or more"));
        }
        if self
            .fall_model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            issues.push(Issue::new(
                field("fall_model"),
                "must name a manifest, or be left out",
            ));
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.trim().is_empty() {
                issues.push(Issue::new(
                    field(&format!("models[{i}]")),
                    "must not be empty",
                ));
            }
        }
        let Some(provider) = provider else {
            return Err(issues);
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(InferSettings {
            ort_library: assets_dir.join(&self.ort_library),
            models: self.models.iter().map(|m| config_dir.join(m)).collect(),
            fall_model: self.fall_model.as_ref().map(|m| config_dir.join(m)),
            infer: InferConfig {
                session: SessionConfig {
                    provider,
                    device_id: self.device_id,
                    allow_cpu_fallback: self.allow_cpu_fallback,
                    intra_threads: self.intra_op_threads,
                },
                threads: self.threads,
                // Loaded by the settings, once, with the other manifests.
                fall: None,
            },
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_depth: self.queue_depth,
            budget: BudgetConfig {
                workers: self.threads,
                target_utilisation: self.target_utilisation,
                min_fps: self.min_fps,
                ..BudgetConfig::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let raw: RawInferConfig =
            toml::from_str("models = [\"../models/person_fall.toml\"]").unwrap();
        let s = raw
            .validate("inference", Path::new("/etc/qly"), Path::new("/opt/assets"))
            .unwrap();
        assert_eq!(
            s.ort_library,
            Path::new("/opt/assets/onnxruntime/libonnxruntime.so")
        );
        assert_eq!(s.models, [Path::new("/etc/qly/../models/person_fall.toml")]);
        assert_eq!(s.infer.session.provider, ExecutionProvider::Cpu);
        assert!(!s.infer.session.allow_cpu_fallback);
        assert_eq!(s.infer.threads, 1);
        assert_eq!(s.max_wait, Duration::from_millis(50));
        assert_eq!(s.queue_depth, 1);
        assert_eq!(s.budget.workers, 1);
    }

    #[test]
    fn all_problems_with_paths() {
        let raw: RawInferConfig = toml::from_str(
            "provider = \"gpu\"\nthreads = 0\nqueue_depth = 3\nmax_wait_ms = 0\ntarget_utilisation = 2.0\nmodels = [\"\"]",
        )
        .unwrap();
        let issues = raw
            .validate("inference", Path::new("."), Path::new("."))
            .unwrap_err();
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "inference.provider",
                "inference.threads",
                "inference.max_wait_ms",
                "inference.queue_depth",
                "inference.target_utilisation",
                "inference.models[0]"
            ]
        );
        let e = toml::from_str::<RawInferConfig>("gpu = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `gpu`"), "{e}");
    }
}
