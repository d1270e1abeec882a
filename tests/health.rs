//! The service against camsim over real RTSP: states, reasons and quality faults as an engineer sees
//! them through the HTTP API.

mod common;

use std::time::{Duration, Instant};

use common::{api, set_fault, start_sim};
use qianliyan::camsim::{Auth, AuthScheme, TransportPolicy};
use serde_json::Value;

type Svc = common::Service;

/// Starts `qianliyan serve` in-process with `cameras_toml` appended to a small base config.
fn start_service(cameras_toml: &str, env: &[(&str, &str)]) -> Svc {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        r#"
[node]
name = "test"
data_dir = "{data}"
[web]
listen = "127.0.0.1:0"
[ingest]
stall_after = "10s"
backoff_initial = "500ms"
backoff_max = "4s"
auth_failed_backoff = "5s"
[health]
grace = "3s"
{cameras_toml}
{auth}
"#,
        data = dir.path().join("data").display(),
        auth = common::TEST_AUTH,
    );
    common::start_service(dir, &toml, env)
}

fn camera(svc: &Svc, id: &str) -> Value {
    let (status, body) = api(svc.addr, "GET", &format!("/api/cameras/{id}"), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// Polls the camera until `pred` holds; returns the seconds it took, or panics with the last view.
fn wait_for(
    svc: &Svc,
    id: &str,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> f64 {
    let t0 = Instant::now();
    loop {
        // 404 until a node of a cluster took the camera.
        let (status, body) = api(svc.addr, "GET", &format!("/api/cameras/{id}"), "");
        let v: Value = match status {
            200 => serde_json::from_str(&body).expect("json"),
            404 => Value::Null,
            _ => panic!("camera {id}: {status} {body}"),
        };
        if pred(&v) {
            return t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < limit,
            "camera {id}: not {what} within {limit:?}; last seen {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn is_state(v: &Value, state: &str) -> bool {
    v["state"] == state
}

fn has_fault(v: &Value, fault: &str) -> bool {
    v["faults"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["code"] == fault))
}

fn cameras_toml(url_of: impl Fn(u32) -> String, n: u32) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[cameras]]\nid = \"c{i}\"\nname = \"测试{i}\"\nurl = \"{}\"\narea_path = \"示范县/城关镇/东街村\"\n",
                url_of(i)
            )
        })
        .collect()
}

/// How long black and cover are held once detected: past two wraps of the fault clips.
const HOLD_SECS: u64 = 22;

