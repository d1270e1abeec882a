//! Video from GB/T 28181 channels (issue 16 step c): the platform INVITEs a channel with an SDP
//! offer naming a port of `media_ports` (UDP, or TCP where the device connects), the device answers
//! and sends MPEG-PS over RTP there, and the access units go to the camera supervisor exactly as an
//! RTSP session's do ([`crate::ingest::Source`]). The session ends with a BYE from either side.
//!
//! Failures carry the DOMAIN.md reasons: the device not registered (`unregistered`, or its own
//! offline reason), the INVITE refused or unanswered (`invite_failed`), no media after a 200
//! (`no_media`), media that stops (`stalled`), the device's BYE (`eos`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, Response, SipMessage, Transport as SipTransport};
use rsipstack::transaction::Transaction;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::config::{TcpConnect, VideoPolicy};
use super::ps::{self, PsUnit};
use super::registry::DeviceState;
use super::rtp::{PsOverRtp, ReorderConfig};
use super::sdp::{self, MediaTransport, Offer, SessionKind};
use super::service::{Service, lock};
use crate::decode::VideoCodec;
use crate::health::OfflineReason;
use crate::ingest::{AccessUnit, IngestFailure, SessionObserver, SessionSpec, StreamInfo};

/// Packets of another SSRC, and none of the expected one, before the receiver follows them.
const RELOCK_AFTER: u64 = 50;

/// How often a session waiting for its device looks again.
const DEVICE_POLL: Duration = Duration::from_millis(500);

/// Ports tried when one of the range is taken by another program.
const BIND_ATTEMPTS: usize = 16;

/// The receiving ports, handed out round-robin (a port just freed is not reused at once: late
/// packets of the old stream would land in the new one).
pub(crate) struct PortPool {
    range: RangeInclusive<u16>,
    state: Mutex<(u16, HashSet<u16>)>,
}

impl PortPool {
    pub(crate) fn new(range: RangeInclusive<u16>) -> Arc<Self> {
        let first = *range.start();
        Arc::new(Self {
            range,
            state: Mutex::new((first, HashSet::new())),
        })
    }

    /// A free port, or `None` when every port of the range is in use.
    fn take(self: &Arc<Self>) -> Option<PortLease> {
        let (start, end) = (*self.range.start(), *self.range.end());
        let size = usize::from(end - start) + 1;
        let mut st = lock(&self.state);
        for _ in 0..size {
            let port = st.0;
            st.0 = if port >= end { start } else { port + 1 };
            if st.1.insert(port) {
                return Some(PortLease {
                    pool: Arc::clone(self),
                    port,
                });
            }
        }
        None
    }

    /// Ports in use now.
    pub(crate) fn in_use(&self) -> usize {
        lock(&self.state).1.len()
    }
}

struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        lock(&self.pool.state).1.remove(&self.port);
    }
}

/// Where the media arrives.
enum Receiver {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpListener),
    /// TCP active: the platform connects to the device's answered address.
    Connect(SocketAddr),
}

/// The media being received: datagrams, or the device's connection.
enum Input {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpStream),
}

/// What one read of [`Input`] brought.
enum Read {
    /// `n` bytes into the buffer.
    Data(usize),
    /// A datagram from a host that is not the device's (dropped).
    Foreign,
    /// The device closed its connection.
    Closed,
}

impl Input {
    async fn read(&mut self, buf: &mut [u8], from: &[std::net::IpAddr]) -> std::io::Result<Read> {
        match self {
            Input::Udp(socket) => {
                let (n, peer) = socket.recv_from(buf).await?;
                Ok(if from.contains(&peer.ip()) {
                    Read::Data(n)
                } else {
                    Read::Foreign
                })
            }
            Input::Tcp(stream) => Ok(match stream.read(buf).await? {
                0 => Read::Closed,
                n => Read::Data(n),
            }),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Input::Udp(_) => "socket",
            Input::Tcp(_) => "connection",
        }
    }
}

/// An established call (dialog) with a device.
#[derive(Clone)]
pub(crate) struct Call {
    call_id: rsipstack::sip::headers::CallId,
    from: rsipstack::sip::typed::From,
    to: rsipstack::sip::typed::To,
    remote: rsipstack::sip::Uri,
    addr: SocketAddr,
    transport: SipTransport,
    connection: Option<SipConnection>,
    seq: u32,
    /// The device's SDP answer, or why it cannot be used (the call is still hung up).
    answer: Result<sdp::Answer, String>,
    /// The SSRC offered (`y=`), when the answer names none.
    offered_ssrc: Option<u32>,
}

