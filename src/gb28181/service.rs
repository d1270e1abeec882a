//! The SIP side of the stage: one rsipstack endpoint listening on UDP and TCP at `[gb28181] listen`.
//! rsipstack runs the transactions (retransmissions over UDP, absorbing repeated requests, timers);
//! this module decides what each request means for the registry and what to answer.
//!
//! - REGISTER: an unknown or unlisted device gets 403; a request without credentials gets 401 with a
//!   fresh nonce (realm = the domain); a wrong digest gets 403 at once (no second challenge); a stale
//!   nonce gets 401 `stale=true`; `Expires: 0` unregisters. The 200 carries `Date` (GB time sync)
//!   and the granted `Expires`. The device's source address is remembered (not its `Contact`), and
//!   after a registration the platform asks for DeviceInfo and the catalog.
//! - MESSAGE: Keepalive, Catalog and DeviceInfo answers are read; a body that does not parse gets
//!   400 with the reason; messages of devices that are not registered get 403.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, StatusCode, Transport as SipTransport};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::{Transaction, make_tag};
use rsipstack::transport::{SipAddr, SipConnection};

use super::GbEvent;
use super::config::{GbConfig, valid_gb_id};
use super::manscdp::{self, Body};
use super::registry::{Change, PageOutcome, Registry, Transport};
use crate::clock::Clock;

/// Wrong passwords for one device from one host within [`GUESS_WINDOW`] before it is locked out
/// for the rest of the window.
const GUESSES: u32 = 5;
/// The window of [`GUESSES`].
const GUESS_WINDOW: Duration = Duration::from_secs(900);
/// Hosts × devices remembered for guessing (a flood beyond it locks nobody out, and is counted).
const MAX_GUESSERS: usize = 100_000;

/// How many times a missing DeviceInfo or catalog is asked for after a registration.
const QUERY_ATTEMPTS: u32 = 5;
/// Most entries a catalog may announce (a lower platform's can be large).
pub(crate) const MAX_CATALOG_ENTRIES: usize = 50_000;

/// Why a device's message is refused when it is not registered.
const NOT_REGISTERED: &str = "is not registered: REGISTER first";

/// How long a nonce handed out in a challenge may be answered.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Most nonces outstanding (a flood of unauthenticated REGISTERs cannot grow memory without bound).
const MAX_NONCES: usize = 100_000;

/// The stage's counters (`/metrics`).
#[derive(Debug, Default)]
pub struct GbStats {
    /// REGISTERs accepted (including refreshes and unregistrations).
    pub registered: AtomicU64,
    /// 401 challenges sent.
    pub challenged: AtomicU64,
    /// REGISTERs refused for a wrong password.
    pub wrong_password: AtomicU64,
    /// REGISTERs refused because the device is not allowed (or the device cap is reached).
    pub not_allowed: AtomicU64,
    /// Keepalives accepted.
    pub keepalives: AtomicU64,
    /// Requests refused as malformed (400).
    pub bad_messages: AtomicU64,
    /// Requests from devices that are not registered (403).
    pub unregistered_requests: AtomicU64,
    /// Queries sent to devices.
    pub queries_sent: AtomicU64,
    /// Queries that got no 200.
    pub queries_failed: AtomicU64,
    /// Video requests (INVITE) sent.
    pub invites_sent: AtomicU64,
    /// Video requests refused, unanswered or answered with an unusable SDP.
    pub invites_failed: AtomicU64,
    /// Streams hung up by the platform (BYE sent).
    pub byes_sent: AtomicU64,
    /// Streams hung up by the device (BYE received).
    pub byes_received: AtomicU64,
    /// Alarms received (`Notify/Alarm`).
    pub alarms: AtomicU64,
    /// Patrols done (a channel watched for `patrol_for`, then hung up).
    pub patrols: AtomicU64,
    /// Alarms not raised: one of the same type on the same channel within `alarm_cooldown`.
    pub alarms_repeated: AtomicU64,
    /// Catalog notifications received (`Notify/Catalog`).
    pub catalog_changes: AtomicU64,
    /// Catalog subscriptions (SUBSCRIBE) a device took.
    pub subscribed: AtomicU64,
    /// Catalog subscriptions refused or unanswered (the device is asked again each catalog
    /// interval; its catalog is then re-read only).
    pub subscribe_failed: AtomicU64,
}

