//! One camera's rules evaluated frame by frame over its tracks.
//!
//! Every rule is a small state machine per dedup key — (rule, track) for track rules, (rule) for
//! gathering and scene anomaly: the condition must hold (for `hold`/`dwell` seconds and `samples`
//! observations) before the key fires, fires once, and re-arms only after the condition has been
//! false for `rearm` seconds. On top, `cooldown` is the least time between two alerts of one key.
//! The schedule gates only the output: state keeps updating outside the schedule, so a person who
//! is already inside a zone when the schedule opens raises the alert then.

use std::collections::HashMap;

use super::RulesError;
use super::alert::Alert;
use super::config::{Direction, ObjectFilter, Rule, RuleKind};
use super::geom::{self, Point};
use crate::track::{ObjectKind, Track};

/// Per-key state is dropped after the track has been absent from the input this long.
const STATE_TTL_S: f64 = 60.0;
/// Frame time going back by more than this (stream restart) clears all state.
const BACKWARD_RESET_S: f64 = 1.0;
/// Float slack when comparing elapsed time with a threshold.
const EPS: f64 = 1e-6;

/// Hold → fire once → re-arm after the condition has been false for a while.
#[derive(Debug, Clone, Default)]
struct Episode {
    since: Option<f64>,
    samples: u32,
    false_since: Option<f64>,
    fired: bool,
}

impl Episode {
    /// Feeds one observation; true when the key is ready to fire (caller marks `fired`).
    fn step(&mut self, t: f64, cond: bool, hold_s: f64, min_samples: u32, rearm_s: f64) -> bool {
        if cond {
            self.false_since = None;
            let since = *self.since.get_or_insert(t);
            self.samples = self.samples.saturating_add(1);
            !self.fired && t - since + EPS >= hold_s && self.samples >= min_samples
        } else {
            if self.since.is_some() || self.fired {
                let fs = *self.false_since.get_or_insert(t);
                if t - fs + EPS >= rearm_s {
                    *self = Episode::default();
                }
            }
            false
        }
    }

    fn held_s(&self, t: f64) -> f64 {
        self.since.map_or(0.0, |s| (t - s).max(0.0))
    }
}

#[derive(Debug, Clone, Default)]
struct TrackMem {
    ep: Episode,
    /// Last foot point with a definite side of the tripwire, and that side (−1 = A, +1 = B).
    prev: Option<(Point, f32)>,
    last_present: f64,
}

#[derive(Debug, Clone)]
struct RuleRuntime {
    rule: Rule,
    st: State,
}

/// A rule's mutable state, apart from the rule so evaluation borrows both without cloning.
#[derive(Debug, Clone, Default)]
struct State {
    tracks: HashMap<u64, TrackMem>,
    frame: Episode,
    last_fired: HashMap<Option<u64>, f64>,
    suppressed: u64,
}

impl RuleRuntime {
    fn new(rule: Rule) -> Self {
        RuleRuntime {
            rule,
            st: State::default(),
        }
    }

    fn reset(&mut self) {
        let suppressed = self.st.suppressed;
        self.st = State {
            suppressed,
            ..State::default()
        };
    }

