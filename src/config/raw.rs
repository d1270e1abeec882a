//! Raw configuration shapes, exactly as written in the TOML file;
//! [`validate()`](super::validate()) gives them meaning. Values that need a good error message (durations, enums, addresses, URLs) stay strings
//! here so a typo is reported by `validate` with the field path rather than as a serde type error.
//!
//! `read_document` deserializes section by section (and camera by camera), so one malformed
//! section does not hide the problems in the others.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::ConfigError;
use super::types::CameraOrigin;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[node]`: this node's identity and storage.
    #[serde(default)]
    pub node: RawNode,
    /// `[web]`: the HTTP API, feed and UI.
    #[serde(default)]
    pub web: RawWeb,
    /// `[ingest]`: defaults for every camera.
    #[serde(default)]
    pub ingest: RawIngest,
    /// `[health]`: health state machine timing.
    #[serde(default)]
    pub health: RawHealth,
    /// `[credentials.<name>]`: named credential sets cameras refer to.
    #[serde(default)]
    pub credentials: BTreeMap<String, RawCredentials>,
    /// `[[cameras]]`; after loading, CSV cameras are appended here too (with their origin).
    #[serde(default)]
    pub cameras: Vec<RawCamera>,
    /// CSV inventory files, relative to the config file's directory.
    #[serde(default)]
    pub camera_csv: Vec<String>,
}

/// The top-level keys `config` reads itself, in the order sections are read and reported. The
/// stages' own sections follow, read through [`StageSections`].
pub const CORE_KEYS: &[&str] = &[
    "node",
    "web",
    "ingest",
    "health",
    "credentials",
    "cameras",
    "camera_csv",
    "include",
];

/// One file of a document read with its includes: where its text starts in the combined text
/// (the including file first, at 0), and its name for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Byte offset of its first character in the combined text.
    pub start: usize,
    /// The file's name.
    pub name: String,
}

/// Where `offset` of the combined text is: `(file name, line, column)` within its own file.
fn locate<'p>(
    text: &str,
    parts: &'p [Part],
    main: &'p str,
    offset: usize,
) -> (&'p str, usize, usize) {
    match parts
        .iter()
        .rev()
        .find(|p| p.start > 0 && p.start <= offset)
    {
        Some(p) => {
            let (line, col) = line_col(&text[p.start..], offset - p.start);
            (p.name.as_str(), line, col)
        }
        None => {
            let (line, col) = line_col(text, offset);
            (main, line, col)
        }
    }
}

/// The top-level sections that belong to the stages (`[inference]`, `[delivery]` …): `config` finds
/// them in the file and hands each to its reader, which deserializes it with the same error
/// reporting as the core sections. Implemented above the stages (the settings module), so `config`
/// depends on no stage.
pub trait StageSections: Default {
    /// Their keys, in the order they are read and reported.
    const KEYS: &'static [&'static str];
    /// Reads section `key` (one of [`Self::KEYS`]).
    fn read<'i>(
        &mut self,
        key: &'static str,
        value: Spanned<DeValue<'i>>,
        reader: &mut SectionReader<'_, '_>,
    );
}

/// No stage sections: a file holding one is told the key is unknown (tests of the core).
impl StageSections for () {
    const KEYS: &'static [&'static str] = &[];
    fn read<'i>(
        &mut self,
        _: &'static str,
        _: Spanned<DeValue<'i>>,
        _: &mut SectionReader<'_, '_>,
    ) {
    }
}

/// `[node]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Node name shown in the UI and alerts; default "qianliyan".
    pub name: Option<String>,
    /// Data directory (database, snapshots); default "data", relative to the config file.
    pub data_dir: Option<String>,
    /// Where snapshots and clips go; default the data directory. Several nodes share one (a
    /// ReadWriteMany volume) so any node serves any alert's media.
    pub media_dir: Option<String>,
    /// Where scripts/setup put the model, runtime library and videos; default "assets" relative to the
    /// working directory (the repository root when run through `make`), or `$QLY_ASSETS_DIR`.
    pub assets_dir: Option<String>,
    /// Environment variable holding the PostgreSQL URL (`postgres://user:password@host/db`); with
    /// it (or `database_url_file`) every store lives in that database instead of SQLite files.
    pub database_url_env: Option<String>,
    /// File holding the PostgreSQL URL (trailing newline ignored), relative to the config file.
    pub database_url_file: Option<String>,
    /// Most PostgreSQL connections this node opens; default 16.
    pub database_pool: Option<i64>,
}

