//! One camera's health state machine: session events, media arrivals and VQD samples come in,
//! [`Transition`]s come out of [`CameraTracker::poll`]. Time comes only from the [`Clock`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::state::{CameraState, OfflineReason, QualityFault, Status, Transition};
use super::vqd::{VqdConfig, VqdDetector, VqdSample};
use crate::clock::Clock;
use crate::config::HealthConfig;

/// Width of one rate bucket.
const SLOT_MS: u64 = 1000;
/// Buckets kept: rates cover the last 9–10 s.
const SLOTS: usize = 10;
/// The low-fps check waits until the rate covers this much of an up period.
const LOW_FPS_MIN_SPAN: Duration = Duration::from_secs(5);

/// Timing and thresholds of one camera's health.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// A reported failure or a quality fault must hold this long to show (and a fault be gone this long to clear).
    pub grace: Duration,
    /// No media for this long while playing is `offline(stalled)` at once (this already is the grace).
    pub stall_after: Duration,
    /// The stream's nominal frame rate; below half of it (held for `grace`) is `low_fps`. 0 disables.
    pub expected_fps: f64,
    /// Video-quality thresholds.
    pub vqd: VqdConfig,
}

impl TrackerConfig {
    /// Health timing from the validated config, default VQD thresholds.
    pub fn new(health: &HealthConfig, expected_fps: f64) -> Self {
        Self {
            grace: health.grace,
            stall_after: health.offline_after,
            expected_fps,
            vqd: VqdConfig::default(),
        }
    }
}

/// Events and byte counts in 1-s buckets over the last ~10 s.
#[derive(Debug, Clone)]
struct RateWindow {
    origin: Instant,
    /// (slot number, events, bytes); a slot number older than the window is stale.
    slots: [(u64, u32, u64); SLOTS],
    first: Option<Instant>,
}

impl RateWindow {
    fn new(origin: Instant) -> Self {
        Self {
            origin,
            slots: [(u64::MAX, 0, 0); SLOTS],
            first: None,
        }
    }

    fn slot(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
            / SLOT_MS
    }

    fn clear(&mut self) {
        self.slots = [(u64::MAX, 0, 0); SLOTS];
        self.first = None;
    }

