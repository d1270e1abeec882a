//! camsim against standard clients: GStreamer `rtspsrc`, ffprobe, raw sockets.
//! Camera numbers are split between tests so they can run in parallel on one simulator.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Decoder, run_with_timeout, set_fault, shared_sim, start_sim};
use qianliyan::camsim::{self, Auth, AuthScheme, TransportPolicy};

const FRAME_WAIT: Duration = Duration::from_secs(10);

fn ffprobe(url: &str, transport: &str) -> (bool, String, String) {
    run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-select_streams",
            "v:0",
            "-count_frames",
            "-read_intervals",
            "%+3",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
            url,
        ]),
        Duration::from_secs(40),
    )
}

fn assert_ffprobe_decodes(url: &str, transport: &str) {
    let (ok, out, err) = ffprobe(url, transport);
    assert!(ok, "ffprobe over {transport} failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ffprobe json");
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{out}");
    assert_eq!(s["width"], 384, "{out}");
    assert_eq!(s["height"], 288, "{out}");
    let frames: u64 = s["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        frames >= 10,
        "ffprobe over {transport} decoded only {frames} frames: {out}"
    );
}

#[test]
fn gstreamer_rtspsrc_decodes_over_tcp_and_udp() {
    let sim = shared_sim();
    for (camera, proto) in [(1, "tcp"), (2, "udp")] {
        let dec = Decoder::open(&sim.running.url(camera), proto);
        for i in 0..15 {
            let f = dec
                .next(FRAME_WAIT)
                .unwrap_or_else(|| panic!("no frame {i} from camera {camera} over {proto}"));
            assert_eq!((f.width, f.height), (384, 288));
        }
    }
}

#[test]
fn ffprobe_decodes_over_tcp_and_udp() {
    let sim = shared_sim();
    assert_ffprobe_decodes(&sim.running.url(3), "tcp");
    assert_ffprobe_decodes(&sim.running.url(3), "udp");
}

#[test]
fn wrong_password_is_refused_right_one_accepted_digest_and_basic() {
    let password = "Cam-pass-42";
    for scheme in [AuthScheme::Digest, AuthScheme::Basic] {
        let sim = start_sim(
            2,
            Some(Auth::new("admin".into(), password.into(), scheme)),
            TransportPolicy::Both,
        );
        let url = sim.running.url(1);
        let with =
            |user: &str, pass: &str| url.replacen("rtsp://", &format!("rtsp://{user}:{pass}@"), 1);
        let (ok, _, err) = ffprobe(&with("admin", "wrong"), "tcp");
        assert!(!ok, "{scheme:?}: a wrong password was accepted");
        assert!(
            err.contains("401"),
            "{scheme:?}: expected 401 Unauthorized, got: {err}"
        );
        let (ok, _, err) = ffprobe(&url, "tcp");
        assert!(
            !ok && err.contains("401"),
            "{scheme:?}: no credentials must be refused: {err}"
        );
        assert_ffprobe_decodes(&with("admin", password), "tcp");
        // gst rtspsrc answers the challenge with its own implementation.
        let dec = Decoder::open_auth(&url, "tcp", Some(("admin", password)));
        assert!(
            dec.next(FRAME_WAIT).is_some(),
            "{scheme:?}: rtspsrc with credentials decodes"
        );
        let failures = sim
            .running
            .shared
            .stats
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(failures >= 2, "refusals are counted");
    }
}

/// Skips frames that were decoded before a fault took effect.
fn settle(dec: &Decoder) {
    std::thread::sleep(Duration::from_millis(800));
    dec.drain();
    for _ in 0..5 {
        dec.next(FRAME_WAIT);
    }
}

#[test]
fn black_and_cover_faults_are_visible_in_decoded_frames() {
    let sim = shared_sim();
    let dec = Decoder::open(&sim.running.url(4), "tcp");
    let normal = dec.next(FRAME_WAIT).expect("normal frame");
    assert!(
        normal.mean() > 60.0,
        "the scene is not dark: mean {}",
        normal.mean()
    );
    let normal_flat = normal.flat_fraction();

    assert_eq!(set_fault(sim, "0004", "black").0, 200);
    settle(&dec);
    let black = dec.next(FRAME_WAIT).expect("black frame");
    assert!(
        black.mean() < 30.0,
        "black fault: mean luma {} should be < 30",
        black.mean()
    );

    assert_eq!(set_fault(sim, "4", "cover").0, 200);
    settle(&dec);
    let covered = dec.next(FRAME_WAIT).expect("covered frame");
    assert!(
        covered.flat_fraction() > 0.6 && covered.flat_fraction() > normal_flat + 0.3,
        "cover fault: flat area {} (normal {normal_flat})",
        covered.flat_fraction()
    );

    assert_eq!(set_fault(sim, "0004", "restore").0, 200);
    settle(&dec);
    let back = dec.next(FRAME_WAIT).expect("frame after restore");
    assert!(back.mean() > 60.0 && back.flat_fraction() < normal_flat + 0.2);
}

#[test]
fn freeze_repeats_one_picture_and_normal_video_moves() {
    let sim = shared_sim();
    let dec = Decoder::open(&sim.running.url(5), "tcp");
    let frames: Vec<_> = (0..20)
        .map(|_| dec.next(FRAME_WAIT).expect("frame"))
        .collect();
    let moving = frames
        .windows(2)
        .map(|w| w[0].diff(&w[1]))
        .fold(0.0, f64::max);
    assert!(
        moving > 0.5,
        "normal video should change between frames (max diff {moving})"
    );

    assert_eq!(set_fault(sim, "0005", "freeze").0, 200);
    settle(&dec);
    let frozen: Vec<_> = (0..12)
        .map(|_| dec.next(FRAME_WAIT).expect("frozen frame"))
        .collect();
    let still = frozen
        .windows(2)
        .map(|w| w[0].diff(&w[1]))
        .fold(0.0, f64::max);
    assert!(
        still < 0.05,
        "frozen frames should be identical (max diff {still})"
    );
    assert_eq!(set_fault(sim, "0005", "restore").0, 200);
}

