//! Typed, validated configuration: what the rest of the service reads.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use url::Url;

/// The validated core configuration (the stages' own sections are in [`crate::settings::Settings`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// `[node]`.
    pub node: NodeConfig,
    /// `[web]`.
    pub web: WebConfig,
    /// `[ingest]`: fleet-wide defaults (per-camera overrides are already applied to each [`Camera`]).
    pub ingest: IngestConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[credentials.<name>]`, by name, with secrets resolved.
    pub credentials: BTreeMap<String, Credentials>,
    /// Cameras from `[[cameras]]` first, then from each `camera_csv` file in order.
    pub cameras: Vec<Camera>,
}

/// This node's identity and storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node name, shown in the UI and alerts.
    pub name: String,
    /// Data directory, resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// Where snapshots (`snapshots/`) and clips (`clips/`) go: the data directory unless set; a
    /// directory every node reaches when several share one database.
    pub media_dir: PathBuf,
    /// Installed assets (model, ONNX Runtime, videos).
    pub assets_dir: PathBuf,
    /// Where the stores live.
    pub database: Database,
}

/// Where the stores (alerts, users, ledger, inventory) live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// SQLite files in the data directory (one node).
    #[default]
    Sqlite,
    /// One PostgreSQL database (any number of nodes).
    Postgres {
        /// `postgres://user:password@host:port/db` (a secret: it may hold the password).
        url: Secret,
        /// Where it came from, for messages.
        source: SecretSource,
        /// Most connections this node opens.
        pool: u32,
    },
}

/// HTTP API, WebSocket feed and UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Address the web server binds.
    pub listen: SocketAddr,
    /// Where users and receivers reach the service (no trailing slash); `None`: links go out as
    /// paths only.
    pub public_url: Option<String>,
    /// Reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Ingest defaults for every camera.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestConfig {
    /// Default RTSP transport.
    pub transport: Transport,
    /// No media for this long means the stream is stalled (and the camera offline).
    pub stall_after: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Reconnect delay after the camera rejected our credentials (avoids account lock-outs).
    pub auth_failed_backoff: Duration,
    /// Video decoder.
    pub decoder: Decoder,
    /// Default: decode keyframes only.
    pub keyframe_only: bool,
    /// Default analysis rate per camera, frames per second.
    pub analysis_fps: f64,
    /// Which stream analysis uses.
    pub stream: StreamChoice,
}

/// Camera health timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// A state change needs its condition to hold this long.
    pub grace: Duration,
    /// Offline after this long without media; always equal to `ingest.stall_after`.
    pub offline_after: Duration,
}

/// RTSP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection (the default).
    #[default]
    Tcp,
    /// RTP over UDP.
    Udp,
    /// Let ingest choose per camera.
    Auto,
}

impl Transport {
    /// Accepted spellings, for messages and docs.
    pub const NAMES: &'static [&'static str] = &["tcp", "udp", "auto"];

    /// Parses `tcp`, `udp` or `auto`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Video decoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoder {
    /// Software decoding.
    Cpu,
    /// NVIDIA NVDEC.
    Nvdec,
    /// VA-API (Intel/AMD).
    Vaapi,
}

impl Decoder {
    /// Accepted spellings.
    pub const NAMES: &'static [&'static str] = &["cpu", "nvdec", "vaapi"];

    /// Parses `cpu`, `nvdec` or `vaapi`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Self::Cpu),
            "nvdec" => Some(Self::Nvdec),
            "vaapi" => Some(Self::Vaapi),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Nvdec => "nvdec",
            Self::Vaapi => "vaapi",
        }
    }
}

impl fmt::Display for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of a camera's streams analysis uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamChoice {
    /// The sub-stream (子码流), falling back to the main URL when a camera has none.
    Sub,
    /// The main stream.
    Main,
}

impl StreamChoice {
    /// Accepted spellings.
    pub const NAMES: &'static [&'static str] = &["sub", "main"];

    /// Parses `sub` or `main`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sub" => Some(Self::Sub),
            "main" => Some(Self::Main),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sub => "sub",
            Self::Main => "main",
        }
    }
}

impl fmt::Display for StreamChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret string; `Debug` and `Display` print `***` so it cannot leak into logs or errors.
/// Cloning shares the text (camera passwords, webhook keys and tokens are cloned per request).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(std::sync::Arc::from(s.into()))
    }

    /// The secret itself; call only where it is handed to whoever needs it (the camera, the HMAC).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a credential set's password came from (safe to show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable, by name.
    Env(String),
    /// A file, resolved against the config directory.
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env {name}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// A named credential set, with its password resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The set's name (`[credentials.<name>]`).
    pub name: String,
    /// User name sent to the camera.
    pub username: String,
    /// Password; prints as `***`.
    pub password: Secret,
    /// Where the password came from.
    pub source: SecretSource,
}

