//! A deliberately cheap RTSP client for load tests: DESCRIBE/SETUP/PLAY over TCP, then receive and
//! count bytes until cancelled, with a GET_PARAMETER keep-alive. It never decodes; the point is to
//! measure the server, not the client. No authentication.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rtsp_types::{Message, Method, Request, Response, StatusCode, Version, headers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const KEEPALIVE: Duration = Duration::from_secs(20);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Counters shared by many load clients.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Clients that reached PLAY.
    pub playing: AtomicU64,
    /// Clients that failed to connect or set up, or whose stream ended.
    pub failed: AtomicU64,
    /// Clients whose stream ended early.
    pub ended: AtomicU64,
    /// Bytes received after PLAY.
    pub bytes: AtomicU64,
}

/// Why a load client stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Network error.
    #[error("{url}")]
    Io {
        /// The URL.
        url: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server answered something other than 200.
    #[error("{url}: {method} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The request method.
        method: &'static str,
        /// The status code.
        status: u16,
    },
    /// The server sent something unparseable or nothing in time.
    #[error("{url}: {why}")]
    Protocol {
        /// The URL.
        url: String,
        /// What went wrong.
        #[source]
        why: ProtocolWhy,
    },
}

/// Detail of a protocol error.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolWhy {
    /// Malformed response.
    #[error("malformed response")]
    Malformed,
    /// Timed out waiting for a response.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection closed during the handshake.
    #[error("connection closed during set-up")]
    Closed,
}

/// Holds one session on `url` (e.g. `rtsp://127.0.0.1:8554/cam/0001`) until `cancel`.
pub async fn hold(
    url: String,
    stats: Arc<LoadStats>,
    cancel: CancellationToken,
) -> Result<(), LoadError> {
    let result = hold_inner(&url, &stats, &cancel).await;
    if result.is_err() {
        stats.failed.fetch_add(1, Ordering::Relaxed);
    }
    result
}

async fn hold_inner(
    url: &str,
    stats: &LoadStats,
    cancel: &CancellationToken,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        url: url.to_owned(),
        source,
    };
    let parsed = rtsp_types::Url::parse(url).map_err(|_| LoadError::Protocol {
        url: url.to_owned(),
        why: ProtocolWhy::Malformed,
    })?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed.port().unwrap_or(554);
    let mut stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(io)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut conn = Handshake {
        url,
        stream: &mut stream,
        buf: &mut buf,
        cseq: 0,
    };
    let described = conn
        .request(
            Method::Describe,
            url,
            &[(headers::ACCEPT, "application/sdp")],
        )
        .await?;
    let track = track_url(url, &described);
    let setup = conn
        .request(
            Method::Setup,
            &track,
            &[(headers::TRANSPORT, "RTP/AVP/TCP;unicast;interleaved=0-1")],
        )
        .await?;
    let session = setup
        .header(&headers::SESSION)
        .map(|v| v.as_str().split(';').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    conn.request(Method::Play, url, &[(headers::SESSION, session.as_str())])
        .await?;
    stats.playing.fetch_add(1, Ordering::Relaxed);
    let mut next_keepalive = Instant::now() + KEEPALIVE;
    let mut cseq = conn.cseq;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next_keepalive) => {
                cseq += 1;
                let req = Request::builder(Method::GetParameter, Version::V1_0)
                    .request_uri(parsed.clone())
                    .header(headers::CSEQ, cseq.to_string())
                    .header(headers::SESSION, session.as_str())
                    .empty();
                let mut out = Vec::new();
                let _ = req.write(&mut out);
                stream.write_all(&out).await.map_err(io)?;
                next_keepalive = Instant::now() + KEEPALIVE;
            }
            n = stream.read(&mut chunk) => match n {
                Ok(0) => {
                    stats.ended.fetch_add(1, Ordering::Relaxed);
                    stats.playing.fetch_sub(1, Ordering::Relaxed);
                    return Err(LoadError::Protocol { url: url.to_owned(), why: ProtocolWhy::Closed });
                }
                Ok(n) => { stats.bytes.fetch_add(n as u64, Ordering::Relaxed); }
                Err(e) => {
                    stats.ended.fetch_add(1, Ordering::Relaxed);
                    stats.playing.fetch_sub(1, Ordering::Relaxed);
                    return Err(io(e));
                }
            }
        }
    }
}

struct Handshake<'a> {
    url: &'a str,
    stream: &'a mut TcpStream,
    buf: &'a mut BytesMut,
    cseq: u32,
}

impl Handshake<'_> {
    async fn request(
        &mut self,
        method: Method,
        uri: &str,
        extra: &[(headers::HeaderName, &str)],
    ) -> Result<Response<Vec<u8>>, LoadError> {
        let err = |why| LoadError::Protocol {
            url: self.url.to_owned(),
            why,
        };
        let name: &'static str = match method {
            Method::Describe => "DESCRIBE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            _ => "request",
        };
        self.cseq += 1;
        let uri = rtsp_types::Url::parse(uri).map_err(|_| err(ProtocolWhy::Malformed))?;
        let mut req = Request::builder(method, Version::V1_0)
            .request_uri(uri)
            .header(headers::CSEQ, self.cseq.to_string());
        for (k, v) in extra {
            req = req.header(k.clone(), *v);
        }
        let mut out = Vec::new();
        let _ = req.empty().write(&mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|source| LoadError::Io {
                url: self.url.to_owned(),
                source,
            })?;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            match Message::<Vec<u8>>::parse(&self.buf[..]) {
                Ok((msg, consumed)) => {
                    let _ = self.buf.split_to(consumed);
                    if let Message::Response(resp) = msg {
                        if resp.status() != StatusCode::Ok {
                            return Err(LoadError::Status {
                                url: self.url.to_owned(),
                                method: name,
                                status: u16::from(resp.status()),
                            });
                        }
                        return Ok(resp);
                    }
                    continue;
                }
                Err(rtsp_types::ParseError::Incomplete(_)) => {}
                Err(rtsp_types::ParseError::Error) => return Err(err(ProtocolWhy::Malformed)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.stream.read_buf(self.buf)).await {
                Err(_) => return Err(err(ProtocolWhy::Timeout(HANDSHAKE_TIMEOUT))),
                Ok(Ok(0)) => return Err(err(ProtocolWhy::Closed)),
                Ok(Ok(_)) => {}
                Ok(Err(source)) => {
                    return Err(LoadError::Io {
                        url: self.url.to_owned(),
                        source,
                    });
                }
            }
        }
    }
}

/// The video track's control URL: the SDP's last `a=control` (the media-level one) resolved against
/// Content-Base or the request URL.
fn track_url(url: &str, describe: &Response<Vec<u8>>) -> String {
    let sdp = String::from_utf8_lossy(describe.body());
    let control = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=control:"))
        .rfind(|c| *c != "*")
        .unwrap_or("trackID=0")
        .to_owned();
    if control.starts_with("rtsp://") {
        return control;
    }
    let base = describe
        .header(&headers::CONTENT_BASE)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| format!("{}/", url.trim_end_matches('/')));
    let base = if base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    format!("{base}{control}")
}