impl Call {
    fn id(&self) -> String {
        self.call_id.value().to_string()
    }
}

type Failure = (OfflineReason, String);

impl Service {
    /// Whether `device` is registered and keeping alive now.
    fn is_online(&self, device: &str) -> bool {
        self.registry()
            .device(device)
            .is_some_and(|d| d.state == DeviceState::Online)
    }

    /// INVITEs `channel` of `device` to send live video to `port` (UDP, or TCP with the device
    /// connecting); returns the call once the device answered 200 with a usable SDP.
    pub(crate) async fn invite(
        self: &Arc<Self>,
        device: &str,
        channel: &str,
        port: u16,
        media: MediaTransport,
    ) -> Result<Call, Failure> {
        // A channel is offline with its device; the device itself with its own reason.
        let own = |r: OfflineReason| {
            if channel == device {
                r
            } else {
                OfflineReason::DeviceOffline
            }
        };
        let (addr, transport) = {
            let reg = self.registry();
            let d = reg.device(device).ok_or_else(|| {
                (
                    own(OfflineReason::Unregistered),
                    format!("device {device} has not registered"),
                )
            })?;
            if let DeviceState::Offline(reason) = d.state {
                return Err((
                    own(reason),
                    format!("device {device} is offline ({reason})"),
                ));
            }
            (d.addr, d.transport)
        };
        let (sip_transport, connection) = self
            .route(device, transport)
            .map_err(|e| (OfflineReason::InviteFailed, e))?;
        let here = self.here_for(addr);
        let seq =
            u16::try_from(self.ssrc_seq.fetch_add(1, Ordering::Relaxed) % 10_000).unwrap_or(0);
        let offer = Offer {
            channel: channel.to_owned(),
            ip: here.ip(),
            port,
            transport: media,
            ssrc: sdp::ssrc(true, &self.config.sip_id, seq)
                .map_err(|e| (OfflineReason::InviteFailed, e.to_string()))?,
            session: SessionKind::Play,
        };
        offer.check().map_err(|e| {
            (
                OfflineReason::InviteFailed,
                format!("channel {channel}: {e}"),
            )
        })?;
        let mut request = self
            .build(Method::Invite, channel, addr, sip_transport)
            .map_err(|e| {
                (
                    OfflineReason::InviteFailed,
                    format!("cannot build the INVITE: {e}"),
                )
            })?;
        request.headers.push(Header::Contact(
            format!("<sip:{}@{here}>", self.config.sip_id).into(),
        ));
        request.headers.push(Header::Other(
            "Subject".into(),
            format!("{channel}:{},{}:0", offer.ssrc, self.config.sip_id),
        ));
        request
            .headers
            .push(Header::ContentType("APPLICATION/SDP".into()));
        request.body = offer.to_sdp().into_bytes();
        self.stats.invites_sent.fetch_add(1, Ordering::Relaxed);
        let (answered, answer_rx) = tokio::sync::oneshot::channel();
        let key = TransactionKey::from_request(&request, TransactionRole::Client)
            .map_err(|e| (OfflineReason::InviteFailed, e.to_string()))?;
        let mut tx = Transaction::new_client(
            key,
            request.clone(),
            self.endpoint.clone(),
            connection.clone(),
        );
        tx.destination = Some(SipAddr {
            r#type: Some(sip_transport),
            addr: addr.into(),
        });
        // The transaction runs on its own task to its end (it must keep absorbing retransmitted
        // 200s); an answer that comes after we gave up is hung up at once.
        let late = Arc::clone(self);
        let (late_conn, late_req) = (connection.clone(), request.clone());
        tokio::spawn(async move {
            if let Err(e) = tx.send().await {
                let _ = answered.send(Err(format!("INVITE not sent: {e}")));
                return;
            }
            let mut answered = Some(answered);
            while let Some(msg) = tx.receive().await {
                let SipMessage::Response(resp) = msg else {
                    continue;
                };
                let code = u16::from(resp.status_code.clone());
                if code < 200 {
                    continue;
                }
                if let Some(to) = answered.take()
                    && let Err(Ok(resp)) = to.send(Ok(resp))
                    && u16::from(resp.status_code.clone()) < 300
                    && let Ok(call) = call_from(
                        &late_req,
                        &resp,
                        addr,
                        sip_transport,
                        late_conn.clone(),
                        None,
                    )
                {
                    late.bye(&call).await;
                }
            }
            if let Some(to) = answered.take() {
                let _ = to.send(Err("no answer".into()));
            }
        });
        let timeout = self.config.invite_timeout;
        let fail = |detail: String| {
            self.stats.invites_failed.fetch_add(1, Ordering::Relaxed);
            (OfflineReason::InviteFailed, detail)
        };
        let mut answer_rx = answer_rx;
        let resp = match tokio::time::timeout(timeout, &mut answer_rx).await {
            Err(_) => {
                // A 200 that was on its way as the time ran out is hung up, not left open.
                answer_rx.close();
                if let Ok(Ok(resp)) = answer_rx.try_recv()
                    && u16::from(resp.status_code.clone()) < 300
                    && let Ok(call) = call_from(
                        &request,
                        &resp,
                        addr,
                        sip_transport,
                        connection.clone(),
                        None,
                    )
                {
                    self.bye(&call).await;
                }
                return Err(fail(format!(
                    "channel {channel}: INVITE not answered within {} s",
                    timeout.as_secs_f64()
                )));
            }
            Ok(Err(_)) | Ok(Ok(Err(_))) => {
                return Err(fail(format!("channel {channel}: INVITE not answered")));
            }
            Ok(Ok(Ok(resp))) => resp,
        };
        let code = u16::from(resp.status_code.clone());
        if code >= 300 {
            return Err(fail(format!(
                "channel {channel}: the device answered the INVITE {code} {}",
                clip(&resp.status_code.to_string())
            )));
        }
        let call = call_from(
            &request,
            &resp,
            addr,
            sip_transport,
            connection,
            offer_ssrc(&offer),
        )
        .map_err(|e| fail(format!("channel {channel}: {e}")));
        let call = call?;
        // A 200 whose answer cannot be used is hung up: each retry would otherwise hold one of
        // the device's few stream slots.
        let unusable = match &call.answer {
            Ok(answer) => answer
                .transport_for(offer.transport)
                .err()
                .map(|e| format!("answer SDP: {e}")),
            Err(e) => Some(e.clone()),
        };
        match unusable {
            None => Ok(call),
            Some(e) => {
                self.bye(&call).await;
                Err(fail(format!("channel {channel}: {e}")))
            }
        }
    }

