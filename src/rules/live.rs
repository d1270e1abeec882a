//! Rules changed at run time: the API reads and replaces the whole rules document (zones + rules),
//! validated exactly like the file at start-up, saved atomically to `<data_dir>/rules.toml`, then
//! handed to the rules thread, which swaps its rule set between two frames.
//!
//! The configured rules file (`rules = …`) is the seed: once the editor has saved, the saved copy
//! is the truth, also after a restart (like users: configuration seeds, the data directory keeps).
//!
//! The hand-over is a one-document slot: a newer save replaces a pending one (only the latest
//! matters), and saving never waits for the rules thread. Swapping resets the rules' own timers
//! (cooldowns, holds), not the trackers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{RulesConfig, ValidateContext, parse_toml};
use crate::config::ConfigError;

/// Why reading or replacing the rules failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveRulesError {
    /// The body is not a rules document.
    #[error("not a rules document: {0}")]
    BadDocument(String),
    /// The document is well-formed but invalid; every error with its field path.
    #[error("the rules are not valid ({} errors)", .0.len())]
    Invalid(Vec<ConfigError>),
    /// Reading or writing the file failed.
    #[error("rules file {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// A saved document waiting for the rules thread.
#[derive(Debug, Default)]
pub struct PendingRules {
    set: AtomicBool,
    slot: Mutex<Option<RulesConfig>>,
}

impl PendingRules {
    /// The newest saved document, once; cheap (one atomic load) when there is none.
    pub fn take(&self) -> Option<RulesConfig> {
        if !self.set.swap(false, Ordering::AcqRel) {
            return None;
        }
        crate::sync::lock(&self.slot).take()
    }

    fn put(&self, config: RulesConfig) {
        *crate::sync::lock(&self.slot) = Some(config);
        self.set.store(true, Ordering::Release);
    }
}

/// The rules document the API serves and replaces.
pub struct LiveRules {
    /// Where the editor saves (`<data_dir>/rules.toml`).
    path: PathBuf,
    /// The configured rules file, read until the first save.
    seed: Option<PathBuf>,
    /// What the configured models can see (its `known_cameras` is filled per call).
    models: ValidateContext,
    pending: Arc<PendingRules>,
    /// One save at a time (read, validate, write, hand over).
    write: Mutex<()>,
    /// Told of every document saved (other stages that follow which cameras have rules).
    listeners: Mutex<Vec<RulesListener>>,
}

/// Called with every rules document saved through the API.
pub type RulesListener = Box<dyn Fn(&RulesConfig) + Send + Sync>;

impl LiveRules {
    /// Rules saved to `path`, seeded from `seed` until then; `models` says which rule kinds the
    /// configured models can run (`scene_anomaly`, `fall`, `fighting`).
    pub fn new(path: PathBuf, seed: Option<PathBuf>, models: ValidateContext) -> LiveRules {
        LiveRules {
            path,
            seed,
            models,
            pending: Arc::default(),
            write: Mutex::new(()),
            listeners: Mutex::default(),
        }
    }

    /// Calls `f` with every document saved from now on.
    pub fn on_replace(&self, f: RulesListener) {
        crate::sync::lock(&self.listeners).push(f);
    }

    /// The slot the rules thread polls between frames.
    pub fn pending(&self) -> Arc<PendingRules> {
        self.pending.clone()
    }

