//! A scripted 3-minute scenario of faults over 20 camsim cameras (real RTSP), checked against the
//! ground truth computed from the script: the ledger's availability per camera and per area, and the
//! summary's online and intact rates at checkpoints.
//!
//! Ground truth, and why the tolerances are what they are (service: grace 3 s, stall_after 5 s,
//! backoff 300 ms doubling to 2 s, full jitter; transitions are dated when their condition began):
//! - `down` at t_f: camsim closes the session at once, ingest reports the failure at t_f (+ms), and
//!   after the grace the offline state is dated at t_f. After `restore` at t_r the camera is online
//!   when media flows again: the supervisor's current backoff sleep (≤ cap 2 s) + DESCRIBE/SETUP/PLAY
//!   and the first frame (camsim starts at a keyframe; ≤ 0.5 s on loopback). So each restored outage
//!   measures `[t_r − t_f, t_r − t_f + 2.5 s]`; the point truth adds half the cap (1 s).
//! - `stall` at t_f: the last media arrived ≤ 100 ms before t_f (10 fps); the offline state is dated
//!   at that last frame whoever notices first (the tracker's watchdog or ingest's read timeout, both
//!   at stall_after: the tracker's rule "a transition's `at` is when its condition began").
//!   Restore: as for `down` (a session may be open and resume at once, or be in backoff).
//! - A `down` of 1 s is a blip: the first three retries come within 0.3 + 0.6 + 1.2 s of the failure
//!   and the third no earlier than 1.05 s, so media flows again by ≈ 2.2 s < grace: never offline.
//! - Quality faults (`black`, `cover`, `freeze`) keep the camera online (availability 100 %) but
//!   not intact. Analysis takes ≤ 1 keyframe per 0.9 s and camsim's keyframes come every 2 s, so a
//!   black/cover period starts and ends ≤ 2 s (+ ≤ 0.5 s decoding) late: degraded measures
//!   `dur ± 2.8 s`. A freeze repeats one keyframe (every frame is a keyframe, analysed ≈ 1/s) and is
//!   `frozen` from the 5th identical sample (`frozen_samples`), the first of which may be the last
//!   normal sample: it shows 3–5 s late and clears ≤ 2.5 s late: degraded measures
//!   `[dur − 5.8, dur − 0.2]`, point truth `dur − 3`.
//!
//! The issue's criterion: availability per camera within 2 % (absolute, of the 180 s window = 3.6 s)
//! of the truth; the tighter mechanistic bounds above are asserted too.

mod common;
mod ingest_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use common::start_sim;
use ingest_support::{
    Svc, availability, camera, camera_toml, history, is_state, start_service, summary, wait_for,
};
use qianliyan::camsim::TransportPolicy;
use serde_json::Value;

const CAMERAS: u32 = 20;
/// The scenario and the availability window, seconds.
const WINDOW: f64 = 180.0;
const GRACE: f64 = 3.0;
const BACKOFF_MAX: f64 = 2.0;
/// DESCRIBE/SETUP/PLAY and the first frame on loopback, on a loaded 2-core machine.
const HANDSHAKE: f64 = 0.5;
/// A fault lands between two frames (100 ms); and when several cameras reconnect at once, this
/// 2-core machine (debug build, camsim in the same process) processes the last frame before a
/// stall up to ≈ 0.5 s after it was sent (observed 0.4 s with 7 reconnects at t = 64 s).
const EDGE: f64 = 0.6;
/// From an access unit's arrival to its VQD verdict in the tracker (decoder pool, dispatcher).
const DECODE: f64 = 0.5;
/// Every change of the online count shows within this long (issue: offline within 12 s, back
/// within the backoff cap + 5 s); checkpoints are at least this long after every change.
const SETTLE: f64 = 12.0;
/// A quality fault shows or clears within this long (issue: 15 s); intact counts are only
/// asserted for cameras whose quality last changed at least this long ago.
const QUALITY_SETTLE: f64 = 13.0;
/// The issue's tolerance: 2 % of the window.
const TOLERANCE: f64 = 0.02;

const TOWNSHIP_A: &str = "示范县/城关镇/东街村";
const TOWNSHIP_B: &str = "示范县/桃源镇/西村";

/// One scripted change: at `at` seconds into the scenario, `kind` on these camsim cameras.
struct Step {
    at: f64,
    cameras: &'static [u32],
    kind: &'static str,
}

