//! ZeroMQ PUB sink: best-effort fan-out of alerts and camera health to in-house integrators.
//!
//! One named thread (`zmq-pub`) owns a libzmq PUB socket bound to a configured endpoint. Producers
//! call [`ZmqPublisher::publish_alert`] / [`ZmqPublisher::publish_health`], which never block: they
//! `try_send` into a bounded channel and count a `queue_full` drop when it is full. The thread sends
//! each message as two frames, `[topic, json]`, with `ZMQ_DONTWAIT`; the socket has
//! `ZMQ_XPUB_NODROP` set, so a subscriber queue at the high-water mark makes libzmq refuse the
//! message with `EAGAIN` instead of silently discarding it, and the refusal is counted as an `hwm`
//! drop. Nothing is retried: this is a best-effort feed (see `docs/zeromq.md`); the durable paths
//! are the store, the WebSocket feed with its cursor, and the case-system outbox.
//!
//! Topics (ZeroMQ subscriptions are byte prefixes of the first frame):
//! - `alert.<type>.<area code>` — `<area code>` is `none` when the camera has no area;
//! - `health.<camera id>`.
//!
//! A `.` or any whitespace inside a topic part is replaced by `_` (so `gate 3.east` becomes
//! `gate_3_east`) and an empty part becomes `_`, so a part can never forge the topic structure.
//!
//! Trade-off of counting HWM drops: with `ZMQ_XPUB_NODROP` libzmq refuses a message when *any*
//! matching subscriber's queue is full, so a subscriber that stays connected but stops reading
//! makes the others miss messages on the topics they share with it. ZMTP heartbeats (on by
//! default, [`ZmqPubOptions::heartbeat_interval`]) disconnect such a peer after
//! [`ZmqPubOptions::heartbeat_timeout`], which bounds each such episode.

use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

/// Name of the publishing thread.
pub const THREAD_NAME: &str = "zmq-pub";

/// How long the thread waits between two warnings about drops.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// `ZMQ_XPUB_NODROP` from `zmq.h` (libzmq ≥ 4.1); the `zmq` crate 0.10 has no setter for it.
const ZMQ_XPUB_NODROP: c_int = 69;

// SAFETY: these are the libzmq C API functions with their declared signatures (zmq.h, 4.x);
// the library is linked by `zmq-sys`, which the `zmq` crate depends on.
unsafe extern "C" {
    fn zmq_setsockopt(
        socket: *mut c_void,
        option: c_int,
        optval: *const c_void,
        optvallen: usize,
    ) -> c_int;
    fn zmq_errno() -> c_int;
}

/// Why the publisher could not start. Every variant names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ZmqError {
    /// The endpoint is not usable as a string at all.
    #[error("ZeroMQ endpoint {endpoint:?} is invalid: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An option is out of range.
    #[error("ZeroMQ PUB on {endpoint:?}: {reason}")]
    InvalidOption {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// libzmq refused to bind (malformed address, unknown transport, address in use, ...).
    #[error("cannot bind ZeroMQ PUB socket to {endpoint:?}: {source}{hint}")]
    Bind {
        /// The endpoint as configured.
        endpoint: String,
        /// libzmq's error.
        source: zmq::Error,
        /// A hint for the common cases, starting with "; " (empty when there is none).
        hint: &'static str,
    },
    /// Creating or configuring the socket failed.
    #[error("cannot set up ZeroMQ PUB socket for {endpoint:?}: {what}: {source}")]
    Socket {
        /// The endpoint as configured.
        endpoint: String,
        /// The step that failed.
        what: &'static str,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// The thread could not be spawned.
    #[error("cannot spawn the {THREAD_NAME} thread for {endpoint:?}: {source}")]
    Spawn {
        /// The endpoint as configured.
        endpoint: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The thread ended before saying whether the socket was bound (a panic; see the log).
    #[error("the {THREAD_NAME} thread for {endpoint:?} ended before binding")]
    ThreadDied {
        /// The endpoint as configured.
        endpoint: String,
    },
}

fn bind_hint(e: zmq::Error) -> &'static str {
    match e {
        zmq::Error::EADDRINUSE => {
            "; another process (or another publisher here) is already bound to it"
        }
        zmq::Error::EINVAL => {
            "; expected a ZeroMQ address such as \"tcp://0.0.0.0:5556\", \"tcp://127.0.0.1:*\" or \"ipc:///run/qianliyan/events.sock\""
        }
        zmq::Error::EPROTONOSUPPORT => "; the transport must be tcp://, ipc:// or inproc://",
        zmq::Error::ENODEV => "; the host part names no local interface or address",
        zmq::Error::EADDRNOTAVAIL => "; the address is not assigned to this machine",
        zmq::Error::EACCES => "; permission denied (a port below 1024, or the ipc path)",
        _ => "",
    }
}

/// Counters of the publisher, all since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZmqStats {
    /// Messages handed to libzmq (each one reaches every subscriber connected and matching then).
    pub published: u64,
    /// Messages dropped because the channel to the `zmq-pub` thread was full.
    pub dropped_queue_full: u64,
    /// Messages refused by libzmq because a matching subscriber's queue was at the high-water mark.
    pub dropped_hwm: u64,
    /// Messages lost to any other libzmq send error, or because the thread had ended (expected 0).
    pub dropped_error: u64,
}

