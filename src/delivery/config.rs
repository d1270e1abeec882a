//! `[delivery]` configuration: raw serde → `validate()` → [`DeliveryConfig`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::store::Route;
use super::webhook::Secret;

/// `[delivery]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliveryConfig {
    /// The case system's endpoint; absent: alerts go to no case system.
    pub case: Option<RawEndpoint>,
    /// Police stations' endpoints by jurisdiction (the camera's `jurisdiction`).
    #[serde(default)]
    pub stations: BTreeMap<String, Vec<String>>,
    /// Environment variable holding the secret that signs station deliveries; default: the case one's.
    pub stations_secret_env: Option<String>,
    /// Seconds after the first attempt after which a delivery is dead-lettered (default 21600 = 6 h).
    pub max_age_s: Option<u64>,
    /// First retry delay, milliseconds (default 1000).
    pub backoff_initial_ms: Option<u64>,
    /// Longest retry delay, seconds (default 300).
    pub backoff_max_s: Option<u64>,
    /// Per-request timeout, seconds (default 10).
    pub request_timeout_s: Option<u64>,
    /// Seconds an alert may stay `new` before it is escalated (default 300).
    pub escalate_after_s: Option<u64>,
    /// Days alerts (with their snapshots, events and delivered outbox rows) are kept (default 180);
    /// one whose delivery is pending or dead-lettered is kept however old.
    pub keep_alerts_days: Option<u64>,
    /// Most disk the snapshots may take, MiB (default 10240); above it the oldest alerts go first.
    pub snapshot_budget_mib: Option<u64>,
    /// Alerts of one camera and rule within this many seconds of the incident's latest alert fold
    /// into it (default 120); 0: every alert stands alone.
    pub incident_window_s: Option<u64>,
    /// ZeroMQ PUB endpoint for in-house integrators, e.g. "tcp://127.0.0.1:5556" (best effort; see
    /// docs/zeromq.md). Absent: no ZeroMQ.
    pub zmq_endpoint: Option<String>,
    /// ZeroMQ send high-water mark per subscriber (default 1000).
    pub zmq_hwm: Option<i32>,
}

/// An endpoint as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// `https://…` (or `http://` on a trusted network).
    pub url: String,
    /// Environment variable holding the shared HMAC secret (never in the file).
    pub secret_env: String,
}

/// A validated endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// URL.
    pub url: String,
    /// Shared secret (signs outbound bodies and verifies callbacks).
    pub secret: Secret,
}

/// Validated delivery configuration.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The case system.
    pub case: Option<Endpoint>,
    /// Station endpoints by jurisdiction.
    pub stations: BTreeMap<String, Vec<String>>,
    /// Signs station deliveries.
    pub stations_secret: Option<Secret>,
    /// Dead-letter after this long since the first attempt.
    pub max_age: Duration,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Escalate `new` alerts after this long.
    pub escalate_after: Duration,
    /// Alerts older than this are deleted by retention.
    pub keep_alerts: Duration,
    /// Snapshots above this many bytes in all: the oldest alerts are deleted.
    pub snapshot_budget_bytes: u64,
    /// Alerts of one camera and rule this close fold into one incident (zero: none).
    pub incident_window: Duration,
    /// ZeroMQ PUB endpoint, if any.
    pub zmq_endpoint: Option<String>,
    /// ZeroMQ high-water mark.
    pub zmq_hwm: i32,
    /// `[web] public_url`: links in messages (a clip's URL) are made under it; `None`: paths only.
    pub public_url: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            case: None,
            stations: BTreeMap::new(),
            stations_secret: None,
            max_age: Duration::from_secs(6 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            escalate_after: Duration::from_secs(300),
            keep_alerts: Duration::from_secs(180 * 86_400),
            snapshot_budget_bytes: 10_240 << 20,
            incident_window: Duration::from_secs(120),
            zmq_endpoint: None,
            zmq_hwm: 1000,
            public_url: None,
        }
    }
}

fn check_url(field: &str, u: &str, errors: &mut Vec<String>) {
    match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
        _ => errors.push(format!("{field}: {u:?} is not an http(s) URL")),
    }
}

