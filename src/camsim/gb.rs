//! Simulated GB/T 28181 devices (`camsim --gb28181 N`): each registers to a platform with digest
//! authentication over UDP or TCP from a socket of its own, keeps alive, and answers DeviceInfo and
//! catalog queries (a catalog of `channels` cameras, `page_size` per page, names in Chinese, sent in
//! GB18030 as real devices do). When given a prepared clip, a device answers INVITEs for its
//! channels and sends the clip as PS over RTP (UDP, or TCP connecting to the platform) until BYE
//! ([`super::gb_media`]). Faults: `down` (no keepalives, no answers), `stall` (signalling goes on,
//! video stops), a wrong password; alarms on request. A device whose id is of type 200 is a lower
//! platform: its catalog is a tree of groups, an NVR and the channels (see [`catalog_of`]), and it
//! answers INVITEs for every channel in it.
//!
//! The SIP stack is the same `rsipstack` the platform uses, so a device here runs real client
//! transactions: retransmitted over UDP until answered, challenged and answered once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::{Header, Method, StatusCode, Transport as SipTransport};
use rsipstack::transaction::Transaction;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::make_tag;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio_util::sync::CancellationToken;

use super::gb_media::{self, Destination, MediaStats};
use super::media::Media;
use crate::gb28181::manscdp::{self, Body, CatalogItem, DeviceInfo};
use crate::gb28181::sdp::{self, MediaTransport};

/// SIP transport of a simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GbTransport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// One simulated device (its password is not shown by `Debug`).
#[derive(Clone)]
pub struct GbDeviceOptions {
    /// The platform's SIP port.
    pub platform: SocketAddr,
    /// The platform's 20-digit id.
    pub platform_id: String,
    /// The device's 20-digit id.
    pub id: String,
    /// Registration password.
    pub password: String,
    /// SIP transport.
    pub transport: GbTransport,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Registration length asked for.
    pub expires: u32,
    /// Cameras in its catalog.
    pub channels: usize,
    /// Catalog entries per MESSAGE.
    pub page_size: usize,
    /// The clip sent when a channel is invited (`None`: INVITEs are refused with 488).
    pub media: Option<Arc<Media>>,
}

impl std::fmt::Debug for GbDeviceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbDeviceOptions")
            .field("platform", &self.platform)
            .field("id", &self.id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What a device did, for tests and the bench.
#[derive(Debug, Default)]
pub struct GbDeviceStats {
    /// 401 challenges received.
    pub challenged: AtomicU64,
    /// Registrations that got 200.
    pub registered: AtomicU64,
    /// Final status of the last REGISTER (0 before any).
    pub last_status: AtomicU64,
    /// Keepalives answered 200.
    pub keepalives_ok: AtomicU64,
    /// Keepalives refused or unanswered.
    pub keepalives_failed: AtomicU64,
    /// Catalog queries answered.
    pub catalog_queries: AtomicU64,
    /// DeviceInfo queries answered.
    pub info_queries: AtomicU64,
    /// INVITEs received.
    pub invites: AtomicU64,
    /// Alarms sent and answered 200.
    pub alarms_sent: AtomicU64,
    /// Catalog subscriptions (SUBSCRIBE) answered.
    pub subscriptions: AtomicU64,
    /// Catalog notifications (NOTIFY) sent and answered 200.
    pub notifies: AtomicU64,
    /// The platform's `Response/Alarm` answers received.
    pub alarms_acknowledged: AtomicU64,
    /// Video sent.
    pub media: Arc<MediaStats>,
}

/// A running simulated device.
pub struct GbDevice {
    /// Its options.
    pub options: GbDeviceOptions,
    /// Counters.
    pub stats: Arc<GbDeviceStats>,
    down: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    calls: Calls,
    reports: Reports,
    subscribed: Arc<AtomicBool>,
    /// Whether channel changes are notified to a subscribed platform (some devices take the
    /// subscription and never notify).
    notify: AtomicBool,
    endpoint: EndpointInnerRef,
    cancel: CancellationToken,
    runtime: tokio::runtime::Handle,
}

/// Video calls up, by Call-ID.
type Calls = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// What a device's catalog says of one of its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelReport {
    /// Listed, `Status` ON (the default).
    On,
    /// Listed, `Status` OFF; INVITEs for it are refused (404).
    Off,
    /// Not listed at all (removed at a lower platform); INVITEs refused.
    Gone,
}

