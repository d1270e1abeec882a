//! The `[clip]` configuration section: evidence clips of alerts.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `enabled` | `true` | keep a pre-event buffer and write a clip for every alert of a buffered camera |
//! | `cameras` | `"rules"` | which cameras are buffered: `"rules"` (cameras that have rules), `"all"`, `"none"` |
//! | `pre` | `"10s"` | video before the alert's frame |
//! | `post` | `"20s"` | video after it; a later alert of the same camera extends the open clip |
//! | `latency_allowance` | `"8s"` | buffer kept beyond `pre` for the time an alert takes to be raised (tracking, holds) |
//! | `max_length` | `"60s"` | longest clip; a longer event gets another clip with its next alert |
//! | `camera_budget_mib` | `16` | most memory one camera's buffer may hold (its oldest GOPs go first, counted) |
//! | `memory_budget_mib` | `512` | most memory all buffers together may hold; above it the camera being written keeps only its current GOP (counted `pressure`) |
//! | `writers` | `2` | clip-writing threads (MP4 muxing, no re-encoding) |
//! | `max_age` | `"720h"` | clips older than this are deleted (the alert stays) |
//! | `disk_budget_mib` | `20480` | most disk all clips may use; the oldest alerts' clips are deleted first |
//!
//! A camera's buffer holds `pre` + `latency_allowance` seconds plus the GOP in progress, as received
//! (compressed access units, no decoding): about 1 MB for a 384×288 sub-stream, 10 MB for a 4 Mbit/s
//! main stream.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Which cameras keep a pre-event buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Buffered {
    /// Cameras that have at least one rule (they are the ones that raise alerts).
    Rules,
    /// Every camera.
    All,
    /// None: alerts carry snapshots only.
    None,
}

/// The `[clip]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClipConfig {
    /// Write clips (default true).
    pub enabled: Option<bool>,
    /// Which cameras are buffered (default "rules").
    pub cameras: Option<Buffered>,
    /// Seconds before the alert (default "10s").
    pub pre: Option<String>,
    /// Seconds after the alert (default "20s").
    pub post: Option<String>,
    /// Buffer kept for the time an alert takes to be raised (default "8s").
    pub latency_allowance: Option<String>,
    /// Longest clip (default "60s").
    pub max_length: Option<String>,
    /// One camera's buffer at most, MiB (default 16).
    pub camera_budget_mib: Option<u64>,
    /// All buffers together at most, MiB (default 512).
    pub memory_budget_mib: Option<u64>,
    /// Clip-writing threads (default 2).
    pub writers: Option<usize>,
    /// Clips older than this are deleted (default "720h").
    pub max_age: Option<String>,
    /// All clips together at most, MiB of disk (default 20480).
    pub disk_budget_mib: Option<u64>,
}

/// The validated `[clip]` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipConfig {
    /// Write clips.
    pub enabled: bool,
    /// Which cameras are buffered.
    pub cameras: Buffered,
    /// Video before the alert.
    pub pre: Duration,
    /// Video after the alert.
    pub post: Duration,
    /// Buffer kept beyond `pre`.
    pub latency_allowance: Duration,
    /// Longest clip.
    pub max_length: Duration,
    /// One camera's buffer at most, bytes.
    pub camera_budget: u64,
    /// All buffers at most, bytes.
    pub memory_budget: u64,
    /// Clip-writing threads.
    pub writers: usize,
    /// Clips older than this are deleted.
    pub max_age: Duration,
    /// All clips at most, bytes of disk.
    pub disk_budget: u64,
}

const MIB: u64 = 1 << 20;

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            enabled: true,
            cameras: Buffered::Rules,
            pre: Duration::from_secs(10),
            post: Duration::from_secs(20),
            latency_allowance: Duration::from_secs(8),
            max_length: Duration::from_secs(60),
            camera_budget: 16 * MIB,
            memory_budget: 512 * MIB,
            writers: 2,
            max_age: Duration::from_secs(720 * 3600),
            disk_budget: 20480 * MIB,
        }
    }
}

impl ClipConfig {
    /// How long a camera's buffer reaches back (before the GOP in progress).
    pub fn keep(&self) -> Duration {
        self.pre + self.latency_allowance
    }
}

impl RawClipConfig {
    /// Validates the section; every error carries its field path (`clip.…`).
    pub fn validate(&self) -> Result<ClipConfig, Vec<ConfigError>> {
        let d = ClipConfig::default();
        let mut errors = Vec::new();
        let mut duration = |key: &str, v: &Option<String>, default: Duration, min: Duration| {
            crate::config::duration_field(
                &mut errors,
                &format!("clip.{key}"),
                v.as_deref(),
                default,
                min,
            )
        };
        let pre = duration("pre", &self.pre, d.pre, Duration::ZERO);
        let post = duration("post", &self.post, d.post, Duration::from_secs(1));
        let latency_allowance = duration(
            "latency_allowance",
            &self.latency_allowance,
            d.latency_allowance,
            Duration::ZERO,
        );
        let max_length = duration(
            "max_length",
            &self.max_length,
            d.max_length,
            Duration::from_secs(2),
        );
        let max_age = duration("max_age", &self.max_age, d.max_age, Duration::from_secs(60));
        if pre + post > max_length {
            errors.push(ConfigError::new(
                "clip.max_length",
                format!(
                    "{} s is shorter than pre + post ({} s)",
                    max_length.as_secs(),
                    (pre + post).as_secs()
                ),
            ));
        }
        let mut mib = |key: &str, v: Option<u64>, default: u64| match v {
            None => default,
            Some(n) if (1..=1 << 24).contains(&n) => n * MIB,
            Some(n) => {
                errors.push(ConfigError::new(
                    format!("clip.{key}"),
                    format!("{n} must be 1 to 16777216 MiB"),
                ));
                default
            }
        };
        let camera_budget = mib("camera_budget_mib", self.camera_budget_mib, d.camera_budget);
        let memory_budget = mib("memory_budget_mib", self.memory_budget_mib, d.memory_budget);
        let disk_budget = mib("disk_budget_mib", self.disk_budget_mib, d.disk_budget);
        let writers = match self.writers {
            None => d.writers,
            Some(n) if (1..=32).contains(&n) => n,
            Some(n) => {
                errors.push(ConfigError::new(
                    "clip.writers",
                    format!("{n} must be 1 to 32"),
                ));
                d.writers
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ClipConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            cameras: self.cameras.unwrap_or(d.cameras),
            pre,
            post,
            latency_allowance,
            max_length,
            camera_budget,
            memory_budget,
            writers,
            max_age,
            disk_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_bad_field_named() {
        assert_eq!(
            RawClipConfig::default().validate().unwrap(),
            ClipConfig::default()
        );
        let raw: RawClipConfig = toml::from_str(
            "pre = \"40s\"\npost = \"later\"\nmax_length = \"30s\"\nwriters = 0\nmemory_budget_mib = 0\n",
        )
        .unwrap();
        let errors = raw.validate().unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "clip.post",
                "clip.max_length",
                "clip.memory_budget_mib",
                "clip.writers"
            ],
            "{errors:?}"
        );
        assert!(errors[1].message.contains("pre + post"), "{errors:?}");
        let bad: Result<RawClipConfig, _> = toml::from_str("cameras = \"some\"\n");
        assert!(bad.is_err());
        let ok: RawClipConfig =
            toml::from_str("cameras = \"all\"\npre = \"4s\"\npost = \"4s\"\n").unwrap();
        let ok = ok.validate().unwrap();
        assert_eq!(ok.cameras, Buffered::All);
        assert_eq!(ok.keep(), Duration::from_secs(12));
    }
}
