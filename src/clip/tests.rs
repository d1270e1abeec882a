//! The clip stage on real H.264 (encoded here by x264), written by the real muxer and read back
//! by ffprobe.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::Digest;

use super::*;
use crate::decode::{AccessUnit, VideoCodec};

/// `n` frames of 320×240 at 10 fps in `codec`, a keyframe every 20, as ingest delivers them
/// (Annex B, parameter sets in front of each keyframe), arriving at their own times after `t0`.
fn units(codec: VideoCodec, n: u32, t0: SystemTime) -> Vec<Unit> {
    let enc = match codec {
        VideoCodec::H264 => {
            "x264enc speed-preset=ultrafast key-int-max=20 bframes=0 ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au"
        }
        VideoCodec::H265 => {
            "x265enc speed-preset=ultrafast key-int-max=20 option-string=bframes=0 \
             ! h265parse config-interval=-1 ! video/x-h265,stream-format=byte-stream,alignment=au"
        }
    };
    let aus = crate::decode::tests::collect(&format!(
        "videotestsrc num-buffers={n} pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! {enc} ! appsink name=sink sync=false"
    ));
    // The encoder's first time need not be 0 (x264 starts later): arrivals count from it.
    let first = aus.first().map_or(0, |au| au.pts_90k);
    let out: Vec<Unit> = aus
        .into_iter()
        .map(|au| Unit {
            arrival: t0 + Duration::from_micros((au.pts_90k - first) as u64 * 100 / 9),
            data: au.data,
            keyframe: au.keyframe,
            pts_90k: au.pts_90k,
        })
        .collect();
    assert_eq!(out.len(), n as usize);
    out
}

