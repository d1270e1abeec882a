//! Rule configuration: raw serde shapes (`[[zones]]`, `[[rules]]`) → [`validate`] → typed [`Rule`]s,
//! with every problem reported at once as `rules[N].field…: message`. See `docs/rules.md`.
//!
//! Values that need a good message stay loose in the raw shapes (durations and enums as strings,
//! `zone` and `schedule` as TOML values, required fields as `Option`) so that `validate` can name the
//! field instead of serde stopping at the first type error.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::alert::{AlertType, Severity};
use super::geom::{self, Point};
use super::schedule::{DAY_NAMES, Schedule, Window, parse_hhmm};
use crate::config::{ConfigError, ConfigErrors};
use crate::time::parse_duration;
use crate::track::ObjectKind;

/// A rules document: named zones and rules (top-level keys of their own file, or of the main config).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRulesFile {
    /// `[[zones]]`: named polygons that rules on the same camera refer to by id.
    #[serde(default)]
    pub zones: Vec<RawZone>,
    /// `[[rules]]`: one table per rule.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// `[[zones]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Zone id, unique per camera; rules say `zone = "<id>"`.
    pub id: Option<String>,
    /// Camera id the zone belongs to.
    pub camera: Option<String>,
    /// Display name (e.g. "北门人行道"); default: the id.
    pub name: Option<String>,
    /// Polygon, at least 3 `[x, y]` points normalised to 0..1 of frame width/height, in order.
    pub polygon: Option<Vec<Vec<f64>>>,
}

/// `[[rules]]`: all keys any rule kind may use; `validate` says which apply to which kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Rule id, unique across the file (`[A-Za-z0-9_.-]`); alerts carry it.
    pub id: Option<String>,
    /// Display name used in alert text; default: the id.
    pub name: Option<String>,
    /// Camera id.
    pub camera: Option<String>,
    /// intrusion | tripwire | loitering | gathering | running | fighting | fall | scene_anomaly.
    pub kind: Option<String>,
    /// false keeps the rule validated but silent; default true.
    pub enabled: Option<bool>,
    /// Zone: an inline polygon `[[x, y], …]` (normalised) or the id of a `[[zones]]` entry.
    pub zone: Option<toml::Value>,
    /// Tripwire line: two `[x, y]` points (normalised), a then b.
    pub line: Option<Vec<Vec<f64>>>,
    /// Tripwire direction: a_to_b | b_to_a | both (default both); see docs/rules.md.
    pub direction: Option<String>,
    /// Object kinds the rule watches: person | fallen_person | vehicle | other; default ["person"].
    pub objects: Option<Vec<String>>,
    /// low | medium | high | critical; default depends on the kind.
    pub severity: Option<String>,
    /// "always" (default), one window `{ days = [...], from = "HH:MM", to = "HH:MM" }`, or a list.
    pub schedule: Option<toml::Value>,
    /// Least time between two alerts with the same dedup key, e.g. "30s".
    pub cooldown: Option<String>,
    /// How long the condition must be false before the same track (or rule) can fire again.
    pub rearm: Option<String>,
    /// Route alerts of this rule to police dispatch; default false.
    pub dispatch: Option<bool>,
    /// Ignore tracks whose last detection scored below this (0..1); default 0.
    pub min_score: Option<f64>,
    /// Ignore boxes smaller than this fraction of the frame area (0..1); default 0.
    pub min_area: Option<f64>,
    /// Ignore boxes larger than this fraction of the frame area (0..1); default 1.
    pub max_area: Option<f64>,
    /// Polygons (normalised) where objects are ignored; an object is inside if its foot point is.
    pub masks: Option<Vec<Vec<Vec<f64>>>>,
    /// Loitering: least stay in the zone, e.g. "60s" (required).
    pub dwell: Option<String>,
    /// Gathering: least number of people in the zone (≥ 2, required).
    pub min_count: Option<i64>,
    /// Gathering / fall: how long the condition must hold (default "10s" / "3s").
    pub hold: Option<String>,
    /// Running: least speed in box heights per second (required, > 0).
    pub min_speed: Option<f64>,
    /// Running / scene anomaly: consecutive samples over threshold (default 2 / 3).
    pub samples: Option<i64>,
    /// Scene anomaly: score threshold (required, > 0).
    pub threshold: Option<f64>,
}

/// What `validate` needs to know about the rest of the configuration.
#[derive(Debug, Clone, Default)]
pub struct ValidateContext {
    /// Camera ids that exist; `None` skips the check (rules file checked on its own).
    pub known_cameras: Option<BTreeSet<String>>,
    /// An action-recognition model is configured (needed by `fighting`).
    pub action_model: bool,
    /// A scene-anomaly model is configured (needed by `scene_anomaly`).
    pub anomaly_model: bool,
    /// Something sees fallen people: a detector that labels them, or the fall pass (needed by `fall`).
    pub fall_model: bool,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// Display name (the id when none was given).
    pub name: String,
    /// Camera id.
    pub camera: String,
    /// False: validated but never evaluated.
    pub enabled: bool,
    /// What the rule detects, with its geometry and thresholds.
    pub kind: RuleKind,
    /// Severity of its alerts.
    pub severity: Severity,
    /// When it may fire.
    pub schedule: Schedule,
    /// Least seconds between two alerts with the same dedup key.
    pub cooldown_s: f64,
    /// Seconds the condition must be false before the key re-arms.
    pub rearm_s: f64,
    /// Alerts ask for police dispatch.
    pub dispatch: bool,
    /// Which tracks the rule looks at.
    pub filter: ObjectFilter,
}

/// A zone polygon, normalised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    /// Id of the `[[zones]]` entry, `None` for an inline polygon.
    pub id: Option<String>,
    /// Points in order around the zone, normalised 0..1.
    pub points: Vec<Point>,
}