    /// Hangs up `call` (BYE); failures are logged, not returned (the device may be gone).
    pub(crate) async fn bye(&self, call: &Call) {
        lock(&self.calls).remove(&call.id());
        let via = match self.via_for(call.addr, call.transport) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "GB/T 28181 BYE not built");
                return;
            }
        };
        let mut req = self.endpoint.make_request(
            Method::Bye,
            call.remote.clone(),
            via,
            call.from.clone(),
            call.to.clone(),
            call.seq + 1,
            Some(call.call_id.clone()),
        );
        req.body = Vec::new();
        self.stats.byes_sent.fetch_add(1, Ordering::Relaxed);
        let sent = super::service::send(
            &self.endpoint,
            req,
            call.addr,
            call.transport,
            call.connection.clone(),
        )
        .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "GB/T 28181 BYE got no 200");
        }
    }
}

fn offer_ssrc(offer: &Offer) -> Option<u32> {
    offer.ssrc.parse().ok()
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// The call a 2xx to `invite` established.
fn call_from(
    invite: &Request,
    resp: &Response,
    addr: SocketAddr,
    transport: SipTransport,
    connection: Option<SipConnection>,
    offered_ssrc: Option<u32>,
) -> Result<Call, String> {
    let e = |what: &str, err: &dyn std::fmt::Display| format!("{what}: {err}");
    let call_id = invite
        .call_id_header()
        .map_err(|x| e("Call-ID", &x))?
        .clone();
    let from = invite
        .from_header()
        .and_then(|h| h.typed())
        .map_err(|x| e("From", &x))?;
    let to = resp
        .to_header()
        .and_then(|h| h.typed())
        .map_err(|x| e("the 200's To", &x))?;
    let seq = invite
        .cseq_header()
        .and_then(|h| h.typed())
        .map(|c| c.seq)
        .map_err(|x| e("CSeq", &x))?;
    let remote = resp
        .contact_header()
        .and_then(|h| h.typed())
        .map(|c| c.uri)
        .unwrap_or_else(|_| invite.uri.clone());
    let body = String::from_utf8_lossy(&resp.body);
    let answer = sdp::parse_answer(&body).map_err(|x| e("answer SDP", &x));
    Ok(Call {
        call_id,
        from,
        to,
        remote,
        addr,
        transport,
        connection,
        seq,
        answer,
        offered_ssrc,
    })
}

/// Video of GB/T 28181 channels for the camera supervisor: a camera whose URL is
/// `gb28181://<device>/<channel>` is pulled by INVITE.
pub struct GbMediaSource {
    service: Arc<Service>,
    ports: Arc<PortPool>,
    /// Cameras with rules (pulled continuously under `video = "rules"`).
    with_rules: Arc<std::sync::RwLock<HashSet<String>>>,
}

impl GbMediaSource {
    pub(crate) fn new(
        service: Arc<Service>,
        ports: Arc<PortPool>,
        with_rules: Arc<std::sync::RwLock<HashSet<String>>>,
    ) -> Self {
        Self {
            service,
            ports,
            with_rules,
        }
    }
}

/// Hangs up when the session ends, however it ends (a failure, the camera removed, shutdown).
struct Hangup {
    service: Arc<Service>,
    call: Option<Call>,
    ended: CancellationToken,
}

impl Drop for Hangup {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        lock(&self.service.calls).remove(&call.id());
        if self.ended.is_cancelled() {
            return; // the device hung up itself
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let service = Arc::clone(&self.service);
            rt.spawn(async move { service.bye(&call).await });
        }
    }
}

