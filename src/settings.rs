//! The whole configuration file, assembled above the stages: `config` reads the file and validates its
//! core (node, web, ingest, health, credentials, the camera inventory); each stage validates its own
//! section (`[inference]` in `infer`, the rules file in `rules`, `[delivery]` in `delivery`, `[auth]` in
//! `auth`); this module hands each section to its owner and reports every error at once, each with its
//! field path, through one error type ([`ConfigErrors`]). Model manifests are loaded (and their files'
//! checksums verified) here, once; the stages are given the loaded manifests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;
use toml::de::DeValue;

use crate::activity::{ActivityConfig, RawActivityConfig};
use crate::auth::{AuthConfig, RawAuth};
use crate::clip::{ClipConfig, RawClipConfig};
use crate::cluster::{ClusterConfig, RawClusterConfig};
use crate::config::{
    self, Config, ConfigError, ConfigErrors, Environment, SectionReader, StageSections,
    SystemEnvironment,
};
use crate::delivery::{DeliveryConfig, RawDeliveryConfig};
use crate::gb28181::{GbConfig, RawGbConfig};
use crate::infer::{InferSettings, ModelKind, ModelManifest, RawInferConfig};
use crate::rules::RulesConfig;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The core: node, web, ingest, health, credentials and cameras.
    pub config: Config,
    /// `[inference]` and the rules file; `None` runs health only.
    pub analysis: Option<AnalysisConfig>,
    /// `[delivery]`: where alerts go besides the command hall.
    pub delivery: DeliveryConfig,
    /// `[auth]`: session lifetimes and the users created at first start.
    pub auth: AuthConfig,
    /// `[activity]`: which cameras are decoded and analysed how often.
    pub activity: ActivityConfig,
    /// `[clip]`: evidence clips of alerts.
    pub clip: ClipConfig,
    /// `[cluster]`: several nodes on one PostgreSQL database.
    pub cluster: ClusterConfig,
    /// `[gb28181]`: devices that register over GB/T 28181 (`None`: no SIP port).
    pub gb28181: Option<GbConfig>,
}

/// What the analysis stages run.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    /// Models, provider, batching.
    pub inference: InferSettings,
    /// The manifests of `inference.models`, in the same order, loaded and checked once at start.
    pub manifests: Vec<Arc<ModelManifest>>,
    /// Zones and rules per camera (empty when no rules file is given).
    pub rules: RulesConfig,
    /// The rules file (`rules = …`, resolved), which the API's rule editor saves to.
    pub rules_file: Option<PathBuf>,
    /// A scene-anomaly model is loaded (rules of kind `scene_anomaly` can run).
    pub anomaly_model: bool,
    /// Fallen people can be seen (rules of kind `fall` can run).
    pub fall_model: bool,
}

impl AnalysisConfig {
    /// True when one of the models is an object detector (tracks and object rules can run).
    pub fn has_detector(&self) -> bool {
        self.manifests
            .iter()
            .any(|m| matches!(m.kind, ModelKind::Detector(_)))
    }
}

/// The stages' sections as written in the file.
#[derive(Debug, Clone, Default)]
pub struct RawSections {
    /// `[inference]`: models, execution provider, batching; no section = no analysis.
    pub inference: Option<RawInferConfig>,
    /// Rules file (zones and behaviour rules), relative to the config file's directory.
    pub rules: Option<String>,
    /// `[delivery]`: case system, police stations, retry policy.
    pub delivery: RawDeliveryConfig,
    /// `[auth]`: session lifetimes and `[[auth.users]]` created at first start.
    pub auth: Option<RawAuth>,
    /// `[activity]`: look only where something moves.
    pub activity: RawActivityConfig,
    /// `[clip]`: evidence clips of alerts.
    pub clip: RawClipConfig,
    /// `[cluster]`: several nodes on one PostgreSQL database.
    pub cluster: RawClusterConfig,
    /// `[gb28181]`: the GB/T 28181 platform (no section: none).
    pub gb28181: Option<RawGbConfig>,
}

