//! Decode-pool bench: keyframes per second and CPU per keyframe through `qianliyan::decode`, threads per
//! pipeline, latency at a low rate, the cost of cameras of different sizes sharing a pipeline, and two
//! design choices measured on bare pipelines from the same template (how the appsink is drained, and
//! `videoconvertscale` against `videoconvert ! videoscale`).
//!
//! `cargo bench --bench decode_pool -- [--frames 3000]`; writes `target/bench/decode_pool.json`.
//! CPU is the whole process's utime + stime from `/proc/self/stat` over each run (10 ms ticks; runs last
//! seconds). Keyframes are cut from `assets/video/vtest_{sub,main}.mp4` (run `scripts/setup` first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use qianliyan::decode::{
    AccessUnit, DecodeConfig, DecodeEvent, DecoderPool, EncodedFrame, VideoCodec,
};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut frames = 3000usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--frames" => frames = it.next().ok_or("--frames N")?.parse()?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    gst::init()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sub = keyframes(&root.join("assets/video/vtest_sub.mp4"), (384, 288))?;
    let main = keyframes(&root.join("assets/video/vtest_main.mp4"), (768, 576))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "{} sub / {} main keyframes, {cores} cores",
        sub.len(),
        main.len()
    );

    let mut pool_runs = Vec::new();
    for workers in [1usize, 2] {
        let r = pool_run(workers, 64, &[&sub], frames, 0, false)?;
        eprintln!("pool sub 384x288 workers={workers}: {r}");
        pool_runs.push(r);
    }
    let mut size_runs = Vec::new();
    for (label, sets, max_width, hints) in [
        ("sub only 384x288", vec![&sub], 0, false),
        ("main only 768x576", vec![&main], 0, false),
        (
            "sub and main alternating, one pipeline",
            vec![&sub, &main],
            0,
            false,
        ),
        (
            "sub and main alternating, size hints: a pipeline per size",
            vec![&sub, &main],
            0,
            true,
        ),
        ("main scaled to 640x480", vec![&main], 640, false),
    ] {
        let mut r = pool_run(1, 64, &sets, frames / 2, max_width, hints)?;
        r["label"] = json!(label);
        eprintln!("pool {label}: {r}");
        size_runs.push(r);
    }
    let threads = thread_census(&sub)?;
    eprintln!("threads: {threads}");
    let latency = latency_run(&sub)?;
    eprintln!("latency: {latency}");

    let tpl = std::fs::read_to_string(root.join("pipelines/decode_h264_cpu.pipeline"))?;
    let mut raw = Vec::new();
    for (label, convert, drain) in [
        ("videoconvertscale, appsink callback", None, Drain::Callback),
        ("videoconvertscale, puller thread", None, Drain::PullThread),
        (
            "videoconvert ! videoscale, appsink callback",
            Some("videoconvert ! videoscale"),
            Drain::Callback,
        ),
    ] {
        for (set, name, max_width) in [
            (&sub, "sub", 0),
            (&main, "main", 0),
            (&main, "main->640", 640),
        ] {
            let desc = render(&tpl, max_width, convert);
            let mut r = raw_run(&desc, set, frames / 2, drain)?;
            r["label"] = json!(format!("{label}, {name}"));
            eprintln!("raw {label} {name}: {r}");
            raw.push(r);
        }
    }

    let report = json!({
        "bench": "decode_pool",
        "machine": { "cores": cores, "gstreamer": gst::version_string().to_string() },
        "frames_per_run": frames,
        "pool_keyframes_384x288": pool_runs,
        "pool_sizes_1_worker": size_runs,
        "threads": threads,
        "latency_low_rate": latency,
        "bare_pipeline_choices": raw,
    });
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("decode_pool.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// A keyframe with its parameter sets, as ingest delivers it.
struct Kf {
    data: Bytes,
    pts_90k: i64,
    /// Size hint as ingest would give it (from the SDP/SPS).
    size: (u32, u32),
}

fn keyframes(path: &Path, size: (u32, u32)) -> Res<Vec<Kf>> {
    let desc = format!(
        "filesrc location={} ! qtdemux ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no sink")?;
    pipeline.set_state(gst::State::Playing)?;
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buf = sample.buffer().ok_or("no buffer")?;
        if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            continue;
        }
        let map = buf.map_readable()?;
        out.push(Kf {
            data: Bytes::copy_from_slice(&map),
            pts_90k: buf.pts().map_or(0, |t| t.nseconds() as i64 * 9 / 100_000),
            size,
        });
    }
    pipeline.set_state(gst::State::Null)?;
    if out.is_empty() {
        return Err(format!("no keyframes in {}", path.display()).into());
    }
    Ok(out)
}