impl crate::ingest::Source for GbMediaSource {
    fn run<'a>(
        &'a self,
        spec: &'a SessionSpec,
        observer: &'a mut dyn SessionObserver,
    ) -> futures::future::BoxFuture<'a, IngestFailure> {
        Box::pin(async move {
            let mut had_media = false;
            let (reason, detail) = match self.session(spec, observer, &mut had_media).await {
                Ok(()) => (
                    OfflineReason::Eos,
                    "the device ended the stream (BYE)".into(),
                ),
                Err(f) => f,
            };
            IngestFailure {
                camera: spec.camera.clone(),
                reason,
                detail,
                had_media,
            }
        })
    }
}

/// `(device, channel)` of a `gb28181://device/channel` URL.
pub fn target(url: &url::Url) -> Option<(String, String)> {
    let device = url.host_str()?.to_owned();
    let channel = url.path().trim_matches('/').to_owned();
    (!device.is_empty() && !channel.is_empty() && !channel.contains('/'))
        .then_some((device, channel))
}

impl GbMediaSource {
    async fn session(
        &self,
        spec: &SessionSpec,
        observer: &mut dyn SessionObserver,
        had_media: &mut bool,
    ) -> Result<(), Failure> {
        let (device, channel) = target(&spec.url).ok_or_else(|| {
            (
                OfflineReason::ProtocolError,
                "not a gb28181://<device>/<channel> URL".to_owned(),
            )
        })?;
        let config = &self.service.config;
        if config.video == VideoPolicy::Off {
            // `video = "off"`: the channel's state is its signalling; no session ever ends.
            return std::future::pending().await;
        }
        // A patrolled channel's first slot: staggered over the interval by its id, so that a
        // county's channels are not all invited at once.
        let first = Duration::from_millis(
            stagger(&spec.camera)
                % u64::try_from(config.patrol_interval.as_millis())
                    .unwrap_or(1)
                    .max(1),
        );
        let mut next: Option<tokio::time::Instant> = None;
        loop {
            if !self.continuous(&spec.camera) {
                let at = *next.get_or_insert_with(|| tokio::time::Instant::now() + first);
                // A channel that gets rules meanwhile is pulled at once.
                while tokio::time::Instant::now() < at && !self.continuous(&spec.camera) {
                    let left = at.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(left.min(Duration::from_secs(1))).await;
                }
            }
            // Nothing is asked of a device that is not online: the channel's state is what its
            // signalling says until the device is back (then the video is requested at once).
            while !self.service.is_online(&device) {
                tokio::time::sleep(DEVICE_POLL).await;
            }
            let until = if self.continuous(&spec.camera) {
                None
            } else {
                let now = tokio::time::Instant::now();
                next = Some(now + config.patrol_interval);
                Some(now + config.patrol_for)
            };
            match self
                .pull(&device, &channel, spec, observer, had_media, until)
                .await?
            {
                End::Bye => return Ok(()),
                End::Patrolled => {
                    self.service.stats.patrols.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(device, channel, "GB/T 28181 patrol done");
                    observer.parked();
                }
            }
        }
    }