impl StageSections for RawSections {
    const KEYS: &'static [&'static str] = &[
        "inference",
        "rules",
        "delivery",
        "auth",
        "activity",
        "clip",
        "cluster",
        "gb28181",
    ];

    fn read<'i>(
        &mut self,
        key: &'static str,
        value: Spanned<DeValue<'i>>,
        reader: &mut SectionReader<'_, '_>,
    ) {
        match key {
            "inference" => self.inference = reader.section(value, key),
            "rules" => self.rules = reader.section(value, key),
            "delivery" => self.delivery = reader.section(value, key).unwrap_or_default(),
            "auth" => self.auth = reader.section(value, key),
            "activity" => self.activity = reader.section(value, key).unwrap_or_default(),
            "clip" => self.clip = reader.section(value, key).unwrap_or_default(),
            "cluster" => self.cluster = reader.section(value, key).unwrap_or_default(),
            "gb28181" => self.gb28181 = reader.section(value, key),
            _ => {}
        }
    }
}

/// Loads a configuration file: relative paths resolve against its directory, CSV inventories are
/// imported, secrets resolved from the process environment, and every section validated.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    load_with(path, &SystemEnvironment)
}

/// [`load`] with an explicit [`Environment`].
pub fn load_with(path: &Path, env: &dyn Environment) -> Result<Settings, ConfigErrors> {
    assemble(config::load_document(path, env)?, env)
}

/// Parses TOML text as if it were a file in `base_dir`, using the process environment for secrets.
pub fn parse_str(toml: &str, base_dir: &Path) -> Result<Settings, ConfigErrors> {
    parse_str_with(toml, base_dir, &SystemEnvironment)
}

/// [`parse_str`] with an explicit [`Environment`].
pub fn parse_str_with(
    toml: &str,
    base_dir: &Path,
    env: &dyn Environment,
) -> Result<Settings, ConfigErrors> {
    assemble(config::parse_document(toml, "config", base_dir, env)?, env)
}

