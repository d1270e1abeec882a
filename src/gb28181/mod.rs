//! The GB/T 28181 stage (issue 16): qianliyan as the upper platform (上级平台) that cameras, NVRs and
//! lower platforms register to over SIP.
//!
//! Signalling: registration with digest authentication, keepalives, the device registry with its
//! `unregistered` / `keepalive_timeout` states, and DeviceInfo and catalog queries (multi-page
//! catalogs assembled by `SumNum`); catalog channels become cameras in app.rs. Video: INVITE, PS
//! over RTP (UDP, TCP passive or active) into the same decode path as RTSP ([`media`]). Alarms become alerts
//! or device health ([`alarm`]). A lower platform (type 200) registers like a device; its catalog's
//! groups give its channels their areas, and its channels are invited through it.
//!
//! - [`config`]: the `[gb28181]` section.
//! - [`manscdp`]: the XML bodies (UTF-8 or GB18030).
//! - [`groups`]: a lower platform's groups (215/216) as the areas of its channels.
//! - [`registry`]: device state, pure and clock-driven.
//! - [`media`]: INVITE/BYE and the receiving of a channel's video.
//! - [`sdp`], [`rtp`], [`ps`]: the offer/answer, RTP (reordering, TCP framing) and MPEG-PS.
//! - `service`: the SIP endpoint (rsipstack: transactions, retransmissions, UDP and TCP).
//!
//! The SIP stack is the `rsipstack` crate: it runs RFC 3261 transactions (100 Trying, request and
//! response retransmission, ACK absorption, timers) over UDP and TCP and verifies digests; what is
//! written here is only the GB/T 28181 meaning of each message.

pub mod alarm;
pub mod config;
pub mod groups;
pub mod manscdp;
pub mod media;
pub mod ps;
pub mod registry;
pub mod rtp;
pub mod sdp;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rsipstack::EndpointBuilder;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{TcpListenerConnection, TransportLayer};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use config::{GbConfig, RawGbConfig, VideoPolicy};
pub use registry::{Change, DeviceState, Transport};
pub use service::GbStats;

use crate::clock::Clock;

/// The stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum GbError {
    /// A SIP port could not be opened.
    #[error("gb28181.listen: cannot open the SIP port {addr} ({transport}): {detail}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `UDP` or `TCP`.
        transport: &'static str,
        /// Why.
        detail: String,
    },
    /// The SIP stack would not start.
    #[error("gb28181: the SIP stack did not start: {0}")]
    Stack(String),
}

/// A device as the API shows it (no secret in it).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    /// 20-digit id.
    pub id: String,
    /// Name (configured, else reported).
    pub name: Option<String>,
    /// What it is, from its id's type digits: `platform` (200, a lower platform), `recorder`
    /// (111 DVR, 118 NVR), `camera` (131/132) or `device`.
    pub kind: &'static str,
    /// Channels in its last complete catalog (cameras; groups and recorders not counted).
    pub channels: usize,
    /// `online` or `offline`.
    pub state: &'static str,
    /// Why offline.
    pub reason: Option<&'static str>,
    /// The reason in Chinese.
    pub reason_zh: Option<&'static str>,
    /// The reason in English.
    pub reason_en: Option<&'static str>,
    /// Since when (Unix ms).
    pub since_ms: i64,
    /// `udp` or `tcp`.
    pub transport: Transport,
    /// Where its requests come from.
    pub address: String,
    /// Last registration (Unix ms).
    pub registered_ms: Option<i64>,
    /// Last keepalive (Unix ms).
    pub keepalive_ms: Option<i64>,
    /// Manufacturer (DeviceInfo).
    pub manufacturer: Option<String>,
    /// Model (DeviceInfo).
    pub model: Option<String>,
    /// Firmware (DeviceInfo).
    pub firmware: Option<String>,
    /// Entries in its last complete catalog.
    pub catalog_entries: usize,
    /// When that catalog arrived (Unix ms).
    pub catalog_ms: Option<i64>,
    /// Alarms received since start.
    pub alarms: u64,
    /// The last of them.
    pub last_alarm: Option<AlarmView>,
}

/// A device's alarm as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmView {
    /// When it arrived (Unix ms, the platform's clock).
    pub time_ms: i64,
    /// What alarmed (a channel, an alarm input, the device).
    pub channel: String,
    /// `AlarmMethod`.
    pub method: Option<u8>,
    /// `AlarmType`.
    pub alarm_type: Option<u16>,
    /// `AlarmPriority`.
    pub priority: Option<u8>,
    /// Method and type in Chinese.
    pub what_zh: &'static str,
    /// Method and type in English.
    pub what_en: &'static str,
    /// The device's own words.
    pub description: Option<String>,
}

