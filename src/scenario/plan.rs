//! What a run sets up: the fleet (ids, URLs, priorities, rates), the service's generated config and
//! rules, and the fault script with the ground truth the ledger is checked against.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Kind, ScenarioError};

/// camsim's keyframe interval on the sample clips (GOP of 20 frames at 10 fps).
pub const KEYFRAME_INTERVAL_S: f64 = 2.0;
/// Reconnect backoff cap the generated config sets (the ledger truth depends on it).
pub const BACKOFF_MAX_S: f64 = 2.0;
/// After a `restore`, the supervisor's current backoff sleep (uniform in [cap/2, cap], entered at
/// a uniformly random point: on average ≈ 0.39 × cap left) plus DESCRIBE/SETUP/PLAY and the first
/// frame on loopback: the expected lag before the ledger shows the camera online again.
pub const RESTORE_LAG_S: f64 = 0.39 * BACKOFF_MAX_S + 0.2;

/// One camera of the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Cam {
    /// camsim's camera number (1-based).
    pub number: u32,
    /// The service's camera id.
    pub id: String,
    /// Priority 1 (highest) ..= 5.
    pub priority: u8,
    /// Decode keyframes only.
    pub keyframe_only: bool,
    /// Configured analysis rate.
    pub analysis_fps: f64,
    /// Carries the demo rules (so alerts happen).
    pub alerts: bool,
}

impl Cam {
    /// Frames per second this camera can hand to analysis: keyframe-only cameras get at most one
    /// per keyframe interval.
    pub fn target_fps(&self) -> f64 {
        if self.keyframe_only {
            self.analysis_fps.min(1.0 / KEYFRAME_INTERVAL_S)
        } else {
            self.analysis_fps
        }
    }

    fn url(&self, rtsp_port: u16, n: u32) -> String {
        let width = n.to_string().len().max(4);
        format!("rtsp://127.0.0.1:{rtsp_port}/cam/{:0width$}", self.number)
    }

    fn area_path(&self) -> String {
        format!(
            "示范县/镇{:02}/村{:03}",
            self.number % 13 + 1,
            self.number % 97 + 1
        )
    }

    /// The camera as `POST /api/cameras` takes it.
    pub fn api_body(&self, rtsp_port: u16, n: u32) -> Value {
        json!({
            "id": self.id,
            "name": format!("scenario camera {}", self.number),
            "url": self.url(rtsp_port, n),
            "area_path": self.area_path(),
            "priority": self.priority,
            "keyframe_only": self.keyframe_only,
            "analysis_fps": self.analysis_fps,
        })
    }

    fn toml(&self, rtsp_port: u16, n: u32) -> String {
        format!(
            "\n[[cameras]]\nid = \"{}\"\nname = \"scenario camera {}\"\nurl = \"{}\"\narea_path = \"{}\"\n\
             priority = {}\nkeyframe_only = {}\nanalysis_fps = {}\n",
            self.id,
            self.number,
            self.url(rtsp_port, n),
            self.area_path(),
            self.priority,
            self.keyframe_only,
            self.analysis_fps
        )
    }
}

/// Rates and priorities of a fleet of `n` cameras.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSpec {
    /// Cameras that carry the demo rules.
    pub alert_cameras: u32,
    /// Analysis rate of the other cameras.
    pub analysis_fps: f64,
    /// Whether the other cameras decode keyframes only.
    pub keyframe_only: bool,
    /// Rate of the cameras with rules (they decode every frame: tracking needs more than keyframes).
    pub alert_fps: f64,
}

/// Overload's priorities, as a county's fleet has them: few cameras at the top. Of `n` cameras, about
/// 5 % are priority 1, 10 % priority 2, 20 % priority 3, 30 % priority 4 and the rest priority 5
/// (20 cameras: 1, 2, 4, 6, 7); each level has at least one camera when `n` ≥ 5.
pub fn overload_priority(number: u32, n: u32) -> u8 {
    const CUMULATIVE: [f64; 4] = [0.05, 0.15, 0.35, 0.65];
    for (i, share) in CUMULATIVE.iter().enumerate() {
        let last = ((share * f64::from(n)).ceil() as u32).max(i as u32 + 1);
        if number <= last {
            return i as u8 + 1;
        }
    }
    5
}