/// Process CPU seconds (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            names.push(comm.trim().to_owned());
        }
    }
    names.sort();
    names
}

fn frame(camera: &Arc<str>, kf: &Kf, hint: bool) -> EncodedFrame {
    let (width, height) = if hint { kf.size } else { (0, 0) };
    EncodedFrame {
        camera: camera.clone(),
        codec: VideoCodec::H264,
        unit: AccessUnit {
            data: kf.data.clone(),
            keyframe: true,
            pts_90k: kf.pts_90k,
            arrival: SystemTime::now(),
            loss: 0,
        },
        width,
        height,
    }
}

fn count_frames(rx: Receiver<DecodeEvent>) -> std::thread::JoinHandle<(usize, usize, Instant)> {
    std::thread::spawn(move || {
        let (mut frames, mut errors, mut last) = (0, 0, Instant::now());
        for ev in rx {
            match ev {
                DecodeEvent::Frame(_) => frames += 1,
                DecodeEvent::Error { .. } => errors += 1,
            }
            last = Instant::now();
        }
        (frames, errors, last)
    })
}

/// `n` keyframes from `cameras` cameras (frame i: camera i % cameras, set i % sets), all queued at once
/// (queue large enough that nothing drops), timed from the first submit to the last picture; `hints`
/// fills in the frames' width/height as ingest can.
fn pool_run(
    workers: usize,
    cameras: usize,
    sets: &[&Vec<Kf>],
    n: usize,
    max_width: u32,
    hints: bool,
) -> Res<Value> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let cfg = DecodeConfig {
        workers,
        queue: n,
        max_width,
        ..DecodeConfig::default()
    };
    let pool = DecoderPool::start(cfg, tx)?;
    let reader = count_frames(rx);
    let ids: Vec<Arc<str>> = (0..cameras)
        .map(|i| Arc::from(format!("cam-{i:04}")))
        .collect();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for i in 0..n {
        let set = sets[i % sets.len()];
        pool.submit(frame(
            &ids[i % cameras],
            &set[(i / sets.len()) % set.len()],
            hints,
        ));
    }
    let stats = pool.stats();
    pool.shutdown();
    let (frames, errors, last) = reader.join().map_err(|_| "reader panicked")?;
    let wall = last.duration_since(t0).as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    Ok(json!({
        "workers": workers,
        "cameras": cameras,
        "max_width": max_width,
        "keyframes": frames,
        "errors": errors,
        "dropped_queue_full": stats.dropped.queue_full,
        "wall_s": round(wall),
        "keyframes_per_s": round(frames as f64 / wall),
        "cpu_ms_per_keyframe": round(cpu * 1000.0 / frames.max(1) as f64),
        "cpu_cores_busy": round(cpu / wall),
    }))
}

