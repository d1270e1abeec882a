//! Rules changed at run time: the API reads and replaces the whole rules document (zones + rules),
//! validated exactly like the file at start-up, saved in the store ([`RulesStore`]: the inventory's
//! database, SQLite or PostgreSQL), then handed to the rules thread, which swaps its rule set
//! between two frames.
//!
//! The configured rules file (`rules = …`) is the seed: once the editor has saved, the saved copy
//! is the truth, also after a restart (like users: configuration seeds, the store keeps).
//!
//! The hand-over is a one-document slot: a newer save replaces a pending one (only the latest
//! matters), and saving never waits for the rules thread. Swapping resets the rules' own timers
//! (cooldowns, holds), not the trackers.

use std::collections::BTreeSet;
use std::path::PathBuf;
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
    /// Reading the seed file, or reading or writing the store, failed.
    #[error("{place}: {message}")]
    Io {
        /// The file or the store.
        place: String,
        /// What failed.
        message: String,
    },
}

/// The first line of every document the editor saves.
pub const SAVED_HEADER: &str =
    "# Zones and rules, saved by the qianliyan API (the UI's rule editor); see docs/rules.md.";

/// A rules document as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRules {
    /// The rules file's TOML.
    pub text: String,
    /// When it was saved (unix ms).
    pub saved_ms: i64,
}

/// Where the editor's rules document is kept (implemented by `crate::store::inventory`).
pub trait RulesStore: Send + Sync + 'static {
    /// The document last saved, if any.
    fn load(&self) -> Result<Option<SavedRules>, String>;
    /// Saves `text` as the document.
    fn save(&self, text: &str, now_ms: i64) -> Result<(), String>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
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
    /// Where the editor saves.
    store: Arc<dyn RulesStore>,
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
    /// Rules saved in `store`, seeded from `seed` until then; `models` says which rule kinds the
    /// configured models can run (`scene_anomaly`, `fall`, `fighting`).
    pub fn new(
        store: Arc<dyn RulesStore>,
        seed: Option<PathBuf>,
        models: ValidateContext,
    ) -> LiveRules {
        LiveRules {
            store,
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

    /// Where the editor saves, for messages.
    pub fn place(&self) -> String {
        self.store.describe()
    }

    fn saved(&self) -> Result<Option<SavedRules>, LiveRulesError> {
        self.store.load().map_err(|message| LiveRulesError::Io {
            place: self.store.describe(),
            message,
        })
    }

    /// The rules saved by the editor, if any, validated against `known_cameras`: what start-up
    /// runs instead of the configured file.
    pub fn load_saved(
        &self,
        known_cameras: BTreeSet<String>,
    ) -> Option<Result<RulesConfig, Vec<ConfigError>>> {
        let text = match self.saved() {
            Ok(saved) => saved?.text,
            Err(e) => return Some(Err(vec![ConfigError::new("rules store", e.to_string())])),
        };
        let ctx = ValidateContext {
            known_cameras: Some(known_cameras),
            ..self.models.clone()
        };
        Some(parse_toml(&text, &ctx).map_err(|e| e.0))
    }

    /// The current document as JSON: `{"zones": [...], "rules": [...]}`, the TOML file's shape.
    pub fn document(&self) -> Result<serde_json::Value, LiveRulesError> {
        let (place, text) = match (self.saved()?, &self.seed) {
            (Some(saved), _) => (self.store.describe(), saved.text),
            (None, Some(seed)) => (
                seed.display().to_string(),
                std::fs::read_to_string(seed).map_err(|e| LiveRulesError::Io {
                    place: seed.display().to_string(),
                    message: e.to_string(),
                })?,
            ),
            (None, None) => return Ok(serde_json::json!({ "zones": [], "rules": [] })),
        };
        let io = |message: String| LiveRulesError::Io {
            place: place.clone(),
            message,
        };
        let table: toml::Table = toml::from_str(&text).map_err(|e| io(e.to_string()))?;
        let mut v = serde_json::to_value(table).map_err(|e| io(e.to_string()))?;
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
        let _one = crate::sync::lock(&self.write);
        let body = format!("{SAVED_HEADER}\n\n{text}");
        let now = crate::time::unix_ms(std::time::SystemTime::now());
        self.store
            .save(&body, now)
            .map_err(|message| LiveRulesError::Io {
                place: self.store.describe(),
                message,
            })?;
        self.pending.put(config.clone());
        for f in crate::sync::lock(&self.listeners).iter() {
            f(&config);
        }
        tracing::info!(store = %self.store.describe(), rules = config.rules.len(), "rules replaced through the API");
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

    /// The store as a test seam (the real ones run `store::inventory`'s conformance function).
    #[derive(Default)]
    struct Memory(Mutex<Option<SavedRules>>);

    impl RulesStore for Memory {
        fn load(&self) -> Result<Option<SavedRules>, String> {
            Ok(crate::sync::lock(&self.0).clone())
        }
        fn save(&self, text: &str, saved_ms: i64) -> Result<(), String> {
            *crate::sync::lock(&self.0) = Some(SavedRules {
                text: text.into(),
                saved_ms,
            });
            Ok(())
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

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
        let seed = dir.path().join("seed.toml");
        std::fs::write(&seed, "[[zones]]\nid = \"z\"\ncamera = \"cam-1\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n").unwrap();
        let store = Arc::new(Memory::default());
        let live = LiveRules::new(
            store.clone(),
            Some(seed.clone()),
            ValidateContext::default(),
        );
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
        let text = store.load().unwrap().unwrap().text;
        assert!(
            parse_toml(&text, &ValidateContext::default()).is_ok(),
            "{text}"
        );
    }

    #[test]
    fn invalid_documents_name_each_field_and_change_nothing() {
        let store = Arc::new(Memory::default());
        store.save("# before\n", 1).unwrap();
        let live = LiveRules::new(store.clone(), None, ValidateContext::default());
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
        assert_eq!(store.load().unwrap().unwrap().text, "# before\n");
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
