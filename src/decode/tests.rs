//! Decode tests against real GStreamer, with access units cut from the sample videos.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::template::{element_names, output_caps, render};
use super::*;

/// One access unit cut from a file (or encoded by a test).
#[derive(Clone)]
pub(crate) struct Au {
    pub(crate) data: Bytes,
    pub(crate) keyframe: bool,
    pub(crate) pts_90k: i64,
}

fn asset(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/video")
        .join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

/// Runs `desc` (which ends in `appsink name=sink`) to the end and collects its buffers.
pub(crate) fn collect(desc: &str) -> Vec<Au> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut aus = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buf = sample.buffer().unwrap();
        let map = buf.map_readable().unwrap();
        let pts = buf.pts().map_or(0, |t| t.nseconds());
        aus.push(Au {
            data: Bytes::copy_from_slice(&map),
            keyframe: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
            pts_90k: i64::try_from(pts * 9 / 100_000).unwrap(),
        });
    }
    let bus = pipeline.bus().unwrap();
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        panic!("extracting access units: {msg:?}");
    }
    pipeline.set_state(gst::State::Null).unwrap();
    aus
}

/// Every access unit of an H.264 mp4, keyframes with SPS/PPS in front (as ingest delivers them).
fn file_aus(name: &str) -> Vec<Au> {
    let path = asset(name);
    collect(&format!(
        "filesrc location={} ! qtdemux ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false",
        path.display()
    ))
}

fn sub_aus() -> &'static [Au] {
    static AUS: OnceLock<Vec<Au>> = OnceLock::new();
    AUS.get_or_init(|| file_aus("vtest_sub.mp4"))
}

fn main_aus() -> &'static [Au] {
    static AUS: OnceLock<Vec<Au>> = OnceLock::new();
    AUS.get_or_init(|| file_aus("vtest_main.mp4"))
}

fn keyframes(aus: &[Au]) -> Vec<Au> {
    aus.iter().filter(|a| a.keyframe).cloned().collect()
}

fn encoded(camera: &str, codec: VideoCodec, au: &Au) -> EncodedFrame {
    EncodedFrame {
        camera: Arc::from(camera),
        codec,
        unit: AccessUnit {
            data: au.data.clone(),
            keyframe: au.keyframe,
            pts_90k: au.pts_90k,
            arrival: SystemTime::now(),
            loss: 0,
        },
        width: 0,
        height: 0,
    }
}

fn frame(camera: &str, au: &Au) -> EncodedFrame {
    encoded(camera, VideoCodec::H264, au)
}

fn cfg() -> DecodeConfig {
    DecodeConfig::default()
}

/// Everything sent until every sender is gone.
fn drain(rx: &Receiver<DecodeEvent>) -> (Vec<DecodedFrame>, Vec<(Arc<str>, String)>) {
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    for ev in rx.iter() {
        match ev {
            DecodeEvent::Frame(f) => frames.push(f),
            DecodeEvent::Error { camera, detail } => errors.push((camera, detail)),
        }
    }
    (frames, errors)
}

/// Mean and variance of BT.601 luma.
fn luma(f: &DecodedFrame) -> (f64, f64) {
    let mut sum = 0.0;
    let mut sq = 0.0;
    let n = f64::from(f.width * f.height);
    for row in f.data.chunks(f.stride).take(f.height as usize) {
        for px in row[..f.width as usize * 3].chunks_exact(3) {
            let y = 0.114 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.299 * f64::from(px[2]);
            sum += y;
            sq += y * y;
        }
    }
    let mean = sum / n;
    (mean, sq / n - mean * mean)
}

fn assert_picture(f: &DecodedFrame, w: u32, h: u32) {
    assert_eq!((f.width, f.height), (w, h), "{f:?}");
    assert!(f.stride >= w as usize * 3, "{f:?}");
    assert!(
        f.data.len() >= f.stride * (h as usize - 1) + w as usize * 3,
        "{f:?}"
    );
    assert_eq!(f.format, PixelFormat::Bgr);
    let (mean, var) = luma(f);
    assert!((60.0..=200.0).contains(&mean), "mean luma {mean} for {f:?}");
    assert!(var > 100.0, "luma variance {var} for {f:?}");
}