impl ZmqStats {
    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_hwm + self.dropped_error
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    queue_full: AtomicU64,
    hwm: AtomicU64,
    error: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ZmqStats {
        ZmqStats {
            published: self.published.load(Ordering::Relaxed),
            dropped_queue_full: self.queue_full.load(Ordering::Relaxed),
            dropped_hwm: self.hwm.load(Ordering::Relaxed),
            dropped_error: self.error.load(Ordering::Relaxed),
        }
    }
}

/// Options of [`ZmqPublisher::start_with`]; [`ZmqPublisher::start`] uses the defaults but for
/// `hwm` and `queue`.
#[derive(Debug, Clone)]
pub struct ZmqPubOptions {
    /// `ZMQ_SNDHWM`: messages libzmq queues per subscriber before refusing (at least 1).
    pub hwm: i32,
    /// Capacity of the channel in front of the `zmq-pub` thread, in messages (at least 1).
    pub queue: usize,
    /// ZMTP heartbeat interval (`ZMQ_HEARTBEAT_IVL`); `None` turns heartbeats off.
    pub heartbeat_interval: Option<Duration>,
    /// A peer that sends nothing for this long after a PING is disconnected
    /// (`ZMQ_HEARTBEAT_TIMEOUT`); also sent as the TTL subscribers apply to us.
    pub heartbeat_timeout: Duration,
}

impl Default for ZmqPubOptions {
    fn default() -> Self {
        ZmqPubOptions {
            hwm: 1000,
            queue: 4096,
            heartbeat_interval: Some(Duration::from_secs(1)),
            heartbeat_timeout: Duration::from_secs(3),
        }
    }
}

/// One message for the thread.
struct Outgoing {
    topic: String,
    json: String,
}

/// The ZeroMQ PUB sink. `Send + Sync`: share it behind an `Arc`; dropping it shuts it down too.
#[derive(Debug)]
pub struct ZmqPublisher {
    tx: Sender<Outgoing>,
    /// Dropped to tell the thread to stop.
    stop: Option<Sender<()>>,
    counters: Arc<Counters>,
    endpoint: String,
    thread: Option<JoinHandle<()>>,
}

impl ZmqPublisher {
    /// Binds a PUB socket to `endpoint` (for example `"tcp://0.0.0.0:5556"`) with send high-water
    /// mark `hwm` and a channel of `queue` messages in front of it, on a new thread `zmq-pub`.
    /// Returns once the socket is bound, or with an error naming the endpoint.
    pub fn start(endpoint: &str, hwm: i32, queue: usize) -> Result<ZmqPublisher, ZmqError> {
        ZmqPublisher::start_with(
            endpoint,
            ZmqPubOptions {
                hwm,
                queue,
                ..ZmqPubOptions::default()
            },
        )
    }

