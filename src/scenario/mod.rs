//! Scenario runner (`qianliyan bench scenario`): in, a scenario (scale, soak, overload) and fleet
//! sizes; it starts camsim and the service as child processes of this binary, with a generated
//! config (keyframe-only sub-streams, the analysis budget, the real model with the demo rules on a
//! few cameras, an admin, deliveries to a case-system receiver inside the runner), injects the
//! scripted faults through camsim's control API, samples the service over HTTP and `/proc`, and
//! writes JSON plus a Markdown table with a pass/fail verdict per criterion. Nothing is queued: a
//! sample that cannot be taken is recorded as missing.

pub mod api;
pub mod child;
pub mod cluster;
pub mod gb;
pub mod plan;
pub mod procfs;
pub mod receiver;
pub mod report;
mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// N = 100, 500, 1,300 … : how far one node goes, and what breaks first.
    Scale,
    /// Long run with flapping cameras and a case-system outage: no leaks, no lost alerts, an
    /// honest ledger.
    Soak,
    /// Analysis demand far above inference capacity: bounded memory, a responsive API, rates cut
    /// by priority, drops counted by reason.
    Overload,
}

impl Kind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Scale => "scale",
            Kind::Soak => "soak",
            Kind::Overload => "overload",
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::time::parse_duration(s)
}

/// `qianliyan bench scenario …`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// scale | soak | overload.
    #[arg(long, value_enum)]
    pub scenario: Kind,
    /// Cameras; scale takes a list (e.g. 100,500,1300,2000) and runs one row per size.
    #[arg(long, value_delimiter = ',', required = true,
          value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub cameras: Vec<u32>,
    /// Measured window per run (after the ramp and the warm-up), e.g. 5m, 90s.
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub duration: Duration,
    /// Warm-up between "cameras online" and the window (default: 30s; soak 60s).
    #[arg(long, value_parser = duration)]
    pub warmup: Option<Duration>,
    /// Sampling period.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub sample_every: Duration,
    /// The JSON report; the Markdown goes beside it, logs and configs under its stem.
    /// Default: target/bench/scenario-<scenario>.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Video every camsim camera serves (the sub-stream clip).
    #[arg(long, default_value = "assets/video/vtest_sub.mp4")]
    pub source: PathBuf,
    /// Assets directory made by scripts/setup (ONNX Runtime, model weights).
    #[arg(long, default_value = "assets")]
    pub assets: PathBuf,
    /// Detector manifest (the overload scenario wants a heavy one, e.g. models/person_fall.toml, to
    /// make inference the bottleneck).
    #[arg(long, default_value = "models/yolox_nano.toml")]
    pub model: PathBuf,
    /// Fall model manifest: the detector's second pass on people lying (the demo rules' fall rule).
    #[arg(long, default_value = "models/person_fall.toml")]
    pub fall_model: PathBuf,
    /// Zones and rules copied onto each camera with rules (written for cam-0001).
    #[arg(long, default_value = "config/demo-rules.toml")]
    pub rules: PathBuf,
    /// Cameras that carry the rules (priority 1, every frame decoded).
    #[arg(long, default_value_t = 3)]
    pub alert_cameras: u32,
    /// Analysis rate of the cameras with rules (scale, soak).
    #[arg(long, default_value_t = 1.0)]
    pub alert_fps: f64,
    /// Analysis rate of the other cameras (default: scale/soak 0.5, one keyframe in two seconds;
    /// overload 2.0).
    #[arg(long)]
    pub analysis_fps: Option<f64>,
    /// Keyframe-only decode for the other cameras (default: scale/soak true, overload false).
    #[arg(long, action = clap::ArgAction::Set)]
    pub keyframe_only: Option<bool>,
    /// ONNX Runtime threads inside one operator (default: half the cores, at least 1, so decode
    /// and the API keep the rest).
    #[arg(long)]
    pub intra_op_threads: Option<usize>,
    /// The budget's floor per camera (default: the service's own default, 0.1, for scale and soak: the
    /// floors of thousands of cameras give way before priority 1 is cut; overload 0.05).
    #[arg(long)]
    pub min_fps: Option<f64>,
    /// How long the fleet may take to come online.
    #[arg(long, default_value = "3m", value_parser = duration)]
    pub online_timeout: Duration,
    /// Cameras are added through the API over this long, so that camsim's GOP phases spread as a
    /// real fleet's (default: N/100 s, 5 s to 20 s).
    #[arg(long, value_parser = duration)]
    pub stagger: Option<Duration>,
    /// Soak: share of the cameras without rules that flap.
    #[arg(long, default_value_t = 0.10)]
    pub flap_share: f64,
    /// Soak: how long the case system is down, around the middle (default: a sixth of the window).
    #[arg(long, value_parser = duration)]
    pub case_down: Option<Duration>,
    /// Scale: go on with the next size after one that breaks.
    #[arg(long)]
    pub keep_going: bool,
    /// Share of camsim cameras (0–1) showing a quiet view instead of the busy source (camsim
    /// `--quiet-share`): a county at night. 0 (the default) keeps every camera busy.
    #[arg(long, default_value_t = 0.0)]
    pub quiet_share: f64,
    /// Quiet cameras with a scripted burst of people every minute (camsim `--bursts`).
    #[arg(long, default_value_t = 0)]
    pub bursts: u32,
    /// Rate control of camsim's scene clips: vbr (constant quality) or cbr.
    #[arg(long, value_enum, default_value = "vbr")]
    pub scene_rate_control: crate::camsim::RateControl,
}