    fn add(&mut self, now: Instant, bytes: u64) {
        self.first.get_or_insert(now);
        let s = self.slot(now);
        let e = &mut self.slots[(s % SLOTS as u64) as usize];
        if e.0 != s {
            *e = (s, 0, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.2 = e.2.saturating_add(bytes);
    }

    /// Time the window covers: from the older of (window start, first event) to now.
    fn span(&self, now: Instant) -> Duration {
        let Some(first) = self.first else {
            return Duration::ZERO;
        };
        let s = self.slot(now);
        let oldest = s.saturating_sub(SLOTS as u64 - 1);
        let start = (self.origin + Duration::from_millis(oldest * SLOT_MS)).max(first);
        now.saturating_duration_since(start)
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let s = self.slot(now);
        self.slots
            .iter()
            .filter(|e| e.0 <= s && s - e.0 < SLOTS as u64)
            .fold((0, 0), |(n, b), e| (n + u64::from(e.1), b + e.2))
    }

    /// Events per second; a span under 1 s counts as 1 s so the first event does not read as a burst.
    fn rate(&self, now: Instant) -> (f64, f64) {
        let (n, b) = self.totals(now);
        let span = self.span(now).max(Duration::from_secs(1)).as_secs_f64();
        (n as f64 / span, b as f64 / span)
    }
}

/// The connection as ingest reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting,
    Playing { since: Instant },
    Failed,
}

/// Hysteresis of one quality fault.
#[derive(Debug, Clone, Copy)]
struct FaultTimer {
    /// The condition as last measured.
    raw: bool,
    raw_since: Instant,
    /// What is shown (changes after `raw` differs for `grace`).
    shown: bool,
    shown_since: Instant,
}

impl FaultTimer {
    fn new(now: Instant) -> Self {
        Self {
            raw: false,
            raw_since: now,
            shown: false,
            shown_since: now,
        }
    }
}

/// The health state machine of one camera.
///
/// The owner feeds it session events (`on_connecting`, `on_playing`, `on_failure`), media arrivals
/// (`on_media`), VQD samples (`on_decoded`) and inventory flags (`set_enabled`, `set_maintenance`),
/// and calls [`CameraTracker::poll`] after each input and on a ~1 s timer; `poll` reports each change
/// once. Rules (DOMAIN.md "Camera health"):
/// - a reported failure shows as `offline(reason)` only once the camera stayed down for `grace`, so a
///   reconnect that delivers media within `grace` never shows offline;
/// - no media for `stall_after` while playing, or a connect attempt with no outcome for `stall_after`,
///   is `offline(stalled)` / `offline(timeout)` at once (`stall_after` is the grace);
/// - media flowing after a session came up is `online` at once (from `connecting` or `offline`);
/// - a quality fault shows after its condition held for `grace` and clears after it was absent for
///   `grace`; online with a fault is `degraded`; `low_fps` is fps in < expected / 2;
/// - `disabled` and `maintenance` override everything;
/// - the reason of an offline camera changes when a different reason held for `grace`.
///
/// A transition's `at` is when its condition began (the failure, the last media before a stall, the
/// first media, the first faulty sample), never before the previous transition and never in the
/// future, so time-weighted rates do not count the grace periods of real outages as online.
#[derive(Debug)]
pub struct CameraTracker {
    camera: String,
    cfg: TrackerConfig,
    clock: Arc<dyn Clock>,
    shown: Status,
    enabled: bool,
    enabled_since: Instant,
    maintenance: bool,
    maintenance_since: Instant,
    link: Link,
    attempt_since: Instant,
    /// Since when the camera has been without media (None while media flows, or before any failure).
    down_since: Option<Instant>,
    /// The tracker's own watchdog (not ingest) put the camera down: no further grace.
    self_detected: bool,
    reason: Option<OfflineReason>,
    reason_since: Instant,
    /// Since when media has been flowing in the current session.
    up_since: Option<Instant>,
    last_media: Option<Instant>,
    media: RateWindow,
    analysed: RateWindow,
    faults: [FaultTimer; QualityFault::ALL.len()],
    vqd: VqdDetector,
    /// Online state from signalling (a GB/T 28181 channel), not from media: no stall watchdog.
    signalled: bool,
    /// What signalling last said (carried over when the camera's definition is replaced).
    last_signal: Option<Result<(), OfflineReason>>,
}

impl CameraTracker {
    /// A tracker in `connecting`, enabled and not in maintenance.
    pub fn new(camera_id: impl Into<String>, cfg: TrackerConfig, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let wall = clock.wall();
        Self {
            camera: camera_id.into(),
            cfg,
            shown: Status::new(CameraState::Connecting, wall),
            enabled: true,
            enabled_since: now,
            maintenance: false,
            maintenance_since: now,
            link: Link::Connecting,
            attempt_since: now,
            down_since: None,
            self_detected: false,
            reason: None,
            reason_since: now,
            up_since: None,
            last_media: None,
            media: RateWindow::new(now),
            analysed: RateWindow::new(now),
            faults: [FaultTimer::new(now); QualityFault::ALL.len()],
            vqd: VqdDetector::new(),
            signalled: false,
            last_signal: None,
            clock,
        }
    }

    /// What signalling last said (`None`: nothing yet).
    pub fn last_signal(&self) -> Option<Result<(), OfflineReason>> {
        self.last_signal
    }

    /// From now on the camera's online state comes from [`CameraTracker::on_signal`] (a GB/T 28181
    /// channel: its device's registration and keepalives), not from media arriving.
    pub fn set_signalled(&mut self) {
        self.signalled = true;
    }

    /// Signalling says the camera is reachable (`Ok`) or not, and why. Only for signalled cameras.
    pub fn on_signal(&mut self, state: Result<(), OfflineReason>) {
        self.last_signal = Some(state);
        let now = self.clock.now();
        match state {
            // A device back online brings up a channel that went down with it, not one whose
            // video request failed (that takes media arriving).
            Ok(())
                if self.up_since.is_none() && self.reason.is_some_and(|r| !r.is_signalling()) => {}
            Ok(()) => self.come_up(now),
            Err(reason) => {
                self.link = Link::Failed;
                // Signalling already waited (keepalive intervals): no further grace.
                self.go_down(now, now, reason, true);
            }
        }
    }