/// (codec, duration s, frames, first frame a keyframe) of an MP4, by ffprobe.
fn probe(path: &Path) -> (String, f64, u64, bool) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (scripts/setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    (
        v["streams"][0]["codec_name"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        v["streams"][0]["nb_read_frames"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
        String::from_utf8_lossy(&key.stdout).trim().starts_with('1'),
    )
}

#[test]
fn units_as_received_become_a_playable_mp4_with_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let units = units(VideoCodec::H264, 60, t0);
    let path = dir.path().join("a.mp4");
    let w = mux::write_mp4(VideoCodec::H264, &units, &path).unwrap();
    let (codec, secs, frames, key) = probe(&path);
    assert_eq!((codec.as_str(), frames, key), ("h264", 60, true));
    assert!((secs - 6.0).abs() < 0.25, "{secs} s");
    assert!(
        (w.duration.as_secs_f64() - 6.0).abs() < 0.05,
        "{:?}",
        w.duration
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(w.bytes, bytes.len() as u64);
    assert_eq!(w.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    assert!(!dir.path().join("a.mp4.part").exists());
    // A clip must start on a keyframe.
    let e = mux::write_mp4(VideoCodec::H264, &units[1..], &dir.path().join("b.mp4")).unwrap_err();
    assert!(e.contains("keyframe"), "{e}");
}

/// H.265 cameras get clips too: the same writer with `h265parse`.
#[test]
fn h265_units_become_a_playable_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let units = units(VideoCodec::H265, 40, t0);
    assert!(units[0].keyframe);
    let path = dir.path().join("h.mp4");
    let w = mux::write_mp4(VideoCodec::H265, &units, &path).unwrap();
    let (codec, secs, frames, key) = probe(&path);
    assert_eq!((codec.as_str(), frames, key), ("hevc", 40, true));
    assert!((secs - 4.0).abs() < 0.25, "{secs} s");
    assert!(
        (w.duration.as_secs_f64() - 4.0).abs() < 0.05,
        "{:?}",
        w.duration
    );
}

/// The clip states the stage hands over (the alert store in the service).
#[derive(Default)]
struct Sink {
    states: Mutex<Vec<AlertClip>>,
}

impl ClipSink for Sink {
    fn clip_finished(&self, clip: &AlertClip) -> Result<usize, String> {
        lock(&self.states).push(clip.clone());
        Ok(1)
    }
    fn expire_clips(&self, _: i64, _: Duration, _: u64) -> Result<(u64, u64), String> {
        Ok((0, 0))
    }
}

fn frame(camera: &Arc<str>, u: &Unit) -> EncodedFrame {
    EncodedFrame {
        camera: camera.clone(),
        codec: VideoCodec::H264,
        unit: AccessUnit {
            data: u.data.clone(),
            keyframe: u.keyframe,
            pts_90k: u.pts_90k,
            arrival: u.arrival,
            loss: 0,
        },
        width: 320,
        height: 240,
    }
}

#[test]
fn an_alert_gets_pre_and_post_seconds_and_a_later_alert_joins_the_same_clip() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Sink::default());
    let config = ClipConfig {
        pre: Duration::from_secs(4),
        post: Duration::from_secs(3),
        latency_allowance: Duration::from_secs(2),
        cameras: Buffered::Rules,
        ..ClipConfig::default()
    };
    let clock = Arc::new(crate::clock::ManualClock::default());
    let (r, workers) = Recorder::start(config, dir.path(), sink.clone(), clock).unwrap();
    r.set_cameras_with_rules(["c1".to_owned()]);
    let (c1, c2): (Arc<str>, Arc<str>) = ("c1".into(), "c2".into());
    let t0 = SystemTime::now();
    let at = |i: usize| t0 + Duration::from_millis(i as u64 * 100);
    let mut alert = None;
    for (i, u) in units(VideoCodec::H264, 200, t0).iter().enumerate() {
        r.tap(&frame(&c1, u));
        r.tap(&frame(&c2, u));
        // At 10.5 s, an alert on the frame of 9.0 s; a second one at 11 s on the frame of 10.5 s.
        if i == 105 {
            assert_eq!(r.begin("c2", "B", at(90)), None, "c2 has no rules: no clip");
            alert = r.begin("c1", "A", at(90));
        }
        if i == 110 {
            let joined = r.begin("c1", "A2", at(105)).unwrap();
            assert_eq!(joined.name, "A.mp4");
        }
    }
    let alert = alert.unwrap();
    assert_eq!(
        (alert.name.as_str(), alert.state),
        ("A.mp4", ClipState::Recording)
    );
    // From the keyframe at or before 9.0 − 4 = 5.0 s: the one at 4.0 s.
    assert_eq!(alert.start_ms, crate::time::unix_ms(at(40)));
    assert_eq!(
        r.buffered_cameras(),
        1,
        "only the camera with rules keeps a buffer"
    );
    assert!(r.stats.held.load(Ordering::Relaxed) > 0);
    // c1 loses its rules: its buffer goes.
    r.set_cameras_with_rules(Vec::new());
    assert_eq!(r.buffered_cameras(), 0);
    assert_eq!(r.stats.held.load(Ordering::Relaxed), 0);
    workers.stop();
    let states = lock(&sink.states).clone();
    assert_eq!(states.len(), 1, "{states:?}");
    let s = &states[0];
    assert_eq!(s.state, ClipState::Ready, "{s:?}");
    // 4.0 s → 13.5 s (the second alert's 10.5 + 3): 9.5 s, whole.
    let (codec, secs, _, key) = probe(&dir.path().join("A.mp4"));
    assert_eq!((codec.as_str(), key), ("h264", true));
    assert!((secs - 9.5).abs() < 0.3, "{secs} s");
    assert!((s.duration_ms as f64 / 1000.0 - 9.5).abs() < 0.3, "{s:?}");
    assert_eq!(s.sha256.as_deref().map(str::len), Some(64));
    assert_eq!(r.stats.started.load(Ordering::Relaxed), 1);
    assert_eq!(r.stats.joined.load(Ordering::Relaxed), 1);
}

#[test]
fn the_memory_budget_leaves_each_camera_its_current_gop_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = ClipConfig {
        cameras: Buffered::All,
        memory_budget: 1,
        ..ClipConfig::default()
    };
    let clock = Arc::new(crate::clock::ManualClock::default());
    let (r, workers) =
        Recorder::start(config, dir.path(), Arc::new(Sink::default()), clock).unwrap();
    let c: Arc<str> = "c".into();
    let t0 = SystemTime::now();
    for u in &units(VideoCodec::H264, 100, t0) {
        r.tap(&frame(&c, u));
    }
    assert!(r.stats.pressure.load(Ordering::Relaxed) > 0);
    let ring = read(&r.rings).get(&c).cloned().unwrap();
    assert!(lock(&ring).len() <= 20, "{} units kept", lock(&ring).len());
    assert_eq!(r.stats.held.load(Ordering::Relaxed), lock(&ring).bytes());
    workers.stop();
}
