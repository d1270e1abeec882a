//! The RTSP side of camsim: one tokio task per TCP connection answers requests and paces that
//! connection's session; no threads per camera. A client that stops reading is disconnected after
//! [`WRITE_TIMEOUT`]; one that lags more than [`MAX_LAG`] skips to the next keyframe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rtsp_types::headers::{self, HeaderName};
use rtsp_types::{Message, Method, Request, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::media::{CLOCK_RATE, Clip, Media, PAYLOAD_TYPE, Variant};
use super::{CamsimError, Fault, Shared, TransportPolicy};

/// A client that cannot take one frame in this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A session further behind its schedule than this skips to a keyframe at the live position.
const MAX_LAG: Duration = Duration::from_secs(1);
/// A request larger than this without its end is answered 400 and the connection closed.
const MAX_REQUEST: usize = 64 * 1024;
/// UDP sessions without any RTSP request for this long are ended (TCP ones end with the connection).
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
const SERVER_NAME: &str = "qianliyan-camsim";
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// A bound RTSP server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    udp: Arc<UdpPair>,
}

struct UdpPair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    ports: (u16, u16),
}

impl Server {
    /// Binds the RTSP port and the UDP RTP/RTCP pair.
    pub async fn bind(
        shared: Arc<Shared>,
        addr: SocketAddr,
        udp_port: u16,
    ) -> Result<Server, CamsimError> {
        let bind_err = |what, addr, source| CamsimError::Bind { what, addr, source };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_err("rtsp", addr, e))?;
        let udp = bind_udp(addr, udp_port)
            .await
            .map_err(|e| bind_err("udp", addr, e))?;
        Ok(Server {
            shared,
            listener,
            udp: Arc::new(udp),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Accepts connections until cancelled, then waits for every connection task to end.
    pub async fn serve(self, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        tracker.spawn(drain_udp(self.udp.clone(), cancel.clone()));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        self.shared.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nodelay(true);
                        let conn = Connection::new(self.shared.clone(), self.udp.clone(), peer);
                        let span = tracing::debug_span!("rtsp_conn", %peer);
                        tracker.spawn(conn.run(stream, cancel.clone()).instrument(span));
                    }
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        tracker.close();
        tracker.wait().await;
    }
}

async fn bind_udp(addr: SocketAddr, port: u16) -> std::io::Result<UdpPair> {
    let ip = addr.ip();
    if port != 0 {
        let rtp = UdpSocket::bind((ip, port)).await?;
        let rtcp = UdpSocket::bind((ip, port.wrapping_add(1))).await?;
        return Ok(UdpPair {
            rtp,
            rtcp,
            ports: (port, port.wrapping_add(1)),
        });
    }
    // Pick an even/odd pair as RFC 3550 suggests; retry a few times if the odd port is taken.
    for _ in 0..32 {
        let rtp = UdpSocket::bind((ip, 0)).await?;
        let p = rtp.local_addr()?.port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, p + 1)).await {
            return Ok(UdpPair {
                rtp,
                rtcp,
                ports: (p, p + 1),
            });
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free RTP/RTCP port pair",
    ))
}