/// `[web]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Socket address to bind, `IP:port`; default "127.0.0.1:8080".
    pub listen: Option<String>,
    /// The address users and receivers reach the service at (`https://hall.example.cn`); links in
    /// messages to the case system and stations are made under it.
    pub public_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed (addresses or
    /// CIDR networks); default none.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[ingest]`: defaults for every camera.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// RTSP transport: "tcp" (default), "udp" or "auto".
    pub transport: Option<String>,
    /// No media for this long marks the stream stalled and the camera offline; default "10s".
    pub stall_after: Option<String>,
    /// First reconnect delay; default "1s".
    pub backoff_initial: Option<String>,
    /// Reconnect delay cap, at least `backoff_initial`; default "30s".
    pub backoff_max: Option<String>,
    /// Reconnect delay after an authentication failure; default "5m".
    pub auth_failed_backoff: Option<String>,
    /// Decoder: "cpu" (default), "nvdec" or "vaapi".
    pub decoder: Option<String>,
    /// Decode keyframes only; default true.
    pub keyframe_only: Option<bool>,
    /// Analysis frames per second per camera, 0 < x <= 30; default 1.0.
    pub analysis_fps: Option<f64>,
    /// Stream analysis uses: "sub" (default; main when a camera has no sub_url) or "main".
    pub stream: Option<String>,
}

/// `[health]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// A state change needs its condition to hold this long; default "5s".
    pub grace: Option<String>,
}

/// `[credentials.<name>]`: a user name and where to find the password (never the password).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// User name sent to the camera.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored), relative to the config file.
    pub password_file: Option<String>,
    /// Keys the reader already reported and dropped; validate does not report them again.
    #[serde(skip)]
    pub rejected: Vec<String>,
}

/// `[[cameras]]` (and one CSV row); serialized (absent fields left out), it is the camera's
/// definition as the inventory store keeps it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// Unique id, `[A-Za-z0-9_-]{1,64}`; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// GB/T 28181 device code, exactly 20 digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gb_code: Option<String>,
    /// Human name; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Main stream: rtsp://, rtsps://, rtmp://, http(s):// or file://, without credentials; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sub-stream (子码流), same rules as `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_url: Option<String>,
    /// Name of a `[credentials.<name>]` set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// Latitude, −90..=90; give both `lat` and `lon` or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Longitude, −180..=180.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Administrative-division code, 6, 9 or 12 digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    /// "county/township/village", 1–3 non-empty segments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area_path: Option<String>,
    /// Police station responsible for the camera.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// 1 (highest) ..= 5; default 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Free-form tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Default true; disabled cameras are not ingested and excluded from rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Overrides `ingest.transport`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Overrides `ingest.analysis_fps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis_fps: Option<f64>,
    /// Overrides `ingest.keyframe_only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyframe_only: Option<bool>,
    /// Planned maintenance windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Vec<RawMaintenance>>,
    /// Where the camera was defined; set by the reader, not by the file.
    #[serde(skip)]
    pub origin: Option<CameraOrigin>,
    /// Keys the reader already reported and dropped; validate does not report them again.
    #[serde(skip)]
    pub rejected: Vec<String>,
}

/// One maintenance window, RFC 3339 instants with an offset (quoted or bare TOML datetimes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Start, e.g. "2026-11-22T01:00:00+08:00".
    pub start: DateText,
    /// End, after `start`.
    pub end: DateText,
}

/// Date-time text, accepted from a TOML string or a bare TOML datetime; parsed by `validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateText(pub String);

