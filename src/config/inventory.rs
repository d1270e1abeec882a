//! The camera inventory kept in the store: what the API added, changed and removed survives a
//! restart, and the configuration's cameras seed it.
//!
//! The store is the truth once running. At start [`reconcile`] compares the file's cameras with the
//! stored ones, by id:
//! - a camera the file defines and the store does not know is added (marked as from the file);
//! - a stored camera from the file whose definition in the file is still the one last seeded keeps
//!   what the API made of it (an edit, or its removal);
//! - when the file's definition changed since the last seed, the file wins (an engineer edited it);
//! - a camera from the file that the file no longer defines is dropped from the store;
//! - cameras added through the API stay, validated again under the running configuration (a
//!   credential set since removed keeps that camera out, with an error naming it; its row is kept).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::ConfigError;
use super::raw::RawCamera;
use super::types::{Camera, CameraOrigin, Config};
use super::validate::validate_runtime_cameras;

/// One camera as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCamera {
    /// The camera's id.
    pub id: String,
    /// Its definition: [`Camera::definition`], the API's camera body as JSON.
    pub definition: String,
    /// SHA-256 (hex) of the file's definition last seeded; `None` for a camera the API added.
    pub seed: Option<String>,
    /// Removed through the API; kept (as a tombstone) for a camera the file defines, so a
    /// restart does not bring it back while the file's definition stays the same, and for a
    /// GB/T 28181 channel, so its device's next catalog does not.
    pub removed: bool,
    /// When the row last changed (unix ms).
    pub updated_ms: i64,
}

/// A write of the start-up plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedWrite {
    /// Insert or replace this row.
    Put(StoredCamera),
    /// Forget the camera (the file no longer defines it).
    Delete(String),
}

/// A store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("camera inventory: {op}: {message}")]
pub struct InventoryError {
    /// What was being done.
    pub op: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Where camera definitions are kept (SQLite by default; see `crate::store::inventory`).
pub trait CameraStore: Send + Sync + 'static {
    /// Every stored camera, tombstones included, by id.
    fn cameras(&self) -> Result<Vec<StoredCamera>, InventoryError>;
    /// Applies the start-up plan in one transaction.
    fn seed(&self, writes: &[SeedWrite]) -> Result<(), InventoryError>;
    /// Saves a camera added or changed through the API: a new id is stored as the API's; a known
    /// one keeps where it came from (its seed) and is no longer removed.
    fn save(&self, id: &str, definition: &str, now_ms: i64) -> Result<(), InventoryError>;
    /// Removes a camera through the API: one the file defines becomes a tombstone, another is
    /// forgotten unless `remember` (a GB/T 28181 channel: the tombstone keeps its device's
    /// catalogs from adding it again). Unknown ids are not an error.
    fn remove(&self, id: &str, now_ms: i64, remember: bool) -> Result<(), InventoryError>;
}

/// Whether a stored camera is a GB/T 28181 channel (`gb28181://…`).
pub fn is_gb_channel(row: &StoredCamera) -> bool {
    parse(row).is_ok_and(|raw| {
        raw.url.as_deref().is_some_and(|u| {
            u.trim_start()
                .to_ascii_lowercase()
                .starts_with("gb28181://")
        })
    })
}

/// SHA-256 (hex) of a definition: what tells whether the file changed a camera since the last seed.
pub fn seed_of(definition: &str) -> String {
    sha256_hex(definition)
}

/// Hex SHA-256 of a text (token hashes, definition seeds).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What start-up runs and writes.
#[derive(Debug, Default)]
pub struct Plan {
    /// The cameras to run, in the file's order, then the API's (by id).
    pub cameras: Vec<Camera>,
    /// The store writes that make the store match.
    pub writes: Vec<SeedWrite>,
    /// Stored cameras that are not valid under the running configuration (kept, not run).
    pub errors: Vec<ConfigError>,
    /// Cameras of the file that stay removed (removed through the API, definition unchanged).
    pub kept_removed: Vec<String>,
    /// Cameras of the file whose API changes the file's new definition replaced.
    pub file_won: Vec<String>,
}