fn by_camera(frames: &[DecodedFrame]) -> HashMap<Arc<str>, Vec<i64>> {
    let mut m: HashMap<Arc<str>, Vec<i64>> = HashMap::new();
    for f in frames {
        m.entry(f.camera.clone()).or_default().push(f.pts_90k);
    }
    m
}

#[test]
fn templates_render_without_placeholders() {
    for codec in VideoCodec::ALL {
        for kind in [DecoderKind::Cpu, DecoderKind::Nvdec, DecoderKind::Vaapi] {
            let desc = render(
                codec,
                kind,
                &DecodeConfig {
                    max_width: 640,
                    ..cfg()
                },
            )
            .unwrap();
            assert!(!desc.contains('{') && !desc.contains('#'), "{desc}");
            assert!(desc.contains("width=(int)[1,640]"), "{desc}");
            let names = element_names(&desc);
            assert_eq!(names.first(), Some(&"appsrc"), "{desc}");
            assert_eq!(names.last(), Some(&"appsink"), "{desc}");
        }
    }
    assert_eq!(output_caps(0), "video/x-raw,format=BGR");
}

#[test]
fn handles_are_shareable_across_ingest_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DecoderPool>();
    send_sync::<CameraDecoder>();
    send_sync::<EncodedFrame>();
    send_sync::<DecodeEvent>();
}

#[test]
fn config_decoder_maps_to_kind() {
    use crate::config::Decoder;
    assert_eq!(DecoderKind::from(Decoder::Cpu), DecoderKind::Cpu);
    assert_eq!(DecoderKind::from(Decoder::Nvdec), DecoderKind::Nvdec);
    assert_eq!(DecoderKind::from(Decoder::Vaapi), DecoderKind::Vaapi);
}

/// (1) Keyframes of three cameras interleaved through one worker come back as BGR pictures, each with its
/// camera, in each camera's order.
#[test]
fn pool_decodes_interleaved_cameras_in_order() {
    let kfs = keyframes(sub_aus());
    assert!(kfs.len() >= 30, "{} keyframes", kfs.len());
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(cfg(), tx).unwrap();
    let cams = ["cam-a", "cam-b", "cam-c"];
    let mut sent: HashMap<Arc<str>, Vec<i64>> = HashMap::new();
    for i in 0..10 {
        for (c, cam) in cams.iter().enumerate() {
            let au = &kfs[c * 10 + i];
            pool.submit(frame(cam, au));
            sent.entry(Arc::from(*cam)).or_default().push(au.pts_90k);
        }
    }
    pool.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), 30);
    for f in &frames {
        assert_picture(f, 384, 288);
        assert!(f.decoded_at >= f.arrival);
    }
    assert_eq!(by_camera(&frames), sent);
}

/// A lone keyframe comes out without more input behind it (no decoder reorder delay).
#[test]
fn single_keyframe_comes_out_promptly() {
    let kfs = keyframes(sub_aus());
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(cfg(), tx).unwrap();
    for (i, au) in kfs.iter().take(3).enumerate() {
        pool.submit(frame("cam-a", au));
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(DecodeEvent::Frame(f)) => assert_eq!(f.pts_90k, au.pts_90k),
            other => panic!("keyframe {i}: {other:?}"),
        }
    }
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.decoded), (3, 3));
    pool.shutdown();
}