/// The fleet of a run. Scale and soak: the first `alert_cameras` cameras carry the rules at
/// priority 1, the rest priority 3. Overload: few cameras at priority 1, many at 5
/// ([`overload_priority`]), rules on the first priority-1 cameras, every camera at the same rate.
pub fn fleet(kind: Kind, n: u32, spec: &FleetSpec) -> Vec<Cam> {
    let mut with_rules = 0;
    (1..=n)
        .map(|number| {
            let id = format!("cam-{number:05}");
            match kind {
                Kind::Overload => {
                    let priority = overload_priority(number, n);
                    let alerts = priority == 1 && with_rules < spec.alert_cameras;
                    with_rules += u32::from(alerts);
                    Cam {
                        number,
                        id,
                        priority,
                        keyframe_only: spec.keyframe_only,
                        analysis_fps: spec.analysis_fps,
                        alerts,
                    }
                }
                Kind::Scale | Kind::Soak if number <= spec.alert_cameras => Cam {
                    number,
                    id,
                    priority: 1,
                    keyframe_only: false,
                    analysis_fps: spec.alert_fps,
                    alerts: true,
                },
                Kind::Scale | Kind::Soak => Cam {
                    number,
                    id,
                    priority: 3,
                    keyframe_only: spec.keyframe_only,
                    analysis_fps: spec.analysis_fps,
                    alerts: false,
                },
            }
        })
        .collect()
}

/// Settings of the generated service config.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSpec {
    /// Node name.
    pub name: String,
    /// API port.
    pub port: u16,
    /// Data directory (fresh per run).
    pub data_dir: String,
    /// Assets directory (ONNX Runtime, model).
    pub assets_dir: String,
    /// Model manifest.
    pub model: String,
    /// Fall model manifest (the fall pass; the demo rules have a fall rule).
    pub fall_model: String,
    /// ONNX Runtime threads inside one operator.
    pub intra_op_threads: usize,
    /// Budget floor per camera.
    pub min_fps: f64,
    /// The case receiver.
    pub case_url: String,
}

/// Environment variable the generated config reads the admin's password from.
pub const PASSWORD_ENV: &str = "QLY_SCENARIO_PASSWORD";
/// Environment variable the generated config reads the case system's HMAC secret from.
pub const CASE_SECRET_ENV: &str = "QLY_SCENARIO_CASE_SECRET";
/// The admin the runner logs in as.
pub const ADMIN: &str = "scenario-admin";

/// The service's TOML: the cameras in `in_config` are listed, the rest come through the API.
pub fn service_toml(spec: &ServiceSpec, cams: &[&Cam], rtsp_port: u16, n: u32) -> String {
    let mut toml = format!(
        r#"# Generated by `qianliyan bench scenario`: keyframe-only sub-streams, the analysis budget, the
# real model with the demo rules on a few cameras, deliveries to the runner's case receiver.
rules = "rules.toml"

[node]
name = "{name}"
data_dir = "{data}"
assets_dir = "{assets}"

[web]
listen = "127.0.0.1:{port}"

[ingest]
transport = "tcp"
stall_after = "10s"
backoff_initial = "500ms"
backoff_max = "{BACKOFF_MAX_S}s"
decoder = "cpu"
stream = "sub"

[health]
grace = "5s"

[inference]
models = ["{model}"]
fall_model = "{fall_model}"
provider = "cpu"
threads = 1
intra_op_threads = {intra}
min_fps = {min_fps}

[delivery]
case = {{ url = "{case}", secret_env = "{CASE_SECRET_ENV}" }}
backoff_initial_ms = 500
backoff_max_s = 10
request_timeout_s = 5

[auth]
[[auth.users]]
username = "{ADMIN}"
display_name = "scenario runner"
role = "admin"
password_env = "{PASSWORD_ENV}"
"#,
        name = spec.name,
        data = spec.data_dir,
        assets = spec.assets_dir,
        port = spec.port,
        model = spec.model,
        fall_model = spec.fall_model,
        intra = spec.intra_op_threads,
        min_fps = spec.min_fps,
        case = spec.case_url,
    );
    for c in cams {
        toml.push_str(&c.toml(rtsp_port, n));
    }
    toml
}