/// The kind of source a camera URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// `rtsp://`, ingested with retina.
    Rtsp,
    /// `rtsps://` (RTSP over TLS).
    Rtsps,
    /// `rtmp://`, through a GStreamer source.
    Rtmp,
    /// `http://` or `https://` (e.g. HTTP-FLV or MJPEG), through a GStreamer source.
    Http,
    /// `file://`, looped from disk through a GStreamer source.
    File,
    /// `gb28181://<device id>/<channel id>`: a channel of a GB/T 28181 device registered to this
    /// node; its online state comes from the device's signalling.
    Gb28181,
}

impl SourceKind {
    /// Accepted URL schemes.
    pub const SCHEMES: &'static [&'static str] =
        &["rtsp", "rtsps", "rtmp", "http", "https", "file", "gb28181"];

    /// The kind for a URL scheme.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "rtsp" => Some(Self::Rtsp),
            "rtsps" => Some(Self::Rtsps),
            "rtmp" => Some(Self::Rtmp),
            "http" | "https" => Some(Self::Http),
            "file" => Some(Self::File),
            "gb28181" => Some(Self::Gb28181),
            _ => None,
        }
    }

    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rtsp => "rtsp",
            Self::Rtsps => "rtsps",
            Self::Rtmp => "rtmp",
            Self::Http => "http",
            Self::File => "file",
            Self::Gb28181 => "gb28181",
        }
    }

    /// True for RTSP(S), which ingest handles natively.
    pub fn is_rtsp(self) -> bool {
        matches!(self, Self::Rtsp | Self::Rtsps)
    }
}

/// WGS-84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Latitude, −90..=90.
    pub lat: f64,
    /// Longitude, −180..=180.
    pub lon: f64,
}

/// Administrative area path, county → township → village (1–3 segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaPath(Vec<String>);

impl AreaPath {
    /// Builds a path from 1–3 non-empty segments; `None` otherwise.
    pub fn new(segments: Vec<String>) -> Option<Self> {
        let ok = (1..=3).contains(&segments.len()) && segments.iter().all(|s| !s.is_empty());
        ok.then_some(Self(segments))
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The first `depth` segments joined with `/` (the whole path when shorter).
    pub fn prefix(&self, depth: usize) -> String {
        self.0[..depth.min(self.0.len())].join("/")
    }
}

impl fmt::Display for AreaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// True when area path `path` ("示范县/城关镇/东街村") is `prefix` or lies under it, on `/` boundaries:
/// "示范县/城关镇" contains "示范县/城关镇/东街村" but not "示范县/城关镇二". An empty prefix contains all.
pub fn area_contains(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// An RFC 3339 instant, keeping the text as written for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub(crate) unix_ms: i64,
    pub(crate) text: String,
}

impl Timestamp {
    /// Milliseconds since the Unix epoch (UTC).
    pub fn unix_ms(&self) -> i64 {
        self.unix_ms
    }

    /// As a `SystemTime`.
    pub fn to_system_time(&self) -> SystemTime {
        crate::time::from_unix_ms(self.unix_ms)
    }

    /// The text as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A planned maintenance window, `[start, end)`; the camera is excluded from rates inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Start, inclusive.
    pub start: Timestamp,
    /// End, exclusive; always after `start`.
    pub end: Timestamp,
}

impl MaintenanceWindow {
    /// True when `t` lies inside the window.
    pub fn contains(&self, t: SystemTime) -> bool {
        let ms = crate::time::unix_ms(t);
        self.start.unix_ms <= ms && ms < self.end.unix_ms
    }
}

/// Where a camera was defined; used in messages (`cameras[3]`, `cameras.csv line 7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraOrigin {
    /// The `index`-th `[[cameras]]` table of the TOML file (0-based).
    Toml {
        /// Position in the `cameras` array.
        index: usize,
    },
    /// A row of a CSV inventory.
    Csv {
        /// The file as written in `camera_csv`.
        file: String,
        /// 1-based line where the row starts (the header is line 1).
        line: usize,
    },
    /// The JSON body of an API request; field paths are the body's own keys.
    Api,
    /// The camera inventory kept in the store (saved through the API, or seeded from the file).
    Inventory {
        /// The camera's id.
        id: String,
    },
}

impl CameraOrigin {
    /// Path of one of this camera's fields, in the form error messages use.
    pub fn field_path(&self, field: &str) -> String {
        match self {
            Self::Toml { index } => format!("cameras[{index}].{field}"),
            Self::Csv { file, line } => format!("{file} line {line} column {field}"),
            Self::Api => field.to_owned(),
            Self::Inventory { id } => format!("inventory camera {id:?} field {field}"),
        }
    }
}

