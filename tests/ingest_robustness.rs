//! Ingest robustness against real RTSP: 500 reconnect cycles leave threads, file descriptors and
//! memory flat; a camera server that is not ours (gst-rtsp-server) works; bad input gives clear
//! per-camera reasons and never stops the other cameras.
//!
//! The tests of this binary run one at a time (`SERIAL`): the resource test measures the whole
//! process, so no other test may start or stop threads meanwhile.

mod common;
mod ingest_support;

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{api, asset, start_sim};
use ingest_support::{
    Blackhole, GstRtspServer, HtmlServer, Resources, SilentServer, Svc, camera, camera_toml,
    history, is_state, reconnects_total, start_service, wait_for,
};
use qianliyan::camsim::{Fault, TransportPolicy};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const FAST_RECONNECT: &str = r#"
[ingest]
stall_after = "5s"
backoff_initial = "50ms"
backoff_max = "200ms"
[health]
grace = "3s"
"#;

/// In-process counters of one camera (cheap to poll every few ms, unlike the HTTP API).
fn counter(svc: &Svc, id: &str, read: impl Fn(&qianliyan::camera::Counters) -> u64) -> u64 {
    read(&svc.entry(id).counters)
}

fn sessions_ended(svc: &Svc, id: &str) -> u64 {
    counter(svc, id, |c| {
        c.reconnects.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    })
}

fn frames_in(svc: &Svc, id: &str) -> u64 {
    counter(svc, id, |c| c.frames_in.load(Ordering::Relaxed))
}

fn analysed(svc: &Svc, id: &str) -> u64 {
    counter(svc, id, |c| c.analysed.load(Ordering::Relaxed))
}

/// Polls `cond` every 5 ms (a sleep, not a spin) for at most `limit`.
fn until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until both cameras analysed a new frame (so the decoders of the current sessions run),
/// lets in-flight work finish, and reads the process's figures.
fn steady_sample(svc: &Svc, ids: &[&str]) -> Resources {
    let before: Vec<u64> = ids.iter().map(|id| analysed(svc, id)).collect();
    until(Duration::from_secs(10), "analysing frames", || {
        ids.iter()
            .zip(&before)
            .all(|(id, b)| analysed(svc, id) > *b)
    });
    std::thread::sleep(Duration::from_millis(1500));
    Resources::now()
}