/// Runner errors.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Something the runner needs is missing or wrong (not retryable).
    #[error("{0}")]
    Setup(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A child process failed to start, or died.
    #[error("{name}: {detail}")]
    Child {
        /// camsim or service.
        name: String,
        /// Exit status and log tail.
        detail: String,
    },
    /// The service's API did not answer as expected.
    #[error("API: {0}")]
    Http(String),
    /// SIGINT/SIGTERM.
    #[error("cancelled")]
    Cancelled,
}

impl ScenarioError {
    fn io(path: &Path, source: std::io::Error) -> ScenarioError {
        ScenarioError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Settings of one scenario with every default resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    /// Which scenario.
    pub kind: Kind,
    /// Sizes to run.
    pub cameras: Vec<u32>,
    /// Window, seconds.
    pub duration_s: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Sampling period, seconds.
    pub sample_every_s: f64,
    /// JSON report.
    pub out: PathBuf,
    /// Logs, configs and data directories.
    pub work: PathBuf,
    /// Clip.
    pub source: PathBuf,
    /// Assets.
    pub assets: PathBuf,
    /// Model manifest.
    pub model: PathBuf,
    /// Fall model manifest.
    pub fall_model: PathBuf,
    /// Demo rules.
    pub rules: PathBuf,
    /// Fleet rates and priorities.
    pub fleet: plan::FleetSpec,
    /// ORT intra-op threads.
    pub intra_op_threads: usize,
    /// Budget floor.
    pub min_fps: f64,
    /// Ramp limit, seconds.
    pub online_timeout_s: f64,
    /// Stagger, seconds (`None`: by N).
    pub stagger_s: Option<f64>,
    /// Soak flapping share.
    pub flap_share: f64,
    /// Soak case outage, seconds.
    pub case_down_s: f64,
    /// Scale: continue after a break.
    pub keep_going: bool,
    /// camsim's scenes (quiet share, bursts, rate control).
    pub quiet_share: f64,
    /// Quiet cameras with bursts.
    pub bursts: u32,
    /// Scene clips' rate control.
    pub scene_rate_control: crate::camsim::RateControl,
    /// This binary (camsim and serve are its subcommands).
    #[serde(skip)]
    pub bin: PathBuf,
}

fn absolute(p: &Path, what: &str) -> Result<PathBuf, ScenarioError> {
    p.canonicalize().map_err(|e| {
        ScenarioError::Setup(format!(
            "{what} {}: {e} (run from the repository root after scripts/setup, or pass the path)",
            p.display()
        ))
    })
}

impl Args {
    /// Resolves defaults and checks that the files exist.
    pub fn resolve(&self) -> Result<Resolved, ScenarioError> {
        let kind = self.scenario;
        if kind != Kind::Scale && self.cameras.len() != 1 {
            return Err(ScenarioError::Setup(format!(
                "--cameras: {} takes one size, not {:?}",
                kind.as_str(),
                self.cameras
            )));
        }
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("target/bench").join(format!("scenario-{}.json", kind.as_str()))
        });
        let work = out.with_extension("");
        let overload = kind == Kind::Overload;
        let secs = |d: Duration| d.as_secs_f64();
        let duration_s = secs(self.duration);
        if duration_s < 20.0 {
            return Err(ScenarioError::Setup(
                "--duration: at least 20s (the soak's phases need room)".into(),
            ));
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(ScenarioError::Setup(format!("{name}: {v} must be > 0")))
            }
        };
        let analysis_fps = positive(
            "--analysis-fps",
            self.analysis_fps
                .unwrap_or(if overload { 2.0 } else { 0.5 }),
        )?;
        let alert_fps = positive("--alert-fps", self.alert_fps)?;
        let min_fps = self.min_fps.unwrap_or(if overload { 0.05 } else { 0.1 });
        if !(min_fps.is_finite() && min_fps > 0.0) {
            return Err(ScenarioError::Setup(
                "--min-fps: must be > 0 (0 lets cut cameras through uncut)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.quiet_share) {
            return Err(ScenarioError::Setup(
                "--quiet-share: must be within 0..=1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.flap_share) {
            return Err(ScenarioError::Setup(
                "--flap-share: must be within 0..=1".into(),
            ));
        }
        Ok(Resolved {
            kind,
            cameras: self.cameras.clone(),
            duration_s,
            warmup_s: self
                .warmup
                .map(secs)
                .unwrap_or(if kind == Kind::Soak { 60.0 } else { 30.0 }),
            sample_every_s: secs(self.sample_every).max(1.0),
            out,
            work,
            source: absolute(&self.source, "--source")?,
            assets: absolute(&self.assets, "--assets")?,
            model: absolute(&self.model, "--model")?,
            fall_model: absolute(&self.fall_model, "--fall-model")?,
            rules: absolute(&self.rules, "--rules")?,
            fleet: plan::FleetSpec {
                alert_cameras: self.alert_cameras,
                analysis_fps,
                keyframe_only: self.keyframe_only.unwrap_or(!overload),
                alert_fps,
            },
            intra_op_threads: self
                .intra_op_threads
                .unwrap_or((procfs::cores() / 2).max(1)),
            min_fps,
            online_timeout_s: secs(self.online_timeout),
            stagger_s: self.stagger.map(secs),
            flap_share: self.flap_share,
            case_down_s: self
                .case_down
                .map(secs)
                .unwrap_or(duration_s / 6.0)
                .min(duration_s * 0.5),
            keep_going: self.keep_going,
            quiet_share: self.quiet_share,
            bursts: self.bursts,
            scene_rate_control: self.scene_rate_control,
            bin: std::env::current_exe()
                .map_err(|e| ScenarioError::Setup(format!("this binary's path: {e}")))?,
        })
    }
}

/// The whole report: machine, settings, one run per size.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "scenario".
    pub bench: &'static str,
    /// Which scenario.
    pub scenario: Kind,
    /// The command line.
    pub command: String,
    /// Unix ms at the start.
    pub started_ms: i64,
    /// The machine.
    pub machine: procfs::Machine,
    /// Settings.
    pub settings: Resolved,
    /// One per size, in order.
    pub runs: Vec<Value>,
    /// Every criterion of every run passed.
    pub pass: bool,
    /// Scale: the first size that did not hold, and why.
    pub breaks: Option<Value>,
}

/// Runs the scenario and writes the reports (after every run, so a long scale run leaves what it
/// measured). `command` is recorded in the report.
pub async fn run(
    args: &Args,
    command: String,
    cancel: CancellationToken,
) -> Result<Report, ScenarioError> {
    let settings = args.resolve()?;
    std::fs::create_dir_all(&settings.work).map_err(|e| ScenarioError::io(&settings.work, e))?;
    let mut report = Report {
        bench: "scenario",
        scenario: settings.kind,
        command,
        started_ms: crate::time::unix_ms(std::time::SystemTime::now()),
        machine: procfs::machine(),
        settings: settings.clone(),
        runs: Vec::new(),
        pass: true,
        breaks: None,
    };
    for &n in &settings.cameras {
        tracing::info!(scenario = settings.kind.as_str(), cameras = n, "run starts");
        let row = match run::run_one(&settings, n, &cancel).await {
            Ok(row) => row,
            Err(ScenarioError::Cancelled) => return Err(ScenarioError::Cancelled),
            Err(e) if settings.kind == Kind::Scale => {
                tracing::error!(cameras = n, error = %e, "run failed");
                json!({"cameras": n, "error": e.to_string(), "pass": false,
                       "criteria": [{"name": "run_completes", "pass": false, "detail": e.to_string()}]})
            }
            Err(e) => return Err(e),
        };
        let pass = row["pass"].as_bool().unwrap_or(false);
        report.pass &= pass;
        if !pass && report.breaks.is_none() {
            let why: Vec<String> = row["criteria"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["pass"] == false)
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["name"].as_str().unwrap_or("?"),
                        c["detail"].as_str().unwrap_or("")
                    )
                })
                .collect();
            report.breaks = Some(json!({"cameras": n, "why": why}));
        }
        report.runs.push(row);
        write(&report)?;
        if !pass && settings.kind == Kind::Scale && !settings.keep_going {
            break;
        }
    }
    write(&report)?;
    Ok(report)
}

fn write(report: &Report) -> Result<(), ScenarioError> {
    let out = &report.settings.out;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ScenarioError::io(dir, e))?;
    }
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| ScenarioError::Setup(format!("report JSON: {e}")))?;
    std::fs::write(out, text + "\n").map_err(|e| ScenarioError::io(out, e))?;
    let md = out.with_extension("md");
    std::fs::write(&md, report::markdown(report)).map_err(|e| ScenarioError::io(&md, e))?;
    Ok(())
}