    /// The camera id.
    pub fn camera_id(&self) -> &str {
        &self.camera
    }

    /// The configuration in force.
    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Replaces the configuration (takes effect at the next input or poll).
    pub fn set_config(&mut self, cfg: TrackerConfig) {
        self.cfg = cfg;
    }

    /// The status as last reported by [`CameraTracker::poll`].
    pub fn status(&self) -> Status {
        self.shown.clone()
    }

    /// Access units per second over the last ~10 s of the current session (0 when down).
    pub fn fps_in(&self) -> f64 {
        self.media.rate(self.clock.now()).0
    }

    /// Bits per second received over the last ~10 s of the current session.
    pub fn bitrate_in(&self) -> f64 {
        self.media.rate(self.clock.now()).1 * 8.0
    }

    /// Decoded (analysed) frames per second over the last ~10 s.
    pub fn fps_analysed(&self) -> f64 {
        self.analysed.rate(self.clock.now()).0
    }

    /// When the last access unit arrived.
    pub fn last_media_at(&self) -> Option<SystemTime> {
        self.last_media.map(|t| self.wall_at(t))
    }

    /// The last VQD sample assessed (for "why is it degraded?" views).
    pub fn last_vqd(&self) -> Option<&VqdSample> {
        self.vqd.last()
    }

    /// Ingest is (re)connecting.
    pub fn on_connecting(&mut self) {
        let now = self.clock.now();
        // A signalled camera stays as its signalling has it while its video is requested.
        if !self.signalled && self.up_since.take().is_some() {
            // A new session replaces one that was delivering media without a failure report.
            self.down_since.get_or_insert(now);
        }
        self.link = Link::Connecting;
        self.attempt_since = now;
    }

    /// The session is established (media may follow).
    pub fn on_playing(&mut self) {
        let now = self.clock.now();
        self.link = Link::Playing { since: now };
    }

    /// The session failed or ended, with ingest's classification.
    pub fn on_failure(&mut self, reason: OfflineReason) {
        let now = self.clock.now();
        // Ingest gives up on a silent stream at about the moment the watchdog would: let the watchdog
        // run first so a stall is dated at the last media, not at the moment ingest noticed.
        self.watchdog(now);
        self.link = Link::Failed;
        self.go_down(now, now, reason, false);
    }

