//! Configuration primitives and the core: a TOML file (plus CSV camera inventories it names) comes in;
//! the validated core ([`Config`]: node, web, ingest, health, credentials, cameras) and the stages' own
//! sections, still raw, go out in a [`Document`], with every problem found so far and its field path.
//! This module depends on no stage: each stage validates its own section, and `crate::settings`
//! assembles the whole file ([`ConfigError`] is the one error type for all of them).
//!
//! The pipeline is `raw` (serde shapes, `deny_unknown_fields`, read section by section so one bad
//! section does not hide the others) → `csv` (RFC 4180 inventories appended to the raw cameras) →
//! `validate` (pure apart from the [`Environment`] it is handed, which resolves credential secrets).
//! Secrets never appear in messages: inline passwords are refused without echoing them, URLs are
//! shown with their userinfo stripped, and [`Secret`] prints `***`.

mod csv;
pub mod inventory;
pub mod raw;
mod redact;
mod types;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use inventory::sha256_hex;
pub use raw::{SectionReader, StageSections};
pub use redact::{redact_credentials, redact_url};
pub use types::{
    AreaPath, Camera, CameraOrigin, Config, Credentials, Database, Decoder, GeoPoint, HealthConfig,
    IngestConfig, MaintenanceWindow, NodeConfig, Secret, SecretSource, SourceKind, StreamChoice,
    Timestamp, Transport, WebConfig, area_contains,
};
pub use validate::{MAX_NAME_LEN, validate, validate_runtime_cameras};

/// One problem in the configuration: where (`cameras[3].url`, `cameras.csv line 7 column url`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path, or file and line for syntax and CSV errors.
    pub path: String,
    /// What is wrong, naming the bad value unless it could be a secret.
    pub message: String,
}

impl ConfigError {
    /// Builds an error from a path and a message.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A stage section's optional duration field (`"10s"`): `default` when absent; an unparseable or
/// shorter-than-`min` value is an error at `path` (and gives `default`, so checking goes on).
pub fn duration_field(
    errors: &mut Vec<ConfigError>,
    path: &str,
    text: Option<&str>,
    default: std::time::Duration,
    min: std::time::Duration,
) -> std::time::Duration {
    let Some(text) = text else { return default };
    match crate::time::parse_duration(text) {
        Ok(x) if x >= min => x,
        Ok(_) => {
            errors.push(ConfigError::new(
                path,
                format!("{text:?} is too short; at least {} s", min.as_secs()),
            ));
            default
        }
        Err(e) => {
            errors.push(ConfigError::new(path, e));
            default
        }
    }
}

/// Every problem found in one configuration; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors, in the order they were found.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(path, message)])
    }
}