impl fmt::Display for CameraOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Toml { index } => write!(f, "cameras[{index}]"),
            Self::Csv { file, line } => write!(f, "{file} line {line}"),
            Self::Api => write!(f, "the request body"),
            Self::Inventory { id } => write!(f, "inventory camera {id:?}"),
        }
    }
}

/// One camera, with fleet defaults applied. URLs never carry credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// Unique id, `[A-Za-z0-9_-]{1,64}`.
    pub id: String,
    /// GB/T 28181 device code, 20 digits.
    pub gb_code: Option<String>,
    /// Human name.
    pub name: String,
    /// Main stream URL.
    pub url: Url,
    /// Sub-stream URL.
    pub sub_url: Option<Url>,
    /// Kind of the main URL.
    pub source: SourceKind,
    /// Name of the credential set, present in [`Config::credentials`].
    pub credentials: Option<String>,
    /// Position.
    pub location: Option<GeoPoint>,
    /// Administrative-division code (6, 9 or 12 digits).
    pub area_code: Option<String>,
    /// County/township/village.
    pub area_path: Option<AreaPath>,
    /// Police station responsible (dispatch routes by it).
    pub jurisdiction: Option<String>,
    /// 1 = highest .. 5.
    pub priority: u8,
    /// Free tags.
    pub tags: Vec<String>,
    /// Disabled cameras are not ingested and excluded from rates.
    pub enabled: bool,
    /// Effective RTSP transport.
    pub transport: Transport,
    /// Effective analysis rate, frames per second.
    pub analysis_fps: f64,
    /// Effective keyframe-only decoding.
    pub keyframe_only: bool,
    /// Planned maintenance windows.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Where it was defined.
    pub origin: CameraOrigin,
    /// The definition as written (the API's camera body: JSON, absent fields left out, no
    /// credentials: those are named, never inline); what the inventory store keeps.
    pub definition: String,
}

impl Camera {
    /// The URL analysis reads: the sub-stream when asked for and present, else the main stream.
    pub fn analysis_url(&self, stream: StreamChoice) -> &Url {
        match (stream, &self.sub_url) {
            (StreamChoice::Sub, Some(sub)) => sub,
            _ => &self.url,
        }
    }

    /// True when `t` falls inside one of the maintenance windows.
    pub fn in_maintenance_at(&self, t: SystemTime) -> bool {
        self.maintenance.iter().any(|w| w.contains(t))
    }
}

impl Config {
    /// The camera with this id.
    pub fn camera(&self, id: &str) -> Option<&Camera> {
        self.cameras.iter().find(|c| c.id == id)
    }

    /// The credential set a camera uses.
    pub fn credentials_for(&self, camera: &Camera) -> Option<&Credentials> {
        camera
            .credentials
            .as_deref()
            .and_then(|n| self.credentials.get(n))
    }

    /// One-screen human summary, with maintenance counted at the current time.
    pub fn summary(&self) -> String {
        self.summary_at(SystemTime::now())
    }