impl RawDeliveryConfig {
    /// Validates; `env` looks secrets up (`std::env::var` in production). Reports every error, with
    /// its field path under `delivery.`.
    pub fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DeliveryConfig, Vec<String>> {
        let d = DeliveryConfig::default();
        let mut errors = Vec::new();
        let secret = |field: &str, var: &str, errors: &mut Vec<String>| match env(var) {
            Some(s) if !s.is_empty() => Some(Secret::new(s)),
            _ => {
                errors.push(format!("{field}: environment variable {var} is not set"));
                None
            }
        };
        let case = self.case.as_ref().and_then(|c| {
            check_url("delivery.case.url", &c.url, &mut errors);
            secret("delivery.case.secret_env", &c.secret_env, &mut errors).map(|s| Endpoint {
                url: c.url.clone(),
                secret: s,
            })
        });
        for (station, urls) in &self.stations {
            if urls.is_empty() {
                errors.push(format!("delivery.stations.{station}: no endpoints"));
            }
            for (i, u) in urls.iter().enumerate() {
                check_url(&format!("delivery.stations.{station}[{i}]"), u, &mut errors);
            }
        }
        let stations_secret = match &self.stations_secret_env {
            Some(v) => secret("delivery.stations_secret_env", v, &mut errors),
            None => case.as_ref().map(|c| c.secret.clone()),
        };
        if !self.stations.is_empty()
            && stations_secret.is_none()
            && self.stations_secret_env.is_none()
        {
            errors.push(
                "delivery.stations_secret_env: station endpoints need a secret (or a case endpoint's)".into(),
            );
        }
        let secs =
            |field: &str, v: Option<u64>, default: Duration, errors: &mut Vec<String>| match v {
                Some(0) => {
                    errors.push(format!("delivery.{field}: must be greater than 0"));
                    default
                }
                Some(s) => Duration::from_secs(s),
                None => default,
            };
        let max_age = secs("max_age_s", self.max_age_s, d.max_age, &mut errors);
        let backoff_max = secs(
            "backoff_max_s",
            self.backoff_max_s,
            d.backoff_max,
            &mut errors,
        );
        let request_timeout = secs(
            "request_timeout_s",
            self.request_timeout_s,
            d.request_timeout,
            &mut errors,
        );
        let escalate_after = secs(
            "escalate_after_s",
            self.escalate_after_s,
            d.escalate_after,
            &mut errors,
        );
        let keep_alerts = match self.keep_alerts_days {
            Some(0) => {
                errors.push("delivery.keep_alerts_days: must be greater than 0".into());
                d.keep_alerts
            }
            Some(days) => Duration::from_secs(days.saturating_mul(86_400)),
            None => d.keep_alerts,
        };
        let snapshot_budget_bytes = match self.snapshot_budget_mib {
            Some(0) => {
                errors.push("delivery.snapshot_budget_mib: must be greater than 0".into());
                d.snapshot_budget_bytes
            }
            Some(m) => m.saturating_mul(1 << 20),
            None => d.snapshot_budget_bytes,
        };
        let backoff_initial = match self.backoff_initial_ms {
            Some(0) => {
                errors.push("delivery.backoff_initial_ms: must be greater than 0".into());
                d.backoff_initial
            }
            Some(v) => Duration::from_millis(v),
            None => d.backoff_initial,
        };
        if backoff_initial > backoff_max {
            errors.push("delivery.backoff_initial_ms: larger than backoff_max_s".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(DeliveryConfig {
            case,
            stations: self.stations.clone(),
            stations_secret,
            max_age,
            backoff_initial,
            backoff_max,
            request_timeout,
            escalate_after,
            keep_alerts,
            snapshot_budget_bytes,
            incident_window: self
                .incident_window_s
                .map_or(d.incident_window, Duration::from_secs),
            zmq_endpoint: self.zmq_endpoint.clone().filter(|e| !e.trim().is_empty()),
            zmq_hwm: self.zmq_hwm.unwrap_or(1000).max(1),
            // Filled from `[web]` when the whole file is assembled.
            public_url: None,
        })
    }
}

impl DeliveryConfig {
    /// Where an alert goes: the case system always (when configured); the stations of `jurisdiction`
    /// too when `dispatch` (the rule asks for it, or an operator dispatches).
    pub fn routes_for(&self, jurisdiction: Option<&str>, dispatch: bool) -> Vec<Route> {
        let mut out: Vec<Route> = self
            .case
            .iter()
            .map(|c| Route {
                sink: "case".into(),
                url: c.url.clone(),
            })
            .collect();
        if dispatch {
            out.extend(self.dispatch_routes(jurisdiction));
        }
        out
    }

    /// Only the station routes of `jurisdiction`.
    pub fn dispatch_routes(&self, jurisdiction: Option<&str>) -> Vec<Route> {
        jurisdiction
            .and_then(|j| self.stations.get(j).map(|urls| (j, urls)))
            .map(|(j, urls)| {
                urls.iter()
                    .map(|u| Route {
                        sink: format!("dispatch:{j}"),
                        url: u.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The secret that signs deliveries to `sink`.
    pub fn secret_for(&self, sink: &str) -> Option<&Secret> {
        if sink.starts_with("dispatch:") {
            self.stations_secret.as_ref()
        } else {
            self.case.as_ref().map(|c| &c.secret)
        }
    }

    /// The secret inbound case callbacks are verified with.
    pub fn callback_secret(&self) -> Option<&Secret> {
        self.case.as_ref().map(|c| &c.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_every_error_and_routes_by_jurisdiction() {
        let raw: RawDeliveryConfig = toml::from_str(
            r#"
            case = { url = "ftp://x", secret_env = "NOPE" }
            stations = { east = [] }
            backoff_initial_ms = 0
            "#,
        )
        .unwrap();
        let errs = raw.validate(&|_| None).unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        let raw: RawDeliveryConfig = toml::from_str(
            r#"
            case = { url = "https://case.example/alerts", secret_env = "S" }
            stations = { east = ["https://east.example/a", "https://east2.example/a"] }
            "#,
        )
        .unwrap();
        let c = raw.validate(&|_| Some("k".into())).unwrap();
        assert_eq!(c.routes_for(Some("east"), false).len(), 1);
        let r = c.routes_for(Some("east"), true);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].sink, "dispatch:east");
        assert_eq!(c.routes_for(Some("west"), true).len(), 1);
        assert!(format!("{c:?}").contains("***") && !format!("{c:?}").contains("\"k\""));
    }
}