/// (2) Cameras of different sizes share one worker: without size hints on one renegotiating pipeline,
/// with hints on one pipeline per size; with max_width the big one is scaled down.
#[test]
fn mixed_resolutions_share_one_worker() {
    let sub = keyframes(sub_aus());
    let main = keyframes(main_aus());
    for (max_width, main_size, hints) in [
        (0, (768, 576), false),
        (640, (640, 480), false),
        (0, (768, 576), true),
        (640, (640, 480), true),
    ] {
        let hint = |mut f: EncodedFrame, w, h| {
            if hints {
                (f.width, f.height) = (w, h);
            }
            f
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = DecoderPool::start(DecodeConfig { max_width, ..cfg() }, tx).unwrap();
        for i in 0..8 {
            pool.submit(hint(frame("sub", &sub[i]), 384, 288));
            pool.submit(hint(frame("main", &main[i]), 768, 576));
        }
        pool.shutdown();
        let (frames, errors) = drain(&rx);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(frames.len(), 16);
        for f in &frames {
            match &*f.camera {
                "sub" => assert_picture(f, 384, 288),
                "main" => assert_picture(f, main_size.0, main_size.1),
                other => panic!("unknown camera {other}"),
            }
        }
        // Per-size pipelines may interleave their output differently; each camera stays in order.
        let want: Vec<i64> = sub[..8].iter().map(|a| a.pts_90k).collect();
        assert_eq!(by_camera(&frames)[&Arc::from("sub")], want);
        let want: Vec<i64> = main[..8].iter().map(|a| a.pts_90k).collect();
        assert_eq!(by_camera(&frames)[&Arc::from("main")], want);
    }
}

/// More size hints than a worker keeps pipelines for: the extra sizes share the any-size pipeline, and
/// a wrong hint only picks a pipeline (the decoder reads the real size from the SPS).
#[test]
fn size_hints_beyond_the_limit_share_a_pipeline() {
    let kfs = keyframes(sub_aus());
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(cfg(), tx).unwrap();
    for round in 0..3 {
        for c in 0..7u32 {
            let mut f = frame(&format!("cam-{c}"), &kfs[round * 7 + c as usize]);
            (f.width, f.height) = (100 + c, 100 + c);
            pool.submit(f);
        }
    }
    pool.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), 21);
    for (cam, pts) in by_camera(&frames) {
        assert_eq!(pts.len(), 3, "{cam}");
        assert!(pts.windows(2).all(|w| w[0] < w[1]), "{cam}: {pts:?}");
    }
    for f in &frames {
        assert_picture(f, 384, 288);
    }
}

/// (3) Garbage for one camera costs at most an error for that camera; the others keep decoding.
#[test]
fn garbage_affects_only_its_camera() {
    let kfs = keyframes(sub_aus());
    let mut noise = vec![0u8; 20_000];
    let mut x: u32 = 12345;
    for b in &mut noise {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    // Plain noise, and noise dressed up as an IDR slice (start code + NAL header 0x65).
    let mut fake_idr = vec![0, 0, 0, 1, 0x65];
    fake_idr.extend_from_slice(&noise);
    let garbage = [Bytes::from(noise), Bytes::from(fake_idr)];
    for bad in garbage {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = DecoderPool::start(cfg(), tx).unwrap();
        let mut sent_ok = 0;
        for i in 0..6 {
            pool.submit(frame("good-1", &kfs[i]));
            pool.submit(frame("good-2", &kfs[10 + i]));
            sent_ok += 2;
            if i == 2 {
                let au = Au {
                    data: bad.clone(),
                    keyframe: true,
                    pts_90k: 1,
                };
                pool.submit(frame("bad", &au));
            }
        }
        pool.shutdown();
        let (frames, errors) = drain(&rx);
        // At most one error, for that camera (here exactly one: the unit produced no picture).
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors.iter().all(|(c, _)| &**c == "bad"), "{errors:?}");
        let good: Vec<_> = frames.iter().filter(|f| &*f.camera != "bad").collect();
        assert_eq!(good.len(), sent_ok);
        for f in good {
            assert_picture(f, 384, 288);
        }
        assert!(
            frames.iter().all(|f| &*f.camera != "bad"),
            "garbage became a picture"
        );
    }
}

/// (3b) A bus error reports the cameras in flight, and the rebuilt pipeline decodes the next frames.
#[test]
fn pipeline_error_is_reported_and_pipeline_rebuilt() {
    let kfs = keyframes(sub_aus());
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(cfg(), tx).unwrap();
    pool.submit(frame("before", &kfs[0]));
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(DecodeEvent::Frame(_))
    ));
    // Noise that the parser swallows stays in flight: the error must be attributed to it.
    let stuck = Au {
        data: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]),
        keyframe: true,
        pts_90k: 7,
    };
    pool.submit(frame("in-flight", &stuck));
    std::thread::sleep(Duration::from_millis(200));
    pool.inject_error(0, VideoCodec::H264);
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(DecodeEvent::Error { camera, detail }) => {
            assert_eq!(&*camera, "in-flight");
            assert!(detail.contains("injected test error"), "{detail}");
            assert!(detail.contains("H.264 `cpu` pipeline"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    for au in &kfs[1..4] {
        pool.submit(frame("after", au));
    }
    let stats = pool.stats();
    assert_eq!(stats.pipeline_restarts, 1, "{stats:?}");
    pool.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| &*f.camera == "after"));
}

