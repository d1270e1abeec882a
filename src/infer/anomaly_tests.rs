//! Tests of the project's own scene-anomaly model (models/scene_anomaly.toml, made by scripts/setup with
//! scripts/model_tools/train_anomaly.py) through the real [`ModelRunner`]: ONNX Runtime library, OpenCV
//! preprocessing and real frames of the sample video, decoded by GStreamer as in `tests.rs`.
//!
//! The model is fitted on the first 80 % of vtest_sub.mp4; its validation report
//! (assets/models/scene_anomaly_pca.validation.json) holds the score distributions train_anomaly.py got
//! through onnxruntime in Python. These tests check the same numbers come out of the Rust stage, so the
//! script's preprocessing and the service's are the same.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::manifest::AnomalySpec;
use super::*;
use crate::decode::PixelFormat;

/// Grey of camsim's cover board (luma 70, limited range) after videoconvert to BGR: 1.164 × (70 − 16).
const COVER_GREY: u8 = 63;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn asset(rel: &str) -> PathBuf {
    let p = repo().join("assets").join(rel);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

fn manifest() -> Arc<ModelManifest> {
    Arc::new(
        ModelManifest::load(
            &repo().join("models/scene_anomaly.toml"),
            &repo().join("assets"),
        )
        .unwrap(),
    )
}

fn spec(m: &ModelManifest) -> &AnomalySpec {
    match &m.kind {
        ModelKind::Anomaly(a) => a,
        ModelKind::Detector(_) => panic!("scene_anomaly.toml must be kind = \"anomaly\""),
    }
}

/// One CPU runner shared by the tests of this module (the model is tiny; sharing keeps it one session).
fn runner() -> std::sync::MutexGuard<'static, ModelRunner> {
    static RUNNER: OnceLock<Mutex<ModelRunner>> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            let rt = OrtRuntime::init(&asset("onnxruntime/libonnxruntime.so")).unwrap();
            let cfg = SessionConfig {
                intra_threads: 1,
                ..SessionConfig::default()
            };
            Mutex::new(ModelRunner::new(rt, manifest(), &cfg).unwrap())
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Decodes `video` (under assets/) to packed BGR with GStreamer and calls `each(index, frame)` for every
/// frame until it returns `false` or the video ends. Returns the number of frames seen.
fn for_each_frame(video: &str, mut each: impl FnMut(usize, DecodedFrame) -> bool) -> usize {
    gst::init().unwrap();
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=BGR \
         ! appsink name=sink sync=false max-buffers=4",
        asset(video).display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut i = 0;
    while let Ok(sample) = sink.pull_sample() {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let buf = sample.buffer().unwrap();
        let map = buf.map_readable().unwrap();
        let stride = info.stride()[0] as usize;
        let h = info.height() as usize;
        let frame = DecodedFrame {
            camera: format!("{video}#{i}").into(),
            pts_90k: i as i64 * 9000,
            arrival: SystemTime::now(),
            decoded_at: SystemTime::now(),
            width: info.width(),
            height: info.height(),
            stride,
            format: PixelFormat::Bgr,
            data: map[..stride * h].to_vec(),
        };
        i += 1;
        if !each(i - 1, frame) {
            break;
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    i
}

/// Frames of vtest_sub.mp4 (384×288) by index.
fn sub_frames(indices: &[usize]) -> Vec<Arc<DecodedFrame>> {
    let last = *indices.iter().max().unwrap();
    let mut out = Vec::new();
    for_each_frame("video/vtest_sub.mp4", |i, f| {
        if indices.contains(&i) {
            out.push(Arc::new(f));
        }
        i < last
    });
    assert_eq!(out.len(), indices.len(), "vtest_sub.mp4 ended early");
    out
}

/// Scores of every `step`-th frame of `video`, run in batches of max_batch; returns (index, score).
fn score_video(video: &str, step: usize) -> Vec<(usize, f32)> {
    let mut scores = Vec::new();
    let mut pending: Vec<(usize, Arc<DecodedFrame>)> = Vec::new();
    let mut flush = |pending: &mut Vec<(usize, Arc<DecodedFrame>)>| {
        let frames: Vec<_> = pending.iter().map(|(_, f)| f.clone()).collect();
        let out = runner().run(&frames).unwrap();
        for ((i, _), d) in pending.drain(..).zip(out) {
            scores.push((i, d.anomaly.expect("an anomaly model gives a score")));
        }
    };
    let max_batch = manifest().max_batch;
    for_each_frame(video, |i, f| {
        if i % step == 0 {
            pending.push((i, Arc::new(f)));
            if pending.len() == max_batch {
                flush(&mut pending);
            }
        }
        true
    });
    flush(&mut pending);
    scores
}

/// camsim's cover fault: a flat grey board over x 5..95 %, y 10..95 % (see camsim::media::paint).
fn covered(f: &DecodedFrame) -> Arc<DecodedFrame> {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut out = f.clone();
    out.camera = format!("{} covered", f.camera).into();
    for y in h / 10..h - h / 20 {
        let row = y * out.stride;
        out.data[row + 3 * (w / 20)..row + 3 * (w - w / 20)].fill(COVER_GREY);
    }
    Arc::new(out)
}

/// camsim's black fault (luma 16 is RGB 0).
fn black(f: &DecodedFrame) -> Arc<DecodedFrame> {
    let mut out = f.clone();
    out.camera = format!("{} black", f.camera).into();
    out.data.fill(0);
    Arc::new(out)
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    // numpy's default (linear) percentile.
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let t = (pos - lo as f64) as f32;
    sorted[lo] * (1.0 - t) + sorted[hi] * t
}

#[test]
fn manifest_and_model_agree() {
    let m = manifest();
    assert_eq!(&*m.name, "scene_anomaly");
    assert_eq!(m.max_batch, 8);
    assert_eq!((m.input.width, m.input.height), (64, 48));
    let a = spec(&m);
    assert_eq!(a.score_output, "pred_score");
    assert_eq!(a.map_output.as_deref(), Some("anomaly_map"));
    assert!(a.threshold > 0.5 && a.threshold < 1.0, "{}", a.threshold);
    m.verify_file().unwrap();
    // Loading checks the real input/output shapes against the manifest.
    let r = runner();
    assert_eq!(r.provider_in_use(), "cpu");
    assert!(
        m.file.metadata().unwrap().len() < 1_000_000,
        "model over 1 MB"
    );
}

/// Every frame of the sub stream (what analysis reads, and what the model was fitted on) stays under the
/// threshold, the held-out last 20 % included; and the Rust stage reproduces the Python validation.
#[test]
fn normal_footage_scores_below_the_threshold() {
    let threshold = spec(&manifest()).threshold;
    let scores = score_video("video/vtest_sub.mp4", 1);
    assert_eq!(scores.len(), 795);
    let worst = scores
        .iter()
        .copied()
        .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
    assert!(
        worst.1 < threshold,
        "normal frame {} scores {} ≥ threshold {threshold}",
        worst.0,
        worst.1
    );

    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(asset("models/scene_anomaly_pca.validation.json")).unwrap(),
    )
    .unwrap();
    let n_train = report["frames"]["train"].as_u64().unwrap() as usize;
    for (part, range) in [("train", 0..n_train), ("held_out", n_train..scores.len())] {
        let mut s: Vec<f32> = scores[range].iter().map(|(_, s)| *s).collect();
        s.sort_by(f32::total_cmp);
        let want = &report["normal"][part];
        for (stat, got) in [
            ("p50", quantile(&s, 0.5)),
            ("p99", quantile(&s, 0.99)),
            ("max", *s.last().unwrap()),
        ] {
            let want = want[stat].as_f64().unwrap() as f32;
            eprintln!("{part} {stat}: Rust stage {got:.4}, train_anomaly.py {want:.3}");
            assert!(
                (got - want).abs() <= 0.002,
                "{part} {stat}: Rust stage {got:.4}, train_anomaly.py {want:.3}: the preprocessing differs"
            );
        }
    }
}

/// Analysis can be configured to read the main stream (768×576): a different resize of the same scene.
#[test]
fn main_stream_footage_scores_below_the_threshold() {
    let threshold = spec(&manifest()).threshold;
    let scores = score_video("video/vtest_main.mp4", 5);
    assert_eq!(scores.len(), 159);
    let max = scores.iter().map(|(_, s)| *s).fold(f32::MIN, f32::max);
    eprintln!(
        "main stream: max score {max:.3} over {} frames",
        scores.len()
    );
    for (i, s) in scores {
        assert!(
            s < threshold,
            "main-stream frame {i} scores {s} ≥ {threshold}"
        );
    }
}

#[test]
fn black_and_covered_frames_score_above_the_threshold() {
    let threshold = spec(&manifest()).threshold;
    // Frames from the fitted part and the held-out part.
    let frames = sub_frames(&[50, 300, 650, 780]);
    let mut faults = vec![black(&frames[0])];
    faults.extend(frames.iter().map(|f| covered(f)));
    let out = runner().run(&faults).unwrap();
    for (f, d) in faults.iter().zip(&out) {
        let s = d.anomaly.unwrap();
        eprintln!("{}: {s:.3}", f.camera);
        // Clearly abnormal: over 1.0 (training p99.5 is 0.5), not just over the threshold.
        assert!(
            s > threshold && s > 1.0,
            "{}: {s} (threshold {threshold})",
            f.camera
        );
        assert_eq!(d.camera, f.camera);
        assert!(d.objects.is_empty());
    }
    // The same frames uncovered stay normal.
    for (f, d) in frames.iter().zip(runner().run(&frames).unwrap()) {
        assert!(
            d.anomaly.unwrap() < threshold,
            "{}: {:?}",
            f.camera,
            d.anomaly
        );
    }
}

#[test]
fn batch_of_four_equals_four_singles() {
    let frames = sub_frames(&[100, 700]);
    let batch = vec![
        frames[0].clone(),
        covered(&frames[1]),
        black(&frames[0]),
        frames[1].clone(),
    ];
    let mut r = runner();
    let batched = r.run(&batch).unwrap();
    assert!(batched.iter().all(|d| d.batch_size == 4));
    let mut distinct: Vec<f32> = batched.iter().map(|d| d.anomaly.unwrap()).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four different frames, four scores");
    for (f, b) in batch.iter().zip(&batched) {
        let single = r.run(std::slice::from_ref(f)).unwrap().remove(0);
        assert_eq!(single.batch_size, 1);
        let (s, b) = (single.anomaly.unwrap(), b.anomaly.unwrap());
        assert!(
            (s - b).abs() <= 1e-5 * s.max(1.0),
            "{}: single {s}, in batch {b}",
            f.camera
        );
    }
}
