//! HTTP to the service (logged in as the scenario's admin) and to camsim's control API, and a
//! reader of the Prometheus text `/metrics` answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ScenarioError;

/// A logged-in client of one service.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The plain HTTP client the runner uses everywhere (no proxy: everything is on loopback).
pub fn client(timeout: Duration) -> Result<reqwest::Client, ScenarioError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| ScenarioError::Setup(format!("HTTP client: {e}")))
}

impl Api {
    /// Logs in at `http://127.0.0.1:{port}` as `user`.
    pub async fn login(port: u16, user: &str, password: &str) -> Result<Api, ScenarioError> {
        let http = client(Duration::from_secs(30))?;
        let base = format!("http://127.0.0.1:{port}");
        let body = serde_json::json!({"username": user, "password": password});
        let answer = http
            .post(format!("{base}/api/auth/login"))
            .json(&body)
            .send()
            .await
            .map_err(|e| ScenarioError::Http(format!("login: {e}")))?;
        let status = answer.status();
        let v: Value = answer
            .json()
            .await
            .map_err(|e| ScenarioError::Http(format!("login answer: {e}")))?;
        let token = v["token"]
            .as_str()
            .filter(|_| status.is_success())
            .ok_or_else(|| ScenarioError::Http(format!("login refused ({status}): {v}")))?
            .to_owned();
        Ok(Api { http, base, token })
    }

    /// GET `path` → (status, body text, seconds taken to the last byte).
    pub async fn get_timed(&self, path: &str) -> Result<(u16, String, f64), String> {
        let t0 = Instant::now();
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| format!("GET {path}: {e}"))?;
        Ok((status, text, t0.elapsed().as_secs_f64()))
    }

    /// GET `path` as JSON (2xx only).
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        let (status, text, _) = self.get_timed(path).await?;
        if !(200..300).contains(&status) {
            return Err(format!("GET {path}: {status} {}", clip(&text)));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}"))
    }

    /// POST a JSON body → (status, body text).
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, String), String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.unwrap_or_default()))
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> Result<Metrics, String> {
        let (status, text, _) = self.get_timed("/metrics").await?;
        if status != 200 {
            return Err(format!("GET /metrics: {status} {}", clip(&text)));
        }
        Ok(Metrics::parse(&text))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// camsim's control API.
#[derive(Clone)]
pub struct Camsim {
    http: reqwest::Client,
    base: String,
}

impl Camsim {
    /// The control API on `port`.
    pub fn new(port: u16) -> Result<Camsim, ScenarioError> {
        Ok(Camsim {
            http: client(Duration::from_secs(10))?,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        r.json().await.map_err(|e| format!("GET {path}: {e}"))
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Result<Value, String> {
        self.get("/stats").await
    }

    /// `GET /cameras`: each camera's fault, scene and burst onsets.
    pub async fn cameras(&self) -> Result<Value, String> {
        self.get("/cameras").await
    }

    /// `POST /faults` for camsim camera numbers.
    pub async fn faults(&self, cameras: &[u32], kind: &str) -> Result<(), String> {
        let ids: Vec<String> = cameras.iter().map(u32::to_string).collect();
        let body = serde_json::json!({"cameras": ids, "kind": kind});
        let r = self
            .http
            .post(format!("{}/faults", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST /faults {kind}: {e}"))?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!(
                "POST /faults {kind}: {status} {}",
                clip(&r.text().await.unwrap_or_default())
            ));
        }
        Ok(())
    }
}

/// A sample's labels.
type Labels = BTreeMap<String, String>;

/// One scrape: every sample by family name, then its labels.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: BTreeMap<String, Vec<(Labels, f64)>>,
}

impl Metrics {
    /// Parses the text exposition format (comments skipped; label values without escapes are
    /// enough for the service's own answers).
    pub fn parse(text: &str) -> Metrics {
        let mut samples: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (head, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            samples
                .entry(name.to_owned())
                .or_default()
                .push((labels, value));
        }
        Metrics { samples }
    }

    /// Sum of a family's samples whose labels include every `(key, value)` of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(l, _)| {
                        filter
                            .iter()
                            .all(|(k, want)| l.get(*k).is_some_and(|x| x == want))
                    })
                    .map(|(_, x)| x)
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// A family's sums by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (l, x) in self.samples.get(name).into_iter().flatten() {
            if let Some(v) = l.get(label) {
                *out.entry(v.clone()).or_insert(0.0) += x;
            }
        }
        out
    }

    /// Whether the family was exported at all.
    pub fn has(&self, name: &str) -> bool {
        self.samples.contains_key(name)
    }
}

fn parse_labels(s: &str) -> Labels {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(
            key.trim_start_matches(',').trim().to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_labels_and_sums() {
        let m = Metrics::parse(
            "# TYPE qly_frames_dropped_total counter\n\
             qly_frames_dropped_total{reason=\"gate\"} 12\n\
             qly_frames_dropped_total{reason=\"decode_error\"} 1\n\
             qly_online_rate 0.5\n\
             qly_inference_batch_size_bucket{model=\"m\",le=\"+Inf\"} 7\n",
        );
        assert_eq!(m.sum("qly_frames_dropped_total", &[]), 13.0);
        assert_eq!(
            m.sum("qly_frames_dropped_total", &[("reason", "gate")]),
            12.0
        );
        assert_eq!(m.sum("qly_online_rate", &[]), 0.5);
        assert_eq!(
            m.sum("qly_inference_batch_size_bucket", &[("le", "+Inf")]),
            7.0
        );
        assert_eq!(m.by("qly_frames_dropped_total", "reason")["gate"], 12.0);
        assert!(!m.has("nope"));
    }
}