/// One catalog entry as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntryView {
    /// 20-digit code.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type digits (131/132 camera, 118 NVR channel, 215/216 group …).
    pub type_code: Option<u16>,
    /// Administrative-division code.
    pub civil_code: Option<String>,
    /// Parent.
    pub parent_id: Option<String>,
    /// Reported `ON`/`OFF`.
    pub online: Option<bool>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// Latitude.
    pub latitude: Option<f64>,
}

/// Counts for `/metrics` and `/api/system`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GbSummary {
    /// Devices that registered since start.
    pub devices: usize,
    /// Devices online now.
    pub online: usize,
}

/// What the stage tells the camera side, on the `gb28181_to_camera` queue app.rs creates.
#[derive(Debug, Clone, PartialEq)]
pub enum GbEvent {
    /// A device came online (`Ok`) or went offline, and why.
    Device {
        /// Device id.
        device: String,
        /// Its state.
        state: Result<(), crate::health::OfflineReason>,
    },
    /// A device alarmed (`Notify/Alarm`): an alert or a health note, see [`alarm`].
    Alarm {
        /// The device that sent it.
        device: String,
        /// What it said (`device_id`: what alarmed).
        alarm: manscdp::Alarm,
        /// `alarm.device_id` is the device or an entry of its catalog (an RTSP camera with that
        /// `gb_code` may then take the alert).
        in_catalog: bool,
    },
    /// A device's whole catalog arrived.
    Catalog {
        /// Device id.
        device: String,
        /// Every entry (channels, groups …).
        channels: Vec<manscdp::CatalogItem>,
    },
}

/// Whether a catalog entry is a video channel (a camera): type 131/132, or an entry with a code
/// outside the standard's types under a DVR or NVR (111/118), as some recorders number channels.
/// Other standard types (recorders, alarm inputs, displays, platforms, groups) are not.
pub fn is_channel(item: &manscdp::CatalogItem) -> bool {
    match item.type_code() {
        Some(131 | 132) => true,
        Some(111..=299) => false,
        _ => item
            .parent()
            .and_then(manscdp::type_code)
            .is_some_and(|t| t == 111 || t == 118),
    }
}

/// The `kind` labels of [`Gb28181::counters`].
pub const COUNTER_KINDS: [&str; 19] = [
    "registered",
    "challenged",
    "wrong_password",
    "not_allowed",
    "keepalive",
    "bad_message",
    "not_registered",
    "query_sent",
    "query_failed",
    "invite_sent",
    "invite_failed",
    "bye_sent",
    "bye_received",
    "alarm",
    "alarm_repeated",
    "patrol",
    "catalog_change",
    "subscribed",
    "subscribe_failed",
];

/// The running stage.
#[derive(Clone)]
pub struct Gb28181 {
    service: Arc<service::Service>,
    ports: Arc<media::PortPool>,
    with_rules: Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
}

fn ms(t: SystemTime) -> i64 {
    crate::time::unix_ms(t)
}

