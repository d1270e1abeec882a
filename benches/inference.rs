//! Inference bench: frames per second and milliseconds per frame at batch 1, 2, 4, 8 through the
//! project's stage (`ModelRunner::run`: OpenCV preprocess → `Session::run` → YOLOv8 decode + NMS), a bare
//! `Session::run` loop on the same session and input in the same run (stage / bare, from the median
//! iteration; means are kept too), and the preprocessing and postprocessing cost per frame.
//!
//! `cargo bench --bench inference -- [--iters N] [--provider cpu|cuda|tensorrt] [--ort-lib PATH]
//! [--intra-threads N] [--model MANIFEST] [--source VIDEO] [--batches 1,8,64,256]`; writes
//! `target/bench/inference.json` and prints a table. Real assets from `scripts/setup`: by default the
//! person/fall model and frames of `assets/video/vtest_main.mp4` (768×576). On a GPU node, e.g.
//! `--model models/yolox_nano.toml --source assets/video/vtest_sub.mp4 --provider cuda
//! --ort-lib PATH/libonnxruntime.so --batches 1,8,64,256` gives the detector's frames/s by batch
//! through the service's own inference stage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use qianliyan::infer::{ExecutionProvider, ModelManifest, ModelRunner, OrtRuntime, SessionConfig};
use serde_json::json;

#[path = "support/frames.rs"]
mod frames;
use frames::{Res, decode};

const BATCHES: [usize; 5] = [1, 2, 4, 8, 16];