/// Threads the process gains per pool worker, once the pipelines are running.
fn thread_census(sub: &[Kf]) -> Res<Value> {
    // GStreamer parks finished task threads in GLib's shared pool (named after their last task); let
    // them exit so the census sees only live ones.
    gst::glib::ThreadPool::set_max_unused_threads(Some(0));
    std::thread::sleep(Duration::from_millis(200));
    let before = thread_names();
    let mut per = Vec::new();
    for workers in [1usize, 2, 4] {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = DecoderPool::start(
            DecodeConfig {
                workers,
                ..DecodeConfig::default()
            },
            tx,
        )?;
        // Route one keyframe to every worker so every pipeline is really running.
        let mut seen = vec![false; workers];
        let mut i = 0;
        while seen.iter().any(|s| !s) {
            let cam: Arc<str> = Arc::from(format!("cam-{i}"));
            let w = pool.worker_for(&cam);
            if !seen[w] {
                seen[w] = true;
                pool.submit(frame(&cam, &sub[0], false));
                rx.recv_timeout(Duration::from_secs(30))?;
            }
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
        // The worker `decode-N`, and each pipeline's appsrc streaming task `src:src`.
        let during = thread_names();
        let workers_seen = during.iter().filter(|n| n.starts_with("decode-")).count();
        let streaming = during.iter().filter(|n| *n == "src:src").count();
        per.push(json!({
            "workers": workers,
            "worker_threads": workers_seen,
            "pipeline_streaming_threads": streaming,
            "threads_per_worker": round((workers_seen + streaming) as f64 / workers as f64),
            "process_threads": during.len(),
            "names": during,
        }));
        pool.shutdown();
    }
    Ok(json!({ "process_threads_before": before, "pools": per }))
}

/// One camera at 50 keyframes/s (a pool serving many cameras at 0.5–2 fps): submit → picture out.
fn latency_run(sub: &[Kf]) -> Res<Value> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(DecodeConfig::default(), tx)?;
    let cam: Arc<str> = Arc::from("cam");
    let mut lat = Vec::new();
    for kf in sub.iter().cycle().take(100) {
        pool.submit(frame(&cam, kf, false));
        if let DecodeEvent::Frame(f) = rx.recv_timeout(Duration::from_secs(30))? {
            lat.push(f.decoded_at.duration_since(f.arrival)?.as_secs_f64() * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pool.shutdown();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| round(lat[((lat.len() - 1) as f64 * p) as usize]);
    Ok(json!({ "frames": lat.len(), "ms_p50": pct(0.5), "ms_p90": pct(0.9), "ms_max": pct(1.0) }))
}

/// Renders the template as `src/decode/template.rs` does, optionally swapping the converter.
fn render(tpl: &str, max_width: u32, convert: Option<&str>) -> String {
    let caps = if max_width == 0 {
        "video/x-raw,format=BGR".to_owned()
    } else {
        format!(
            "video/x-raw,format=BGR,width=(int)[1,{max_width}],pixel-aspect-ratio=(fraction)1/1"
        )
    };
    let mut desc = tpl
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
        .replace("{max_bytes}", "4194304")
        .replace("{output_caps}", &caps);
    if let Some(c) = convert {
        desc = desc.replace("videoconvertscale", c);
    }
    desc
}

#[derive(Clone, Copy)]
enum Drain {
    /// `new_sample` callback on the streaming thread copies the picture out (what the pool does).
    Callback,
    /// A second thread per pipeline blocks in `pull_sample` and copies the picture out.
    PullThread,
}

/// One bare pipeline, at most 4 keyframes in flight (as a pool worker keeps it), `n` keyframes.
fn raw_run(desc: &str, kfs: &[Kf], n: usize, drain: Drain) -> Res<Value> {
    let pipeline = gst::parse::launch(desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no src")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no sink")?;
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    let copy = |sample: &gst::Sample| -> usize {
        sample
            .buffer()
            .and_then(|b| b.map_readable().ok().map(|m| m.to_vec().len()))
            .unwrap_or(0)
    };
    let puller = match drain {
        Drain::Callback => {
            let tx = done_tx.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let _ = tx.send(copy(&sample));
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
            None
        }
        Drain::PullThread => {
            let tx = done_tx.clone();
            let sink = sink.clone();
            Some(
                std::thread::Builder::new()
                    .name("decode-pull".into())
                    .spawn(move || {
                        while let Ok(sample) = sink.pull_sample() {
                            let _ = tx.send(copy(&sample));
                        }
                    })?,
            )
        }
    };
    drop(done_tx);
    pipeline.set_state(gst::State::Playing)?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let (mut pushed, mut got) = (0usize, 0usize);
    while got < n {
        while pushed < n && pushed - got < 4 {
            let mut buf = gst::Buffer::from_slice(kfs[pushed % kfs.len()].data.clone());
            let pts = gst::ClockTime::from_mseconds(pushed as u64 + 1);
            let b = buf.make_mut();
            b.set_pts(pts);
            b.set_dts(pts);
            src.push_buffer(buf)?;
            pushed += 1;
        }
        done_rx.recv_timeout(Duration::from_secs(30))?;
        got += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    src.end_of_stream()?;
    pipeline.set_state(gst::State::Null)?;
    if let Some(p) = puller {
        let _ = p.join();
    }
    Ok(json!({
        "keyframes": got,
        "keyframes_per_s": round(got as f64 / wall),
        "cpu_ms_per_keyframe": round(cpu * 1000.0 / got as f64),
    }))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