impl Gb28181 {
    /// Opens the SIP port (UDP and TCP on the same port) and starts answering; runs until `cancel`.
    pub async fn start(
        config: GbConfig,
        clock: Arc<dyn Clock>,
        events: Option<tokio::sync::mpsc::Sender<GbEvent>>,
        cancel: CancellationToken,
    ) -> Result<Self, GbError> {
        let bind_err = |addr, transport, e: rsipstack::Error| GbError::Bind {
            addr,
            transport,
            detail: e.to_string(),
        };
        let udp = UdpConnection::create_connection(config.listen, None, Some(cancel.child_token()))
            .await
            .map_err(|e| bind_err(config.listen, "UDP", e))?;
        let port = udp
            .get_addr()
            .get_socketaddr()
            .map(|a| a.port())
            .unwrap_or(config.listen.port());
        let local = SocketAddr::new(config.listen.ip(), port);
        let tcp = TcpListenerConnection::new(local, None)
            .await
            .map_err(|e| bind_err(local, "TCP", e))?;
        let transport = TransportLayer::new(cancel.child_token());
        transport.add_transport(udp.into());
        transport.add_transport(tcp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent(concat!("qianliyan/", env!("CARGO_PKG_VERSION")))
            .with_transport_layer(transport)
            .with_cancel_token(cancel.child_token())
            .build();
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|e| GbError::Stack(e.to_string()))?;
        // Requests to a device say the address it reaches us on (service.rs picks it per device
        // when the port is bound to every address).
        let advertised = local;
        let service = Arc::new(service::Service::new(
            config,
            clock,
            endpoint.inner.clone(),
            advertised,
            events,
        ));
        tokio::spawn(async move { endpoint.serve().await });
        let handler = Arc::clone(&service);
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let tx = tokio::select! {
                    _ = stop.cancelled() => break,
                    tx = incoming.recv() => match tx { Some(tx) => tx, None => break },
                };
                let h = Arc::clone(&handler);
                tokio::spawn(async move { h.handle(tx).await });
            }
        });
        let ticker = Arc::clone(&service);
        tokio::spawn(async move {
            let period = (ticker.config.keepalive_interval / 4)
                .clamp(Duration::from_millis(200), Duration::from_secs(5));
            let mut every = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = every.tick() => {
                        // Sent on their own task: a camera side that is behind never holds up
                        // the timers (nonce expiry, keepalive timeouts, query retries).
                        let changes = ticker.tick();
                        if !changes.is_empty() {
                            let sender = Arc::clone(&ticker);
                            tokio::spawn(async move {
                                for change in changes {
                                    sender.changed(Some(change)).await;
                                }
                            });
                        }
                        for (device, cmd) in ticker.due_queries() {
                            let asker = Arc::clone(&ticker);
                            tokio::spawn(async move {
                                if cmd == "Catalog" {
                                    asker.query_catalog(&device).await
                                } else {
                                    asker.query(&device, cmd).await
                                }
                            });
                        }
                    }
                }
            }
        });
        tracing::info!(%local, sip_id = %service.config.sip_id, domain = %service.config.domain, "GB/T 28181 SIP port open (UDP and TCP)");
        let ports = media::PortPool::new(service.config.media_ports.clone());
        Ok(Self {
            service,
            ports,
            with_rules: Arc::default(),
        })
    }

    /// The cameras that have rules: under `video = "rules"` their video is pulled continuously,
    /// the other channels' patrolled. Called at start and after each rules save.
    pub fn set_cameras_with_rules(&self, ids: impl IntoIterator<Item = String>) {
        *crate::sync::write(&self.with_rules) = ids.into_iter().collect();
    }

    /// The video of this stage's channels, for the camera supervisor: a camera with a
    /// `gb28181://<device>/<channel>` URL is pulled by INVITE (PS over RTP on `media_ports`).
    pub fn media_source(&self) -> Arc<dyn crate::ingest::Source> {
        Arc::new(media::GbMediaSource::new(
            Arc::clone(&self.service),
            Arc::clone(&self.ports),
            Arc::clone(&self.with_rules),
        ))
    }

    /// Counts an alarm not raised because one like it was within `alarm_cooldown`.
    pub fn alarm_repeated(&self) {
        self.service
            .stats
            .alarms_repeated
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Video streams being received now.
    pub fn streams(&self) -> usize {
        crate::sync::lock(&self.service.calls).len()
    }

    /// The SIP port's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.service.local
    }

    /// The stage's counters.
    pub fn stats(&self) -> &GbStats {
        &self.service.stats
    }

    /// Devices known and online.
    pub fn summary(&self) -> GbSummary {
        let reg = self.service.registry();
        GbSummary {
            devices: reg.len(),
            online: reg.online(),
        }
    }

    /// Every device that registered since start.
    pub fn devices(&self) -> Vec<DeviceView> {
        self.service.registry().devices().map(view).collect()
    }

    /// One device and its catalog.
    pub fn device(&self, id: &str) -> Option<(DeviceView, Vec<CatalogEntryView>)> {
        let reg = self.service.registry();
        let d = reg.device(id)?;
        let catalog = d
            .catalog
            .iter()
            .map(|i| CatalogEntryView {
                id: i.id.clone(),
                name: i.name.clone(),
                type_code: i.type_code(),
                civil_code: i.civil_code.clone(),
                parent_id: i.parent_id.clone(),
                online: i.online,
                longitude: i.longitude,
                latitude: i.latitude,
            })
            .collect();
        Some((view(d), catalog))
    }

    /// In a cluster: each device that registers or keeps alive here is sent on `tx` (the
    /// `gb28181_homes` queue app.rs creates; dropped and counted when it is full, as the next
    /// keepalive sends it again), so the keeper places its channels on this node.
    pub fn report_alive(&self, tx: tokio::sync::mpsc::Sender<String>) {
        let _ = self.service.alive.set(tx);
    }

    /// Device ids [`Gb28181::report_alive`] dropped on a full queue.
    pub fn alive_dropped(&self) -> u64 {
        self.service.alive_dropped.load(Ordering::Relaxed)
    }

    /// Asks a registered device for its catalog again; the answer arrives in pages.
    pub async fn query_catalog(&self, id: &str) -> Result<(), String> {
        self.service.query_catalog(id).await
    }

    /// Requests accepted and refused, for `/metrics` (in [`COUNTER_KINDS`] order).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.service.stats;
        [
            &s.registered,
            &s.challenged,
            &s.wrong_password,
            &s.not_allowed,
            &s.keepalives,
            &s.bad_messages,
            &s.unregistered_requests,
            &s.queries_sent,
            &s.queries_failed,
            &s.invites_sent,
            &s.invites_failed,
            &s.byes_sent,
            &s.byes_received,
            &s.alarms,
            &s.alarms_repeated,
            &s.patrols,
            &s.catalog_changes,
            &s.subscribed,
            &s.subscribe_failed,
        ]
        .into_iter()
        .zip(COUNTER_KINDS)
        .map(|(v, k)| (k, v.load(Ordering::Relaxed)))
        .collect()
    }
}