fn main() -> Res<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut iters = 0usize; // 0 = about 24 frames per batch size
    let mut provider = ExecutionProvider::Cpu;
    let mut ort_lib = root.join("assets/onnxruntime/libonnxruntime.so");
    let mut intra = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut model = root.join("models/person_fall.toml");
    let mut source = root.join("assets/video/vtest_main.mp4");
    let mut batches: Vec<usize> = BATCHES.to_vec();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iters" => iters = it.next().ok_or("--iters N")?.parse()?,
            "--provider" => {
                let p = it.next().ok_or("--provider cpu|cuda|tensorrt")?;
                provider = ExecutionProvider::parse(p).ok_or("--provider cpu|cuda|tensorrt")?;
            }
            "--ort-lib" => ort_lib = PathBuf::from(it.next().ok_or("--ort-lib PATH")?),
            "--intra-threads" => intra = it.next().ok_or("--intra-threads N")?.parse()?,
            "--model" => model = PathBuf::from(it.next().ok_or("--model MANIFEST")?),
            "--source" => source = PathBuf::from(it.next().ok_or("--source VIDEO")?),
            "--batches" => {
                batches = it
                    .next()
                    .ok_or("--batches 1,8,64")?
                    .split(',')
                    .map(|b| b.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
                if batches.iter().any(|b| !(1..=1024).contains(b)) {
                    return Err("--batches: each 1..=1024".into());
                }
            }
            // cargo bench passes --bench
            _ => {}
        }
    }

    let rt = OrtRuntime::init(&ort_lib)?;
    let mut manifest = ModelManifest::load(&model, &root.join("assets"))?;
    // The shipped manifests batch at most 8 (a CPU gains little from more); the models' batch
    // dimension is dynamic, so the bench measures larger batches too, as a GPU deployment configures.
    manifest.max_batch = batches.iter().copied().max().unwrap_or(16);
    let manifest = Arc::new(manifest);
    let cfg = SessionConfig {
        provider,
        intra_threads: intra,
        ..SessionConfig::default()
    };
    let load = Instant::now();
    let mut runner = ModelRunner::new(rt, manifest.clone(), &cfg)?;
    let load_ms = load.elapsed().as_secs_f64() * 1000.0;
    let frames = decode(&source, batches.iter().copied().max().unwrap_or(8))?;
    let (fw, fh) = (frames[0].width, frames[0].height);

    // Preprocessing alone: resize + normalise into the reused buffer.
    let pre_iters = 40;
    let pre = runner.preprocessor_mut();
    let t = Instant::now();
    for i in 0..pre_iters {
        if pre.len() == pre.capacity() {
            pre.clear();
        }
        pre.push(&frames[i % frames.len()])?;
    }
    let preprocess_ms = t.elapsed().as_secs_f64() * 1000.0 / pre_iters as f64;

    let mut rows = Vec::new();
    let mut post_ms = Vec::new();
    for &b in &batches {
        let batch = &frames[..b];
        let n = if iters > 0 { iters } else { (24 / b).max(3) };

        // Warm-up (first run at a new shape allocates), and the input for the bare loop.
        runner.run(batch)?;
        let input: Vec<f32> = runner.preprocessor_mut().input().to_vec();
        let (spec_w, spec_h) = runner.preprocessor_mut().input_size();

        // Interleave stage and bare runs so drift (thermal, other load on the machine) hits both alike;
        // medians keep one disturbed iteration from deciding the ratio.
        let mut stage_s = Vec::with_capacity(n);
        let mut bare_s = Vec::with_capacity(n);
        let mut infer_ms = 0.0;
        let mut pre_ms = 0.0;
        let mut post = 0.0;
        for _ in 0..n {
            let t = Instant::now();
            let found = runner.run(batch)?;
            stage_s.push(t.elapsed().as_secs_f64());
            assert_eq!(found.len(), b);
            let timing = runner.last_timing();
            infer_ms += timing.infer_ms;
            pre_ms += timing.preprocess_ms;
            post += timing.postprocess_ms;

            let session = runner.session_mut();
            let t = Instant::now();
            let out = session.run(&input, b, (spec_w, spec_h))?;
            drop(out);
            bare_s.push(t.elapsed().as_secs_f64());
        }
        let frames_run = (n * b) as f64;
        let stage_fps = b as f64 / median(&mut stage_s);
        let bare_fps = b as f64 / median(&mut bare_s);
        let stage_mean_fps = frames_run / stage_s.iter().sum::<f64>();
        let bare_mean_fps = frames_run / bare_s.iter().sum::<f64>();
        post_ms.push(post / frames_run);
        rows.push(json!({
            "batch": b,
            "iterations": n,
            "stage_fps": stage_fps,
            "stage_ms_per_frame": 1000.0 / stage_fps,
            "bare_fps": bare_fps,
            "bare_ms_per_frame": 1000.0 / bare_fps,
            "stage_over_bare": stage_fps / bare_fps,
            "mean": {
                "stage_fps": stage_mean_fps,
                "bare_fps": bare_mean_fps,
                "stage_over_bare": stage_mean_fps / bare_mean_fps,
            },
            "stage_breakdown_ms_per_frame": {
                "preprocess": pre_ms / frames_run,
                "session_run": infer_ms / frames_run,
                "postprocess": post / frames_run,
            },
        }));
    }
    let postprocess_ms = post_ms.iter().sum::<f64>() / post_ms.len() as f64;

    let report = json!({
        "bench": "inference",
        "model": &*manifest.name,
        "model_file": manifest.file.display().to_string(),
        "input": manifest.input.analysed_size(fw, fh),
        "frame_size": [fw, fh],
        "provider_requested": provider.as_str(),
        "provider_in_use": runner.provider_in_use(),
        "ort_library": rt.library().display().to_string(),
        "intra_op_threads": intra,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "session_load_ms": load_ms,
        "preprocess_ms_per_frame": preprocess_ms,
        "postprocess_ms_per_frame": postprocess_ms,
        "batches": rows,
        "when": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs(),
    });
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("inference.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;

    println!(
        "inference bench: {} on {} ({} intra-op threads), frames {fw}x{fh} -> {}x{}",
        manifest.name,
        runner.provider_in_use(),
        intra,
        manifest.input.analysed_size(fw, fh).0,
        manifest.input.analysed_size(fw, fh).1
    );
    println!("preprocess {preprocess_ms:.2} ms/frame, postprocess {postprocess_ms:.3} ms/frame");
    println!(
        "{:>5} {:>10} {:>12} {:>10} {:>12} {:>11}",
        "batch", "stage fps", "stage ms/fr", "bare fps", "bare ms/fr", "stage/bare"
    );
    for r in report["batches"].as_array().into_iter().flatten() {
        println!(
            "{:>5} {:>10.2} {:>12.1} {:>10.2} {:>12.1} {:>11.3}",
            r["batch"],
            r["stage_fps"].as_f64().unwrap_or(0.0),
            r["stage_ms_per_frame"].as_f64().unwrap_or(0.0),
            r["bare_fps"].as_f64().unwrap_or(0.0),
            r["bare_ms_per_frame"].as_f64().unwrap_or(0.0),
            r["stage_over_bare"].as_f64().unwrap_or(0.0),
        );
    }
    println!("wrote {}", path.display());
    Ok(())
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}