/// (4) A full queue drops the oldest queued frame and counts it; the newest frames survive.
#[test]
fn full_queue_drops_oldest() {
    let kfs = keyframes(sub_aus());
    // A rendezvous channel nobody reads: the worker blocks on its first picture.
    let (tx, rx) = crossbeam_channel::bounded(0);
    let pool = DecoderPool::start(DecodeConfig { queue: 4, ..cfg() }, tx).unwrap();
    let n = 30;
    for (i, au) in kfs.iter().take(n).enumerate() {
        pool.submit(frame("cam", au));
        if i == 0 {
            // Let the worker take the first frame and block on sending its picture.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = pool.stats();
    assert_eq!(stats.submitted, n as u64);
    assert_eq!(stats.queue_depth, vec![4]);
    assert!(stats.dropped.queue_full >= 20, "{stats:?}");

    let reader = std::thread::spawn(move || drain(&rx));
    pool.shutdown();
    let (frames, errors) = reader.join().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let got: Vec<i64> = frames.iter().map(|f| f.pts_90k).collect();
    assert_eq!(
        got.len() as u64 + stats.dropped.queue_full,
        n as u64,
        "{got:?}"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    // The oldest went: the newest `queue` frames were all decoded.
    let newest: Vec<i64> = kfs[n - 4..n].iter().map(|a| a.pts_90k).collect();
    assert_eq!(&got[got.len() - 4..], &newest[..]);
}

/// (5) A CameraDecoder decodes a whole GOP stream, every frame, in order.
#[test]
fn camera_decoder_decodes_full_gop_in_order() {
    let aus = sub_aus();
    let (tx, rx) = crossbeam_channel::unbounded();
    let dec = CameraDecoder::start(
        Arc::from("full"),
        VideoCodec::H264,
        DecodeConfig {
            queue: aus.len(),
            ..cfg()
        },
        tx,
    )
    .unwrap();
    for au in aus {
        dec.submit(frame("full", au));
    }
    dec.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    let got: Vec<i64> = frames.iter().map(|f| f.pts_90k).collect();
    let want: Vec<i64> = aus.iter().map(|a| a.pts_90k).collect();
    assert_eq!(got, want);
    for f in frames.iter().step_by(50) {
        assert_picture(f, 384, 288);
    }
}

/// A CameraDecoder maps reordered output (B-frames) back by presentation time: every frame, PTS order.
#[test]
fn camera_decoder_handles_b_frames() {
    gst::init().unwrap();
    if gst::ElementFactory::find("x264enc").is_none() {
        eprintln!("x264enc not installed; skipping");
        return;
    }
    let aus = collect(
        "videotestsrc pattern=ball num-buffers=60 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc bframes=2 b-adapt=false key-int-max=30 speed-preset=ultrafast \
         ! video/x-h264,profile=main ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false",
    );
    assert_eq!(aus.len(), 60);
    let decode_order: Vec<i64> = aus.iter().map(|a| a.pts_90k).collect();
    let mut want = decode_order.clone();
    want.sort_unstable();
    assert_ne!(decode_order, want, "the encoder made no B-frames");

    let (tx, rx) = crossbeam_channel::unbounded();
    let dec = CameraDecoder::start(
        Arc::from("b"),
        VideoCodec::H264,
        DecodeConfig {
            queue: 100,
            ..cfg()
        },
        tx,
    )
    .unwrap();
    for au in &aus {
        dec.submit(frame("b", au));
    }
    dec.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    let got: Vec<i64> = frames.iter().map(|f| f.pts_90k).collect();
    assert_eq!(got, want);
}

/// A CameraDecoder started mid-GOP skips delta frames until the first keyframe.
#[test]
fn camera_decoder_waits_for_a_keyframe() {
    let aus = sub_aus();
    let (tx, rx) = crossbeam_channel::unbounded();
    let dec = CameraDecoder::start(
        Arc::from("late"),
        VideoCodec::H264,
        DecodeConfig {
            queue: 100,
            ..cfg()
        },
        tx,
    )
    .unwrap();
    // Start at frame 5 of the first GOP: 15 delta frames, then a GOP of 20 from a keyframe.
    for au in &aus[5..40] {
        dec.submit(frame("late", au));
    }
    let stats_before = dec.stats();
    dec.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), 20);
    assert_eq!(frames[0].pts_90k, aus[20].pts_90k);
    assert_eq!(stats_before.submitted, 35);
}

/// (6) A missing hardware decoder is a clear start error naming the element and the kind.
#[test]
fn missing_hardware_decoder_is_a_clear_error() {
    gst::init().unwrap();
    for (kind, element) in [
        (DecoderKind::Nvdec, "nvh264dec"),
        (DecoderKind::Vaapi, "vaapih264dec"),
    ] {
        if gst::ElementFactory::find(element).is_some() {
            eprintln!("{element} is installed here; skipping");
            continue;
        }
        let (tx, _rx) = crossbeam_channel::unbounded();
        let cfg = DecodeConfig { kind, ..cfg() };
        let err = DecoderPool::start(cfg, tx.clone()).err().unwrap();
        match &err {
            DecodeError::ElementMissing {
                kind: k,
                codec,
                element: e,
            } => {
                assert_eq!((*k, *codec, e.as_str()), (kind, VideoCodec::H264, element));
            }
            other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(element) && msg.contains(kind.as_str()),
            "{msg}"
        );
        assert!(!err.is_retryable());

        let err = CameraDecoder::start(Arc::from("cam-9"), VideoCodec::H264, cfg, tx)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("cam-9") && msg.contains(element), "{msg}");
        assert!(check_available(kind, VideoCodec::H264).is_err());
    }
    assert!(check_available(DecoderKind::Cpu, VideoCodec::H264).is_ok());
}