/// Cameras 1–10 are in township A, 11–20 in township B; 17–20 stay healthy throughout.
const SCRIPT: &[Step] = &[
    Step {
        at: 16.0,
        cameras: &[1, 2, 3, 4, 5, 9],
        kind: "down",
    },
    Step {
        at: 32.0,
        cameras: &[9],
        kind: "restore",
    },
    Step {
        at: 32.0,
        cameras: &[10],
        kind: "black",
    },
    Step {
        at: 48.0,
        cameras: &[9, 16],
        kind: "down",
    },
    Step {
        at: 64.0,
        cameras: &[1, 2, 3, 4, 5, 9, 16],
        kind: "restore",
    },
    Step {
        at: 64.0,
        cameras: &[6, 7, 8],
        kind: "stall",
    },
    Step {
        at: 80.0,
        cameras: &[9],
        kind: "down",
    },
    Step {
        at: 96.0,
        cameras: &[6, 7, 8, 9, 10],
        kind: "restore",
    },
    Step {
        at: 96.0,
        cameras: &[16],
        kind: "stall",
    },
    Step {
        at: 112.0,
        cameras: &[11],
        kind: "down",
    },
    Step {
        at: 112.0,
        cameras: &[12],
        kind: "freeze",
    },
    Step {
        at: 128.0,
        cameras: &[13],
        kind: "stall",
    },
    Step {
        at: 128.0,
        cameras: &[15],
        kind: "cover",
    },
    Step {
        at: 128.0,
        cameras: &[16],
        kind: "restore",
    },
    Step {
        at: 144.0,
        cameras: &[14],
        kind: "down",
    },
    Step {
        at: 145.0,
        cameras: &[14],
        kind: "restore",
    },
    Step {
        at: 160.0,
        cameras: &[12, 15],
        kind: "restore",
    },
];

/// A `down` restored before the earliest third retry (0.15 + 0.3 + 0.6 s) is a blip that never
/// shows offline (see the module comment); the script's blip lasts 1 s.
const BLIP: f64 = 1.05;
/// The retries of a blip (0.3 + 0.6 + 1.2 s ceilings) and the handshake end within the grace.
const _: () = assert!(0.3 + 0.6 + 1.2 + HANDSHAKE < GRACE);

/// One fault period of one camera, clipped to the window.
#[derive(Debug, Clone, Copy)]
struct Period {
    kind: &'static str,
    start: f64,
    end: f64,
    /// Restored inside the window (so the reconnect delay applies).
    restored: bool,
}

fn is_offline_kind(kind: &str) -> bool {
    matches!(kind, "down" | "stall")
}

/// Fault periods per camera from steps applied at the given times (the script's, or as run).
fn fault_periods(applied: &[(f64, &Step)]) -> BTreeMap<u32, Vec<Period>> {
    let mut out: BTreeMap<u32, Vec<Period>> = (1..=CAMERAS).map(|c| (c, Vec::new())).collect();
    let mut open: BTreeMap<u32, (&'static str, f64)> = BTreeMap::new();
    let mut steps = applied.to_vec();
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at, s) in steps {
        for &c in s.cameras {
            if let Some((kind, start)) = open.remove(&c) {
                out.get_mut(&c).expect("camera").push(Period {
                    kind,
                    start,
                    end: at,
                    restored: true,
                });
            }
            if s.kind != "restore" {
                open.insert(c, (s.kind, at));
            }
        }
    }
    for (c, (kind, start)) in open {
        out.get_mut(&c).expect("camera").push(Period {
            kind,
            start,
            end: WINDOW,
            restored: false,
        });
    }
    out
}

/// Seconds of a camera's expected offline (or degraded) time: (point truth, lowest, highest).
#[derive(Debug, Clone, Copy, Default)]
struct Expect {
    mid: f64,
    lo: f64,
    hi: f64,
}

impl Expect {
    fn add(&mut self, mid: f64, lo: f64, hi: f64) {
        self.mid += mid;
        self.lo += lo;
        self.hi += hi;
    }
}

/// Expected offline and degraded seconds of one camera.
fn expected(periods: &[Period]) -> (Expect, Expect) {
    let mut offline = Expect::default();
    let mut degraded = Expect::default();
    for p in periods {
        let d = p.end - p.start;
        match p.kind {
            "down" if d < BLIP && p.restored => {}
            "down" | "stall" => {
                let late = if p.restored {
                    (BACKOFF_MAX / 2.0, BACKOFF_MAX + HANDSHAKE)
                } else {
                    (0.0, 0.0)
                };
                offline.add(d + late.0, d - EDGE, d + late.1 + EDGE);
            }
            "black" | "cover" => {
                let late = if p.restored { 2.0 + DECODE } else { 0.0 };
                degraded.add(d, d - 2.0 - DECODE - EDGE, d + late + EDGE);
            }
            "freeze" => {
                let clear = if p.restored { 2.0 + DECODE } else { 0.0 };
                degraded.add(d - 3.0, d - 5.0 - DECODE - EDGE, d - 3.0 + clear + EDGE);
            }
            other => panic!("unscripted kind {other}"),
        }
    }
    (offline, degraded)
}

