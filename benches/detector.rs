//! Detector bench (issue 20): today's fall-tuned YOLOv8s (`models/person_fall.toml`, 640×640 stretched)
//! and YOLOX-nano (`models/yolox_nano.toml`, the frame's own size) on the same frames of the sample
//! video's 384×288 sub-stream, through the service's inference stage (`ModelRunner::run`: preprocessing,
//! `Session::run`, decoding, NMS).
//!
//! Per model: CPU milliseconds per frame from `getrusage` (the whole process, user + system, so ONNX
//! Runtime's own threads count) at batch 1 and at the model's `max_batch`, at one intra-op thread count
//! for both (default 1); then recall by person height and precision on `assets/persons-dev` (people
//! matched at IoU ≥ 0.5), each photograph shrunk into a 384×288 frame and at its full size.
//!
//! `cargo bench --bench detector -- [--intra-threads N] [--rounds N]`; writes
//! `target/bench/detector.json` and prints a table.

#[path = "support/frames.rs"]
mod frames;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use frames::{Res, decode};
use qianliyan::decode::DecodedFrame;
use qianliyan::infer::detect::{LabelledImage, detect_images, evaluate};
use qianliyan::infer::{ModelManifest, ModelRunner, OrtRuntime, SessionConfig};
use serde_json::{Value, json};

/// Process CPU time so far (user + system), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU and wall milliseconds per frame of `rounds` runs over `frames` in batches of `batch`.
fn measure(
    runner: &mut ModelRunner,
    frames: &[Arc<DecodedFrame>],
    batch: usize,
    rounds: usize,
) -> Res<Value> {
    // Warm this batch size (the first run at a new shape allocates).
    for chunk in frames.chunks(batch) {
        runner.run(chunk)?;
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut n = 0usize;
    let mut pre_ms = 0.0;
    for _ in 0..rounds {
        for chunk in frames.chunks(batch) {
            runner.run(chunk)?;
            pre_ms += runner.last_timing().preprocess_ms;
            n += chunk.len();
        }
    }
    let cpu_ms = (cpu_seconds() - cpu0) * 1000.0 / n as f64;
    let wall_ms = wall0.elapsed().as_secs_f64() * 1000.0 / n as f64;
    Ok(json!({
        "batch": batch,
        "frames": n,
        "cpu_ms_per_frame": cpu_ms,
        "wall_ms_per_frame": wall_ms,
        "preprocess_wall_ms_per_frame": pre_ms / n as f64,
    }))
}

fn main() -> Res<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut intra = 1usize;
    let mut rounds = 0usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--intra-threads" => intra = it.next().ok_or("--intra-threads N")?.parse()?,
            "--rounds" => rounds = it.next().ok_or("--rounds N")?.parse()?,
            _ => {} // cargo bench passes --bench
        }
    }
    let assets = root.join("assets");
    let rt = OrtRuntime::init(&assets.join("onnxruntime/libonnxruntime.so"))?;
    let frames = decode(&assets.join("video/vtest_sub.mp4"), 8)?;
    let labels: Vec<LabelledImage> =
        serde_json::from_value(
            serde_json::from_slice::<Value>(&std::fs::read(
                assets.join("persons-dev/labels.json"),
            )?)?["images"]
                .take(),
        )?;
    let mut images: Vec<PathBuf> = std::fs::read_dir(assets.join("persons-dev/images"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    images.sort();

    let mut models = Vec::new();
    for (name, default_rounds) in [("person_fall", 2usize), ("yolox_nano", 30)] {
        let manifest = Arc::new(ModelManifest::load(
            &root.join(format!("models/{name}.toml")),
            &assets,
        )?);
        let cfg = SessionConfig {
            intra_threads: intra,
            ..SessionConfig::default()
        };
        let mut runner = ModelRunner::new(rt, manifest.clone(), &cfg)?;
        let rounds = if rounds > 0 { rounds } else { default_rounds };
        let batch1 = measure(&mut runner, &frames, 1, rounds)?;
        let batched = measure(&mut runner, &frames, manifest.max_batch, rounds)?;
        let accuracy = |substream: Option<(u32, u32)>, runner: &mut ModelRunner| -> Res<Value> {
            let found = detect_images(runner, &images, substream)?;
            let e = evaluate(&labels, &found);
            Ok(json!({
                "recall_by_height": e.by_height.iter().map(|(k, (f, a))| {
                    (k.to_string(), json!({"found": f, "labelled": a, "recall": f64::from(*f) / f64::from((*a).max(1))}))
                }).collect::<BTreeMap<_, _>>(),
                "recall_over_96px": e.recall_from(96.0),
                "precision": e.precision(),
                "person_boxes": e.true_positives + e.false_positives,
                "images_with_nobody_where_a_person_was_found": e.false_on_empty,
            }))
        };
        let at_substream = accuracy(Some((384, 288)), &mut runner)?;
        let at_full_size = accuracy(None, &mut runner)?;
        models.push(json!({
            "model": name,
            "file": manifest.file.display().to_string(),
            "input": if manifest.input.native.is_some() {
                json!(format!("native, long side ≤ {}", manifest.input.width))
            } else {
                json!([manifest.input.width, manifest.input.height])
            },
            "score_threshold": manifest.detector().map(|d| d.score_threshold),
            "batch_1": batch1,
            "batch_max": batched,
            "persons_dev_384x288": at_substream,
            "persons_dev_full_size": at_full_size,
        }));
    }
    let cpu = |m: &Value, b: &str| m[b]["cpu_ms_per_frame"].as_f64().unwrap_or(f64::NAN);
    let ratio = |b: &str| cpu(&models[0], b) / cpu(&models[1], b);
    let report = json!({
        "bench": "detector",
        "frames": "assets/video/vtest_sub.mp4, 8 frames spread over the clip, 384x288",
        "intra_op_threads": intra,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "models": models,
        "cpu_ratio_person_fall_over_yolox_nano": {"batch_1": ratio("batch_1"), "batch_max": ratio("batch_max")},
        // A fall check (infer/fall.rs) is one run of the fall model on the whole frame, at batch 1.
        "fall_check_cpu_ms": cpu(&models[0], "batch_1"),
        "when": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs(),
    });
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("detector.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;

    println!(
        "detector bench: 384x288 sub-stream frames, {intra} intra-op thread(s); CPU from getrusage"
    );
    println!(
        "{:<12} {:>12} {:>12} {:>14} {:>10} {:>14} {:>10}",
        "model",
        "cpu ms b=1",
        "cpu ms b=max",
        "384x288 >96px",
        "precision",
        "full >96px",
        "precision"
    );
    for m in report["models"].as_array().into_iter().flatten() {
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<12} {:>12.1} {:>12.1} {:>14.2} {:>10.2} {:>14.2} {:>10.2}",
            m["model"].as_str().unwrap_or("?"),
            cpu(m, "batch_1"),
            cpu(m, "batch_max"),
            f(&m["persons_dev_384x288"]["recall_over_96px"]),
            f(&m["persons_dev_384x288"]["precision"]),
            f(&m["persons_dev_full_size"]["recall_over_96px"]),
            f(&m["persons_dev_full_size"]["precision"]),
        );
    }
    println!(
        "CPU per frame, person_fall / yolox_nano: {:.1}x at batch 1, {:.1}x at max_batch",
        ratio("batch_1"),
        ratio("batch_max")
    );
    println!(
        "a fall check (the fall model once on the frame, only when a person lies): {:.1} ms of CPU",
        cpu(&models[0], "batch_1")
    );
    println!("wrote {}", path.display());
    Ok(())
}