/// H.265 cameras get their own pipeline, created on the first H.265 frame, next to H.264 cameras.
#[test]
fn h265_pipeline_is_created_lazily() {
    gst::init().unwrap();
    if gst::ElementFactory::find("x265enc").is_none() {
        eprintln!("x265enc not installed; skipping");
        return;
    }
    let h265 = collect(
        "videotestsrc pattern=smpte num-buffers=40 ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! x265enc key-int-max=10 speed-preset=ultrafast ! h265parse config-interval=-1 \
         ! video/x-h265,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false",
    );
    let h265_kfs = keyframes(&h265);
    assert_eq!(h265_kfs.len(), 4);
    let kfs = keyframes(sub_aus());
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(cfg(), tx).unwrap();
    for i in 0..4 {
        pool.submit(encoded("hevc", VideoCodec::H265, &h265_kfs[i]));
        pool.submit(frame("avc", &kfs[i]));
    }
    pool.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    let cams = by_camera(&frames);
    assert_eq!(cams["hevc"].len(), 4);
    assert_eq!(cams["avc"].len(), 4);
    for f in &frames {
        if &*f.camera == "hevc" {
            assert_eq!((f.width, f.height), (320, 240));
        } else {
            assert_picture(f, 384, 288);
        }
    }
}

/// Delta frames given to the pool are skipped and counted; cameras stay on their worker.
#[test]
fn pool_skips_delta_frames_and_routes_stably() {
    let aus = sub_aus();
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = DecoderPool::start(
        DecodeConfig {
            workers: 2,
            ..cfg()
        },
        tx,
    )
    .unwrap();
    for au in &aus[..40] {
        pool.submit(frame("cam-x", au));
    }
    assert_eq!(pool.worker_for("cam-x"), pool.worker_for("cam-x"));
    let spread: std::collections::HashSet<usize> = (0..32)
        .map(|i| pool.worker_for(&format!("cam-{i}")))
        .collect();
    assert_eq!(spread.len(), 2);
    let stats = pool.stats();
    pool.shutdown();
    let (frames, errors) = drain(&rx);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), 2);
    assert_eq!(stats.dropped.not_keyframe, 38, "{stats:?}");
    assert_eq!(stats.queue_depth.len(), 2);
}

#[test]
fn zero_workers_or_queue_is_a_config_error() {
    let (tx, _rx) = crossbeam_channel::unbounded();
    for cfg in [
        DecodeConfig {
            workers: 0,
            ..cfg()
        },
        DecodeConfig { queue: 0, ..cfg() },
    ] {
        assert!(matches!(
            DecoderPool::start(cfg, tx.clone()),
            Err(DecodeError::Config { .. })
        ));
    }
}
