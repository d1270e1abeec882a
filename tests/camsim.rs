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

/// Runs `f` on a thread and waits at most `limit` for it: a start-up that hangs fails the test.
fn bounded<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// An H.264 MP4 with B-frames (x264 with 2 B-frames, like most sample clips), 384×288 at 10 fps.
fn b_frame_mp4(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("bframes.mp4");
    let src = common::asset("video/vtest.avi");
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-y",
            "-i",
            &src.to_string_lossy(),
            "-t",
            "6",
            "-vf",
            "scale=384:288",
            "-r",
            "10",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-g",
            "20",
            &out.to_string_lossy(),
        ]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg: {err}");
    let (ok, probe, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pict_type",
            "-of",
            "csv=p=0",
            &out.to_string_lossy(),
        ]),
        Duration::from_secs(30),
    );
    assert!(
        ok && probe.lines().any(|l| l.trim() == "B"),
        "no B-frames in the test file: {err}"
    );
    out
}

/// The project's own ingest (retina) as the client: access units in arrival order.
struct Collect(Arc<std::sync::Mutex<Vec<(i64, bool)>>>);

impl qianliyan::ingest::SessionObserver for Collect {
    fn playing(&mut self, _: &qianliyan::ingest::StreamInfo) {}
    fn access_unit(
        &mut self,
        au: qianliyan::ingest::AccessUnit,
        _: &qianliyan::ingest::StreamInfo,
    ) {
        self.0.lock().expect("lock").push((au.pts_90k, au.keyframe));
    }
}

fn ingest_access_units(url: &str, count: usize) -> Vec<(i64, bool)> {
    let aus = Arc::new(std::sync::Mutex::new(Vec::new()));
    let spec = qianliyan::ingest::SessionSpec {
        camera: "bframes".into(),
        url: url::Url::parse(url).expect("url"),
        transport: qianliyan::config::Transport::Tcp,
        credentials: None,
        stall_after: Duration::from_secs(10),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut observer = Collect(aus.clone());
    rt.block_on(async {
        let session = qianliyan::ingest::run_session(&spec, &mut observer);
        tokio::pin!(session);
        let deadline = tokio::time::sleep(Duration::from_secs(20));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                failure = &mut session => panic!("ingest session ended: {failure}"),
                _ = &mut deadline => panic!("fewer than {count} access units in 20 s"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if aus.lock().expect("lock").len() >= count {
                        break;
                    }
                }
            }
        }
    });
    aus.lock().expect("lock").clone()
}

#[test]
fn b_frame_h264_is_served_in_decode_order_with_presentation_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = b_frame_mp4(dir.path());
    let source = file.to_string_lossy().into_owned();
    // start_sim_with joins the path to assets/, which keeps an absolute path as it is.
    let sim = bounded(
        Duration::from_secs(60),
        "camsim start-up on a B-frame file",
        move || common::start_sim_with(2, &source, None, TransportPolicy::Both),
    );

    let aus = ingest_access_units(&sim.running.url(1), 30);
    assert!(aus[0].1, "the stream starts with a keyframe: {aus:?}");
    // Sent in decode order: a B-frame arrives after the later picture it references.
    assert!(
        aus.windows(2).any(|w| w[1].0 < w[0].0),
        "no access unit is presented before its predecessor, so the B-frames were not sent in \
         decode order with their own timestamps: {aus:?}"
    );
    // In presentation order the timestamps are distinct and step exactly one frame (10 fps).
    let mut pts: Vec<i64> = aus.iter().map(|a| a.0).collect();
    pts.sort_unstable();
    let steps: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    // The last frames of the window may still wait for an earlier B-frame: check all but two.
    assert!(
        steps[..steps.len() - 2].iter().all(|&s| s == 9_000),
        "presentation timestamps are not one frame apart: {pts:?}"
    );

    // A decoder (ffmpeg) shows the pictures with increasing timestamps, B-frames among them.
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-read_intervals",
            "%+3",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts,pict_type",
            "-of",
            "csv=p=0",
            &sim.running.url(2),
        ]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffprobe: {err}");
    let frames: Vec<(Option<i64>, String)> = out
        .lines()
        .filter_map(|l| {
            let (pts, kind) = l.trim().split_once(',')?;
            Some((pts.parse().ok(), kind.to_owned()))
        })
        .collect();
    assert!(
        frames.len() >= 15,
        "ffprobe decoded only {} frames: {out}",
        frames.len()
    );
    assert!(
        frames.iter().any(|f| f.1 == "B"),
        "no B-frame decoded: {out}"
    );
    let stamped: Vec<i64> = frames.iter().filter_map(|f| f.0).collect();
    assert!(
        stamped.windows(2).all(|w| w[1] > w[0]),
        "decoded timestamps go backwards: {out}"
    );
}