/// Which way across a tripwire counts. Side A is the left of the line a → b as seen on screen,
/// side B its right (a horizontal line drawn left to right: A above, B below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From side A (left) to side B (right).
    AToB,
    /// From side B (right) to side A (left).
    BToA,
    /// Either way.
    Both,
}

/// Kind-specific part of a rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// Fires once per track entry into the zone.
    Intrusion {
        /// The forbidden zone.
        zone: Zone,
    },
    /// Fires once per crossing in the configured direction.
    Tripwire {
        /// Points a and b.
        line: [Point; 2],
        /// Which way counts.
        direction: Direction,
    },
    /// Fires once per stay of at least `dwell_s`.
    Loitering {
        /// The watched zone.
        zone: Zone,
        /// Least stay, seconds.
        dwell_s: f64,
    },
    /// Fires once per episode of ≥ `min_count` people for ≥ `hold_s`.
    Gathering {
        /// The watched zone.
        zone: Zone,
        /// Least number of people.
        min_count: u32,
        /// Least duration, seconds.
        hold_s: f64,
    },
    /// Fires once per running episode of a track.
    Running {
        /// Only inside this zone, when given.
        zone: Option<Zone>,
        /// Least speed, box heights per second.
        min_speed: f32,
        /// Least number of samples over the speed.
        min_samples: u32,
    },
    /// Validated but inert until an action model provides fighting labels.
    Fighting {
        /// Only inside this zone, when given.
        zone: Option<Zone>,
    },
    /// Fires once per fall of a track held ≥ `hold_s`.
    Fall {
        /// Only inside this zone, when given.
        zone: Option<Zone>,
        /// Least time in the fallen state, seconds.
        hold_s: f64,
    },
    /// Fires once per run of ≥ `samples` anomaly scores ≥ `threshold`.
    SceneAnomaly {
        /// Score threshold.
        threshold: f32,
        /// Consecutive samples needed.
        samples: u32,
    },
}

impl RuleKind {
    /// The alert type this rule raises.
    pub fn alert_type(&self) -> AlertType {
        match self {
            RuleKind::Intrusion { .. } => AlertType::Intrusion,
            RuleKind::Tripwire { .. } => AlertType::Tripwire,
            RuleKind::Loitering { .. } => AlertType::Loitering,
            RuleKind::Gathering { .. } => AlertType::Gathering,
            RuleKind::Running { .. } => AlertType::Running,
            RuleKind::Fighting { .. } => AlertType::Fighting,
            RuleKind::Fall { .. } => AlertType::Fall,
            RuleKind::SceneAnomaly { .. } => AlertType::SceneAnomaly,
        }
    }

    /// The zone, if the rule has one.
    pub fn zone(&self) -> Option<&Zone> {
        match self {
            RuleKind::Intrusion { zone }
            | RuleKind::Loitering { zone, .. }
            | RuleKind::Gathering { zone, .. } => Some(zone),
            RuleKind::Running { zone, .. }
            | RuleKind::Fighting { zone }
            | RuleKind::Fall { zone, .. } => zone.as_ref(),
            RuleKind::Tripwire { .. } | RuleKind::SceneAnomaly { .. } => None,
        }
    }
}

/// Per-rule object filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectFilter {
    /// Kinds watched; `person` also matches `fallen_person`.
    pub objects: Vec<ObjectKind>,
    /// Least track score.
    pub min_score: f32,
    /// Least box area, fraction of the frame.
    pub min_area: f32,
    /// Greatest box area, fraction of the frame.
    pub max_area: f32,
    /// Polygons (normalised) where objects are ignored, tested at the foot point.
    pub masks: Vec<Vec<Point>>,
}

impl Default for ObjectFilter {
    fn default() -> Self {
        ObjectFilter {
            objects: vec![ObjectKind::Person],
            min_score: 0.0,
            min_area: 0.0,
            max_area: 1.0,
            masks: Vec::new(),
        }
    }
}

/// Validated rules of every camera, in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RulesConfig {
    /// All rules.
    pub rules: Vec<Rule>,
}

impl RulesConfig {
    /// The cameras that have at least one rule.
    pub fn cameras(&self) -> std::collections::BTreeSet<String> {
        self.rules.iter().map(|r| r.camera.clone()).collect()
    }

    /// Rules grouped by camera id, file order kept within each camera.
    pub fn by_camera(&self) -> BTreeMap<String, Vec<Rule>> {
        let mut out: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        for r in &self.rules {
            out.entry(r.camera.clone()).or_default().push(r.clone());
        }
        out
    }
}

/// Reads a rules TOML document element by element, so one malformed rule does not hide the others,
/// then validates it.
pub fn parse_toml(text: &str, ctx: &ValidateContext) -> Result<RulesConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let mut skip = Skip::default();
    let raw = read_toml_inner(text, &mut errors, &mut skip)
        .ok_or_else(|| ConfigErrors(errors.clone()))?;
    match validate_inner(&raw, ctx, &skip) {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

/// Entries that failed to deserialise: left as defaults to keep indices, not validated again.
#[derive(Debug, Default)]
struct Skip {
    zones: HashSet<usize>,
    rules: HashSet<usize>,
}

/// Deserialises what it can; `None` only for a syntax error (nothing after it can be trusted).
/// An entry that fails to deserialise is reported and left as an empty default in its place.
pub fn read_toml(text: &str, errors: &mut Vec<ConfigError>) -> Option<RawRulesFile> {
    read_toml_inner(text, errors, &mut Skip::default())
}

fn read_toml_inner(
    text: &str,
    errors: &mut Vec<ConfigError>,
    skip: &mut Skip,
) -> Option<RawRulesFile> {
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(
                "rules",
                e.to_string().trim_end().replace('\n', " "),
            ));
            return None;
        }
    };
    let mut raw = RawRulesFile::default();
    for (key, value) in table {
        match key.as_str() {
            "zones" => raw.zones = read_array(&key, value, errors, &mut skip.zones),
            "rules" => raw.rules = read_array(&key, value, errors, &mut skip.rules),
            other => errors.push(ConfigError::new(
                other,
                "unknown key; a rules file has only [[zones]] and [[rules]]",
            )),
        }
    }
    Some(raw)
}

