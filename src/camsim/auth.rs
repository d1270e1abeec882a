//! RTSP authentication for camsim: Digest (RFC 2617, with or without qop=auth) and Basic.

use std::fmt;

use base64::Engine as _;
use md5::{Digest as _, Md5};

/// Which challenge the server sends in `WWW-Authenticate` (credentials of either scheme are accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `WWW-Authenticate: Digest realm=…, nonce=…` (what IP cameras send).
    Digest,
    /// `WWW-Authenticate: Basic realm=…`.
    Basic,
}

/// Server-side credentials; the password is never printed.
#[derive(Clone)]
pub struct Auth {
    user: String,
    password: String,
    scheme: AuthScheme,
    realm: String,
    nonce: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("password", &"***")
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl Auth {
    /// Credentials the clients must present.
    pub fn new(user: String, password: String, scheme: AuthScheme) -> Self {
        Auth {
            user,
            password,
            scheme,
            realm: "qianliyan-camsim".to_owned(),
            nonce: format!("{:032x}", rand::random::<u128>()),
        }
    }

    /// The `WWW-Authenticate` challenge for a 401 answer.
    pub fn challenge(&self) -> String {
        match self.scheme {
            AuthScheme::Digest => {
                format!("Digest realm=\"{}\", nonce=\"{}\"", self.realm, self.nonce)
            }
            AuthScheme::Basic => format!("Basic realm=\"{}\"", self.realm),
        }
    }

    /// Whether an `Authorization` header value is valid for `method`.
    pub fn verify(&self, method: &str, authorization: Option<&str>) -> bool {
        let Some(value) = authorization.map(str::trim) else {
            return false;
        };
        if let Some(b64) = strip_scheme(value, "Basic") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                return false;
            };
            let expected = format!("{}:{}", self.user, self.password);
            return constant_time_eq(&raw, expected.as_bytes());
        }
        if let Some(params) = strip_scheme(value, "Digest") {
            return self.verify_digest(method, params);
        }
        false
    }

    fn verify_digest(&self, method: &str, params: &str) -> bool {
        let p = parse_params(params);
        let get = |k: &str| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(user), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return false;
        };
        if user != self.user || nonce != self.nonce {
            return false;
        }
        let ha1 = md5_hex(&format!("{}:{}:{}", self.user, self.realm, self.password));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = match (get("qop"), get("nc"), get("cnonce")) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            _ => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        )
    }
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = value.split_at_checked(scheme.len())?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| rest.trim_start())
}

/// `k="v", k2=v2` → pairs; quoted values may contain commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let value = if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            let v = q[..end].to_owned();
            rest = q.get(end + 1..).unwrap_or("");
            v
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let v = rest[..end].trim().to_owned();
            rest = &rest[end..];
            v
        };
        out.push((name, value));
    }
    out
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new("admin".into(), "s3cret-pass".into(), AuthScheme::Digest)
    }

    #[test]
    fn digest_with_and_without_qop() {
        let a = auth();
        let uri = "rtsp://127.0.0.1:8554/cam/0001";
        let ha1 = md5_hex(&format!("admin:{}:s3cret-pass", a.realm));
        let ha2 = md5_hex(&format!("DESCRIBE:{uri}"));
        let plain = md5_hex(&format!("{ha1}:{}:{ha2}", a.nonce));
        let header = format!(
            "Digest username=\"admin\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{plain}\"",
            a.realm, a.nonce
        );
        assert!(a.verify("DESCRIBE", Some(&header)));
        assert!(
            !a.verify("SETUP", Some(&header)),
            "method is part of the digest"
        );
        let qop = md5_hex(&format!("{ha1}:{}:00000001:abc:auth:{ha2}", a.nonce));
        let header = format!(
            "Digest username=\"admin\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"abc\", response=\"{qop}\"",
            a.realm, a.nonce
        );
        assert!(a.verify("DESCRIBE", Some(&header)));
        let stale = header.replace(&a.nonce, "0000");
        assert!(!a.verify("DESCRIBE", Some(&stale)));
    }

    #[test]
    fn basic_and_wrong_password() {
        let a = auth();
        let good = base64::engine::general_purpose::STANDARD.encode("admin:s3cret-pass");
        let bad = base64::engine::general_purpose::STANDARD.encode("admin:guess");
        assert!(a.verify("PLAY", Some(&format!("Basic {good}"))));
        assert!(!a.verify("PLAY", Some(&format!("Basic {bad}"))));
        assert!(!a.verify("PLAY", Some("Basic !!!")));
        assert!(!a.verify("PLAY", None));
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