/// What the script says camera `c` is doing at `t`, and since when.
fn fault_at(periods: &[Period], t: f64) -> Option<Period> {
    periods.iter().copied().find(|p| p.start <= t && t < p.end)
}

/// When camera `c`'s fault (of the kinds `pred` selects) last started or ended before `t`.
fn last_change(periods: &[Period], t: f64, pred: impl Fn(&str) -> bool) -> f64 {
    periods
        .iter()
        .filter(|p| pred(p.kind))
        .flat_map(|p| [p.start, p.end])
        .filter(|&x| x <= t)
        .fold(f64::NEG_INFINITY, f64::max)
}

fn cameras_toml(sim: &common::Sim) -> String {
    (1..=CAMERAS)
        .map(|i| {
            let area = if i <= 10 { TOWNSHIP_A } else { TOWNSHIP_B };
            camera_toml(&format!("c{i:02}"), &sim.running.url(i), area, "")
        })
        .collect()
}

fn checkpoint(svc: &Svc, periods: &BTreeMap<u32, Vec<Period>>, t: f64, log: &mut Vec<String>) {
    let mut offline = Vec::new();
    let mut degraded_sure = 0usize;
    let mut degraded_maybe = 0usize;
    for (&c, ps) in periods {
        // A blip never shows; every other outage has shown by now (≥ SETTLE after it began).
        let now = fault_at(ps, t);
        if let Some(p) = now
            && is_offline_kind(p.kind)
        {
            offline.push(c);
            continue;
        }
        let quality = now.is_some_and(|p| !is_offline_kind(p.kind));
        let settled = t - last_change(ps, t, |k| !is_offline_kind(k)) >= QUALITY_SETTLE;
        if quality && settled {
            degraded_sure += 1;
        } else if !settled {
            degraded_maybe += 1;
        }
    }
    let n = f64::from(CAMERAS);
    let online = CAMERAS as usize - offline.len();
    let s = summary(svc);
    let cams: Vec<Value> = ingest_support::get_json(svc.addr, "/api/cameras")
        .as_array()
        .expect("cameras")
        .clone();
    let shown: Vec<String> = cams
        .iter()
        .filter(|v| !is_state(v, "online"))
        .map(|v| format!("{}={}", v["id"].as_str().unwrap_or("?"), v["state"]))
        .collect();
    let line = format!(
        "t={t:>5.1}s  expected online {online}/{CAMERAS} (offline {offline:?})  summary {s}  not online: {shown:?}"
    );
    eprintln!("{line}");
    log.push(line);
    assert_eq!(s["enabled"], CAMERAS, "t={t}: {s}");
    let rate = s["online_rate"].as_f64().expect("online_rate");
    assert!(
        (rate - online as f64 / n).abs() < 1e-9,
        "t={t}s: online_rate {rate} but the script says {online}/{CAMERAS} (offline {offline:?}); summary {s}; not online {shown:?}"
    );
    assert_eq!(
        s["offline"],
        offline.len(),
        "t={t}s: offline count; not online {shown:?}"
    );
    let intact = s["intact_rate"].as_f64().expect("intact_rate") * n;
    let (hi, lo) = (
        (online - degraded_sure) as f64,
        (online - degraded_sure - degraded_maybe) as f64,
    );
    assert!(
        intact.round() >= lo && intact.round() <= hi,
        "t={t}s: intact {intact} cameras, expected {lo}..={hi}; summary {s}; not online {shown:?}"
    );
}