#[test]
fn five_hundred_reconnect_cycles_leave_threads_fds_and_rss_flat() {
    let _serial = serial();
    const CYCLES: u32 = 500;
    const WARM_UP: u32 = 50;
    let started = Instant::now();
    let sim = start_sim(2, None, TransportPolicy::Both);
    // c1 shares the pooled keyframe decoder; c2 decodes full GOPs with a decoder of its own, which
    // every session end must release (a GStreamer pipeline and its threads per session).
    let cams = camera_toml("c1", &sim.running.url(1), "示范县/城关镇", "")
        + &camera_toml(
            "c2",
            &sim.running.url(2),
            "示范县/城关镇",
            "keyframe_only = false",
        );
    let svc = start_service(FAST_RECONNECT, &cams, &[]);
    let ids = ["c1", "c2"];
    for id in ids {
        wait_for(&svc, id, Duration::from_secs(20), "online", |v| {
            is_state(v, "online")
        });
    }
    let cams_sim: Vec<_> = [1usize, 2]
        .iter()
        .map(|n| &sim.running.shared.cameras[n - 1])
        .collect();

    // One cycle: take both cameras down (camsim ends their sessions: the service sees the session
    // end), bring them back, and wait for media from the new sessions.
    let cycle = || {
        let ended: Vec<u64> = ids.iter().map(|id| sessions_ended(&svc, id)).collect();
        for c in &cams_sim {
            c.set_fault(Fault::Down);
        }
        until(Duration::from_secs(10), "sessions ended", || {
            ids.iter()
                .zip(&ended)
                .all(|(id, e)| sessions_ended(&svc, id) > *e)
        });
        // No frame of an ended session can arrive any more: the next frame is a new session's.
        let frames: Vec<u64> = ids.iter().map(|id| frames_in(&svc, id)).collect();
        for c in &cams_sim {
            c.set_fault(Fault::None);
        }
        until(Duration::from_secs(10), "media from new sessions", || {
            ids.iter()
                .zip(&frames)
                .all(|(id, f)| frames_in(&svc, id) > *f)
        });
    };

    for _ in 0..WARM_UP {
        cycle();
    }
    let warm = steady_sample(&svc, &ids);
    let ended_warm: Vec<u64> = ids
        .iter()
        .map(|id| reconnects_total(&camera(&svc, id)))
        .collect();
    eprintln!("after {WARM_UP:>3} cycles: {warm}  (sessions ended per API: {ended_warm:?})");
    let t_cycles = Instant::now();
    let mut samples = vec![(WARM_UP, warm)];
    for i in WARM_UP + 1..=CYCLES {
        cycle();
        if i % 150 == 0 && i < CYCLES {
            let r = steady_sample(&svc, &ids);
            eprintln!("after {i:>3} cycles: {r}");
            samples.push((i, r));
        }
    }
    let end = steady_sample(&svc, &ids);
    samples.push((CYCLES, end));
    let per_cycle = t_cycles.elapsed().as_secs_f64() / f64::from(CYCLES - WARM_UP);
    let views: Vec<Value> = ids.iter().map(|id| camera(&svc, id)).collect();
    eprintln!(
        "after {CYCLES:>3} cycles: {end}  ({:.0} ms per cycle)",
        per_cycle * 1000.0
    );
    for v in &views {
        eprintln!(
            "  {}: state {} reconnects {} frames_in {} analysed {}",
            v["id"],
            v["state"],
            v["counters"]["reconnects"],
            v["counters"]["frames_in"],
            v["counters"]["analysed"]
        );
    }
    eprintln!(
        "growth {WARM_UP}→{CYCLES}: threads {:+}, fds {:+}, rss {:+.1} MB; test took {:.0} s",
        end.threads - warm.threads,
        end.fds - warm.fds,
        (end.rss_kb - warm.rss_kb) as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );

    for v in &views {
        // Every cycle ended one session (camsim closing it: eos) plus any retries refused while down.
        let n = reconnects_total(v);
        assert!(
            n >= u64::from(CYCLES),
            "{}: only {n} sessions ended for {CYCLES} cycles: {}",
            v["id"],
            v["counters"]["reconnects"]
        );
        assert!(is_state(v, "online"), "back online after the cycles: {v}");
        let s = &v["stream"];
        assert_eq!(s["codec"], "h264", "{v}");
    }
    // Threads: the same sessions and decoders exist at both samples; the slack of 2 covers tokio's
    // blocking pool (threads spawned on demand, reaped after 10 s idle) and GStreamer's task pool.
    assert!(
        (end.threads - warm.threads).abs() <= 2,
        "threads {} → {} over {} cycles",
        warm.threads,
        end.threads,
        CYCLES - WARM_UP
    );
    // Fds: one RTSP connection per camera on each side (client and camsim) at both samples; the
    // slack of 2 covers one connection whose close is still in flight.
    assert!(
        (end.fds - warm.fds).abs() <= 2,
        "file descriptors {} → {} over {} cycles",
        warm.fds,
        end.fds,
        CYCLES - WARM_UP
    );
    // RSS: allocator arenas settle during the warm-up; a leak of even 20 kB per cycle would show
    // as 9 MB over 450 cycles.
    let growth_mb = (end.rss_kb - warm.rss_kb) as f64 / 1024.0;
    assert!(
        growth_mb < 10.0,
        "RSS grew {growth_mb:.1} MB over {} cycles: {samples:?}",
        CYCLES - WARM_UP
    );
}

/// The sample video as gst-rtsp-server serves a file: demuxed, parsed, payloaded, SPS/PPS in band.
fn file_launch() -> String {
    format!(
        "( filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
        asset("video/vtest_sub.mp4").display()
    )
}