    /// An access unit of `bytes` bytes arrived.
    pub fn on_media(&mut self, bytes: usize) {
        let now = self.clock.now();
        if let Some(last) = self.last_media
            && self.up_since.is_some()
            && now.saturating_duration_since(last) >= self.cfg.stall_after
        {
            // A stall the watchdog has not seen yet (no poll in between): media resuming is a new up period.
            self.go_down(last, last, OfflineReason::Stalled, true);
        }
        self.come_up(now);
        self.last_media = Some(now);
        self.media
            .add(now, u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A decoded frame was measured.
    pub fn on_decoded(&mut self, sample: &VqdSample) {
        let now = self.clock.now();
        let wall = self.clock.wall();
        self.analysed.add(now, 0);
        let found = self.vqd.assess(sample, &self.cfg.vqd, wall);
        for f in QualityFault::ALL {
            if f != QualityFault::LowFps {
                self.set_raw(f, found.contains(&f), now);
            }
        }
    }

    /// The camera is enabled or disabled in the inventory; enabling starts over from `connecting`.
    pub fn set_enabled(&mut self, enabled: bool) {
        if enabled == self.enabled {
            return;
        }
        let now = self.clock.now();
        self.enabled = enabled;
        self.enabled_since = now;
        self.restart(now);
    }

    /// The camera entered or left a maintenance window (idempotent; call it every poll).
    pub fn set_maintenance(&mut self, maintenance: bool) {
        if maintenance == self.maintenance {
            return;
        }
        self.maintenance = maintenance;
        self.maintenance_since = self.clock.now();
    }

    /// Applies the timers and reports the change since the last report, if any (each change once).
    pub fn poll(&mut self) -> Option<Transition> {
        let now = self.clock.now();
        self.watchdog(now);
        self.check_low_fps(now);
        for t in &mut self.faults {
            if t.raw != t.shown && now.saturating_duration_since(t.raw_since) >= self.cfg.grace {
                t.shown = t.raw;
                t.shown_since = t.raw_since;
            }
        }
        let (target, cause) = self.target(now);
        if target.same_as(&self.shown) {
            return None;
        }
        let at = self
            .wall_at(cause)
            .max(self.shown.since)
            .min(self.clock.wall());
        let to = Status {
            since: at,
            ..target
        };
        if matches!(to.state, CameraState::Offline) {
            // Nothing to judge while down; a camera coming back is judged afresh.
            self.faults = [FaultTimer::new(now); QualityFault::ALL.len()];
            self.vqd.reset();
        }
        let from = std::mem::replace(&mut self.shown, to.clone());
        Some(Transition {
            camera: self.camera.clone(),
            at,
            from,
            to,
        })
    }

    fn wall_at(&self, t: Instant) -> SystemTime {
        let now = self.clock.now();
        let wall = self.clock.wall();
        wall.checked_sub(now.saturating_duration_since(t))
            .unwrap_or(wall)
    }

    /// Playing, and up from now on unless already up (a new up period starts afresh).
    fn come_up(&mut self, now: Instant) {
        if !matches!(self.link, Link::Playing { .. }) {
            self.link = Link::Playing { since: now };
        }
        if self.up_since.is_none() {
            self.up_since = Some(now);
            self.down_since = None;
            self.self_detected = false;
            self.reason = None;
            self.media.clear();
        }
    }

    fn go_down(&mut self, now: Instant, since: Instant, reason: OfflineReason, own: bool) {
        if self.up_since.take().is_some() || self.down_since.is_none() {
            self.down_since = Some(since);
            self.self_detected = own;
        } else if !own {
            self.self_detected = false;
        }
        if self.reason != Some(reason) {
            self.reason = Some(reason);
            self.reason_since = since.min(now);
        }
        self.media.clear();
    }

    fn restart(&mut self, now: Instant) {
        self.link = Link::Connecting;
        self.attempt_since = now;
        self.down_since = None;
        self.self_detected = false;
        self.reason = None;
        self.up_since = None;
        self.media.clear();
        self.analysed.clear();
        self.faults = [FaultTimer::new(now); QualityFault::ALL.len()];
        self.vqd.reset();
    }

    fn set_raw(&mut self, f: QualityFault, on: bool, now: Instant) {
        let t = &mut self.faults[f.index()];
        if t.raw != on {
            t.raw = on;
            t.raw_since = now;
        }
    }

    /// The tracker's own timeouts: a stalled session, a session with no first media, a hung connect.
    fn watchdog(&mut self, now: Instant) {
        if self.signalled {
            return;
        }
        let stall = self.cfg.stall_after;
        match self.link {
            Link::Playing { since } => {
                if self.up_since.is_some() {
                    if let Some(last) = self.last_media
                        && now.saturating_duration_since(last) >= stall
                    {
                        self.go_down(now, last, OfflineReason::Stalled, true);
                    }
                } else if self.reason != Some(OfflineReason::Stalled)
                    && now.saturating_duration_since(since) >= stall
                {
                    self.go_down(now, since, OfflineReason::Stalled, true);
                }
            }
            Link::Connecting => {
                if self.down_since.is_none()
                    && now.saturating_duration_since(self.attempt_since) >= stall
                {
                    self.go_down(now, self.attempt_since, OfflineReason::Timeout, true);
                }
            }
            Link::Failed => {}
        }
    }

    fn check_low_fps(&mut self, now: Instant) {
        if self.cfg.expected_fps <= 0.0 {
            self.set_raw(QualityFault::LowFps, false, now);
            return;
        }
        if self.up_since.is_none() || self.media.span(now) < LOW_FPS_MIN_SPAN {
            return;
        }
        let low = self.media.rate(now).0 < self.cfg.expected_fps / 2.0;
        self.set_raw(QualityFault::LowFps, low, now);
    }

    /// The status the inputs call for now (its `since` unused) and the instant its condition began.
    fn target(&self, now: Instant) -> (Status, Instant) {
        let epoch = self.shown.since;
        if !self.enabled {
            return (
                Status::new(CameraState::Disabled, epoch),
                self.enabled_since,
            );
        }
        if self.maintenance {
            return (
                Status::new(CameraState::Maintenance, epoch),
                self.maintenance_since,
            );
        }
        // Leaving an override: judge afresh from `connecting`, and not before the override ended.
        let overridden = self.shown.state.is_excluded();
        let floor = if overridden {
            self.enabled_since.max(self.maintenance_since)
        } else {
            self.attempt_since.min(now)
        };
        let base = if overridden {
            Status::new(CameraState::Connecting, epoch)
        } else {
            self.shown.clone()
        };

        let (target, cause) = if let Some(up) = self.up_since {
            let faults: Vec<QualityFault> = QualityFault::ALL
                .into_iter()
                .filter(|f| self.faults[f.index()].shown)
                .collect();
            // The latest change among faults that differ from what is shown.
            let changed = QualityFault::ALL
                .into_iter()
                .filter(|f| faults.contains(f) != base.faults.contains(f))
                .map(|f| self.faults[f.index()].shown_since)
                .max();
            let cause = if base.state.is_up() {
                changed.unwrap_or(now)
            } else {
                changed.map_or(up, |c| c.max(up))
            };
            let state = if faults.is_empty() {
                CameraState::Online
            } else {
                CameraState::Degraded
            };
            (
                Status {
                    state,
                    reason: None,
                    faults,
                    since: epoch,
                },
                cause,
            )
        } else if base.state == CameraState::Offline {
            match self.reason {
                Some(r)
                    if Some(r) != base.reason
                        && now.saturating_duration_since(self.reason_since) >= self.cfg.grace =>
                {
                    (offline(r, epoch), self.reason_since)
                }
                _ => (base, now),
            }
        } else {
            match self.down_since {
                Some(d) => {
                    let hold = if self.self_detected {
                        Duration::ZERO
                    } else {
                        self.cfg.grace
                    };
                    if now.saturating_duration_since(d) >= hold {
                        let r = self.reason.unwrap_or(OfflineReason::Timeout);
                        (offline(r, epoch), d)
                    } else {
                        (base, floor)
                    }
                }
                None => (base, floor),
            }
        };
        let cause = if overridden { cause.max(floor) } else { cause };
        (target, cause)
    }
}

fn offline(reason: OfflineReason, since: SystemTime) -> Status {
    Status {
        state: CameraState::Offline,
        reason: Some(reason),
        faults: Vec::new(),
        since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::health::vqd::tests::{H, W, noisy};
    use CameraState::*;

    const GRACE: Duration = Duration::from_secs(5);
    const STALL: Duration = Duration::from_secs(10);

    struct Rig {
        clock: ManualClock,
        t: CameraTracker,
        log: Vec<Transition>,
        start: SystemTime,
    }

    impl Rig {
        fn new(expected_fps: f64) -> Self {
            let clock = ManualClock::default();
            let cfg = TrackerConfig {
                grace: GRACE,
                stall_after: STALL,
                expected_fps,
                vqd: VqdConfig::default(),
            };
            let start = clock.wall();
            let t = CameraTracker::new("cam1", cfg, Arc::new(clock.clone()));
            Self {
                clock,
                t,
                log: Vec::new(),
                start,
            }
        }

        /// Seconds since the rig started, of a wall time.
        fn secs(&self, t: SystemTime) -> f64 {
            t.duration_since(self.start)
                .unwrap_or_default()
                .as_secs_f64()
        }

        fn poll(&mut self) {
            while let Some(tr) = self.t.poll() {
                assert!(!tr.from.same_as(&tr.to), "{tr:?}");
                assert_eq!(tr.at, tr.to.since);
                if let Some(prev) = self.log.last() {
                    assert!(tr.at >= prev.at, "{tr:?} after {prev:?}");
                    assert_eq!(tr.from, prev.to);
                }
                self.log.push(tr);
            }
        }

        /// Advances in 100 ms steps, with media at `fps` (0 = none) and a poll each step.
        fn run(&mut self, secs: f64, fps: f64) {
            let steps = (secs * 10.0).round() as u32;
            let mut owed = 0.0;
            for _ in 0..steps {
                self.clock.advance(Duration::from_millis(100));
                owed += fps / 10.0;
                while owed >= 1.0 {
                    self.t.on_media(4000);
                    owed -= 1.0;
                }
                self.poll();
            }
        }

        /// Like `run` at 10 fps, with a VQD sample each second.
        fn run_samples(&mut self, secs: u32, sample: impl Fn(u32) -> VqdSample) {
            for i in 0..secs {
                let s = sample(i);
                self.t.on_decoded(&s);
                self.poll();
                self.run(1.0, 10.0);
            }
        }

        fn states(&self) -> Vec<(CameraState, Option<OfflineReason>, Vec<QualityFault>)> {
            self.log
                .iter()
                .map(|t| (t.to.state, t.to.reason, t.to.faults.clone()))
                .collect()
        }

        fn connect(&mut self) {
            self.t.on_connecting();
            self.run(0.5, 0.0);
            self.t.on_playing();
            self.t.on_media(4000);
            self.poll();
        }
    }

    fn sample(seed: u64) -> VqdSample {
        VqdSample::measure(&noisy(seed, 40), W as u32, H as u32, W * 3).unwrap()
    }

    fn black() -> VqdSample {
        VqdSample::measure(&vec![0u8; W * H * 3], W as u32, H as u32, W * 3).unwrap()
    }

    #[test]
    fn a_signalled_camera_follows_its_signalling_not_media() {
        let mut r = Rig::new(0.0);
        r.t.set_signalled();
        // No media for far longer than the stall bound: still connecting, not stalled or timed out.
        r.run(30.0, 0.0);
        assert!(r.log.is_empty(), "{:?}", r.log);
        r.t.on_signal(Ok(()));
        r.run(60.0, 0.0);
        r.t.on_signal(Err(OfflineReason::DeviceOffline));
        r.run(1.0, 0.0);
        r.t.on_signal(Ok(()));
        r.run(1.0, 0.0);
        assert_eq!(
            r.states(),
            vec![
                (Online, None, vec![]),
                (Offline, Some(OfflineReason::DeviceOffline), vec![]),
                (Online, None, vec![]),
            ]
        );
        // The offline period starts when signalling said so (it waited its intervals already).
        assert!((r.secs(r.log[1].at) - 90.0).abs() < 0.2, "{:?}", r.log[1]);
    }

    /// A pulled GB/T 28181 channel: requesting its video leaves it as its signalling has it; a
    /// refused request takes it down, and only its video (not its device's next keepalive) brings
    /// it back.
    #[test]
    fn a_signalled_channel_whose_video_fails_waits_for_video() {
        let mut r = Rig::new(0.0);
        r.t.set_signalled();
        r.t.on_signal(Ok(()));
        r.t.on_connecting();
        r.run(5.0, 0.0);
        assert_eq!(
            r.states(),
            vec![(Online, None, vec![])],
            "connecting keeps it up"
        );
        r.t.on_failure(OfflineReason::InviteFailed);
        r.run(6.0, 0.0);
        r.t.on_signal(Ok(()));
        r.t.on_connecting();
        r.run(1.0, 0.0);
        assert_eq!(
            r.states().last(),
            Some(&(Offline, Some(OfflineReason::InviteFailed), vec![])),
            "the device's signal does not hide the failed video"
        );
        // Its device goes offline: that reason now; back online: up again.
        r.t.on_signal(Err(OfflineReason::DeviceOffline));
        r.run(6.0, 0.0);
        r.t.on_signal(Ok(()));
        r.run(1.0, 0.0);
        r.t.on_failure(OfflineReason::NoMedia);
        r.run(6.0, 0.0);
        r.t.on_playing();
        r.run(2.0, 25.0);
        assert_eq!(
            r.states(),
            vec![
                (Online, None, vec![]),
                (Offline, Some(OfflineReason::InviteFailed), vec![]),
                (Offline, Some(OfflineReason::DeviceOffline), vec![]),
                (Online, None, vec![]),
                (Offline, Some(OfflineReason::NoMedia), vec![]),
                (Online, None, vec![]),
            ]
        );
    }

    #[test]
    fn connecting_then_online_on_first_media() {
        let mut r = Rig::new(0.0);
        assert_eq!(r.t.status().state, Connecting);
        r.poll();
        assert!(r.log.is_empty());
        r.connect();
        assert_eq!(r.states(), vec![(Online, None, vec![])]);
        assert!((r.secs(r.log[0].at) - 0.5).abs() < 1e-3);
        r.run(20.0, 10.0);
        assert_eq!(r.log.len(), 1, "each transition reported once: {:?}", r.log);
        assert!((r.t.fps_in() - 10.0).abs() < 0.6, "{}", r.t.fps_in());
        assert!(r.t.last_media_at().is_some());
    }

    #[test]
    fn two_second_blip_never_shows_offline() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.run(10.0, 10.0);
        r.t.on_failure(OfflineReason::Timeout);
        r.poll();
        r.run(1.0, 0.0);
        r.t.on_connecting();
        r.run(1.0, 0.0);
        r.t.on_playing();
        r.run(30.0, 10.0);
        assert_eq!(r.states(), vec![(Online, None, vec![])]);
    }

    #[test]
    fn failure_held_for_grace_is_offline_with_its_reason_dated_at_the_failure() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.run(10.0, 10.0);
        let failed_at = r.clock.wall();
        r.t.on_failure(OfflineReason::AuthFailed);
        r.run(4.9, 0.0);
        assert_eq!(r.log.len(), 1);
        r.run(0.2, 0.0);
        assert_eq!(
            r.states()[1..],
            [(Offline, Some(OfflineReason::AuthFailed), vec![])]
        );
        assert_eq!(r.log[1].at, failed_at);
        // Retries keep failing the same way: nothing new to report.
        for _ in 0..5 {
            r.t.on_connecting();
            r.run(1.0, 0.0);
            r.t.on_failure(OfflineReason::AuthFailed);
            r.run(3.0, 0.0);
        }
        assert_eq!(r.log.len(), 2);
        // A different reason that persists replaces the shown one after grace.
        r.t.on_connecting();
        r.t.on_failure(OfflineReason::Refused);
        r.run(4.0, 0.0);
        assert_eq!(r.log.len(), 2);
        r.run(1.5, 0.0);
        assert_eq!(
            r.states()[2],
            (Offline, Some(OfflineReason::Refused), vec![])
        );
        // Back online at once when media flows again.
        r.connect();
        assert_eq!(r.states()[3], (Online, None, vec![]));
        r.run(10.0, 10.0);
        assert_eq!(r.log.len(), 4);
    }

    #[test]
    fn stall_is_offline_stalled_at_stall_after_dated_at_last_media() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.run(5.0, 10.0);
        let last = r.t.last_media_at().unwrap();
        r.run(9.8, 0.0);
        assert_eq!(r.log.len(), 1, "{:?}", r.log);
        r.run(0.3, 0.0);
        assert_eq!(
            r.states()[1..],
            [(Offline, Some(OfflineReason::Stalled), vec![])]
        );
        assert_eq!(r.log[1].at, last);
        assert_eq!(r.t.fps_in(), 0.0);
        // Ingest notices too and reconnects; the camera delivers again.
        r.t.on_failure(OfflineReason::Stalled);
        r.run(1.0, 0.0);
        r.connect();
        r.run(5.0, 10.0);
        assert_eq!(r.states()[2..], [(Online, None, vec![])]);
    }