/// Shared state of the running service.
pub(crate) struct Service {
    pub config: GbConfig,
    pub clock: Arc<dyn Clock>,
    pub registry: Mutex<Registry>,
    pub stats: GbStats,
    pub endpoint: EndpointInnerRef,
    /// The address the SIP port is bound to.
    pub local: SocketAddr,
    nonces: Mutex<HashMap<String, Instant>>,
    /// Wrong passwords by (device, host): when the window began and how many.
    guesses: Mutex<HashMap<(String, std::net::IpAddr), (Instant, u32)>>,
    /// When each query (`<device>/<cmd>`) was last sent, and how many times since the device came
    /// online.
    asked: Mutex<HashMap<String, (Instant, u32)>>,
    /// Refusals are logged at most [`LogLimit::PER_WINDOW`] times per window (anyone can send them).
    refusal_log: LogLimit,
    /// Held from reading a device's state to queueing it, so the camera side sees states in the
    /// order the registry had them.
    emitting: tokio::sync::Mutex<()>,
    /// To the camera side (`gb28181_to_camera`), when app.rs joined one.
    events: Option<tokio::sync::mpsc::Sender<GbEvent>>,
    /// TCP devices' connections, by device id (requests to them go back on it).
    connections: Mutex<HashMap<String, SipConnection>>,
    sn: AtomicU32,
    /// The last 4 digits of the next SSRC offered.
    pub(super) ssrc_seq: AtomicU32,
    /// Video calls up now, by Call-ID: cancelled when the device hangs up.
    pub(super) calls: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
    /// Alarm answers (`Response/Alarm`) in flight at most: a flood of alarms is answered 200, and
    /// the rest of the answers skipped, rather than a task piling up per alarm.
    alarm_answers: Arc<tokio::sync::Semaphore>,
    /// In a cluster: every device that registers or keeps alive here, for the keeper to place its
    /// channels here (`gb28181_homes`; a full queue drops the id, counted: the next keepalive
    /// sends it again).
    pub(super) alive: std::sync::OnceLock<tokio::sync::mpsc::Sender<String>>,
    /// Ids `alive` dropped because its queue was full.
    pub(super) alive_dropped: std::sync::atomic::AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A log rate limit: at most `PER_WINDOW` lines per 10 s; the rest are counted and said once.
#[derive(Default)]
struct LogLimit(Mutex<Option<(Instant, u32, u64)>>);

impl LogLimit {
    const PER_WINDOW: u32 = 20;

