//! The `[cluster]` configuration section: several nodes on one PostgreSQL database. It applies only
//! with `[node] database_url_env` or `database_url_file` (SQLite is one node).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `node_id` | `QLY_NODE_ID`, else the host name | this node's id in the cluster: unique, stable across restarts (a StatefulSet's pod name) |
//! | `weight` | `1` | this node's share of cameras relative to the others (a node of weight 2 holds about twice as many) |
//! | `lease` | `"10s"` | how long a camera lease lasts unrenewed: a killed node's cameras move after at most this long |
//! | `renew` | `"1s"` | how often a node beats, renews its leases and takes the cameras it should hold; at least 1 s, at most a third of `lease` |
//! | `advertise_url` | `QLY_ADVERTISE_URL`, else from the listen address | where the other nodes reach this node's API (they pass per-camera requests such as `frame.jpg` to the camera's holder) |
//! | `rebalance_per_pass` | `20` | most cameras a node gives away per pass to a node that should hold them (a joining node), so joins never cause a reconnect storm |

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// The `[cluster]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClusterConfig {
    /// This node's id (default: `QLY_NODE_ID`, else the host name).
    pub node_id: Option<String>,
    /// Share of cameras (default 1).
    pub weight: Option<u32>,
    /// Lease length (default "10s").
    pub lease: Option<String>,
    /// Pass interval (default "1s").
    pub renew: Option<String>,
    /// Cameras handed to joining nodes per pass (default 20).
    pub rebalance_per_pass: Option<usize>,
    /// Where the other nodes reach this node's API (default: `QLY_ADVERTISE_URL`, else the
    /// listen address, with the host name when it listens on every address).
    pub advertise_url: Option<String>,
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The id given in the file (`None`: from the environment at start).
    pub node_id: Option<String>,
    /// Share of cameras.
    pub weight: u32,
    /// Lease length.
    pub lease: Duration,
    /// Pass interval.
    pub renew: Duration,
    /// Cameras handed over per pass.
    pub rebalance_per_pass: usize,
    /// Where the other nodes reach this node's API (`None`: from the environment or the listen
    /// address at start).
    pub advertise_url: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            weight: 1,
            lease: Duration::from_secs(10),
            renew: Duration::from_secs(1),
            rebalance_per_pass: 20,
            advertise_url: None,
        }
    }
}

/// Whether `id` may name a node: 1–63 letters, digits, `.`, `_` or `-` (a pod name fits).
pub fn valid_node_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `url` is `http(s)://host[:port]` with nothing after.
pub fn valid_advertise_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    })
}

impl RawClusterConfig {
    /// Validates the section; every error names its field.
    pub fn validate(&self) -> Result<ClusterConfig, Vec<ConfigError>> {
        let d = ClusterConfig::default();
        let mut errors = Vec::new();
        if let Some(id) = &self.node_id
            && !valid_node_id(id)
        {
            errors.push(ConfigError::new(
                "cluster.node_id",
                format!("{id:?} is not a node id: 1 to 63 letters, digits, '.', '_' or '-'"),
            ));
        }
        let weight = self.weight.unwrap_or(d.weight);
        if !(1..=1000).contains(&weight) {
            errors.push(ConfigError::new(
                "cluster.weight",
                format!("{weight} is out of range: 1 to 1000"),
            ));
        }
        let lease = crate::config::duration_field(
            &mut errors,
            "cluster.lease",
            self.lease.as_deref(),
            d.lease,
            Duration::from_secs(3),
        );
        let renew = crate::config::duration_field(
            &mut errors,
            "cluster.renew",
            self.renew.as_deref(),
            d.renew,
            Duration::from_secs(1),
        );
        if renew * 3 > lease {
            errors.push(ConfigError::new(
                "cluster.renew",
                format!(
                    "{renew:?} is more than a third of cluster.lease ({lease:?}): a node must renew several times before its lease can end"
                ),
            ));
        }
        let rebalance_per_pass = self.rebalance_per_pass.unwrap_or(d.rebalance_per_pass);
        if !(1..=10_000).contains(&rebalance_per_pass) {
            errors.push(ConfigError::new(
                "cluster.rebalance_per_pass",
                format!("{rebalance_per_pass} is out of range: 1 to 10000"),
            ));
        }
        if let Some(url) = &self.advertise_url
            && !valid_advertise_url(url)
        {
            errors.push(ConfigError::new(
                "cluster.advertise_url",
                format!("{url:?} is not an address the other nodes can call: http:// or https://, a host, no path"),
            ));
        }
        if errors.is_empty() {
            Ok(ClusterConfig {
                advertise_url: self.advertise_url.clone(),
                node_id: self.node_id.clone(),
                weight,
                lease,
                renew,
                rebalance_per_pass,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let raw: RawClusterConfig = toml::from_str(
            "node_id = \"a b\"\nweight = 0\nlease = \"4s\"\nrenew = \"2s\"\nrebalance_per_pass = 0\nadvertise_url = \"http://x:8080/api\"",
        )
        .unwrap();
        let errors = raw.validate().unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cluster.node_id",
                "cluster.weight",
                "cluster.renew",
                "cluster.rebalance_per_pass",
                "cluster.advertise_url"
            ]
        );
        assert!(
            errors[2].message.contains("third of cluster.lease"),
            "{}",
            errors[2].message
        );
        assert_eq!(
            RawClusterConfig::default().validate().unwrap(),
            ClusterConfig::default()
        );
        assert!(valid_node_id("qianliyan-0") && !valid_node_id("") && !valid_node_id("x/y"));
        assert!(
            valid_advertise_url("http://10.1.2.3:8080")
                && valid_advertise_url("https://[::1]:8443")
        );
        assert!(!valid_advertise_url("http://") && !valid_advertise_url("10.1.2.3:8080"));
    }
}