    fn observe(
        &mut self,
        camera: &str,
        f: &Frame,
        tracks: &[Track],
        anomaly: Option<f32>,
        out: &mut Vec<Alert>,
    ) {
        let rule = &self.rule;
        let st = &mut self.st;
        if !rule.enabled {
            return;
        }
        let active = rule.schedule.is_active(f.t);
        let rearm = rule.rearm_s;
        let per_track = matches!(
            rule.kind,
            RuleKind::Intrusion { .. }
                | RuleKind::Loitering { .. }
                | RuleKind::Running { .. }
                | RuleKind::Fall { .. }
                | RuleKind::Tripwire { .. }
        );
        if per_track {
            for tr in tracks {
                st.tracks.entry(tr.id).or_default().last_present = f.t;
            }
        }
        match &rule.kind {
            RuleKind::Intrusion { .. }
            | RuleKind::Loitering { .. }
            | RuleKind::Running { .. }
            | RuleKind::Fall { .. } => {
                let (hold, samples) = match &rule.kind {
                    RuleKind::Loitering { dwell_s, .. } => (*dwell_s, 1),
                    RuleKind::Running { min_samples, .. } => (0.0, *min_samples),
                    RuleKind::Fall { hold_s, .. } => (*hold_s, 1),
                    _ => (0.0, 1),
                };
                // A track missed in this frame brings no news: its state waits for it.
                for tr in tracks.iter().filter(|t| t.missed == 0) {
                    let cond = track_condition(rule, f, tr);
                    let mem = st.tracks.entry(tr.id).or_default();
                    if !mem.ep.step(f.t, cond, hold, samples, rearm) || !active {
                        continue;
                    }
                    // Fired, whether or not the cooldown lets the alert out: one event, one alert.
                    mem.ep.fired = true;
                    let held = mem.ep.held_s(f.t);
                    if st.allow(rule, Some(tr.id), f.t) {
                        out.push(track_alert(rule, camera, f, tr, held, None));
                    }
                }
            }
            RuleKind::Tripwire { line, direction } => {
                for tr in tracks.iter().filter(|t| t.missed == 0) {
                    let accepted = accepts(&rule.filter, tr, f);
                    let mem = st.tracks.entry(tr.id).or_default();
                    if !accepted {
                        // Crossing while masked or filtered out is not seen, so not counted.
                        mem.prev = None;
                        continue;
                    }
                    let p = f.foot(tr);
                    let c = geom::cross(line[0], line[1], p);
                    if c == 0.0 {
                        // On the line: wait until it is clearly on one side.
                        continue;
                    }
                    let side = c.signum();
                    let crossed = match mem.prev {
                        Some((pp, ps)) if ps != side => {
                            geom::segments_intersect(pp, p, line[0], line[1])
                        }
                        _ => false,
                    };
                    mem.prev = Some((p, side));
                    if !crossed {
                        continue;
                    }
                    let a_to_b = side > 0.0;
                    let wanted = match direction {
                        Direction::Both => true,
                        Direction::AToB => a_to_b,
                        Direction::BToA => !a_to_b,
                    };
                    if wanted && active && st.allow(rule, Some(tr.id), f.t) {
                        out.push(track_alert(rule, camera, f, tr, 0.0, Some(a_to_b)));
                    }
                }
            }
            RuleKind::Gathering {
                zone,
                min_count,
                hold_s,
            } => {
                // Tracks missed in this frame count at their last position: people in a crowd
                // are occluded often, and the tracker drops them after max_age anyway.
                let inside: Vec<&Track> = tracks
                    .iter()
                    .filter(|tr| {
                        accepts(&rule.filter, tr, f)
                            && geom::point_in_polygon(f.foot(tr), &zone.points)
                    })
                    .collect();
                let cond = inside.len() >= *min_count as usize;
                if st.frame.step(f.t, cond, *hold_s, 1, rearm) && active {
                    st.frame.fired = true;
                    let held = st.frame.held_s(f.t);
                    if st.allow(rule, None, f.t) {
                        out.push(group_alert(rule, camera, f, &inside, held));
                    }
                }
            }
            RuleKind::SceneAnomaly { threshold, samples } => {
                let Some(score) = anomaly.filter(|s| s.is_finite()) else {
                    return;
                };
                let cond = score >= *threshold;
                if st.frame.step(f.t, cond, 0.0, *samples, rearm) && active {
                    st.frame.fired = true;
                    let n = st.frame.samples;
                    if st.allow(rule, None, f.t) {
                        out.push(anomaly_alert(rule, camera, f, score, *threshold, n));
                    }
                }
            }
            // Tracks carry no action labels yet: see `RuleEngine::inert_rules`.
            RuleKind::Fighting { .. } => {}
        }
    }

    fn purge(&mut self, t: f64) {
        let st = &mut self.st;
        st.tracks.retain(|_, m| t - m.last_present <= STATE_TTL_S);
        let cooldown = self.rule.cooldown_s;
        let tracks = &st.tracks;
        st.last_fired.retain(|key, last| match key {
            Some(id) => tracks.contains_key(id) || t - *last < cooldown,
            None => true,
        });
    }
}

impl State {
    /// Cooldown check for a key that is about to fire; records the alert when allowed.
    fn allow(&mut self, rule: &Rule, key: Option<u64>, t: f64) -> bool {
        if let Some(&last) = self.last_fired.get(&key)
            && t - last + EPS < rule.cooldown_s
        {
            self.suppressed += 1;
            tracing::debug!(rule = %rule.id, track = ?key, "suppressed by cooldown");
            return false;
        }
        self.last_fired.insert(key, t);
        true
    }
}

fn track_condition(rule: &Rule, f: &Frame, tr: &Track) -> bool {
    if !accepts(&rule.filter, tr, f) {
        return false;
    }
    let in_zone = rule
        .kind
        .zone()
        .is_none_or(|z| geom::point_in_polygon(f.foot(tr), &z.points));
    if !in_zone {
        return false;
    }
    match &rule.kind {
        RuleKind::Running { min_speed, .. } => tr.speed_heights_per_s() >= *min_speed,
        RuleKind::Fall { .. } => tr.kind == ObjectKind::FallenPerson,
        _ => true,
    }
}