fn read_array<T: for<'de> Deserialize<'de> + Default>(
    key: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
    failed: &mut HashSet<usize>,
) -> Vec<T> {
    let toml::Value::Array(items) = value else {
        errors.push(ConfigError::new(
            key,
            format!("expected an array of tables ([[{key}]])"),
        ));
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            item.try_into::<T>().unwrap_or_else(|e| {
                errors.push(ConfigError::new(
                    format!("{key}[{i}]"),
                    e.to_string().trim_end().replace('\n', " "),
                ));
                // Keep the index so later paths still count from the file.
                failed.insert(i);
                T::default()
            })
        })
        .collect()
}

/// Kinds a rule may have, with the `kind` spellings.
const RULE_KINDS: [AlertType; 8] = [
    AlertType::Intrusion,
    AlertType::Tripwire,
    AlertType::Loitering,
    AlertType::Gathering,
    AlertType::Running,
    AlertType::Fighting,
    AlertType::Fall,
    AlertType::SceneAnomaly,
];

/// Whether an optional key applies to a rule kind.
fn applies(kind: AlertType, field: &str) -> bool {
    use AlertType as A;
    let tracks = !matches!(kind, A::SceneAnomaly);
    match field {
        "zone" => !matches!(kind, A::Tripwire | A::SceneAnomaly),
        "line" | "direction" => kind == A::Tripwire,
        "objects" | "min_score" | "min_area" | "max_area" | "masks" => tracks,
        "rearm" => kind != A::Tripwire,
        "dwell" => kind == A::Loitering,
        "min_count" => kind == A::Gathering,
        "hold" => matches!(kind, A::Gathering | A::Fall),
        "min_speed" => kind == A::Running,
        "samples" => matches!(kind, A::Running | A::SceneAnomaly),
        "threshold" => kind == A::SceneAnomaly,
        _ => true,
    }
}

fn default_severity(kind: AlertType) -> Severity {
    match kind {
        AlertType::Intrusion | AlertType::Gathering | AlertType::Fighting | AlertType::Fall => {
            Severity::High
        }
        AlertType::VideoFault | AlertType::DeviceAlarm => Severity::Low,
        _ => Severity::Medium,
    }
}

/// Default (cooldown, rearm) seconds by kind.
fn default_timing(kind: AlertType) -> (f64, f64) {
    match kind {
        AlertType::Tripwire => (10.0, 0.0),
        AlertType::Running => (30.0, 3.0),
        AlertType::SceneAnomaly => (60.0, 0.0),
        _ => (30.0, 5.0),
    }
}

struct Ctx<'a> {
    errors: Vec<ConfigError>,
    zones: BTreeMap<(String, String), Zone>,
    /// (camera, zone id) of zones refused for their polygon: a rule naming one is not told again
    /// that the zone does not exist.
    rejected: HashSet<(String, String)>,
    vctx: &'a ValidateContext,
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(path, msg));
    }
}

/// Turns raw rules into typed ones, or lists every problem with its field path.
pub fn validate(raw: &RawRulesFile, vctx: &ValidateContext) -> Result<RulesConfig, ConfigErrors> {
    validate_inner(raw, vctx, &Skip::default())
}