impl<'de> Deserialize<'de> for DateText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DateText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 date-time such as \"2026-11-22T01:00:00+08:00\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateText, E> {
                Ok(DateText(v.to_owned()))
            }
            // toml hands bare datetimes over as a one-entry map holding the text.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<DateText, A::Error> {
                match m.next_entry::<String, String>()? {
                    Some((_, text)) => Ok(DateText(text)),
                    None => Err(serde::de::Error::custom("expected a date-time")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads the TOML text into a [`RawConfig`], pushing every problem found onto `errors`.
/// Returns `None` when the text is not valid TOML (reported with line and column).
pub(crate) fn read_document<S: StageSections>(
    text: &str,
    source_name: &str,
    parts: &[Part],
    errors: &mut Vec<ConfigError>,
) -> Option<(RawConfig, S)> {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let at = match e.span() {
                Some(span) => {
                    let (name, line, col) = locate(text, parts, source_name, span.start);
                    format!("{name} line {line} column {col}")
                }
                None => source_name.to_owned(),
            };
            // message() only: Display would quote the offending line, which may hold a secret.
            errors.push(ConfigError::new(at, e.message().to_owned()));
        }
        return None;
    }

    let reader = SectionReader {
        text,
        parts,
        errors,
    };
    Some(reader.read(root.into_inner()))
}

/// Deserializes one section of the document, reporting each problem with its field path and line.
pub struct SectionReader<'t, 'e> {
    text: &'t str,
    parts: &'t [Part],
    errors: &'e mut Vec<ConfigError>,
}

impl SectionReader<'_, '_> {
    /// `line N` of the file `offset` is in (`other.toml line N` for an included file).
    fn line(&self, offset: usize) -> String {
        match locate(self.text, self.parts, "", offset) {
            ("", line, _) => format!("line {line}"),
            (name, line, _) => format!("{name} line {line}"),
        }
    }