fn base(rule: &Rule, camera: &str, f: &Frame, score: f32) -> Alert {
    let time_ms = (f.t * 1000.0).round() as i64;
    Alert::raised(
        &rule.id,
        camera,
        rule.kind.alert_type(),
        rule.severity,
        time_ms,
        score,
        rule.dispatch,
    )
}

/// What the snapshot draws for a rule: its zone polygon, or a tripwire's two points.
fn drawn_zone(rule: &Rule) -> Option<Vec<[f32; 2]>> {
    match &rule.kind {
        RuleKind::Tripwire { line, .. } => Some(line.to_vec()),
        k => k.zone().map(|z| z.points.clone()),
    }
}

fn track_alert(
    rule: &Rule,
    camera: &str,
    f: &Frame,
    tr: &Track,
    held_s: f64,
    a_to_b: Option<bool>,
) -> Alert {
    let mut a = base(rule, camera, f, tr.score);
    a.boxes.push(tr.bbox);
    a.track_ids.push(tr.id);
    let name = &rule.name;
    let (ozh, oen, id) = (tr.kind.zh(), tr.kind.en(), tr.id);
    let (zh, en) = match &rule.kind {
        RuleKind::Intrusion { .. } => (
            format!("区域入侵：{ozh}进入「{name}」（目标 #{id}）"),
            format!("Intrusion: {oen} entered \"{name}\" (track #{id})"),
        ),
        RuleKind::Tripwire { .. } => {
            let dir = if a_to_b == Some(true) {
                "A→B"
            } else {
                "B→A"
            };
            (
                format!("绊线：{ozh}越过「{name}」（{dir}，目标 #{id}）"),
                format!("Tripwire: {oen} crossed \"{name}\" ({dir}, track #{id})"),
            )
        }
        RuleKind::Loitering { .. } => (
            format!("徘徊：{ozh}在「{name}」停留 {held_s:.0} 秒（目标 #{id}）"),
            format!("Loitering: {oen} in \"{name}\" for {held_s:.0} s (track #{id})"),
        ),
        RuleKind::Running { .. } => {
            let v = tr.speed_heights_per_s();
            (
                format!("快速奔跑：{ozh}速度 {v:.1} 身高/秒（「{name}」，目标 #{id}）"),
                format!("Running: {oen} at {v:.1} body heights/s (\"{name}\", track #{id})"),
            )
        }
        RuleKind::Fall { .. } => (
            format!("跌倒：人员倒地 {held_s:.0} 秒（「{name}」，目标 #{id}）"),
            format!("Fall: person down for {held_s:.0} s (\"{name}\", track #{id})"),
        ),
        k => (
            format!("{}（「{name}」，目标 #{id}）", k.alert_type().zh()),
            format!("{} (\"{name}\", track #{id})", k.alert_type().en()),
        ),
    };
    a.message_zh = zh;
    a.message_en = en;
    a
}

fn group_alert(rule: &Rule, camera: &str, f: &Frame, inside: &[&Track], held_s: f64) -> Alert {
    let n = inside.len();
    let mean = if n == 0 {
        0.0
    } else {
        inside.iter().map(|t| t.score).sum::<f32>() / n as f32
    };
    let mut a = base(rule, camera, f, mean);
    a.boxes = inside.iter().map(|t| t.bbox).collect();
    a.track_ids = inside.iter().map(|t| t.id).collect();
    let name = &rule.name;
    a.message_zh = format!("聚集：「{name}」内 {n} 人，持续 {held_s:.0} 秒");
    a.message_en = format!("Gathering: {n} people in \"{name}\" for {held_s:.0} s");
    a
}

fn anomaly_alert(
    rule: &Rule,
    camera: &str,
    f: &Frame,
    score: f32,
    threshold: f32,
    n: u32,
) -> Alert {
    let mut a = base(rule, camera, f, score);
    let name = &rule.name;
    a.message_zh =
        format!("场景异常：异常分数 {score:.2}，连续 {n} 次 ≥ {threshold}（「{name}」）");
    a.message_en =
        format!("Scene anomaly: score {score:.2}, {n} samples in a row ≥ {threshold} (\"{name}\")");
    a
}

/// The frame being evaluated.
struct Frame {
    t: f64,
    w: f32,
    h: f32,
}

impl Frame {
    /// Foot point (bottom-centre of the box), normalised.
    fn foot(&self, tr: &Track) -> Point {
        let (x, y) = tr.foot();
        [x / self.w, y / self.h]
    }
}