/// Reads and drops what clients send to the UDP ports (receiver reports, NAT punching).
async fn drain_udp(udp: Arc<UdpPair>, cancel: CancellationToken) {
    let mut a = [0u8; 2048];
    let mut b = [0u8; 2048];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = udp.rtp.recv_from(&mut a) => {}
            _ = udp.rtcp.recv_from(&mut b) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamSel {
    Main,
    Sub,
}

/// A resolved request URL: which camera and stream, and whether it names the track.
struct Target {
    camera: usize,
    stream: StreamSel,
}

enum Transport {
    Tcp { channel: u8 },
    Udp { dest: SocketAddr },
}

struct Session {
    id: String,
    target: Target,
    transport: Transport,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    track_url: String,
    play: Option<Playback>,
    last_request: Instant,
}

/// Where a playing session is in its clip.
struct Playback {
    /// What the camera was doing when the current position was chosen; a change forces a resync.
    mode: Fault,
    variant: Variant,
    idx: usize,
    /// Session media time of the next frame, 90 kHz units since PLAY.
    media_pos: u64,
    /// Wall-clock instant of media time 0.
    start: Instant,
}

impl Playback {
    fn due(&self) -> Instant {
        self.start + Duration::from_micros(self.media_pos * 1_000_000 / CLOCK_RATE as u64)
    }
}

enum Event {
    Cancelled,
    Read(usize),
    Tick,
    Fault(bool),
}

struct Connection {
    shared: Arc<Shared>,
    udp: Arc<UdpPair>,
    peer: SocketAddr,
    session: Option<Session>,
    fault_rx: Option<watch::Receiver<Fault>>,
    out: Vec<u8>,
    close: bool,
}

impl Connection {
    fn new(shared: Arc<Shared>, udp: Arc<UdpPair>, peer: SocketAddr) -> Self {
        Connection {
            shared,
            udp,
            peer,
            session: None,
            fault_rx: None,
            out: Vec::with_capacity(16 * 1024),
            close: false,
        }
    }

    async fn run(mut self, mut stream: TcpStream, cancel: CancellationToken) {
        let mut buf = BytesMut::with_capacity(4096);
        while !self.close {
            let due = self
                .session
                .as_ref()
                .and_then(|s| s.play.as_ref())
                .map(Playback::due);
            let event = {
                let fault_rx = self.fault_rx.as_mut();
                let fault_changed = async move {
                    match fault_rx {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => Event::Cancelled,
                    read = stream.read_buf(&mut buf) => Event::Read(read.unwrap_or(0)),
                    _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Event::Tick,
                    alive = fault_changed => Event::Fault(alive),
                }
            };
            match event {
                Event::Cancelled | Event::Read(0) => break,
                Event::Read(_) => self.on_input(&mut buf),
                Event::Tick => self.on_tick(),
                Event::Fault(alive) => {
                    self.on_fault_change();
                    if !alive {
                        self.fault_rx = None;
                    }
                }
            }
            if !self.out.is_empty() {
                let ok = matches!(
                    timeout(WRITE_TIMEOUT, stream.write_all(&self.out)).await,
                    Ok(Ok(()))
                );
                self.out.clear();
                if !ok {
                    tracing::debug!("client not reading; closing");
                    break;
                }
            }
            if let Some(s) = &self.session
                && matches!(s.transport, Transport::Udp { .. })
                && s.last_request.elapsed() > SESSION_TIMEOUT
            {
                tracing::debug!(session = %s.id, "UDP session timed out");
                break;
            }
        }
        self.end_session();
    }

    fn end_session(&mut self) {
        if let Some(s) = self.session.take() {
            self.shared
                .stats
                .sessions_active
                .fetch_sub(1, Ordering::Relaxed);
            if let Some(cam) = self.shared.cameras.get(s.target.camera) {
                cam.sessions.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.fault_rx = None;
    }

    fn on_fault_change(&mut self) {
        let Some(rx) = self.fault_rx.as_mut() else {
            return;
        };
        let fault = *rx.borrow_and_update();
        if fault == Fault::Down {
            tracing::debug!("camera taken down; ending session");
            self.close = true;
        }
    }

    fn on_input(&mut self, buf: &mut BytesMut) {
        while !self.close && !buf.is_empty() {
            match Message::<Vec<u8>>::parse(&buf[..]) {
                Ok((msg, consumed)) => {
                    buf.advance(consumed);
                    match msg {
                        Message::Request(req) => self.on_request(req),
                        // Interleaved RTCP from the client, or a stray response: nothing to do.
                        Message::Data(_) | Message::Response(_) => {}
                    }
                }
                Err(rtsp_types::ParseError::Incomplete(_)) => {
                    if buf.len() > MAX_REQUEST {
                        self.bad_request("request too large");
                    }
                    return;
                }
                Err(rtsp_types::ParseError::Error) => {
                    self.bad_request("malformed RTSP message");
                    return;
                }
            }
        }
    }

    fn bad_request(&mut self, why: &str) {
        self.shared
            .stats
            .bad_requests
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why, "bad request; closing");
        let resp = Response::builder(Version::V1_0, StatusCode::BadRequest)
            .header(headers::SERVER, SERVER_NAME)
            .header(headers::CONNECTION, "close")
            .build(why.as_bytes().to_vec());
        let _ = resp.write(&mut self.out);
        self.close = true;
    }

    fn on_request(&mut self, req: Request<Vec<u8>>) {
        let Some(cseq) = req.header(&headers::CSEQ).map(|v| v.as_str().to_owned()) else {
            self.bad_request("missing CSeq");
            return;
        };
        if let Some(s) = self.session.as_mut() {
            s.last_request = Instant::now();
        }
        let reply = match self.dispatch(&req) {
            Ok(r) => r,
            Err((status, why)) => Reply::error(status, why),
        };
        let mut resp = Response::builder(Version::V1_0, reply.status)
            .header(headers::CSEQ, cseq)
            .header(headers::SERVER, SERVER_NAME);
        for (name, value) in reply.headers {
            resp = resp.header(name, value);
        }
        let resp = resp.build(reply.body);
        let _ = resp.write(&mut self.out);
    }

    fn dispatch(&mut self, req: &Request<Vec<u8>>) -> Result<Reply, (StatusCode, String)> {
        let method = req.method();
        if *method == Method::Options {
            return Ok(Reply::ok().header(headers::PUBLIC, PUBLIC));
        }
        if let Some(auth) = &self.shared.auth {
            let header = req.header(&headers::AUTHORIZATION).map(|v| v.as_str());
            if !auth.verify(<&str>::from(method), header) {
                self.shared
                    .stats
                    .auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(
                    Reply::error(StatusCode::Unauthorized, "credentials required".into())
                        .header(headers::WWW_AUTHENTICATE, auth.challenge()),
                );
            }
        }
        match method {
            Method::Describe => self.describe(req),
            Method::Setup => self.setup(req),
            Method::Play => self.play(req),
            Method::Pause => {
                let s = self.session_for(req)?;
                s.play = None;
                Ok(Reply::ok().header(headers::SESSION, s.id.clone()))
            }
            Method::Teardown => {
                self.session_for(req)?;
                self.end_session();
                Ok(Reply::ok())
            }
            Method::GetParameter | Method::SetParameter => {
                if req.header(&headers::SESSION).is_some() {
                    self.session_for(req)?;
                }
                Ok(Reply::ok())
            }
            _ => Err((
                StatusCode::NotImplemented,
                format!("{} is not supported", <&str>::from(method)),
            )),
        }
    }

    fn resolve(&self, req: &Request<Vec<u8>>) -> Result<(Target, String), (StatusCode, String)> {
        let url = req
            .request_uri()
            .ok_or((StatusCode::BadRequest, "request URL missing".into()))?;
        let segs: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let not_found = || {
            (
                StatusCode::NotFound,
                format!(
                    "no such camera {}: cameras are {}..{}",
                    url.path(),
                    self.shared.path_of(1),
                    self.shared.path_of(self.shared.cameras.len() as u32)
                ),
            )
        };
        let (cam, rest) = match segs.as_slice() {
            ["cam", id, rest @ ..] => (self.shared.camera(id).ok_or_else(not_found)?, rest),
            _ => return Err(not_found()),
        };
        let (stream, rest) = match rest {
            ["sub", rest @ ..] => (StreamSel::Sub, rest),
            ["main", rest @ ..] => (StreamSel::Main, rest),
            rest => (StreamSel::Main, rest),
        };
        if stream == StreamSel::Sub && self.shared.sub.is_none() {
            return Err((
                StatusCode::NotFound,
                "this camsim serves no sub-stream (start it with --sub-source)".into(),
            ));
        }
        match rest {
            [] | [_] => {}
            _ => return Err(not_found()),
        }
        if cam.fault() == Fault::Down {
            return Err((StatusCode::ServiceUnavailable, "camera is down".into()));
        }
        Ok((
            Target {
                camera: (cam.number - 1) as usize,
                stream,
            },
            url.as_str().to_owned(),
        ))
    }

    fn media(&self, stream: StreamSel) -> &Arc<Media> {
        match (stream, &self.shared.sub) {
            (StreamSel::Sub, Some(sub)) => sub,
            _ => &self.shared.main,
        }
    }

    fn describe(&mut self, req: &Request<Vec<u8>>) -> Result<Reply, (StatusCode, String)> {
        let (target, url) = self.resolve(req)?;
        let host = req
            .request_uri()
            .and_then(|u| u.host_str())
            .unwrap_or("127.0.0.1")
            .to_owned();
        let sdp = self
            .media(target.stream)
            .sdp(rand::random::<u32>() as u64, &host);
        let base = if url.ends_with('/') {
            url
        } else {
            format!("{url}/")
        };
        Ok(Reply::ok()
            .header(headers::CONTENT_TYPE, "application/sdp")
            .header(headers::CONTENT_BASE, base)
            .body(sdp.into_bytes()))
    }

    fn setup(&mut self, req: &Request<Vec<u8>>) -> Result<Reply, (StatusCode, String)> {
        let (target, url) = self.resolve(req)?;
        if let Some(s) = &self.session {
            if req
                .header(&headers::SESSION)
                .map(|v| session_id(v.as_str()))
                != Some(s.id.as_str())
            {
                return Err((
                    StatusCode::MethodNotValidInThisState,
                    "one session per connection".into(),
                ));
            }
            return Err((
                StatusCode::AggregateOperationNotAllowed,
                "the stream has one track, already set up".into(),
            ));
        }
        let transports = req
            .typed_header::<headers::Transports>()
            .map_err(|_| {
                (
                    StatusCode::BadRequest,
                    "unparseable Transport header".into(),
                )
            })?
            .ok_or((StatusCode::BadRequest, "Transport header missing".into()))?;
        let policy = self.shared.transports;
        let mut chosen = None;
        for t in transports.iter() {
            let headers::transport::Transport::Rtp(rtp) = t else {
                continue;
            };
            if rtp.params.multicast {
                continue;
            }
            match rtp.lower_transport {
                Some(headers::transport::RtpLowerTransport::Tcp)
                    if policy != TransportPolicy::Udp =>
                {
                    let channel = rtp.params.interleaved.map(|(c, _)| c).unwrap_or(0);
                    chosen = Some(Transport::Tcp { channel });
                    break;
                }
                None | Some(headers::transport::RtpLowerTransport::Udp)
                    if policy != TransportPolicy::Tcp =>
                {
                    if let Some((port, _)) = rtp.params.client_port {
                        chosen = Some(Transport::Udp {
                            dest: SocketAddr::new(self.peer.ip(), port),
                        });
                        break;
                    }
                }
                _ => {}
            }
        }
        let transport = chosen.ok_or_else(|| {
            (
                StatusCode::UnsupportedTransport,
                format!("no acceptable transport; this camera accepts {policy:?} unicast RTP/AVP"),
            )
        })?;
        let ssrc: u32 = rand::random();
        let reply_transport = match &transport {
            Transport::Tcp { channel } => format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={ssrc:08X};mode=\"PLAY\"",
                channel,
                channel.wrapping_add(1)
            ),
            Transport::Udp { dest } => format!(
                "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={ssrc:08X};mode=\"PLAY\"",
                dest.port(),
                dest.port().wrapping_add(1),
                self.udp.ports.0,
                self.udp.ports.1
            ),
        };
        let cam = &self.shared.cameras[target.camera];
        cam.sessions.fetch_add(1, Ordering::Relaxed);
        self.fault_rx = Some(cam.subscribe());
        self.shared
            .stats
            .sessions_total
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .sessions_active
            .fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016X}", rand::random::<u64>());
        let session_header = format!("{id};timeout={}", SESSION_TIMEOUT.as_secs());
        self.session = Some(Session {
            id,
            target,
            transport,
            ssrc,
            seq: rand::random(),
            ts_base: rand::random(),
            track_url: url,
            play: None,
            last_request: Instant::now(),
        });
        Ok(Reply::ok()
            .header(headers::TRANSPORT, reply_transport)
            .header(headers::SESSION, session_header))
    }

    fn play(&mut self, req: &Request<Vec<u8>>) -> Result<Reply, (StatusCode, String)> {
        let now = Instant::now();
        let s = self.session_for(req)?;
        if s.play.is_none() {
            s.play = Some(Playback {
                mode: Fault::Down, // forces a keyframe resync on the first tick
                variant: Variant::Normal,
                idx: 0,
                media_pos: 0,
                start: now,
            });
        }
        let (id, seq, rtptime, url) = (s.id.clone(), s.seq, s.ts_base, s.track_url.clone());
        Ok(Reply::ok()
            .header(headers::SESSION, id)
            .header(headers::RANGE, "npt=now-")
            .header(
                headers::RTP_INFO,
                format!("url={url};seq={seq};rtptime={rtptime}"),
            ))
    }

    fn session_for(
        &mut self,
        req: &Request<Vec<u8>>,
    ) -> Result<&mut Session, (StatusCode, String)> {
        let given = req
            .header(&headers::SESSION)
            .map(|v| session_id(v.as_str()).to_owned());
        match (&mut self.session, given) {
            (Some(s), Some(id)) if s.id == id => Ok(s),
            (Some(_), Some(id)) => Err((StatusCode::SessionNotFound, format!("no session {id}"))),
            (Some(_), None) => Err((StatusCode::SessionNotFound, "Session header missing".into())),
            (None, _) => Err((
                StatusCode::SessionNotFound,
                "no session: SETUP first".into(),
            )),
        }
    }

    /// Sends the frame that is due now (or advances the clock while stalled).
    fn on_tick(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(play) = session.play.as_mut() else {
            return;
        };
        let cam = &self.shared.cameras[session.target.camera];
        let fault = cam.fault();
        let media = match (session.target.stream, &self.shared.sub) {
            (StreamSel::Sub, Some(sub)) => sub.clone(),
            _ => self.shared.main.clone(),
        };
        let now = Instant::now();
        if now.saturating_duration_since(play.due()) > MAX_LAG {
            self.shared
                .stats
                .late_resyncs
                .fetch_add(1, Ordering::Relaxed);
            play.media_pos = to_90k(now.duration_since(play.start));
            play.mode = Fault::Down;
        }
        let resync = play.mode != fault;
        play.mode = fault;
        let frame_duration = media.normal.frame_duration;
        let (variant, idx, step) = match fault {
            Fault::Down => {
                self.close = true;
                return;
            }
            Fault::Stall => {
                // The RTP clock keeps running, as a real camera's would, while nothing is sent.
                play.media_pos += frame_duration;
                return;
            }
            Fault::Freeze => {
                if resync {
                    // Keep showing the last picture sent: its GOP's keyframe decodes on its own.
                    play.idx = clip_keyframe_before(media.clip(play.variant), play.idx);
                }
                (play.variant, play.idx, frame_duration)
            }
            Fault::None | Fault::Black | Fault::Cover => {
                let variant = match fault {
                    Fault::Black => Variant::Black,
                    Fault::Cover => Variant::Cover,
                    _ => cam.scene_variant(self.shared.epoch.elapsed()),
                };
                let clip = media.clip(variant);
                if resync || variant != play.variant {
                    play.variant = variant;
                    play.idx = clip.keyframe_at(to_90k(self.shared.epoch.elapsed()) + cam.offset);
                }
                let idx = play.idx.min(clip.frames.len() - 1);
                let ts = clip.frames[idx].ts;
                let (next, step) = match clip.frames.get(idx + 1) {
                    Some(n) => (idx + 1, n.ts.saturating_sub(ts)),
                    None => (0, clip.duration.saturating_sub(ts)),
                };
                play.idx = next;
                (variant, idx, step.max(1))
            }
        };
        let frame = &media.clip(variant).frames[idx];
        write_frame(
            &mut self.out,
            &self.udp.rtp,
            &self.shared.stats,
            session,
            frame,
            step,
        );
    }
}

fn to_90k(d: Duration) -> u64 {
    (d.as_micros() * CLOCK_RATE as u128 / 1_000_000) as u64
}

/// Index of the keyframe at or before `idx`.
fn clip_keyframe_before(clip: &Clip, idx: usize) -> usize {
    let idx = idx.min(clip.frames.len().saturating_sub(1));
    (0..=idx)
        .rev()
        .find(|&i| clip.frames[i].keyframe)
        .unwrap_or(0)
}

/// Writes one access unit for a session: into `out` for TCP, straight to the socket for UDP.
/// Advances the session's clock by `step` (90 kHz). The session clock runs in decode time (frames
/// go out in decode order, each when it is due); the RTP timestamp is the frame's presentation
/// time, its decode time plus `cts`, so B-frames carry earlier timestamps than the frames they
/// follow, as RFC 6184 requires.
fn write_frame(
    out: &mut Vec<u8>,
    udp: &UdpSocket,
    stats: &super::Stats,
    session: &mut Session,
    frame: &super::media::Frame,
    step: u64,
) {
    let Some(play) = session.play.as_mut() else {
        return;
    };
    let ts = session
        .ts_base
        .wrapping_add(play.media_pos as u32)
        .wrapping_add(frame.cts);
    play.media_pos += step;
    let mut bytes = 0u64;
    let mut dgram = [0u8; 2048];
    for pkt in &frame.packets {
        let mut header = [0u8; 12];
        header[0] = 0x80;
        header[1] = PAYLOAD_TYPE | if pkt.marker { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&session.seq.to_be_bytes());
        header[4..8].copy_from_slice(&ts.to_be_bytes());
        header[8..12].copy_from_slice(&session.ssrc.to_be_bytes());
        session.seq = session.seq.wrapping_add(1);
        let len = header.len() + pkt.payload.len();
        bytes += len as u64;
        match session.transport {
            Transport::Tcp { channel } => {
                out.push(b'$');
                out.push(channel);
                out.extend_from_slice(&(len as u16).to_be_bytes());
                out.extend_from_slice(&header);
                out.extend_from_slice(&pkt.payload);
            }
            Transport::Udp { dest } => {
                let Some(buf) = dgram.get_mut(..len) else {
                    continue;
                };
                buf[..12].copy_from_slice(&header);
                buf[12..].copy_from_slice(&pkt.payload);
                // Best effort like a real camera: a full socket buffer drops the packet.
                let _ = udp.try_send_to(buf, dest);
            }
        }
    }
    stats
        .packets_sent
        .fetch_add(frame.packets.len() as u64, Ordering::Relaxed);
    stats.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
}

/// `"ABCD;timeout=60"` → `"ABCD"`.
fn session_id(header: &str) -> &str {
    header.split(';').next().unwrap_or("").trim()
}

struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn ok() -> Self {
        Reply {
            status: StatusCode::Ok,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn error(status: StatusCode, why: String) -> Self {
        Reply {
            status,
            headers: vec![(headers::CONTENT_TYPE, "text/plain".into())],
            body: why.into_bytes(),
        }
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}