    /// Whether `camera` is pulled continuously (`video = "all"`, or it has rules).
    fn continuous(&self, camera: &str) -> bool {
        self.service.config.video == VideoPolicy::All
            || crate::sync::read(&self.with_rules).contains(camera)
    }

    /// One INVITE: video until the device hangs up (`End::Bye`), a failure, or `until` (a
    /// patrol: `End::Patrolled`, hung up by the platform).
    async fn pull(
        &self,
        device: &str,
        channel: &str,
        spec: &SessionSpec,
        observer: &mut dyn SessionObserver,
        had_media: &mut bool,
        until: Option<tokio::time::Instant>,
    ) -> Result<End, Failure> {
        let tcp = spec.transport == crate::config::Transport::Tcp;
        // TCP active: no port of ours; the device listens and the platform connects.
        let active = tcp && self.service.config.tcp_connect_for(device) == TcpConnect::Platform;
        let (lease, receiver) = if active {
            (None, None)
        } else {
            let (lease, receiver) = self.bind(tcp).await?;
            (Some(lease), Some(receiver))
        };
        let transport = match (tcp, active) {
            (_, true) => MediaTransport::TcpActive,
            (true, false) => MediaTransport::TcpPassive,
            (false, _) => MediaTransport::Udp,
        };
        // The offer's port when the platform connects is nominal (RFC 4145: 9, discard).
        let port = lease.as_ref().map_or(9, |l| l.port);
        let call = self
            .service
            .invite(device, channel, port, transport)
            .await?;
        let ended = CancellationToken::new();
        lock(&self.service.calls).insert(call.id(), ended.clone());
        let answer = call.answer.as_ref().ok();
        let ssrc = answer.and_then(|a| a.ssrc_value).or(call.offered_ssrc);
        // Media is taken from the device's host (its SIP source, or its answer's address) only.
        let mut from = vec![call.addr.ip()];
        from.extend(answer.map(|a| a.ip).filter(|ip| !ip.is_unspecified()));
        let receiver = match (receiver, answer) {
            (Some(r), _) => r,
            // The device's media address (its SIP host when the answer's is unspecified).
            (None, Some(a)) => Receiver::Connect(SocketAddr::new(
                Some(a.ip)
                    .filter(|ip| !ip.is_unspecified())
                    .unwrap_or(call.addr.ip()),
                a.port,
            )),
            (None, None) => {
                return Err((
                    OfflineReason::InviteFailed,
                    format!("channel {channel}: no usable SDP answer to connect to"),
                ));
            }
        };
        let _hangup = Hangup {
            service: Arc::clone(&self.service),
            call: Some(call),
            ended: ended.clone(),
        };
        tracing::info!(
            device,
            channel,
            port,
            transport = transport_label(transport),
            "GB/T 28181 video invited"
        );
        let _lease = lease;
        let mut rx = Receive {
            spec,
            observer,
            demux: PsOverRtp::new(ReorderConfig {
                ssrc,
                ..ReorderConfig::default()
            }),
            info: None,
            transport: if tcp { "tcp" } else { "udp" },
            params: ParamSets::default(),
            first_pts: None,
            last_pts: 0,
            lost: 0,
            had_media,
            units: 0,
            from,
            relocked: false,
            tool: format!("GB/T 28181 device {device}"),
        };
        rx.run(receiver, &ended, until).await
    }

    async fn bind(&self, tcp: bool) -> Result<(PortLease, Receiver), Failure> {
        let ip = self.service.config.listen.ip();
        let mut last = String::from("no port free");
        for _ in 0..BIND_ATTEMPTS {
            let Some(lease) = self.ports.take() else {
                break;
            };
            let at = SocketAddr::new(ip, lease.port);
            let bound = if tcp {
                tokio::net::TcpListener::bind(at).await.map(Receiver::Tcp)
            } else {
                tokio::net::UdpSocket::bind(at).await.map(Receiver::Udp)
            };
            match bound {
                Ok(r) => return Ok((lease, r)),
                Err(e) => last = format!("port {at}: {e}"),
            }
        }
        Err((
            OfflineReason::InviteFailed,
            format!(
                "gb28181.media_ports: no port to receive on ({} in use; {last})",
                self.ports.in_use()
            ),
        ))
    }
}