impl fmt::Display for ConfigErrors {
    /// One `path: message` per line, as `qianliyan check-config` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Where secrets and inventories come from; a trait so tests need neither real env vars nor files.
pub trait Environment {
    /// Value of an environment variable.
    fn var(&self, name: &str) -> Result<String, std::env::VarError>;
    /// Whole contents of a file.
    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Result<String, std::env::VarError> {
        std::env::var(name)
    }
    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// A configuration file read: its core sections (node, web, ingest, health, credentials, cameras)
/// validated into [`Config`], the stages' own sections read raw into `S` for the settings module to
/// validate, and every problem found so far in `errors` (field paths, lines).
#[derive(Debug)]
pub struct Document<S> {
    /// The core sections, validated (fields with errors keep their defaults).
    pub config: Config,
    /// The stages' sections as written.
    pub stages: S,
    /// The file's directory: relative paths resolve against it.
    pub base_dir: PathBuf,
    /// Every problem in the core sections and the CSV inventories.
    pub errors: Vec<ConfigError>,
}

/// Reads a configuration file: relative paths resolve against its directory, CSV inventories are
/// imported, credentials resolved through `env`, and the core validated. `Err` only when the file
/// cannot be read or is not TOML (nothing in it can be trusted then).
pub fn load_document<S: StageSections>(
    path: &Path,
    env: &dyn Environment,
) -> Result<Document<S>, ConfigErrors> {
    let shown = path.display().to_string();
    let bytes = env
        .read_file(path)
        .map_err(|e| ConfigErrors::single(&shown, format!("cannot read the file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigErrors::single(
            &shown,
            format!(
                "not valid UTF-8 (first bad byte at offset {}); save the file as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let source_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(shown);
    parse_document(&text, &source_name, &base_dir, env)
}

/// [`load_document`] on TOML text, as if it were the file `source_name` in `base_dir`.
pub fn parse_document<S: StageSections>(
    text: &str,
    source_name: &str,
    base_dir: &Path,
    env: &dyn Environment,
) -> Result<Document<S>, ConfigErrors> {
    let mut errors = Vec::new();
    let (text, parts) = with_includes(text, base_dir, env)?;
    // A syntax error leaves the document's shape unknown, so nothing after it is trustworthy.
    let (mut raw, stages) = raw::read_document::<S>(&text, source_name, &parts, &mut errors)
        .ok_or_else(|| ConfigErrors(std::mem::take(&mut errors)))?;

    for label in raw.camera_csv.clone() {
        let file = resolve(base_dir, Path::new(&label));
        match env.read_file(&file) {
            Ok(bytes) => raw.cameras.extend(csv::import(&label, &bytes, &mut errors)),
            Err(e) => errors.push(ConfigError::new(
                format!("camera_csv \"{label}\""),
                format!("cannot read {}: {e}", file.display()),
            )),
        }
    }
    let (config, more) = validate(&raw, base_dir, env);
    errors.extend(more);
    Ok(Document {
        config,
        stages,
        base_dir: base_dir.to_path_buf(),
        errors,
    })
}

/// Files included at most (`include = [...]`, not followed further).
const MAX_INCLUDES: usize = 16;

/// `text` followed by the files its top-level `include = ["other.toml", …]` names (relative to
/// `base_dir`), in order, with where each begins. An included file holds sections only (`[node]`,
/// `[[cameras]]` …: a top-level key there would land in the section before it) and includes
/// nothing itself; a section written in two files is an error of the second, with its line.
fn with_includes(
    text: &str,
    base_dir: &Path,
    env: &dyn Environment,
) -> Result<(String, Vec<raw::Part>), ConfigErrors> {
    // Not TOML: read_document reports it with its line.
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok((text.to_owned(), Vec::new()));
    };
    let names = match doc.get("include") {
        None => return Ok((text.to_owned(), Vec::new())),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .filter(|n| n.len() <= MAX_INCLUDES)
            .ok_or_else(|| {
                ConfigErrors::single(
                    "include",
                    format!("expected a list of at most {MAX_INCLUDES} file names"),
                )
            })?,
        Some(_) => {
            return Err(ConfigErrors::single(
                "include",
                "expected a list of file names, e.g. [\"config.toml\"]",
            ));
        }
    };
    let mut combined = text.to_owned();
    let mut parts = Vec::new();
    for name in names {
        let at = format!("include \"{name}\"");
        let file = resolve(base_dir, Path::new(&name));
        let bytes = env.read_file(&file).map_err(|e| {
            ConfigErrors::single(&at, format!("cannot read {}: {e}", file.display()))
        })?;
        let included = String::from_utf8(bytes)
            .map_err(|_| ConfigErrors::single(&at, "not valid UTF-8; save the file as UTF-8"))?;
        // Top-level keys come before the first section header: the first line that says
        // something must be one.
        if let Some((n, line)) = included
            .lines()
            .map(str::trim)
            .enumerate()
            .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            && !line.starts_with('[')
        {
            let key = line.split('=').next().unwrap_or(line).trim();
            return Err(ConfigErrors::single(
                &at,
                format!(
                    "line {}: `{key}` is a top-level key; an included file holds sections only ([section] or [[section]]): write it in the including file",
                    n + 1
                ),
            ));
        }
        combined.push('\n');
        parts.push(raw::Part {
            start: combined.len(),
            name: name.clone(),
        });
        combined.push_str(&included);
    }
    Ok((combined, parts))
}

/// `path` if absolute, else `base_dir/path`.
pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// Reads a CSV inventory uploaded at run time (`POST /api/cameras/import`) and validates its rows
/// against the running configuration: returns the valid cameras and every error by line and column.
pub fn import_csv_cameras(
    label: &str,
    bytes: &[u8],
    running: &Config,
) -> (Vec<Camera>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let raw = csv::import(label, bytes, &mut errors);
    let (cameras, more) = validate_runtime_cameras(raw, running);
    errors.extend(more);
    (cameras, errors)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// In-memory environment: variables and files by path.
    #[derive(Default)]
    pub(crate) struct FakeEnv {
        pub vars: HashMap<String, String>,
        pub files: HashMap<PathBuf, Vec<u8>>,
    }

    impl FakeEnv {
        pub(crate) fn with_var(mut self, k: &str, v: &str) -> Self {
            self.vars.insert(k.to_owned(), v.to_owned());
            self
        }
        pub(crate) fn with_file(mut self, p: &str, contents: &str) -> Self {
            self.files
                .insert(PathBuf::from(p), contents.as_bytes().to_vec());
            self
        }
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Result<String, std::env::VarError> {
            self.vars
                .get(name)
                .cloned()
                .ok_or(std::env::VarError::NotPresent)
        }
        fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    /// Real files from the repository; the secrets the configs name come from fakes, so the
    /// test needs no `set_var` (unsafe in edition 2024) and no secret files on disk.
    pub(crate) struct RepoEnv(pub(crate) FakeEnv);

    impl Environment for RepoEnv {
        fn var(&self, name: &str) -> Result<String, std::env::VarError> {
            self.0.var(name)
        }
        fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            match self.0.files.get(path) {
                Some(bytes) => Ok(bytes.clone()),
                None => std::fs::read(path),
            }
        }
    }

    pub(crate) fn repo_env() -> RepoEnv {
        RepoEnv(
            FakeEnv::default()
                .with_var("QLY_CAMSIM_PASSWORD", "camsim-demo-secret")
                .with_var("QLY_DEMO_PASSWORD", "demo-users-secret")
                .with_var("QLY_ADMIN_PASSWORD", "admin-users-secret")
                .with_var("QLY_HIKVISION_PASSWORD", "hik-secret")
                .with_var("QLY_GB_PASSWORD", "gb-secret")
                .with_var("QLY_DEMO_GB_PASSWORD", "demo-gb-secret")
                .with_file("/run/secrets/qly-dahua", "dahua-secret\n"),
        )
    }

    pub(crate) fn repo_file(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    fn paths(e: &ConfigErrors) -> Vec<&str> {
        e.errors().iter().map(|e| e.path.as_str()).collect()
    }

    /// The core alone, as the settings module sees it before the stage sections (which these
    /// tests do not write).
    fn core(doc: Result<Document<()>, ConfigErrors>) -> Result<Config, ConfigErrors> {
        let doc = doc?;
        if doc.errors.is_empty() {
            Ok(doc.config)
        } else {
            Err(ConfigErrors(doc.errors))
        }
    }

    pub(crate) fn parse_str_with(
        toml: &str,
        base: &Path,
        env: &dyn Environment,
    ) -> Result<Config, ConfigErrors> {
        core(parse_document(toml, "config", base, env))
    }

    /// `include` adds other files' sections after the including file's; a problem in an included
    /// file is reported with that file's name and line; an included file with a top-level key, a
    /// section written twice, or a file that is missing are errors that say so.
    #[test]
    fn included_files_add_their_sections_and_their_problems_name_them() {
        let cams = "# the county's cameras\n[[cameras]]\nid = \"a\"\nname = \"A\"\nurl = \"rtsp://127.0.0.1/a\"\n";
        let env = FakeEnv::default()
            .with_file("/x/cams.toml", cams)
            .with_file(
                "/x/bad.toml",
                "[[cameras]]\nid = \"b\"\nname = \"B\"\nurl = 5\n",
            )
            .with_file("/x/loose.toml", "\n# note\ncamera_csv = [\"c.csv\"]\n")
            .with_file("/x/node.toml", "[node]\nname = \"again\"\n");
        let main = |includes: &str| {
            format!("include = [{includes}]\n[node]\nname = \"main\"\ndata_dir = \"d\"\n")
        };
        let c = parse_str_with(&main("\"cams.toml\""), Path::new("/x"), &env).unwrap();
        assert_eq!(c.node.name, "main");
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].id, "a");

        let e = parse_str_with(&main("\"cams.toml\", \"bad.toml\""), Path::new("/x"), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml line 4"), "{e}");

        let e = parse_str_with(&main("\"loose.toml\""), Path::new("/x"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("include \"loose.toml\"") && e.contains("line 3: `camera_csv`"),
            "{e}"
        );

        let e = parse_str_with(&main("\"node.toml\""), Path::new("/x"), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.toml line 1"), "{e}");

        let e = parse_str_with(&main("\"gone.toml\""), Path::new("/x"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("include \"gone.toml\"") && e.contains("/x/gone.toml"),
            "{e}"
        );
        let e = parse_str_with("include = \"cams.toml\"\n", Path::new("/x"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("include") && e.contains("list of file names"),
            "{e}"
        );
    }

    /// Snapshots and clips go to the data directory unless `media_dir` names another (a directory
    /// the nodes of a cluster share); an empty one is refused with its path.
    #[test]
    fn media_dir_defaults_to_the_data_directory_and_resolves_against_the_file() {
        let env = FakeEnv::default();
        let c = parse_str_with("[node]\ndata_dir = \"d\"\n", Path::new("/x"), &env).unwrap();
        assert_eq!(c.node.media_dir, Path::new("/x/d"));
        let c = parse_str_with(
            "[node]\ndata_dir = \"d\"\nmedia_dir = \"/srv/media\"\n",
            Path::new("/x"),
            &env,
        )
        .unwrap();
        assert_eq!(c.node.media_dir, Path::new("/srv/media"));
        let e = parse_str_with("[node]\nmedia_dir = \" \"\n", Path::new("/x"), &env).unwrap_err();
        assert!(e.to_string().contains("node.media_dir"), "{e}");
    }

    fn parse_str(toml: &str, base: &Path) -> Result<Config, ConfigErrors> {
        parse_str_with(toml, base, &SystemEnvironment)
    }

    fn load_with(path: &Path, env: &dyn Environment) -> Result<Config, ConfigErrors> {
        core(load_document(path, env))
    }

    #[test]
    fn stage_sections_are_unknown_to_the_core_alone() {
        let err = parse_str_with(
            "[inference]\nmodels = []\n",
            Path::new("/x"),
            &FakeEnv::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("expected errors"));
        assert_eq!(paths(&err), ["inference"], "{err}");
        assert!(
            err.to_string().contains("expected one of node, web"),
            "{err}"
        );
    }

    #[test]
    fn example_csv_parses() {
        let dir = repo_file("config");
        let toml = r#"
            camera_csv = ["cameras.example.csv"]
            [credentials.hikvision]
            username = "admin"
            password_env = "QLY_HIKVISION_PASSWORD"
            [credentials.dahua]
            username = "admin"
            password_file = "/run/secrets/qly-dahua"
        "#;
        let cfg = parse_str_with(toml, &dir, &repo_env())
            .unwrap_or_else(|e| panic!("cameras.example.csv:\n{e}"));
        assert_eq!(cfg.cameras.len(), 10);
        assert_eq!(cfg.cameras[0].name, "人民路与解放路交叉口,东北角");
        assert!(cfg.cameras.iter().any(|c| !c.enabled));
        assert!(cfg.cameras.iter().any(|c| c.source == SourceKind::Rtmp));
        assert_eq!(cfg.credentials["dahua"].password.expose(), "dahua-secret");
    }

    #[test]
    fn defaults_and_relative_paths() {
        let cfg = parse_str_with("", Path::new("/etc/qly"), &FakeEnv::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.node.name, "qianliyan");
        assert_eq!(cfg.node.data_dir, PathBuf::from("/etc/qly/data"));
        assert_eq!(cfg.web.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.ingest.transport, Transport::Tcp);
        assert_eq!(cfg.ingest.stall_after, std::time::Duration::from_secs(10));
        assert_eq!(cfg.health.offline_after, cfg.ingest.stall_after);
        assert_eq!(cfg.health.grace, std::time::Duration::from_secs(5));
        assert_eq!(cfg.ingest.stream, StreamChoice::Sub);
        assert!(cfg.cameras.is_empty());
    }

    #[test]
    fn every_error_reported_at_once_with_paths() {
        let toml = r#"
            [web]
            listen = "localhost"
            public_url = "https://hall:hunter2@example.cn/"
            [ingest]
            transport = "tcpp"
            stall_after = "10"
            backoff_initial = "10s"
            backoff_max = "5s"
            analysis_fps = 0.0
            [credentials.cams]
            username = "admin"
            password_env = "NOT_SET_ANYWHERE"
            [[cameras]]
            id = "ok-1"
            name = "东门"
            url = "rtsp://10.0.0.1/live"
            [[cameras]]
            id = "bad id!"
            name = ""
            url = "ftp://10.0.0.2/x"
            credentials = "nope"
            lat = 95.0
            priority = 9
            gb_code = "123"
            area_code = "3411"
            area_path = "示范县//东街村"
            maintenance = [{ start = "2026-11-22T03:00:00+08:00", end = "2026-11-22T01:00:00+08:00" }]
            [[cameras]]
            id = "ok-1"
            name = "重复"
            url = "rtsp://10.0.0.3/live"
            sub_url = "rtsp://10.0.0.3:554/sub"
            foo = 1
        "#;
        let err = parse_str_with(toml, Path::new("/x"), &FakeEnv::default())
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        let p = paths(&err);
        for want in [
            "web.listen",
            "web.public_url",
            "ingest.transport",
            "ingest.stall_after",
            "ingest.backoff_max",
            "ingest.analysis_fps",
            "credentials.cams.password_env",
            "cameras[1].id",
            "cameras[1].name",
            "cameras[1].url",
            "cameras[1].credentials",
            "cameras[1].lat",
            "cameras[1].lon",
            "cameras[1].priority",
            "cameras[1].gb_code",
            "cameras[1].area_code",
            "cameras[1].area_path",
            "cameras[1].maintenance[0].end",
            "cameras[2].foo",
            "cameras[2].id",
        ] {
            assert!(p.contains(&want), "missing {want} in\n{err}");
        }
        let text = err.to_string();
        assert_eq!(text.lines().count(), err.len());
        assert!(text.contains("\"tcpp\""), "{text}");
        assert!(
            !text.contains("hunter2"),
            "a password in public_url is not echoed: {text}"
        );
        assert!(text.contains("NOT_SET_ANYWHERE"), "{text}");
        assert!(text.contains("unknown field `foo`"), "{text}");
        assert!(
            text.contains(
                "cameras[2].id: duplicate camera id \"ok-1\"; first defined at cameras[0]"
            ),
            "{text}"
        );
        // Dropped keys are not reported a second time as "missing".
        assert_eq!(
            p.iter().filter(|p| p.starts_with("cameras[2]")).count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn inline_password_rejected_without_echo() {
        // Built at run time so the secret is not a literal assignment in the source.
        let pw = ["Hunter2", "very", "secret"].join("-");
        let toml = format!(
            r#"
            [credentials.camsim]
            username = "admin"
            password = "{pw}"
            [[cameras]]
            id = "c1"
            name = "x"
            url = "rtsp://admin:{pw}@10.0.0.1/live"
            password = "{pw}"
        "#
        );
        let err = parse_str_with(&toml, Path::new("/x"), &FakeEnv::default())
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        let text = err.to_string();
        assert!(!text.contains("Hunter2"), "{text}");
        assert!(text.contains("credentials.camsim.password:"), "{text}");
        assert!(text.contains("password_env"), "{text}");
        assert!(text.contains("cameras[0].url:"), "{text}");
        assert!(
            text.contains("put credentials in a [credentials] set"),
            "{text}"
        );
        assert!(text.contains("cameras[0].password:"), "{text}");
    }

    #[test]
    fn secret_never_printed() {
        let toml = r#"
            [credentials.camsim]
            username = "admin"
            password_env = "CAM_PW"
        "#;
        let env = FakeEnv::default().with_var("CAM_PW", "s3cr3t-value");
        let cfg = parse_str_with(toml, Path::new("/x"), &env).unwrap_or_else(|e| panic!("{e}"));
        let all = format!("{cfg:?}\n{}", cfg.summary());
        assert!(!all.contains("s3cr3t-value"), "{all}");
        assert_eq!(cfg.credentials["camsim"].password.expose(), "s3cr3t-value");
        assert_eq!(format!("{}", cfg.credentials["camsim"].password), "***");
    }

    #[test]
    fn the_database_url_comes_from_env_or_file_and_is_never_repeated() {
        let pw = ["db", "pass", "9"].join("-");
        let errors = |toml: &str, env: &FakeEnv| {
            parse_str_with(toml, Path::new("/x"), env)
                .err()
                .unwrap_or_else(|| panic!("expected errors"))
                .to_string()
        };
        let env = FakeEnv::default()
            .with_var(
                "QLY_DB",
                &format!("postgres://qly:{pw}@10.0.0.5:5432/qianliyan"),
            )
            .with_var("QLY_WRONG", &format!("mysql://qly:{pw}@10.0.0.5/qianliyan"))
            .with_file("/etc/qly/db.url", &format!("postgresql://qly:{pw}@db/q\n"));
        let cfg = parse_str_with(
            "[node]\ndatabase_url_env = \"QLY_DB\"\ndatabase_pool = 8\n",
            Path::new("/x"),
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        match &cfg.node.database {
            Database::Postgres { url, pool, .. } => {
                assert!(url.expose().ends_with("/qianliyan"));
                assert_eq!(*pool, 8);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{cfg:?}\n{}", cfg.summary()).contains(&pw));
        let cfg = parse_str_with(
            "[node]\ndatabase_url_file = \"db.url\"\n",
            Path::new("/etc/qly"),
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cfg.node.database,
            Database::Postgres { pool: 16, .. }
        ));
        assert_eq!(
            parse_str_with("", Path::new("/x"), &env)
                .unwrap()
                .node
                .database,
            Database::Sqlite
        );
        let text = errors(
            "[node]\ndatabase_url_env = \"QLY_WRONG\"\ndatabase_pool = 0\n",
            &env,
        );
        assert!(
            text.contains("node.database_url_env: the database URL must be a PostgreSQL URL"),
            "{text}"
        );
        assert!(text.contains("node.database_pool"), "{text}");
        assert!(!text.contains(&pw), "{text}");
        let at = FakeEnv::default().with_var("QLY_AT", "postgres://qly:p@ss@db/q");
        let text = errors("[node]\ndatabase_url_env = \"QLY_AT\"\n", &at);
        assert!(
            text.contains("write an '@' in the user name or password as %40"),
            "{text}"
        );
        assert!(!text.contains("ss@db"), "{text}");
        let text = errors("[node]\ndatabase_url_env = \"QLY_UNSET\"\n", &env);
        assert!(
            text.contains("environment variable QLY_UNSET is not set (needed by the database URL)"),
            "{text}"
        );
    }

    #[test]
    fn password_file_resolved_relative_to_config() {
        let toml = r#"
            [credentials.hik]
            username = "admin"
            password_file = "secrets/hik.pw"
            [credentials.gone]
            username = "admin"
            password_file = "secrets/missing.pw"
            [credentials.both]
            username = "admin"
            password_file = "a"
            password_env = "B"
            [credentials.neither]
            username = "admin"
        "#;
        let env = FakeEnv::default().with_file("/etc/qly/secrets/hik.pw", "pw-from-file\n");
        let err = parse_str_with(toml, Path::new("/etc/qly"), &env)
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        let p = paths(&err);
        assert!(p.contains(&"credentials.gone.password_file"), "{err}");
        assert!(p.contains(&"credentials.both"), "{err}");
        assert!(p.contains(&"credentials.neither"), "{err}");
        assert!(!p.iter().any(|p| p.starts_with("credentials.hik")), "{err}");
        assert!(
            err.to_string().contains("/etc/qly/secrets/missing.pw"),
            "{err}"
        );

        let ok = parse_str_with(
            "[credentials.hik]\nusername = \"admin\"\npassword_file = \"secrets/hik.pw\"\n",
            Path::new("/etc/qly"),
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.credentials["hik"].password.expose(), "pw-from-file");
    }

    #[test]
    fn system_environment_is_used_by_parse_str() {
        // PATH is set in every test runner, so the real lookup is exercised without set_var.
        let toml = "[credentials.any]\nusername = \"u\"\npassword_env = \"PATH\"\n";
        let cfg = parse_str(toml, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cfg.credentials["any"].password.expose().is_empty());
    }

    #[test]
    fn csv_import_and_duplicates_across_sources() {
        let toml = r#"
            camera_csv = ["inv/cameras.csv", "inv/missing.csv"]
            [[cameras]]
            id = "cam-0001"
            name = "城关镇东街"
            url = "rtsp://10.0.0.1/live"
        "#;
        let csv = "id,name,url,lat,lon,priority,enabled,note\n\
                   cam-0002,\"东街口, 北向\",rtsp://10.0.0.2/live,31.1,117.2,2,yes,\"a \"\"quoted\"\" note\"\n\
                   cam-0001,重复,rtsp://10.0.0.3/live,,,,,\n\
                   cam-0004,坏坐标,rtsp://10.0.0.4/live,abc,117.2,7,maybe,\n";
        let env = FakeEnv::default().with_file("/srv/inv/cameras.csv", csv);
        let err = parse_str_with(toml, Path::new("/srv"), &env)
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        let text = err.to_string();
        assert!(
            text.contains("inv/cameras.csv line 3 column id: duplicate camera id \"cam-0001\"; first defined at cameras[0]"),
            "{text}"
        );
        assert!(
            text.contains("inv/cameras.csv line 4 column lat:"),
            "{text}"
        );
        assert!(
            text.contains("inv/cameras.csv line 4 column priority:"),
            "{text}"
        );
        assert!(
            text.contains("inv/cameras.csv line 4 column enabled:"),
            "{text}"
        );
        assert!(text.contains("camera_csv \"inv/missing.csv\":"), "{text}");
        assert!(!text.contains("line 2"), "{text}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = parse_str_with(
            "[node]\nname = \"x\nweb = 1\n",
            Path::new("/x"),
            &FakeEnv::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("expected errors"));
        assert!(
            err.errors()[0].path.starts_with("config line 2 column"),
            "{err}"
        );
    }

    #[test]
    fn load_reports_unreadable_file() {
        let err = load_with(Path::new("/nope/qly.toml"), &FakeEnv::default())
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        assert_eq!(err.len(), 1);
        assert!(err.errors()[0].path.contains("/nope/qly.toml"));
    }
}
