//! Ingest: one RTSP session per camera with retina (async, no threads per camera).
//!
//! In: a camera's URL, transport and credentials. Out: access units (Annex B, parameter sets in-band
//! before every keyframe) handed to a callback as they arrive, and on failure an [`IngestFailure`]
//! classified into the reasons of DOMAIN.md. Nothing is queued here: the callback decides what to keep
//! (the camera supervisor gates by keyframe/analysis rate and the decoder queue drops the oldest).

pub mod gst_source;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{
    self, PlayOptions, SessionOptions, SetupOptions, TcpTransportOptions, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};

use crate::config::Transport;
use crate::decode::VideoCodec;
use crate::health::OfflineReason;

/// DESCRIBE/SETUP/PLAY must each answer within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session needs to open a camera.
#[derive(Clone)]
pub struct SessionSpec {
    /// Camera id, for logs and errors.
    pub camera: std::sync::Arc<str>,
    /// The URL to open (no credentials inside).
    pub url: url::Url,
    /// TCP, UDP, or TCP then UDP.
    pub transport: Transport,
    /// Digest/basic credentials, if the camera needs them.
    pub credentials: Option<(String, crate::config::Secret)>,
    /// No media for this long ends the session as `stalled`.
    pub stall_after: Duration,
}

/// Describes the stream once PLAY succeeded.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Video codec.
    pub codec: VideoCodec,
    /// Picture size, when the parameters are known.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The transport actually used ("tcp" or "udp").
    pub transport: &'static str,
    /// Server software as it names itself (helps engineers spot camera models).
    pub tool: Option<String>,
}

/// One access unit as it arrived: the decode stage's type, the same value ingest hands over.
pub use crate::decode::AccessUnit;

/// Why a session ended, with the DOMAIN.md reason and a human detail (never a credential).
#[derive(Debug, Clone, thiserror::Error)]
#[error("camera {camera}: {reason:?}: {detail}")]
pub struct IngestFailure {
    /// The camera.
    pub camera: std::sync::Arc<str>,
    /// Classified reason.
    pub reason: OfflineReason,
    /// One line for engineers.
    pub detail: String,
    /// Whether the session had delivered media before it failed (resets the backoff).
    pub had_media: bool,
}

/// Callbacks from a running session.
pub trait SessionObserver: Send {
    /// PLAY succeeded.
    fn playing(&mut self, info: &StreamInfo);
    /// An access unit arrived.
    fn access_unit(&mut self, au: AccessUnit, info: &StreamInfo);
    /// The session is idle on purpose until its next `playing` (a GB/T 28181 patrol between
    /// two looks): no media is expected meanwhile.
    fn parked(&mut self) {}
}

/// Where a camera's media comes from: the camera supervisor's only way to its camera (tests give it
/// a fake). One call is one session: open, deliver to `observer`, and return why it ended.
pub trait Source: Send + Sync {
    /// Runs one session of `spec` until it fails.
    fn run<'a>(
        &'a self,
        spec: &'a SessionSpec,
        observer: &'a mut dyn SessionObserver,
    ) -> futures::future::BoxFuture<'a, IngestFailure>;
}

/// The real sources: retina for `rtsp`/`rtsps`, GStreamer for files, RTMP and HLS.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveSource;

impl Source for LiveSource {
    fn run<'a>(
        &'a self,
        spec: &'a SessionSpec,
        observer: &'a mut dyn SessionObserver,
    ) -> futures::future::BoxFuture<'a, IngestFailure> {
        Box::pin(gst_source::run_any(spec, observer))
    }
}

/// [`LiveSource`], with other sources for some URL schemes (`gb28181`: the GB/T 28181 stage's
/// INVITE, joined in app.rs); a scheme with no source of its own goes to [`LiveSource`].
#[derive(Default, Clone)]
pub struct RoutedSource {
    by_scheme: Vec<(&'static str, std::sync::Arc<dyn Source>)>,
}

impl RoutedSource {
    /// Cameras whose URL has `scheme` are opened by `source`.
    pub fn with(mut self, scheme: &'static str, source: std::sync::Arc<dyn Source>) -> Self {
        self.by_scheme.push((scheme, source));
        self
    }
}

impl Source for RoutedSource {
    fn run<'a>(
        &'a self,
        spec: &'a SessionSpec,
        observer: &'a mut dyn SessionObserver,
    ) -> futures::future::BoxFuture<'a, IngestFailure> {
        match self.by_scheme.iter().find(|(s, _)| *s == spec.url.scheme()) {
            Some((_, source)) => source.run(spec, observer),
            None => LiveSource.run(spec, observer),
        }
    }
}