    /// [`ZmqPublisher::start`] with every option.
    pub fn start_with(endpoint: &str, options: ZmqPubOptions) -> Result<ZmqPublisher, ZmqError> {
        validate(endpoint, &options)?;
        let (tx, rx) = crossbeam_channel::bounded::<Outgoing>(options.queue);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<String, ZmqError>>(1);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let configured = endpoint.to_owned();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let socket = match open_socket(&configured, &options) {
                    Ok((socket, bound)) => {
                        tracing::info!(endpoint = %bound, hwm = options.hwm, queue = options.queue,
                            "ZeroMQ PUB bound");
                        let _ = ready_tx.send(Ok(bound));
                        socket
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(&socket, &rx, &stop_rx, &thread_counters, options.queue);
                // Linger is 0 (set at creation): closing discards what libzmq still queues.
                drop(socket);
            })
            .map_err(|source| ZmqError::Spawn {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(bound)) => Ok(ZmqPublisher {
                tx,
                stop: Some(stop_tx),
                counters,
                endpoint: bound,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ZmqError::ThreadDied {
                    endpoint: endpoint.to_owned(),
                })
            }
        }
    }

    /// The endpoint actually bound (a `*` port resolved to the port chosen), as libzmq reports it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Queues an alert for topic `alert.<alert_type>.<area_code or "none">`; `json` is the second
    /// frame. Never blocks. Returns whether it was queued (if not, it was counted as a drop).
    pub fn publish_alert(&self, alert_type: &str, area_code: Option<&str>, json: String) -> bool {
        self.enqueue(alert_topic(alert_type, area_code), json)
    }

    /// Queues a camera health event for topic `health.<camera_id>`; `json` is the second frame.
    /// Never blocks. Returns whether it was queued (if not, it was counted as a drop).
    pub fn publish_health(&self, camera_id: &str, json: String) -> bool {
        self.enqueue(health_topic(camera_id), json)
    }

