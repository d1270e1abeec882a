//! The `[gb28181]` configuration section: qianliyan as the upper platform (上级平台) that GB/T 28181
//! devices and lower platforms register to. No section: no SIP port is opened.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `sip_id` | — (required) | this platform's 20-digit SIP id (国标编码), e.g. `34020000002000000001` |
//! | `domain` | the first 10 digits of `sip_id` | the SIP domain (realm of the digest challenge) |
//! | `listen` | `"0.0.0.0:5060"` | address of the SIP port, UDP and TCP |
//! | `password_env` | — (required) | environment variable holding the registration password devices use |
//! | `auto_accept` | `false` | any device that authenticates may register; otherwise only those in `[[gb28181.devices]]` |
//! | `keepalive_interval` | `"60s"` | the interval devices are configured with (心跳周期) |
//! | `keepalive_misses` | `3` | a device is offline (`keepalive_timeout`) after this many intervals without a keepalive |
//! | `max_expires` | `"3600s"` | longest registration granted (a device asking for more gets this) |
//! | `max_devices` | `10000` | registered devices at most; more are refused (403) and counted |
//! | `max_channels` | `20000` | cameras created from catalogs at most; more are refused and counted |
//! | `video` | `"rules"` | which channels' video is requested (INVITE): `"rules"` pulls channels with rules continuously and patrols the others, `"all"` pulls every channel continuously, `"off"` requests none (state from signalling only) |
//! | `patrol_interval` | `"10m"` | a patrolled channel is invited this often (staggered per channel) |
//! | `patrol_for` | `"10s"` | and watched this long (VQD, a snapshot) before BYE |
//! | `media_ports` | `"30000-30999"` | UDP/TCP ports video is received on, one per stream pulled (a range, both ends included) |
//! | `tcp_connect` | `"device"` | who opens a TCP media connection: the device (`"device"`, TCP passive) or the platform (`"platform"`, TCP active, to the port in the device's answer); per device in `[[gb28181.devices]]` |
//! | `invite_timeout` | `"10s"` | a video request (INVITE) not answered within this is `invite_failed` |
//! | `alarm_cooldown` | `"60s"` | a device's alarm of one type on one channel raises one alert per this long (repeats are counted, not raised) |
//! | `catalog_interval` | `"10m"` | every online device is asked for its catalog again this often (new channels, channels reported `OFF` or gone) |
//! | `[gb28181.areas]` | none | civil-code prefix or group id → area path (`"620921" = "金塔县"`), see [`super::groups`] |
//! | `[[gb28181.devices]]` | none | `id` (20 digits), `name`, `password_env` (a password of its own): the allow-list |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, Secret};

/// The `[gb28181]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGbConfig {
    /// This platform's SIP id.
    pub sip_id: Option<String>,
    /// SIP domain (default: the first 10 digits of `sip_id`).
    pub domain: Option<String>,
    /// SIP port address, UDP and TCP.
    pub listen: Option<String>,
    /// Environment variable with the registration password.
    pub password_env: Option<String>,
    /// Accept any device that authenticates.
    pub auto_accept: Option<bool>,
    /// Keepalive interval devices use.
    pub keepalive_interval: Option<String>,
    /// Missed keepalives before offline.
    pub keepalive_misses: Option<u32>,
    /// Longest registration granted.
    pub max_expires: Option<String>,
    /// Most registered devices.
    pub max_devices: Option<usize>,
    /// Most cameras made from catalogs.
    pub max_channels: Option<usize>,
    /// Which channels' video is requested: `rules`, `all`, `off`.
    pub video: Option<String>,
    /// How often a patrolled channel is invited.
    pub patrol_interval: Option<String>,
    /// How long a patrol watches.
    pub patrol_for: Option<String>,
    /// How often catalogs are asked for again.
    pub catalog_interval: Option<String>,
    /// Media port range, `"30000-30999"`.
    pub media_ports: Option<String>,
    /// Who opens a TCP media connection: `device` or `platform`.
    pub tcp_connect: Option<String>,
    /// How long an INVITE may go unanswered.
    pub invite_timeout: Option<String>,
    /// Repeated alarms of one type on one channel within this raise one alert.
    pub alarm_cooldown: Option<String>,
    /// Civil-code prefix → area path.
    #[serde(default)]
    pub areas: BTreeMap<String, String>,
    /// Allowed devices and their own passwords.
    #[serde(default)]
    pub devices: Vec<RawGbDevice>,
}