#[test]
fn sigterm_ends_camsim_while_it_is_still_loading_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A source that never finishes loading: a FIFO held open (O_RDWR) and never written.
    let fifo = dir.path().join("slow.mp4");
    let (ok, _, err) = run_with_timeout(Command::new("mkfifo").arg(&fifo), Duration::from_secs(5));
    assert!(ok, "mkfifo: {err}");
    let _writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qianliyan"))
        // `make test` exports the demo's camsim password, which camsim reads as --password (and
        // then asks for --user): this camsim runs without authentication.
        .env_remove("QLY_CAMSIM_PASSWORD")
        .args([
            "camsim",
            "--cameras",
            "2",
            "--bind",
            "127.0.0.1",
            "--rtsp-port",
            "0",
        ])
        .args(["--control-port", "0", "--source"])
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn camsim");
    // Wait until camsim says it is preparing the source (its log goes to stderr), then a little
    // more so that it is inside the probe; if it ends before that, fail with what it said.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let t0 = Instant::now();
    let mut seen = String::new();
    while !seen.contains("preparing the source") {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) if t0.elapsed() > Duration::from_secs(20) => {
                let _ = child.kill();
                panic!("camsim never said it was preparing its source:\n{seen}");
            }
            Err(_) => {}
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("camsim ended ({status}) while it should still be loading the FIFO:\n{seen}");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = child.try_wait().expect("wait") {
        let rest = reader.join().unwrap_or_default();
        panic!("camsim ended ({status}) while it should still be loading the FIFO:\n{seen}{rest}");
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill");
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if t0.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("output");
    let log = format!(
        "{}{}{}",
        String::from_utf8_lossy(&output.stdout),
        seen,
        reader.join().unwrap_or_default()
    );
    let status = status.unwrap_or_else(|| panic!("camsim still running 5 s after SIGTERM: {log}"));
    assert!(
        status.success(),
        "a stop during start-up is a clean exit: {status:?} {log}"
    );
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn an_unservable_source_fails_start_up_naming_the_file_and_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video\n".repeat(100)).expect("write");
    let audio = dir.path().join("audio.m4a");
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=2"])
            .arg(&audio),
        Duration::from_secs(30),
    );
    assert!(ok, "ffmpeg: {err}");
    for (file, reason) in [(text, "not a media file"), (audio, "no video stream")] {
        let path = file.clone();
        let err = bounded(Duration::from_secs(30), "camsim start-up", move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            let opts = camsim::Options {
                cameras: 1,
                source: path,
                sub_source: None,
                rtsp_listen: "127.0.0.1:0".parse().expect("addr"),
                control_listen: "127.0.0.1:0".parse().expect("addr"),
                udp_port: 0,
                auth: None,
                transports: TransportPolicy::Both,
                scenes: Default::default(),
            };
            rt.block_on(camsim::start(
                opts,
                tokio_util::sync::CancellationToken::new(),
            ))
            .err()
            .map(|e| e.to_string())
        })
        .unwrap_or_else(|| panic!("{} was served", file.display()));
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(reason), "{err}");
    }
}