/// A source that cannot open anything: every session ends at once with its reason and detail (a
/// URL scheme the node is not set up for).
#[derive(Debug, Clone)]
pub struct Refuse {
    /// The reason every session ends with.
    pub reason: OfflineReason,
    /// Why, for engineers.
    pub detail: &'static str,
}

impl Source for Refuse {
    fn run<'a>(
        &'a self,
        spec: &'a SessionSpec,
        _observer: &'a mut dyn SessionObserver,
    ) -> futures::future::BoxFuture<'a, IngestFailure> {
        Box::pin(async move {
            IngestFailure {
                camera: spec.camera.clone(),
                reason: self.reason,
                detail: self.detail.to_owned(),
                had_media: false,
            }
        })
    }
}

/// Opens the camera and delivers access units until the stream fails; never returns `Ok` except
/// when the server ends the stream (which is reported as `eos`).
pub async fn run_session(spec: &SessionSpec, observer: &mut dyn SessionObserver) -> IngestFailure {
    let mut had_media = false;
    let result = run_inner(spec, observer, &mut had_media).await;
    let (reason, detail) = match result {
        Ok(()) => (OfflineReason::Eos, "the camera ended the stream".to_owned()),
        Err(e) => e,
    };
    IngestFailure {
        camera: spec.camera.clone(),
        reason,
        detail,
        had_media,
    }
}

type Failure = (OfflineReason, String);