/// What a registered id is, from its type digits.
pub fn device_kind(id: &str) -> &'static str {
    match manscdp::type_code(id) {
        Some(200) => "platform",
        Some(111 | 118) => "recorder",
        Some(131 | 132) => "camera",
        _ => "device",
    }
}

fn view(d: &registry::Device) -> DeviceView {
    let (state, reason) = match d.state {
        DeviceState::Online => ("online", None),
        DeviceState::Offline(r) => ("offline", Some(r)),
    };
    DeviceView {
        id: d.id.clone(),
        name: d.name.clone(),
        kind: device_kind(&d.id),
        channels: d.catalog.iter().filter(|i| is_channel(i)).count(),
        state,
        reason: reason.map(|r| r.as_str()),
        reason_zh: reason.map(|r| r.zh()),
        reason_en: reason.map(|r| r.en()),
        since_ms: ms(d.since),
        transport: d.transport,
        address: d.addr.to_string(),
        registered_ms: d.registered_at.map(ms),
        keepalive_ms: d.keepalive_at.map(ms),
        manufacturer: d.info.as_ref().and_then(|i| i.manufacturer.clone()),
        model: d.info.as_ref().and_then(|i| i.model.clone()),
        firmware: d.info.as_ref().and_then(|i| i.firmware.clone()),
        catalog_entries: d.catalog.len(),
        catalog_ms: d.catalog_at.map(ms),
        alarms: d.alarms,
        last_alarm: d.last_alarm.as_ref().map(|(at, a)| {
            let (what_zh, what_en) = alarm::describe(a);
            AlarmView {
                time_ms: ms(*at),
                channel: a.device_id.clone(),
                method: a.method,
                alarm_type: a.alarm_type,
                priority: a.priority,
                what_zh,
                what_en,
                description: a.description.clone(),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manscdp::CatalogItem;

    fn item(id: &str, parent: Option<&str>) -> CatalogItem {
        CatalogItem {
            id: id.into(),
            parent_id: parent.map(str::to_owned),
            ..CatalogItem::default()
        }
    }

    #[test]
    fn cameras_and_channels_under_recorders_are_channels_groups_are_not() {
        assert!(is_channel(&item("34020000001310000001", None)));
        assert!(is_channel(&item("34020000001320000001", None)));
        // A recorder's own numbering, outside the standard's types, under an NVR.
        assert!(is_channel(&item(
            "34020000009990000001",
            Some("34020000001180000001")
        )));
        // An alarm input under an NVR is not video.
        assert!(!is_channel(&item(
            "34020000001340000001",
            Some("34020000001180000001")
        )));
        for not in [
            "34020000001180000001", // the NVR itself
            "34020000002000000001", // a platform
            "34020000002150000001", // a business group
            "34020000002160000001", // a virtual organisation
        ] {
            assert!(!is_channel(&item(not, None)), "{not}");
        }
        assert!(!is_channel(&item("340200", None)), "a civil-code entry");
    }
}