    /// The file the editor saves to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rules saved by the editor, if any, validated against `known_cameras`: what start-up
    /// runs instead of the configured file.
    pub fn load_saved(
        &self,
        known_cameras: BTreeSet<String>,
    ) -> Option<Result<RulesConfig, Vec<ConfigError>>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let ctx = ValidateContext {
            known_cameras: Some(known_cameras),
            ..self.models.clone()
        };
        Some(parse_toml(&text, &ctx).map_err(|e| e.0))
    }

    /// The current document as JSON: `{"zones": [...], "rules": [...]}`, the TOML file's shape.
    pub fn document(&self) -> Result<serde_json::Value, LiveRulesError> {
        let path = if self.path.exists() {
            &self.path
        } else if let Some(seed) = &self.seed {
            seed
        } else {
            return Ok(serde_json::json!({ "zones": [], "rules": [] }));
        };
        let text = std::fs::read_to_string(path).map_err(|e| LiveRulesError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| LiveRulesError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut v = serde_json::to_value(table).map_err(|e| LiveRulesError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for key in ["zones", "rules"] {
            if v.get(key).is_none() {
                v[key] = serde_json::json!([]);
            }
        }
        Ok(v)
    }

    /// Validates `doc` against `known_cameras`; if valid, saves it and hands it to the rules thread.
    /// Nothing is written or applied when anything is wrong.
    pub fn replace(
        &self,
        doc: serde_json::Value,
        known_cameras: BTreeSet<String>,
    ) -> Result<RulesConfig, LiveRulesError> {
        let text = to_toml(doc)?;
        let ctx = ValidateContext {
            known_cameras: Some(known_cameras),
            ..self.models.clone()
        };
        let config = parse_toml(&text, &ctx).map_err(|e| LiveRulesError::Invalid(e.0))?;
        let path = &self.path;
        let _one = crate::sync::lock(&self.write);
        let io = |e: std::io::Error| LiveRulesError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let tmp = path.with_extension("toml.saving");
        let body = format!(
            "# Zones and rules, saved by the qianliyan API (the UI's rule editor); see docs/rules.md.\n\n{text}"
        );
        std::fs::write(&tmp, body).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        self.pending.put(config.clone());
        for f in crate::sync::lock(&self.listeners).iter() {
            f(&config);
        }
        tracing::info!(path = %path.display(), rules = config.rules.len(), "rules replaced through the API");
        Ok(config)
    }
}

/// JSON document → TOML text in the rules file's shape; JSON `null` means "not set".
fn to_toml(mut doc: serde_json::Value) -> Result<String, LiveRulesError> {
    fn strip_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    if !doc.is_object() {
        return Err(LiveRulesError::BadDocument(
            "the body must be a JSON object {\"zones\": [...], \"rules\": [...]}".into(),
        ));
    }
    strip_nulls(&mut doc);
    let table: toml::Table =
        serde_json::from_value(doc).map_err(|e| LiveRulesError::BadDocument(e.to_string()))?;
    toml::to_string(&table).map_err(|e| LiveRulesError::BadDocument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams() -> BTreeSet<String> {
        ["cam-1".to_owned()].into()
    }

    fn doc() -> serde_json::Value {
        serde_json::json!({
            "zones": [{"id": "gate", "camera": "cam-1", "name": "北门", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            "rules": [{"id": "gate-in", "camera": "cam-1", "kind": "intrusion", "zone": "gate", "severity": "high", "cooldown": "30s", "dispatch": null}]
        })
    }

    #[test]
    fn a_valid_document_is_saved_handed_over_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        let seed = dir.path().join("seed.toml");
        std::fs::write(&seed, "[[zones]]\nid = \"z\"\ncamera = \"cam-1\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n").unwrap();
        let live = LiveRules::new(path.clone(), Some(seed.clone()), ValidateContext::default());
        assert_eq!(
            live.document().unwrap()["zones"][0]["id"],
            "z",
            "the seed until the first save"
        );
        assert!(live.load_saved(cams()).is_none());
        let pending = live.pending();
        let cfg = live.replace(doc(), cams()).expect("valid");
        assert_eq!(cfg.rules.len(), 1);
        assert_eq!(pending.take().map(|c| c.rules.len()), Some(1));
        assert!(pending.take().is_none(), "taken once");
        let back = live.document().unwrap();
        assert_eq!(back["zones"][0]["name"], "北门");
        assert_eq!(back["rules"][0]["zone"], "gate");
        // What was saved parses as a rules file on its own.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            parse_toml(&text, &ValidateContext::default()).is_ok(),
            "{text}"
        );
    }

    #[test]
    fn invalid_documents_name_each_field_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "# before\n").unwrap();
        let live = LiveRules::new(path.clone(), None, ValidateContext::default());
        let pending = live.pending();
        let mut bad = doc();
        bad["rules"][0]["zone"] = "nowhere".into();
        bad["zones"][0]["polygon"] = serde_json::json!([[0, 0], [1, 0]]);
        bad["rules"][0]["camera"] = "cam-9".into();
        match live.replace(bad, cams()) {
            Err(LiveRulesError::Invalid(errs)) => {
                let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
                assert!(
                    paths.iter().any(|p| p.starts_with("zones[0].polygon")),
                    "{paths:?}"
                );
                assert!(
                    paths.iter().any(|p| p.starts_with("rules[0].camera")),
                    "{paths:?}"
                );
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# before\n");
        assert!(pending.take().is_none(), "nothing handed over");
        assert!(matches!(
            live.replace(serde_json::json!([1, 2]), cams()),
            Err(LiveRulesError::BadDocument(_))
        ));
        assert!(matches!(
            live.replace(
                serde_json::json!({"rules": [{"id": "x", "colour": "red"}]}),
                cams()
            ),
            Err(LiveRulesError::Invalid(_)) | Err(LiveRulesError::BadDocument(_))
        ));
    }
}