#[test]
fn three_minute_fault_script_matches_ledger_availability_and_summary_rates() {
    let started = Instant::now();
    let sim = start_sim(CAMERAS, None, TransportPolicy::Both);
    let svc = start_service(
        r#"
[ingest]
stall_after = "5s"
backoff_initial = "300ms"
backoff_max = "2s"
[health]
grace = "3s"
"#,
        &cameras_toml(&sim),
        &[],
    );
    for i in 1..=CAMERAS {
        wait_for(
            &svc,
            &format!("c{i:02}"),
            Duration::from_secs(30),
            "online",
            |v| is_state(v, "online"),
        );
    }
    // Quality baselines settle on normal video; nobody is degraded by normal video.
    std::thread::sleep(Duration::from_secs(5));
    let s = summary(&svc);
    assert_eq!(
        s["online"], CAMERAS,
        "all online and intact before the script: {s}"
    );

    let scripted: Vec<(f64, &Step)> = SCRIPT.iter().map(|s| (s.at, s)).collect();
    let periods = fault_periods(&scripted);
    // The script's checkpoints: 13 s after each step time, which is ≥ SETTLE after every change.
    let mut step_times: Vec<f64> = SCRIPT.iter().map(|s| s.at).collect();
    step_times.push(0.0);
    step_times.sort_by(f64::total_cmp);
    step_times.dedup();
    let checkpoints: Vec<f64> = step_times
        .iter()
        .map(|t| t + 13.0)
        .filter(|cp| {
            *cp < WINDOW
                && step_times
                    .iter()
                    .filter(|s| *s <= cp)
                    .all(|s| cp - s >= SETTLE)
        })
        .collect();
    assert!(checkpoints.len() >= 9, "{checkpoints:?}");

    let t0 = Instant::now();
    let t0_wall = SystemTime::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    let mut actions: Vec<(f64, Option<&Step>)> = SCRIPT
        .iter()
        .map(|s| (s.at, Some(s)))
        .chain(checkpoints.iter().map(|&c| (c, None)))
        .collect();
    actions.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut log = Vec::new();
    // When each step took effect: camsim applies it while answering the request.
    let mut as_run: Vec<(f64, &Step)> = Vec::new();
    for (t, action) in actions {
        std::thread::sleep(at(t).saturating_duration_since(Instant::now()));
        match action {
            Some(step) => {
                let before = t0.elapsed().as_secs_f64();
                ingest_support::set_faults(&sim, step.cameras, step.kind);
                let after = t0.elapsed().as_secs_f64();
                as_run.push(((before + after) / 2.0, step));
                eprintln!(
                    "t={before:>7.3}s..{after:>7.3}s  {} {:?}",
                    step.kind, step.cameras
                );
            }
            None => checkpoint(&svc, &periods, t, &mut log),
        }
    }
    // Everything inside the window has been detected (last change at 160 s) and reached the ledger.
    std::thread::sleep(at(WINDOW + 4.0).saturating_duration_since(Instant::now()));
    // The truth is the script as run (each step a few ms after its scheduled time).
    let periods = fault_periods(&as_run);
    let t_end = t0_wall + Duration::from_secs_f64(WINDOW);
    let rows = availability(&svc, t0_wall, t_end, "camera");
    let by_key: BTreeMap<String, &Value> = rows
        .iter()
        .map(|r| (r["key"].as_str().expect("key").to_owned(), r))
        .collect();

    eprintln!(
        "\n{:<5} {:<36} {:>9} {:>15} {:>9} {:>9} {:>8} {:>15} {:>9} {:>8}",
        "cam",
        "script",
        "truth_off",
        "bounds",
        "meas_off",
        "avail_tr",
        "avail",
        "truth_degr",
        "meas_degr",
        "intact"
    );
    let mut failures = Vec::new();
    let mut area_truth: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (&c, ps) in &periods {
        let id = format!("c{c:02}");
        let row = by_key
            .get(&id)
            .unwrap_or_else(|| panic!("no availability row for {id}: {rows:?}"));
        let f = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
        let (scheduled, online, intact) = (f("scheduled_s"), f("online_s"), f("intact_s"));
        let (off, deg) = expected(ps);
        let m_off = scheduled - online;
        let m_deg = online - intact;
        let avail_truth = (WINDOW - off.mid) / WINDOW;
        let script: Vec<String> = ps
            .iter()
            .map(|p| format!("{}@{:.1}-{:.1}", p.kind, p.start, p.end))
            .collect();
        eprintln!(
            "{id:<5} {:<36} {:>9.1} {:>15} {:>9.2} {:>8.2}% {:>7.2}% {:>15} {:>9.2} {:>7.2}%",
            script.join(","),
            off.mid,
            format!("[{:.1},{:.1}]", off.lo, off.hi),
            m_off,
            100.0 * avail_truth,
            100.0 * row["availability"].as_f64().unwrap_or(f64::NAN),
            format!("{:.1} [{:.1},{:.1}]", deg.mid, deg.lo, deg.hi),
            m_deg,
            100.0 * row["intact_rate"].as_f64().unwrap_or(f64::NAN),
        );
        for area in [if c <= 10 { TOWNSHIP_A } else { TOWNSHIP_B }, "示范县"] {
            let key = area.rsplit_once('/').map_or(area, |(township, _)| township);
            let e = area_truth.entry(key).or_default();
            e.0 += WINDOW - off.mid;
            e.1 += WINDOW;
        }
        if (scheduled - WINDOW).abs() > 0.05 {
            failures.push(format!(
                "{id}: scheduled {scheduled} s, expected the whole {WINDOW} s window"
            ));
        }
        if (m_off - off.mid).abs() > TOLERANCE * WINDOW {
            failures.push(format!(
                "{id}: offline {m_off:.2} s vs truth {:.2} s: availability off by {:.2} % > 2 %",
                off.mid,
                100.0 * (m_off - off.mid).abs() / WINDOW
            ));
        }
        if m_off < off.lo || m_off > off.hi {
            failures.push(format!(
                "{id}: offline {m_off:.2} s outside the detection bounds [{:.2}, {:.2}]",
                off.lo, off.hi
            ));
        }
        if (m_deg - deg.mid).abs() > TOLERANCE * WINDOW || m_deg < deg.lo || m_deg > deg.hi {
            failures.push(format!(
                "{id}: degraded {m_deg:.2} s vs truth {:.2} s [{:.2}, {:.2}]",
                deg.mid, deg.lo, deg.hi
            ));
        }
    }

    // The blip never showed offline.
    let blips = history(&svc, "c14");
    assert!(
        blips.iter().all(|t| t["to"]["state"] != "offline"),
        "a 1 s blip shorter than the grace must not show offline: {blips:?}"
    );

    // Areas: every prefix row is the sum of its cameras' rows.
    let areas = availability(&svc, t0_wall, t_end, "area");
    eprintln!("\narea rows:");
    for r in &areas {
        eprintln!("  {r}");
    }
    let area_of = |c: u32| if c <= 10 { TOWNSHIP_A } else { TOWNSHIP_B };
    for r in &areas {
        let key = r["key"].as_str().expect("key");
        let members: Vec<&Value> = (1..=CAMERAS)
            .filter(|&c| area_of(c) == key || area_of(c).starts_with(&format!("{key}/")))
            .map(|c| by_key[&format!("c{c:02}")])
            .collect();
        assert!(!members.is_empty(), "area row {key} has no cameras");
        for field in ["scheduled_s", "online_s", "intact_s"] {
            let sum: f64 = members
                .iter()
                .map(|m| m[field].as_f64().unwrap_or(0.0))
                .sum();
            let got = r[field].as_f64().unwrap_or(f64::NAN);
            assert!(
                (got - sum).abs() < 0.01 * members.len() as f64,
                "area {key}: {field} {got} but its {} cameras sum to {sum}",
                members.len()
            );
        }
        let (ok_s, sched_s) = area_truth
            .get(key)
            .copied()
            .or_else(|| {
                // Village rows equal their township's cameras.
                let township = key.rsplit_once('/').map(|(t, _)| t)?;
                area_truth.get(township).copied()
            })
            .expect("truth for the area");
        let truth = ok_s / sched_s;
        let got = r["availability"].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "  {key}: availability {:.2} % (truth {:.2} %)",
            100.0 * got,
            100.0 * truth
        );
        if (got - truth).abs() > TOLERANCE {
            failures.push(format!(
                "area {key}: availability {got:.4} vs truth {truth:.4}"
            ));
        }
    }
    let keys: Vec<&str> = areas.iter().filter_map(|r| r["key"].as_str()).collect();
    for k in [
        "示范县",
        "示范县/城关镇",
        TOWNSHIP_A,
        "示范县/桃源镇",
        TOWNSHIP_B,
    ] {
        assert!(keys.contains(&k), "no area row {k}: {keys:?}");
    }

    let healthy = camera(&svc, "c20");
    assert!(is_state(&healthy, "online"), "{healthy}");
    eprintln!(
        "\nscenario took {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        // The ledger's view of each camera that missed, for the diagnosis.
        let mut seen = std::collections::BTreeSet::new();
        for f in &failures {
            let Some(id) = f.split(':').next().filter(|id| id.starts_with('c')) else {
                continue;
            };
            if seen.insert(id.to_owned()) {
                eprintln!("\n{id} history (oldest first), t relative to the scenario start:");
                let t0_ms = ingest_support::unix_ms(t0_wall) as f64;
                for t in history(&svc, id).iter().rev() {
                    eprintln!(
                        "  t={:>7.2}s  {} → {} {}",
                        (t["at_ms"].as_f64().unwrap_or(0.0) - t0_ms) / 1000.0,
                        t["from"]["state"],
                        t["to"]["state"],
                        t["to"]["reason"]
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
