//! GB/T 28181 signalling against camsim's simulated devices, over real UDP and TCP sockets on
//! 127.0.0.1: registration with digest challenge, a wrong password, keepalives and their timeout,
//! unregistration, multi-page catalogs in GB18030, malformed messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use qianliyan::camsim::gb::{GbDevice, GbDeviceOptions, GbTransport};
use qianliyan::clock::SystemClock;
use qianliyan::gb28181::{Gb28181, RawGbConfig};
use tokio_util::sync::CancellationToken;

mod common;

const PLATFORM: &str = "34020000002000000001";
const PASSWORD: &str = "gb-test-pass";

async fn platform(extra: &str) -> (Gb28181, CancellationToken) {
    let raw: RawGbConfig = toml::from_str(&format!(
        "sip_id = \"{PLATFORM}\"\nlisten = \"127.0.0.1:0\"\npassword_env = \"GB_PASS\"\nkeepalive_interval = \"1s\"\n{extra}"
    ))
    .unwrap();
    let config = raw
        .validate(&|k| (k == "GB_PASS").then(|| PASSWORD.to_owned()))
        .unwrap();
    let cancel = CancellationToken::new();
    let gb = Gb28181::start(config, Arc::new(SystemClock), None, cancel.clone())
        .await
        .unwrap();
    (gb, cancel)
}

fn device(gb: &Gb28181, id: &str, transport: GbTransport) -> GbDeviceOptions {
    GbDeviceOptions {
        platform: gb.local_addr(),
        platform_id: PLATFORM.into(),
        id: id.into(),
        password: PASSWORD.into(),
        transport,
        keepalive: Duration::from_secs(1),
        expires: 3600,
        channels: 5,
        page_size: 2,
        media: None,
    }
}