#[test]
fn stall_sends_nothing_on_an_open_session_and_restore_resumes() {
    let sim = shared_sim();
    let dec = Decoder::open(&sim.running.url(6), "tcp");
    assert!(dec.next(FRAME_WAIT).is_some());
    assert_eq!(set_fault(sim, "0006", "stall").0, 200);
    std::thread::sleep(Duration::from_millis(1500));
    dec.drain();
    assert!(
        dec.next(Duration::from_secs(3)).is_none(),
        "a stalled camera must send no frames"
    );
    let cams = common::http(sim.running.control_addr, "GET", "/cameras", "");
    assert!(
        cams.1.contains("\"stall\""),
        "GET /cameras lists the fault: {}",
        cams.1
    );
    assert_eq!(set_fault(sim, "0006", "restore").0, 200);
    assert!(
        dec.next(FRAME_WAIT).is_some(),
        "frames come back after restore"
    );
}

fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn down_refuses_new_sessions_and_ends_current_ones() {
    let sim = shared_sim();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let stats = Arc::new(camsim::load::LoadStats::default());
    let cancel = tokio_util::sync::CancellationToken::new();
    let url = sim.running.url(7);
    let held = rt.spawn(camsim::load::hold(
        url.clone(),
        stats.clone(),
        cancel.clone(),
    ));
    let t0 = Instant::now();
    while stats.playing.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            t0.elapsed() < FRAME_WAIT,
            "load client never started playing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(set_fault(sim, "0007", "down").0, 200);
    let ended = rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), held).await });
    let result = ended
        .expect("session ends within 3 s of down")
        .expect("task");
    assert!(result.is_err(), "the server closed the session");

    let describe = format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    let reply = raw_request(sim.running.rtsp_addr, describe.as_bytes());
    assert!(
        reply.starts_with("RTSP/1.0 503"),
        "down camera answers 503: {reply}"
    );
    assert_eq!(set_fault(sim, "0007", "restore").0, 200);
    let reply = raw_request(sim.running.rtsp_addr, describe.as_bytes());
    assert!(
        reply.starts_with("RTSP/1.0 200"),
        "restored camera answers 200: {reply}"
    );
    cancel.cancel();
}

#[test]
fn malformed_requests_get_rtsp_errors_and_vanishing_clients_do_not_hurt() {
    let sim = shared_sim();
    let addr = sim.running.rtsp_addr;
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        &b"\x00\x01\x02\x03 binary \xff\xfe\r\n\r\n"[..],
        &b"DESCRIBE rtsp://127.0.0.1/cam/0001 RTSP/1.0\r\n\r\n"[..], // no CSeq
    ] {
        let reply = raw_request(addr, junk);
        assert!(
            reply.starts_with("RTSP/1.0 400"),
            "junk {junk:?} → {reply:?}"
        );
    }
    let mut huge = b"DESCRIBE rtsp://127.0.0.1/cam/0001 RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    assert!(raw_request(addr, &huge).starts_with("RTSP/1.0 400"));
    let reply = raw_request(
        addr,
        b"DESCRIBE rtsp://127.0.0.1/cam/9999 RTSP/1.0\r\nCSeq: 7\r\n\r\n",
    );
    assert!(
        reply.starts_with("RTSP/1.0 404") && reply.contains("CSeq: 7"),
        "{reply}"
    );
    let reply = raw_request(
        addr,
        b"RECORD rtsp://127.0.0.1/cam/0001 RTSP/1.0\r\nCSeq: 2\r\n\r\n",
    );
    assert!(reply.starts_with("RTSP/1.0 501"), "{reply}");

    // Clients that vanish at every step of the handshake.
    let url = sim.running.url(8);
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).expect("connect");
        let _ = s.write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAcc").as_bytes());
        drop(s);
        let mut s = TcpStream::connect(addr).expect("connect");
        let setup = format!(
            "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        );
        let _ = s.write_all(setup.as_bytes());
        drop(s);
    }
    // Sessions of vanished clients are released.
    let t0 = Instant::now();
    loop {
        let (_, body) = common::http(sim.running.control_addr, "GET", "/cameras", "");
        let cams: serde_json::Value = serde_json::from_str(&body).expect("json");
        if cams[7]["sessions"] == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "sessions leaked: {}",
            cams[7]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ffprobe_decodes(&url, "tcp");
}

#[test]
fn control_api_rejects_unknown_cameras_and_kinds_without_partial_changes() {
    let sim = shared_sim();
    let (status, body) = set_fault(sim, "0099", "down");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("0099"), "the error names the camera: {body}");
    let (status, body) = set_fault(sim, "0003", "explode");
    assert!(status == 422 || status == 400, "{status} {body}");
    assert!(body.contains("kind"), "the error names the field: {body}");
    let (status, body) = common::http(
        sim.running.control_addr,
        "POST",
        "/faults",
        r#"{"cameras": ["0003", "0404"], "kind": "black"}"#,
    );
    assert_eq!(status, 404, "{body}");
    let (_, cams) = common::http(sim.running.control_addr, "GET", "/cameras", "");
    let cams: serde_json::Value = serde_json::from_str(&cams).expect("json");
    assert_eq!(cams[2]["fault"], "none", "a rejected list changes nothing");
}
