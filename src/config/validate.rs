//! Raw → typed configuration. Pure apart from the [`Environment`] used to resolve secrets; reports
//! every problem at once, each with its field path, and never puts a secret in a message.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{RawCamera, RawConfig, RawCredentials, RawMaintenance, key_path};
use super::types::{
    AreaPath, Camera, CameraOrigin, Config, Credentials, Database, Decoder, GeoPoint, HealthConfig,
    IngestConfig, MaintenanceWindow, NodeConfig, Secret, SecretSource, SourceKind, StreamChoice,
    Timestamp, Transport, WebConfig,
};
use super::{ConfigError, Environment, resolve};

const DEFAULT_NODE_NAME: &str = "qianliyan";
const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(10);
const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
const DEFAULT_AUTH_FAILED_BACKOFF: Duration = Duration::from_secs(300);
const DEFAULT_ANALYSIS_FPS: f64 = 1.0;
const MAX_ANALYSIS_FPS: f64 = 30.0;
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_PRIORITY: u8 = 3;
const MAX_ID_LEN: usize = 64;

/// Validates the core of a raw configuration into a typed [`Config`], with every problem found (a
/// field with an error keeps its default). Relative paths resolve against `base_dir`; credential
/// secrets are read through `env`.
pub fn validate(
    raw: &RawConfig,
    base_dir: &Path,
    env: &dyn Environment,
) -> (Config, Vec<ConfigError>) {
    let mut v = Validator { errors: Vec::new() };
    let mut node = v.node(raw, base_dir);
    node.database = v.database(raw, base_dir, env);
    let web = v.web(raw);
    let ingest = v.ingest(raw);
    let health = HealthConfig {
        grace: v
            .duration(
                "health.grace",
                raw.health.grace.as_deref(),
                DEFAULT_GRACE,
                true,
            )
            .unwrap_or(DEFAULT_GRACE),
        offline_after: ingest.stall_after,
    };
    let credentials = v.credentials(raw, base_dir, env);
    let cameras = v.cameras(raw, &ingest);
    let config = Config {
        node,
        web,
        ingest,
        health,
        credentials,
        cameras,
    };
    (config, v.errors)
}

/// Validates cameras that arrive while the service runs (API body, CSV upload) against the running
/// configuration: its ingest defaults and credential set names. Returns the valid cameras and every
/// error (a bad row never blocks the good ones). Ids already in use are the caller's to check.
pub fn validate_runtime_cameras(
    raw: Vec<RawCamera>,
    running: &Config,
) -> (Vec<Camera>, Vec<ConfigError>) {
    let mut shell = RawConfig::default();
    for name in running.credentials.keys() {
        shell.credentials.insert(name.clone(), Default::default());
    }
    shell.cameras = raw;
    let mut v = Validator { errors: Vec::new() };
    let cameras = v.cameras(&shell, &running.ingest);
    (cameras, v.errors)
}

struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn node(&mut self, raw: &RawConfig, base_dir: &Path) -> NodeConfig {
        let name = raw.node.name.as_deref().unwrap_or(DEFAULT_NODE_NAME);
        if name.trim().is_empty() {
            self.err("node.name", "must not be empty");
        } else if name.chars().count() > MAX_ID_LEN || name.chars().any(char::is_control) {
            self.err(
                "node.name",
                format!(
                    "{name:?} must be at most {MAX_ID_LEN} characters without control characters"
                ),
            );
        }
        let data_dir = raw.node.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR);
        if data_dir.trim().is_empty() {
            self.err("node.data_dir", "must not be empty");
        }
        let assets_dir = match raw.node.assets_dir.as_deref() {
            Some(dir) => resolve(base_dir, Path::new(dir)),
            None => std::env::var_os("QLY_ASSETS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("assets")),
        };
        let media_dir = match raw.node.media_dir.as_deref() {
            Some(dir) if dir.trim().is_empty() => {
                self.err(
                    "node.media_dir",
                    "must not be empty (leave it out for the data directory)",
                );
                resolve(base_dir, Path::new(data_dir))
            }
            Some(dir) => resolve(base_dir, Path::new(dir)),
            None => resolve(base_dir, Path::new(data_dir)),
        };
        NodeConfig {
            name: name.to_owned(),
            media_dir,
            data_dir: resolve(base_dir, Path::new(data_dir)),
            assets_dir,
            database: Database::Sqlite,
        }
    }

    fn database(&mut self, raw: &RawConfig, base_dir: &Path, env: &dyn Environment) -> Database {
        let n = &raw.node;
        let pool = match n.database_pool {
            None => 16,
            Some(p) if (1..=1000).contains(&p) => p as u32,
            Some(p) => {
                self.err(
                    "node.database_pool",
                    format!("{p} must be 1 to 1000 connections"),
                );
                16
            }
        };
        let needed_by = "the database URL";
        let secret = match (
            n.database_url_env.as_deref(),
            n.database_url_file.as_deref(),
        ) {
            (None, None) => return Database::Sqlite,
            (Some(_), Some(_)) => {
                self.err(
                    "node",
                    "set one of database_url_env or database_url_file, not both",
                );
                None
            }
            (Some(var), None) => self.secret_from_env(needed_by, "node.database_url_env", var, env),
            (None, Some(file)) => {
                let file = resolve(base_dir, Path::new(file));
                self.secret_from_file(needed_by, "node.database_url_file", file, env)
            }
        };
        let Some((url, source)) = secret else {
            return Database::Sqlite;
        };
        let field = match source {
            SecretSource::Env(_) => "node.database_url_env",
            _ => "node.database_url_file",
        };
        let text = url.expose();
        let authority = text
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
            .unwrap_or_default();
        if authority.matches('@').count() > 1 {
            // The connector splits at the first '@': the rest of the password would become the
            // host, and land in messages.
            self.err(
                field,
                "the database URL has more than one '@' before the host: write an '@' in the user name or password as %40",
            );
            return Database::Sqlite;
        }
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            // The URL is never repeated: it may hold the password.
            self.err(
                field,
                "the database URL must be a PostgreSQL URL: postgres://user:password@host:5432/database",
            );
            return Database::Sqlite;
        }
        Database::Postgres { url, source, pool }
    }

    fn web(&mut self, raw: &RawConfig) -> WebConfig {
        let fallback = SocketAddr::from(([127, 0, 0, 1], 8080));
        let text = raw.web.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    "web.listen",
                    format!(
                        "{text:?} is not a socket address; expected IP:port such as \"127.0.0.1:8080\" \
                         or \"0.0.0.0:8080\" (host names are not resolved)"
                    ),
                );
                fallback
            }
        };
        let public_url = raw.web.public_url.as_deref().and_then(|text| {
            match url::Url::parse(text) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.query().is_none()
                        && u.fragment().is_none() =>
                {
                    Some(text.trim_end_matches('/').to_owned())
                }
                Ok(_) => {
                    self.err(
                        "web.public_url",
                        // Not echoed: a user or password written into it is a secret.
                        "must be an http(s) address with a host and no user, password, query or \
                         fragment, e.g. \"https://hall.example.cn\"",
                    );
                    None
                }
                Err(e) => {
                    self.err("web.public_url", format!("not a URL: {e}"));
                    None
                }
            }
        });
        let mut trusted_proxies = Vec::new();
        for (i, text) in raw.web.trusted_proxies.iter().flatten().enumerate() {
            let t = text.trim();
            match t
                .parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(n) => trusted_proxies.push(n),
                Err(_) => self.err(
                    format!("web.trusted_proxies[{i}]"),
                    format!("{text:?} is not an IP address or network such as \"10.0.0.0/8\""),
                ),
            }
        }
        WebConfig {
            listen,
            public_url,
            trusted_proxies,
        }
    }

    fn ingest(&mut self, raw: &RawConfig) -> IngestConfig {
        let r = &raw.ingest;
        let transport = self
            .transport("ingest.transport", r.transport.as_deref())
            .unwrap_or(Transport::Tcp);
        let stall_after = self
            .duration(
                "ingest.stall_after",
                r.stall_after.as_deref(),
                DEFAULT_STALL_AFTER,
                false,
            )
            .unwrap_or(DEFAULT_STALL_AFTER);
        let initial = self.duration(
            "ingest.backoff_initial",
            r.backoff_initial.as_deref(),
            DEFAULT_BACKOFF_INITIAL,
            false,
        );
        let max = self.duration(
            "ingest.backoff_max",
            r.backoff_max.as_deref(),
            DEFAULT_BACKOFF_MAX,
            false,
        );
        if let (Some(initial), Some(max)) = (initial, max)
            && max < initial
        {
            self.err(
                "ingest.backoff_max",
                format!(
                    "{} is shorter than ingest.backoff_initial {}; it must be at least as long",
                    super::types::fmt_duration(max),
                    super::types::fmt_duration(initial)
                ),
            );
        }
        let auth_failed_backoff = self
            .duration(
                "ingest.auth_failed_backoff",
                r.auth_failed_backoff.as_deref(),
                DEFAULT_AUTH_FAILED_BACKOFF,
                false,
            )
            .unwrap_or(DEFAULT_AUTH_FAILED_BACKOFF);
        let decoder = match r.decoder.as_deref() {
            None => Decoder::Cpu,
            Some(s) => Decoder::parse(s).unwrap_or_else(|| {
                self.err("ingest.decoder", one_of("decoder", s, Decoder::NAMES));
                Decoder::Cpu
            }),
        };
        let stream = match r.stream.as_deref() {
            None => StreamChoice::Sub,
            Some(s) => StreamChoice::parse(s).unwrap_or_else(|| {
                self.err("ingest.stream", one_of("stream", s, StreamChoice::NAMES));
                StreamChoice::Sub
            }),
        };
        let analysis_fps = self
            .fps("ingest.analysis_fps", r.analysis_fps)
            .unwrap_or(DEFAULT_ANALYSIS_FPS);
        IngestConfig {
            transport,
            stall_after,
            backoff_initial: initial.unwrap_or(DEFAULT_BACKOFF_INITIAL),
            backoff_max: max.unwrap_or(DEFAULT_BACKOFF_MAX),
            auth_failed_backoff,
            decoder,
            keyframe_only: r.keyframe_only.unwrap_or(true),
            analysis_fps,
            stream,
        }
    }

    fn credentials(
        &mut self,
        raw: &RawConfig,
        base_dir: &Path,
        env: &dyn Environment,
    ) -> BTreeMap<String, Credentials> {
        let mut out = BTreeMap::new();
        for (name, set) in &raw.credentials {
            let path = format!("credentials.{}", key_path(name));
            if !is_id(name) {
                self.err(
                    &path,
                    format!("set name {name:?} must be 1–{MAX_ID_LEN} characters of A–Z, a–z, 0–9, _ or -"),
                );
            }
            if let Some(c) = self.credential_set(name, &path, set, base_dir, env) {
                out.insert(name.clone(), c);
            }
        }
        out
    }

    fn credential_set(
        &mut self,
        name: &str,
        path: &str,
        set: &RawCredentials,
        base_dir: &Path,
        env: &dyn Environment,
    ) -> Option<Credentials> {
        let reported = |key: &str| set.rejected.iter().any(|k| k == key);
        let username = match set.username.as_deref() {
            Some(u) if !u.is_empty() => Some(u.to_owned()),
            Some(_) => {
                self.err(format!("{path}.username"), "must not be empty");
                None
            }
            None => {
                if !reported("username") {
                    self.err(
                        format!("{path}.username"),
                        "missing; every credential set needs a username",
                    );
                }
                None
            }
        };
        let secret = match (set.password_env.as_deref(), set.password_file.as_deref()) {
            (Some(_), Some(_)) => {
                self.err(
                    path,
                    "set exactly one of password_env or password_file, not both",
                );
                None
            }
            (None, None) => {
                if !["password", "password_env", "password_file"]
                    .iter()
                    .any(|k| reported(k))
                {
                    self.err(
                        path,
                        "no password source; set password_env = \"ENV_NAME\" or password_file = \"path\"",
                    );
                }
                None
            }
            (Some(var), None) => {
                let by = format!("credential set \"{name}\"");
                self.secret_from_env(&by, &format!("{path}.password_env"), var, env)
            }
            (None, Some(file)) => {
                let file = resolve(base_dir, Path::new(file));
                let by = format!("credential set \"{name}\"");
                self.secret_from_file(&by, &format!("{path}.password_file"), file, env)
            }
        };
        match (username, secret) {
            (Some(username), Some((password, source))) => Some(Credentials {
                name: name.to_owned(),
                username,
                password,
                source,
            }),
            _ => None,
        }
    }

    fn secret_from_env(
        &mut self,
        needed_by: &str,
        path: &str,
        var: &str,
        env: &dyn Environment,
    ) -> Option<(Secret, SecretSource)> {
        if !is_env_name(var) {
            self.err(
                path,
                format!("{var:?} is not an environment variable name (letters, digits and _, not starting with a digit)"),
            );
            return None;
        }
        let problem = match env.var(var) {
            Ok(v) if v.is_empty() => "is empty",
            Ok(v) => return Some((Secret::new(v), SecretSource::Env(var.to_owned()))),
            Err(std::env::VarError::NotPresent) => "is not set",
            Err(std::env::VarError::NotUnicode(_)) => "is not valid UTF-8",
        };
        self.err(
            path,
            format!("environment variable {var} {problem} (needed by {needed_by})"),
        );
        None
    }

    fn secret_from_file(
        &mut self,
        needed_by: &str,
        path: &str,
        file: PathBuf,
        env: &dyn Environment,
    ) -> Option<(Secret, SecretSource)> {
        let shown = file.display().to_string();
        let problem = match env.read_file(&file) {
            Err(e) => format!("cannot read password file {shown}: {e}"),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(_) => format!("password file {shown} is not valid UTF-8"),
                Ok(text) => {
                    // Editors add a final newline; it is never part of the password.
                    let secret = text.trim_end_matches(['\n', '\r']);
                    if secret.is_empty() {
                        format!("password file {shown} is empty")
                    } else {
                        return Some((Secret::new(secret), SecretSource::File(file)));
                    }
                }
            },
        };
        self.err(path, format!("{problem} (needed by {needed_by})"));
        None
    }

    fn cameras(&mut self, raw: &RawConfig, ingest: &IngestConfig) -> Vec<Camera> {
        let mut out = Vec::with_capacity(raw.cameras.len());
        let mut ids: HashMap<String, CameraOrigin> = HashMap::new();
        let mut gb_codes: HashMap<String, CameraOrigin> = HashMap::new();
        for (index, cam) in raw.cameras.iter().enumerate() {
            let origin = cam.origin.clone().unwrap_or(CameraOrigin::Toml { index });
            let before = self.errors.len();
            let camera = self.camera(cam, &origin, raw, ingest);
            if let Some(id) = &camera.id {
                match ids.get(id) {
                    Some(first) => self.err(
                        origin.field_path("id"),
                        format!("duplicate camera id {id:?}; first defined at {first}"),
                    ),
                    None => {
                        ids.insert(id.clone(), origin.clone());
                    }
                }
            }
            if let Some(code) = &camera.gb_code {
                match gb_codes.get(code) {
                    Some(first) => self.err(
                        origin.field_path("gb_code"),
                        format!("duplicate gb_code {code:?}; first used at {first}"),
                    ),
                    None => {
                        gb_codes.insert(code.clone(), origin.clone());
                    }
                }
            }
            // A row with a cell that was reported and dropped is not imported with a default.
            if self.errors.len() == before
                && cam.rejected.is_empty()
                && let Some(mut c) = camera.finish(origin)
            {
                c.definition = serde_json::to_string(cam).unwrap_or_default();
                out.push(c);
            }
        }
        out
    }

    fn camera(
        &mut self,
        c: &RawCamera,
        origin: &CameraOrigin,
        raw: &RawConfig,
        ingest: &IngestConfig,
    ) -> PartialCamera {
        let p = |field: &str| origin.field_path(field);
        // Fields the reader already reported (and dropped) are not reported again as missing.
        let reported = |field: &str| c.rejected.iter().any(|k| k == field);
        let mut out = PartialCamera::default();

        match c.id.as_deref() {
            None if reported("id") => {}
            None => self.err(p("id"), "missing; every camera needs an id"),
            Some(id) if !is_id(id) => self.err(
                p("id"),
                format!("{id:?} must be 1–{MAX_ID_LEN} characters of A–Z, a–z, 0–9, _ or -"),
            ),
            Some(id) => out.id = Some(id.to_owned()),
        }
        if let Some(code) = c.gb_code.as_deref() {
            if code.len() == 20 && code.bytes().all(|b| b.is_ascii_digit()) {
                out.gb_code = Some(code.to_owned());
            } else {
                self.err(
                    p("gb_code"),
                    format!("{code:?} is not a GB/T 28181 device code (exactly 20 digits)"),
                );
            }
        }
        match c.name.as_deref().map(str::trim) {
            None if reported("name") => {}
            None => self.err(p("name"), "missing; every camera needs a name"),
            Some("") => self.err(p("name"), "must not be empty"),
            Some(name) if name.chars().count() > MAX_NAME_LEN => self.err(
                p("name"),
                format!(
                    "is {} characters long; at most {MAX_NAME_LEN}",
                    name.chars().count()
                ),
            ),
            Some(name) => out.name = Some(name.to_owned()),
        }
        match c.url.as_deref() {
            None if reported("url") => {}
            None => self.err(p("url"), "missing; every camera needs a url"),
            Some(u) => match check_url(u) {
                Ok(url) => out.url = Some(url),
                Err(m) => self.err(p("url"), m),
            },
        }
        if let Some(u) = c.sub_url.as_deref() {
            match check_url(u) {
                Ok(url) => out.sub_url = Some(url),
                Err(m) => self.err(p("sub_url"), m),
            }
        }
        if let Some(name) = c.credentials.as_deref() {
            if raw.credentials.contains_key(name) {
                out.credentials = Some(name.to_owned());
            } else {
                let known: Vec<&str> = raw.credentials.keys().map(String::as_str).collect();
                self.err(
                    p("credentials"),
                    format!(
                        "unknown credential set {name:?}; defined sets: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        out.location = self.location(c, &p);
        if let Some(code) = c.area_code.as_deref() {
            if matches!(code.len(), 6 | 9 | 12) && code.bytes().all(|b| b.is_ascii_digit()) {
                out.area_code = Some(code.to_owned());
            } else {
                self.err(
                    p("area_code"),
                    format!("{code:?} is not an administrative-division code (6, 9 or 12 digits)"),
                );
            }
        }
        if let Some(path) = c.area_path.as_deref() {
            let segments: Vec<String> = path.split('/').map(|s| s.trim().to_owned()).collect();
            match AreaPath::new(segments) {
                Some(a) => out.area_path = Some(a),
                None => self.err(
                    p("area_path"),
                    format!("{path:?} must be 1–3 non-empty segments separated by '/', e.g. \"示范县/城关镇/东街村\""),
                ),
            }
        }
        if let Some(j) = c.jurisdiction.as_deref() {
            if j.trim().is_empty() {
                self.err(
                    p("jurisdiction"),
                    "must not be empty (leave it out instead)",
                );
            } else {
                out.jurisdiction = Some(j.trim().to_owned());
            }
        }
        out.priority = match c.priority {
            None => DEFAULT_PRIORITY,
            Some(n) => match u8::try_from(n) {
                Ok(n) if (1..=5).contains(&n) => n,
                _ => {
                    self.err(
                        p("priority"),
                        format!("{n} is out of range; 1 (highest) ..= 5"),
                    );
                    DEFAULT_PRIORITY
                }
            },
        };
        for (i, tag) in c.tags.iter().flatten().enumerate() {
            let tag = tag.trim();
            if tag.is_empty() {
                self.err(format!("{}[{i}]", p("tags")), "empty tag");
            } else if !out.tags.iter().any(|t| t == tag) {
                out.tags.push(tag.to_owned());
            }
        }
        out.enabled = c.enabled.unwrap_or(true);
        out.transport = self
            .transport(&p("transport"), c.transport.as_deref())
            .unwrap_or(ingest.transport);
        out.analysis_fps = match c.analysis_fps {
            None => ingest.analysis_fps,
            Some(_) => self
                .fps(&p("analysis_fps"), c.analysis_fps)
                .unwrap_or(ingest.analysis_fps),
        };
        out.keyframe_only = c.keyframe_only.unwrap_or(ingest.keyframe_only);
        for (i, m) in c.maintenance.iter().flatten().enumerate() {
            if let Some(w) = self.maintenance(&format!("{}[{i}]", p("maintenance")), m) {
                out.maintenance.push(w);
            }
        }
        out
    }

    fn location(&mut self, c: &RawCamera, p: &dyn Fn(&str) -> String) -> Option<GeoPoint> {
        let lat = self.coordinate(&p("lat"), c.lat, 90.0);
        let lon = self.coordinate(&p("lon"), c.lon, 180.0);
        match (c.lat, c.lon) {
            _ if c.rejected.iter().any(|k| k == "lat" || k == "lon") => None,
            (Some(_), None) => {
                self.err(p("lon"), "missing; give both lat and lon, or neither");
                None
            }
            (None, Some(_)) => {
                self.err(p("lat"), "missing; give both lat and lon, or neither");
                None
            }
            _ => Some(GeoPoint {
                lat: lat?,
                lon: lon?,
            }),
        }
    }

    fn coordinate(&mut self, path: &str, v: Option<f64>, limit: f64) -> Option<f64> {
        let v = v?;
        if v.is_finite() && (-limit..=limit).contains(&v) {
            Some(v)
        } else {
            self.err(path, format!("{v} is out of range −{limit}..={limit}"));
            None
        }
    }

    fn maintenance(&mut self, path: &str, m: &RawMaintenance) -> Option<MaintenanceWindow> {
        let mut stamp = |field: &str, text: &str| match crate::time::parse_rfc3339(text) {
            Ok(ms) => Some(Timestamp {
                unix_ms: ms,
                text: text.to_owned(),
            }),
            Err(e) => {
                self.err(format!("{path}.{field}"), e);
                None
            }
        };
        let start = stamp("start", &m.start.0);
        let end = stamp("end", &m.end.0);
        let (start, end) = (start?, end?);
        if end.unix_ms <= start.unix_ms {
            self.err(
                format!("{path}.end"),
                format!("{} is not after start {}", end.text, start.text),
            );
            return None;
        }
        Some(MaintenanceWindow { start, end })
    }

    fn transport(&mut self, path: &str, s: Option<&str>) -> Option<Transport> {
        let s = s?;
        let t = Transport::parse(s);
        if t.is_none() {
            self.err(path, one_of("transport", s, Transport::NAMES));
        }
        t
    }

    fn fps(&mut self, path: &str, v: Option<f64>) -> Option<f64> {
        let v = v?;
        if v.is_finite() && v > 0.0 && v <= MAX_ANALYSIS_FPS {
            Some(v)
        } else {
            self.err(
                path,
                format!("{v} is out of range; analysis rate must be > 0 and <= {MAX_ANALYSIS_FPS} frames per second"),
            );
            None
        }
    }

    /// Parses an optional duration (default when absent); `None` after reporting a bad one.
    fn duration(
        &mut self,
        path: &str,
        s: Option<&str>,
        default: Duration,
        zero_ok: bool,
    ) -> Option<Duration> {
        let Some(s) = s else {
            return Some(default);
        };
        match crate::time::parse_duration(s) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.err(path, format!("{s:?} must be longer than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }
}

/// What a camera's fields validated to; complete only when every required field is present.
#[derive(Default)]
struct PartialCamera {
    id: Option<String>,
    gb_code: Option<String>,
    name: Option<String>,
    url: Option<Url>,
    sub_url: Option<Url>,
    credentials: Option<String>,
    location: Option<GeoPoint>,
    area_code: Option<String>,
    area_path: Option<AreaPath>,
    jurisdiction: Option<String>,
    priority: u8,
    tags: Vec<String>,
    enabled: bool,
    transport: Transport,
    analysis_fps: f64,
    keyframe_only: bool,
    maintenance: Vec<MaintenanceWindow>,
}

impl PartialCamera {
    fn finish(self, origin: CameraOrigin) -> Option<Camera> {
        let url = self.url?;
        let source = SourceKind::from_scheme(url.scheme())?;
        Some(Camera {
            id: self.id?,
            gb_code: self.gb_code,
            name: self.name?,
            url,
            sub_url: self.sub_url,
            source,
            credentials: self.credentials,
            location: self.location,
            area_code: self.area_code,
            area_path: self.area_path,
            jurisdiction: self.jurisdiction,
            priority: self.priority,
            tags: self.tags,
            enabled: self.enabled,
            transport: self.transport,
            analysis_fps: self.analysis_fps,
            keyframe_only: self.keyframe_only,
            maintenance: self.maintenance,
            origin,
            definition: String::new(),
        })
    }
}

fn one_of(what: &str, got: &str, names: &[&str]) -> String {
    format!(
        "unknown {what} {got:?}; expected one of {}",
        names.join(", ")
    )
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Longest camera name, in characters (a name is shown in lists, alerts and snapshots).
pub const MAX_NAME_LEN: usize = 128;

/// Parses and checks a camera URL: supported scheme, a host where the scheme needs one, and no
/// credentials. Messages show the URL with any userinfo replaced by `***`.
pub(crate) fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| {
        format!(
            "{:?} is not a valid URL ({e}); expected e.g. \"rtsp://192.168.1.64:554/Streaming/Channels/101\"",
            super::redact::redact_credentials(text)
        )
    })?;
    let Some(kind) = SourceKind::from_scheme(url.scheme()) else {
        return Err(format!(
            "unsupported scheme {:?} in {:?}; expected one of {}",
            url.scheme(),
            super::redact::redact_credentials(text),
            SourceKind::SCHEMES.join(", ")
        ));
    };
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        // Both setters only fail for URLs that cannot have credentials, which these just had.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(format!(
            "credentials in the URL are not allowed; put credentials in a [credentials] set \
             (URL without them: {:?})",
            shown.as_str()
        ));
    }
    match kind {
        SourceKind::File => {
            if url.path().is_empty() || url.path() == "/" {
                return Err(format!("{:?} names no file", url.as_str()));
            }
        }
        SourceKind::Gb28181 => {
            let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
            let device = url.host_str().unwrap_or_default();
            let channel = url.path().strip_prefix('/').unwrap_or_default();
            if !digits(device) || !digits(channel) {
                return Err(format!(
                    "{:?} is not a GB/T 28181 channel: expected \"gb28181://<20-digit device id>/<20-digit channel id>\"",
                    url.as_str()
                ));
            }
        }
        _ => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("{:?} has no host", url.as_str()));
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "rtsp://192.168.1.64:554/Streaming/Channels/101",
            "rtsps://cam.example/live",
            "rtmp://10.0.0.1/live/stream",
            "http://10.0.0.1/flv",
            "https://10.0.0.1/flv",
            "file:///var/lib/qly/loop.mp4",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}: {:?}", check_url(ok));
        }
        let e = check_url("rtsp://admin:pa55@10.0.0.1/live")
            .err()
            .unwrap_or_default();
        assert!(!e.contains("pa55") && !e.contains("admin"), "{e}");
        assert!(e.contains("put credentials in a [credentials] set"), "{e}");
        assert!(e.contains("rtsp://10.0.0.1/live"), "{e}");
        let e = check_url("rtsp://admin@10.0.0.1/live")
            .err()
            .unwrap_or_default();
        assert!(e.contains("credentials in the URL"), "{e}");
        let e = check_url("ftp://10.0.0.1/x").err().unwrap_or_default();
        assert!(e.contains("unsupported scheme \"ftp\""), "{e}");
        let e = check_url("rtsp://admin:pa55@[bad/x")
            .err()
            .unwrap_or_default();
        assert!(!e.contains("pa55"), "{e}");
        assert!(check_url("10.0.0.1/live").is_err());
        assert!(check_url("file:///").is_err());
    }

    #[test]
    fn per_camera_overrides_apply() {
        let toml = r#"
            [ingest]
            transport = "udp"
            analysis_fps = 2
            keyframe_only = false
            [[cameras]]
            id = "a"
            name = "A"
            url = "rtsp://10.0.0.1/live"
            [[cameras]]
            id = "b"
            name = "B"
            url = "rtsp://10.0.0.2/live"
            sub_url = "rtsp://10.0.0.2/sub"
            transport = "tcp"
            analysis_fps = 0.5
            keyframe_only = true
            priority = 1
            tags = ["学校", "学校", "gate"]
        "#;
        let cfg = super::super::tests::parse_str_with(
            toml,
            Path::new("/x"),
            &super::super::tests::FakeEnv::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (&cfg.cameras[0], &cfg.cameras[1]);
        assert_eq!(
            (a.transport, a.analysis_fps, a.keyframe_only, a.priority),
            (Transport::Udp, 2.0, false, 3)
        );
        assert_eq!(
            (b.transport, b.analysis_fps, b.keyframe_only, b.priority),
            (Transport::Tcp, 0.5, true, 1)
        );
        assert_eq!(b.tags, ["学校", "gate"]);
        assert_eq!(
            a.analysis_url(StreamChoice::Sub).as_str(),
            "rtsp://10.0.0.1/live"
        );
        assert_eq!(
            b.analysis_url(StreamChoice::Sub).as_str(),
            "rtsp://10.0.0.2/sub"
        );
        assert_eq!(
            b.analysis_url(StreamChoice::Main).as_str(),
            "rtsp://10.0.0.2/live"
        );
    }

    #[test]
    fn maintenance_windows() {
        let toml = r#"
            [[cameras]]
            id = "a"
            name = "A"
            url = "rtsp://10.0.0.1/live"
            maintenance = [
              { start = "2026-11-22T01:00:00+08:00", end = "2026-11-22T03:00:00+08:00" },
              { start = "2026-11-22T01:00:00", end = "tomorrow" },
            ]
        "#;
        let env = super::super::tests::FakeEnv::default();
        let err = super::super::tests::parse_str_with(toml, Path::new("/x"), &env)
            .err()
            .unwrap_or_else(|| panic!("expected errors"));
        let paths: Vec<&str> = err.errors().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cameras[0].maintenance[1].start",
                "cameras[0].maintenance[1].end"
            ]
        );

        let ok = toml.replace(
            "{ start = \"2026-11-22T01:00:00\", end = \"tomorrow\" },",
            "",
        );
        let cfg = super::super::tests::parse_str_with(&ok, Path::new("/x"), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        let w = &cfg.cameras[0].maintenance[0];
        let inside = std::time::UNIX_EPOCH + Duration::from_millis(1_795_280_400_000 + 60_000);
        assert!(w.contains(inside));
        assert!(!w.contains(w.end.to_system_time()));
        assert!(w.contains(w.start.to_system_time()));
    }
}
