//! The service's edge toward proxies and browsers, one layer in front of every route:
//!
//! - **Client address.** A request from one of `[web] trusted_proxies` is taken to come from the
//!   address its `X-Forwarded-For` names (the rightmost one that is not itself a trusted proxy);
//!   from anyone else the header is ignored. The login limiter and the audit log see that address.
//! - **WebSocket origin.** A browser's WebSocket (the feed) is accepted only from the service's own
//!   pages: its `Origin` must be the request's own host or `[web] public_url`'s origin. Clients that
//!   send no `Origin` (integrations, not browsers) are not affected.
//! - **TLS.** Whether the browser reached the service over TLS (`public_url` is https, or a trusted
//!   proxy says `X-Forwarded-Proto: https`) goes into the request's extensions as [`OverTls`]; the
//!   login marks the session cookie `Secure` by it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

/// In a request's extensions: whether the browser reached the service over TLS.
#[derive(Debug, Clone, Copy)]
pub struct OverTls(pub bool);

/// What the edge layer needs from `[web]`.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    /// `public_url`, without a trailing slash.
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Edge {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer`, or, when `peer` is a trusted proxy, the rightmost address of
    /// `X-Forwarded-For` that is not a trusted proxy (the leftmost when all are).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map_while(|h| h.parse::<IpAddr>().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.trusted(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    /// Whether the browser reached the service over TLS.
    fn over_tls(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
        let public = self
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        let forwarded = peer.is_some_and(|p| self.trusted(p))
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        public || forwarded
    }

    /// Whether a WebSocket upgrade with `origin` may proceed: the request's own host, or
    /// `public_url`'s origin.
    fn origin_allowed(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Ok(o) = url::Url::parse(origin) else {
            return false;
        };
        let Some(host) = o.host_str() else {
            return false;
        };
        let port = o.port_or_known_default();
        if let Some(public) = self
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            && public.origin() == o.origin()
        {
            return true;
        }
        // Same host as asked for: `Host` is what the browser connected to.
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| url::Url::parse(&format!("{}://{h}", o.scheme())).ok())
            .is_some_and(|h| h.host_str() == Some(host) && h.port_or_known_default() == port)
    }
}

/// The layer (see the module documentation).
pub async fn edge(
    axum::extract::State(edge): axum::extract::State<Arc<Edge>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(peer) = peer {
        let client = edge.client_ip(peer.ip(), req.headers());
        if client != peer.ip() {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        }
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade && let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !edge.origin_allowed(origin, req.headers()) {
            tracing::warn!(
                origin,
                path = req.uri().path(),
                "WebSocket from a foreign origin refused"
            );
            return (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({
                    "error": format!("WebSocket from origin {origin:?} refused: open the command hall from this service's own address")
                })),
            )
                .into_response();
        }
    }
    let tls = edge.over_tls(peer.map(|p| p.ip()), req.headers());
    req.extensions_mut().insert(OverTls(tls));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(public: Option<&str>, proxies: &[&str]) -> Edge {
        Edge {
            public_url: public.map(str::to_owned),
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let e = edge(None, &["10.0.0.0/8", "127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.2.3")]);
        // From the proxy: the rightmost address that is not a proxy.
        assert_eq!(
            e.client_ip("10.0.0.1".parse().unwrap(), &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // From anyone else: the header is ignored (a client cannot pick its own address).
        assert_eq!(
            e.client_ip("198.51.100.50".parse().unwrap(), &h),
            "198.51.100.50".parse::<IpAddr>().unwrap()
        );
        // Garbage after a good hop: the addresses before it.
        let bad = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip")]);
        assert_eq!(
            e.client_ip("127.0.0.1".parse().unwrap(), &bad),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // No header from a proxy: the proxy itself.
        assert_eq!(
            e.client_ip("127.0.0.1".parse().unwrap(), &HeaderMap::new()),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn websocket_origins_are_the_services_own() {
        let e = edge(Some("https://hall.example.cn"), &[]);
        let h = headers(&[("host", "10.0.0.5:8080")]);
        assert!(e.origin_allowed("http://10.0.0.5:8080", &h), "its own host");
        assert!(
            e.origin_allowed("https://hall.example.cn", &h),
            "public_url"
        );
        assert!(!e.origin_allowed("https://evil.example", &h));
        assert!(
            !e.origin_allowed("http://10.0.0.5:9090", &h),
            "another port"
        );
        assert!(!e.origin_allowed("null", &h));
        assert!(e.over_tls(None, &HeaderMap::new()), "public_url is https");
        let plain = edge(None, &["127.0.0.1/32"]);
        let fwd = headers(&[("x-forwarded-proto", "https")]);
        assert!(plain.over_tls(Some("127.0.0.1".parse().unwrap()), &fwd));
        assert!(
            !plain.over_tls(Some("192.0.2.1".parse().unwrap()), &fwd),
            "only a trusted proxy says so"
        );
    }

    /// Over a real socket: the layer rewrites the address handlers see, tells them the browser came
    /// over TLS, and refuses a foreign origin's WebSocket.
    #[tokio::test]
    async fn through_a_real_socket() {
        use axum::Router;
        use axum::routing::get;
        let e = Arc::new(edge(Some("https://hall.example.cn"), &["127.0.0.1/32"]));
        let app = Router::new()
            .route(
                "/who",
                get(
                    |ConnectInfo(a): ConnectInfo<SocketAddr>,
                     axum::Extension(tls): axum::Extension<OverTls>| async move {
                        format!("{} tls={}", a.ip(), tls.0)
                    },
                ),
            )
            .layer(axum::middleware::from_fn_with_state(e, super::edge));
        let addr = crate::web::serve_for_test(app).await;
        let c = reqwest::Client::new();
        let r = c
            .get(format!("http://{addr}/who"))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "203.0.113.9 tls=true");
        let ws = |origin: &str| {
            c.get(format!("http://{addr}/who"))
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("origin", origin.to_owned())
                .send()
        };
        let r = ws("https://evil.example").await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("evil.example"));
        assert_eq!(ws(&format!("http://{addr}")).await.unwrap().status(), 200);
    }
}