    #[test]
    fn session_without_media_and_hung_connect_time_out() {
        let mut r = Rig::new(0.0);
        r.t.on_connecting();
        r.run(9.9, 0.0);
        assert!(r.log.is_empty());
        r.run(0.2, 0.0);
        assert_eq!(
            r.states(),
            vec![(Offline, Some(OfflineReason::Timeout), vec![])]
        );
        assert!(r.secs(r.log[0].at) < 0.01, "dated at the attempt start");

        let mut r = Rig::new(0.0);
        r.t.on_connecting();
        r.t.on_playing();
        r.run(10.1, 0.0);
        assert_eq!(
            r.states(),
            vec![(Offline, Some(OfflineReason::Stalled), vec![])]
        );
    }

    #[test]
    fn quality_fault_appears_after_grace_and_clears_after_grace() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.run_samples(5, |i| sample(100 + u64::from(i)));
        assert_eq!(r.log.len(), 1);
        let dark_from = r.clock.wall();
        r.run_samples(4, |_| black());
        assert_eq!(r.log.len(), 1, "not yet: {:?}", r.log);
        r.run_samples(2, |_| black());
        assert_eq!(
            r.states()[1..],
            [(Degraded, None, vec![QualityFault::Dark])]
        );
        assert_eq!(r.log[1].at, dark_from);
        assert_eq!(r.t.status().state, Degraded);
        // One good sample among dark ones does not clear it.
        r.run_samples(1, |i| sample(200 + u64::from(i)));
        r.run_samples(3, |_| black());
        assert_eq!(r.log.len(), 2);
        let good_from = r.clock.wall();
        r.run_samples(4, |i| sample(300 + u64::from(i)));
        assert_eq!(r.log.len(), 2);
        r.run_samples(2, |i| sample(400 + u64::from(i)));
        assert_eq!(r.states()[2..], [(Online, None, vec![])]);
        assert_eq!(r.log[2].at, good_from);
        assert!(r.t.fps_analysed() > 0.8 && r.t.fps_analysed() < 1.2);
    }