/// The demo rules (written for `cam-0001`) copied onto every camera that carries rules.
pub fn rules_toml(demo: &Path, cams: &[Cam]) -> Result<String, ScenarioError> {
    let text = std::fs::read_to_string(demo).map_err(|e| ScenarioError::io(demo, e))?;
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| ScenarioError::Setup(format!("{}: {e}", demo.display())))?;
    let list = |key: &str| -> Vec<toml::Table> {
        doc.get(key)
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
            .unwrap_or_default()
    };
    let (zones, rules) = (list("zones"), list("rules"));
    let mut out_zones = Vec::new();
    let mut out_rules = Vec::new();
    for c in cams.iter().filter(|c| c.alerts) {
        for z in &zones {
            let mut z = z.clone();
            z.insert("camera".into(), toml::Value::String(c.id.clone()));
            out_zones.push(toml::Value::Table(z));
        }
        for r in &rules {
            let mut r = r.clone();
            let id = r.get("id").and_then(toml::Value::as_str).unwrap_or("rule");
            let id = format!("{id}.{}", c.id);
            r.insert("id".into(), toml::Value::String(id));
            r.insert("camera".into(), toml::Value::String(c.id.clone()));
            out_rules.push(toml::Value::Table(r));
        }
    }
    let mut table = toml::Table::new();
    table.insert("zones".into(), toml::Value::Array(out_zones));
    table.insert("rules".into(), toml::Value::Array(out_rules));
    let body = toml::to_string(&table)
        .map_err(|e| ScenarioError::Setup(format!("rules for the scenario: {e}")))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by `qianliyan bench scenario` from {}: the demo zones and rules on each camera with rules.\n",
        demo.display()
    );
    out.push_str(&body);
    Ok(out)
}

/// What the script does at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// camsim `down` on these camera numbers.
    Down {
        /// camsim numbers.
        cameras: Vec<u32>,
    },
    /// camsim `restore` on these camera numbers.
    Restore {
        /// camsim numbers.
        cameras: Vec<u32>,
    },
    /// The case receiver goes down.
    CaseDown,
    /// The case receiver comes back.
    CaseUp,
}

/// One scripted step, `at` seconds after the measured window starts.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Seconds into the window.
    pub at: f64,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
}

/// The soak's script over a window of `d` seconds: quiet for the first 10 % (the baseline), then
/// `flap_share` of the cameras without rules go down and come back in turn until 85 % of the window
/// (each down for a third of its cycle, cycles of about two minutes, phases spread so that a steady
/// share is down at any time), the case system down for `case_down` seconds around the middle, and
/// the last 15 % quiet again (the end state compared with the baseline).
pub fn soak_script(cams: &[Cam], d: f64, flap_share: f64, case_down: f64) -> Vec<Step> {
    let pool: Vec<u32> = cams
        .iter()
        .filter(|c| !c.alerts)
        .map(|c| c.number)
        .collect();
    let flapping = ((pool.len() as f64 * flap_share).round() as usize)
        .max(usize::from(!pool.is_empty()))
        .min(pool.len());
    // Spread over the fleet: every k-th camera.
    let stride = (pool.len() / flapping.max(1)).max(1);
    let chosen: Vec<u32> = pool
        .iter()
        .step_by(stride)
        .take(flapping)
        .copied()
        .collect();
    let (f0, f1) = (0.10 * d, 0.85 * d);
    let cycles = ((f1 - f0) / 120.0).floor().max(1.0);
    let cycle = (f1 - f0) / cycles;
    let down_len = (cycle / 3.0).max(12.0).min(cycle / 2.0);
    let mut steps = Vec::new();
    for (j, &cam) in chosen.iter().enumerate() {
        let offset = j as f64 * (cycle - down_len) / chosen.len() as f64;
        for k in 0..cycles as usize {
            let start = f0 + k as f64 * cycle + offset;
            steps.push(Step {
                at: round(start, 1),
                action: Action::Down { cameras: vec![cam] },
            });
            steps.push(Step {
                at: round(start + down_len, 1),
                action: Action::Restore { cameras: vec![cam] },
            });
        }
    }
    if case_down > 0.0 {
        let len = case_down.min(f1 - f0);
        steps.push(Step {
            at: round(0.5 * d - len / 2.0, 1),
            action: Action::CaseDown,
        });
        steps.push(Step {
            at: round(0.5 * d + len / 2.0, 1),
            action: Action::CaseUp,
        });
    }
    merge(steps)
}

/// Steps at the same time and of the same kind become one request.
fn merge(mut steps: Vec<Step>) -> Vec<Step> {
    steps.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut out: Vec<Step> = Vec::new();
    for s in steps {
        if let Some(last) = out.last_mut()
            && last.at == s.at
        {
            match (&mut last.action, &s.action) {
                (Action::Down { cameras: a }, Action::Down { cameras: b })
                | (Action::Restore { cameras: a }, Action::Restore { cameras: b }) => {
                    a.extend(b);
                    continue;
                }
                _ => {}
            }
        }
        out.push(s);
    }
    out
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// A step as it was applied: seconds into the window when camsim (or the receiver) took it.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Scheduled time.
    pub scheduled: f64,
    /// When it took effect (middle of the request).
    pub at: f64,
    /// What.
    #[serde(flatten)]
    pub action: Action,
}

