//! The health poller. In: every camera's [`CameraTracker`] and configuration, through [`Watched`]
//! (the camera stage's fleet in production). Out: each [`Transition`] once, to the ledger through
//! [`LedgerHandle`] (waiting when its queue is full: transitions are never dropped) and to every
//! [`TransitionSink`] (the feed and ZeroMQ, which must not block). `app.rs` builds the joins and spawns
//! [`run_poller`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CameraTracker, LedgerHandle, Transition};
use crate::clock::Clock;
use crate::config::Camera;
use crate::sync::{lock, read};

/// How often every tracker is polled.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Polls between two ledger heartbeats (the ledger closes its runs at the last heartbeat).
const HEARTBEAT_POLLS: u64 = 60;

/// The cameras the poller watches.
pub trait Watched: Send + Sync {
    /// Calls `f` once per camera, ordered by id, with its configuration and its tracker.
    fn for_each_camera(&self, f: &mut dyn FnMut(&RwLock<Camera>, &Mutex<CameraTracker>));
}

/// Where transitions go besides the ledger (the command-hall feed, ZeroMQ).
pub trait TransitionSink: Send + Sync {
    /// Announces a transition of a camera in `area_path`; must not block.
    fn announce(&self, t: &Transition, area_path: &[String]);
}

/// Polls every tracker each [`POLL_EVERY`] until `cancel` fires; each transition goes to the sinks (in
/// order) and then to the ledger, and the ledger gets a heartbeat every minute.
pub async fn run_poller(
    cameras: Arc<dyn Watched>,
    ledger: LedgerHandle,
    sinks: Vec<Arc<dyn TransitionSink>>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let wall = clock.wall();
        ticks += 1;
        if ticks.is_multiple_of(HEARTBEAT_POLLS) {
            ledger.heartbeat(wall).await;
        }
        let mut transitions: Vec<(Transition, Vec<String>)> = Vec::new();
        cameras.for_each_camera(&mut |config, tracker| {
            // The configuration and the tracker are never locked together.
            let maintenance = config
                .read()
                .map(|c| c.in_maintenance_at(wall))
                .unwrap_or(false);
            let mut found = Vec::new();
            {
                let mut t = lock(tracker);
                t.set_maintenance(maintenance);
                while let Some(tr) = t.poll() {
                    found.push(tr);
                }
            }
            if !found.is_empty() {
                let area: Vec<String> = read(config)
                    .area_path
                    .as_ref()
                    .map(|a| a.segments().to_vec())
                    .unwrap_or_default();
                transitions.extend(found.into_iter().map(|tr| (tr, area.clone())));
            }
        });
        for (tr, area) in transitions {
            tracing::info!(
                camera_id = %tr.camera,
                from = ?tr.from.state,
                to = ?tr.to.state,
                reason = ?tr.to.reason,
                faults = ?tr.to.faults,
                "camera state changed"
            );
            for sink in &sinks {
                sink.announce(&tr, &area);
            }
            ledger.record(tr).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::config::{AreaPath, CameraOrigin, SourceKind, Transport};
    use crate::health::{CameraState, Ledger, TrackerConfig, VqdConfig, spawn_ledger};
    use tokio::sync::mpsc;

    struct One {
        config: RwLock<Camera>,
        tracker: Mutex<CameraTracker>,
    }

    impl Watched for One {
        fn for_each_camera(&self, f: &mut dyn FnMut(&RwLock<Camera>, &Mutex<CameraTracker>)) {
            f(&self.config, &self.tracker);
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Transition, Vec<String>)>>);

    impl TransitionSink for Recorder {
        fn announce(&self, t: &Transition, area_path: &[String]) {
            lock(&self.0).push((t.clone(), area_path.to_vec()));
        }
    }

    fn camera(id: &str) -> Camera {
        Camera {
            id: id.into(),
            gb_code: None,
            name: id.into(),
            url: url::Url::parse("rtsp://10.0.0.1/s").unwrap(),
            sub_url: None,
            source: SourceKind::Rtsp,
            credentials: None,
            location: None,
            area_code: None,
            area_path: AreaPath::new(vec!["城关镇".into(), "东街".into()]),
            jurisdiction: None,
            priority: 3,
            tags: vec![],
            enabled: true,
            transport: Transport::Tcp,
            analysis_fps: 1.0,
            keyframe_only: true,
            maintenance: vec![],
            origin: CameraOrigin::Toml { index: 0 },
            definition: String::new(),
        }
    }

    /// A camera that starts delivering media shows up online exactly once: on the feed (with its
    /// area) and in the ledger's history, however many polls follow.
    #[tokio::test(start_paused = true)]
    async fn a_camera_coming_online_is_reported_once_to_the_feed_and_the_ledger() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let cfg = TrackerConfig {
            grace: Duration::from_secs(5),
            stall_after: Duration::from_secs(600),
            expected_fps: 0.0,
            vqd: VqdConfig::default(),
        };
        let cam = Arc::new(One {
            config: RwLock::new(camera("cam1")),
            tracker: Mutex::new(CameraTracker::new("cam1", cfg, clock.clone())),
        });
        let feed = Arc::new(Recorder::default());
        let (tx, rx) = mpsc::channel(16);
        let ledger_thread = spawn_ledger(Ledger::open_in_memory().unwrap(), rx).unwrap();
        let ledger = LedgerHandle::new(tx);
        let cancel = CancellationToken::new();
        let poller = tokio::spawn(run_poller(
            cam.clone(),
            ledger.clone(),
            vec![feed.clone()],
            clock.clone(),
            cancel.clone(),
        ));

        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(lock(&feed.0).is_empty(), "nothing changed yet");
        {
            let mut t = lock(&cam.tracker);
            t.on_connecting();
            t.on_playing();
            t.on_media(4000);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        cancel.cancel();
        poller.await.unwrap();

        let announced = lock(&feed.0).clone();
        assert_eq!(announced.len(), 1, "{announced:?}");
        let (tr, area) = &announced[0];
        assert_eq!(tr.camera, "cam1");
        assert_eq!(tr.from.state, CameraState::Connecting);
        assert_eq!(tr.to.state, CameraState::Online);
        assert_eq!(area, &["城关镇".to_string(), "东街".to_string()]);

        let history = ledger.history("cam1", 10).await.unwrap();
        let online: Vec<_> = history
            .iter()
            .filter(|t| t.to.state == CameraState::Online)
            .collect();
        assert_eq!(online.len(), 1, "{history:?}");
        // The ledger keeps milliseconds.
        assert_eq!(
            crate::time::unix_ms(online[0].at),
            crate::time::unix_ms(tr.at)
        );
        drop(ledger);
        ledger_thread.join().unwrap();
    }
}