fn validate_inner(
    raw: &RawRulesFile,
    vctx: &ValidateContext,
    skip: &Skip,
) -> Result<RulesConfig, ConfigErrors> {
    let mut cx = Ctx {
        errors: Vec::new(),
        zones: BTreeMap::new(),
        rejected: HashSet::new(),
        vctx,
    };

    for (i, z) in raw.zones.iter().enumerate() {
        if skip.zones.contains(&i) {
            continue;
        }
        let path = format!("zones[{i}]");
        let id = required_id(&mut cx, &path, "id", z.id.as_deref());
        let camera = camera_ref(&mut cx, &path, z.camera.as_deref());
        let points = match &z.polygon {
            Some(p) => polygon(&mut cx, &format!("{path}.polygon"), p),
            None => {
                cx.err(format!("{path}.polygon"), "missing; a zone needs a polygon");
                None
            }
        };
        if let (Some(id), Some(camera), None) = (&id, &camera, &points) {
            cx.rejected.insert((camera.clone(), id.clone()));
        }
        if let (Some(id), Some(camera), Some(points)) = (id, camera, points) {
            match cx.zones.entry((camera.clone(), id.clone())) {
                std::collections::btree_map::Entry::Occupied(_) => cx.err(
                    format!("{path}.id"),
                    format!("duplicate zone id {id:?} on camera {camera:?}"),
                ),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(Zone {
                        id: Some(id),
                        points,
                    });
                }
            }
        }
    }

    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        if skip.rules.contains(&i) {
            continue;
        }
        let path = format!("rules[{i}]");
        if let Some(id) = r.id.as_deref()
            && !seen_ids.insert(id.to_string())
        {
            cx.err(format!("{path}.id"), format!("duplicate rule id {id:?}"));
        }
        if let Some(rule) = rule(&mut cx, &path, r) {
            rules.push(rule);
        }
    }

    if cx.errors.is_empty() {
        Ok(RulesConfig { rules })
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

fn required_id(cx: &mut Ctx<'_>, path: &str, field: &str, v: Option<&str>) -> Option<String> {
    match v {
        None => {
            cx.err(format!("{path}.{field}"), "missing");
            None
        }
        Some(s)
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
        {
            cx.err(
                format!("{path}.{field}"),
                format!("{s:?} is not a valid id; use letters, digits, '_', '-' and '.'"),
            );
            None
        }
        Some(s) => Some(s.to_string()),
    }
}

fn camera_ref(cx: &mut Ctx<'_>, path: &str, v: Option<&str>) -> Option<String> {
    let cam = match v {
        None | Some("") => {
            cx.err(format!("{path}.camera"), "missing");
            return None;
        }
        Some(c) => c,
    };
    if let Some(known) = &cx.vctx.known_cameras
        && !known.contains(cam)
    {
        cx.err(format!("{path}.camera"), format!("unknown camera {cam:?}"));
        return None;
    }
    Some(cam.to_string())
}

fn rule(cx: &mut Ctx<'_>, path: &str, r: &RawRule) -> Option<Rule> {
    let id = required_id(cx, path, "id", r.id.as_deref());
    let camera = camera_ref(cx, path, r.camera.as_deref());
    let kind = match r.kind.as_deref() {
        None => {
            cx.err(format!("{path}.kind"), "missing");
            None
        }
        Some("video_fault") => {
            cx.err(
                format!("{path}.kind"),
                "video_fault alerts come from camera health, not from rules",
            );
            None
        }
        Some(k) => match AlertType::parse(k).filter(|a| RULE_KINDS.contains(a)) {
            Some(a) => Some(a),
            None => {
                let names: Vec<&str> = RULE_KINDS.iter().map(|a| a.as_str()).collect();
                cx.err(
                    format!("{path}.kind"),
                    format!("unknown kind {k:?}; expected one of {}", names.join(", ")),
                );
                None
            }
        },
    };
    // Without a kind nothing else can be judged; the errors above say why.
    let kind = kind?;

    if kind == AlertType::Fighting && !cx.vctx.action_model {
        cx.err(
            format!("{path}.kind"),
            "fighting needs an action model, and no action-recognition model is configured; \
             add one or remove this rule",
        );
    }
    if kind == AlertType::Fall && !cx.vctx.fall_model {
        cx.err(
            format!("{path}.kind"),
            "fall needs a model that sees fallen people, and none is configured: set \
             [inference] fall_model = \"models/person_fall.toml\" (scripts/setup fetches it unless \
             QIANLIYAN_FALL_MODEL=0), or remove this rule",
        );
    }
    if kind == AlertType::SceneAnomaly && !cx.vctx.anomaly_model {
        cx.err(
            format!("{path}.kind"),
            "scene_anomaly needs an anomaly model, and none is configured",
        );
    }

    let present = [
        ("zone", r.zone.is_some()),
        ("line", r.line.is_some()),
        ("direction", r.direction.is_some()),
        ("objects", r.objects.is_some()),
        ("min_score", r.min_score.is_some()),
        ("min_area", r.min_area.is_some()),
        ("max_area", r.max_area.is_some()),
        ("masks", r.masks.is_some()),
        ("rearm", r.rearm.is_some()),
        ("dwell", r.dwell.is_some()),
        ("min_count", r.min_count.is_some()),
        ("hold", r.hold.is_some()),
        ("min_speed", r.min_speed.is_some()),
        ("samples", r.samples.is_some()),
        ("threshold", r.threshold.is_some()),
    ];
    for (field, is) in present {
        if is && !applies(kind, field) {
            cx.err(
                format!("{path}.{field}"),
                format!("does not apply to {} rules", kind.as_str()),
            );
        }
    }

    let severity = match r.severity.as_deref() {
        None => Some(default_severity(kind)),
        Some(s) => Severity::parse(s).or_else(|| {
            cx.err(
                format!("{path}.severity"),
                format!("unknown severity {s:?}; expected low, medium, high or critical"),
            );
            None
        }),
    };
    let schedule = match &r.schedule {
        None => Some(Schedule::Always),
        Some(v) => schedule(cx, &format!("{path}.schedule"), v),
    };
    let (def_cooldown, def_rearm) = default_timing(kind);
    let cooldown_s = duration(
        cx,
        path,
        "cooldown",
        r.cooldown.as_deref(),
        def_cooldown,
        true,
    );
    let rearm_s = duration(cx, path, "rearm", r.rearm.as_deref(), def_rearm, true);
    let filter = filter(cx, path, kind, r);

    let zone_of = |cx: &mut Ctx<'_>, camera: &Option<String>| -> Option<Zone> {
        let v = r.zone.as_ref()?;
        zone_value(cx, &format!("{path}.zone"), camera.as_deref(), v)
    };
    let zone_required = |cx: &mut Ctx<'_>, camera: &Option<String>| -> Option<Zone> {
        if r.zone.is_none() {
            cx.err(
                format!("{path}.zone"),
                format!("missing; {} rules need a zone", kind.as_str()),
            );
            return None;
        }
        zone_of(cx, camera)
    };

    let rk = match kind {
        AlertType::Intrusion => zone_required(cx, &camera).map(|zone| RuleKind::Intrusion { zone }),
        AlertType::Tripwire => {
            let line = match &r.line {
                None => {
                    cx.err(
                        format!("{path}.line"),
                        "missing; a tripwire needs a line of 2 points",
                    );
                    None
                }
                Some(l) => line(cx, &format!("{path}.line"), l),
            };
            let direction = match r.direction.as_deref() {
                None | Some("both") => Some(Direction::Both),
                Some("a_to_b") => Some(Direction::AToB),
                Some("b_to_a") => Some(Direction::BToA),
                Some(d) => {
                    cx.err(
                        format!("{path}.direction"),
                        format!("unknown direction {d:?}; expected a_to_b, b_to_a or both"),
                    );
                    None
                }
            };
            match (line, direction) {
                (Some(line), Some(direction)) => Some(RuleKind::Tripwire { line, direction }),
                _ => None,
            }
        }
        AlertType::Loitering => {
            let zone = zone_required(cx, &camera);
            let dwell = match r.dwell.as_deref() {
                None => {
                    cx.err(format!("{path}.dwell"), "missing; e.g. dwell = \"60s\"");
                    None
                }
                Some(_) => duration(cx, path, "dwell", r.dwell.as_deref(), 0.0, false),
            };
            match (zone, dwell) {
                (Some(zone), Some(dwell_s)) => Some(RuleKind::Loitering { zone, dwell_s }),
                _ => None,
            }
        }
        AlertType::Gathering => {
            let zone = zone_required(cx, &camera);
            let min_count = match r.min_count {
                None => {
                    cx.err(format!("{path}.min_count"), "missing; e.g. min_count = 5");
                    None
                }
                Some(n) if (2..=10_000).contains(&n) => Some(n as u32),
                Some(n) => {
                    cx.err(
                        format!("{path}.min_count"),
                        format!("{n} must be between 2 and 10000"),
                    );
                    None
                }
            };
            let hold_s = duration(cx, path, "hold", r.hold.as_deref(), 10.0, true);
            match (zone, min_count, hold_s) {
                (Some(zone), Some(min_count), Some(hold_s)) => Some(RuleKind::Gathering {
                    zone,
                    min_count,
                    hold_s,
                }),
                _ => None,
            }
        }
        AlertType::Running => {
            let zone = zone_of(cx, &camera);
            let zone_ok = r.zone.is_none() || zone.is_some();
            let min_speed = match r.min_speed {
                None => {
                    cx.err(
                        format!("{path}.min_speed"),
                        "missing; e.g. min_speed = 2.0 (box heights per second)",
                    );
                    None
                }
                Some(v) if v.is_finite() && v > 0.0 && v <= 1000.0 => Some(v as f32),
                Some(v) => {
                    cx.err(
                        format!("{path}.min_speed"),
                        format!("{v} must be greater than 0 (box heights per second)"),
                    );
                    None
                }
            };
            let samples = count(cx, path, "samples", r.samples, 2);
            match (zone_ok, min_speed, samples) {
                (true, Some(min_speed), Some(min_samples)) => Some(RuleKind::Running {
                    zone,
                    min_speed,
                    min_samples,
                }),
                _ => None,
            }
        }
        AlertType::Fighting => {
            let zone = zone_of(cx, &camera);
            (r.zone.is_none() || zone.is_some()).then_some(RuleKind::Fighting { zone })
        }
        AlertType::Fall => {
            let zone = zone_of(cx, &camera);
            let hold_s = duration(cx, path, "hold", r.hold.as_deref(), 3.0, true);
            match (r.zone.is_none() || zone.is_some(), hold_s) {
                (true, Some(hold_s)) => Some(RuleKind::Fall { zone, hold_s }),
                _ => None,
            }
        }
        AlertType::SceneAnomaly => {
            let threshold = match r.threshold {
                None => {
                    cx.err(format!("{path}.threshold"), "missing; e.g. threshold = 0.7");
                    None
                }
                Some(v) if v.is_finite() && v > 0.0 => Some(v as f32),
                Some(v) => {
                    cx.err(
                        format!("{path}.threshold"),
                        format!("{v} must be greater than 0"),
                    );
                    None
                }
            };
            let samples = count(cx, path, "samples", r.samples, 3);
            match (threshold, samples) {
                (Some(threshold), Some(samples)) => {
                    Some(RuleKind::SceneAnomaly { threshold, samples })
                }
                _ => None,
            }
        }
        // Not rule kinds (refused above): camera health and devices raise them.
        AlertType::VideoFault
        | AlertType::LeftObject
        | AlertType::ObjectRemoved
        | AlertType::Retrograde
        | AlertType::DeviceAlarm => None,
    };

    let id = id?;
    Some(Rule {
        name: r
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| id.clone()),
        id,
        camera: camera?,
        enabled: r.enabled.unwrap_or(true),
        kind: rk?,
        severity: severity?,
        schedule: schedule?,
        cooldown_s: cooldown_s?,
        rearm_s: rearm_s?,
        dispatch: r.dispatch.unwrap_or(false),
        filter: filter?,
    })
}