/// `udp`, `tcp` (the device connects) or `tcp_active` (the platform connects), for logs.
fn transport_label(t: MediaTransport) -> &'static str {
    match t {
        MediaTransport::Udp => "udp",
        MediaTransport::TcpPassive => "tcp",
        MediaTransport::TcpActive => "tcp_active",
    }
}

/// How a pull ended without failing.
enum End {
    /// The device hung up (BYE).
    Bye,
    /// A patrol's time was up.
    Patrolled,
}

/// A stable spread of channels over the patrol interval (FNV-1a of the camera id).
fn stagger(camera: &str) -> u64 {
    camera.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One stream being received.
struct Receive<'a> {
    spec: &'a SessionSpec,
    observer: &'a mut dyn SessionObserver,
    demux: PsOverRtp,
    info: Option<StreamInfo>,
    transport: &'static str,
    params: ParamSets,
    first_pts: Option<u64>,
    last_pts: i64,
    lost: u64,
    had_media: &'a mut bool,
    /// Access units delivered in this pull.
    units: u64,
    /// The hosts media is taken from.
    from: Vec<std::net::IpAddr>,
    /// The expected SSRC was given up for the one the device really sends.
    relocked: bool,
    tool: String,
}

impl Receive<'_> {
    async fn run(
        &mut self,
        receiver: Receiver,
        ended: &CancellationToken,
        until: Option<tokio::time::Instant>,
    ) -> Result<End, Failure> {
        // A patrol that saw nothing by its end has no media.
        let patrolled = |units: u64| {
            if units > 0 {
                Ok(End::Patrolled)
            } else {
                Err((
                    OfflineReason::NoMedia,
                    "the device accepted the patrol's INVITE but sent no video".to_owned(),
                ))
            }
        };
        let stall = self.spec.stall_after;
        let mut last = tokio::time::Instant::now();
        let silent = |had: bool| {
            if had {
                (
                    OfflineReason::Stalled,
                    format!("no video for {} s", stall.as_secs()),
                )
            } else {
                (
                    OfflineReason::NoMedia,
                    format!(
                        "the device accepted the INVITE but sent no video within {} s",
                        stall.as_secs()
                    ),
                )
            }
        };
        let mut input = match receiver {
            Receiver::Udp(socket) => Input::Udp(socket),
            Receiver::Connect(to) => tokio::select! {
                _ = ended.cancelled() => return Ok(End::Bye),
                _ = sleep_opt(until) => return patrolled(0),
                _ = tokio::time::sleep_until(last + stall) => return Err(silent(false)),
                r = tokio::net::TcpStream::connect(to) => match r {
                    Ok(stream) => Input::Tcp(stream),
                    Err(e) => return Err((
                        OfflineReason::NoMedia,
                        format!("the device accepted the INVITE but its media port {to} refuses the connection: {e}"),
                    )),
                }
            },
            Receiver::Tcp(listener) => loop {
                tokio::select! {
                    _ = ended.cancelled() => return Ok(End::Bye),
                    _ = sleep_opt(until) => return patrolled(0),
                    _ = tokio::time::sleep_until(last + stall) => return Err(silent(false)),
                    r = listener.accept() => match r {
                        // Only the device connects to its stream's port.
                        Ok((_, peer)) if !self.from.contains(&peer.ip()) => {
                            tracing::debug!(%peer, "GB/T 28181 media connection from another host refused");
                        }
                        Ok((stream, _)) => break Input::Tcp(stream),
                        Err(e) => return Err((OfflineReason::ProtocolError, format!("media port: {e}"))),
                    }
                }
            },
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            let flush_at = self
                .demux
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = ended.cancelled() => return Ok(End::Bye),
                _ = sleep_opt(until) => return patrolled(self.units),
                _ = tokio::time::sleep_until(last + stall) => return Err(silent(*self.had_media)),
                _ = sleep_opt(flush_at) => {
                    let units = self.demux.flush(Instant::now());
                    self.deliver(units);
                }
                r = input.read(&mut buf, &self.from) => match r {
                    // Another host's datagram: not this stream's, nor does it keep it alive.
                    Ok(Read::Foreign) => {}
                    Ok(Read::Closed) => {
                        let units = self.demux.finish();
                        self.deliver(units);
                        return Err((OfflineReason::Eos, "the device closed the media connection".into()));
                    }
                    Ok(Read::Data(n)) => {
                        let before = self.demux.stats().packets;
                        let units = match input {
                            Input::Udp(_) => self.demux.push_udp(&buf[..n], Instant::now()),
                            Input::Tcp(_) => self.demux.push_tcp(&buf[..n], Instant::now()),
                        };
                        self.deliver(units);
                        if self.accepted(before) {
                            last = tokio::time::Instant::now();
                        }
                    }
                    Err(e) => {
                        let reason = match input {
                            Input::Udp(_) => OfflineReason::ProtocolError,
                            Input::Tcp(_) => OfflineReason::Eos,
                        };
                        return Err((reason, format!("media {}: {e}", input.name())));
                    }
                }
            }
        }
    }

    /// Whether packets went to the demuxer since it had `before`; a device that sends another SSRC
    /// than it answered (and nothing else) is followed after a run of its packets, once.
    fn accepted(&mut self, before: u64) -> bool {
        let stats = self.demux.stats();
        if stats.packets > before {
            return true;
        }
        if !self.relocked && stats.packets == 0 && stats.wrong_ssrc >= RELOCK_AFTER {
            self.relocked = true;
            tracing::warn!(
                camera_id = %self.spec.camera,
                wrong = stats.wrong_ssrc,
                "GB/T 28181 device sends another SSRC than it answered; following the one it sends"
            );
            self.demux = PsOverRtp::new(ReorderConfig::default());
        }
        false
    }

    fn deliver(&mut self, units: Vec<PsUnit>) {
        for unit in units {
            let lost = self.demux.stats().lost;
            let loss = u16::try_from(lost.saturating_sub(self.lost)).unwrap_or(u16::MAX);
            self.lost = lost;
            if self.info.is_none() {
                let info = StreamInfo {
                    codec: match unit.codec {
                        ps::VideoCodec::H264 | ps::VideoCodec::Unknown => VideoCodec::H264,
                        ps::VideoCodec::H265 => VideoCodec::H265,
                    },
                    width: 0,
                    height: 0,
                    transport: self.transport,
                    tool: Some(self.tool.clone()),
                };
                self.observer.playing(&info);
                self.info = Some(info);
            }
            // PTS: 90 kHz since the first unit (33 bits, wrapping); a unit without one follows the
            // last.
            let pts = match (unit.pts_90k, self.first_pts) {
                (Some(p), Some(first)) => (p.wrapping_sub(first) & ((1 << 33) - 1)) as i64,
                (Some(p), None) => {
                    self.first_pts = Some(p);
                    0
                }
                (None, _) => self.last_pts,
            };
            self.last_pts = pts;
            let keyframe = unit.keyframe;
            let data = self.params.complete(&unit);
            // The picture size, from the SPS (PS has no SDP to say it): H.264 only.
            if keyframe && let (Some(info), Some((w, h))) = (self.info.as_mut(), self.params.size) {
                (info.width, info.height) = (w, h);
            }
            *self.had_media = true;
            self.units += 1;
            let au = AccessUnit {
                data,
                keyframe,
                pts_90k: pts,
                arrival: SystemTime::now(),
                loss,
            };
            if let Some(info) = &self.info {
                self.observer.access_unit(au, info);
            }
        }
    }
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The last parameter sets seen, put in front of a keyframe that comes without them (the decode
/// stage expects them before every keyframe, as RTSP ingest gives them).
#[derive(Default)]
struct ParamSets {
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The picture size the last H.264 SPS gives (read when an SPS changes).
    size: Option<(u32, u32)>,
}

/// The picture size an H.264 SPS (NAL header included) gives.
fn h264_size(sps: &[u8]) -> Option<(u32, u32)> {
    use h264_reader::nal::sps::SeqParameterSet;
    if sps.first().map(|b| b & 0x1f) != Some(7) {
        return None;
    }
    let rbsp = h264_reader::rbsp::decode_nal(sps).ok()?;
    SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(&rbsp[..]))
        .ok()?
        .pixel_dimensions()
        .ok()
}