    /// [`Config::summary`] with maintenance counted at `now`.
    pub fn summary_at(&self, now: SystemTime) -> String {
        let mut out = String::new();
        let cams = &self.cameras;
        let enabled: Vec<&Camera> = cams.iter().filter(|c| c.enabled).collect();
        let in_maint = enabled.iter().filter(|c| c.in_maintenance_at(now)).count();
        let scheduled = cams.iter().filter(|c| !c.maintenance.is_empty()).count();

        let _ = writeln!(
            out,
            "node        {} (data in {})",
            self.node.name,
            self.node.data_dir.display()
        );
        let _ = writeln!(out, "web         http://{}", self.web.listen);
        let _ = writeln!(
            out,
            "cameras     {} total: {} enabled, {} disabled, {} in maintenance now ({} with windows)",
            cams.len(),
            enabled.len(),
            cams.len() - enabled.len(),
            in_maint,
            scheduled
        );

        let mut areas: HashMap<String, usize> = HashMap::new();
        for c in &enabled {
            let key = c
                .area_path
                .as_ref()
                .map_or_else(|| "(no area)".to_owned(), |a| a.prefix(2));
            *areas.entry(key).or_default() += 1;
        }
        let mut areas: Vec<(String, usize)> = areas.into_iter().collect();
        areas.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let shown: Vec<String> = areas
            .iter()
            .take(TOP_AREAS)
            .map(|(a, n)| format!("{a} {n}"))
            .collect();
        let mut line = shown.join(", ");
        if areas.len() > TOP_AREAS {
            let rest: usize = areas[TOP_AREAS..].iter().map(|(_, n)| n).sum();
            let _ = write!(line, ", … {} more areas {}", areas.len() - TOP_AREAS, rest);
        }
        let _ = writeln!(
            out,
            "by area     {}",
            if line.is_empty() { "-" } else { line.as_str() }
        );

        let mut jurisdictions: Vec<&str> = enabled
            .iter()
            .filter_map(|c| c.jurisdiction.as_deref())
            .collect();
        jurisdictions.sort_unstable();
        jurisdictions.dedup();
        let _ = writeln!(out, "stations    {} jurisdictions", jurisdictions.len());

        let mut sources: BTreeMap<SourceKind, usize> = BTreeMap::new();
        let mut transports: BTreeMap<Transport, usize> = BTreeMap::new();
        for c in &enabled {
            *sources.entry(c.source).or_default() += 1;
            if c.source.is_rtsp() {
                *transports.entry(c.transport).or_default() += 1;
            }
        }
        let _ = writeln!(
            out,
            "sources     {}; rtsp transport {}",
            join_counts(sources.iter().map(|(k, n)| (k.as_str(), *n))),
            join_counts(transports.iter().map(|(k, n)| (k.as_str(), *n)))
        );

        let i = &self.ingest;
        let keyframe = enabled.iter().filter(|c| c.keyframe_only).count();
        let _ = writeln!(
            out,
            "decode      {} decoder, {} stream, keyframe-only {} of {} cameras",
            i.decoder,
            i.stream,
            keyframe,
            enabled.len()
        );
        let load: f64 = enabled.iter().map(|c| c.analysis_fps).sum();
        let overrides = enabled
            .iter()
            .filter(|c| (c.analysis_fps - i.analysis_fps).abs() > f64::EPSILON)
            .count();
        let _ = writeln!(
            out,
            "analysis    {} fps per camera by default ({overrides} cameras differ), {load:.1} frames/s in all",
            i.analysis_fps
        );
        let _ = writeln!(
            out,
            "health      offline after {} without media, grace {}, backoff {}..{}, auth-failed backoff {}",
            fmt_duration(self.health.offline_after),
            fmt_duration(self.health.grace),
            fmt_duration(i.backoff_initial),
            fmt_duration(i.backoff_max),
            fmt_duration(i.auth_failed_backoff)
        );
        let creds: Vec<String> = self
            .credentials
            .keys()
            .map(|name| {
                let n = cams
                    .iter()
                    .filter(|c| c.credentials.as_deref() == Some(name))
                    .count();
                format!("{name} ({n} cameras)")
            })
            .collect();
        let _ = write!(
            out,
            "credentials {}",
            if creds.is_empty() {
                "-".to_owned()
            } else {
                creds.join(", ")
            }
        );
        out
    }
}

fn join_counts<'a>(items: impl Iterator<Item = (&'a str, usize)>) -> String {
    let parts: Vec<String> = items.map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Areas listed by name in the summary; the rest are counted together.
const TOP_AREAS: usize = 5;

/// Formats a duration the way the config writes it (`1h30m`, `10s`, `500ms`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    for (v, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if v > 0 {
            let _ = write!(out, "{v}{unit}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_formatting_round_trips() {
        for s in ["500ms", "10s", "5m", "1h", "1h30m", "1h0m5s"] {
            let d = crate::time::parse_duration(s).unwrap_or_else(|e| panic!("{e}"));
            let back = fmt_duration(d);
            assert_eq!(crate::time::parse_duration(&back), Ok(d), "{s} -> {back}");
        }
        assert_eq!(fmt_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn area_path_prefix() {
        let a = AreaPath::new(vec!["示范县".into(), "城关镇".into(), "东街村".into()]);
        let a = a.unwrap_or_else(|| panic!("valid"));
        assert_eq!(a.prefix(2), "示范县/城关镇");
        assert_eq!(a.prefix(9), "示范县/城关镇/东街村");
        assert!(AreaPath::new(vec![]).is_none());
        assert!(AreaPath::new(vec!["a".into(), String::new()]).is_none());
    }
}

#[cfg(test)]
mod area_tests {
    use super::area_contains;

    #[test]
    fn areas_nest_on_slash_boundaries_only() {
        assert!(area_contains("示范县/城关镇", "示范县/城关镇"));
        assert!(area_contains("示范县/城关镇", "示范县/城关镇/东街村"));
        assert!(area_contains("示范县/城关镇/", "示范县/城关镇/东街村"));
        assert!(!area_contains("示范县/城关镇", "示范县/城关镇二"));
        assert!(!area_contains("示范县/城关镇", "示范县"));
        assert!(area_contains("", "示范县/河西镇"));
    }
}