fn duration(
    cx: &mut Ctx<'_>,
    path: &str,
    field: &str,
    v: Option<&str>,
    default_s: f64,
    zero_ok: bool,
) -> Option<f64> {
    let Some(s) = v else {
        return Some(default_s);
    };
    match parse_duration(s) {
        Ok(d) if d.is_zero() && !zero_ok => {
            cx.err(
                format!("{path}.{field}"),
                format!("{s:?} must be longer than 0s"),
            );
            None
        }
        Ok(d) => Some(d.as_secs_f64()),
        Err(e) => {
            cx.err(format!("{path}.{field}"), e);
            None
        }
    }
}

fn count(cx: &mut Ctx<'_>, path: &str, field: &str, v: Option<i64>, default: u32) -> Option<u32> {
    match v {
        None => Some(default),
        Some(n) if (1..=10_000).contains(&n) => Some(n as u32),
        Some(n) => {
            cx.err(
                format!("{path}.{field}"),
                format!("{n} must be between 1 and 10000"),
            );
            None
        }
    }
}

fn filter(cx: &mut Ctx<'_>, path: &str, kind: AlertType, r: &RawRule) -> Option<ObjectFilter> {
    let mut ok = true;
    let objects = match (&r.objects, kind) {
        (None, AlertType::Fall) => vec![ObjectKind::FallenPerson],
        (None, _) => vec![ObjectKind::Person],
        (Some(list), _) if list.is_empty() => {
            cx.err(
                format!("{path}.objects"),
                "empty; list at least one object kind",
            );
            ok = false;
            Vec::new()
        }
        (Some(list), _) => {
            let mut out = Vec::new();
            for (j, name) in list.iter().enumerate() {
                match ObjectKind::parse(name) {
                    Some(k) if kind == AlertType::Fall && k != ObjectKind::FallenPerson => {
                        cx.err(
                            format!("{path}.objects[{j}]"),
                            format!("fall rules watch only fallen_person, not {name:?}"),
                        );
                        ok = false;
                    }
                    Some(k) => out.push(k),
                    None => {
                        cx.err(
                            format!("{path}.objects[{j}]"),
                            format!(
                                "unknown object kind {name:?}; expected person, fallen_person, vehicle or other"
                            ),
                        );
                        ok = false;
                    }
                }
            }
            out
        }
    };
    let mut fraction = |field: &str, v: Option<f64>, default: f32| -> f32 {
        match v {
            None => default,
            Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => x as f32,
            Some(x) => {
                cx.err(format!("{path}.{field}"), format!("{x} is outside 0..1"));
                ok = false;
                default
            }
        }
    };
    let min_score = fraction("min_score", r.min_score, 0.0);
    let min_area = fraction("min_area", r.min_area, 0.0);
    let max_area = fraction("max_area", r.max_area, 1.0);
    if min_area >= max_area {
        cx.err(
            format!("{path}.max_area"),
            format!("{max_area} must be greater than min_area {min_area}"),
        );
        ok = false;
    }
    let mut masks = Vec::new();
    for (j, m) in r.masks.iter().flatten().enumerate() {
        match polygon(cx, &format!("{path}.masks[{j}]"), m) {
            Some(p) => masks.push(p),
            None => ok = false,
        }
    }
    ok.then_some(ObjectFilter {
        objects,
        min_score,
        min_area,
        max_area,
        masks,
    })
}