    fn read<'i, S: StageSections>(mut self, root: DeTable<'i>) -> (RawConfig, S) {
        let known: Vec<&'static str> = CORE_KEYS.iter().chain(S::KEYS).copied().collect();
        let mut sections: BTreeMap<&'static str, Spanned<DeValue<'i>>> = BTreeMap::new();
        for (key, value) in root {
            let name: &str = key.get_ref();
            match known.iter().copied().find(|k| *k == name) {
                Some(k) => {
                    sections.insert(k, value);
                }
                None => {
                    let line = self.line(key.span().start);
                    self.push(
                        name.to_owned(),
                        format!("unknown key ({line}); expected one of {}", known.join(", ")),
                    );
                }
            }
        }

        let mut raw = RawConfig::default();
        if let Some(v) = sections.remove("node") {
            raw.node = self.section(v, "node").unwrap_or_default();
        }
        if let Some(v) = sections.remove("web") {
            raw.web = self.section(v, "web").unwrap_or_default();
        }
        if let Some(v) = sections.remove("ingest") {
            raw.ingest = self.section(v, "ingest").unwrap_or_default();
        }
        if let Some(mut v) = sections.remove("health") {
            if let DeValue::Table(t) = v.get_mut() {
                self.take_key(
                    t,
                    "offline_after",
                    "health.offline_after",
                    "not a [health] key: offline_after is ingest.stall_after; set that instead",
                );
            }
            raw.health = self.section(v, "health").unwrap_or_default();
        }
        if let Some(v) = sections.remove("credentials") {
            raw.credentials = self.credentials(v);
        }
        if let Some(v) = sections.remove("cameras") {
            raw.cameras = self.cameras(v);
        }
        if let Some(v) = sections.remove("camera_csv") {
            raw.camera_csv = self.section(v, "camera_csv").unwrap_or_default();
        }
        let mut stages = S::default();
        for key in S::KEYS {
            if let Some(v) = sections.remove(key) {
                stages.read(key, v, &mut self);
            }
        }
        (raw, stages)
    }

    fn credentials<'i>(&mut self, value: Spanned<DeValue<'i>>) -> BTreeMap<String, RawCredentials> {
        let mut out = BTreeMap::new();
        let span = value.span();
        let DeValue::Table(sets) = value.into_inner() else {
            let line = self.line(span.start);
            self.push(
                "credentials",
                format!("expected tables [credentials.<name>] ({line})"),
            );
            return out;
        };
        for (name, mut set) in sets {
            let name: String = name.get_ref().to_string();
            let path = format!("credentials.{}", key_path(&name));
            let mut inline = false;
            if let DeValue::Table(t) = set.get_mut() {
                inline = self.take_key(
                    t,
                    "password",
                    &format!("{path}.password"),
                    "inline passwords are not allowed (value not shown); set password_env = \"ENV_NAME\" \
                     or password_file = \"path\" instead",
                );
            }
            let mut parsed = match self.deserialize::<RawCredentials>(set, &path, true) {
                Some((mut c, rejected)) => {
                    c.rejected = rejected;
                    c
                }
                // Unusable, but kept so cameras that name it are not also reported.
                None => RawCredentials {
                    rejected: ["username", "password_env", "password_file"]
                        .map(str::to_owned)
                        .to_vec(),
                    ..RawCredentials::default()
                },
            };
            if inline {
                parsed.rejected.push("password".to_owned());
            }
            out.insert(name, parsed);
        }
        out
    }

    fn cameras<'i>(&mut self, value: Spanned<DeValue<'i>>) -> Vec<RawCamera> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            let line = self.line(span.start);
            self.push(
                "cameras",
                format!("expected an array of tables [[cameras]] ({line})"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, mut item) in items.into_iter().enumerate() {
            let path = format!("cameras[{index}]");
            if let DeValue::Table(t) = item.get_mut() {
                for key in ["password", "username"] {
                    self.take_key(
                        t,
                        key,
                        &format!("{path}.{key}"),
                        "cameras carry no credentials (value not shown); put credentials in a \
                         [credentials] set and refer to it with credentials = \"<name>\"",
                    );
                }
            }
            if let Some((mut cam, rejected)) = self.deserialize::<RawCamera>(item, &path, false) {
                cam.origin = Some(CameraOrigin::Toml { index });
                cam.rejected = rejected;
                out.push(cam);
            }
        }
        out
    }

    /// Removes `key` from `table` if present, reporting `message` at `path`; true if it was there.
    fn take_key(&mut self, table: &mut DeTable<'_>, key: &str, path: &str, message: &str) -> bool {
        match table.remove_entry(key) {
            Some((k, _)) => {
                let line = self.line(k.span().start);
                self.push(path.to_owned(), format!("{message} ({line})"));
                true
            }
            None => false,
        }
    }

    /// Deserializes a section; problems are reported and the offending keys left at their defaults.
    pub fn section<'i, T: Deserialize<'i>>(
        &mut self,
        value: Spanned<DeValue<'i>>,
        path: &str,
    ) -> Option<T> {
        self.deserialize(value, path, false).map(|(v, _)| v)
    }

    /// Deserializes `value`; after each error the key that caused it is reported, dropped, and the
    /// rest tried again, so every bad key in a table is reported. Returns the value and the dropped
    /// keys, or `None` when no key can be blamed (e.g. the value is not a table at all).
    /// With `redact`, serde messages lose any quoted value (the table may hold secrets).
    fn deserialize<'i, T: Deserialize<'i>>(
        &mut self,
        mut value: Spanned<DeValue<'i>>,
        path: &str,
        redact: bool,
    ) -> Option<(T, Vec<String>)> {
        let mut dropped = Vec::new();
        loop {
            let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return Some((v, dropped)),
                Err(e) => e,
            };
            // The key path is only exposed through Display, as a final "in `a.b`" line.
            let shown = e.to_string();
            let keys = shown
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("in `").and_then(|l| l.strip_suffix('`')))
                .map(str::to_owned)
                .or_else(|| unknown_field(e.message()).map(str::to_owned));
            let full = match &keys {
                Some(k) => format!("{path}.{k}"),
                None => path.to_owned(),
            };
            let mut message = if redact {
                redact_serde_message(e.message())
            } else {
                e.message().to_owned()
            };
            if let Some(span) = e.span() {
                let line = self.line(span.start);
                message = format!("{message} ({line})");
            }
            self.push(full, message);

            let culprit = keys.as_deref().and_then(|k| k.split('.').next());
            let removed = match (culprit, value.get_mut()) {
                (Some(k), DeValue::Table(t)) => t.remove(k).is_some(),
                _ => false,
            };
            match culprit {
                Some(k) if removed => dropped.push(k.to_owned()),
                _ => return None,
            }
        }
    }

    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }
}