/// One `[[gb28181.devices]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGbDevice {
    /// The device's 20-digit id.
    pub id: String,
    /// A name to show until the device reports its own.
    pub name: Option<String>,
    /// Environment variable with this device's own password.
    pub password_env: Option<String>,
    /// Who opens its TCP media connections (overrides `gb28181.tcp_connect`).
    pub tcp_connect: Option<String>,
}

/// An allowed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GbDevicePolicy {
    /// Name from the configuration.
    pub name: Option<String>,
    /// Its own password (`None`: the platform's).
    pub password: Option<Secret>,
    /// Who opens its TCP media connections (`None`: `gb28181.tcp_connect`).
    pub tcp_connect: Option<TcpConnect>,
}

/// Who opens a channel's TCP media connection (camera `transport = "tcp"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpConnect {
    /// The device connects to the platform's port (TCP passive on the platform's side,
    /// `a=setup:passive` in the offer; what most devices do).
    Device,
    /// The platform connects to the port in the device's answer (TCP active, `a=setup:active`):
    /// for devices that cannot reach the platform's media ports (behind NAT on their side).
    Platform,
}

impl TcpConnect {
    fn parse(errors: &mut Vec<ConfigError>, path: &str, v: Option<&str>) -> Option<TcpConnect> {
        match v? {
            "device" => Some(TcpConnect::Device),
            "platform" => Some(TcpConnect::Platform),
            other => {
                errors.push(ConfigError::new(
                    path,
                    format!("{other:?} is not who connects: \"device\" or \"platform\""),
                ));
                None
            }
        }
    }
}

/// Which channels' video the platform requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPolicy {
    /// Channels with rules continuously; the others patrolled (视频巡检): invited every
    /// `patrol_interval` for `patrol_for`.
    Rules,
    /// Every channel continuously, like RTSP cameras.
    All,
    /// None: a channel's state is its signalling only.
    Off,
}

/// The validated `[gb28181]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GbConfig {
    /// This platform's SIP id.
    pub sip_id: String,
    /// SIP domain and digest realm.
    pub domain: String,
    /// SIP port (UDP and TCP).
    pub listen: SocketAddr,
    /// Registration password.
    pub password: Secret,
    /// Accept any device that authenticates.
    pub auto_accept: bool,
    /// Keepalive interval.
    pub keepalive_interval: Duration,
    /// Missed keepalives before offline.
    pub keepalive_misses: u32,
    /// Longest registration granted.
    pub max_expires: Duration,
    /// Most registered devices.
    pub max_devices: usize,
    /// Most cameras made from catalogs.
    pub max_channels: usize,
    /// Which channels' video is requested (INVITE).
    pub video: VideoPolicy,
    /// How often a patrolled channel is invited.
    pub patrol_interval: Duration,
    /// How long a patrol watches before BYE.
    pub patrol_for: Duration,
    /// How often every online device's catalog is asked for again.
    pub catalog_interval: Duration,
    /// Ports video is received on (both ends included).
    pub media_ports: std::ops::RangeInclusive<u16>,
    /// Who opens TCP media connections, unless a device says otherwise.
    pub tcp_connect: TcpConnect,
    /// How long an INVITE may go unanswered.
    pub invite_timeout: Duration,
    /// Repeated alarms of one type on one channel within this raise one alert.
    pub alarm_cooldown: Duration,
    /// Civil-code prefix → area path (`county/township/village`).
    pub areas: BTreeMap<String, crate::config::AreaPath>,
    /// A lower platform's group (215/216 id) → area path, for the channels in it.
    pub groups: BTreeMap<String, crate::config::AreaPath>,
    /// The allow-list, by device id.
    pub devices: BTreeMap<String, GbDevicePolicy>,
}