/// Joins the file's cameras (`config.cameras`) with the stored ones; see the module documentation.
pub fn reconcile(config: &Config, stored: Vec<StoredCamera>, now_ms: i64) -> Plan {
    let mut stored: BTreeMap<String, StoredCamera> =
        stored.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut plan = Plan::default();
    let mut from_store: Vec<RawCamera> = Vec::new();
    for camera in &config.cameras {
        let seed = seed_of(&camera.definition);
        let fresh = StoredCamera {
            id: camera.id.clone(),
            definition: camera.definition.clone(),
            seed: Some(seed.clone()),
            removed: false,
            updated_ms: now_ms,
        };
        match stored.remove(&camera.id) {
            Some(row) if row.seed.as_deref() == Some(seed.as_str()) => {
                if row.removed {
                    plan.kept_removed.push(camera.id.clone());
                } else if row.definition == camera.definition {
                    plan.cameras.push(camera.clone());
                } else {
                    match parse(&row) {
                        Ok(raw) => from_store.push(raw),
                        Err(e) => plan.errors.push(e),
                    }
                }
            }
            Some(row) => {
                if row.removed || row.definition != camera.definition {
                    plan.file_won.push(camera.id.clone());
                }
                plan.writes.push(SeedWrite::Put(fresh));
                plan.cameras.push(camera.clone());
            }
            None => {
                plan.writes.push(SeedWrite::Put(fresh));
                plan.cameras.push(camera.clone());
            }
        }
    }
    for (id, row) in stored {
        if row.seed.is_some() {
            // Seeded from the file, which no longer defines it.
            plan.writes.push(SeedWrite::Delete(id));
        } else if !row.removed {
            match parse(&row) {
                Ok(raw) => from_store.push(raw),
                Err(e) => plan.errors.push(e),
            }
        }
    }
    let (cameras, errors) = validate_runtime_cameras(from_store, config);
    plan.errors.extend(errors);
    plan.cameras.extend(cameras);
    plan
}

/// The stored cameras that run (every one not removed), validated against the running
/// configuration; each invalid one is named with its field. What every node of a cluster runs
/// from, after the first node seeded the store.
pub fn runnable(config: &Config, stored: &[StoredCamera]) -> (Vec<Camera>, Vec<ConfigError>) {
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for row in stored.iter().filter(|r| !r.removed) {
        match parse(row) {
            Ok(raw) => raws.push(raw),
            Err(e) => errors.push(e),
        }
    }
    let (cameras, more) = validate_runtime_cameras(raws, config);
    errors.extend(more);
    (cameras, errors)
}

