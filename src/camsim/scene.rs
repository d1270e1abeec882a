//! Scenes: what each simulated camera shows when no fault is set. Without scene options every
//! camera shows the source (people walking, all day). A county at night looks different: most
//! cameras show a **quiet** view (the source's background, a per-pixel median over its frames, with
//! sensor noise, encoded at constant quality as many cameras' VBR does), a share stay **busy** (the
//! source), and some quiet cameras have scripted **bursts**: every [`BURST_PERIOD`] the source's
//! people walk in for [`BURST_LENGTH`], at times [`Scenes::onsets`] tells exactly (the ground truth
//! a detection-delay bench compares with).

use std::time::Duration;

use serde::Serialize;

/// How often a burst camera's scripted activity comes back.
pub const BURST_PERIOD: Duration = Duration::from_secs(60);
/// How long the activity lasts (the length of the re-encoded busy clip).
pub const BURST_LENGTH: Duration = Duration::from_secs(10);

/// How the quiet and busy scene clips are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateControl {
    /// Constant quality (x264 CRF 26 / x265 CRF 28): the bytes follow what moves.
    #[default]
    Vbr,
    /// Constant bit rate (800 kbit/s): the encoder spends the same bytes whatever moves.
    Cbr,
}

/// The scene options (`qianliyan camsim --quiet-share … --bursts …`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scenes {
    /// Share of cameras (0–1) that show the quiet view; 0 = every camera busy (no scene clips made).
    pub quiet_share: f64,
    /// How many of the quiet cameras get scripted bursts.
    pub bursts: u32,
    /// How the scene clips are encoded.
    pub rate_control: RateControl,
}

/// What one camera shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scene {
    /// The source video.
    Busy,
    /// The quiet view.
    Quiet,
    /// The quiet view with the source's people every [`BURST_PERIOD`] for [`BURST_LENGTH`].
    Burst,
}

impl Scenes {
    /// Whether scene clips are needed at all.
    pub fn enabled(&self) -> bool {
        self.quiet_share > 0.0
    }

    /// Refuses options that cannot be served: a share outside 0–1, or more bursts than `cameras`
    /// has quiet cameras.
    pub fn check(&self, cameras: u32) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.quiet_share) {
            return Err(format!(
                "--quiet-share {}: a share between 0 and 1",
                self.quiet_share
            ));
        }
        let quiet = self
            .assign(cameras)
            .iter()
            .filter(|s| **s != Scene::Busy)
            .count() as u32;
        if self.bursts > quiet {
            return Err(format!(
                "--bursts {}: only {quiet} of the {cameras} cameras are quiet (--quiet-share {}); \
                 bursts happen on quiet cameras",
                self.bursts, self.quiet_share
            ));
        }
        Ok(())
    }

    /// The scene of camera `number` (1-based) of `cameras`: quiet cameras are spread over the
    /// numbers by the golden ratio; the first `bursts` quiet cameras (by number) have bursts.
    pub fn assign(&self, cameras: u32) -> Vec<Scene> {
        let mut quiet_seen = 0;
        (1..=cameras)
            .map(|number| {
                if !self.enabled() {
                    return Scene::Busy;
                }
                let x = (number as f64 * 0.618_033_988_75).fract();
                if x >= self.quiet_share {
                    return Scene::Busy;
                }
                quiet_seen += 1;
                if quiet_seen <= self.bursts {
                    Scene::Burst
                } else {
                    Scene::Quiet
                }
            })
            .collect()
    }
}

/// Where in its burst period a camera is `elapsed` after camsim's epoch, given its `offset`.
fn phase(elapsed: Duration, offset: Duration) -> Duration {
    let p = BURST_PERIOD.as_nanos();
    Duration::from_nanos(((elapsed.as_nanos() + offset.as_nanos()) % p) as u64)
}

/// The burst window of each period starts this far into it.
pub const BURST_AT: Duration = Duration::from_secs(40);

/// Whether a burst camera with `offset` shows activity `elapsed` after the epoch.
pub fn in_burst(elapsed: Duration, offset: Duration) -> bool {
    let ph = phase(elapsed, offset);
    ph >= BURST_AT && ph < BURST_AT + BURST_LENGTH
}

/// The starts of a burst camera's activity between the epoch and `until` (both as time since the
/// epoch).
pub fn onsets(offset: Duration, until: Duration) -> Vec<Duration> {
    let p = BURST_PERIOD.as_nanos();
    // First onset: the elapsed time at which the phase reaches BURST_AT.
    let first = (BURST_AT.as_nanos() + p - offset.as_nanos() % p) % p;
    let mut out = Vec::new();
    let mut t = first;
    while t <= until.as_nanos() {
        out.push(Duration::from_nanos(t as u64));
        t += p;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_bursts_are_as_asked() {
        let s = Scenes {
            quiet_share: 0.85,
            bursts: 50,
            rate_control: RateControl::Vbr,
        };
        let a = s.assign(1300);
        let quiet = a.iter().filter(|x| **x != Scene::Busy).count();
        assert!((1080..=1130).contains(&quiet), "{quiet}");
        assert_eq!(a.iter().filter(|x| **x == Scene::Burst).count(), 50);
        assert!(
            Scenes::default()
                .assign(10)
                .iter()
                .all(|x| *x == Scene::Busy)
        );
        assert_eq!(s.check(1300), Ok(()));
        let e = Scenes {
            quiet_share: 0.0,
            bursts: 3,
            ..s
        }
        .check(10)
        .unwrap_err();
        assert!(
            e.contains("--bursts 3: only 0 of the 10 cameras are quiet"),
            "{e}"
        );
    }

    #[test]
    fn onsets_are_where_the_burst_window_opens() {
        let offset = Duration::from_millis(12_345);
        let all = onsets(offset, Duration::from_secs(300));
        assert_eq!(all.len(), 5);
        for o in &all {
            assert!(in_burst(*o, offset), "{o:?}");
            assert!(!in_burst(*o - Duration::from_millis(1), offset), "{o:?}");
            assert!(in_burst(
                *o + BURST_LENGTH - Duration::from_millis(1),
                offset
            ));
            assert!(!in_burst(*o + BURST_LENGTH, offset));
        }
        assert_eq!(all[1] - all[0], BURST_PERIOD);
    }
}