async fn until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_after_a_challenge_and_a_wrong_password_is_refused_at_once() {
    let (gb, cancel) = platform("auto_accept = true").await;
    let good = GbDevice::start(
        device(&gb, "34020000001320000001", GbTransport::Udp),
        cancel.clone(),
    )
    .await
    .unwrap();
    assert_eq!(good.stats.last_status.load(Ordering::Relaxed), 200);
    assert_eq!(
        good.stats.challenged.load(Ordering::Relaxed),
        1,
        "401 then 200"
    );
    let bad = GbDevice::start(
        GbDeviceOptions {
            password: "not-the-password".into(),
            ..device(&gb, "34020000001320000002", GbTransport::Udp)
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    assert_eq!(bad.stats.last_status.load(Ordering::Relaxed), 403);
    assert_eq!(
        bad.stats.challenged.load(Ordering::Relaxed),
        1,
        "one challenge, then 403 without a second"
    );
    let counters: std::collections::HashMap<_, _> = gb.counters().into_iter().collect();
    assert_eq!(counters["wrong_password"], 1);
    assert_eq!(counters["challenged"], 2);
    // Guessing: after five wrong passwords from this host the device is refused before any
    // challenge, so no more guesses can be made for a while.
    for _ in 0..4 {
        assert_eq!(bad.register(3600).await.unwrap(), 403);
    }
    assert_eq!(bad.stats.challenged.load(Ordering::Relaxed), 5);
    assert_eq!(bad.register(3600).await.unwrap(), 403);
    assert_eq!(
        bad.stats.challenged.load(Ordering::Relaxed),
        5,
        "locked out: no sixth challenge"
    );
    let devices = gb.devices();
    assert_eq!(
        devices.len(),
        1,
        "the refused device is not in the registry"
    );
    assert_eq!(devices[0].state, "online");
    assert_eq!(devices[0].transport, qianliyan::gb28181::Transport::Udp);
    // The source address the device sent from, not a Contact it might have made up.
    assert!(
        devices[0].address.starts_with("127.0.0.1:"),
        "{:?}",
        devices[0]
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_devices_register_unless_auto_accept() {
    let (gb, cancel) =
        platform("[[devices]]\nid = \"34020000001320000010\"\nname = \"东门\"\n").await;
    let listed = GbDevice::start(
        device(&gb, "34020000001320000010", GbTransport::Udp),
        cancel.clone(),
    )
    .await
    .unwrap();
    let stranger = GbDevice::start(
        device(&gb, "34020000001320000011", GbTransport::Udp),
        cancel.clone(),
    )
    .await
    .unwrap();
    assert_eq!(listed.stats.last_status.load(Ordering::Relaxed), 200);
    assert_eq!(stranger.stats.last_status.load(Ordering::Relaxed), 403);
    assert_eq!(
        stranger.stats.challenged.load(Ordering::Relaxed),
        0,
        "refused before any challenge"
    );
    let (view, _) = gb.device("34020000001320000010").unwrap();
    assert_eq!(view.name.as_deref().map(|n| !n.is_empty()), Some(true));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_of_several_pages_are_assembled_over_udp_and_tcp() {
    let (gb, cancel) = platform("auto_accept = true").await;
    let udp = GbDevice::start(
        device(&gb, "34020000001110000001", GbTransport::Udp),
        cancel.clone(),
    )
    .await
    .unwrap();
    let tcp = GbDevice::start(
        GbDeviceOptions {
            channels: 3,
            ..device(&gb, "34020000001110000002", GbTransport::Tcp)
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    for (d, entries, transport) in [
        (&udp, 5, qianliyan::gb28181::Transport::Udp),
        (&tcp, 3, qianliyan::gb28181::Transport::Tcp),
    ] {
        let id = d.options.id.clone();
        let (view, catalog) = until("the catalog", Duration::from_secs(15), || {
            gb.device(&id).filter(|(v, _)| v.catalog_entries == entries)
        })
        .await;
        assert_eq!(view.transport, transport);
        assert_eq!(catalog.len(), entries);
        assert!(
            catalog[0].name.starts_with("模拟摄像机"),
            "GB18030 names read: {:?}",
            catalog[0].name
        );
        assert_eq!(catalog[0].type_code, Some(131));
        assert_eq!(catalog[0].parent_id.as_deref(), Some(id.as_str()));
        let view = until("DeviceInfo", Duration::from_secs(15), || {
            gb.device(&id)
                .map(|(v, _)| v)
                .filter(|v| v.manufacturer.is_some())
        })
        .await;
        assert_eq!(view.manufacturer.as_deref(), Some("camsim"));
        assert_eq!(d.stats.catalog_queries.load(Ordering::Relaxed), 1);
    }
    // Asked again, the catalog arrives again (three pages over UDP) and is assembled again.
    let first = gb.device(&udp.options.id).unwrap().0.catalog_ms;
    tokio::time::sleep(Duration::from_millis(5)).await;
    gb.query_catalog(&udp.options.id).await.unwrap();
    until("a second catalog", Duration::from_secs(15), || {
        gb.device(&udp.options.id)
            .filter(|(v, _)| v.catalog_ms > first && v.catalog_entries == 5)
    })
    .await;
    assert_eq!(udp.stats.catalog_queries.load(Ordering::Relaxed), 2);
    assert!(
        gb.query_catalog("34020000001110000099").await.is_err(),
        "a device that never registered cannot be asked"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_offline_after_three_intervals_and_unregistering_is_unregistered() {
    let (gb, cancel) = platform("auto_accept = true").await;
    let id = "34020000001320000021";
    let d = GbDevice::start(device(&gb, id, GbTransport::Udp), cancel.clone())
        .await
        .unwrap();
    until("keepalives", Duration::from_secs(5), || {
        (d.stats.keepalives_ok.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .await;
    assert_eq!(gb.device(id).unwrap().0.state, "online");
    d.set_down(true);
    let went_down = Instant::now();
    let view = until("offline", Duration::from_secs(10), || {
        gb.device(id)
            .map(|(v, _)| v)
            .filter(|v| v.state == "offline")
    })
    .await;
    let after = went_down.elapsed();
    assert_eq!(view.reason, Some("keepalive_timeout"));
    assert_eq!(view.reason_zh, Some("心跳超时"));
    // Three 1 s intervals from the last keepalive, which came at most 1 s before going down.
    assert!(
        after >= Duration::from_millis(1500),
        "offline after {after:?}: before three intervals"
    );
    d.set_down(false);
    until("back online", Duration::from_secs(5), || {
        gb.device(id).filter(|(v, _)| v.state == "online")
    })
    .await;
    assert_eq!(d.register(0).await.unwrap(), 200);
    let (view, _) = gb.device(id).unwrap();
    assert_eq!((view.state, view.reason), ("offline", Some("unregistered")));
    assert_eq!(gb.summary().online, 0);
    cancel.cancel();
}

/// A SIP MESSAGE as a device would write it, with `body`.
fn message(platform: SocketAddr, local: SocketAddr, from: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "MESSAGE sip:{PLATFORM}@{platform} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch=z9hG4bK{}\r\nFrom: <sip:{from}@3402000000>;tag=1\r\nTo: <sip:{PLATFORM}@3402000000>\r\nCall-ID: {}@test\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {}\r\n\r\n",
        rand_token(),
        rand_token(),
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fn rand_token() -> String {
    format!("{:x}", rand::random::<u64>())
}

/// Sends a MESSAGE with `body` from `from` and returns the answer.
async fn ask(
    sock: &tokio::net::UdpSocket,
    to: SocketAddr,
    local: SocketAddr,
    from: &str,
    body: &[u8],
) -> String {
    sock.send_to(&message(to, local, from, body), to)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_answered_with_the_reason_and_nothing_breaks() {
    let (gb, cancel) = platform("auto_accept = true").await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let to = gb.local_addr();
    // Not SIP at all: dropped by the stack, no answer, no harm.
    sock.send_to(b"\x00\x01garbage\r\n\r\n", to).await.unwrap();
    // XML that ends early.
    let answer = ask(
        &sock,
        to,
        local,
        "34020000001320000031",
        b"<Notify><CmdType>Keepalive",
    )
    .await;
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(answer.contains("ends inside <Notify>"), "{answer}");
    // A keepalive of a device that never registered.
    let answer = ask(
        &sock,
        to,
        local,
        "34020000001320000031",
        &qianliyan::gb28181::manscdp::keepalive(1, "34020000001320000031"),
    )
    .await;
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");
    assert!(answer.contains("REGISTER first"), "{answer}");
    // A keepalive naming another device than its sender (a spoofed keepalive keeping a dead
    // device "online").
    let answer = ask(
        &sock,
        to,
        local,
        "34020000001320000031",
        &qianliyan::gb28181::manscdp::keepalive(1, "34020000001320000099"),
    )
    .await;
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");
    assert!(
        answer.contains("names device 34020000001320000099"),
        "{answer}"
    );
    // An end tag with a line break in it: the reason is answered, the line break is not (it
    // would be a header of its own).
    let answer = ask(
        &sock,
        to,
        local,
        "34020000001320000031",
        b"<a></a\r\nX-Injected: 1>",
    )
    .await;
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(!answer.contains("\r\nX-Injected"), "{answer}");
    // The service still registers devices.
    let d = GbDevice::start(
        device(&gb, "34020000001320000032", GbTransport::Udp),
        cancel.clone(),
    )
    .await
    .unwrap();
    assert_eq!(d.stats.last_status.load(Ordering::Relaxed), 200);
    let counters: std::collections::HashMap<_, _> = gb.counters().into_iter().collect();
    assert_eq!(counters["bad_message"], 3);
    assert_eq!(counters["not_registered"], 1);
    cancel.cancel();
}

/// The whole service with a `[gb28181]` section: devices register to its SIP port and engineers
/// see them through the API and /metrics; the password shows nowhere.
#[test]
fn the_service_shows_registered_devices_in_its_api_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[node]\nname = \"gb-test\"\ndata_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[health]\ngrace = \"1s\"\n\
         [[cameras]]\nid = \"east-gate\"\nname = \"东门 (RTSP)\"\nurl = \"rtsp://127.0.0.1:9/none\"\ngb_code = \"34020000001310000102\"\n\
         [gb28181]\nsip_id = \"{PLATFORM}\"\nlisten = \"127.0.0.1:0\"\npassword_env = \"QLY_GB_TEST_PASSWORD\"\nkeepalive_interval = \"1s\"\nvideo = \"all\"\n\
         [gb28181.areas]\n\"340200\" = \"示范县\"\n[[gb28181.devices]]\nid = \"34020000001180000001\"\nname = \"东街 NVR\"\n{}",
        dir.path().join("data").display(),
        common::TEST_AUTH
    );
    let service = common::start_service(dir, &toml, &[("QLY_GB_TEST_PASSWORD", PASSWORD)]);
    let (status, system) = common::api(service.addr, "GET", "/api/system", "");
    assert_eq!(status, 200, "{system}");
    let system: serde_json::Value = serde_json::from_str(&system).unwrap();
    let port = system["gb28181"]["sip_port"].as_u64().expect("sip_port") as u16;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let options = GbDeviceOptions {
        platform: SocketAddr::from(([127, 0, 0, 1], port)),
        platform_id: PLATFORM.into(),
        id: "34020000001180000001".into(),
        password: PASSWORD.into(),
        transport: GbTransport::Tcp,
        keepalive: Duration::from_secs(1),
        expires: 3600,
        channels: 4,
        page_size: 3,
        media: None,
    };
    let device = rt
        .block_on(GbDevice::start(options.clone(), cancel.clone()))
        .unwrap();
    assert_eq!(device.stats.last_status.load(Ordering::Relaxed), 200);
    let stranger = rt
        .block_on(GbDevice::start(
            GbDeviceOptions {
                id: "34020000001180000002".into(),
                ..options
            },
            cancel.clone(),
        ))
        .unwrap();
    assert_eq!(stranger.stats.last_status.load(Ordering::Relaxed), 403);
    let started = Instant::now();
    let one = loop {
        let (status, body) = common::api(
            service.addr,
            "GET",
            "/api/gb28181/devices/34020000001180000001",
            "",
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["catalog"].as_array().map(Vec::len) == Some(4) && v["manufacturer"] == "camsim" {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(one["state"], "online");
    assert_eq!(one["transport"], "tcp");
    assert_eq!(one["catalog"][0]["type_code"], 131);
    let (status, list) = common::api(service.addr, "GET", "/api/gb28181/devices", "");
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        (list["devices"].as_u64(), list["online"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, _) = common::api(
        service.addr,
        "POST",
        "/api/gb28181/devices/34020000001180000001/catalog",
        "",
    );
    assert_eq!(status, 202);
    let (status, body) = common::api(
        service.addr,
        "GET",
        "/api/gb28181/devices/34020000001180000009",
        "",
    );
    assert_eq!(status, 404, "{body}");
    let (_, metrics) = common::api(service.addr, "GET", "/metrics", "");
    assert!(
        metrics.contains("qly_gb28181_devices{state=\"online\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("qly_gb28181_requests_total{kind=\"not_allowed\"} 1"),
        "{metrics}"
    );
    for text in [&metrics, &list.to_string(), &system.to_string()] {
        assert!(!text.contains(PASSWORD), "the password leaked");
    }

    // The catalog's channels are cameras now; the channel that is already
    // the RTSP camera east-gate (same gb_code) is not added twice.
    let gb_cameras = |service: &common::Service| -> Vec<serde_json::Value> {
        let (status, body) = common::api(service.addr, "GET", "/api/cameras", "");
        assert_eq!(status, 200, "{body}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        all.into_iter()
            .filter(|c| c["source"] == "gb28181")
            .collect()
    };
    let wait =
        |service: &common::Service, what: &str, ok: &dyn Fn(&[serde_json::Value]) -> bool| {
            let started = Instant::now();
            loop {
                let cams = gb_cameras(service);
                if ok(&cams) {
                    return cams;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{what}: {cams:#?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        };
    // The device has no video to send (camsim without a clip answers INVITEs 488): its channels
    // are offline for that, `invite_failed`, not for their signalling.
    let cams = wait(&service, "three channel cameras refusing video", &|c| {
        c.len() == 3
            && c.iter()
                .all(|c| c["state"] == "offline" && c["reason"] == "invite_failed")
    });
    let ids: Vec<&str> = cams.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "34020000001310000101",
            "34020000001310000103",
            "34020000001310000104"
        ]
    );
    assert_eq!(cams[0]["area_path"], "示范县");
    assert_eq!(cams[0]["gb_code"], "34020000001310000101");
    assert!(cams[0]["name"].as_str().unwrap().starts_with("模拟摄像机"));
    // The device stops keeping alive: its channels go offline with it.
    device.set_down(true);
    wait(&service, "channels offline with their device", &|c| {
        c.len() == 3
            && c.iter()
                .all(|c| c["state"] == "offline" && c["reason"] == "device_offline")
    });
    // Saved: after a restart the channels are there before any device registers (connecting), and
    // a device that does not register again within the keepalive timeout leaves them offline.
    cancel.cancel();
    drop(rt);
    let service = service.restart();
    let cams = gb_cameras(&service);
    assert_eq!(cams.len(), 3, "{cams:#?}");
    // Connecting until the keepalive timeout (3 s) has passed since the start.
    assert!(
        cams.iter()
            .all(|c| c["state"] == "connecting" || c["reason"] == "device_offline"),
        "{cams:#?}"
    );
    wait(
        &service,
        "channels kept, their device not registered",
        &|c| {
            c.len() == 3
                && c.iter()
                    .all(|c| c["state"] == "offline" && c["reason"] == "device_offline")
        },
    );
    service.stop();
}

/// `qianliyan bench gb28181` runs end to end (short): 50 devices register with their catalogs and
/// keep alive, and the report says so.
#[test]
fn the_signalling_bench_runs_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gb.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_qianliyan"))
        .args([
            "bench",
            "gb28181",
            "--devices",
            "50",
            "--keepalive",
            "1s",
            "--measure",
            "3s",
            "--out",
        ])
        .arg(&out)
        .env_remove("QLY_GB_PASSWORD")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(status.success(), "the bench failed: {status} {report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["online"], 50, "{report}");
    assert!(report["keepalives"].as_u64().unwrap() >= 100, "{report}");
    assert!(
        report["cpu_ms_per_registration"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

/// A service whose config is `sections` (node, web and auth filled in) followed by a `[gb28181]`
/// section with this file's platform id and password, a 1 s keepalive and `gb_extra`; and its SIP
/// port.
fn gb_service(name: &str, sections: &str, gb_extra: &str) -> (common::Service, u16) {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n{sections}\n\
         [gb28181]\nsip_id = \"{PLATFORM}\"\nlisten = \"127.0.0.1:0\"\npassword_env = \"QLY_GB_TEST_PASSWORD\"\n\
         keepalive_interval = \"1s\"\nauto_accept = true\n{gb_extra}\n{}",
        dir.path().join("data").display(),
        common::TEST_AUTH
    );
    let service = common::start_service(dir, &toml, &[("QLY_GB_TEST_PASSWORD", PASSWORD)]);
    let (_, system) = common::api(service.addr, "GET", "/api/system", "");
    let system: serde_json::Value = serde_json::from_str(&system).unwrap();
    let port = system["gb28181"]["sip_port"].as_u64().expect("sip_port") as u16;
    (service, port)
}

/// A UDP device of `channels` channels registering to the service's SIP `port`, sending the
/// sample clip when invited if `video`.
fn device_at(port: u16, id: &str, channels: usize, video: bool) -> GbDeviceOptions {
    GbDeviceOptions {
        platform: SocketAddr::from(([127, 0, 0, 1], port)),
        platform_id: PLATFORM.into(),
        id: id.into(),
        password: PASSWORD.into(),
        transport: GbTransport::Udp,
        keepalive: Duration::from_secs(1),
        expires: 3600,
        channels,
        page_size: 2,
        media: video.then(|| {
            qianliyan::camsim::Media::prepare(&common::asset("video/vtest_sub.mp4")).unwrap()
        }),
    }
}

/// `qly_gb28181_requests_total{kind}` now.
fn gb_counter(service: &common::Service, kind: &str) -> u64 {
    let (_, metrics) = common::api(service.addr, "GET", "/metrics", "");
    let prefix = format!("qly_gb28181_requests_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The JSON of one camera from the list.
fn camera(service: &common::Service, id: &str) -> serde_json::Value {
    let (status, body) = common::api(service.addr, "GET", "/api/cameras", "");
    assert_eq!(status, 200, "{body}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    all.into_iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("camera {id} not listed"))
}

/// The ids of camsim device `device`'s first `n` channels.
fn channel_ids(device: &str, n: usize) -> Vec<String> {
    qianliyan::camsim::gb::cameras_of(device, n)
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Waits until camera `id` is listed (a catalog made it).
fn wait_listed(service: &common::Service, id: &str, within: Duration) {
    wait_for("the channel listed as a camera", within, || {
        let (_, body) = common::api(service.addr, "GET", "/api/cameras", "");
        body.contains(id).then_some(()).ok_or(body)
    });
}

/// Waits until camera `id` is online with video coming in (over 5 frames/s).
fn wait_flowing(service: &common::Service, id: &str, within: Duration) {
    wait_for("video flowing", within, || {
        let c = camera(service, id);
        (c["state"] == "online" && c["fps_in"].as_f64().unwrap_or(0.0) > 5.0)
            .then_some(())
            .ok_or_else(|| c.to_string())
    });
}

/// Waits until camera `id` has a decoded picture.
fn wait_picture(service: &common::Service, id: &str) {
    wait_for("a decoded picture", Duration::from_secs(20), || {
        let (status, body) = common::api(
            service.addr,
            "GET",
            &format!("/api/cameras/{id}/frame.jpg"),
            "",
        );
        (status == 200)
            .then_some(())
            .ok_or(format!("{status}: {body}"))
    });
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) => assert!(started.elapsed() < within, "{what}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The platform pulls a GB/T 28181 channel's video as it does an RTSP camera's: INVITE with an
/// SDP offer, PS over RTP from camsim's device over UDP (a configured channel with
/// `transport = "udp"`) and over TCP (a catalog channel, TCP by default), decoded (a snapshot
/// comes from it). Video that stops while signalling goes on is `stalled`, the platform hangs up
/// (BYE) and invites again once the device sends again.
#[test]
fn invited_channels_send_video_over_udp_and_tcp_and_a_stall_is_hung_up_and_invited_again() {
    const DEVICE: &str = "34020000001180000011";
    const UDP_CHANNEL: &str = "34020000001310001101";
    const TCP_CHANNEL: &str = "34020000001310001102";
    let (service, port) = gb_service(
        "gb-media",
        &format!(
            "[health]\ngrace = \"1s\"\n[ingest]\nstall_after = \"3s\"\n\
             [[cameras]]\nid = \"{UDP_CHANNEL}\"\nname = \"UDP channel\"\nurl = \"gb28181://{DEVICE}/{UDP_CHANNEL}\"\ntransport = \"udp\""
        ),
        "video = \"all\"\nmedia_ports = \"36100-36199\"",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let options = device_at(port, DEVICE, 2, true);
    let device = rt
        .block_on(GbDevice::start(options, cancel.clone()))
        .unwrap();
    assert_eq!(device.stats.last_status.load(Ordering::Relaxed), 200);
    for id in [UDP_CHANNEL, TCP_CHANNEL] {
        wait_flowing(&service, id, Duration::from_secs(30));
    }
    assert_eq!(device.streams(), 2, "one stream per channel");
    // Decoded: a snapshot of each channel's picture.
    for id in [UDP_CHANNEL, TCP_CHANNEL] {
        wait_picture(&service, id);
    }
    let transport = |id: &str| {
        let entry = service.entry(id);
        let info = entry.stream.lock().unwrap().clone();
        info.map(|s| s.transport)
    };
    assert_eq!(transport(UDP_CHANNEL), Some("udp"));
    let stream = camera(&service, TCP_CHANNEL)["stream"].clone();
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(384), Some(288)),
        "the size from the stream's SPS: {stream}"
    );
    assert_eq!(transport(TCP_CHANNEL), Some("tcp"));

    // The video stops, signalling goes on: stalled, hung up, invited again when it flows.
    device.set_stall(true);
    for id in [UDP_CHANNEL, TCP_CHANNEL] {
        wait_for("stalled", Duration::from_secs(15), || {
            let c = camera(&service, id);
            (c["state"] == "offline" && c["reason"] == "stalled")
                .then_some(())
                .ok_or_else(|| c.to_string())
        });
    }
    wait_for("hung up", Duration::from_secs(10), || {
        let byes = gb_counter(&service, "bye_sent");
        (byes >= 2).then_some(()).ok_or(format!("{byes} BYEs"))
    });
    device.set_stall(false);
    for id in [UDP_CHANNEL, TCP_CHANNEL] {
        wait_flowing(&service, id, Duration::from_secs(40));
    }
    let invites = device.stats.invites.load(Ordering::Relaxed);
    assert!(invites >= 4, "invited twice per channel: {invites}");
    cancel.cancel();
    drop(rt);
    service.stop();
}

/// What camsim's devices send is checked by two independent readers: its MPEG-PS decodes with
/// ffprobe (every frame, H.264), and its RTP with GStreamer (`rtpmp1sdepay ! mpegpsdemux`; the
/// depayloader's caps lack the `mpegversion` the demuxer asks for, so a `capssetter` adds it).
#[test]
fn camsims_ps_over_rtp_decodes_with_ffprobe_and_gstreamer() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use qianliyan::camsim::gb_media;
    let media = qianliyan::camsim::Media::prepare(&common::asset("video/vtest_sub.mp4")).unwrap();
    let frames = &media.normal.frames[..50];
    let mut ps = Vec::new();
    let mut packets = Vec::new();
    let mut seq = 1000u16;
    for f in frames {
        let pts = f.ts + u64::from(f.cts) + 90_000;
        let au = gb_media::annexb(media.codec, f);
        let frame = gb_media::ps_frame(media.codec, &au, pts, f.keyframe);
        packets.extend(gb_media::rtp_packets(
            &frame, &mut seq, pts as u32, 7, false,
        ));
        ps.extend(frame);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("camsim.ps");
    std::fs::write(&file, &ps).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe (installed by scripts/setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "h264,50",
        "ffprobe: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    gst::init().unwrap();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=MP1S,payload=96 \
         ! rtpmp1sdepay ! capssetter caps=video/mpeg,mpegversion=2 ! mpegpsdemux ! h264parse ! avdec_h264 ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gstreamer_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for p in packets {
        src.push_buffer(gst::Buffer::from_mut_slice(p)).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut decoded = 0;
    while sink
        .try_pull_sample(gst::ClockTime::from_seconds(10))
        .is_some()
    {
        decoded += 1;
    }
    pipeline.set_state(gst::State::Null).unwrap();
    // mpegpsdemux holds the last frame back until the next pack; the rest must all decode.
    assert!(decoded >= 49, "GStreamer decoded {decoded} of 50 frames");
}

/// A device's alarms through the normal alert path: a video alarm of a type the platform knows
/// becomes that alert (severity from its priority, source `device`, the device's own words, the
/// channel's camera), once per cooldown; motion is a low `device_alarm`, not dispatched; a disk
/// fault stays on the device; the platform answers each alarm (`Response/Alarm`); an alarm of
/// something the platform has no camera for is still raised.
#[test]
fn device_alarms_become_alerts_once_per_cooldown_and_faults_stay_on_the_device() {
    use qianliyan::gb28181::manscdp::Alarm;
    const DEVICE: &str = "34020000001180000021";
    const CHANNEL: &str = "34020000001310002101";
    let (service, port) = gb_service("gb-alarm", "", "video = \"off\"\nalarm_cooldown = \"60s\"");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let options = device_at(port, DEVICE, 2, false);
    let devices = Arc::new(vec![
        rt.block_on(GbDevice::start(options.clone(), cancel.clone()))
            .unwrap(),
    ]);
    // camsim's control API raises the first alarm, as an operator of the simulator would.
    let control = rt
        .block_on(qianliyan::camsim::gb_control::serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            devices.clone(),
            cancel.clone(),
        ))
        .unwrap();
    let device = &devices[0];
    wait_for("the channel is a camera", Duration::from_secs(20), || {
        let (_, body) = common::api(service.addr, "GET", "/api/cameras", "");
        body.contains(CHANNEL).then_some(()).ok_or(body)
    });
    let alerts = || -> Vec<serde_json::Value> {
        let (status, body) = common::api(service.addr, "GET", "/api/alerts?limit=100", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let alarm = |channel: &str, method: u8, kind: u16, priority: u8, words: &str| Alarm {
        device_id: channel.into(),
        priority: Some(priority),
        method: Some(method),
        alarm_type: Some(kind),
        time: Some("2026-12-07T21:45:00".into()),
        description: Some(words.into()),
        ..Alarm::default()
    };
    let send = |a: Alarm| rt.block_on(device.send_alarm(a)).unwrap();
    let (status, body) = common::http(
        control,
        "POST",
        &format!("/gb/devices/{DEVICE}/alarm"),
        r#"{"type": 6, "priority": 1, "description": "东门有人翻越围墙"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = common::http(
        control,
        "POST",
        &format!("/gb/devices/{DEVICE}/alarm"),
        r#"{"priority": 9}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("priority"), "{body}");
    wait_for("an intrusion alert", Duration::from_secs(10), || {
        let n = alerts().len();
        (n == 1).then_some(()).ok_or(format!("{n} alerts"))
    });
    let a = &alerts()[0];
    assert_eq!(a["alert_type"], "intrusion", "{a}");
    assert_eq!(a["type_zh"], "区域入侵");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["source"], "device");
    assert_eq!(a["rule_id"], "device:5.6");
    assert_eq!(a["camera"], CHANNEL);
    assert_eq!(a["dispatch"], true);
    assert!(
        a["message_zh"]
            .as_str()
            .unwrap()
            .contains("东门有人翻越围墙"),
        "{a}"
    );
    assert!(a["boxes"].as_array().unwrap().is_empty());

    // The same alarm again within the cooldown: counted, not raised. Motion: a low device alarm.
    send(alarm(CHANNEL, 5, 6, 1, "东门有人翻越围墙"));
    send(alarm(CHANNEL, 5, 2, 2, ""));
    wait_for("a device alarm", Duration::from_secs(10), || {
        let all = alerts();
        all.iter()
            .any(|a| a["alert_type"] == "device_alarm")
            .then_some(())
            .ok_or(format!("{all:?}"))
    });
    let all = alerts();
    assert_eq!(all.len(), 2, "the repeat raised nothing: {all:#?}");
    let m = all
        .iter()
        .find(|a| a["alert_type"] == "device_alarm")
        .unwrap();
    assert_eq!(
        (m["severity"].as_str(), m["dispatch"].as_bool()),
        (Some("low"), Some(false))
    );
    assert!(
        m["message_en"]
            .as_str()
            .unwrap()
            .contains("motion detected"),
        "{m}"
    );

    // A disk fault is the device's health: no alert, shown on the device.
    send(alarm(DEVICE, 6, 1, 2, "硬盘故障"));
    // Something the platform has no camera for, not in the device's catalog: raised all the same,
    // on the device (a device cannot name what it does not have).
    let input = "34020000001340000001";
    send(alarm(input, 5, 5, 2, "周界"));
    wait_for("the tripwire alert", Duration::from_secs(10), || {
        let all = alerts();
        all.iter()
            .any(|a| a["camera"] == DEVICE && a["alert_type"] == "tripwire")
            .then_some(())
            .ok_or(format!("{all:?}"))
    });
    assert_eq!(alerts().len(), 3, "no alert for the disk fault");
    let (_, body) = common::api(
        service.addr,
        "GET",
        &format!("/api/gb28181/devices/{DEVICE}"),
        "",
    );
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["alarms"], 5, "{d}");
    assert_eq!(d["last_alarm"]["channel"], input, "{d}");
    wait_for("each alarm answered", Duration::from_secs(10), || {
        let acks = device.stats.alarms_acknowledged.load(Ordering::Relaxed);
        (acks >= 5).then_some(()).ok_or(format!("{acks} answers"))
    });
    // Another device naming this device's channel: the alert is on that other device, never on
    // a camera it does not have.
    const OTHER: &str = "34020000001180000022";
    let other = rt
        .block_on(GbDevice::start(
            GbDeviceOptions {
                id: OTHER.into(),
                ..options
            },
            cancel.clone(),
        ))
        .unwrap();
    rt.block_on(other.send_alarm(alarm(CHANNEL, 5, 8, 2, "spoof")))
        .unwrap();
    wait_for("the other device's alert", Duration::from_secs(10), || {
        let all = alerts();
        all.iter()
            .any(|a| a["alert_type"] == "loitering")
            .then_some(())
            .ok_or(format!("{all:?}"))
    });
    let spoof = alerts()
        .into_iter()
        .find(|a| a["alert_type"] == "loitering")
        .unwrap();
    assert_eq!(spoof["camera"], OTHER, "{spoof}");
    let (_, metrics) = common::api(service.addr, "GET", "/metrics", "");
    assert!(
        metrics.contains("qly_gb28181_requests_total{kind=\"alarm\"} 6")
            && metrics.contains("qly_gb28181_requests_total{kind=\"alarm_repeated\"} 1"),
        "{metrics}"
    );
    cancel.cancel();
    drop(rt);
    service.stop();
}

/// 视频巡检: a channel without rules (`video = "rules"`, none configured) is not pulled
/// continuously but looked at every `patrol_interval` for `patrol_for`: invited, watched (a
/// decoded picture comes of it), hung up (BYE), invited again; online all along, never `stalled`
/// between looks.
#[test]
fn channels_without_rules_are_patrolled_invited_watched_and_hung_up_in_turn() {
    const DEVICE: &str = "34020000001180000031";
    const CHANNEL: &str = "34020000001310003101";
    let (service, port) = gb_service(
        "gb-patrol",
        "[health]\ngrace = \"1s\"\n[ingest]\nstall_after = \"2s\"",
        "video = \"rules\"\npatrol_interval = \"5s\"\npatrol_for = \"3s\"\nmedia_ports = \"36200-36299\"",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let options = device_at(port, DEVICE, 1, true);
    let device = rt
        .block_on(GbDevice::start(options, cancel.clone()))
        .unwrap();
    // Looks finished, as the platform counts them (it hung up after each).
    let patrols = || gb_counter(&service, "patrol");
    wait_for("the first look over", Duration::from_secs(20), || {
        let n = patrols();
        (n >= 1).then_some(()).ok_or(format!("{n} looks"))
    });
    let (status, _) = common::api(
        service.addr,
        "GET",
        &format!("/api/cameras/{CHANNEL}/frame.jpg"),
        "",
    );
    assert_eq!(status, 200, "a picture from the patrol");
    // Two more looks; the channel never leaves online meanwhile.
    let started = Instant::now();
    while patrols() < 3 {
        let c = camera(&service, CHANNEL);
        assert_eq!(c["state"], "online", "between and during looks: {c}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no third look: {c}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let invites = device.stats.invites.load(Ordering::Relaxed);
    assert!(invites >= 3, "invited once per look: {invites}");
    let byes = gb_counter(&service, "bye_sent");
    assert!(byes >= 3, "hung up after each look: {byes}");
    cancel.cancel();
    drop(rt);
    service.stop();
}

/// A lower platform (type 200) registers like a device. Its catalog — nine entries over five
/// pages: a business group, three organisations, an NVR and four channels — becomes four cameras
/// (not the groups, not the NVR) whose areas come from the groups: the township's group is mapped
/// in `[gb28181.areas]`, the village organisations below it add their names. A channel behind the
/// platform's NVR is invited through the platform, and its video is decoded.
#[test]
fn a_lower_platforms_paged_catalog_becomes_cameras_in_its_groups_areas_and_video_comes_through_it()
{
    const LOWER: &str = "34020000002000000101";
    // camsim's tree for this platform: 215…1011 雪亮工程 ⊃ 216…1011 城关镇 ⊃ 216…1012 东街社区
    // (even channels), 216…1013 西关村 ⊃ 118…1011 NVR (odd channels).
    const TOWNSHIP: &str = "34020000002160001011";
    const NVR: &str = "34020000001180001011";
    let (service, port) = gb_service(
        "gb-platform",
        "[health]\ngrace = \"1s\"",
        &format!(
            "video = \"all\"\nmedia_ports = \"36300-36399\"\n[gb28181.areas]\n\"{TOWNSHIP}\" = \"示范县/城关镇\"\n"
        ),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let options = device_at(port, LOWER, 4, true);
    let channels: Vec<String> = channel_ids(LOWER, 4);
    let platform = rt
        .block_on(GbDevice::start(options, cancel.clone()))
        .unwrap();
    assert_eq!(platform.stats.last_status.load(Ordering::Relaxed), 200);

    wait_for("the platform's catalog", Duration::from_secs(20), || {
        let (status, body) = common::api(
            service.addr,
            "GET",
            &format!("/api/gb28181/devices/{LOWER}"),
            "",
        );
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        (status == 200 && v["catalog_entries"] == 9)
            .then_some(())
            .ok_or(body)
    });
    let (_, body) = common::api(
        service.addr,
        "GET",
        &format!("/api/gb28181/devices/{LOWER}"),
        "",
    );
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["kind"], "platform", "{view}");
    assert_eq!(view["channels"], 4, "{view}");

    for (n, id) in channels.iter().enumerate() {
        wait_listed(&service, id, Duration::from_secs(10));
        let c = camera(&service, id);
        let area = if n % 2 == 0 {
            "示范县/城关镇/东街社区"
        } else {
            "示范县/城关镇/西关村"
        };
        assert_eq!(c["area_path"], area, "{c}");
        assert_eq!(c["source"], "gb28181", "{c}");
    }
    let (_, body) = common::api(service.addr, "GET", "/api/cameras", "");
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = all.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 4, "only the channels are cameras: {ids:?}");
    assert!(!ids.contains(&TOWNSHIP) && !ids.contains(&NVR), "{ids:?}");

    // The channel on the platform's NVR: invited through the platform, decoded.
    let behind_nvr = channels[1].clone();
    wait_flowing(&service, &behind_nvr, Duration::from_secs(40));
    wait_picture(&service, &behind_nvr);
    assert!(platform.stats.invites.load(Ordering::Relaxed) >= 4);
    cancel.cancel();
    drop(rt);
    service.stop();
}

/// Catalogs are asked for again every `catalog_interval`: a channel the lower platform now reports
/// `OFF`, or no longer lists, goes offline `unreachable`; listed `ON` again, it is back online. A
/// channel removed through the API stays removed though the catalogs go on listing it.
#[test]
fn catalogs_are_asked_again_and_channels_reported_off_or_gone_are_unreachable_until_back() {
    use qianliyan::camsim::gb::ChannelReport;
    const LOWER: &str = "34020000002000000102";
    let (service, port) = gb_service(
        "gb-refresh",
        "",
        "video = \"off\"\ncatalog_interval = \"2s\"",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let options = device_at(port, LOWER, 3, false);
    let channels: Vec<String> = channel_ids(LOWER, 3);
    let platform = rt
        .block_on(GbDevice::start(options, cancel.clone()))
        .unwrap();
    let state_is = |id: &str, state: &str, reason: Option<&str>| -> Result<(), String> {
        let (_, body) = common::api(service.addr, "GET", "/api/cameras", "");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let c = all
            .into_iter()
            .find(|c| c["id"] == id)
            .ok_or(format!("{id} not listed"))?;
        (c["state"] == state && c["reason"].as_str() == reason)
            .then_some(())
            .ok_or_else(|| c.to_string())
    };
    for id in &channels[..2] {
        wait_for("online", Duration::from_secs(20), || {
            state_is(id, "online", None)
        });
    }
    // This device takes the subscription but never notifies: the re-reads find the changes.
    platform.set_notify(false);
    let asked = platform.stats.catalog_queries.load(Ordering::Relaxed);
    platform.set_channel(&channels[0], ChannelReport::Off);
    platform.set_channel(&channels[1], ChannelReport::Gone);
    for id in &channels[..2] {
        wait_for("unreachable", Duration::from_secs(15), || {
            state_is(id, "offline", Some("unreachable"))
        });
    }
    assert!(
        platform.stats.catalog_queries.load(Ordering::Relaxed) > asked,
        "asked again"
    );
    state_is(&channels[2], "online", None).unwrap();
    platform.set_channel(&channels[0], ChannelReport::On);
    platform.set_channel(&channels[1], ChannelReport::On);
    for id in &channels[..2] {
        wait_for("back online", Duration::from_secs(15), || {
            state_is(id, "online", None)
        });
    }
    let (status, body) = common::api(
        service.addr,
        "DELETE",
        &format!("/api/cameras/{}", channels[2]),
        "",
    );
    assert_eq!(status, 204, "{body}");
    // Catalogs for longer than the join keeps a read of the inventory (10 s): the removal is
    // remembered in the store, not only in that read.
    let asked = platform.stats.catalog_queries.load(Ordering::Relaxed);
    let removed_at = Instant::now();
    wait_for("catalogs for 12 s", Duration::from_secs(30), || {
        let now = platform.stats.catalog_queries.load(Ordering::Relaxed);
        (now >= asked + 5 && removed_at.elapsed() > Duration::from_secs(12))
            .then_some(())
            .ok_or(format!("{now}"))
    });
    std::thread::sleep(Duration::from_millis(500));
    let (_, body) = common::api(service.addr, "GET", "/api/cameras", "");
    assert!(
        !body.contains(channels[2].as_str()),
        "removed, and not added again: {body}"
    );
    assert!(body.contains(channels[1].as_str()), "{body}");
    // Added through the API again: back, and online with its device's signalling within seconds
    // (no device event needed).
    let again = serde_json::json!({
        "id": channels[2],
        "name": "镇政府",
        "url": format!("gb28181://{LOWER}/{}", channels[2]),
    });
    let (status, body) = common::api(service.addr, "POST", "/api/cameras", &again.to_string());
    assert_eq!(status, 201, "{body}");
    wait_for("back online", Duration::from_secs(5), || {
        state_is(&channels[2], "online", None)
    });
    cancel.cancel();
    drop(rt);
    service.stop();
}

/// Two nodes on one PostgreSQL database, each with its own SIP port: a device is placed with all
/// its channels on the node it registered to (its home), whichever node rendezvous hashing would
/// pick; when the device registers to the other node (its node gone, a load balancer sending it
/// elsewhere), its channels follow at once, and a device alarm received there is stored (a
/// device's word is not fenced).
#[test]
fn in_a_cluster_a_devices_channels_are_held_by_the_node_it_registered_to_and_follow_it() {
    use qianliyan::cluster::rendezvous::{Candidate, owner};
    // Devices that rendezvous hashing would place on the other node than the one they register
    // to: dev1 (registers to A) hashes to B, dev2 (registers to B) to A.
    let nodes = [
        Candidate {
            id: "node-a",
            weight: 1,
        },
        Candidate {
            id: "node-b",
            weight: 1,
        },
    ];
    let pick = |want: &str, skip: &str| -> String {
        (200u32..)
            .map(|n| format!("340200000011800{n:05}"))
            .find(|d| d != skip && owner(d, &nodes) == Some(want))
            .unwrap()
    };
    let d1 = pick("node-b", "");
    let d2 = pick("node-a", &d1);
    let (dev1, dev2) = (d1.as_str(), d2.as_str());
    let pg = qianliyan::db::server::PrivatePostgres::start().expect("a private PostgreSQL");
    let url = pg.url();
    let node = |id: &str| -> (common::Service, u16) {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[node]\nname = \"{id}\"\ndata_dir = \"{}\"\ndatabase_url_env = \"QLY_TEST_DATABASE_URL\"\ndatabase_pool = 4\n\
             [web]\nlisten = \"127.0.0.1:0\"\n[cluster]\nnode_id = \"{id}\"\nlease = \"4s\"\nrenew = \"1s\"\n\
             [gb28181]\nsip_id = \"{PLATFORM}\"\nlisten = \"127.0.0.1:0\"\npassword_env = \"QLY_GB_TEST_PASSWORD\"\n\
             keepalive_interval = \"1s\"\nauto_accept = true\nvideo = \"off\"\n{}",
            dir.path().join("data").display(),
            common::TEST_AUTH
        );
        let service = common::start_service(
            dir,
            &toml,
            &[
                ("QLY_GB_TEST_PASSWORD", PASSWORD),
                ("QLY_TEST_DATABASE_URL", &url),
            ],
        );
        let (_, system) = common::api(service.addr, "GET", "/api/system", "");
        let system: serde_json::Value = serde_json::from_str(&system).unwrap();
        let port = system["gb28181"]["sip_port"].as_u64().expect("sip_port") as u16;
        (service, port)
    };
    let (a, port_a) = node("node-a");
    let (b, port_b) = node("node-b");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Where each camera runs and its state, as node A lists them (every node lists every camera).
    let placed = |svc: &common::Service| -> HashMap<String, (String, String)> {
        let (status, body) = common::api(svc.addr, "GET", "/api/cameras", "");
        assert_eq!(status, 200, "{body}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        all.into_iter()
            .map(|c| {
                let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                (text("id"), (text("node"), text("state")))
            })
            .collect()
    };
    let all_on = |device: &str, node: &str| -> Result<(), String> {
        let now = placed(&a);
        let want = (node.to_owned(), "online".to_owned());
        channel_ids(device, 3)
            .iter()
            .all(|c| now.get(c) == Some(&want))
            .then_some(())
            .ok_or_else(|| format!("{device} on {node}: {now:?}"))
    };
    let first = CancellationToken::new();
    let d1 = rt
        .block_on(GbDevice::start(
            device_at(port_a, dev1, 3, false),
            first.clone(),
        ))
        .unwrap();
    let others = CancellationToken::new();
    let d2 = rt
        .block_on(GbDevice::start(
            device_at(port_b, dev2, 3, false),
            others.clone(),
        ))
        .unwrap();
    assert_eq!(d1.stats.last_status.load(Ordering::Relaxed), 200);
    assert_eq!(d2.stats.last_status.load(Ordering::Relaxed), 200);
    wait_for(
        "each device's channels on its node",
        Duration::from_secs(40),
        || {
            all_on(dev1, "node-a")?;
            all_on(dev2, "node-b")
        },
    );

    // Either node lists both devices, each with the node it is registered to, and answers for a
    // device registered to the other.
    let (status, body) = common::api(a.addr, "GET", "/api/gb28181/devices", "");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let node_of = |id: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .map(|d| d["node"].clone())
    };
    assert_eq!(node_of(dev1), Some("node-a".into()), "{list}");
    assert_eq!(node_of(dev2), Some("node-b".into()), "{list}");
    assert_eq!(list["online"], 2, "{list}");
    let (status, body) = common::api(a.addr, "GET", &format!("/api/gb28181/devices/{dev2}"), "");
    assert_eq!(status, 200, "{body}");
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            one["node"].as_str(),
            one["catalog"].as_array().map(Vec::len)
        ),
        (Some("node-b"), Some(3)),
        "{one}"
    );

    // A device no node has: 404 at once (the nodes ask each other once, not round and round);
    // an id that is not a device's is not passed on at all.
    for id in ["34020000001180009999", "..%2F..%2Fsystem"] {
        let asked = Instant::now();
        let (status, body) = common::api(a.addr, "GET", &format!("/api/gb28181/devices/{id}"), "");
        assert_eq!(status, 404, "{id}: {body}");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{id}: {:?}",
            asked.elapsed()
        );
    }

    // dev1 goes to node B: its channels follow, dev2's stay.
    first.cancel();
    let d1_again = rt
        .block_on(GbDevice::start(
            device_at(port_b, dev1, 3, false),
            others.clone(),
        ))
        .unwrap();
    assert_eq!(d1_again.stats.last_status.load(Ordering::Relaxed), 200);
    wait_for("dev1's channels on node B", Duration::from_secs(30), || {
        all_on(dev1, "node-b")?;
        all_on(dev2, "node-b")
    });

    // An alarm naming dev1 itself (no camera has its id, so no node holds one), received by node
    // B: one alert, stored (a device's word is not fenced).
    let alarm = qianliyan::gb28181::manscdp::Alarm {
        device_id: dev1.to_owned(),
        priority: Some(2),
        method: Some(5),
        alarm_type: Some(6),
        description: Some("区域入侵".into()),
        ..Default::default()
    };
    rt.block_on(d1_again.send_alarm(alarm)).unwrap();
    wait_for("the device's alert stored", Duration::from_secs(15), || {
        let (_, body) = common::api(a.addr, "GET", "/api/alerts", "");
        (body.contains("device:5.6") && body.contains(dev1))
            .then_some(())
            .ok_or(body)
    });
    others.cancel();
    drop(rt);
    a.stop();
    b.stop();
}

/// `tcp_connect = "platform"` (TCP active): the INVITE offers `a=setup:active`, the device
/// answers with a port it listens on, and the platform connects there — for devices that cannot
/// reach the platform's media ports. The video is decoded as with the device connecting.
#[test]
fn with_tcp_connect_platform_the_platform_connects_to_the_devices_media_port() {
    const DEVICE: &str = "34020000001180000031";
    let (service, port) = gb_service(
        "gb-tcp-active",
        "[health]\ngrace = \"1s\"",
        "video = \"all\"\nmedia_ports = \"36400-36499\"\ntcp_connect = \"platform\"",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let device = rt
        .block_on(GbDevice::start(
            device_at(port, DEVICE, 1, true),
            cancel.clone(),
        ))
        .unwrap();
    let channel = channel_ids(DEVICE, 1).remove(0);
    wait_listed(&service, &channel, Duration::from_secs(20));
    wait_flowing(&service, &channel, Duration::from_secs(30));
    assert!(
        device.stats.media.accepted.load(Ordering::Relaxed) >= 1,
        "the platform opened the connection"
    );
    cancel.cancel();
    drop(rt);
    service.stop();
}

/// After its catalog the platform subscribes to the device's catalog changes (SUBSCRIBE, `Event:
/// Catalog`); the device's `Notify/Catalog` then applies at once — `OFF` and `DEL` make a channel
/// `unreachable`, `ON` and `ADD` bring it back — long before the next catalog query (10 min).
#[test]
fn catalog_notifications_after_a_subscription_change_channels_at_once() {
    use qianliyan::camsim::gb::ChannelReport;
    const LOWER: &str = "34020000002000000103";
    let (service, port) = gb_service("gb-notify", "", "video = \"off\"");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let channels: Vec<String> = channel_ids(LOWER, 2);
    let platform = rt
        .block_on(GbDevice::start(
            device_at(port, LOWER, 2, false),
            cancel.clone(),
        ))
        .unwrap();
    let state_of = |id: &str| -> (String, Option<String>) {
        let c = camera(&service, id);
        (
            c["state"].as_str().unwrap_or_default().to_owned(),
            c["reason"].as_str().map(str::to_owned),
        )
    };
    let becomes = |id: &str, state: &str, reason: Option<&str>| {
        wait_for("the notified state", Duration::from_secs(5), || {
            let now = state_of(id);
            (now.0 == state && now.1.as_deref() == reason)
                .then_some(())
                .ok_or(format!("{now:?}"))
        });
    };
    for id in &channels {
        wait_listed(&service, id, Duration::from_secs(20));
        becomes(id, "online", None);
    }
    wait_for("subscribed", Duration::from_secs(10), || {
        let n = platform.stats.subscriptions.load(Ordering::Relaxed);
        (n >= 1).then_some(()).ok_or(format!("{n}"))
    });
    let queries = platform.stats.catalog_queries.load(Ordering::Relaxed);
    platform.set_channel(&channels[0], ChannelReport::Off);
    platform.set_channel(&channels[1], ChannelReport::Gone);
    becomes(&channels[0], "offline", Some("unreachable"));
    becomes(&channels[1], "offline", Some("unreachable"));
    platform.set_channel(&channels[0], ChannelReport::On);
    platform.set_channel(&channels[1], ChannelReport::On);
    becomes(&channels[0], "online", None);
    becomes(&channels[1], "online", None);
    assert_eq!(
        platform.stats.catalog_queries.load(Ordering::Relaxed),
        queries,
        "by notifications, not by asking for the catalog again"
    );
    wait_for(
        "four notifications answered",
        Duration::from_secs(5),
        || {
            let n = platform.stats.notifies.load(Ordering::Relaxed);
            (n == 4).then_some(()).ok_or(format!("{n}"))
        },
    );
    assert!(gb_counter(&service, "catalog_change") >= 4);
    cancel.cancel();
    drop(rt);
    service.stop();
}