/// Channels reported other than [`ChannelReport::On`], by id.
type Reports = Arc<Mutex<HashMap<String, ChannelReport>>>;

/// The catalog a device with `channels` cameras reports (ids `<device prefix>131<n>`). A lower
/// platform (an id of type 200) reports a tree around them, as platforms do: a business group
/// (215) `雪亮工程`, in it the organisation (216) `城关镇` with two organisations `东街社区` and
/// `西关村`; an NVR (118) in `西关村`; the even channels in `东街社区`, the odd ones on the NVR.
pub fn catalog_of(id: &str, channels: usize) -> Vec<CatalogItem> {
    let mut items = cameras_of(id, channels);
    if manscdp::type_code(id) != Some(200) {
        return items;
    }
    let prefix = id.get(..10).unwrap_or("3402000000");
    let serial = id.get(13..).unwrap_or("0000000");
    let code = |kind: u16, n: u64| {
        format!(
            "{prefix}{kind}{:07}",
            (serial.parse::<u64>().unwrap_or(0) * 10 + n) % 10_000_000
        )
    };
    let business = code(215, 1);
    let (township, east, west) = (code(216, 1), code(216, 2), code(216, 3));
    let nvr = code(118, 1);
    let node = |id: &str, name: &str, parent: &str| CatalogItem {
        id: id.to_owned(),
        name: name.to_owned(),
        parent_id: Some(parent.to_owned()),
        business_group: Some(business.clone()),
        ..CatalogItem::default()
    };
    for (n, camera) in items.iter_mut().enumerate() {
        camera.parent_id = Some(if n % 2 == 0 {
            east.clone()
        } else {
            nvr.clone()
        });
        camera.business_group = Some(business.clone());
    }
    let mut tree = vec![
        CatalogItem {
            business_group: None,
            ..node(&business, "雪亮工程", id)
        },
        node(&township, "城关镇", &business),
        node(&east, "东街社区", &township),
        node(&west, "西关村", &township),
        CatalogItem {
            manufacturer: Some("camsim".into()),
            model: Some("NVR-SIM".into()),
            online: Some(true),
            ..node(&nvr, "西关村 NVR", &west)
        },
    ];
    tree.append(&mut items);
    tree
}

/// The cameras (channels) in the catalog of device `id`.
pub fn cameras_of(id: &str, channels: usize) -> Vec<CatalogItem> {
    let prefix = id.get(..10).unwrap_or("3402000000");
    let serial = id.get(13..).unwrap_or("0000000");
    (0..channels)
        .map(|n| CatalogItem {
            id: format!(
                "{prefix}131{:07}",
                (serial.parse::<u64>().unwrap_or(0) * 100 + n as u64 + 1) % 10_000_000
            ),
            name: format!(
                "模拟摄像机 {} 通道{}",
                &id[id.len().saturating_sub(4)..],
                n + 1
            ),
            manufacturer: Some("camsim".into()),
            model: Some("GB-SIM".into()),
            civil_code: Some(prefix[..6].to_owned()),
            parent_id: Some(id.to_owned()),
            business_group: None,
            event: None,
            online: Some(true),
            longitude: Some(98.9 + n as f64 * 0.001),
            latitude: Some(39.98),
        })
        .collect()
}