#[test]
fn a_camera_served_by_gst_rtsp_server_comes_online_over_tcp_and_udp() {
    let _serial = serial();
    let t0 = Instant::now();
    // One mount per client: gst-rtsp-server 1.22 aborts the whole process (an assertion in
    // gst_rtsp_media_get_rates) when a TCP and a UDP client race on one shared media.
    let server = GstRtspServer::start(&[("/tcp", file_launch()), ("/udp", file_launch())]);
    let cams = camera_toml(
        "gst-tcp",
        &server.url("/tcp"),
        "示范县/城关镇",
        "transport = \"tcp\"",
    ) + &camera_toml(
        "gst-udp",
        &server.url("/udp"),
        "示范县/城关镇",
        "transport = \"udp\"",
    );
    let svc = start_service(FAST_RECONNECT, &cams, &[]);
    for (id, transport) in [("gst-tcp", "tcp"), ("gst-udp", "udp")] {
        let t = wait_for(&svc, id, Duration::from_secs(20), "online", |v| {
            is_state(v, "online") && v["fps_in"].as_f64().unwrap_or(0.0) > 0.0
        });
        let v = camera(&svc, id);
        eprintln!(
            "{id}: online after {t:.1} s: stream {} fps_in {:.1}",
            v["stream"], v["fps_in"]
        );
        assert_eq!(v["stream"]["codec"], "h264", "{v}");
        assert_eq!(v["stream"]["width"], 384, "{v}");
        assert_eq!(v["stream"]["height"], 288, "{v}");
        assert_eq!(v["stream"]["transport"], transport, "{v}");
    }
    // Frames keep arriving and are decoded (keyframe-only analysis), not just one burst.
    std::thread::sleep(Duration::from_secs(3));
    for id in ["gst-tcp", "gst-udp"] {
        let v = camera(&svc, id);
        assert!(is_state(&v, "online"), "{v}");
        assert!(
            v["counters"]["frames_in"].as_u64().unwrap_or(0) >= 30,
            "{v}"
        );
        assert!(v["counters"]["analysed"].as_u64().unwrap_or(0) >= 1, "{v}");
        assert_eq!(reconnects_total(&v), 0, "no session ended: {v}");
    }
    drop(svc);
    drop(server);
    eprintln!("interop test took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn bad_sources_get_their_own_reasons_and_never_stop_a_good_camera() {
    let _serial = serial();
    let t0 = Instant::now();
    let sim = start_sim(2, None, TransportPolicy::Both);
    let html = HtmlServer::start();
    let silent = SilentServer::start();
    let blackhole = Blackhole::start();
    // An RTSP server of another make whose only track is audio: a URL with no video behind it.
    let audio = GstRtspServer::start(&[(
        "/audio",
        "( audiotestsrc is-live=true ! audioconvert ! rtpL16pay name=pay0 pt=97 )".to_owned(),
    )]);
    let rtsp = sim.running.rtsp_addr;
    let cases: [(&str, String, &[&str]); 6] = [
        // Nobody answers the SYN (a firewall that drops packets).
        (
            "blackhole",
            format!("rtsp://{}/x", blackhole.addr),
            &["timeout", "unreachable"],
        ),
        // Accepts the connection and never answers DESCRIBE.
        ("hung", format!("rtsp://{}/live", silent.addr), &["timeout"]),
        // camsim answers 404 for a camera it does not have and for a path it does not serve.
        ("nocam", format!("rtsp://{rtsp}/cam/0099"), &["not_found"]),
        (
            "nopath",
            format!("rtsp://{rtsp}/Streaming/Channels/101"),
            &["not_found"],
        ),
        // RTSP works but there is no video track.
        ("audioonly", audio.url("/audio"), &["not_found"]),
        // A web page, not a stream (http:// is a scheme the inventory accepts).
        (
            "webpage",
            format!("http://{}/index.html", html.addr),
            &["not_found", "refused", "decode_error"],
        ),
    ];
    let mut cams = camera_toml("good", &sim.running.url(1), "示范县/城关镇", "");
    for (id, url, _) in &cases {
        cams += &camera_toml(id, url, "示范县/城关镇", "");
    }
    let svc = start_service(FAST_RECONNECT, &cams, &[]);
    wait_for(&svc, "good", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    let good_since = camera(&svc, "good")["since_ms"].clone();

    // Bounds: a connect that never completes (blackhole) or a DESCRIBE never answered (hung) is
    // `timeout` from the tracker's watchdog at stall_after (5 s) after the attempt began + the 1 s
    // poll; the others fail at once and show after the grace (3 s). 12 s is the issue's bound for
    // offline. last_error is set when the attempt itself fails: for the two hung ones, at ingest's
    // handshake timeout (10 s), so the same 12 s bound holds for it.
    let limit = Duration::from_secs(12);
    let t_wait = Instant::now();
    let mut seen: std::collections::BTreeMap<&str, (Option<f64>, Option<f64>)> =
        cases.iter().map(|(id, _, _)| (*id, (None, None))).collect();
    while seen.values().any(|(r, e)| r.is_none() || e.is_none()) {
        let good = camera(&svc, "good");
        assert!(
            is_state(&good, "online") && good["since_ms"] == good_since,
            "the good camera left online: {good}"
        );
        let t = t_wait.elapsed().as_secs_f64();
        for (id, _, reasons) in &cases {
            let v = camera(&svc, id);
            let (r, e) = seen.get_mut(id).expect("case");
            if r.is_none() && is_state(&v, "offline") && reasons.iter().any(|x| v["reason"] == *x) {
                *r = Some(t);
            }
            if e.is_none()
                && v["last_error"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty())
            {
                *e = Some(t);
            }
            assert!(
                (r.is_some() && e.is_some()) || t_wait.elapsed() < limit,
                "{id}: not offline with one of {reasons:?} and a last_error within {limit:?}: {v}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for (id, _, _) in &cases {
        let v = camera(&svc, id);
        let (r, e) = seen[id];
        eprintln!(
            "{id:<10} offline({}) after {:.1} s, last_error after {:.1} s: {}",
            v["reason"].as_str().unwrap_or("?"),
            r.unwrap_or(f64::NAN),
            e.unwrap_or(f64::NAN),
            v["last_error"]
        );
    }
    // The reasons stay put while the bad cameras keep retrying.
    std::thread::sleep(Duration::from_secs(4));
    for (id, _, reasons) in &cases {
        let v = camera(&svc, id);
        assert!(
            is_state(&v, "offline") && reasons.iter().any(|r| v["reason"] == *r),
            "{id}: {v}"
        );
    }
    let specific = [
        ("nocam", "404"),
        ("audioonly", "video"),
        ("hung", "DESCRIBE"),
    ];
    for (id, word) in specific {
        let v = camera(&svc, id);
        let e = v["last_error"].as_str().unwrap_or("");
        assert!(
            e.to_lowercase().contains(&word.to_lowercase()),
            "{id}: last_error should say {word:?}: {e:?}"
        );
    }

    // The good camera never left online and never lost its session.
    let good = camera(&svc, "good");
    assert!(is_state(&good, "online"), "{good}");
    assert_eq!(reconnects_total(&good), 0, "{good}");
    let h = history(&svc, "good");
    assert!(
        h.first().is_some_and(|t| t["to"]["state"] == "online")
            && h.iter().all(|t| t["to"]["state"] != "offline"),
        "the good camera's history (newest first): {h:?}"
    );
    drop(svc);
    drop(audio);
    eprintln!("bad-source test took {:.1} s", t0.elapsed().as_secs_f64());
}

/// Field names of a 422 answer.
fn fields(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn malformed_urls_are_refused_at_the_api_and_bad_csv_rows_are_named_by_line_and_column() {
    let _serial = serial();
    let t0 = Instant::now();
    let sim = start_sim(2, None, TransportPolicy::Both);
    let good_url = sim.running.url(1);
    let svc = start_service(
        FAST_RECONNECT,
        &camera_toml("good", &good_url, "示范县/城关镇", ""),
        &[],
    );
    wait_for(&svc, "good", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    let frames_before = frames_in(&svc, "good");

    // Malformed URLs, each refused with 422 naming the field; no credential echoed.
    let body = |url: &str, sub: Option<&str>| {
        let mut v = serde_json::json!({"id": "good", "name": "好", "url": url});
        if let Some(s) = sub {
            v["sub_url"] = s.into();
        }
        v.to_string()
    };
    let bad: [(&str, String, &str); 5] = [
        ("PUT", body("rtsp://[::1/live", None), "url"),
        ("PUT", body("192.168.1.64:554/live", None), "url"),
        (
            "PUT",
            body("rtsp://admin:hunter2@10.0.0.1/live", None),
            "url",
        ),
        ("PUT", body(&good_url, Some("rtsp:///nohost")), "sub_url"),
        (
            "POST",
            serde_json::json!({"id": "new1", "name": "新", "url": "rtsp//10.0.0.1/live"})
                .to_string(),
            "url",
        ),
    ];
    for (method, b, field) in &bad {
        let path = if *method == "PUT" {
            "/api/cameras/good"
        } else {
            "/api/cameras"
        };
        let (status, resp) = api(svc.addr, method, path, b);
        eprintln!("{method} {b} → {status} {resp}");
        assert_eq!(status, 422, "{method} {b}: {resp}");
        assert!(
            fields(&resp).iter().any(|f| f == field),
            "{method} {b}: the error names {field}: {resp}"
        );
        assert!(!resp.contains("hunter2"), "no credential echoed: {resp}");
    }
    let (status, _) = api(svc.addr, "GET", "/api/cameras/new1", "");
    assert_eq!(status, 404, "a refused camera is not added");
    // The refused PUTs did not touch the running camera: same session, frames still counting.
    std::thread::sleep(Duration::from_millis(1500));
    let good = camera(&svc, "good");
    assert!(is_state(&good, "online"), "{good}");
    assert_eq!(reconnects_total(&good), 0, "{good}");
    assert!(
        frames_in(&svc, "good") > frames_before,
        "the same camera entry keeps receiving (a PUT would have replaced it)"
    );

    // CSV: every bad row reported by line and column, valid rows imported. The header has an extra
    // column (allowed), a quoted field holds a comma, another spans two lines (so later line numbers
    // count physical lines).
    let u2 = sim.running.url(2);
    let csv = format!(
        "id,name,url,sub_url,lat,lon,area_code,area_path,jurisdiction,priority,tags,enabled,备注\n\
ok1,\"东门,北侧\",{u2},,31.80,117.20,340100,示范县/城关镇/东街村,城关派出所,1,卡口;重点,yes,x\n\
good,重复已有,{u2},,,,,示范县,,,,,\n\
pri,优先级,{u2},,,,,示范县,,9,,,\n\
ena,启用,{u2},,,,,示范县,,,,maybe,\n\
noname,,{u2},,,,,示范县,,,,,\n\
code,区划,{u2},,,,12ab,示范县,,,,,\n\
ok1,同号,{u2},,,,,示范县,,,,,\n\
short,少列,{u2}\n\
ok3,跨行,{u2},,,,,示范县/桃源镇,\"桃源\n派出所\",,,,\n\
lat,纬度,{u2},,abc,117.2,,示范县,,,,,\n\
sub,子码流,{u2},ftp://x/y,,,,示范县,,,,,\n\
ok4,停用,{u2},,,,,示范县/桃源镇,,2,,no,\n"
    );
    let (status, resp) = api(svc.addr, "POST", "/api/cameras/import", &csv);
    eprintln!("import → {status} {resp}");
    assert_eq!(status, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).expect("json");
    // Product expectations are gathered and asserted at the end, so one broken rule does not hide
    // the others.
    let mut problems = Vec::new();
    if v["imported"] != serde_json::json!(["ok1", "ok3", "ok4"]) {
        problems.push(format!(
            "imported {} but only ok1, ok3 and ok4 are valid rows (a row reported as invalid \
             must not be imported with the bad cell dropped)",
            v["imported"]
        ));
    }
    let errors: Vec<(String, String)> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_owned(),
                e["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = [
        (3, "id"),
        (4, "priority"),
        (5, "enabled"),
        (6, "name"),
        (7, "area_code"),
        (8, "id"),
        (12, "lat"),
        (13, "sub_url"),
    ];
    let mut missing = Vec::new();
    for (line, column) in expect {
        let want = format!("line {line} column {column}");
        if !errors.iter().any(|(f, _)| f.contains(&want)) {
            missing.push(want);
        }
    }
    assert!(
        errors
            .iter()
            .any(|(f, m)| f.contains("line 9") && m.contains("fields")),
        "the short row is reported by its line: {errors:?}"
    );
    if !missing.is_empty() {
        problems.push(format!(
            "errors not named by line and column: {missing:?}; got {errors:?}"
        ));
    }
    for ok_line in ["line 2 ", "line 10 ", "line 14 "] {
        assert!(
            !errors.iter().any(|(f, _)| f.contains(ok_line)),
            "no error for a valid row ({ok_line}): {errors:?}"
        );
    }

    let ok1 = wait_for(&svc, "ok1", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    eprintln!("ok1 online {ok1:.1} s after the import");
    let v = camera(&svc, "ok1");
    assert_eq!(v["name"], "东门,北侧", "{v}");
    assert_eq!(v["tags"], serde_json::json!(["卡口", "重点"]), "{v}");
    assert_eq!(v["priority"], 1, "{v}");
    let v = camera(&svc, "ok3");
    assert_eq!(v["jurisdiction"], "桃源\n派出所", "{v}");
    let v = camera(&svc, "ok4");
    assert!(is_state(&v, "disabled"), "{v}");
    let good = camera(&svc, "good");
    assert!(
        is_state(&good, "online") && reconnects_total(&good) == 0,
        "the existing camera is untouched by the duplicate row: {good}"
    );

    // A syntax error (an unclosed quote) stops reading there; the rows before it still import.
    let csv = format!("id,name,url\nok5,五,{u2}\nbad,\"未闭合,{u2}\nok6,六,{u2}\n");
    let (status, resp) = api(svc.addr, "POST", "/api/cameras/import", &csv);
    eprintln!("import → {status} {resp}");
    assert_eq!(status, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(v["imported"], serde_json::json!(["ok5"]), "{resp}");
    assert!(
        v["errors"].to_string().contains("line 3"),
        "the unclosed quote is reported at its line: {resp}"
    );
    drop(svc);
    eprintln!("API/CSV test took {:.1} s", t0.elapsed().as_secs_f64());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