/// Validates each stage's section against the validated core and collects every error.
fn assemble(
    doc: config::Document<RawSections>,
    env: &dyn Environment,
) -> Result<Settings, ConfigErrors> {
    let config::Document {
        config,
        stages,
        base_dir,
        mut errors,
    } = doc;
    let analysis = analysis(&stages, &config, &base_dir, env, &mut errors);
    let delivery = match stages.delivery.validate(&|k| env.var(k).ok()) {
        Ok(d) => DeliveryConfig {
            public_url: config.web.public_url.clone(),
            ..d
        },
        Err(found) => {
            for e in found {
                errors.push(match e.split_once(": ") {
                    Some((path, message)) => ConfigError::new(path, message),
                    None => ConfigError::new("delivery", e),
                });
            }
            DeliveryConfig::default()
        }
    };
    let auth = match crate::auth::config::validate(&stages.auth.clone().unwrap_or_default(), |k| {
        env.var(k).ok()
    }) {
        Ok(a) => a,
        Err(found) => {
            errors.extend(found);
            AuthConfig::default()
        }
    };
    let activity = stages.activity.validate().unwrap_or_else(|found| {
        errors.extend(found);
        ActivityConfig::default()
    });
    let clip = stages.clip.validate().unwrap_or_else(|found| {
        errors.extend(found);
        ClipConfig::default()
    });
    let cluster = stages.cluster.validate().unwrap_or_else(|found| {
        errors.extend(found);
        ClusterConfig::default()
    });
    let gb28181 = stages.gb28181.as_ref().and_then(|raw| {
        raw.validate(&|k| env.var(k).ok())
            .map_err(|found| errors.extend(found))
            .ok()
    });
    if errors.is_empty() {
        Ok(Settings {
            config,
            analysis,
            delivery,
            auth,
            activity,
            clip,
            cluster,
            gb28181,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `[inference]` and the rules file; each manifest is loaded and its model file checked here, once;
/// rules are checked against the cameras and the model kinds.
fn analysis(
    raw: &RawSections,
    config: &Config,
    base_dir: &Path,
    env: &dyn Environment,
    errors: &mut Vec<ConfigError>,
) -> Option<AnalysisConfig> {
    let Some(inf) = &raw.inference else {
        if raw.rules.is_some() {
            errors.push(ConfigError::new(
                "rules",
                "rules need models: add an [inference] section with `models = [...]`",
            ));
        }
        return None;
    };
    let assets_dir = &config.node.assets_dir;
    let inference = match inf.validate("inference", base_dir, assets_dir) {
        Ok(s) => Some(s),
        Err(issues) => {
            errors.extend(
                issues
                    .into_iter()
                    .map(|i| ConfigError::new(i.field, i.message)),
            );
            None
        }
    };
    // Each manifest must load and name a model file that is there (and matches its sha256).
    let mut manifests = Vec::new();
    for (i, m) in inference.iter().flat_map(|s| s.models.iter()).enumerate() {
        match ModelManifest::load(m, assets_dir) {
            Ok(mf) => {
                if let Err(e) = mf.verify_file() {
                    errors.push(ConfigError::new(
                        format!("inference.models[{i}]"),
                        e.to_string(),
                    ));
                }
                manifests.push(Arc::new(mf));
            }
            Err(e) => errors.push(ConfigError::new(
                format!("inference.models[{i}]"),
                e.to_string(),
            )),
        }
    }
    let anomaly_model = manifests
        .iter()
        .any(|m| matches!(m.kind, ModelKind::Anomaly(_)));
    // The fall pass: loaded and checked here, once, like the models.
    let mut inference = inference;
    if let Some(s) = inference.as_mut()
        && let Some(path) = s.fall_model.clone()
    {
        match ModelManifest::load(&path, assets_dir) {
            Ok(mf) => {
                let sees_falls = mf.detector().is_some_and(|d| {
                    d.labels
                        .iter()
                        .any(|l| l.kind == crate::infer::ObjectKind::FallenPerson)
                });
                if !sees_falls {
                    errors.push(ConfigError::new(
                        "inference.fall_model",
                        format!("{} is not a detector with a `fallen_person` label", mf.name),
                    ));
                } else if let Err(e) = mf.verify_file() {
                    errors.push(ConfigError::new("inference.fall_model", e.to_string()));
                }
                s.infer.fall = Some(Arc::new(mf));
            }
            Err(e) => errors.push(ConfigError::new("inference.fall_model", e.to_string())),
        }
    }
    // Fall rules need someone to see falls: a detector labelling fallen people, or the fall pass
    // beside a person detector.
    let sees_falls = manifests.iter().any(|m| {
        m.detector().is_some_and(|d| {
            d.labels
                .iter()
                .any(|l| l.kind == crate::infer::ObjectKind::FallenPerson)
        })
    }) || (inference.as_ref().is_some_and(|s| s.infer.fall.is_some())
        && manifests.iter().any(|m| m.detector().is_some()));
    let rules = match &raw.rules {
        None => RulesConfig::default(),
        Some(file) => {
            let path = config::resolve(base_dir, Path::new(file));
            match env.read_file(&path) {
                Err(e) => {
                    errors.push(ConfigError::new(
                        "rules",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    RulesConfig::default()
                }
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let ctx = crate::rules::ValidateContext {
                        known_cameras: Some(config.cameras.iter().map(|c| c.id.clone()).collect()),
                        action_model: false,
                        anomaly_model,
                        fall_model: sees_falls,
                    };
                    match crate::rules::parse_toml(&text, &ctx) {
                        Ok(r) => r,
                        Err(errs) => {
                            for e in errs.0 {
                                errors.push(ConfigError::new(
                                    format!("{file}: {}", e.path),
                                    e.message,
                                ));
                            }
                            RulesConfig::default()
                        }
                    }
                }
            }
        }
    };
    let rules_file = raw
        .rules
        .as_ref()
        .map(|f| config::resolve(base_dir, Path::new(f)));
    inference.map(|inference| AnalysisConfig {
        inference,
        manifests,
        rules,
        rules_file,
        anomaly_model,
        fall_model: sees_falls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CameraOrigin;
    use crate::config::tests::{FakeEnv, repo_env, repo_file};

    #[test]
    fn demo_config_parses() {
        let path = repo_file("config/demo.toml");
        let settings = load_with(&path, &repo_env()).unwrap_or_else(|e| panic!("demo.toml:\n{e}"));
        let analysis = settings.analysis.as_ref().expect("[inference]");
        assert!(analysis.has_detector());
        assert!(
            analysis.fall_model,
            "the demo's fall rule has the fall pass"
        );
        assert_eq!(
            analysis.inference.infer.fall.as_ref().map(|m| &*m.name),
            Some("person_fall")
        );
        let gb = settings
            .gb28181
            .as_ref()
            .expect("the demo has GB/T 28181 devices");
        assert_eq!(
            gb.password_for("34119910001180000001").expose(),
            "demo-gb-secret"
        );
        assert_eq!(
            gb.area_of("341199").map(ToString::to_string).as_deref(),
            Some("示范县/城关镇")
        );
        let cfg = &settings.config;
        assert_eq!(cfg.cameras.len(), 8);
        for (i, cam) in cfg.cameras.iter().enumerate() {
            assert_eq!(
                cam.url.as_str(),
                format!("rtsp://127.0.0.1:8554/cam/{:04}", i + 1)
            );
            let sub = cam.sub_url.as_ref().map(|u| u.as_str().to_owned());
            assert_eq!(
                sub.as_deref(),
                Some(format!("rtsp://127.0.0.1:8554/cam/{:04}/sub", i + 1).as_str())
            );
            assert_eq!(cam.credentials.as_deref(), Some("camsim"));
            assert!(cam.location.is_some());
            assert!(cam.area_path.is_some());
        }
        let creds = &cfg.credentials["camsim"];
        assert_eq!(creds.username, "admin");
        assert_eq!(creds.password.expose(), "camsim-demo-secret");
        let config_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        assert_eq!(cfg.node.data_dir, config_dir.join("../target/demo-data"));
        assert_eq!(cfg.cameras[7].maintenance.len(), 1);
        let stations: std::collections::BTreeSet<_> = cfg
            .cameras
            .iter()
            .filter_map(|c| c.jurisdiction.as_deref())
            .collect();
        assert_eq!(stations.len(), 3);
        let summary = cfg.summary();
        assert!(summary.contains("camsim"));
        assert!(!summary.contains("camsim-demo-secret"));
    }

    #[test]
    fn reference_config_parses() {
        let path = repo_file("config/reference.toml");
        let settings =
            load_with(&path, &repo_env()).unwrap_or_else(|e| panic!("reference.toml:\n{e}"));
        let cfg = &settings.config;
        // The reference imports the example inventory, so its cameras follow the TOML ones.
        assert!(
            cfg.cameras
                .iter()
                .any(|c| matches!(c.origin, CameraOrigin::Csv { .. }))
        );
        assert!(
            cfg.cameras
                .iter()
                .any(|c| matches!(c.origin, CameraOrigin::Toml { .. }))
        );
        // Every documented key is a real key: the plain serde path accepts the file too.
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut stages = RawSections::default();
        if let Some(v) = table.remove("inference") {
            stages.inference = Some(v.try_into().unwrap_or_else(|e| panic!("[inference]: {e}")));
        }
        if let Some(v) = table.remove("rules") {
            stages.rules = Some(v.try_into().unwrap_or_else(|e| panic!("rules: {e}")));
        }
        if let Some(v) = table.remove("delivery") {
            stages.delivery = v.try_into().unwrap_or_else(|e| panic!("[delivery]: {e}"));
        }
        if let Some(v) = table.remove("auth") {
            stages.auth = Some(v.try_into().unwrap_or_else(|e| panic!("[auth]: {e}")));
        }
        if let Some(v) = table.remove("activity") {
            stages.activity = v.try_into().unwrap_or_else(|e| panic!("[activity]: {e}"));
        }
        if let Some(v) = table.remove("clip") {
            stages.clip = v.try_into().unwrap_or_else(|e| panic!("[clip]: {e}"));
        }
        if let Some(v) = table.remove("cluster") {
            stages.cluster = v.try_into().unwrap_or_else(|e| panic!("[cluster]: {e}"));
        }
        let gb: crate::gb28181::RawGbConfig = table
            .remove("gb28181")
            .expect("the reference documents [gb28181]")
            .try_into()
            .unwrap_or_else(|e| panic!("[gb28181]: {e}"));
        assert_eq!(
            gb.validate(&|k| (k == "QLY_GB_PASSWORD").then(|| "gb-secret".to_owned()))
                .ok(),
            settings.gb28181,
            "the reference's [gb28181] is what loading it gives"
        );
        assert_eq!(
            stages.clip.validate().ok(),
            Some(settings.clip),
            "the reference's [clip] is what loading it gives"
        );
        assert_eq!(
            stages.cluster.validate().ok(),
            Some(settings.cluster),
            "the reference's [cluster] is what loading it gives"
        );
        assert!(stages.auth.is_some());
        assert_eq!(
            stages.activity.validate().ok(),
            Some(settings.activity),
            "the reference's [activity] is what loading it gives"
        );
        let core: Result<crate::config::raw::RawConfig, _> = toml::Value::Table(table).try_into();
        assert!(core.is_ok(), "{core:?}");
    }

    #[test]
    fn public_url_reaches_the_delivery_stage_without_its_trailing_slash() {
        let settings = parse_str_with(
            "[web]\npublic_url = \"https://hall.example.cn/\"\n",
            Path::new("/x"),
            &repo_env(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            settings.config.web.public_url.as_deref(),
            Some("https://hall.example.cn")
        );
        assert_eq!(settings.delivery.public_url, settings.config.web.public_url);
    }

    #[test]
    fn a_fall_rule_needs_the_fall_pass() {
        let repo = repo_file("");
        let config = |fall: &str| {
            format!(
                r#"
                rules = "rules.toml"
                [node]
                assets_dir = "{assets}"
                [inference]
                models = ["{models}/yolox_nano.toml"]
                {fall}
                [[cameras]]
                id = "c1"
                name = "北门"
                url = "rtsp://127.0.0.1:8554/cam/0001"
                "#,
                assets = repo.join("assets").display(),
                models = repo.join("models").display(),
            )
        };
        let env = FakeEnv::default().with_file(
            "/x/rules.toml",
            "[[rules]]\nid = \"fall\"\ncamera = \"c1\"\nkind = \"fall\"\n",
        );
        let err = parse_str_with(&config(""), Path::new("/x"), &env)
            .err()
            .unwrap_or_else(|| panic!("a fall rule without a fall model must be refused"));
        let text = err.to_string();
        assert!(
            text.contains("rules[0].kind") && text.contains("fall_model"),
            "{text}"
        );
        let with_fall = config(&format!(
            "fall_model = \"{}/person_fall.toml\"",
            repo.join("models").display()
        ));
        let settings = parse_str_with(&with_fall, Path::new("/x"), &env)
            .unwrap_or_else(|e| panic!("with the fall pass:\n{e}"));
        assert!(settings.analysis.is_some_and(|a| a.fall_model));
        // A fall model must see falls: the person detector is no fall model.
        let wrong = config(&format!(
            "fall_model = \"{}/yolox_nano.toml\"",
            repo.join("models").display()
        ));
        let err = parse_str_with(&wrong, Path::new("/x"), &env).expect_err("refused");
        assert!(
            err.to_string().contains("inference.fall_model")
                && err.to_string().contains("fallen_person"),
            "{err}"
        );
    }

    #[test]
    fn stage_and_core_errors_are_reported_together() {
        let toml = r#"
            rules = "rules.toml"
            [web]
            listen = "localhost"
            [delivery]
            bogus = 1
            [auth]
            session_idle = "forever"
        "#;
        let err = parse_str_with(toml, Path::new("/x"), &FakeEnv::default())
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        let paths: Vec<&str> = err.errors().iter().map(|e| e.path.as_str()).collect();
        for want in ["web.listen", "rules", "delivery.bogus"] {
            assert!(paths.contains(&want), "missing {want} in\n{err}");
        }
        assert!(paths.iter().any(|p| p.starts_with("auth.")), "{err}");
    }
}