impl GbConfig {
    /// Who opens `device`'s TCP media connections.
    pub fn tcp_connect_for(&self, device: &str) -> TcpConnect {
        self.devices
            .get(device)
            .and_then(|d| d.tcp_connect)
            .unwrap_or(self.tcp_connect)
    }

    /// The password `device` must use.
    pub fn password_for(&self, device: &str) -> &Secret {
        self.devices
            .get(device)
            .and_then(|d| d.password.as_ref())
            .unwrap_or(&self.password)
    }

    /// Whether `device` may register.
    pub fn allows(&self, device: &str) -> bool {
        self.auto_accept || self.devices.contains_key(device)
    }

    /// The area of a civil code: the entry of the longest prefix of `civil_code` in `areas`.
    pub fn area_of(&self, civil_code: &str) -> Option<&crate::config::AreaPath> {
        (1..=civil_code.len())
            .rev()
            .filter_map(|n| civil_code.get(..n))
            .find_map(|prefix| self.areas.get(prefix))
    }

    /// One line for `check-config` (no secret in it).
    pub fn summary(&self) -> String {
        format!(
            "gb28181     SIP {} (UDP+TCP) as {}@{}; {}; keepalive {} s, offline after {} missed; {}; areas for {} civil-code prefixes and {} groups",
            self.listen,
            self.sip_id,
            self.domain,
            if self.auto_accept {
                format!(
                    "any device with the password ({} listed)",
                    self.devices.len()
                )
            } else {
                format!("{} listed devices only", self.devices.len())
            },
            self.keepalive_interval.as_secs(),
            self.keepalive_misses,
            match self.video {
                VideoPolicy::Off => "video not requested (state from signalling only)".to_owned(),
                policy => format!(
                    "video on ports {}-{} ({}; INVITE answered within {} s)",
                    self.media_ports.start(),
                    self.media_ports.end(),
                    if policy == VideoPolicy::All {
                        "every channel continuously".to_owned()
                    } else {
                        format!(
                            "channels with rules continuously, the others {} s every {} s",
                            self.patrol_for.as_secs(),
                            self.patrol_interval.as_secs()
                        )
                    },
                    self.invite_timeout.as_secs_f64()
                ),
            },
            self.areas.len(),
            self.groups.len()
        )
    }

    /// How long without a keepalive makes a device offline.
    pub fn keepalive_timeout(&self) -> Duration {
        self.keepalive_interval * self.keepalive_misses
    }
}

/// Whether `id` is a 20-digit GB/T 28181 code.
pub fn valid_gb_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn env_secret(
    errors: &mut Vec<ConfigError>,
    path: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    match env(var) {
        Some(v) if !v.is_empty() => Some(Secret::new(v)),
        Some(_) => {
            errors.push(ConfigError::new(
                path,
                format!("environment variable {var} is empty"),
            ));
            None
        }
        None => {
            errors.push(ConfigError::new(
                path,
                format!("environment variable {var} is not set"),
            ));
            None
        }
    }
}