fn points(cx: &mut Ctx<'_>, path: &str, raw: &[Vec<f64>]) -> Option<Vec<Point>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, p) in raw.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let [x, y] = p.as_slice() else {
            cx.err(at, format!("a point is [x, y]; got {} numbers", p.len()));
            ok = false;
            continue;
        };
        for (axis, v) in [("x", *x), ("y", *y)] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                cx.err(
                    at.clone(),
                    format!("{axis} {v} is outside 0..1 (coordinates are fractions of the frame)"),
                );
                ok = false;
            }
        }
        out.push([*x as f32, *y as f32]);
    }
    ok.then_some(out)
}

fn polygon(cx: &mut Ctx<'_>, path: &str, raw: &[Vec<f64>]) -> Option<Vec<Point>> {
    let pts = points(cx, path, raw);
    if raw.len() < 3 {
        cx.err(
            path,
            format!("a polygon needs at least 3 points, got {}", raw.len()),
        );
        return None;
    }
    let pts = pts?;
    if let Some((a, b)) = geom::self_intersection(&pts) {
        cx.err(
            path,
            format!("edges {a} and {b} cross each other; list the points in order around the zone"),
        );
        return None;
    }
    if geom::polygon_area(&pts) < 1e-6 {
        cx.err(path, "the polygon has no area (its points are on one line)");
        return None;
    }
    Some(pts)
}

fn line(cx: &mut Ctx<'_>, path: &str, raw: &[Vec<f64>]) -> Option<[Point; 2]> {
    let pts = points(cx, path, raw);
    if raw.len() != 2 {
        cx.err(
            path,
            format!("a tripwire is exactly 2 points, got {}", raw.len()),
        );
        return None;
    }
    let pts = pts?;
    let (a, b) = (pts[0], pts[1]);
    if (a[0] - b[0]).abs() < 1e-4 && (a[1] - b[1]).abs() < 1e-4 {
        cx.err(path, "the two points are the same");
        return None;
    }
    Some([a, b])
}