impl ParamSets {
    fn complete(&mut self, unit: &PsUnit) -> Bytes {
        let h265 = unit.codec == ps::VideoCodec::H265;
        // Only units that carry parameter sets are scanned (one per GOP, not every frame).
        let carried = unit.has_vps || unit.has_sps || unit.has_pps;
        for nal in nal_units(&unit.data).filter(|_| carried) {
            let Some(&b0) = nal.first() else { continue };
            let kind = if h265 { (b0 >> 1) & 0x3f } else { b0 & 0x1f };
            let slot = match (h265, kind) {
                (true, 32) => &mut self.vps,
                (true, 33) | (false, 7) => &mut self.sps,
                (true, 34) | (false, 8) => &mut self.pps,
                _ => continue,
            };
            if slot.as_deref() != Some(nal) {
                *slot = Some(Bytes::copy_from_slice(nal));
                if !h265 && kind == 7 {
                    self.size = h264_size(nal);
                }
            }
        }
        let missing = unit.keyframe && ((h265 && !unit.has_vps) || !unit.has_sps || !unit.has_pps);
        if !missing {
            return unit.data.clone();
        }
        let mut out = BytesMut::with_capacity(unit.data.len() + 128);
        for (have, set) in [
            (unit.has_vps || !h265, &self.vps),
            (unit.has_sps, &self.sps),
            (unit.has_pps, &self.pps),
        ] {
            if let (false, Some(nal)) = (have, set) {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
        }
        out.extend_from_slice(&unit.data);
        out.freeze()
    }
}

/// The NAL units of an Annex-B buffer, without their start codes.
fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            let mut e = s - 3;
            while e > 0 && data[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter_map(move |(s, e)| data.get(s..e.max(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_go_round_and_come_back() {
        let pool = PortPool::new(40000..=40002);
        let a = pool.take().map(|l| l.port);
        let b = pool.take();
        let c = pool.take();
        assert_eq!(a, Some(40000), "the first, then freed");
        assert_eq!(b.as_ref().map(|l| l.port), Some(40001));
        assert_eq!(c.as_ref().map(|l| l.port), Some(40002));
        // 40000 was freed: it comes back after the others, not before.
        let d = pool.take();
        assert_eq!(d.as_ref().map(|l| l.port), Some(40000));
        assert!(pool.take().is_none(), "all three in use");
        assert_eq!(pool.in_use(), 3);
        drop(b);
        assert_eq!(pool.take().map(|l| l.port), Some(40001));
    }

    /// Datagrams from a host that is not the device's are not the stream's.
    #[tokio::test]
    async fn media_from_another_host_is_not_taken() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = socket.local_addr().unwrap();
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut input = Input::Udp(socket);
        let mut buf = [0u8; 64];
        sender.send_to(b"rtp", to).await.unwrap();
        let other: [std::net::IpAddr; 1] = ["10.0.0.1".parse().unwrap()];
        assert!(matches!(
            input.read(&mut buf, &other).await,
            Ok(Read::Foreign)
        ));
        sender.send_to(b"rtp", to).await.unwrap();
        let device: [std::net::IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
        assert!(matches!(
            input.read(&mut buf, &device).await,
            Ok(Read::Data(3))
        ));
    }

    #[test]
    fn targets_are_device_and_channel() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            target(&url("gb28181://34020000001320000001/34020000001310000001")),
            Some(("34020000001320000001".into(), "34020000001310000001".into()))
        );
        assert_eq!(target(&url("gb28181://34020000001320000001/")), None);
        assert_eq!(target(&url("gb28181://34020000001320000001/a/b")), None);
    }

    #[test]
    fn a_keyframe_without_parameter_sets_gets_the_last_ones() {
        let sps = [0u8, 0, 0, 1, 0x67, 1, 2, 3];
        let pps = [0u8, 0, 0, 1, 0x68, 4];
        let idr = [0u8, 0, 0, 1, 0x65, 9, 9, 0, 0, 1, 0x65, 8];
        let unit = |data: Vec<u8>, k, s, p| PsUnit {
            codec: ps::VideoCodec::H264,
            pts_90k: None,
            data: Bytes::from(data),
            keyframe: k,
            has_vps: false,
            has_sps: s,
            has_pps: p,
        };
        let mut ps = ParamSets::default();
        let first = [&sps[..], &pps[..], &idr[..]].concat();
        assert_eq!(
            &ps.complete(&unit(first.clone(), true, true, true))[..],
            &first[..]
        );
        let got = ps.complete(&unit(idr.to_vec(), true, false, false));
        assert_eq!(&got[..], &first[..], "SPS and PPS put back in front");
        let p = [0u8, 0, 1, 0x41, 7];
        assert_eq!(
            &ps.complete(&unit(p.to_vec(), false, false, false))[..],
            &p[..]
        );
    }
}