    fn enqueue(&self, topic: String, json: String) -> bool {
        match self.tx.try_send(Outgoing { topic, json }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.error.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> ZmqStats {
        self.counters.snapshot()
    }

    /// Stops the thread and joins it. Messages still in the channel get one non-blocking send
    /// attempt; what libzmq still holds for subscribers is discarded (linger 0). Returns the final
    /// counters.
    pub fn shutdown(mut self) -> ZmqStats {
        self.stop_and_join();
        self.stats()
    }

    fn stop_and_join(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(endpoint = %self.endpoint, "the {THREAD_NAME} thread panicked");
        }
    }
}

impl Drop for ZmqPublisher {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The topic of an alert: `alert.<type>.<area code>`, `none` for a missing or empty area code.
/// In each part, `.` and whitespace become `_`; an empty part becomes `_`.
pub fn alert_topic(alert_type: &str, area_code: Option<&str>) -> String {
    let area = area_code.filter(|a| !a.is_empty()).unwrap_or("none");
    let mut topic = String::with_capacity(7 + alert_type.len() + area.len());
    topic.push_str("alert.");
    push_part(&mut topic, alert_type);
    topic.push('.');
    push_part(&mut topic, area);
    topic
}

/// The topic of a camera health event: `health.<camera id>`, cleaned as in [`alert_topic`].
pub fn health_topic(camera_id: &str) -> String {
    let mut topic = String::with_capacity(7 + camera_id.len());
    topic.push_str("health.");
    push_part(&mut topic, camera_id);
    topic
}

/// Appends one topic part with every `.` and whitespace character replaced by `_`; an empty part
/// becomes `_`.
fn push_part(topic: &mut String, part: &str) {
    if part.is_empty() {
        topic.push('_');
        return;
    }
    topic.extend(part.chars().map(|c| {
        if c == '.' || c.is_whitespace() {
            '_'
        } else {
            c
        }
    }));
}

fn validate(endpoint: &str, options: &ZmqPubOptions) -> Result<(), ZmqError> {
    let invalid = |reason| ZmqError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if endpoint.trim().is_empty() {
        return Err(invalid("it is empty; expected e.g. \"tcp://0.0.0.0:5556\""));
    }
    if endpoint.contains('\0') {
        return Err(invalid("it contains a NUL character"));
    }
    let bad_option = |reason: String| ZmqError::InvalidOption {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if options.hwm < 1 {
        return Err(bad_option(format!(
            "hwm must be at least 1 (0 would mean an unbounded queue per subscriber), got {}",
            options.hwm
        )));
    }
    if options.queue == 0 {
        return Err(bad_option("queue must be at least 1".into()));
    }
    if let Some(ivl) = options.heartbeat_interval {
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        if ms(ivl) < 1 || ms(options.heartbeat_timeout) < 1 {
            return Err(bad_option(
                "heartbeat interval and timeout must be at least 1 ms".into(),
            ));
        }
        // ZMQ_HEARTBEAT_TTL is carried in deciseconds in 16 bits: at most 6553.5 s.
        if options.heartbeat_timeout > Duration::from_millis(6_553_500) {
            return Err(bad_option(
                "heartbeat timeout must be at most 6553 s".into(),
            ));
        }
    }
    Ok(())
}

/// Creates, configures and binds the socket; returns it with the endpoint libzmq reports.
fn open_socket(endpoint: &str, options: &ZmqPubOptions) -> Result<(zmq::Socket, String), ZmqError> {
    let setup = |what: &'static str| {
        move |source| ZmqError::Socket {
            endpoint: endpoint.to_owned(),
            what,
            source,
        }
    };
    let ctx = zmq::Context::new();
    let mut socket = ctx.socket(zmq::PUB).map_err(setup("creating the socket"))?;
    socket.set_linger(0).map_err(setup("ZMQ_LINGER"))?;
    socket
        .set_sndhwm(options.hwm)
        .map_err(setup("ZMQ_SNDHWM"))?;
    set_nodrop(&mut socket).map_err(setup("ZMQ_XPUB_NODROP"))?;
    if let Some(ivl) = options.heartbeat_interval {
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        socket
            .set_heartbeat_ivl(ms(ivl))
            .map_err(setup("ZMQ_HEARTBEAT_IVL"))?;
        socket
            .set_heartbeat_timeout(ms(options.heartbeat_timeout))
            .map_err(setup("ZMQ_HEARTBEAT_TIMEOUT"))?;
        socket
            .set_heartbeat_ttl(ms(options.heartbeat_timeout))
            .map_err(setup("ZMQ_HEARTBEAT_TTL"))?;
    }
    socket.bind(endpoint).map_err(|source| ZmqError::Bind {
        endpoint: endpoint.to_owned(),
        source,
        hint: bind_hint(source),
    })?;
    let bound = match socket.get_last_endpoint() {
        Ok(Ok(bound)) if !bound.is_empty() => bound,
        _ => endpoint.to_owned(),
    };
    Ok((socket, bound))
}

/// Sets `ZMQ_XPUB_NODROP` (valid on PUB sockets): at the HWM, a send fails with `EAGAIN` instead
/// of being discarded silently, so the drop can be counted.
fn set_nodrop(socket: &mut zmq::Socket) -> Result<(), zmq::Error> {
    let on: c_int = 1;
    // SAFETY: `socket` is a live, open socket owned by this thread for the whole call; `optval`
    // points to a `c_int` that outlives the call and `optvallen` is its size, as libzmq expects
    // for this option.
    let rc = unsafe {
        zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_XPUB_NODROP,
            std::ptr::from_ref(&on).cast::<c_void>(),
            std::mem::size_of::<c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: no arguments; reads libzmq's thread-local error number.
        Err(zmq::Error::from_raw(unsafe { zmq_errno() }))
    }
}

/// The thread's loop: until told to stop, send what arrives; then give what is still queued one
/// attempt each.
fn run(
    socket: &zmq::Socket,
    rx: &Receiver<Outgoing>,
    stop: &Receiver<()>,
    counters: &Counters,
    queue: usize,
) {
    let mut warn = DropWarning::default();
    loop {
        crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(msg) => send(socket, msg, counters, &mut warn),
                Err(_) => break,
            },
            recv(stop) -> _ => break,
        }
    }
    // At most one channel's worth, so a producer that keeps publishing cannot hold shutdown up.
    for _ in 0..queue {
        match rx.try_recv() {
            Ok(msg) => send(socket, msg, counters, &mut warn),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    let stats = counters.snapshot();
    tracing::info!(
        published = stats.published,
        dropped_queue_full = stats.dropped_queue_full,
        dropped_hwm = stats.dropped_hwm,
        dropped_error = stats.dropped_error,
        "ZeroMQ PUB stopped"
    );
}

/// Sends `[topic, json]` without blocking and counts the outcome.
fn send(socket: &zmq::Socket, msg: Outgoing, counters: &Counters, warn: &mut DropWarning) {
    match socket.send(msg.topic.as_bytes(), zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => {
            counters.hwm.fetch_add(1, Ordering::Relaxed);
            warn.maybe(counters, &msg.topic, None);
            return;
        }
        Err(e) => {
            counters.error.fetch_add(1, Ordering::Relaxed);
            warn.maybe(counters, &msg.topic, Some(e));
            return;
        }
    }
    // libzmq checks the HWM on a message's first frame only, so the body is not refused for it;
    // a transient EINTR/EAGAIN is retried so the socket never stays inside a half-sent message.
    let mut attempts = 0;
    loop {
        match socket.send(msg.json.as_bytes(), zmq::DONTWAIT) {
            Ok(()) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(zmq::Error::EINTR | zmq::Error::EAGAIN) if attempts < 1000 => {
                attempts += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                counters.error.fetch_add(1, Ordering::Relaxed);
                warn.maybe(counters, &msg.topic, Some(e));
                return;
            }
        }
    }
}

/// Rate-limits the warning about drops to one per [`WARN_EVERY`].
#[derive(Default)]
struct DropWarning {
    last: Option<Instant>,
}

impl DropWarning {
    fn maybe(&mut self, counters: &Counters, topic: &str, error: Option<zmq::Error>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return;
        }
        self.last = Some(now);
        let s = counters.snapshot();
        match error {
            None => tracing::warn!(
                topic,
                dropped_hwm = s.dropped_hwm,
                dropped_queue_full = s.dropped_queue_full,
                "ZeroMQ PUB dropping: a subscriber's queue is at the high-water mark (best effort)"
            ),
            Some(e) => tracing::error!(
                topic,
                error = %e,
                dropped_error = s.dropped_error,
                "ZeroMQ PUB send failed; message dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SUB socket connected to `endpoint`, subscribed to `prefix`, with a receive timeout.
    fn sub(ctx: &zmq::Context, endpoint: &str, prefix: &str) -> zmq::Socket {
        let s = ctx.socket(zmq::SUB).unwrap();
        s.set_linger(0).unwrap();
        s.set_rcvtimeo(50).unwrap();
        s.set_subscribe(prefix.as_bytes()).unwrap();
        s.connect(endpoint).unwrap();
        s
    }

    /// Next `[topic, json]` within the socket's receive timeout.
    fn recv(s: &zmq::Socket) -> Option<(String, serde_json::Value)> {
        let parts = match s.recv_multipart(0) {
            Ok(parts) => parts,
            Err(zmq::Error::EAGAIN) => return None,
            Err(e) => panic!("recv: {e}"),
        };
        assert_eq!(parts.len(), 2, "two frames: [topic, json]");
        let topic = String::from_utf8(parts[0].clone()).unwrap();
        let json = serde_json::from_slice(&parts[1]).unwrap();
        Some((topic, json))
    }

    /// PUB/SUB slow joiner: publishes with `publish` until `s` receives one message, then drains
    /// what is in flight. Panics after 10 s.
    fn wait_joined(s: &zmq::Socket, publish: impl Fn()) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "subscriber never received anything"
            );
            publish();
            if recv(s).is_some() {
                break;
            }
        }
        while recv(s).is_some() {}
    }

    /// Polls `cond` for up to 10 s.
    fn wait_until(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    fn local() -> ZmqPublisher {
        ZmqPublisher::start("tcp://127.0.0.1:*", 10_000, 1024).unwrap()
    }

    #[test]
    fn topics_are_built_and_cleaned() {
        assert_eq!(
            alert_topic("intrusion", Some("341102")),
            "alert.intrusion.341102"
        );
        assert_eq!(
            alert_topic("scene_anomaly", None),
            "alert.scene_anomaly.none"
        );
        assert_eq!(alert_topic("intrusion", Some("")), "alert.intrusion.none");
        assert_eq!(
            alert_topic("a.b c", Some("34.11\t02")),
            "alert.a_b_c.34_11_02"
        );
        assert_eq!(alert_topic("", Some("3411")), "alert._.3411");
        assert_eq!(health_topic("cam-001"), "health.cam-001");
        assert_eq!(health_topic("gate 3.east"), "health.gate_3_east");
        assert_eq!(health_topic("东门\u{3000}1号"), "health.东门_1号");
        assert_eq!(health_topic(""), "health._");
    }

    #[test]
    fn sub_on_alert_prefix_receives_alerts_in_order() {
        let p = local();
        assert!(
            p.endpoint().starts_with("tcp://127.0.0.1:"),
            "{}",
            p.endpoint()
        );
        let ctx = zmq::Context::new();
        let s = sub(&ctx, p.endpoint(), "alert.");
        wait_joined(&s, || {
            p.publish_alert("intrusion", Some("3411"), r#"{"warmup":true}"#.into());
        });
        const N: u64 = 500;
        for i in 0..N {
            let area = ["341102", "341103"][(i % 2) as usize];
            assert!(p.publish_alert("intrusion", Some(area), format!(r#"{{"seq":{i}}}"#)));
        }
        let mut next = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while next < N {
            assert!(Instant::now() < deadline, "only {next} of {N} arrived");
            let Some((topic, json)) = recv(&s) else {
                continue;
            };
            if json.get("warmup").is_some() {
                continue;
            }
            assert_eq!(json["seq"], next, "in order, none missing");
            let area = ["341102", "341103"][(next % 2) as usize];
            assert_eq!(topic, format!("alert.intrusion.{area}"));
            next += 1;
        }
        let stats = p.shutdown();
        assert_eq!(stats.dropped(), 0, "{stats:?}");
        assert!(stats.published >= N, "{stats:?}");
    }

    #[test]
    fn sub_gets_only_matching_topics() {
        let p = local();
        let ctx = zmq::Context::new();
        let s = sub(&ctx, p.endpoint(), "alert.intrusion.3411");
        wait_joined(&s, || {
            p.publish_alert("intrusion", Some("3411"), r#"{"warmup":true}"#.into());
        });
        let sends: [(&str, Option<&str>, u32); 7] = [
            ("intrusion", Some("3411"), 1),
            ("intrusion", Some("3412"), 2),
            ("loitering", Some("3411"), 3),
            ("intrusion", None, 4),
            // Area codes are hierarchical and subscriptions are prefixes: a city code matches
            // its counties.
            ("intrusion", Some("341102"), 5),
            ("intrusion.3411", Some("x"), 6), // cleaned to alert.intrusion_3411.x
            ("intrusion", Some("3411"), 7),
        ];
        for (t, area, n) in sends {
            p.publish_alert(t, area, format!(r#"{{"n":{n}}}"#));
        }
        p.publish_health("3411", r#"{"n":8}"#.into());
        p.publish_alert("intrusion", Some("3411"), r#"{"end":true}"#.into());
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "end marker never arrived; got {got:?}"
            );
            let Some((topic, json)) = recv(&s) else {
                continue;
            };
            if json.get("warmup").is_some() {
                continue;
            }
            if json.get("end").is_some() {
                break;
            }
            got.push((topic, json["n"].as_u64().unwrap()));
        }
        assert_eq!(
            got,
            [
                ("alert.intrusion.3411".to_string(), 1),
                ("alert.intrusion.341102".to_string(), 5),
                ("alert.intrusion.3411".to_string(), 7),
            ]
        );
    }

    #[test]
    fn health_messages_arrive_and_alerts_do_not() {
        let p = local();
        let ctx = zmq::Context::new();
        let s = sub(&ctx, p.endpoint(), "health.");
        wait_joined(&s, || {
            p.publish_health("warmup", r#"{"warmup":true}"#.into());
        });
        p.publish_health(
            "cam-001",
            r#"{"state":"offline","reason":"timeout"}"#.into(),
        );
        p.publish_alert("video_fault", Some("341102"), r#"{"state":"x"}"#.into());
        p.publish_health("gate 3.east", r#"{"state":"online"}"#.into());
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 2 {
            assert!(Instant::now() < deadline, "got {got:?}");
            if let Some((topic, json)) = recv(&s)
                && json.get("warmup").is_none()
            {
                got.push((topic, json["state"].as_str().unwrap().to_owned()));
            }
        }
        assert_eq!(
            got,
            [
                ("health.cam-001".to_string(), "offline".to_string()),
                ("health.gate_3_east".to_string(), "online".to_string()),
            ]
        );
        assert!(recv(&s).is_none(), "no alert on a health subscription");
    }

    #[test]
    fn bad_endpoints_give_clear_errors() {
        for (endpoint, needle) in [
            ("tcp://not an endpoint", "expected a ZeroMQ address"),
            ("tcp://127.0.0.1", "expected a ZeroMQ address"),
            ("bogus://x", "transport"),
            ("", "empty"),
            ("tcp://127.0.0.1:5556\0", "NUL"),
        ] {
            let e = ZmqPublisher::start(endpoint, 1000, 16).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{endpoint:?}")),
                "names the endpoint: {msg}"
            );
            assert!(msg.contains(needle), "{endpoint:?}: {msg}");
        }
        let first = local();
        let e = ZmqPublisher::start(first.endpoint(), 1000, 16).unwrap_err();
        assert!(
            matches!(
                e,
                ZmqError::Bind {
                    source: zmq::Error::EADDRINUSE,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(first.endpoint()) && msg.contains("in use"),
            "{msg}"
        );
        let e = ZmqPublisher::start("tcp://127.0.0.1:*", 0, 16).unwrap_err();
        assert!(e.to_string().contains("hwm must be at least 1"), "{e}");
        let e = ZmqPublisher::start("tcp://127.0.0.1:*", 10, 0).unwrap_err();
        assert!(e.to_string().contains("queue must be at least 1"), "{e}");
    }

    /// A subscriber that never reads, with a tiny HWM on both sides: publishing never blocks and
    /// the refusals are counted as `hwm` drops.
    #[test]
    fn stalled_subscriber_makes_hwm_drops_not_blocking() {
        const N: u64 = 100_000;
        let p = ZmqPublisher::start("tcp://127.0.0.1:*", 2, N as usize).unwrap();
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::SUB).unwrap();
        s.set_linger(0).unwrap();
        s.set_rcvtimeo(50).unwrap();
        s.set_rcvhwm(2).unwrap();
        s.set_rcvbuf(4096).unwrap();
        s.set_subscribe(b"alert.").unwrap();
        s.connect(p.endpoint()).unwrap();
        // Once one message got through, the subscription is in place; from then on `s` never reads.
        wait_joined(&s, || {
            p.publish_alert("probe", None, "{}".into());
        });
        let before = p.stats();

        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
        let t = Instant::now();
        for _ in 0..N {
            p.publish_alert("intrusion", Some("341102"), body.clone());
        }
        let publishing = t.elapsed();
        assert!(
            publishing < Duration::from_secs(5),
            "publish blocked: {publishing:?}"
        );

        // The thread never blocks either: it accounts for every message promptly.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = p.stats();
            if s.published + s.dropped() - before.published - before.dropped() >= N {
                break;
            }
            assert!(Instant::now() < deadline, "thread stuck: {s:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = p.stats();
        assert!(stats.dropped_hwm > 0, "{stats:?}");
        assert_eq!(stats.dropped_error, 0, "{stats:?}");
        let t = Instant::now();
        p.shutdown();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            t.elapsed()
        );
    }

    /// With NODROP, a stalled subscriber makes libzmq refuse the messages it shares with the
    /// others; heartbeats disconnect it, so a healthy subscriber keeps being served. (Without
    /// heartbeats the healthy subscriber gets nothing once the stalled one's buffers are full.)
    #[test]
    fn heartbeat_ends_a_stalled_subscribers_blackout() {
        let p = ZmqPublisher::start_with(
            "tcp://127.0.0.1:*",
            ZmqPubOptions {
                hwm: 1000,
                queue: 100_000,
                heartbeat_interval: Some(Duration::from_millis(100)),
                heartbeat_timeout: Duration::from_millis(300),
            },
        )
        .unwrap();
        let ctx = zmq::Context::new();
        let stalled = sub(&ctx, p.endpoint(), "alert.");
        wait_joined(&stalled, || {
            p.publish_alert("probe", None, "{}".into());
        });
        // From here on `stalled` never reads. `healthy` reads all the time on its own thread.
        let healthy = sub(&ctx, p.endpoint(), "alert.");
        wait_joined(&healthy, || {
            p.publish_alert("probe", None, "{}".into());
        });
        // Highest `seq` the healthy subscriber has received.
        let newest = Arc::new(AtomicU64::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (newest, done) = (Arc::clone(&newest), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some((_, json)) = recv(&healthy)
                        && let Some(seq) = json["seq"].as_u64()
                    {
                        newest.fetch_max(seq, Ordering::Relaxed);
                    }
                }
            })
        };

        // Publish steadily for 3 s, far more than the stalled subscriber's socket buffers take.
        let pad = "x".repeat(1500);
        let start = Instant::now();
        let mut seq = 0u64;
        let mut seq_at_2s = None;
        while start.elapsed() < Duration::from_secs(3) {
            if seq_at_2s.is_none() && start.elapsed() >= Duration::from_secs(2) {
                seq_at_2s = Some(seq);
            }
            for _ in 0..20 {
                seq += 1;
                p.publish_alert(
                    "intrusion",
                    None,
                    format!(r#"{{"seq":{seq},"pad":"{pad}"}}"#),
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Usually `dropped_hwm > 0` here; not asserted, since on a loaded machine the heartbeat
        // can cut the stalled subscriber off before its buffers fill.
        let stats = p.stats();
        // In the last second the healthy subscriber still received: the stalled one was cut off.
        let seq_at_2s = seq_at_2s.unwrap();
        assert!(
            wait_until(|| newest.load(Ordering::Relaxed) > seq_at_2s),
            "healthy subscriber starved: newest {} of {seq}, {seq_at_2s} at 2 s; {stats:?}",
            newest.load(Ordering::Relaxed)
        );
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        drop(stalled);
    }

    #[test]
    fn publish_never_blocks_when_the_queue_is_full_and_shutdown_is_prompt() {
        let p = ZmqPublisher::start("tcp://127.0.0.1:*", 10, 1).unwrap();
        let t = Instant::now();
        let mut queued = 0u64;
        for _ in 0..10_000 {
            queued += u64::from(p.publish_health("cam-1", "{}".into()));
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let stats = p.shutdown();
        assert_eq!(stats.dropped_queue_full, 10_000 - queued, "{stats:?}");
        // No subscriber: libzmq accepts and discards, which counts as published.
        assert_eq!(stats.published, queued, "{stats:?}");
    }

    #[test]
    fn the_thread_is_named() {
        let p = local();
        let name = p
            .thread
            .as_ref()
            .unwrap()
            .thread()
            .name()
            .map(str::to_owned);
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        drop(p); // Drop stops and joins too.
    }
}