fn zone_value(cx: &mut Ctx<'_>, path: &str, camera: Option<&str>, v: &toml::Value) -> Option<Zone> {
    match v {
        toml::Value::String(name) => {
            let camera = camera?;
            if let Some(z) = cx.zones.get(&(camera.to_string(), name.clone())) {
                return Some(z.clone());
            }
            if cx.rejected.contains(&(camera.to_string(), name.clone())) {
                // Its own error (at zones[i]) says what is wrong with it.
                return None;
            }
            let on_camera: Vec<&str> = cx
                .zones
                .keys()
                .filter(|(c, _)| c == camera)
                .map(|(_, z)| z.as_str())
                .collect();
            let hint = if on_camera.is_empty() {
                format!("camera {camera:?} has no [[zones]]")
            } else {
                format!("zones of camera {camera:?}: {}", on_camera.join(", "))
            };
            cx.err(path, format!("unknown zone {name:?}; {hint}"));
            None
        }
        toml::Value::Array(items) => {
            let mut raw = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let nums: Option<Vec<f64>> = match item {
                    toml::Value::Array(xy) => xy
                        .iter()
                        .map(|n| match n {
                            toml::Value::Float(f) => Some(*f),
                            toml::Value::Integer(i) => Some(*i as f64),
                            _ => None,
                        })
                        .collect(),
                    _ => None,
                };
                match nums {
                    Some(n) => raw.push(n),
                    None => {
                        cx.err(format!("{path}[{i}]"), "a point is [x, y] with two numbers");
                        ok = false;
                    }
                }
            }
            let poly = polygon(cx, path, &raw);
            if ok {
                poly.map(|points| Zone { id: None, points })
            } else {
                None
            }
        }
        other => {
            cx.err(
                path,
                format!(
                    "expected a polygon [[x, y], …] or the id of a [[zones]] entry, got a {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

fn schedule(cx: &mut Ctx<'_>, path: &str, v: &toml::Value) -> Option<Schedule> {
    match v {
        toml::Value::String(s) if s == "always" => Some(Schedule::Always),
        toml::Value::Table(t) => window(cx, path, t).map(|w| Schedule::Windows(vec![w])),
        toml::Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                match item {
                    toml::Value::Table(t) => match window(cx, &at, t) {
                        Some(w) => out.push(w),
                        None => ok = false,
                    },
                    _ => {
                        cx.err(
                            at,
                            "expected a window { days = [...], from = \"HH:MM\", to = \"HH:MM\" }",
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(Schedule::Windows(out))
        }
        _ => {
            cx.err(
                path,
                "expected \"always\", a window { days = [\"mon\", …], from = \"22:00\", to = \"06:00\" }, \
                 or a list of windows",
            );
            None
        }
    }
}

fn window(cx: &mut Ctx<'_>, path: &str, t: &toml::Table) -> Option<Window> {
    let mut ok = true;
    for key in t.keys() {
        if !matches!(key.as_str(), "days" | "from" | "to") {
            cx.err(
                format!("{path}.{key}"),
                "unknown key; a window has days, from and to",
            );
            ok = false;
        }
    }
    let mut days = [false; 7];
    match t.get("days") {
        None => days = [true; 7],
        Some(toml::Value::Array(list)) if !list.is_empty() => {
            for (i, d) in list.iter().enumerate() {
                match d
                    .as_str()
                    .and_then(|s| DAY_NAMES.iter().position(|n| *n == s))
                {
                    Some(k) => days[k] = true,
                    None => {
                        cx.err(
                            format!("{path}.days[{i}]"),
                            format!("{d} is not a day; use {}", DAY_NAMES.join(", ")),
                        );
                        ok = false;
                    }
                }
            }
        }
        Some(_) => {
            cx.err(
                format!("{path}.days"),
                "expected a non-empty list such as [\"mon\", \"tue\"]; omit it for every day",
            );
            ok = false;
        }
    }
    let mut time = |key: &str, allow_24: bool| -> Option<Option<u16>> {
        match t.get(key) {
            None => Some(None),
            Some(toml::Value::String(s)) => match parse_hhmm(s, allow_24) {
                Ok(m) => Some(Some(m)),
                Err(e) => {
                    cx.err(format!("{path}.{key}"), e);
                    None
                }
            },
            Some(other) => {
                cx.err(
                    format!("{path}.{key}"),
                    format!("expected a time string \"HH:MM\", got {other}"),
                );
                None
            }
        }
    };
    let from = time("from", false);
    let to = time("to", true);
    let (from_min, to_min) = match (from?, to?) {
        (None, None) => (0, 1440),
        (Some(f), Some(t)) if f == t => {
            cx.err(
                path,
                "from and to are the same time; omit both for the whole day",
            );
            return None;
        }
        (Some(f), Some(t)) => (f, t),
        _ => {
            cx.err(path, "give both from and to, or neither for the whole day");
            return None;
        }
    };
    ok.then_some(Window {
        days,
        from_min,
        to_min,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ValidateContext {
        ValidateContext {
            known_cameras: Some(["c1".to_string(), "c2".to_string()].into()),
            action_model: false,
            anomaly_model: true,
            fall_model: true,
        }
    }

    fn errors(text: &str) -> Vec<String> {
        parse_toml(text, &ctx())
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_full_file_parses() {
        let text = r#"
[[zones]]
id = "footpath"
camera = "c1"
name = "人行道"
polygon = [[0.1, 0.5], [0.5, 0.5], [0.5, 0.9], [0.1, 0.9]]

[[rules]]
id = "gate-intrusion"
camera = "c1"
kind = "intrusion"
zone = [[0.1, 0.5], [0.5, 0.5], [0.5, 0.9], [0.1, 0.9]]
objects = ["person", "vehicle"]
severity = "high"
schedule = { days = ["mon", "tue", "wed", "thu", "fri"], from = "22:00", to = "06:00" }
cooldown = "30s"
dispatch = true

[[rules]]
id = "footpath-loiter"
camera = "c1"
kind = "loitering"
zone = "footpath"
dwell = "2m"
min_area = 0.001
masks = [[[0, 0], [0.1, 0], [0.1, 0.1]]]

[[rules]]
id = "line"
camera = "c2"
kind = "tripwire"
line = [[0.0, 0.6], [1.0, 0.6]]
direction = "a_to_b"
schedule = [{ days = ["sat", "sun"] }, { from = "00:00", to = "24:00" }]

[[rules]]
id = "crowd"
camera = "c1"
kind = "gathering"
zone = "footpath"
min_count = 5
hold = "30s"

[[rules]]
id = "run"
camera = "c1"
kind = "running"
min_speed = 2.5

[[rules]]
id = "fall"
camera = "c1"
kind = "fall"
hold = "5s"
min_area = 0.002

[[rules]]
id = "cover"
camera = "c2"
kind = "scene_anomaly"
threshold = 0.7
samples = 4
"#;
        let cfg = parse_toml(text, &ctx()).unwrap();
        assert_eq!(cfg.rules.len(), 7);
        let r = &cfg.rules[0];
        assert_eq!(
            (r.severity, r.cooldown_s, r.dispatch),
            (Severity::High, 30.0, true)
        );
        assert_eq!(
            r.filter.objects,
            vec![ObjectKind::Person, ObjectKind::Vehicle]
        );
        let Schedule::Windows(w) = &r.schedule else {
            panic!()
        };
        assert_eq!((w[0].from_min, w[0].to_min), (22 * 60, 6 * 60));
        assert_eq!(
            cfg.rules[1].kind.zone().unwrap().id.as_deref(),
            Some("footpath")
        );
        assert_eq!(
            cfg.rules[1].kind,
            RuleKind::Loitering {
                zone: cfg.rules[1].kind.zone().unwrap().clone(),
                dwell_s: 120.0
            }
        );
        assert_eq!(cfg.rules[5].filter.objects, vec![ObjectKind::FallenPerson]);
        assert_eq!(cfg.by_camera()["c2"].len(), 2);
    }

    /// A zone refused for its polygon is reported once, at the zone; a rule naming it is not also
    /// told that the camera has no such zone.
    #[test]
    fn a_rejected_zone_is_reported_once() {
        let text = r#"
[[zones]]
id = "bow"
camera = "c1"
polygon = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]

[[rules]]
id = "in"
camera = "c1"
kind = "intrusion"
zone = "bow"
"#;
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("zones[0].polygon: edges"), "{errs:?}");
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = r#"
[[zones]]
id = "z"
camera = "c1"
polygon = [[0.1, 0.1], [0.2, 0.2]]

[[rules]]
id = "a"
camera = "c1"
kind = "intrusion"
zone = [[0.1, 0.5], [0.5, 0.5], [0.5, 0.9], [1.4, 0.9]]
schedule = { days = ["mon", "mnday"], from = "22:00", to = "25:00" }

[[rules]]
id = "b"
camera = "c9"
kind = "tripwire"
line = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]
direction = "left"
dwell = "10s"

[[rules]]
id = "a"
camera = "c1"
kind = "loitering"
zone = "nowhere"
dwell = "0s"

[[rules]]
id = "c"
camera = "c1"
kind = "gathering"
zone = [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]
min_count = 1
min_area = 0.5
max_area = 0.1

[[rules]]
id = "d"
camera = "c1"
kind = "fighting"

[[rules]]
id = "e"
camera = "c1"
kind = "running"
min_speed = -1
cooldown = "5"
objects = ["human"]

[[rules]]
id = "f"
camera = "c1"
kind = "teleport"

[[rules]]
id = "g"
camera = "c1"
kind = "scene_anomaly"
samples = 0
zone = "z"

[[rules]]
id = "h"
camera = "c1"
kind = "fall"
colour = "red"
"#;
        let errs = errors(text);
        let expect = [
            "zones[0].polygon: a polygon needs at least 3 points, got 2",
            "rules[0].zone[3]: x 1.4 is outside 0..1 (coordinates are fractions of the frame)",
            "rules[0].schedule.days[1]: \"mnday\" is not a day; use mon, tue, wed, thu, fri, sat, sun",
            "rules[0].schedule.to: \"25:00\" is not a time of day (00:00–23:59)",
            "rules[1].camera: unknown camera \"c9\"",
            "rules[1].dwell: does not apply to tripwire rules",
            "rules[1].line: a tripwire is exactly 2 points, got 3",
            "rules[1].direction: unknown direction \"left\"; expected a_to_b, b_to_a or both",
            "rules[2].id: duplicate rule id \"a\"",
            "rules[2].dwell: \"0s\" must be longer than 0s",
            "rules[2].zone: unknown zone \"nowhere\"; camera \"c1\" has no [[zones]]",
            "rules[3].max_area: 0.1 must be greater than min_area 0.5",
            "rules[3].zone: edges 0 and 2 cross each other; list the points in order around the zone",
            "rules[3].min_count: 1 must be between 2 and 10000",
            "rules[4].kind: fighting needs an action model, and no action-recognition model is configured; add one or remove this rule",
            "rules[5].cooldown: \"5\" is missing a unit after 5; expected e.g. \"500ms\", \"10s\", \"5m\", \"1h30m\"",
            "rules[5].objects[0]: unknown object kind \"human\"; expected person, fallen_person, vehicle or other",
            "rules[5].min_speed: -1 must be greater than 0 (box heights per second)",
            "rules[6].kind: unknown kind \"teleport\"; expected one of intrusion, tripwire, loitering, gathering, running, fighting, fall, scene_anomaly",
            "rules[7].zone: does not apply to scene_anomaly rules",
            "rules[7].threshold: missing; e.g. threshold = 0.7",
            "rules[7].samples: 0 must be between 1 and 10000",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|x| x == e),
                "missing {e:?} in\n{}",
                errs.join("\n")
            );
        }
        assert!(
            errs.iter()
                .any(|x| x.starts_with("rules[8]: unknown field `colour`")),
            "{errs:#?}"
        );
    }

    #[test]
    fn fighting_is_accepted_with_an_action_model_and_schedules_are_checked() {
        let vctx = ValidateContext {
            action_model: true,
            ..ValidateContext::default()
        };
        let ok = parse_toml(
            "[[rules]]\nid = \"f\"\ncamera = \"any\"\nkind = \"fighting\"\n",
            &vctx,
        )
        .unwrap();
        assert!(matches!(
            ok.rules[0].kind,
            RuleKind::Fighting { zone: None }
        ));

        let bad = |sched: &str| -> Vec<String> {
            let t = format!(
                "[[rules]]\nid = \"i\"\ncamera = \"c1\"\nkind = \"running\"\nmin_speed = 2\nschedule = {sched}\n"
            );
            errors(&t)
        };
        assert_eq!(
            bad("{ from = \"08:00\", to = \"08:00\" }"),
            ["rules[0].schedule: from and to are the same time; omit both for the whole day"]
        );
        assert_eq!(
            bad("{ from = \"08:00\" }"),
            ["rules[0].schedule: give both from and to, or neither for the whole day"]
        );
        assert_eq!(
            bad("\"sometimes\"")[0],
            "rules[0].schedule: expected \"always\", a window { days = [\"mon\", …], from = \"22:00\", to = \"06:00\" }, or a list of windows"
        );
        assert_eq!(
            bad("{ days = [], hours = 3 }"),
            [
                "rules[0].schedule.hours: unknown key; a window has days, from and to",
                "rules[0].schedule.days: expected a non-empty list such as [\"mon\", \"tue\"]; omit it for every day"
            ]
        );
    }

    #[test]
    fn syntax_errors_stop_early_and_top_level_keys_are_checked() {
        let errs = errors("[[rules]\nid=");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("rules: "), "{errs:?}");
        let errs = errors("[[rule]]\nid = \"x\"\n");
        assert_eq!(
            errs,
            ["rule: unknown key; a rules file has only [[zones]] and [[rules]]"]
        );
    }
}