/// Expected offline seconds per camsim camera number inside `[0, window]`, from the script as run:
/// each down period, plus [`RESTORE_LAG_S`] when it was restored inside the window.
pub fn expected_offline(applied: &[Applied], window: f64) -> std::collections::BTreeMap<u32, f64> {
    let mut open: std::collections::BTreeMap<u32, f64> = Default::default();
    let mut out: std::collections::BTreeMap<u32, f64> = Default::default();
    let mut steps: Vec<&Applied> = applied.iter().collect();
    steps.sort_by(|a, b| a.at.total_cmp(&b.at));
    for s in steps {
        match &s.action {
            Action::Down { cameras } => {
                for c in cameras {
                    open.entry(*c).or_insert(s.at.max(0.0));
                }
            }
            Action::Restore { cameras } => {
                for c in cameras {
                    if let Some(start) = open.remove(c) {
                        let end = (s.at + RESTORE_LAG_S).min(window);
                        *out.entry(*c).or_default() += (end - start).max(0.0);
                    }
                }
            }
            Action::CaseDown | Action::CaseUp => {}
        }
    }
    for (c, start) in open {
        *out.entry(c).or_default() += (window - start).max(0.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FleetSpec {
        FleetSpec {
            alert_cameras: 3,
            analysis_fps: 0.5,
            keyframe_only: true,
            alert_fps: 2.0,
        }
    }

    #[test]
    fn soak_script_flaps_a_tenth_inside_the_fault_phase_and_restores_everything() {
        let cams = fleet(Kind::Soak, 103, &spec());
        let script = soak_script(&cams, 1800.0, 0.10, 300.0);
        let mut down = std::collections::BTreeMap::<u32, i32>::new();
        let mut touched = std::collections::BTreeSet::new();
        for s in &script {
            assert!(s.at >= 180.0 && s.at <= 0.85 * 1800.0 + 1e-6, "{s:?}");
            match &s.action {
                Action::Down { cameras } => cameras.iter().for_each(|c| {
                    touched.insert(*c);
                    *down.entry(*c).or_default() += 1;
                }),
                Action::Restore { cameras } => cameras
                    .iter()
                    .for_each(|c| *down.entry(*c).or_default() -= 1),
                _ => {}
            }
        }
        assert_eq!(touched.len(), 10, "10 % of the 100 cameras without rules");
        assert!(
            touched.iter().all(|c| *c > 3),
            "cameras with rules never flap"
        );
        assert!(down.values().all(|n| *n == 0), "all restored: {down:?}");
        let case: Vec<f64> = script
            .iter()
            .filter(|s| matches!(s.action, Action::CaseDown | Action::CaseUp))
            .map(|s| s.at)
            .collect();
        assert_eq!(case, [750.0, 1050.0]);
    }

    #[test]
    fn truth_adds_the_restore_lag_and_clips_to_the_window() {
        let a = |at: f64, action: Action| Applied {
            scheduled: at,
            at,
            action,
        };
        let applied = [
            a(
                10.0,
                Action::Down {
                    cameras: vec![4, 5],
                },
            ),
            a(30.0, Action::Restore { cameras: vec![4] }),
            a(95.0, Action::Down { cameras: vec![6] }),
        ];
        let t = expected_offline(&applied, 100.0);
        assert!((t[&4] - (20.0 + RESTORE_LAG_S)).abs() < 1e-9);
        assert!((t[&5] - 90.0).abs() < 1e-9);
        assert!((t[&6] - 5.0).abs() < 1e-9);
    }

    #[test]
    fn rules_are_copied_per_camera_and_validate() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo-rules.toml");
        let cams = fleet(Kind::Soak, 20, &spec());
        let with_rules: Vec<&str> = cams
            .iter()
            .filter(|c| c.alerts)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(with_rules, ["cam-00001", "cam-00002", "cam-00003"]);
        let text = rules_toml(&demo, &cams).expect("rules");
        let raw: crate::rules::RawRulesFile = toml::from_str(&text).expect("parses");
        assert_eq!(raw.rules.len(), 9);
        assert_eq!(raw.zones.len(), 3);
    }

    #[test]
    fn overload_has_few_cameras_at_the_top() {
        let count = |n: u32| {
            let mut c = [0u32; 5];
            for cam in fleet(Kind::Overload, n, &spec()) {
                c[usize::from(cam.priority) - 1] += 1;
            }
            c
        };
        assert_eq!(count(20), [1, 2, 4, 6, 7]);
        assert_eq!(count(5), [1, 1, 1, 1, 1]);
        assert_eq!(count(100), [5, 10, 20, 30, 35]);
        let with_rules = fleet(Kind::Overload, 20, &spec())
            .iter()
            .filter(|c| c.alerts)
            .count();
        assert_eq!(with_rules, 1, "the one priority-1 camera");
    }
}
