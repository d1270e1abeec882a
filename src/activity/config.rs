//! The `[activity]` configuration section: look only where something moves.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `adaptive` | `true` | decode and analyse idle cameras rarely; `false` analyses every camera at its `analysis_fps` |
//! | `vqd_interval` | `"10s"` | an idle camera still gets one decoded picture this often, for the picture-quality checks |
//! | `active_hold` | `"10s"` | evidence of movement (bitstream, picture difference, people in view) keeps a camera active this long |
//! | `suspect_hold` | `"30s"` | after a change in the stream that a picture fault leaves, the camera is decoded at its analysis rate this long so VQD decides quickly |
//! | `warmup` | `"30s"` | a camera is treated as active this long after it starts, while its quiet level is learned |
//! | `motion_ratio` | `3.0` | P-frame bytes per second above this multiple of the camera's learned quiet level mean movement |
//! | `keyframe_ratio` | `3.0` | a keyframe this many times larger or smaller than usual is a change in the stream |
//! | `cell_change` | `10.0` | a cell of the 32×24 grey grid whose mean changed by more grey levels than this moved |
//! | `min_cells` | `2` | this many moved cells mean the picture moved |
//!
//! Applies to keyframe-only cameras (the default); cameras that decode every frame
//! (`keyframe_only = false`) are analysed at their rate whatever moves.

use std::time::Duration;

use serde::Deserialize;

use super::{BitstreamTuning, PictureTuning};
use crate::config::ConfigError;

/// The `[activity]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActivityConfig {
    /// Decode and analyse idle cameras rarely (default true).
    pub adaptive: Option<bool>,
    /// One decoded picture per this interval for an idle camera (default "10s").
    pub vqd_interval: Option<String>,
    /// Evidence of movement keeps a camera active this long (default "10s").
    pub active_hold: Option<String>,
    /// A stream change keeps the camera decoded often this long (default "30s").
    pub suspect_hold: Option<String>,
    /// Treated as active this long after start (default "30s").
    pub warmup: Option<String>,
    /// P-frame bytes above this multiple of the quiet level mean movement (default 3.0).
    pub motion_ratio: Option<f64>,
    /// A keyframe this many times larger or smaller than usual is a change (default 3.0).
    pub keyframe_ratio: Option<f64>,
    /// Grey levels a grid cell must change by to count as moved (default 10.0).
    pub cell_change: Option<f64>,
    /// Moved cells that mean the picture moved (default 2).
    pub min_cells: Option<u32>,
}

/// The validated `[activity]` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivityConfig {
    /// Decode and analyse idle cameras rarely.
    pub adaptive: bool,
    /// An idle camera's picture interval (VQD).
    pub vqd_interval: Duration,
    /// How long evidence of movement holds.
    pub active_hold: Duration,
    /// How long a stream change keeps the camera decoded often.
    pub suspect_hold: Duration,
    /// How long a started camera is treated as active.
    pub warmup: Duration,
    /// The bitstream signal's tuning.
    pub bitstream: BitstreamTuning,
    /// The picture difference's tuning.
    pub picture: PictureTuning,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            adaptive: true,
            vqd_interval: Duration::from_secs(10),
            active_hold: Duration::from_secs(10),
            suspect_hold: Duration::from_secs(30),
            warmup: Duration::from_secs(30),
            bitstream: BitstreamTuning::default(),
            picture: PictureTuning::default(),
        }
    }
}

impl RawActivityConfig {
    /// Validates the section; every error carries its field path (`activity.…`).
    pub fn validate(&self) -> Result<ActivityConfig, Vec<ConfigError>> {
        let d = ActivityConfig::default();
        let mut errors = Vec::new();
        let mut duration = |key: &str, v: &Option<String>, default: Duration, min: Duration| {
            crate::config::duration_field(
                &mut errors,
                &format!("activity.{key}"),
                v.as_deref(),
                default,
                min,
            )
        };
        let vqd_interval = duration(
            "vqd_interval",
            &self.vqd_interval,
            d.vqd_interval,
            Duration::from_secs(1),
        );
        let active_hold = duration(
            "active_hold",
            &self.active_hold,
            d.active_hold,
            Duration::from_secs(1),
        );
        let suspect_hold = duration(
            "suspect_hold",
            &self.suspect_hold,
            d.suspect_hold,
            Duration::ZERO,
        );
        let warmup = duration("warmup", &self.warmup, d.warmup, Duration::ZERO);
        let mut ratio = |key: &str, v: Option<f64>, default: f64| match v {
            None => default,
            Some(x) if x.is_finite() && x > 1.0 => x,
            Some(x) => {
                errors.push(ConfigError::new(
                    format!("activity.{key}"),
                    format!("{x} must be a number above 1"),
                ));
                default
            }
        };
        let motion_ratio = ratio("motion_ratio", self.motion_ratio, d.bitstream.motion_ratio);
        let keyframe_ratio = ratio(
            "keyframe_ratio",
            self.keyframe_ratio,
            d.bitstream.keyframe_ratio,
        );
        let cell_change = match self.cell_change {
            None => d.picture.cell_change,
            Some(x) if x.is_finite() && x > 0.0 && x < 255.0 => x as f32,
            Some(x) => {
                errors.push(ConfigError::new(
                    "activity.cell_change",
                    format!("{x} must be between 0 and 255 grey levels"),
                ));
                d.picture.cell_change
            }
        };
        let cells = (super::GRID_W * super::GRID_H) as u32;
        let min_cells = match self.min_cells {
            None => d.picture.min_cells,
            Some(n) if (1..=cells).contains(&n) => n as usize,
            Some(n) => {
                errors.push(ConfigError::new(
                    "activity.min_cells",
                    format!("{n} must be 1 to {cells} (the grid's cells)"),
                ));
                d.picture.min_cells
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ActivityConfig {
            adaptive: self.adaptive.unwrap_or(d.adaptive),
            vqd_interval,
            active_hold,
            suspect_hold,
            warmup,
            bitstream: BitstreamTuning {
                motion_ratio,
                keyframe_ratio,
            },
            picture: PictureTuning {
                cell_change,
                min_cells,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_bad_field_named() {
        assert_eq!(
            RawActivityConfig::default().validate().unwrap(),
            ActivityConfig::default()
        );
        let raw: RawActivityConfig = toml::from_str(
            "vqd_interval = \"500ms\"\nactive_hold = \"soon\"\nmotion_ratio = 0.5\nmin_cells = 0\ncell_change = 300.0\n",
        )
        .unwrap();
        let errors = raw.validate().unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "activity.vqd_interval",
                "activity.active_hold",
                "activity.motion_ratio",
                "activity.cell_change",
                "activity.min_cells"
            ],
            "{errors:?}"
        );
        let ok: RawActivityConfig =
            toml::from_str("adaptive = false\nvqd_interval = \"5s\"\n").unwrap();
        let ok = ok.validate().unwrap();
        assert!(!ok.adaptive);
        assert_eq!(ok.vqd_interval, Duration::from_secs(5));
        assert!(toml::from_str::<RawActivityConfig>("vqd = \"5s\"").is_err());
    }
}