fn parse(row: &StoredCamera) -> Result<RawCamera, ConfigError> {
    let mut raw: RawCamera = serde_json::from_str(&row.definition).map_err(|e| {
        ConfigError::new(
            CameraOrigin::Inventory { id: row.id.clone() }.to_string(),
            format!("the stored definition cannot be read: {e}"),
        )
    })?;
    raw.origin = Some(CameraOrigin::Inventory { id: row.id.clone() });
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(cameras: &str) -> Config {
        let toml = format!(
            "[credentials.site]\nusername = \"u\"\npassword_env = \"QLY_INV_TEST\"\n{cameras}"
        );
        let env = super::super::tests::FakeEnv::default().with_var("QLY_INV_TEST", "p");
        super::super::tests::parse_str_with(&toml, Path::new("/x"), &env)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn cam(id: &str, name: &str) -> String {
        format!("[[cameras]]\nid = \"{id}\"\nname = \"{name}\"\nurl = \"rtsp://127.0.0.1/{id}\"\n")
    }

    fn ids(plan: &Plan) -> Vec<(&str, &str)> {
        plan.cameras
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect()
    }

    /// Applies a plan's writes to rows held in memory (what a store does), for the next start.
    fn apply(rows: &mut Vec<StoredCamera>, writes: &[SeedWrite]) {
        for w in writes {
            match w {
                SeedWrite::Put(c) => {
                    rows.retain(|r| r.id != c.id);
                    rows.push(c.clone());
                }
                SeedWrite::Delete(id) => rows.retain(|r| &r.id != id),
            }
        }
    }

    #[test]
    fn the_file_seeds_the_store_and_api_changes_survive_until_the_file_changes() {
        let file = config(&(cam("a", "甲") + &cam("b", "乙")));
        // First start: everything from the file, seeded.
        let mut rows = Vec::new();
        let plan = reconcile(&file, rows.clone(), 1);
        assert_eq!(ids(&plan), [("a", "甲"), ("b", "乙")]);
        apply(&mut rows, &plan.writes);
        assert!(rows.iter().all(|r| r.seed.is_some() && !r.removed));

        // The API renames a, removes b and adds c; a restart runs exactly that.
        let renamed = config(&cam("a", "甲改")).cameras[0].definition.clone();
        let added = config(&cam("c", "丙")).cameras[0].definition.clone();
        for r in rows.iter_mut() {
            match r.id.as_str() {
                "a" => r.definition = renamed.clone(),
                _ => r.removed = true,
            }
        }
        rows.push(StoredCamera {
            id: "c".into(),
            definition: added,
            seed: None,
            removed: false,
            updated_ms: 2,
        });
        let plan = reconcile(&file, rows.clone(), 3);
        assert_eq!(ids(&plan), [("a", "甲改"), ("c", "丙")]);
        assert_eq!(plan.kept_removed, ["b"]);
        assert!(plan.writes.is_empty(), "{:?}", plan.writes);
        assert_eq!(
            plan.cameras[0].origin,
            CameraOrigin::Inventory { id: "a".into() }
        );

        // The engineer edits b in the file and drops a from it: b is back as the file says, a goes.
        let edited = config(&cam("b", "乙二"));
        let plan = reconcile(&edited, rows.clone(), 4);
        assert_eq!(ids(&plan), [("b", "乙二"), ("c", "丙")]);
        assert_eq!(plan.file_won, ["b"]);
        apply(&mut rows, &plan.writes);
        let mut left: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
        left.sort();
        assert_eq!(left, ["b", "c"]);
    }

    #[test]
    fn a_stored_camera_invalid_under_this_configuration_is_named_and_kept() {
        let with_creds = config(&format!("{}credentials = \"site\"\n", cam("x", "带密码")));
        let row = StoredCamera {
            id: "x".into(),
            definition: with_creds.cameras[0].definition.clone(),
            seed: None,
            removed: false,
            updated_ms: 1,
        };
        let broken = StoredCamera {
            id: "y".into(),
            definition: "{not json".into(),
            ..row.clone()
        };
        // The credential set is gone from this file.
        let toml = "[node]\nname = \"n\"\n";
        let bare = super::super::tests::parse_str_with(
            toml,
            Path::new("/x"),
            &super::super::tests::FakeEnv::default(),
        )
        .unwrap();
        let plan = reconcile(&bare, vec![row, broken], 2);
        assert!(plan.cameras.is_empty());
        assert!(plan.writes.is_empty(), "rows are kept: {:?}", plan.writes);
        let text: Vec<String> = plan.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|e| e.contains("inventory camera \"x\" field credentials")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("inventory camera \"y\"") && e.contains("cannot be read")),
            "{text:?}"
        );
    }

    #[test]
    fn a_definition_round_trips_through_the_store_form() {
        let file = config(&format!(
            "{}sub_url = \"rtsp://127.0.0.1/sub\"\nlat = 31.5\nlon = 117.25\narea_path = \"示范县/城关镇\"\ntags = [\"路口\"]\npriority = 1\nkeyframe_only = false\nmaintenance = [{{ start = \"2026-11-22T01:00:00+08:00\", end = \"2026-11-22T02:00:00+08:00\" }}]\n",
            cam("r", "全字段")
        ));
        let c = &file.cameras[0];
        let raw: RawCamera = serde_json::from_str(&c.definition).unwrap();
        let (again, errors) = validate_runtime_cameras(vec![raw], &file);
        assert!(errors.is_empty(), "{errors:?}");
        let mut again = again.into_iter().next().unwrap();
        again.origin = c.origin.clone();
        assert_eq!(&again, c, "the stored form gives back the same camera");
        assert!(!c.definition.contains("null"), "{}", c.definition);
    }
}
