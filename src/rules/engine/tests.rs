//! Rule engine tests with synthetic tracks (and, for intrusion, the real tracker on synthetic
//! detections). Times are explicit frame times; nothing sleeps.

use super::*;
use crate::rules::{AlertType, RuleSet, RulesConfig, ValidateContext, parse_toml};
use crate::track::{Detection, Tracker, TrackerConfig};

const W: u32 = 1920;
const H: u32 = 1080;
const ZONE: &str = "[[0.4, 0.4], [0.6, 0.4], [0.6, 0.8], [0.4, 0.8]]";

/// Unix time of a local (UTC+8) time in March 2026; 2 March 2026 is a Monday.
fn local(day: i64, h: i64, m: i64) -> f64 {
    let march1 = 1_772_323_200i64 - crate::rules::UTC_OFFSET_S;
    (march1 + (day - 1) * 86_400 + h * 3600 + m * 60) as f64
}

/// Monday 2 March 2026, 12:00 local.
fn noon() -> f64 {
    local(2, 12, 0)
}

fn vctx() -> ValidateContext {
    ValidateContext {
        known_cameras: None,
        action_model: true,
        anomaly_model: true,
        fall_model: true,
    }
}

fn config(toml: &str) -> RulesConfig {
    match parse_toml(toml, &vctx()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn engine(toml: &str) -> RuleEngine {
    RuleEngine::new("c1", config(toml).rules).unwrap()
}

/// A person whose foot point is at normalised (fx, fy); box 60×160 px.
fn tr(id: u64, fx: f32, fy: f32) -> Track {
    let (x, y) = (fx * W as f32, fy * H as f32);
    Track {
        id,
        bbox: [x - 30.0, y - 160.0, x + 30.0, y],
        kind: ObjectKind::Person,
        score: 0.9,
        velocity_px_s: (0.0, 0.0),
        first_seen: 0.0,
        last_seen: 0.0,
        hits: 5,
        missed: 0,
    }
}

fn with_kind(mut t: Track, k: ObjectKind) -> Track {
    t.kind = k;
    t
}

fn ids(alerts: &[Alert]) -> Vec<(String, Vec<u64>)> {
    alerts
        .iter()
        .map(|a| (a.rule_id.clone(), a.track_ids.clone()))
        .collect()
}

fn person_det(fx: f32, fy: f32) -> Detection {
    let t = tr(0, fx, fy);
    Detection {
        bbox: t.bbox,
        score: 0.85,
        kind: ObjectKind::Person,
    }
}

#[test]
fn person_walking_into_a_zone_raises_exactly_one_intrusion() {
    let mut eng = engine(&format!(
        r#"
[[rules]]
id = "gate"
name = "北门"
camera = "c1"
kind = "intrusion"
zone = {ZONE}
dispatch = true
"#
    ));
    let mut tracker = Tracker::new(TrackerConfig::default()).unwrap();
    let mut alerts = Vec::new();
    // Through the real tracker at 1 fps: A walks from x 0.10 into the zone and stays there; B walks
    // along the top of the frame, never inside.
    for k in 0..30 {
        let t = noon() + k as f64;
        let ax = (0.1 + 0.03 * k as f32).min(0.5);
        let bx = 0.9 - 0.025 * k as f32;
        let dets = [person_det(ax, 0.6), person_det(bx, 0.25)];
        let tracks = tracker.update(t, W, H, &dets);
        alerts.extend(eng.observe(t, W, H, &tracks, None));
    }
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.alert_type, AlertType::Intrusion);
    assert_eq!(a.code.as_deref(), Some("06"));
    assert_eq!(a.severity, crate::rules::Severity::High);
    assert!(a.dispatch);
    assert_eq!(a.track_ids.len(), 1);
    assert_eq!(a.boxes.len(), 1);
    assert_eq!(eng.zone(&a.rule_id).as_ref().map(Vec::len), Some(4));
    assert!(
        a.message_zh.starts_with("区域入侵：人员进入「北门」"),
        "{}",
        a.message_zh
    );
    assert!(a.message_en.contains("entered \"北门\""));
    // It fired when A's foot first crossed x 0.4: k = 10 (0.1 + 0.3).
    assert!(
        ((a.time_ms as f64 / 1000.0) - (noon() + 10.0)).abs() < 1.5,
        "{}",
        (a.time_ms as f64 / 1000.0) - noon()
    );
    let a_id = tracker
        .tracks()
        .iter()
        .find(|t| t.bbox[3] > 0.5 * H as f32)
        .unwrap()
        .id;
    assert_eq!(a.track_ids[0], a_id);
}

#[test]
fn intrusion_rearms_only_after_leaving_for_the_rearm_time_and_respects_cooldown() {
    let mut eng = engine(&format!(
        r#"
[[rules]]
id = "z"
camera = "c1"
kind = "intrusion"
zone = {ZONE}
rearm = "5s"
cooldown = "0s"

[[rules]]
id = "z-cool"
camera = "c1"
kind = "intrusion"
zone = {ZONE}
rearm = "5s"
cooldown = "1m"
"#
    ));
    let t0 = noon();
    let mut fired: Vec<(f64, String)> = Vec::new();
    // (seconds, inside?) — in for 5 s, out 3 s (< rearm), in 4 s, out 6 s (≥ rearm), in 3 s,
    // one missed frame inside (no information, not a re-entry), then out 6 s and in again at 75 s.
    let mut script: Vec<(f64, bool, u32)> = Vec::new();
    let mut s = 0.0;
    for (secs, inside) in [(5, true), (3, false), (4, true), (6, false), (3, true)] {
        for _ in 0..secs {
            script.push((s, inside, 0));
            s += 1.0;
        }
    }
    script.push((s, true, 1));
    s += 1.0;
    script.push((s, true, 0));
    for k in 0..6 {
        script.push((s + 1.0 + k as f64, false, 0));
    }
    script.push((75.0, true, 0));
    for (dt, inside, missed) in script {
        let mut track = tr(7, if inside { 0.5 } else { 0.8 }, 0.6);
        track.missed = missed;
        for a in eng.observe(t0 + dt, W, H, &[track], None) {
            fired.push((dt, a.rule_id));
        }
    }
    assert_eq!(
        fired,
        [
            (0.0, "z".to_string()),
            (0.0, "z-cool".to_string()),
            (18.0, "z".to_string()),
            // z-cool's re-entry at 18 s is inside its 1 min cooldown: withheld, not delayed.
            (75.0, "z".to_string()),
            (75.0, "z-cool".to_string()),
        ]
    );
    assert_eq!(eng.suppressed(), [("z", 0), ("z-cool", 1)]);
}

#[test]
fn a_person_who_stays_outside_raises_nothing() {
    let mut eng = engine(&format!(
        "[[rules]]\nid = \"z\"\ncamera = \"c1\"\nkind = \"intrusion\"\nzone = {ZONE}\n"
    ));
    for k in 0..60 {
        // Walks right along the zone's lower edge, just outside (foot y 0.85 > 0.8); the box's
        // top overlaps the zone, which must not count: the foot point is what counts.
        let t = tr(1, 0.2 + 0.01 * k as f32, 0.85);
        assert!(eng.observe(noon() + k as f64, W, H, &[t], None).is_empty());
    }
}

#[test]
fn tripwire_counts_crossings_only_in_the_configured_direction() {
    // Horizontal line drawn left to right across the middle: side A is above, side B below.
    let mut eng = engine(
        r#"
[[rules]]
id = "down"
camera = "c1"
kind = "tripwire"
line = [[0.2, 0.5], [0.8, 0.5]]
direction = "a_to_b"
cooldown = "0s"

[[rules]]
id = "up"
camera = "c1"
kind = "tripwire"
line = [[0.2, 0.5], [0.8, 0.5]]
direction = "b_to_a"
cooldown = "0s"

[[rules]]
id = "any"
camera = "c1"
kind = "tripwire"
line = [[0.2, 0.5], [0.8, 0.5]]
cooldown = "0s"
"#,
    );
    let t0 = noon();
    let mut got = Vec::new();
    // Track 1 walks down across the line, track 2 walks up, track 3 walks down beyond the line's
    // end (x 0.9), track 4 stops on the line and then goes back up (no crossing).
    let path = |k: usize, down: bool| {
        let y = 0.3 + 0.05 * k as f32;
        if down { y } else { 0.8 - (y - 0.3) }
    };
    for k in 0..10 {
        let mut on_line = tr(4, 0.6, [0.4, 0.45, 0.5, 0.5, 0.45, 0.4][k.min(5)]);
        on_line.missed = 0;
        let tracks = [
            tr(1, 0.3, path(k, true)),
            tr(2, 0.5, path(k, false)),
            tr(3, 0.9, path(k, true)),
            on_line,
        ];
        for a in eng.observe(t0 + k as f64, W, H, &tracks, None) {
            assert_eq!(a.alert_type, AlertType::Tripwire);
            assert_eq!(a.code.as_deref(), Some("05"));
            assert_eq!(eng.zone(&a.rule_id).as_ref().map(Vec::len), Some(2));
            got.push((a.rule_id, a.track_ids[0]));
        }
    }
    got.sort();
    let expect: Vec<(String, u64)> = [("any", 1), ("any", 2), ("down", 1), ("up", 2)]
        .iter()
        .map(|(r, t)| (r.to_string(), *t))
        .collect();
    assert_eq!(got, expect);

    // Back and forth: each crossing in the direction counts once.
    let mut eng = engine(
        "[[rules]]\nid = \"down\"\ncamera = \"c1\"\nkind = \"tripwire\"\n\
         line = [[0.2, 0.5], [0.8, 0.5]]\ndirection = \"a_to_b\"\ncooldown = \"0s\"\n",
    );
    let ys = [0.4, 0.6, 0.4, 0.6, 0.6, 0.4, 0.6];
    let n: usize = ys
        .iter()
        .enumerate()
        .map(|(k, &y)| {
            eng.observe(t0 + k as f64, W, H, &[tr(9, 0.5, y)], None)
                .len()
        })
        .sum();
    assert_eq!(n, 3);
}

fn stay(eng: &mut RuleEngine, secs: usize, inside: &[u64], outside: &[u64]) -> Vec<Alert> {
    let mut out = Vec::new();
    for k in 0..secs {
        let mut tracks: Vec<Track> = inside
            .iter()
            .enumerate()
            .map(|(i, &id)| tr(id, 0.42 + 0.03 * i as f32, 0.5 + 0.005 * (k % 3) as f32))
            .collect();
        tracks.extend(outside.iter().map(|&id| tr(id, 0.1, 0.3)));
        out.extend(eng.observe(noon() + k as f64, W, H, &tracks, None));
    }
    out
}

#[test]
fn loitering_fires_once_when_the_stay_exceeds_the_dwell_and_not_otherwise() {
    let rules = |dwell: &str| {
        engine(&format!(
            "[[rules]]\nid = \"loiter\"\ncamera = \"c1\"\nkind = \"loitering\"\nzone = {ZONE}\ndwell = \"{dwell}\"\n"
        ))
    };
    // A 40 s stay at 1 fps, with a bystander outside the zone the whole time.
    let alerts = stay(&mut rules("30s"), 40, &[3], &[4]);
    assert_eq!(ids(&alerts), [("loiter".to_string(), vec![3])]);
    assert_eq!(alerts[0].code.as_deref(), Some("08"));
    assert!(((alerts[0].time_ms as f64 / 1000.0) - (noon() + 30.0)).abs() < 1e-9);
    assert!(
        alerts[0].message_zh.contains("停留 30 秒"),
        "{}",
        alerts[0].message_zh
    );
    assert!(stay(&mut rules("50s"), 40, &[3], &[4]).is_empty());
}

#[test]
fn gathering_fires_once_with_enough_people_for_long_enough() {
    let rules = |n: u32, hold: &str| {
        engine(&format!(
            "[[rules]]\nid = \"crowd\"\ncamera = \"c1\"\nkind = \"gathering\"\nzone = {ZONE}\n\
             min_count = {n}\nhold = \"{hold}\"\n"
        ))
    };
    let people = [1, 2, 3, 4, 5];
    let alerts = stay(&mut rules(5, "10s"), 20, &people, &[6, 7]);
    assert_eq!(ids(&alerts), [("crowd".to_string(), vec![1, 2, 3, 4, 5])]);
    assert_eq!(alerts[0].code.as_deref(), Some("11"));
    assert!(((alerts[0].time_ms as f64 / 1000.0) - (noon() + 10.0)).abs() < 1e-9);
    assert!(alerts[0].message_en.starts_with("Gathering: 5 people"));
    assert!(
        stay(&mut rules(6, "10s"), 20, &people, &[6, 7]).is_empty(),
        "too few"
    );
    assert!(
        stay(&mut rules(5, "30s"), 20, &people, &[6, 7]).is_empty(),
        "too short"
    );
}

#[test]
fn running_is_judged_by_speed_in_box_heights() {
    let mut eng =
        engine("[[rules]]\nid = \"run\"\ncamera = \"c1\"\nkind = \"running\"\nmin_speed = 2.0\n");
    let mut alerts = Vec::new();
    for k in 0..6 {
        let t = noon() + k as f64 * 0.5;
        // Near walker: 160 px tall at 120 px/s = 0.75 heights/s.
        let mut walker = tr(1, 0.3, 0.9);
        walker.velocity_px_s = (120.0, 0.0);
        // Far runner: 40 px tall at 120 px/s = 3 heights/s, same pixel speed as the walker.
        let mut runner = tr(2, 0.6, 0.3);
        runner.bbox[1] = runner.bbox[3] - 40.0;
        runner.bbox[0] += 20.0;
        runner.bbox[2] -= 20.0;
        runner.velocity_px_s = (0.0, -120.0);
        alerts.extend(eng.observe(t, W, H, &[walker, runner], None));
    }
    assert_eq!(ids(&alerts), [("run".to_string(), vec![2])]);
    assert_eq!(alerts[0].code.as_deref(), Some("04"));
    // Needs 2 samples over the speed (default), so it fires on the second frame.
    assert!(((alerts[0].time_ms as f64 / 1000.0) - (noon() + 0.5)).abs() < 1e-9);
}

#[test]
fn fall_fires_after_the_fallen_state_is_held() {
    let rules = |hold: &str| {
        engine(&format!(
            "[[rules]]\nid = \"fall\"\ncamera = \"c1\"\nkind = \"fall\"\nhold = \"{hold}\"\n"
        ))
    };
    let run = |eng: &mut RuleEngine| {
        let mut out = Vec::new();
        for k in 0..8 {
            let kind = if k < 2 {
                ObjectKind::Person
            } else {
                ObjectKind::FallenPerson
            };
            let tracks = [with_kind(tr(5, 0.5, 0.7), kind), tr(6, 0.2, 0.7)];
            out.extend(eng.observe(noon() + k as f64, W, H, &tracks, None));
        }
        out
    };
    // Fallen from 2 s to 7 s: 5 s held.
    let alerts = run(&mut rules("3s"));
    assert_eq!(ids(&alerts), [("fall".to_string(), vec![5])]);
    assert_eq!(alerts[0].code.as_deref(), None);
    assert_eq!(alerts[0].alert_type.zh(), "跌倒");
    assert!(((alerts[0].time_ms as f64 / 1000.0) - (noon() + 5.0)).abs() < 1e-9);
    assert!(run(&mut rules("10s")).is_empty());
}

#[test]
fn scene_anomaly_needs_k_consecutive_samples() {
    let mut eng = engine(
        "[[rules]]\nid = \"cover\"\ncamera = \"c1\"\nkind = \"scene_anomaly\"\n\
         threshold = 0.7\nsamples = 3\ncooldown = \"10s\"\n",
    );
    let scores = [
        Some(0.8),
        Some(0.9),
        Some(0.5), // two, then broken
        Some(0.8),
        None,
        Some(0.8),
        Some(0.9), // None (model skipped a frame) neither counts nor breaks
        Some(0.95),
        Some(0.99), // still the same episode: no second alert
        Some(0.1),
        Some(0.8),
        Some(0.8),
        Some(0.8), // new episode inside the cooldown: withheld
        Some(0.1),
        Some(0.8),
        Some(0.8),
        Some(0.8),
        Some(0.1),
        Some(0.9),
        Some(0.9),
        Some(0.9),
    ];
    let fired: Vec<usize> = scores
        .iter()
        .enumerate()
        .filter(|(k, s)| !eng.observe(noon() + *k as f64, W, H, &[], **s).is_empty())
        .map(|(k, _)| k)
        .collect();
    // 6: third sample ≥ 0.7 in a row; 12 withheld (6 s after); 16 allowed (10 s after 6);
    // 20 withheld again (4 s after 16).
    assert_eq!(fired, [6, 16]);
}

#[test]
fn schedule_blocks_outside_its_hours_including_across_midnight() {
    let mut eng = engine(&format!(
        r#"
[[rules]]
id = "night"
camera = "c1"
kind = "intrusion"
zone = {ZONE}
schedule = {{ days = ["mon"], from = "22:00", to = "06:00" }}
cooldown = "0s"
rearm = "1s"
"#
    ));
    let mut visit = |t: f64, id: u64| -> usize {
        let n = eng.observe(t, W, H, &[tr(id, 0.5, 0.6)], None).len();
        // Leave again so the next visit is a new entry.
        eng.observe(t + 1.0, W, H, &[tr(id, 0.9, 0.6)], None);
        eng.observe(t + 3.0, W, H, &[tr(id, 0.9, 0.6)], None);
        n
    };
    assert_eq!(visit(local(2, 12, 0), 1), 0, "Monday noon");
    assert_eq!(visit(local(2, 21, 30), 2), 0, "Monday 21:30");
    assert_eq!(visit(local(2, 23, 0), 3), 1, "Monday 23:00");
    assert_eq!(
        visit(local(3, 3, 0), 4),
        1,
        "Tuesday 03:00 belongs to Monday night"
    );
    assert_eq!(visit(local(3, 6, 30), 5), 0, "Tuesday 06:30");
    assert_eq!(
        visit(local(3, 23, 0), 6),
        0,
        "Tuesday night is not scheduled"
    );

    // Someone already inside when the window opens is reported when it opens.
    let mut out = Vec::new();
    for k in 0..4 {
        let t = local(9, 21, 58) + 60.0 * k as f64;
        out.extend(eng.observe(t, W, H, &[tr(10, 0.5, 0.6)], None));
    }
    assert_eq!(out.len(), 1);
    assert!(((out[0].time_ms as f64 / 1000.0) - local(9, 22, 0)).abs() < 1e-9);
}

#[test]
fn masks_and_area_filters_drop_objects() {
    // A zone with a masked corner (a tree that moves in the wind, say).
    let mut eng = engine(&format!(
        r#"
[[rules]]
id = "masked"
camera = "c1"
kind = "intrusion"
zone = {ZONE}
masks = [[[0.4, 0.4], [0.5, 0.4], [0.5, 0.6], [0.4, 0.6]]]

[[rules]]
id = "big-only"
camera = "c1"
kind = "intrusion"
zone = {ZONE}
min_area = 0.01
max_area = 0.2
"#
    ));
    // Track 1: foot inside the mask. Track 2: inside the zone, outside the mask, normal size
    // (60×160 px = 0.46 % of the frame: below big-only's min_area). Track 3: a large box.
    let mut big = tr(3, 0.55, 0.75);
    big.bbox = [1000.0, 300.0, 1150.0, 0.75 * H as f32]; // 150×510 px = 3.7 %
    let mut huge = tr(4, 0.5, 0.79);
    huge.bbox = [0.0, 0.0, 1900.0, 0.79 * H as f32]; // most of the frame
    let out = eng.observe(
        noon(),
        W,
        H,
        &[tr(1, 0.45, 0.5), tr(2, 0.55, 0.7), big, huge],
        None,
    );
    let mut got = ids(&out);
    got.sort();
    let expect: Vec<(String, Vec<u64>)> =
        [("big-only", 3), ("masked", 2), ("masked", 3), ("masked", 4)]
            .iter()
            .map(|(r, t)| (r.to_string(), vec![*t]))
            .collect();
    assert_eq!(got, expect);
}

#[test]
fn a_static_false_fall_is_removed_by_area_and_mask_without_losing_a_real_one() {
    // A yellow cloth on the grass detected as fallen_person: small and always at the same place.
    let mut eng = engine(
        r#"
[[rules]]
id = "fall"
camera = "c1"
kind = "fall"
hold = "3s"
min_area = 0.004
masks = [[[0.05, 0.85], [0.25, 0.85], [0.25, 0.99], [0.05, 0.99]]]
"#,
    );
    let mut cloth_small = with_kind(tr(1, 0.7, 0.95), ObjectKind::FallenPerson);
    cloth_small.bbox = [1340.0, 1010.0, 1380.0, 0.95 * H as f32]; // 40×16 px
    let mut cloth_masked = with_kind(tr(2, 0.15, 0.9), ObjectKind::FallenPerson);
    cloth_masked.bbox = [200.0, 900.0, 380.0, 0.9 * H as f32]; // large enough, but masked
    let mut person = with_kind(tr(3, 0.5, 0.7), ObjectKind::FallenPerson);
    person.bbox = [880.0, 700.0, 1040.0, 0.7 * H as f32]; // 160×56 px = 0.43 %
    let mut out = Vec::new();
    for k in 0..6 {
        out.extend(eng.observe(
            noon() + k as f64,
            W,
            H,
            &[cloth_small.clone(), cloth_masked.clone(), person.clone()],
            None,
        ));
    }
    assert_eq!(ids(&out), [("fall".to_string(), vec![3])]);
}

#[test]
fn fighting_is_inert_and_says_why() {
    let eng_rules = config(
        "[[rules]]\nid = \"fight\"\ncamera = \"c1\"\nkind = \"fighting\"\n\n\
         [[rules]]\nid = \"z\"\ncamera = \"c1\"\nkind = \"intrusion\"\nzone = [[0, 0], [1, 0], [1, 1]]\nenabled = false\n",
    );
    let mut eng = RuleEngine::new("c1", eng_rules.rules).unwrap();
    assert_eq!(eng.inert_rules().len(), 1);
    assert_eq!(eng.inert_rules()[0].0, "fight");
    assert!(eng.inert_rules()[0].1.contains("action model"));
    for k in 0..10 {
        let tracks = [tr(1, 0.5, 0.5), tr(2, 0.51, 0.5)];
        assert!(
            eng.observe(noon() + k as f64, W, H, &tracks, None)
                .is_empty()
        );
    }
}

#[test]
fn rule_set_replaces_one_camera_without_touching_others() {
    let text = format!(
        r#"
[[rules]]
id = "c1-loiter"
camera = "c1"
kind = "loitering"
zone = {ZONE}
dwell = "10s"

[[rules]]
id = "c1-zone"
camera = "c1"
kind = "intrusion"
zone = {ZONE}

[[rules]]
id = "c2-loiter"
camera = "c2"
kind = "loitering"
zone = {ZONE}
dwell = "10s"
"#
    );
    let cfg = config(&text);
    let mut set = RuleSet::new(&cfg).unwrap();
    assert_eq!(set.cameras().collect::<Vec<_>>(), ["c1", "c2"]);
    let person = [tr(1, 0.5, 0.6)];
    let mut all = Vec::new();
    for k in 0..6 {
        for cam in ["c1", "c2"] {
            all.extend(set.observe(cam, noon() + k as f64, W, H, &person, None));
        }
    }
    assert_eq!(ids(&all), [("c1-zone".to_string(), vec![1])]);

    // New c1 rules at 6 s: the intrusion rule is unchanged (keeps its state: no second alert),
    // the loitering rule gets a longer dwell (fresh state). c2 is not touched: its 10 s dwell
    // still counts from 0 s.
    let mut c1 = cfg.by_camera()["c1"].clone();
    if let RuleKind::Loitering { dwell_s, .. } = &mut c1[0].kind {
        *dwell_s = 20.0;
    }
    set.replace_camera("c1", c1).unwrap();
    let mut later = Vec::new();
    for k in 6..12 {
        for cam in ["c1", "c2"] {
            for a in set.observe(cam, noon() + k as f64, W, H, &person, None) {
                later.push((k, a.rule_id));
            }
        }
    }
    assert_eq!(later, [(10, "c2-loiter".to_string())]);

    // Rules for another camera are refused and change nothing.
    let err = set
        .replace_camera("c1", cfg.by_camera()["c2"].clone())
        .unwrap_err();
    assert!(matches!(err, RulesError::WrongCamera { .. }), "{err}");
    assert_eq!(set.engine("c1").unwrap().rules().count(), 2);
    // An empty list removes a camera's rules; unknown cameras raise nothing.
    set.replace_camera("c2", Vec::new()).unwrap();
    assert!(set.engine("c2").is_none());
    assert!(set.observe("c9", noon(), W, H, &person, None).is_empty());
    set.replace_all(&cfg).unwrap();
    assert_eq!(set.cameras().count(), 2);
}

#[test]
fn time_going_back_clears_state_and_bad_frames_are_ignored() {
    let mut eng = engine(&format!(
        "[[rules]]\nid = \"z\"\ncamera = \"c1\"\nkind = \"intrusion\"\nzone = {ZONE}\n"
    ));
    assert_eq!(eng.observe(noon(), W, H, &[tr(1, 0.5, 0.6)], None).len(), 1);
    assert!(
        eng.observe(noon() + 1.0, W, H, &[tr(1, 0.5, 0.6)], None)
            .is_empty()
    );
    assert!(
        eng.observe(f64::NAN, W, H, &[tr(1, 0.5, 0.6)], None)
            .is_empty()
    );
    assert!(
        eng.observe(noon() + 2.0, 0, H, &[tr(1, 0.5, 0.6)], None)
            .is_empty()
    );
    // The stream restarted with an earlier clock (and a new tracker): state starts again.
    assert_eq!(
        eng.observe(noon() - 100.0, W, H, &[tr(1, 0.5, 0.6)], None)
            .len(),
        1
    );
}