impl GbDevice {
    /// Starts the device: opens its socket, registers, then keeps alive every interval until
    /// cancelled. Returns once the first REGISTER has its final answer (200, 403 …).
    pub async fn start(
        options: GbDeviceOptions,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let transport = TransportLayer::new(cancel.child_token());
        let bind: SocketAddr = match options.platform {
            SocketAddr::V4(_) => "127.0.0.1:0".parse()?,
            SocketAddr::V6(_) => "[::1]:0".parse()?,
        };
        let udp = UdpConnection::create_connection(bind, None, Some(cancel.child_token())).await?;
        transport.add_transport(udp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent("camsim-gb28181")
            .with_transport_layer(transport)
            .with_cancel_token(cancel.child_token())
            .build();
        let inner = endpoint.inner.clone();
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::spawn(async move { endpoint.serve().await });
        let device = Self {
            options,
            stats: Arc::new(GbDeviceStats::default()),
            down: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(AtomicBool::new(false)),
            calls: Arc::default(),
            reports: Arc::default(),
            subscribed: Arc::default(),
            notify: AtomicBool::new(true),
            endpoint: inner,
            cancel: cancel.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        // Queries from the platform.
        let responder = device.responder();
        tokio::spawn(async move {
            loop {
                let tx = tokio::select! {
                    _ = responder.cancel.cancelled() => break,
                    tx = incoming.recv() => match tx { Some(tx) => tx, None => break },
                };
                let r = responder.clone();
                tokio::spawn(async move { r.answer(tx).await });
            }
        });
        // No answer at all (the platform not up yet) is not the end: the keeper tries again.
        if let Err(e) = device.register(device.options.expires).await {
            tracing::warn!(device = %device.options.id, error = %e, "camsim GB device: REGISTER not answered; trying again every keepalive interval");
        }
        let keeper = device.responder();
        tokio::spawn(async move { keeper.keep_alive().await });
        Ok(device)
    }

    fn responder(&self) -> Responder {
        Responder {
            options: self.options.clone(),
            stats: Arc::clone(&self.stats),
            down: Arc::clone(&self.down),
            stalled: Arc::clone(&self.stalled),
            calls: Arc::clone(&self.calls),
            reports: Arc::clone(&self.reports),
            subscribed: Arc::clone(&self.subscribed),
            endpoint: self.endpoint.clone(),
            cancel: self.cancel.clone(),
        }
    }

    /// What the device's catalog answers say of `channel` from now on; a platform that
    /// subscribed to the catalog is told at once (`Notify/Catalog` with `ON`, `OFF` or `DEL`).
    pub fn set_channel(&self, channel: &str, report: ChannelReport) {
        let before = {
            let mut reports = crate::sync::lock(&self.reports);
            if report == ChannelReport::On {
                reports.remove(channel)
            } else {
                reports.insert(channel.to_owned(), report)
            }
        };
        if !self.subscribed.load(Ordering::Relaxed) || !self.notify.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut item) = cameras_of(&self.options.id, self.options.channels)
            .into_iter()
            .find(|c| c.id == channel)
        else {
            return;
        };
        item.event = Some(
            match (report, before) {
                (ChannelReport::On, Some(ChannelReport::Gone)) => "ADD",
                (ChannelReport::On, _) => "ON",
                (ChannelReport::Off, _) => "OFF",
                (ChannelReport::Gone, _) => "DEL",
            }
            .to_owned(),
        );
        let responder = self.responder();
        self.runtime.spawn(async move {
            let sn = rand::random::<u16>().into();
            let body = manscdp::catalog_notify(sn, &responder.options.id, &[item]);
            if responder.send(Method::Notify, body).await.is_ok() {
                responder.stats.notifies.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Whether channel changes are notified to a platform that subscribed (`false`: the device
    /// takes the subscription and never notifies, as some do; the platform's catalog re-reads
    /// find the changes).
    pub fn set_notify(&self, notify: bool) {
        self.notify.store(notify, Ordering::Relaxed);
    }

    /// `stall`: the device keeps its signalling but its video stops (streams stay up, empty).
    pub fn set_stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Sends an alarm (`Notify/Alarm`) as the device; `alarm.sn` is replaced by the device's own.
    pub async fn send_alarm(&self, mut alarm: manscdp::Alarm) -> anyhow::Result<()> {
        alarm.sn = rand::random::<u16>().into();
        self.responder()
            .message(manscdp::alarm_notify(&alarm))
            .await?;
        self.stats.alarms_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Video streams being sent now.
    pub fn streams(&self) -> usize {
        crate::sync::lock(&self.calls).len()
    }

    /// Sends a REGISTER asking for `expires` seconds (0 unregisters); returns the final status.
    pub async fn register(&self, expires: u32) -> anyhow::Result<u16> {
        self.responder().register(expires).await
    }

    /// `down`: the device stops keeping alive, answering and sending video (power cut, network
    /// gone).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        // No video either.
        self.stalled.store(down, Ordering::Relaxed);
    }
}

fn platform_uri(o: &GbDeviceOptions) -> String {
    match o.transport {
        GbTransport::Udp => format!("sip:{}@{}", o.platform_id, o.platform),
        GbTransport::Tcp => format!("sip:{}@{};transport=tcp", o.platform_id, o.platform),
    }
}

#[derive(Clone)]
struct Responder {
    options: GbDeviceOptions,
    stats: Arc<GbDeviceStats>,
    down: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    calls: Calls,
    reports: Reports,
    subscribed: Arc<AtomicBool>,
    endpoint: EndpointInnerRef,
    cancel: CancellationToken,
}

impl Responder {
    /// The platform's SIP address over the device's transport.
    fn platform_target(&self) -> SipAddr {
        SipAddr {
            r#type: Some(match self.options.transport {
                GbTransport::Udp => SipTransport::Udp,
                GbTransport::Tcp => SipTransport::Tcp,
            }),
            addr: self.options.platform.into(),
        }
    }

    async fn register(&self, expires: u32) -> anyhow::Result<u16> {
        let o = &self.options;
        let credential = Credential {
            username: o.id.clone(),
            password: o.password.clone(),
            realm: None,
            auth_username: None,
        };
        let mut registration = Registration::new(self.endpoint.clone(), Some(credential));
        let server: rsipstack::sip::Uri = platform_uri(o).as_str().try_into()?;
        let response = registration
            .register(server, Some(expires))
            .await
            .map_err(|e| anyhow::anyhow!("device {}: REGISTER: {e}", o.id))?;
        let status = u16::from(response.status_code.clone());
        // rsipstack answers a 401 itself; a challenge happened when the final request had
        // credentials, i.e. its CSeq moved past the first.
        if registration.last_seq > 1 {
            self.stats.challenged.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .last_status
            .store(u64::from(status), Ordering::Relaxed);
        if status == 200 {
            self.stats.registered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(status)
    }

    /// Keeps alive every interval; registers again before the registration runs out, and at once
    /// when the platform refuses a keepalive (it restarted, or forgot the device), as devices do.
    async fn keep_alive(self) {
        let mut sn = 1u32;
        let mut every = tokio::time::interval(self.options.keepalive);
        every.tick().await;
        let refresh = Duration::from_secs(u64::from(self.options.expires) * 4 / 5);
        let mut registered = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            if self.down.load(Ordering::Relaxed) {
                continue;
            }
            let status = self.stats.last_status.load(Ordering::Relaxed);
            // Not registered (no answer, 503 …) or due for a refresh: register. A device refused
            // for its password (403) stops trying, as devices back off.
            let due = status != 200 || registered.elapsed() >= refresh;
            if due && status != 403 {
                if matches!(self.register(self.options.expires).await, Ok(200)) {
                    registered = tokio::time::Instant::now();
                } else {
                    continue;
                }
            }
            if self.stats.last_status.load(Ordering::Relaxed) != 200 {
                continue;
            }
            sn += 1;
            let body = manscdp::keepalive(sn, &self.options.id);
            match self.message(body).await {
                Ok(()) => {
                    self.stats.keepalives_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.keepalives_failed.fetch_add(1, Ordering::Relaxed);
                    if e.to_string().contains("403")
                        && matches!(self.register(self.options.expires).await, Ok(200))
                    {
                        registered = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    /// Sends a MESSAGE with `body` to the platform and waits for its final answer.
    async fn message(&self, body: Vec<u8>) -> anyhow::Result<()> {
        self.send(Method::Message, body).await
    }

    /// Sends `method` (MESSAGE, or NOTIFY for a catalog change) with `body` to the platform and
    /// waits for its final answer.
    async fn send(&self, method: Method, body: Vec<u8>) -> anyhow::Result<()> {
        let o = &self.options;
        let target = self.platform_target();
        let (connection, _) = self
            .endpoint
            .transport_layer
            .lookup(&target, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let via = self
            .endpoint
            .get_via(Some(connection.get_addr().clone()), None)?;
        let domain = &o.platform_id[..10];
        let uri = |user: &str, host: &str| -> anyhow::Result<rsipstack::sip::Uri> {
            Ok(format!("sip:{user}@{host}").as_str().try_into()?)
        };
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: uri(&o.id, domain)?,
            params: vec![],
        }
        .with_tag(make_tag());
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: uri(&o.platform_id, domain)?,
            params: vec![],
        };
        let mut req = self.endpoint.make_request(
            method,
            uri(&o.platform_id, &o.platform.to_string())?,
            via,
            from,
            to,
            1,
            None,
        );
        req.headers
            .push(Header::ContentType("Application/MANSCDP+xml".into()));
        if method == Method::Notify {
            req.headers
                .push(Header::Other("Event".into(), "Catalog".into()));
            req.headers
                .push(Header::Other("Subscription-State".into(), "active".into()));
        }
        req.body = body;
        let key = TransactionKey::from_request(&req, TransactionRole::Client)?;
        let mut tx = Transaction::new_client(key, req, self.endpoint.clone(), Some(connection));
        tx.destination = Some(target);
        tx.send().await?;
        while let Some(msg) = tx.receive().await {
            if let rsipstack::sip::SipMessage::Response(resp) = msg {
                let code = u16::from(resp.status_code.clone());
                if code >= 200 {
                    anyhow::ensure!(code < 300, "answered {code}");
                    return Ok(());
                }
            }
        }
        anyhow::bail!("no answer")
    }

    async fn answer(self, mut tx: Transaction) {
        if self.down.load(Ordering::Relaxed) {
            return;
        }
        match tx.original.method {
            Method::Message => {}
            Method::Invite => return self.on_invite(tx).await,
            // A catalog subscription: taken (changes are sent as they happen).
            Method::Subscribe => {
                let catalog = matches!(
                    manscdp::parse(tx.original.body()),
                    Ok(Body::Query { ref cmd, .. }) if cmd.eq_ignore_ascii_case("catalog")
                );
                if !catalog {
                    let _ = tx.reply(StatusCode::BadEvent).await;
                    return;
                }
                self.subscribed.store(true, Ordering::Relaxed);
                self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                let _ = tx
                    .reply_with(StatusCode::OK, vec![Header::Expires("3600".into())], None)
                    .await;
                return;
            }
            Method::Bye => {
                let call = call_id(&tx.original);
                let token = crate::sync::lock(&self.calls).remove(&call);
                match token {
                    Some(t) => {
                        t.cancel();
                        self.stats.media.byes.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.reply(StatusCode::OK).await;
                    }
                    None => {
                        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                    }
                }
                return;
            }
            Method::Ack => return,
            _ => {
                let _ = tx.reply(StatusCode::MethodNotAllowed).await;
                return;
            }
        }
        let (cmd, sn) = match manscdp::parse(tx.original.body()) {
            Ok(Body::Query { cmd, sn, .. }) => (cmd, sn),
            Ok(Body::Other { root, cmd, .. })
                if root.eq_ignore_ascii_case("Response") && cmd.eq_ignore_ascii_case("Alarm") =>
            {
                self.stats
                    .alarms_acknowledged
                    .fetch_add(1, Ordering::Relaxed);
                let _ = tx.reply(StatusCode::OK).await;
                return;
            }
            _ => {
                let _ = tx.reply(StatusCode::BadRequest).await;
                return;
            }
        };
        let _ = tx.reply(StatusCode::OK).await;
        let o = &self.options;
        match cmd.to_ascii_lowercase().as_str() {
            "catalog" => {
                self.stats.catalog_queries.fetch_add(1, Ordering::Relaxed);
                let items: Vec<CatalogItem> = {
                    let reports = crate::sync::lock(&self.reports);
                    catalog_of(&o.id, o.channels)
                        .into_iter()
                        .filter_map(|mut i| match reports.get(&i.id) {
                            Some(ChannelReport::Gone) => None,
                            Some(ChannelReport::Off) => {
                                i.online = Some(false);
                                Some(i)
                            }
                            _ => Some(i),
                        })
                        .collect()
                };
                let pages: Vec<&[CatalogItem]> = if items.is_empty() {
                    vec![&[]]
                } else {
                    items.chunks(o.page_size.max(1)).collect()
                };
                for page in pages {
                    let body = manscdp::catalog_response(sn, &o.id, items.len(), page);
                    if self.message(body).await.is_err() {
                        break;
                    }
                }
            }
            "deviceinfo" => {
                self.stats.info_queries.fetch_add(1, Ordering::Relaxed);
                let info = DeviceInfo {
                    device_id: o.id.clone(),
                    name: Some(format!(
                        "模拟设备 {}",
                        &o.id[o.id.len().saturating_sub(4)..]
                    )),
                    manufacturer: Some("camsim".into()),
                    model: Some("GB-SIM".into()),
                    firmware: Some(env!("CARGO_PKG_VERSION").into()),
                    channels: Some(o.channels as u32),
                };
                let _ = self.message(manscdp::device_info_response(sn, &info)).await;
            }
            _ => {}
        }
    }
}

fn call_id(req: &rsipstack::sip::Request) -> String {
    use rsipstack::sip::prelude::HeadersExt;
    req.call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default()
}

impl Responder {
    /// Answers an INVITE for one of the device's channels: 200 with an SDP answer, then the clip
    /// as PS over RTP until the platform's BYE.
    async fn on_invite(self, mut tx: Transaction) {
        use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
        self.stats.invites.fetch_add(1, Ordering::Relaxed);
        let o = &self.options;
        let body = String::from_utf8_lossy(tx.original.body()).into_owned();
        let offer = match sdp::parse_offer(&body) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::warn!(device = %o.id, error = %e, "camsim GB device: INVITE SDP refused");
                let _ = tx.reply(StatusCode::BadRequest).await;
                return;
            }
        };
        let ours = cameras_of(&o.id, o.channels)
            .iter()
            .any(|c| c.id == offer.channel)
            && !crate::sync::lock(&self.reports).contains_key(&offer.channel);
        if !ours {
            let _ = tx.reply(StatusCode::NotFound).await;
            return;
        }
        let Some(media) = o.media.clone() else {
            let _ = tx.reply(StatusCode::NotAcceptableHere).await;
            return;
        };
        let to = SocketAddr::new(offer.ip, offer.port);
        let (destination, socket, port) = match offer.transport {
            MediaTransport::Udp => {
                let bind: SocketAddr = if to.is_ipv4() {
                    "127.0.0.1:0"
                } else {
                    "[::1]:0"
                }
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
                let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
                    let _ = tx.reply(StatusCode::ServerInternalError).await;
                    return;
                };
                let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                (Destination::Udp(to), Some(socket), port)
            }
            MediaTransport::TcpPassive => (Destination::Tcp(to), None, 9),
            // The platform connects: the device listens on a port of its own.
            MediaTransport::TcpActive => {
                let bind = SocketAddr::new(
                    if to.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    },
                    0,
                );
                let Ok(listener) = tokio::net::TcpListener::bind(bind).await else {
                    let _ = tx.reply(StatusCode::ServerInternalError).await;
                    return;
                };
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                (Destination::Accept(listener), None, port)
            }
        };
        let ssrc_text = offer.ssrc.clone();
        let ssrc: u32 = ssrc_text.parse().unwrap_or(1);
        let (proto, setup) = match offer.transport {
            MediaTransport::Udp => ("RTP/AVP", ""),
            MediaTransport::TcpActive => ("TCP/RTP/AVP", "a=setup:passive\r\na=connection:new\r\n"),
            MediaTransport::TcpPassive => ("TCP/RTP/AVP", "a=setup:active\r\na=connection:new\r\n"),
        };
        let answer = format!(
            "v=0\r\no={ch} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video {port} {proto} 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\n{setup}\
             y={ssrc_text}\r\nf=v/2/5/25/1/2048a///\r\n",
            ch = offer.channel
        );
        // The answer's Contact is where the platform's ACK and BYE go: this device's SIP socket.
        let target = self.platform_target();
        let transport = target.r#type.unwrap_or(SipTransport::Udp);
        let here = match self.endpoint.transport_layer.lookup(&target, None).await {
            Ok((c, _)) => c.get_addr().addr.to_string(),
            Err(_) => {
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return;
            }
        };
        let mut resp =
            self.endpoint
                .make_response(&tx.original, StatusCode::OK, Some(answer.into_bytes()));
        if let Ok(to) = tx.original.to_header().and_then(|h| h.typed()) {
            let to = to.with_tag(make_tag());
            resp.headers.retain(|h| !matches!(h, Header::To(_)));
            resp.headers.push(Header::To(to.into()));
        }
        let suffix = if transport == SipTransport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        resp.headers.push(Header::Contact(
            format!("<sip:{}@{here}{suffix}>", offer.channel).into(),
        ));
        resp.headers
            .push(Header::ContentType("APPLICATION/SDP".into()));
        let stop = self.cancel.child_token();
        let call = call_id(&tx.original);
        crate::sync::lock(&self.calls).insert(call.clone(), stop.clone());
        if let Err(e) = tx.respond(resp).await {
            tracing::warn!(device = %o.id, error = %e, "camsim GB device: 200 to INVITE not sent");
            crate::sync::lock(&self.calls).remove(&call);
            return;
        }
        let stats = Arc::clone(&self.stats.media);
        stats.streams.fetch_add(1, Ordering::Relaxed);
        stats.active.fetch_add(1, Ordering::Relaxed);
        let (stalled, calls, device) = (
            Arc::clone(&self.stalled),
            Arc::clone(&self.calls),
            o.id.clone(),
        );
        tokio::spawn(async move {
            let sent = gb_media::send(
                media,
                socket,
                destination,
                ssrc,
                stalled,
                Arc::clone(&stats),
                stop,
            )
            .await;
            if let Err(e) = sent {
                tracing::warn!(device, error = %e, "camsim GB device: video stream ended");
            }
            crate::sync::lock(&calls).remove(&call);
            stats.active.fetch_sub(1, Ordering::Relaxed);
        });
        // The server transaction absorbs the ACK (and retransmits the 200 until it comes).
        while tx.receive().await.is_some() {}
    }
}

/// `camsim --gb28181 N`: N devices with consecutive ids after `first_id`, started a few at a time;
/// runs until cancelled.
pub async fn run_devices(
    template: GbDeviceOptions,
    count: usize,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<GbDevice>> {
    let base: u128 = template.id.parse()?;
    let mut devices = Vec::with_capacity(count);
    for n in 0..count {
        let options = GbDeviceOptions {
            id: format!("{:020}", base + n as u128),
            ..template.clone()
        };
        let device = match GbDevice::start(options, cancel.clone()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "camsim GB device not started");
                continue;
            }
        };
        let status = device.stats.last_status.load(Ordering::Relaxed);
        if status != 200 {
            tracing::warn!(device = %device.options.id, status, "camsim GB device not registered");
        }
        devices.push(device);
    }
    tracing::info!(count, "camsim GB/T 28181 devices registered");
    Ok(devices)
}