    #[test]
    fn frozen_picture_with_full_fps_is_degraded() {
        let mut r = Rig::new(10.0);
        r.connect();
        r.run_samples(5, |i| sample(500 + u64::from(i)));
        let still = sample(600);
        r.run_samples(15, |_| still.clone());
        assert_eq!(
            r.states()[1..],
            [(Degraded, None, vec![QualityFault::Frozen])]
        );
        assert!(r.t.fps_in() > 9.0);
    }

    #[test]
    fn low_fps_held_for_grace_is_a_fault() {
        let mut r = Rig::new(25.0);
        r.connect();
        r.run(20.0, 25.0);
        assert_eq!(r.log.len(), 1);
        r.run(30.0, 8.0);
        assert_eq!(
            r.states()[1..],
            [(Degraded, None, vec![QualityFault::LowFps])]
        );
        r.run(30.0, 25.0);
        assert_eq!(r.states()[2..], [(Online, None, vec![])]);
    }

    #[test]
    fn faults_are_forgotten_while_offline() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.run_samples(8, |_| black());
        assert_eq!(r.t.status().state, Degraded);
        r.t.on_failure(OfflineReason::Unreachable);
        r.run(6.0, 0.0);
        assert_eq!(r.t.status().state, Offline);
        assert!(r.t.status().faults.is_empty());
        r.connect();
        assert_eq!(r.t.status().state, Online);
    }

    #[test]
    fn disabled_and_maintenance_override_and_restore() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.run(5.0, 10.0);
        r.t.set_maintenance(true);
        r.t.set_maintenance(true);
        r.poll();
        r.t.on_failure(OfflineReason::Unreachable);
        r.run(30.0, 0.0);
        assert_eq!(r.states()[1..], [(Maintenance, None, vec![])]);
        r.t.set_maintenance(false);
        r.poll();
        assert_eq!(
            r.states()[2..],
            [(Offline, Some(OfflineReason::Unreachable), vec![])]
        );
        assert!(r.log[2].at >= r.log[1].at);
        r.t.set_enabled(false);
        r.poll();
        r.run(10.0, 0.0);
        assert_eq!(r.states()[3..], [(Disabled, None, vec![])]);
        r.t.set_enabled(true);
        r.poll();
        assert_eq!(r.states()[4..], [(Connecting, None, vec![])]);
        r.connect();
        assert_eq!(r.states()[5..], [(Online, None, vec![])]);
        assert_eq!(r.log.len(), 6);
    }

    #[test]
    fn maintenance_while_up_then_back_online() {
        let mut r = Rig::new(0.0);
        r.connect();
        r.t.set_maintenance(true);
        r.poll();
        r.run(20.0, 10.0);
        r.t.set_maintenance(false);
        let end = r.clock.wall();
        r.poll();
        assert_eq!(
            r.states(),
            vec![
                (Online, None, vec![]),
                (Maintenance, None, vec![]),
                (Online, None, vec![])
            ]
        );
        assert_eq!(r.log[2].at, end, "not back-dated into the window");
    }

    #[test]
    fn transitions_survive_a_json_round_trip() {
        let mut r = Rig::new(0.0);
        r.connect();
        let j = serde_json::to_string(&r.log[0]).unwrap();
        assert!(
            j.contains("\"at_ms\"") && j.contains("\"camera\":\"cam1\""),
            "{j}"
        );
        let back: Transition = serde_json::from_str(&j).unwrap();
        // JSON keeps milliseconds.
        assert_eq!(back.to.state, Online);
        assert_eq!(
            crate::time::unix_ms(back.at),
            crate::time::unix_ms(r.log[0].at)
        );
    }
}