impl RawGbConfig {
    /// Validates the section; every error names its field. `env` reads environment variables.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GbConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let sip_id = match &self.sip_id {
            Some(id) if valid_gb_id(id) => id.clone(),
            Some(id) => {
                errors.push(ConfigError::new(
                    "gb28181.sip_id",
                    format!("{id:?} is not a GB/T 28181 id: 20 digits"),
                ));
                String::new()
            }
            None => {
                errors.push(ConfigError::new(
                    "gb28181.sip_id",
                    "missing: this platform's 20-digit SIP id, e.g. \"34020000002000000001\"",
                ));
                String::new()
            }
        };
        let domain = match &self.domain {
            Some(d)
                if !d.is_empty()
                    && d.len() <= 64
                    && d.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')) =>
            {
                d.clone()
            }
            Some(d) => {
                errors.push(ConfigError::new(
                    "gb28181.domain",
                    format!("{d:?} is not a SIP domain: letters, digits, '.' and '-'"),
                ));
                String::new()
            }
            None => sip_id.get(..10).unwrap_or_default().to_owned(),
        };
        let listen_text = self.listen.as_deref().unwrap_or("0.0.0.0:5060");
        let listen = listen_text.parse().unwrap_or_else(|_| {
            errors.push(ConfigError::new(
                "gb28181.listen",
                format!("{listen_text:?} is not an address: ip:port, e.g. \"0.0.0.0:5060\""),
            ));
            SocketAddr::from(([0, 0, 0, 0], 5060))
        });
        let password = match &self.password_env {
            Some(var) => env_secret(&mut errors, "gb28181.password_env", var, env),
            None => {
                errors.push(ConfigError::new(
                    "gb28181.password_env",
                    "missing: the environment variable holding the registration password",
                ));
                None
            }
        };
        let keepalive_interval = crate::config::duration_field(
            &mut errors,
            "gb28181.keepalive_interval",
            self.keepalive_interval.as_deref(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let keepalive_misses = self.keepalive_misses.unwrap_or(3);
        if !(1..=100).contains(&keepalive_misses) {
            errors.push(ConfigError::new(
                "gb28181.keepalive_misses",
                format!("{keepalive_misses} is out of range: 1 to 100"),
            ));
        }
        let max_expires = crate::config::duration_field(
            &mut errors,
            "gb28181.max_expires",
            self.max_expires.as_deref(),
            Duration::from_secs(3600),
            Duration::from_secs(10),
        );
        let max_devices = self.max_devices.unwrap_or(10_000);
        if !(1..=1_000_000).contains(&max_devices) {
            errors.push(ConfigError::new(
                "gb28181.max_devices",
                format!("{max_devices} is out of range: 1 to 1000000"),
            ));
        }
        let max_channels = self.max_channels.unwrap_or(20_000);
        if !(1..=1_000_000).contains(&max_channels) {
            errors.push(ConfigError::new(
                "gb28181.max_channels",
                format!("{max_channels} is out of range: 1 to 1000000"),
            ));
        }
        let ports_text = self.media_ports.as_deref().unwrap_or("30000-30999");
        let media_ports = match ports_text
            .split_once('-')
            .map(|(a, b)| (a.trim().parse::<u16>(), b.trim().parse::<u16>()))
        {
            Some((Ok(a), Ok(b))) if a >= 1024 && a <= b => a..=b,
            _ => {
                errors.push(ConfigError::new(
                    "gb28181.media_ports",
                    format!(
                        "{ports_text:?} is not a port range: \"first-last\", 1024 to 65535, e.g. \"30000-30999\""
                    ),
                ));
                30000..=30999
            }
        };
        let invite_timeout = crate::config::duration_field(
            &mut errors,
            "gb28181.invite_timeout",
            self.invite_timeout.as_deref(),
            Duration::from_secs(10),
            Duration::from_millis(500),
        );
        let video = match self.video.as_deref() {
            None | Some("rules") => VideoPolicy::Rules,
            Some("all") => VideoPolicy::All,
            Some("off") => VideoPolicy::Off,
            Some(v) => {
                errors.push(ConfigError::new(
                    "gb28181.video",
                    format!("{v:?} is not a video policy: \"rules\", \"all\" or \"off\""),
                ));
                VideoPolicy::Rules
            }
        };
        let tcp_connect = TcpConnect::parse(
            &mut errors,
            "gb28181.tcp_connect",
            self.tcp_connect.as_deref(),
        )
        .unwrap_or(TcpConnect::Device);
        let patrol_interval = crate::config::duration_field(
            &mut errors,
            "gb28181.patrol_interval",
            self.patrol_interval.as_deref(),
            Duration::from_secs(600),
            Duration::from_secs(1),
        );
        let patrol_for = crate::config::duration_field(
            &mut errors,
            "gb28181.patrol_for",
            self.patrol_for.as_deref(),
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        if patrol_for >= patrol_interval {
            errors.push(ConfigError::new(
                "gb28181.patrol_for",
                format!(
                    "{} s is not shorter than patrol_interval ({} s)",
                    patrol_for.as_secs_f64(),
                    patrol_interval.as_secs_f64()
                ),
            ));
        }
        let catalog_interval = crate::config::duration_field(
            &mut errors,
            "gb28181.catalog_interval",
            self.catalog_interval.as_deref(),
            Duration::from_secs(600),
            Duration::from_secs(1),
        );
        let alarm_cooldown = crate::config::duration_field(
            &mut errors,
            "gb28181.alarm_cooldown",
            self.alarm_cooldown.as_deref(),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        let (mut areas, mut groups) = (BTreeMap::new(), BTreeMap::new());
        for (prefix, path) in &self.areas {
            let field = format!("gb28181.areas.{prefix}");
            let group = matches!(super::manscdp::type_code(prefix), Some(215 | 216));
            if !group
                && (prefix.is_empty()
                    || prefix.len() > 12
                    || !prefix.bytes().all(|b| b.is_ascii_digit()))
            {
                errors.push(ConfigError::new(
                    field,
                    format!(
                        "{prefix:?} is neither a civil-code prefix (1 to 12 digits) nor a group's id (20 digits of type 215 or 216)"
                    ),
                ));
                continue;
            }
            let segments: Vec<String> = path.split('/').map(|x| x.trim().to_owned()).collect();
            match crate::config::AreaPath::new(segments) {
                Some(p) if group => {
                    groups.insert(prefix.clone(), p);
                }
                Some(p) => {
                    areas.insert(prefix.clone(), p);
                }
                None => errors.push(ConfigError::new(
                    field,
                    format!("{path:?} is not an area path: county/township/village"),
                )),
            }
        }
        let mut devices = BTreeMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            let path = format!("gb28181.devices[{i}]");
            if !valid_gb_id(&d.id) {
                errors.push(ConfigError::new(
                    format!("{path}.id"),
                    format!("{:?} is not a GB/T 28181 id: 20 digits", d.id),
                ));
                continue;
            }
            let password = d
                .password_env
                .as_ref()
                .and_then(|var| env_secret(&mut errors, &format!("{path}.password_env"), var, env));
            let policy = GbDevicePolicy {
                name: d.name.clone(),
                password,
                tcp_connect: TcpConnect::parse(
                    &mut errors,
                    &format!("{path}.tcp_connect"),
                    d.tcp_connect.as_deref(),
                ),
            };
            if devices.insert(d.id.clone(), policy).is_some() {
                errors.push(ConfigError::new(
                    format!("{path}.id"),
                    format!("device {} is listed twice", d.id),
                ));
            }
        }
        match password {
            Some(password) if errors.is_empty() => Ok(GbConfig {
                sip_id,
                domain,
                listen,
                password,
                auto_accept: self.auto_accept.unwrap_or(false),
                keepalive_interval,
                keepalive_misses,
                max_expires,
                max_devices,
                max_channels,
                video,
                patrol_interval,
                patrol_for,
                catalog_interval,
                media_ports,
                tcp_connect,
                invite_timeout,
                alarm_cooldown,
                areas,
                groups,
                devices,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "GB_PASS" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn defaults_and_device_passwords() {
        let raw: RawGbConfig = toml::from_str(
            "sip_id = \"34020000002000000001\"\npassword_env = \"GB_PASS\"\n[[devices]]\nid = \"34020000001110000001\"\nname = \"东门\"\ntcp_connect = \"platform\"\n",
        )
        .unwrap();
        let c = raw.validate(&env).unwrap();
        assert_eq!(
            c.tcp_connect_for("34020000001110000001"),
            super::TcpConnect::Platform
        );
        assert_eq!(
            c.tcp_connect_for("34020000001110000002"),
            super::TcpConnect::Device
        );
        assert_eq!(c.domain, "3402000000");
        assert_eq!(c.listen, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(c.keepalive_timeout(), Duration::from_secs(180));
        assert!(c.allows("34020000001110000001") && !c.allows("34020000001110000002"));
        assert_eq!(c.password_for("34020000001110000001").expose(), "s3cret");
        let raw: RawGbConfig = toml::from_str(
            "sip_id = \"34020000002000000001\"\npassword_env = \"GB_PASS\"\n[areas]\n\"620921\" = \"金塔县\"\n\"620921100\" = \"金塔县/金塔镇\"\n\"62092100002160000001\" = \"金塔县/城关镇\"\n",
        )
        .unwrap();
        let c = raw.validate(&env).unwrap();
        assert_eq!(
            c.groups
                .get("62092100002160000001")
                .map(ToString::to_string),
            Some("金塔县/城关镇".into()),
            "a group's id maps the group"
        );
        assert_eq!(
            c.area_of("620921100201").map(|a| a.to_string()),
            Some("金塔县/金塔镇".into())
        );
        assert_eq!(
            c.area_of("620921200").map(|a| a.to_string()),
            Some("金塔县".into())
        );
        assert_eq!(c.area_of("620922"), None);
        assert_eq!(format!("{c:?}").matches("s3cret").count(), 0);
        let line = c.summary();
        assert!(
            line.contains("0.0.0.0:5060")
                && line.contains("0 listed devices only")
                && line.contains("2 civil-code prefixes and 1 groups")
                && line.contains("ports 30000-30999"),
            "{line}"
        );
        assert!(!line.contains("s3cret"));
    }

    #[test]
    fn an_area_key_must_be_a_civil_code_prefix_or_a_group() {
        // A camera's code (type 131) is neither.
        let raw: RawGbConfig = toml::from_str(
            "sip_id = \"34020000002000000001\"\npassword_env = \"GB_PASS\"\n[areas]\n\"34020000001310000001\" = \"金塔县\"\n",
        )
        .unwrap();
        let errors = raw.validate(&env).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "gb28181.areas.34020000001310000001");
        assert!(errors[0].message.contains("group"), "{}", errors[0].message);
    }

    #[test]
    fn each_bad_field_is_named() {
        let raw: RawGbConfig = toml::from_str(
            "sip_id = \"3402\"\ndomain = \"a b\"\nlisten = \"nowhere\"\npassword_env = \"EMPTY\"\nkeepalive_interval = \"0s\"\nkeepalive_misses = 0\nmax_devices = 0\nmedia_ports = \"30999-30000\"\ninvite_timeout = \"1ms\"\nvideo = \"some\"\ntcp_connect = \"me\"\npatrol_interval = \"10s\"\npatrol_for = \"10s\"\n[[devices]]\nid = \"x\"\n[[devices]]\nid = \"34020000001110000001\"\npassword_env = \"UNSET\"\n",
        )
        .unwrap();
        let errors = raw.validate(&env).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "gb28181.sip_id",
                "gb28181.domain",
                "gb28181.listen",
                "gb28181.password_env",
                "gb28181.keepalive_interval",
                "gb28181.keepalive_misses",
                "gb28181.max_devices",
                "gb28181.media_ports",
                "gb28181.invite_timeout",
                "gb28181.video",
                "gb28181.tcp_connect",
                "gb28181.patrol_for",
                "gb28181.devices[0].id",
                "gb28181.devices[1].password_env"
            ],
            "{errors:?}"
        );
        let missing = RawGbConfig::default().validate(&env).unwrap_err();
        assert!(missing[0].message.contains("20-digit"), "{missing:?}");
    }
}
