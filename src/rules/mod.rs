//! Behaviour rules per camera: one analysed frame's confirmed tracks (from `track/`) and optional
//! scene-anomaly score come in; [`Alert`]s go out — intrusion, tripwire, loitering,
//! gathering, running, fall, scene anomaly (fighting is validated but inert without an action
//! model). Pure logic, no queue: the caller calls [`RuleSet::observe`] once per analysed frame per
//! camera, in frame-time order, and sends the alerts on (alerts never drop downstream).
//!
//! Zones and lines are in normalised coordinates (0..1 of frame width/height), so rules survive a
//! change of stream resolution; an object's position is its foot point (bottom-centre of its box).
//! One event is one alert: dedup per (camera, rule, track) — per (camera, rule) for gathering and
//! scene anomaly — with hold, re-arm and cooldown times (see `engine.rs` and `docs/rules.md`).

mod alert;
mod config;
mod engine;
pub mod geom;
mod lifecycle;
pub mod live;
pub mod runner;
mod schedule;

use std::collections::BTreeMap;

pub use alert::{Alert, AlertClip, AlertSource, AlertType, ClipState, Severity};
pub use config::{
    Direction, ObjectFilter, RawRule, RawRulesFile, RawZone, Rule, RuleKind, RulesConfig,
    ValidateContext, Zone, parse_toml, read_toml, validate,
};
pub use engine::RuleEngine;
pub use lifecycle::{ALLOWED_TRANSITIONS, AlertState, allowed, next_states, raise};
pub use schedule::{DAY_NAMES, Schedule, UTC_OFFSET_S, Window, local_day_and_second};

use crate::track::Track;

/// Rules-stage errors; none is helped by retrying — fix the rules handed in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    /// A rule was handed to another camera's engine.
    #[error("rule {rule_id:?} is for camera {rule_camera:?}, not camera {camera:?}")]
    WrongCamera {
        /// The rule.
        rule_id: String,
        /// The camera the rule names.
        rule_camera: String,
        /// The engine's camera.
        camera: String,
    },
    /// Two rules with one id on one camera.
    #[error("duplicate rule id {rule_id:?} on camera {camera:?}")]
    DuplicateRule {
        /// The repeated id.
        rule_id: String,
        /// The camera.
        camera: String,
    },
}

/// Engines for every camera that has rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    engines: BTreeMap<String, RuleEngine>,
}

impl RuleSet {
    /// Engines for every camera in a validated configuration.
    pub fn new(cfg: &RulesConfig) -> Result<RuleSet, RulesError> {
        let mut set = RuleSet::default();
        for (camera, rules) in cfg.by_camera() {
            set.replace_camera(&camera, rules)?;
        }
        Ok(set)
    }

    /// Evaluates one frame of `camera` (see [`RuleEngine::observe`]); no rules, no alerts.
    pub fn observe(
        &mut self,
        camera: &str,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[Track],
        anomaly: Option<f32>,
    ) -> Vec<Alert> {
        match self.engines.get_mut(camera) {
            Some(e) => e.observe(t, frame_w, frame_h, tracks, anomaly),
            None => Vec::new(),
        }
    }

    /// Replaces one camera's rules at run time, leaving every other camera untouched; unchanged
    /// rules keep their state. An empty list removes the camera's engine.
    pub fn replace_camera(&mut self, camera: &str, rules: Vec<Rule>) -> Result<(), RulesError> {
        if rules.is_empty() {
            self.engines.remove(camera);
            return Ok(());
        }
        match self.engines.get_mut(camera) {
            Some(e) => e.replace_rules(rules),
            None => {
                let e = RuleEngine::new(camera, rules)?;
                self.engines.insert(camera.to_string(), e);
                Ok(())
            }
        }
    }

    /// Replaces every camera's rules from a new configuration (cameras no longer named lose theirs).
    /// Checked first, so on error nothing changes.
    pub fn replace_all(&mut self, cfg: &RulesConfig) -> Result<(), RulesError> {
        let by_camera = cfg.by_camera();
        for (camera, rules) in &by_camera {
            RuleEngine::new(camera.as_str(), rules.clone())?;
        }
        self.engines.retain(|c, _| by_camera.contains_key(c));
        for (camera, rules) in by_camera {
            self.replace_camera(&camera, rules)?;
        }
        Ok(())
    }

    /// The zone (or a tripwire's two points) of `camera`'s rule `rule_id`, normalised 0..1, for
    /// drawing the alert's snapshot.
    pub fn zone(&self, camera: &str, rule_id: &str) -> Option<Vec<[f32; 2]>> {
        self.engines.get(camera)?.zone(rule_id)
    }

    /// The engine of one camera.
    pub fn engine(&self, camera: &str) -> Option<&RuleEngine> {
        self.engines.get(camera)
    }

    /// Cameras with rules.
    pub fn cameras(&self) -> impl Iterator<Item = &str> {
        self.engines.keys().map(String::as_str)
    }
}