    fn allow(&self, now: Instant) -> bool {
        let mut w = lock(&self.0);
        let (start, n, suppressed) = w.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= Duration::from_secs(10) {
            if *suppressed > 0 {
                tracing::warn!(
                    suppressed = *suppressed,
                    "GB/T 28181 refusals not logged one by one in the last 10 s"
                );
            }
            *w = Some((now, 1, 0));
            return true;
        }
        if *n < Self::PER_WINDOW {
            *n += 1;
            true
        } else {
            *suppressed += 1;
            false
        }
    }
}

/// Why a request was refused, for the log.
struct Refusal {
    status: StatusCode,
    reason: String,
}

impl Service {
    pub fn new(
        config: GbConfig,
        clock: Arc<dyn Clock>,
        endpoint: EndpointInnerRef,
        local: SocketAddr,
        events: Option<tokio::sync::mpsc::Sender<GbEvent>>,
    ) -> Self {
        Self {
            registry: Mutex::new(Registry::new(
                config.keepalive_timeout(),
                MAX_CATALOG_ENTRIES,
            )),
            refusal_log: LogLimit::default(),
            emitting: tokio::sync::Mutex::new(()),
            config,
            clock,
            stats: GbStats::default(),
            endpoint,
            local,
            nonces: Mutex::new(HashMap::new()),
            asked: Mutex::new(HashMap::new()),
            guesses: Mutex::new(HashMap::new()),
            events,
            connections: Mutex::new(HashMap::new()),
            sn: AtomicU32::new(1),
            ssrc_seq: AtomicU32::new(1),
            calls: Mutex::new(HashMap::new()),
            alarm_answers: Arc::new(tokio::sync::Semaphore::new(64)),
            alive: std::sync::OnceLock::new(),
            alive_dropped: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Answers one incoming request. Never panics on what the device sent.
    pub async fn handle(self: &Arc<Self>, mut tx: Transaction) {
        let method = tx.original.method;
        let device = from_user(&tx.original);
        let result = match method {
            Method::Register => self.on_register(&mut tx, device.as_deref()).await,
            // A NOTIFY without a body ends a subscription: nothing to apply.
            Method::Notify if tx.original.body().is_empty() => {
                reply(&mut tx, StatusCode::OK, vec![], None).await
            }
            // Catalog notifications come as NOTIFY (after the platform's SUBSCRIBE) or MESSAGE.
            Method::Message | Method::Notify => self.on_message(&mut tx, device.as_deref()).await,
            Method::Options => reply(&mut tx, StatusCode::OK, vec![], None).await,
            Method::Bye => self.on_bye(&mut tx).await,
            // The ACK of a 200 this side sent (none yet: the platform answers no INVITE).
            Method::Ack => Ok(()),
            _ => {
                let allow = Header::Other(
                    "Allow".into(),
                    "REGISTER, MESSAGE, NOTIFY, OPTIONS, BYE".into(),
                );
                reply(&mut tx, StatusCode::MethodNotAllowed, vec![allow], None).await
            }
        };
        if let Err(refusal) = result {
            // What a device sent may end up in the reason: no control characters (a CR/LF would
            // forge a header or a log line), no quotes, at most 200 characters.
            let reason: String = refusal
                .reason
                .chars()
                .map(|c| if c.is_control() || c == '"' { ' ' } else { c })
                .take(200)
                .collect();
            let shown: String = device
                .as_deref()
                .unwrap_or("?")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(32)
                .collect();
            if self.refusal_log.allow(self.clock.now()) {
                tracing::warn!(
                    device = %shown,
                    %method,
                    status = u16::from(refusal.status.clone()),
                    reason = %reason,
                    "GB/T 28181 request refused"
                );
            }
            let warning = Header::Other("Warning".into(), format!("399 qianliyan \"{reason}\""));
            let _ = reply(&mut tx, refusal.status, vec![warning], None).await;
        }
    }

    async fn on_register(
        self: &Arc<Self>,
        tx: &mut Transaction,
        device: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(device) = device.filter(|d| valid_gb_id(d)) else {
            self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                status: StatusCode::BadRequest,
                reason: "the From header does not name a 20-digit device id".into(),
            });
        };
        let registered = self.registry().device(device).is_some();
        if !self.config.allows(device) {
            self.stats.not_allowed.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                status: StatusCode::Forbidden,
                reason: format!(
                    "device {device} is not in [[gb28181.devices]] and gb28181.auto_accept is off"
                ),
            });
        }
        if !registered && self.registry().len() >= self.config.max_devices {
            self.stats.not_allowed.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                status: StatusCode::Forbidden,
                reason: format!(
                    "gb28181.max_devices ({}) devices are registered already",
                    self.config.max_devices
                ),
            });
        }
        // Too many wrong passwords for this device from this host lately: no more guesses for a
        // while (refused before any challenge).
        if let Some((_, from)) = source(tx)
            && let Some(left) = self.locked_for(device, from.ip())
        {
            self.stats.wrong_password.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                status: StatusCode::Forbidden,
                reason: format!(
                    "device {device}: {GUESSES} wrong passwords from {} in {} minutes; try again in {} s",
                    from.ip(),
                    GUESS_WINDOW.as_secs() / 60,
                    left.as_secs().max(1)
                ),
            });
        }
        let raw_auth = tx.original.headers.iter().find_map(|h| match h {
            Header::Authorization(a) => Some(a.value().to_owned()),
            _ => None,
        });
        let Some(raw_auth) = raw_auth else {
            return self.challenge(tx, false).await;
        };
        let auth = match rsipstack::sip::typed::Authorization::parse(&raw_auth) {
            Ok(a) => a,
            Err(e) => {
                self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal {
                    status: StatusCode::BadRequest,
                    reason: format!("the Authorization header does not parse: {e}"),
                });
            }
        };
        let now = self.clock.now();
        let nonce_ok = lock(&self.nonces)
            .get(&auth.nonce)
            .is_some_and(|issued| now.duration_since(*issued) < NONCE_LIFETIME);
        if !nonce_ok {
            return self.challenge(tx, true).await;
        }
        let password = self.config.password_for(device);
        // A nonce answers once, right or wrong: one challenge is one password guess.
        lock(&self.nonces).remove(&auth.nonce);
        if auth.username != device
            || !rsipstack::dialog::authenticate::verify_digest(
                &auth,
                password.expose(),
                &Method::Register,
                &raw_auth,
            )
        {
            self.stats.wrong_password.fetch_add(1, Ordering::Relaxed);
            if let Some((_, ip)) = source(tx) {
                self.guessed(device, ip.ip());
            }
            return Err(Refusal {
                status: StatusCode::Forbidden,
                reason: format!("device {device}: wrong password"),
            });
        }
        if let Some((_, from)) = source(tx) {
            lock(&self.guesses).remove(&(device.to_owned(), from.ip()));
        }
        let asked = requested_expires(&tx.original);
        let wall = self.clock.wall();
        let date = Header::Other("Date".into(), gb_date(wall));
        if asked == Some(0) {
            self.stats.registered.fetch_add(1, Ordering::Relaxed);
            let change = self.registry().unregister(device, wall);
            lock(&self.connections).remove(device);
            let expires = Header::Expires("0".into());
            reply(tx, StatusCode::OK, vec![date, expires], None).await?;
            self.changed(change).await;
            return Ok(());
        }
        let granted = asked
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(self.config.max_expires)
            .min(self.config.max_expires);
        let Some((transport, addr)) = source(tx) else {
            self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                status: StatusCode::BadRequest,
                reason: "the request's source address cannot be read from its Via header".into(),
            });
        };
        if transport == Transport::Tcp
            && let Some(conn) = tx.connection.clone()
        {
            lock(&self.connections).insert(device.to_owned(), conn);
        }
        let name = self.config.devices.get(device).and_then(|p| p.name.clone());
        let change =
            self.registry()
                .register(device, name.as_deref(), addr, transport, granted, now, wall);
        self.stats.registered.fetch_add(1, Ordering::Relaxed);
        let came_online = change.is_some();
        let expires = Header::Expires(granted.as_secs().to_string().into());
        let mut headers = vec![date, expires];
        // The binding, as RFC 3261 §10.3 says the 200 lists it.
        if let Ok(contact) = tx.original.contact_header() {
            let kept: Vec<&str> = contact
                .value()
                .split(';')
                .filter(|p| !p.trim().to_ascii_lowercase().starts_with("expires="))
                .collect();
            headers.push(Header::Other(
                "Contact".into(),
                format!("{};expires={}", kept.join(";"), granted.as_secs()),
            ));
        }
        reply(tx, StatusCode::OK, headers, None).await?;
        self.alive(device);
        if came_online {
            // Asked at once (and marked asked before anything else can run the retry).
            {
                let now = self.clock.now();
                let mut asked = lock(&self.asked);
                for cmd in ["DeviceInfo", "Catalog"] {
                    asked.insert(format!("{device}/{cmd}"), (now, 0));
                }
            }
            let me = Arc::clone(self);
            let device = device.to_owned();
            tokio::spawn(async move {
                let _ = me.query(&device, "DeviceInfo").await;
                let _ = me.query_catalog(&device).await;
            });
        }
        // Answered first: a slow camera side never holds a device's registration up.
        self.changed(change).await;
        Ok(())
    }

    async fn challenge(&self, tx: &mut Transaction, stale: bool) -> Result<(), Refusal> {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        {
            let now = self.clock.now();
            let mut nonces = lock(&self.nonces);
            // Expired nonces go in `tick`; a flood fills the table and gets 503 until then.
            if nonces.len() >= MAX_NONCES {
                return Err(Refusal {
                    status: StatusCode::ServiceUnavailable,
                    reason: "too many registrations in progress".into(),
                });
            }
            nonces.insert(nonce.clone(), now);
        }
        self.stats.challenged.fetch_add(1, Ordering::Relaxed);
        let value = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5{}",
            self.config.domain,
            if stale { ", stale=true" } else { "" }
        );
        let header = Header::WwwAuthenticate(value.into());
        reply(tx, StatusCode::Unauthorized, vec![header], None).await
    }

    async fn on_message(
        self: &Arc<Self>,
        tx: &mut Transaction,
        device: Option<&str>,
    ) -> Result<(), Refusal> {
        let body = match manscdp::parse(tx.original.body()) {
            Ok(b) => b,
            Err(e) => {
                self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal {
                    status: StatusCode::BadRequest,
                    reason: format!("MANSCDP body: {e}"),
                });
            }
        };
        let now = self.clock.now();
        let wall = self.clock.wall();
        let sender = device.unwrap_or_default();
        let refuse = |me: &Self, why: &str| {
            me.stats
                .unregistered_requests
                .fetch_add(1, Ordering::Relaxed);
            Err(Refusal {
                status: StatusCode::Forbidden,
                reason: format!("device {sender} {why}"),
            })
        };
        // A device speaks for itself only: the body's DeviceID is the sender's.
        let named = match &body {
            Body::Keepalive { device_id, .. } => Some(device_id.as_str()),
            Body::Catalog(page) | Body::CatalogChange(page) => Some(page.device_id.as_str()),
            Body::DeviceInfo(info) => Some(info.device_id.as_str()),
            // An alarm names what alarmed (a channel, an alarm input): the camera side looks it
            // up under the sender only.
            Body::Alarm(_) | Body::Query { .. } | Body::Other { .. } => None,
        };
        if named.is_some_and(|n| n != sender) {
            self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                status: StatusCode::Forbidden,
                reason: format!(
                    "the body names device {} but the message comes from {sender}",
                    named.unwrap_or_default()
                ),
            });
        }
        let Some((transport, addr)) = source(tx) else {
            return refuse(
                self,
                "sent a message whose source cannot be read from its Via",
            );
        };
        let registered = {
            let reg = self.registry();
            reg.device(sender)
                .filter(|_| reg.is_registered(sender, now))
                .map(|d| d.addr.ip())
        };
        let Some(registered_ip) = registered else {
            return refuse(self, NOT_REGISTERED);
        };
        if registered_ip != addr.ip() {
            return refuse(
                self,
                "sent from another host than the one it registered from: REGISTER again",
            );
        }
        // Over TCP a device may have reconnected: requests to it go on its newest connection.
        if transport == Transport::Tcp
            && let Some(conn) = tx.connection.clone()
        {
            lock(&self.connections).insert(sender.to_owned(), conn);
        }
        let mut change = None;
        match body {
            Body::Keepalive { device_id, .. } => {
                let result = self.registry().keepalive(&device_id, addr, now, wall);
                match result {
                    Ok(c) => {
                        self.stats.keepalives.fetch_add(1, Ordering::Relaxed);
                        self.alive(&device_id);
                        change = c;
                    }
                    Err(why) => return refuse(self, why),
                }
            }
            Body::Catalog(page) => {
                let outcome = self.registry().catalog_page(page, now, wall);
                match outcome {
                    PageOutcome::Partial { have, sum } => {
                        tracing::debug!(device = sender, have, sum, "catalog page");
                    }
                    PageOutcome::Complete(c) => {
                        // Asked again after `catalog_interval`, as often as a first time.
                        lock(&self.asked).remove(&format!("{sender}/Catalog"));
                        change = Some(c);
                    }
                    PageOutcome::UnknownDevice => return refuse(self, NOT_REGISTERED),
                    PageOutcome::TooLarge { sum } => {
                        self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                        return Err(Refusal {
                            status: StatusCode::BadRequest,
                            reason: format!(
                                "the catalog announces {sum} entries, more than the {MAX_CATALOG_ENTRIES} kept"
                            ),
                        });
                    }
                }
            }
            Body::DeviceInfo(info) => {
                self.registry().device_info(info);
            }
            Body::CatalogChange(page) => {
                self.stats.catalog_changes.fetch_add(1, Ordering::Relaxed);
                change = self.registry().catalog_change(page);
            }
            Body::Alarm(alarm) => {
                self.stats.alarms.fetch_add(1, Ordering::Relaxed);
                let in_catalog = self.registry().note_alarm(sender, &alarm, wall);
                reply(tx, StatusCode::OK, vec![], None).await?;
                if let Ok(slot) = Arc::clone(&self.alarm_answers).try_acquire_owned() {
                    let (me, device) = (Arc::clone(self), sender.to_owned());
                    let (sn, id) = (alarm.sn, alarm.device_id.clone());
                    tokio::spawn(async move {
                        me.acknowledge_alarm(&device, sn, &id).await;
                        drop(slot);
                    });
                }
                tracing::info!(device = sender, channel = %alarm.device_id, method = ?alarm.method, kind = ?alarm.alarm_type, "GB/T 28181 alarm");
                self.emit(GbEvent::Alarm {
                    device: sender.to_owned(),
                    alarm,
                    in_catalog,
                })
                .await;
                return Ok(());
            }
            Body::Query { cmd, .. } | Body::Other { cmd, .. } => {
                tracing::debug!(
                    device = sender,
                    cmd,
                    "GB/T 28181 message answered, not acted on"
                );
            }
        }
        reply(tx, StatusCode::OK, vec![], None).await?;
        self.changed(change).await;
        Ok(())
    }

    /// A device hangs up a video call: the session receiving it ends (`eos`).
    async fn on_bye(&self, tx: &mut Transaction) -> Result<(), Refusal> {
        let call = tx
            .original
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let token = lock(&self.calls).remove(&call);
        match token {
            Some(token) => {
                self.stats.byes_received.fetch_add(1, Ordering::Relaxed);
                token.cancel();
                reply(tx, StatusCode::OK, vec![], None).await
            }
            None => Err(Refusal {
                status: StatusCode::CallTransactionDoesNotExist,
                reason: "no such call".into(),
            }),
        }
    }

    /// The SIP transport to reach `device` and, over TCP, its connection.
    pub(super) fn route(
        &self,
        device: &str,
        transport: Transport,
    ) -> Result<(SipTransport, Option<SipConnection>), String> {
        match transport {
            Transport::Tcp => Ok((
                SipTransport::Tcp,
                Some(
                    lock(&self.connections)
                        .get(device)
                        .cloned()
                        .ok_or_else(|| format!("device {device}: its TCP connection is gone"))?,
                ),
            )),
            Transport::Udp => Ok((SipTransport::Udp, None)),
        }
    }

    /// Where `device`'s requests come from, and over what.
    fn address_of(&self, device: &str) -> Result<(SocketAddr, Transport), String> {
        let reg = self.registry();
        let d = reg
            .device(device)
            .ok_or_else(|| format!("device {device} has never registered"))?;
        Ok((d.addr, d.transport))
    }

    /// Sends a query (`Catalog`, `DeviceInfo`) to a registered device and waits for its 200.
    pub async fn query(&self, device: &str, cmd: &str) -> Result<(), String> {
        let (addr, transport) = self.address_of(device)?;
        {
            let now = self.clock.now();
            let mut asked = lock(&self.asked);
            let e = asked.entry(format!("{device}/{cmd}")).or_insert((now, 0));
            *e = (now, e.1.saturating_add(1));
        }
        let sn = self.sn.fetch_add(1, Ordering::Relaxed);
        let body = manscdp::query(cmd, sn, device);
        self.stats.queries_sent.fetch_add(1, Ordering::Relaxed);
        let result = self.message(device, addr, transport, body).await;
        if let Err(e) = &result {
            self.stats.queries_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device, cmd, error = %e, "GB/T 28181 query failed");
        }
        result
    }

    /// [`Service::query`] of the catalog, then (on its own task: a device that ignores SUBSCRIBE
    /// must not hold the caller for a SIP timeout) the catalog subscription.
    pub async fn query_catalog(self: &Arc<Self>, device: &str) -> Result<(), String> {
        self.query(device, "Catalog").await?;
        let (me, device) = (Arc::clone(self), device.to_owned());
        tokio::spawn(async move { me.subscribe_catalog(&device).await });
        Ok(())
    }

    /// Subscribes to `device`'s catalog changes (SUBSCRIBE, `Event: Catalog`) for twice
    /// `catalog_interval`: it then sends `Notify/Catalog` as channels go on or off, are added or
    /// removed. Renewed with every catalog query; a device that refuses is only re-read.
    async fn subscribe_catalog(&self, device: &str) {
        let result = async {
            let (addr, transport) = self.address_of(device)?;
            let (sip_transport, connection) = self.route(device, transport)?;
            let mut request = self
                .build(Method::Subscribe, device, addr, sip_transport)
                .map_err(|e| format!("cannot build the SUBSCRIBE: {e}"))?;
            let sn = self.sn.fetch_add(1, Ordering::Relaxed);
            let expires = (self.config.catalog_interval * 2)
                .as_secs()
                .clamp(60, 86_400);
            let here = self.here_for(addr);
            for h in [
                Header::Other("Event".into(), format!("Catalog;id={sn}")),
                Header::Expires(expires.to_string().into()),
                Header::Contact(format!("<sip:{}@{here}>", self.config.sip_id).into()),
                Header::ContentType("Application/MANSCDP+xml".into()),
            ] {
                request.headers.push(h);
            }
            request.body = manscdp::query("Catalog", sn, device);
            send(&self.endpoint, request, addr, sip_transport, connection).await
        }
        .await;
        match result {
            Ok(()) => {
                self.stats.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.subscribe_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(device, error = %e, "GB/T 28181 catalog subscription not taken; the catalog is re-read every catalog_interval");
            }
        }
    }

    /// Sends a MANSCDP body to `device` (at `addr` over `transport`) and waits for its 200.
    async fn message(
        &self,
        device: &str,
        addr: SocketAddr,
        transport: Transport,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let (sip_transport, connection) = self.route(device, transport)?;
        let mut request = self
            .build(Method::Message, device, addr, sip_transport)
            .map_err(|e| format!("device {device}: cannot build the MESSAGE: {e}"))?;
        request
            .headers
            .push(Header::ContentType("Application/MANSCDP+xml".into()));
        request.body = body;
        send(&self.endpoint, request, addr, sip_transport, connection).await
    }

    /// Answers a device's alarm (`Response/Alarm`, `Result` OK), as the standard asks; a device
    /// that does not get it may send the alarm again (which the camera side counts once).
    async fn acknowledge_alarm(&self, device: &str, sn: u32, alarm_id: &str) {
        let target = {
            let reg = self.registry();
            reg.device(device).map(|d| (d.addr, d.transport))
        };
        let Some((addr, transport)) = target else {
            return;
        };
        let body = manscdp::alarm_response(sn, alarm_id);
        if let Err(e) = self.message(device, addr, transport, body).await {
            tracing::debug!(device, error = %e, "GB/T 28181 alarm answer not taken");
        }
    }

    /// This side's address as a device at `addr` reaches it: bound to every address, the one the
    /// route to the device leaves from, never 0.0.0.0 or a loopback address it cannot answer.
    pub(super) fn here_for(&self, addr: SocketAddr) -> SocketAddr {
        let mut here = self.local;
        if (here.ip().is_unspecified() || (here.ip().is_loopback() && !addr.ip().is_loopback()))
            && let Some(ip) = route_ip(addr)
        {
            here.set_ip(ip);
        }
        here
    }

    /// A Via for a request to `addr`.
    #[allow(clippy::result_large_err)]
    pub(super) fn via_for(
        &self,
        addr: SocketAddr,
        transport: SipTransport,
    ) -> Result<rsipstack::sip::typed::Via, rsipstack::Error> {
        let local = SipAddr {
            r#type: Some(transport),
            addr: self.here_for(addr).into(),
        };
        self.endpoint.get_via(Some(local), None)
    }

    /// A new request (no body) to `user` (the device, or one of its channels) at `addr`.
    #[allow(clippy::result_large_err)]
    pub(super) fn build(
        &self,
        method: Method,
        user: &str,
        addr: SocketAddr,
        transport: SipTransport,
    ) -> Result<Request, rsipstack::Error> {
        let via = self.via_for(addr, transport)?;
        let device = user;
        let target: rsipstack::sip::Uri = format!("sip:{device}@{addr}").as_str().try_into()?;
        let from_uri: rsipstack::sip::Uri =
            format!("sip:{}@{}", self.config.sip_id, self.config.domain)
                .as_str()
                .try_into()?;
        let to_uri: rsipstack::sip::Uri = format!("sip:{device}@{}", self.config.domain)
            .as_str()
            .try_into()?;
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: from_uri,
            params: vec![],
        }
        .with_tag(make_tag());
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: to_uri,
            params: vec![],
        };
        let seq = self.sn.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .endpoint
            .make_request(method, target, via, from, to, seq, None))
    }

    /// A wrong password for `device` from `ip`.
    fn guessed(&self, device: &str, ip: std::net::IpAddr) {
        let now = self.clock.now();
        let mut g = lock(&self.guesses);
        if g.len() >= MAX_GUESSERS && !g.contains_key(&(device.to_owned(), ip)) {
            return;
        }
        let e = g.entry((device.to_owned(), ip)).or_insert((now, 0));
        if now.duration_since(e.0) >= GUESS_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    /// How long `device` stays locked out for `ip`, if it is.
    fn locked_for(&self, device: &str, ip: std::net::IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let g = lock(&self.guesses);
        let (since, n) = g.get(&(device.to_owned(), ip))?;
        let passed = now.duration_since(*since);
        (*n >= GUESSES && passed < GUESS_WINDOW).then(|| GUESS_WINDOW - passed)
    }

    /// Online devices whose DeviceInfo or catalog has not arrived and that were last asked more than
    /// a minute ago (a query or its answer lost over UDP, a device busy right after registering):
    /// asked again, one query each at most once a minute; and devices whose last catalog is
    /// `catalog_interval` old (channels added, reported `OFF` or gone since).
    pub fn due_queries(&self) -> Vec<(String, &'static str)> {
        let now = self.clock.now();
        let wall = self.clock.wall();
        let refresh = self.config.catalog_interval;
        let missing: Vec<(String, &'static str)> = {
            let reg = self.registry();
            reg.devices()
                .filter(|d| d.state == super::DeviceState::Online)
                .flat_map(|d| {
                    let info = d.info.is_none().then(|| (d.id.clone(), "DeviceInfo"));
                    // Not while a catalog is arriving (slow pages are progress, not loss).
                    // Spread by id over a fifth of the interval: devices that registered
                    // together (after a restart) do not all answer at once every interval.
                    let spread = refresh.mul_f32(spread_of(&d.id) / 5.0);
                    let stale = d.catalog_at.is_none_or(|at| {
                        wall.duration_since(at).unwrap_or_default() >= refresh + spread
                    });
                    let catalog = (stale && !reg.catalog_arriving(&d.id, now))
                        .then(|| (d.id.clone(), "Catalog"));
                    info.into_iter().chain(catalog)
                })
                .collect()
        };
        let mut asked = lock(&self.asked);
        asked.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(3600));
        missing
            .into_iter()
            .filter(
                |(device, cmd)| match asked.get(&format!("{device}/{cmd}")) {
                    // At most QUERY_ATTEMPTS times, a minute apart (again after a new registration).
                    Some((at, n)) => {
                        *n < QUERY_ATTEMPTS && now.duration_since(*at) >= Duration::from_secs(60)
                    }
                    None => true,
                },
            )
            .collect()
    }

    /// `device` registered or kept alive here: tells the cluster (when there is one).
    fn alive(&self, device: &str) {
        if let Some(tx) = self.alive.get()
            && tx.try_send(device.to_owned()).is_err()
        {
            self.alive_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops nonces nobody answered and marks silent devices; returns what changed.
    pub fn tick(&self) -> Vec<Change> {
        let now = self.clock.now();
        lock(&self.nonces).retain(|_, issued| now.duration_since(*issued) < NONCE_LIFETIME);
        lock(&self.guesses).retain(|_, (since, _)| now.duration_since(*since) < GUESS_WINDOW);
        let wall = self.clock.wall();
        let changes = self.registry().tick(now, wall);
        // Devices offline for a day no longer count against max_devices.
        if let Some(day_ago) = wall.checked_sub(Duration::from_secs(86_400)) {
            self.registry().forget_offline(day_ago);
        }
        for c in &changes {
            if let Change::Offline { device, .. } = c {
                lock(&self.connections).remove(device);
            }
        }
        changes
    }

    /// Logs a change and tells the camera side.
    /// Queues `event` for the camera side (waits while it is behind: nothing is dropped).
    async fn emit(&self, event: GbEvent) {
        let Some(events) = &self.events else { return };
        let _order = self.emitting.lock().await;
        let _ = events.send(event).await;
    }

    pub async fn changed(&self, change: Option<Change>) {
        let Some(change) = change else { return };
        log_change(&change);
        let Some(events) = &self.events else { return };
        let _order = self.emitting.lock().await;
        // The state as the registry has it now (a later change may have overtaken this one on
        // its way here; what is queued last is then still the newest).
        let current = |device: &str| {
            self.registry().device(device).map(|d| match d.state {
                super::DeviceState::Online => Ok(()),
                super::DeviceState::Offline(r) => Err(r),
            })
        };
        let event = match change {
            Change::Online { device } | Change::Offline { device, .. } => {
                let Some(state) = current(&device) else {
                    return;
                };
                GbEvent::Device { device, state }
            }
            Change::Catalog { device, .. } => {
                let channels = self
                    .registry()
                    .device(&device)
                    .map(|d| d.catalog.clone())
                    .unwrap_or_default();
                GbEvent::Catalog { device, channels }
            }
        };
        // Blocks while the camera side is behind: a device's state change is never dropped.
        let _ = events.send(event).await;
    }
}

/// Sends `request` in a client transaction and waits for its final answer.
pub(crate) async fn send(
    endpoint: &EndpointInnerRef,
    request: Request,
    addr: SocketAddr,
    transport: SipTransport,
    connection: Option<SipConnection>,
) -> Result<(), String> {
    let key = TransactionKey::from_request(&request, TransactionRole::Client)
        .map_err(|e| e.to_string())?;
    let mut tx = Transaction::new_client(key, request, endpoint.clone(), connection);
    tx.destination = Some(SipAddr {
        r#type: Some(transport),
        addr: addr.into(),
    });
    tx.send().await.map_err(|e| e.to_string())?;
    while let Some(msg) = tx.receive().await {
        if let rsipstack::sip::SipMessage::Response(resp) = msg {
            let code = u16::from(resp.status_code.clone());
            if code >= 200 {
                return if code < 300 {
                    Ok(())
                } else {
                    Err(format!("answered {code}"))
                };
            }
        }
    }
    Err("no answer".into())
}

async fn reply(
    tx: &mut Transaction,
    status: StatusCode,
    headers: Vec<Header>,
    body: Option<Vec<u8>>,
) -> Result<(), Refusal> {
    if let Err(e) = tx.reply_with(status, headers, body).await {
        tracing::debug!(error = %e, "GB/T 28181 reply not sent");
    }
    Ok(())
}

fn log_change(change: &Change) {
    match change {
        Change::Online { device } => {
            tracing::info!(device, "GB/T 28181 device online");
        }
        Change::Offline { device, reason } => {
            tracing::warn!(device, %reason, "GB/T 28181 device offline");
        }
        Change::Catalog { device, entries } => {
            tracing::info!(device, entries, "GB/T 28181 catalog received");
        }
    }
}

/// A fraction in [0, 1) fixed per device id (FNV-1a).
fn spread_of(id: &str) -> f32 {
    let h = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (h % 1000) as f32 / 1000.0
}

/// The local address the system routes to `peer` from (a connected UDP socket sends nothing).
fn route_ip(peer: SocketAddr) -> Option<std::net::IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(peer).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// The user part of the From header (the device id).
pub(crate) fn from_user(req: &Request) -> Option<String> {
    let from = req.from_header().ok()?.typed().ok()?;
    from.uri.user().map(str::to_owned)
}

/// The `Expires` a REGISTER asks for: the header, else the Contact's parameter.
fn requested_expires(req: &Request) -> Option<u32> {
    // RFC 3261 §10.3: the Contact's `expires` parameter wins over the Expires header.
    req.contact_header()
        .ok()
        .and_then(|c| c.typed().ok())
        .and_then(|c| c.expires())
        .or_else(|| {
            req.expires_header()
                .and_then(|e| e.value().trim().parse().ok())
        })
}

/// Where the request came from: the connection's peer over TCP, the Via's received/rport over UDP.
fn source(tx: &Transaction) -> Option<(Transport, SocketAddr)> {
    if let Some(conn) = &tx.connection
        && conn.is_reliable()
    {
        let addr = conn.get_remote_addr()?.get_socketaddr().ok()?;
        return Some((Transport::Tcp, addr));
    }
    let via = tx.original.via_header().ok()?;
    let (_, host) = SipConnection::parse_target_from_via(via).ok()?;
    let addr: SocketAddr = host.try_into().ok()?;
    Some((Transport::Udp, addr))
}

/// GB/T 28181's `Date` for time synchronisation: local (CST) time with milliseconds,
/// `2026-12-07T17:45:00.123`.
fn gb_date(t: std::time::SystemTime) -> String {
    let ms = crate::time::unix_ms(t).rem_euclid(1000);
    format!("{}.{ms:03}", crate::time::format_cst(t).replace(' ', "T"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_header_is_cst_with_milliseconds() {
        let t = crate::time::from_unix_ms(crate::time::cst_ms(2026, 12, 7, 17, 45, 0) + 123);
        assert_eq!(gb_date(t), "2026-12-07T17:45:00.123");
    }
}