/// The field named by serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// A table key as written in a path: bare when it can be, quoted otherwise.
pub(crate) fn key_path(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Drops the value from serde's "invalid type: string \"x\", expected …" style messages.
fn redact_serde_message(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')
                .collect();
            let expected = rest
                .find(", expected")
                .map(|i| &rest[i..])
                .unwrap_or_default();
            return format!("{prefix}{} (value not shown){expected}", kind.trim_end());
        }
    }
    message.to_owned()
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<RawConfig>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let raw = read_document::<()>(text, "t.toml", &[], &mut errors).map(|(raw, ())| raw);
        (raw, errors)
    }

    #[test]
    fn one_bad_section_does_not_hide_others() {
        let (raw, errors) = read(
            "bogus = 1\n[node]\nnmae = \"x\"\n[web]\nlisten = 8080\n[[cameras]]\nid = \"a\"\n\
             [[cameras]]\nid = 5\n[[cameras]]\nid = \"c\"\n",
        );
        let raw = raw.unwrap_or_else(|| panic!("valid TOML"));
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["bogus", "node.nmae", "web.listen", "cameras[1].id"],
            "{errors:?}"
        );
        assert!(errors[1].message.contains("unknown field `nmae`"));
        assert!(errors[1].message.contains("(line 3)"), "{errors:?}");
        let origins: Vec<_> = raw.cameras.iter().map(|c| c.origin.clone()).collect();
        assert_eq!(
            origins,
            (0..3)
                .map(|index| Some(CameraOrigin::Toml { index }))
                .collect::<Vec<_>>()
        );
        assert_eq!(raw.cameras[1].rejected, ["id"]);
        assert_eq!(raw.cameras[1].id, None);
    }

    #[test]
    fn every_bad_key_in_a_table_is_reported() {
        let (raw, errors) = read(
            "[[cameras]]\nid = \"a\"\nlng = 1.0\npriority = \"high\"\nname = 7\nurl = \"rtsp://h/\"\n",
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{errors:?}");
        for want in ["cameras[0].lng", "cameras[0].priority", "cameras[0].name"] {
            assert!(paths.contains(&want), "{errors:?}");
        }
        let raw = raw.unwrap_or_else(|| panic!("valid TOML"));
        assert_eq!(raw.cameras[0].url.as_deref(), Some("rtsp://h/"));
    }

    #[test]
    fn credential_type_errors_are_redacted() {
        let (_, errors) = read("[credentials.x]\nusername = \"u\"\npassword_env = 123456789\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "credentials.x.password_env");
        assert!(!errors[0].message.contains("123456789"), "{errors:?}");
        assert!(
            errors[0].message.contains("expected a string"),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_error_does_not_quote_the_line() {
        let (raw, errors) = read("[credentials.x]\npassword_env = \"abc\" hunter2\n");
        assert!(raw.is_none());
        assert!(!errors.is_empty());
        assert!(
            errors[0].path.starts_with("t.toml line 2 column"),
            "{errors:?}"
        );
        assert!(
            errors.iter().all(|e| !e.message.contains("hunter2")),
            "{errors:?}"
        );
    }

    #[test]
    fn bare_toml_datetimes_are_accepted() {
        let (raw, errors) = read(
            "[[cameras]]\nid = \"a\"\nmaintenance = [{ start = 2026-11-22T01:00:00+08:00, end = \"2026-11-22T03:00:00+08:00\" }]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let raw = raw.unwrap_or_else(|| panic!("valid TOML"));
        let m = raw.cameras[0].maintenance.clone().unwrap_or_default();
        assert_eq!(m[0].start, DateText("2026-11-22T01:00:00+08:00".into()));
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "a\n示范县 = 1\n";
        let off = text.find('=').unwrap_or(0);
        assert_eq!(line_col(text, off), (2, 5));
        assert_eq!(line_col(text, 0), (1, 1));
    }
}