#[test]
fn faults_show_up_as_states_reasons_and_quality_faults_then_clear() {
    let sim = start_sim(6, None, TransportPolicy::Both);
    let url = |i| sim.running.url(i);
    let svc = start_service(&cameras_toml(url, 6), &[]);
    for i in 1..=6 {
        wait_for(
            &svc,
            &format!("c{i}"),
            Duration::from_secs(20),
            "online",
            |v| is_state(v, "online"),
        );
    }
    // Let the quality baselines settle on normal video before injecting faults.
    std::thread::sleep(Duration::from_secs(4));
    for i in 1..=6 {
        let v = camera(&svc, &format!("c{i}"));
        assert!(
            is_state(&v, "online"),
            "normal video must not raise a fault: {v}"
        );
    }
    for (cam, kind) in [
        ("0001", "down"),
        ("0002", "stall"),
        ("0003", "freeze"),
        ("0004", "black"),
        ("0005", "cover"),
    ] {
        assert_eq!(set_fault(&sim, cam, kind).0, 200);
    }
    let t = wait_for(
        &svc,
        "c1",
        Duration::from_secs(12),
        "offline(refused)",
        |v| is_state(v, "offline") && v["reason"] == "refused",
    );
    eprintln!("down → offline(refused) after {t:.1} s");
    let t = wait_for(
        &svc,
        "c2",
        Duration::from_secs(12),
        "offline(stalled)",
        |v| is_state(v, "offline") && v["reason"] == "stalled",
    );
    eprintln!("stall → offline(stalled) after {t:.1} s");
    for (id, fault) in [("c3", "frozen"), ("c4", "dark"), ("c5", "occlusion")] {
        let t = wait_for(&svc, id, Duration::from_secs(15), fault, |v| {
            is_state(v, "degraded") && has_fault(v, fault)
        });
        eprintln!("{id} → degraded({fault}) after {t:.1} s");
    }
    // A black or covered picture is a picture: held past two loops of camsim's ten-second fault
    // clips, those cameras stay degraded on one unbroken session (never offline, no reconnect).
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(HOLD_SECS) {
        for (id, fault) in [("c4", "dark"), ("c5", "occlusion")] {
            let v = camera(&svc, id);
            assert!(
                is_state(&v, "degraded") && has_fault(&v, fault),
                "{id} left degraded({fault}) {:.1} s into the hold: {v}",
                hold.elapsed().as_secs_f64()
            );
            let reconnects: u64 = v["counters"]["reconnects"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(u64::MAX);
            assert_eq!(reconnects, 0, "{id} reconnected: {v}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let v6 = camera(&svc, "c6");
    assert!(is_state(&v6, "online"), "other cameras are untouched: {v6}");
    let (_, summary) = api(svc.addr, "GET", "/api/health/summary", "");
    let summary: Value = serde_json::from_str(&summary).expect("json");
    assert_eq!(summary["enabled"], 6, "{summary}");
    assert_eq!(summary["offline"], 2, "{summary}");
    assert_eq!(summary["degraded"], 3, "{summary}");
    assert!(
        (summary["online_rate"].as_f64().unwrap_or(0.0) - 4.0 / 6.0).abs() < 1e-9,
        "{summary}"
    );
    assert!(
        (summary["intact_rate"].as_f64().unwrap_or(0.0) - 1.0 / 6.0).abs() < 1e-9,
        "{summary}"
    );

    for cam in ["0001", "0002", "0003", "0004", "0005"] {
        assert_eq!(set_fault(&sim, cam, "restore").0, 200);
    }
    // Backoff cap 4 s + 5 s.
    for id in ["c1", "c2"] {
        let t = wait_for(&svc, id, Duration::from_secs(9), "online again", |v| {
            is_state(v, "online")
        });
        eprintln!("{id} online again after {t:.1} s");
    }
    for id in ["c3", "c4", "c5"] {
        let t = wait_for(&svc, id, Duration::from_secs(15), "cleared", |v| {
            is_state(v, "online")
        });
        eprintln!("{id} fault cleared after {t:.1} s");
    }
    let (status, body) = api(svc.addr, "GET", "/api/cameras/c1/history", "");
    assert_eq!(status, 200);
    assert!(
        body.contains("refused"),
        "the ledger kept the offline period: {body}"
    );
}

#[test]
fn wrong_password_is_auth_failed_and_bad_urls_have_their_own_reasons() {
    let sim = start_sim(
        2,
        Some(Auth::new(
            "admin".into(),
            "right-pass-1".into(),
            AuthScheme::Digest,
        )),
        TransportPolicy::Both,
    );
    // A port nobody listens on, and an HTTP server that is not a camera (camsim's control API).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cams = format!(
        r#"
[credentials.wrong]
username = "admin"
password_env = "QLY_TEST_WRONG"
[credentials.right]
username = "admin"
password_env = "QLY_TEST_RIGHT"
[[cameras]]
id = "wrongpw"
name = "wrong password"
url = "{u1}"
credentials = "wrong"
[[cameras]]
id = "rightpw"
name = "right password"
url = "{u2}"
credentials = "right"
[[cameras]]
id = "closed"
name = "nobody listens"
url = "rtsp://127.0.0.1:{closed}/x"
[[cameras]]
id = "nothttp"
name = "not a camera"
url = "rtsp://{control}/cameras"
"#,
        u1 = sim.running.url(1),
        u2 = sim.running.url(2),
        control = sim.running.control_addr,
    );
    let svc = start_service(
        &cams,
        &[
            ("QLY_TEST_WRONG", "not-it"),
            ("QLY_TEST_RIGHT", "right-pass-1"),
        ],
    );
    wait_for(
        &svc,
        "wrongpw",
        Duration::from_secs(12),
        "offline(auth_failed)",
        |v| is_state(v, "offline") && v["reason"] == "auth_failed",
    );
    wait_for(
        &svc,
        "closed",
        Duration::from_secs(12),
        "offline(refused)",
        |v| is_state(v, "offline") && v["reason"] == "refused",
    );
    wait_for(
        &svc,
        "nothttp",
        Duration::from_secs(12),
        "offline with a reason",
        |v| is_state(v, "offline") && v["reason"].is_string() && v["last_error"].is_string(),
    );
    wait_for(&svc, "rightpw", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    let body = api(svc.addr, "GET", "/api/cameras", "").1;
    assert!(
        !body.contains("right-pass-1") && !body.contains("not-it"),
        "no password in API answers"
    );
}

#[test]
fn cameras_are_added_changed_removed_and_imported_at_run_time() {
    let sim = start_sim(4, None, TransportPolicy::Both);
    let svc = start_service(&cameras_toml(|i| sim.running.url(i), 1), &[]);
    wait_for(&svc, "c1", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });

    let body = format!(
        r#"{{"id":"api1","name":"接口添加","url":"{}","area_path":"示范县/桃源镇"}}"#,
        sim.running.url(2)
    );
    let (status, resp) = api(svc.addr, "POST", "/api/cameras", &body);
    assert_eq!(status, 201, "{resp}");
    wait_for(&svc, "api1", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    let (status, resp) = api(svc.addr, "POST", "/api/cameras", &body);
    assert_eq!(status, 409, "duplicate id: {resp}");

    let bad = r#"{"id":"bad one","name":"x","url":"ftp://u:secretpw@h/x","lat":120}"#;
    let (status, resp) = api(svc.addr, "POST", "/api/cameras", bad);
    assert_eq!(status, 422, "{resp}");
    for field in ["\"id\"", "\"url\"", "\"lat\""] {
        assert!(resp.contains(field), "error names {field}: {resp}");
    }
    assert!(!resp.contains("secretpw"), "no credential echoed: {resp}");

    let csv = format!(
        "id,name,url,lat,lon,area_path\nimp1,导入一,{},31.8,117.2,示范县/青山乡\nimp2,坏行,not a url,31.8,117.2,示范县\nimp3,坏纬度,{},99,117.2,示范县\n",
        sim.running.url(3),
        sim.running.url(4)
    );
    let (status, resp) = api(svc.addr, "POST", "/api/cameras/import", &csv);
    assert_eq!(status, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(v["imported"], serde_json::json!(["imp1"]), "{resp}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("line 3") && errors.contains("url"),
        "{errors}"
    );
    assert!(
        errors.contains("line 4") && errors.contains("lat"),
        "{errors}"
    );
    wait_for(&svc, "imp1", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });

    let (status, _) = api(svc.addr, "DELETE", "/api/cameras/api1", "");
    assert_eq!(status, 204);
    let (status, _) = api(svc.addr, "GET", "/api/cameras/api1", "");
    assert_eq!(status, 404);
    let c1 = camera(&svc, "c1");
    assert!(is_state(&c1, "online"), "other cameras untouched: {c1}");

    let metrics = api(svc.addr, "GET", "/metrics", "").1;
    assert!(
        metrics.contains("qly_cameras{state=\"online\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("qly_frames_in_total{camera=\"c1\"}"),
        "{metrics}"
    );
    // What the API did survives a restart: the renamed file camera keeps its name, the
    // imported one runs, the removed one stays removed.
    let renamed = format!(
        r#"{{"id":"c1","name":"改名","url":"{}","area_path":"示范县/城关镇/东街村"}}"#,
        sim.running.url(1)
    );
    let (status, resp) = api(svc.addr, "PUT", "/api/cameras/c1", &renamed);
    assert_eq!(status, 200, "{resp}");
    let svc = svc.restart();
    for id in ["c1", "imp1"] {
        wait_for(
            &svc,
            id,
            Duration::from_secs(20),
            "online after the restart",
            |v| is_state(v, "online"),
        );
    }
    assert_eq!(camera(&svc, "c1")["name"], "改名");
    assert_eq!(api(svc.addr, "GET", "/api/cameras/api1", "").0, 404);
    let (status, _) = api(svc.addr, "DELETE", "/api/cameras/c1", "");
    assert_eq!(status, 204);
    let svc = svc.restart();
    wait_for(&svc, "imp1", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    assert_eq!(
        api(svc.addr, "GET", "/api/cameras/c1", "").0,
        404,
        "a file camera removed through the API stays removed while the file's definition is unchanged"
    );
}

/// Every store on one PostgreSQL (`[node] database_url_env`): the ledger records the camera's
/// history, users log in, and cameras added through the API run again after a restart; no SQLite
/// file is written.
#[test]
fn the_service_runs_on_postgresql() {
    let pg = qianliyan::db::server::PrivatePostgres::start().expect("a private PostgreSQL");
    let sim = start_sim(2, None, TransportPolicy::Both);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let toml = format!(
        r#"
[node]
name = "pg-node"
data_dir = "{data}"
database_url_env = "QLY_TEST_DATABASE_URL"
database_pool = 4
[web]
listen = "127.0.0.1:0"
[health]
grace = "3s"
{cameras}
{auth}
"#,
        data = data.display(),
        cameras = cameras_toml(|i| sim.running.url(i), 1),
        auth = common::TEST_AUTH,
    );
    let url = pg.url();
    let svc = common::start_service(dir, &toml, &[("QLY_TEST_DATABASE_URL", &url)]);
    wait_for(&svc, "c1", Duration::from_secs(20), "online", |v| {
        is_state(v, "online")
    });
    let body = format!(
        r#"{{"id":"pg1","name":"库中相机","url":"{}"}}"#,
        sim.running.url(2)
    );
    let (status, resp) = api(svc.addr, "POST", "/api/cameras", &body);
    assert_eq!(status, 201, "{resp}");
    let svc = svc.restart();
    wait_for(
        &svc,
        "pg1",
        Duration::from_secs(20),
        "online after the restart",
        |v| is_state(v, "online"),
    );
    let (status, history) = api(svc.addr, "GET", "/api/cameras/c1/history", "");
    assert_eq!(status, 200, "{history}");
    assert!(
        history.contains("\"online\""),
        "the ledger in PostgreSQL: {history}"
    );
    for file in ["alerts.db", "auth.db", "qianliyan.db", "inventory.db"] {
        assert!(
            !data.join(file).exists(),
            "{file} written beside PostgreSQL"
        );
    }
    drop(svc);
    drop(pg);
}

/// The cameras a node runs (its own, of the cameras it lists), by state.
fn running(svc: &Svc) -> std::collections::BTreeMap<String, String> {
    let (_, system) = api(svc.addr, "GET", "/api/system", "");
    let system: Value = serde_json::from_str(&system).expect("json");
    let me = system["cluster"]["node_id"].clone();
    let (status, body) = api(svc.addr, "GET", "/api/cameras", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v.as_array()
        .expect("a list")
        .iter()
        .filter(|c| c["node"] == me)
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Two nodes on one PostgreSQL database: the cameras spread over both (each run by exactly one),
/// a camera added through either node runs on one of them, and when one node stops (as on
/// SIGTERM) the other takes its cameras within seconds, none of its writes refused.
#[test]
fn two_nodes_share_the_cameras_and_one_takes_over_when_the_other_stops() {
    let pg = qianliyan::db::server::PrivatePostgres::start().expect("a private PostgreSQL");
    let sim = start_sim(8, None, TransportPolicy::Both);
    let url = pg.url();
    let node = |id: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = format!(
            r#"
[node]
name = "{id}"
data_dir = "{data}"
database_url_env = "QLY_TEST_DATABASE_URL"
database_pool = 4
[web]
listen = "127.0.0.1:0"
[health]
grace = "3s"
[cluster]
node_id = "{id}"
lease = "6s"
renew = "1s"
{cameras}
{auth}
"#,
            data = dir.path().join("data").display(),
            cameras = cameras_toml(|i| sim.running.url(i), 7),
            auth = common::TEST_AUTH,
        );
        common::start_service(dir, &toml, &[("QLY_TEST_DATABASE_URL", &url)])
    };
    let a = node("node-a");
    // The hall watches node A's feed: it must carry node B's health changes too.
    let feed_a = collect_feed(a.addr);
    let b = node("node-b");
    let all: std::collections::BTreeSet<String> = (1..=7).map(|i| format!("c{i}")).collect();
    let ((on_a, on_b), spread_s) = poll(
        Duration::from_secs(60),
        "cameras spread over both nodes",
        || {
            let (ra, rb) = (running(&a), running(&b));
            let both: Vec<&String> = ra.keys().filter(|k| rb.contains_key(*k)).collect();
            assert!(both.is_empty(), "run on both nodes: {both:?}");
            let online = ra
                .iter()
                .chain(rb.iter())
                .filter(|(_, s)| *s == "online")
                .count();
            if online < 7 || ra.is_empty() || rb.is_empty() {
                return Err(format!("a {ra:?} b {rb:?}"));
            }
            let union: std::collections::BTreeSet<String> =
                ra.keys().chain(rb.keys()).cloned().collect();
            assert_eq!(union, all);
            Ok((ra, rb))
        },
    );
    println!(
        "spread: a {:?} b {:?} in {spread_s:.1} s",
        on_a.keys(),
        on_b.keys()
    );
    // Every camera B runs came online on A's feed as well (read back from the event log).
    poll(
        Duration::from_secs(15),
        "node A's feed carrying B's cameras coming online",
        || {
            let seen = feed_a.lock().unwrap().clone();
            let online_on_a_feed = |id: &str| {
                seen.iter().any(|e| {
                    e["kind"] == "health" && e["camera"] == id && e["to"]["state"] == "online"
                })
            };
            let missing: Vec<&String> = on_b.keys().filter(|id| !online_on_a_feed(id)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{missing:?} missing; it carried {seen:?}"))
            }
        },
    );
    // The fleet gauges come from one node only, and count every node's cameras.
    poll(
        Duration::from_secs(20),
        "one node exporting the fleet gauges, with all seven cameras online",
        || {
            let exported: Vec<String> = [&a, &b]
                .iter()
                .filter_map(|n| {
                    let (_, m) = api(n.addr, "GET", "/metrics", "");
                    m.contains("qly_fleet_online_rate").then_some(m)
                })
                .collect();
            match exported.as_slice() {
                [m] if m.contains("qly_fleet_cameras{state=\"online\"} 7") => Ok(()),
                _ => Err(format!(
                    "{} nodes export them: {:?}",
                    exported.len(),
                    exported
                        .iter()
                        .flat_map(|m| m.lines().filter(|l| l.starts_with("qly_fleet")))
                        .collect::<Vec<_>>()
                )),
            }
        },
    );
    // Either node lists every camera with its holder and state (the others' as last written).
    poll(
        Duration::from_secs(15),
        "node A listing every camera with its node",
        || {
            let (status, body) = api(a.addr, "GET", "/api/cameras", "");
            assert_eq!(status, 200, "{body}");
            let list: Value = serde_json::from_str(&body).unwrap();
            let holders: std::collections::BTreeMap<String, String> = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["state"] == "online")
                .map(|c| {
                    (
                        c["id"].as_str().unwrap().to_owned(),
                        c["node"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let expected: std::collections::BTreeMap<String, String> = on_a
                .keys()
                .map(|k| (k.clone(), "node-a".to_owned()))
                .chain(on_b.keys().map(|k| (k.clone(), "node-b".to_owned())))
                .collect();
            if holders == expected {
                Ok(())
            } else {
                Err(format!("it lists {holders:?}, expected {expected:?}"))
            }
        },
    );
    let (status, one) = api(
        a.addr,
        "GET",
        &format!("/api/cameras/{}", on_b.keys().next().unwrap()),
        "",
    );
    assert_eq!(status, 200, "a camera of node B through node A: {one}");
    // Its picture too: node A passes the request to node B with the caller's login.
    let b_cam = on_b.keys().next().unwrap().clone();
    poll(
        Duration::from_secs(20),
        "a picture of B's camera through A",
        || {
            let (status, body) = api(
                a.addr,
                "GET",
                &format!("/api/cameras/{b_cam}/frame.jpg"),
                "",
            );
            if status == 200 && body.contains("JFIF") {
                Ok(())
            } else {
                Err(format!(
                    "{status} {}",
                    body.chars().take(200).collect::<String>()
                ))
            }
        },
    );
    let (status, summary) = api(a.addr, "GET", "/api/health/summary", "");
    assert_eq!(status, 200);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["online"], 7, "{summary}");
    let (_, system) = api(a.addr, "GET", "/api/system", "");
    let system: Value = serde_json::from_str(&system).unwrap();
    assert_eq!(system["cluster"]["nodes"], 2, "{system}");
    assert_eq!(system["cluster"]["node_id"], "node-a");
    let (status, ready) = common::http(a.addr, "GET", "/readyz", "");
    assert_eq!((status, ready.as_str()), (200, "ready"));

    // Added through node B: it runs on exactly one node.
    let body = format!(
        r#"{{"id":"c8","name":"经B添加","url":"{}"}}"#,
        sim.running.url(8)
    );
    let (status, resp) = api(b.addr, "POST", "/api/cameras", &body);
    assert_eq!(status, 201, "{resp}");
    let (status, resp) = api(a.addr, "POST", "/api/cameras", &body);
    assert_eq!(status, 409, "the camera exists in the store: {resp}");
    poll(Duration::from_secs(30), "c8 online on one node", || {
        let (ra, rb) = (running(&a), running(&b));
        assert!(
            !(ra.contains_key("c8") && rb.contains_key("c8")),
            "c8 on both"
        );
        let online = |r: &std::collections::BTreeMap<String, String>| {
            r.get("c8").is_some_and(|s| s == "online")
        };
        if online(&ra) || online(&rb) {
            Ok(())
        } else {
            Err(format!("a {ra:?} b {rb:?}"))
        }
    });

    // A stops: B takes every camera.
    let stop = Instant::now();
    drop(a);
    let stopped = stop.elapsed().as_secs_f64();
    let ((), taken_s) = poll(
        Duration::from_secs(30),
        "B running all 8 cameras online",
        || {
            let rb = running(&b);
            if rb.len() == 8 && rb.values().all(|s| s == "online") {
                Ok(())
            } else {
                Err(format!("B runs {rb:?}"))
            }
        },
    );
    println!(
        "hand-over: A stopped in {stopped:.1} s; B ran all 8 online {taken_s:.1} s after A's stop returned"
    );
    let (_, metrics) = api(b.addr, "GET", "/metrics", "");
    assert!(metrics.contains("qly_cluster_cameras_held 8"), "{metrics}");
    assert!(
        metrics.contains("qly_fenced_writes_total{reason=\"stale_epoch\"} 0"),
        "no write of B was refused"
    );
    drop(b);
    drop(pg);
}

/// Calls `check` every 250 ms until it gives `Ok`; returns that and the seconds it took, or panics
/// after `limit` with `what` and the last `Err`.
fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> (T, f64) {
    let t0 = Instant::now();
    loop {
        match check() {
            Ok(v) => return (v, t0.elapsed().as_secs_f64()),
            Err(last) => assert!(t0.elapsed() < limit, "not {what} within {limit:?}: {last}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Collects every message of a node's alert feed (WebSocket, as the admin) in the background.
fn collect_feed(addr: std::net::SocketAddr) -> std::sync::Arc<std::sync::Mutex<Vec<Value>>> {
    let token = common::login(addr, "qa-admin", &common::test_password());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            use futures::StreamExt;
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = format!("ws://{addr}/api/alerts/feed")
                .into_client_request()
                .unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if let Ok(text) = msg.to_text()
                    && let Ok(v) = serde_json::from_str::<Value>(text)
                {
                    out.lock().unwrap().push(v);
                }
            }
        });
    });
    seen
}