fn accepts(filter: &ObjectFilter, tr: &Track, f: &Frame) -> bool {
    let kind_ok = filter.objects.contains(&tr.kind)
        || (tr.kind == ObjectKind::FallenPerson && filter.objects.contains(&ObjectKind::Person));
    if !kind_ok || tr.score < filter.min_score {
        return false;
    }
    let [x1, y1, x2, y2] = tr.bbox;
    let area = ((x2 - x1).max(0.0) * (y2 - y1).max(0.0)) / (f.w * f.h);
    if area < filter.min_area || area > filter.max_area {
        return false;
    }
    let foot = f.foot(tr);
    !filter.masks.iter().any(|m| geom::point_in_polygon(foot, m))
}

/// One camera's rules and their state.
#[derive(Debug, Clone)]
pub struct RuleEngine {
    camera: String,
    rules: Vec<RuleRuntime>,
    last_t: Option<f64>,
}

impl RuleEngine {
    /// An engine for `camera`; every rule must name that camera and ids must be unique.
    pub fn new(camera: impl Into<String>, rules: Vec<Rule>) -> Result<RuleEngine, RulesError> {
        let mut e = RuleEngine {
            camera: camera.into(),
            rules: Vec::new(),
            last_t: None,
        };
        e.replace_rules(rules)?;
        Ok(e)
    }

    /// Camera id.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// The zone (or a tripwire's two points) of rule `rule_id`, normalised 0..1, for drawing.
    pub fn zone(&self, rule_id: &str) -> Option<Vec<[f32; 2]>> {
        self.rules
            .iter()
            .find(|r| r.rule.id == rule_id)
            .and_then(|r| drawn_zone(&r.rule))
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// Replaces the rules; a rule whose id and definition are unchanged keeps its state, so
    /// reloading does not re-raise alerts for people already inside a zone. On error nothing changes.
    pub fn replace_rules(&mut self, rules: Vec<Rule>) -> Result<(), RulesError> {
        let mut ids = std::collections::HashSet::new();
        for r in &rules {
            if r.camera != self.camera {
                return Err(RulesError::WrongCamera {
                    rule_id: r.id.clone(),
                    rule_camera: r.camera.clone(),
                    camera: self.camera.clone(),
                });
            }
            if !ids.insert(r.id.clone()) {
                return Err(RulesError::DuplicateRule {
                    rule_id: r.id.clone(),
                    camera: self.camera.clone(),
                });
            }
        }
        let mut old: HashMap<String, RuleRuntime> = std::mem::take(&mut self.rules)
            .into_iter()
            .map(|r| (r.rule.id.clone(), r))
            .collect();
        self.rules = rules
            .into_iter()
            .map(|rule| match old.remove(&rule.id) {
                Some(rt) if rt.rule == rule => rt,
                _ => RuleRuntime::new(rule),
            })
            .collect();
        Ok(())
    }

    /// Rules that are valid but can never fire with the models in use, with the reason.
    pub fn inert_rules(&self) -> Vec<(&str, &'static str)> {
        self.rules
            .iter()
            .filter(|r| matches!(r.rule.kind, RuleKind::Fighting { .. }))
            .map(|r| {
                (
                    r.rule.id.as_str(),
                    "needs an action model: tracks carry no fighting label yet",
                )
            })
            .collect()
    }

    /// Alerts withheld by cooldown so far, per rule id.
    pub fn suppressed(&self) -> Vec<(&str, u64)> {
        self.rules
            .iter()
            .map(|r| (r.rule.id.as_str(), r.st.suppressed))
            .collect()
    }

    /// Evaluates one analysed frame: frame time `t` (seconds since the Unix epoch — schedules use
    /// it as wall-clock time), frame size in pixels, the tracker's tracks for this frame, and the
    /// scene-anomaly score if an anomaly model ran on it. Returns the alerts raised by this frame.
    pub fn observe(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[Track],
        anomaly: Option<f32>,
    ) -> Vec<Alert> {
        if !t.is_finite() || frame_w == 0 || frame_h == 0 {
            return Vec::new();
        }
        if let Some(last) = self.last_t
            && t < last - BACKWARD_RESET_S
        {
            for r in &mut self.rules {
                r.reset();
            }
        }
        self.last_t = Some(t);
        let f = Frame {
            t,
            w: frame_w as f32,
            h: frame_h as f32,
        };
        let mut out = Vec::new();
        for r in &mut self.rules {
            r.observe(&self.camera, &f, tracks, anomaly, &mut out);
            r.purge(t);
        }
        out
    }
}

#[cfg(test)]
mod tests;