async fn timed<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, retina::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, fut).await {
        Err(_) => Err((
            OfflineReason::Timeout,
            format!(
                "{what} got no answer within {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) => Err(classify(&e)),
        Ok(Ok(v)) => Ok(v),
    }
}

async fn run_inner(
    spec: &SessionSpec,
    observer: &mut dyn SessionObserver,
    had_media: &mut bool,
) -> Result<(), Failure> {
    let options = || {
        let creds = spec.credentials.as_ref().map(|(u, p)| client::Credentials {
            username: u.clone(),
            password: p.expose().to_owned(),
        });
        SessionOptions::default()
            .creds(creds)
            .user_agent(concat!("qianliyan/", env!("CARGO_PKG_VERSION")).to_owned())
            .teardown(client::TeardownPolicy::Auto)
    };
    let attempts: &[&'static str] = match spec.transport {
        Transport::Tcp => &["tcp"],
        Transport::Udp => &["udp"],
        Transport::Auto => &["tcp", "udp"],
    };
    let mut last = None;
    for (i, transport) in attempts.iter().enumerate() {
        let mut session = timed(
            "DESCRIBE",
            client::Session::describe(spec.url.clone(), options()),
        )
        .await?;
        let Some((stream_i, codec)) = session.streams().iter().enumerate().find_map(|(i, s)| {
            let codec = match (s.media(), s.encoding_name()) {
                ("video", n) if n.eq_ignore_ascii_case("h264") => VideoCodec::H264,
                ("video", n) if n.eq_ignore_ascii_case("h265") => VideoCodec::H265,
                _ => return None,
            };
            Some((i, codec))
        }) else {
            let found: Vec<String> = session
                .streams()
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            return Err((
                OfflineReason::NotFound,
                format!("no H.264/H.265 video track (found: {})", found.join(", ")),
            ));
        };
        let transport_opt = if *transport == "udp" {
            client::Transport::Udp(UdpTransportOptions::default())
        } else {
            client::Transport::Tcp(TcpTransportOptions::default())
        };
        let setup = SetupOptions::default()
            .transport(transport_opt)
            .frame_format(FrameFormat::SIMPLE);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, session.setup(stream_i, setup)).await {
            Ok(Ok(())) => {}
            // 461 Unsupported Transport: in auto mode, try the next transport.
            Ok(Err(e)) if i + 1 < attempts.len() && e.status_code() == Some(461) => {
                last = Some(classify(&e));
                continue;
            }
            Ok(Err(e)) => return Err(classify(&e)),
            Err(_) => {
                return Err((
                    OfflineReason::Timeout,
                    format!(
                        "SETUP got no answer within {}s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        let playing = timed("PLAY", session.play(PlayOptions::default())).await?;
        let tool = playing.tool().map(|t| format!("{t:?}"));
        let mut demuxed = playing.demuxed().map_err(|e| classify(&e))?;
        let (width, height) = dimensions(demuxed.streams().get(stream_i));
        let mut info = StreamInfo {
            codec,
            width,
            height,
            transport,
            tool,
        };
        observer.playing(&info);
        return pump(spec, &mut demuxed, stream_i, &mut info, observer, had_media).await;
    }
    Err(last.unwrap_or((OfflineReason::Refused, "no transport accepted".into())))
}

fn dimensions(stream: Option<&client::Stream>) -> (u32, u32) {
    match stream.and_then(|s| s.parameters()) {
        Some(ParametersRef::Video(v)) => v.pixel_dimensions(),
        _ => (0, 0),
    }
}

async fn pump(
    spec: &SessionSpec,
    demuxed: &mut client::Demuxed,
    stream_i: usize,
    info: &mut StreamInfo,
    observer: &mut dyn SessionObserver,
    had_media: &mut bool,
) -> Result<(), Failure> {
    let mut first_ts: Option<i64> = None;
    loop {
        let item = match tokio::time::timeout(spec.stall_after, demuxed.next()).await {
            Err(_) => {
                return Err((
                    OfflineReason::Stalled,
                    format!(
                        "no media for {}s on an open session",
                        spec.stall_after.as_secs()
                    ),
                ));
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(classify(&e)),
            Ok(Some(Ok(item))) => item,
        };
        let CodecItem::VideoFrame(frame) = item else {
            continue;
        };
        if frame.stream_id() != stream_i {
            continue;
        }
        if frame.has_new_parameters() {
            (info.width, info.height) = dimensions(demuxed.streams().get(stream_i));
        }
        let ts = frame.timestamp().timestamp();
        let base = *first_ts.get_or_insert(ts);
        *had_media = true;
        let au = AccessUnit {
            keyframe: frame.is_random_access_point(),
            loss: frame.loss(),
            pts_90k: ts - base,
            arrival: SystemTime::now(),
            data: Bytes::from(frame.into_data()),
        };
        observer.access_unit(au, info);
    }
}

/// Maps a retina error to a DOMAIN.md reason and a one-line detail.
pub fn classify(e: &retina::Error) -> Failure {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim().to_owned();
    let lower = text.to_ascii_lowercase();
    let reason = match e.status_code() {
        Some(401) | Some(403) => OfflineReason::AuthFailed,
        Some(404) => OfflineReason::NotFound,
        // A success whose content cannot be used (a session description that does not parse).
        Some(200..=299) => OfflineReason::ProtocolError,
        Some(_) => OfflineReason::Refused,
        None if lower.contains("connection refused") => OfflineReason::Refused,
        None if lower.contains("unable to connect") => {
            if lower.contains("timed out") {
                OfflineReason::Timeout
            } else {
                OfflineReason::Unreachable
            }
        }
        None if lower.contains("timed out") || lower.contains("timeout") => OfflineReason::Timeout,
        None if lower.contains("eof")
            || lower.contains("closed")
            || lower.contains("reset by peer") =>
        {
            OfflineReason::Eos
        }
        // An answer that is not RTSP, data on a channel never set up, a packet or payload that
        // does not parse (retina's packet errors end with its `pkt:` context).
        None if lower.contains("framing error")
            || lower.contains("invalid")
            || lower.contains("unassigned channel")
            || lower.contains("\npkt: ") =>
        {
            OfflineReason::ProtocolError
        }
        None => OfflineReason::DecodeError,
    };
    (reason, first)
}
