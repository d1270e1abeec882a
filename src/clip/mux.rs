//! Writes a clip's access units into an MP4 file as they are (no decoding, no re-encoding), with
//! GStreamer's `h264parse`/`h265parse` and `mp4mux` (`faststart`: the index in front, so a browser
//! starts playing before the whole file has come).

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sha2::{Digest, Sha256};

use super::ring::Unit;
use crate::decode::VideoCodec;

/// A written clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// File size.
    pub bytes: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// From the first unit's time to the last's plus one frame.
    pub duration: Duration,
}

/// Longest a clip may take to be written before it is given up.
const WRITE_LIMIT: Duration = Duration::from_secs(60);

/// Writes `units` (the first a keyframe) to `path` (through `path.part`, renamed when complete).
pub fn write_mp4(codec: VideoCodec, units: &[Unit], path: &Path) -> Result<Written, String> {
    let first = units
        .first()
        .ok_or_else(|| "no video in the clip".to_owned())?;
    if !first.keyframe {
        return Err("the clip does not start on a keyframe".into());
    }
    gst::init().map_err(|e| format!("GStreamer init: {e}"))?;
    let part = path.with_extension("mp4.part");
    let (caps, parse) = match codec {
        VideoCodec::H264 => ("video/x-h264", "h264parse"),
        VideoCodec::H265 => ("video/x-h265", "h265parse"),
    };
    let desc = format!(
        "appsrc name=src format=time caps=\"{caps},stream-format=byte-stream,alignment=au\" ! {parse} ! mp4mux faststart=true ! filesink name=sink"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("clip pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "clip pipeline is not a pipeline".to_owned())?;
    let sink = pipeline
        .by_name("sink")
        .ok_or_else(|| "clip pipeline has no filesink".to_owned())?;
    sink.set_property("location", part.to_string_lossy().as_ref());
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| "clip pipeline has no appsrc".to_owned())?;
    let result = run(&pipeline, &src, units);
    let _ = pipeline.set_state(gst::State::Null);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (bytes, sha256) = digest(path)?;
    let span = units
        .last()
        .map(|u| u.pts_90k - first.pts_90k)
        .unwrap_or(0)
        .max(0) as u64;
    let frame = if units.len() > 1 {
        span / (units.len() as u64 - 1)
    } else {
        0
    };
    Ok(Written {
        bytes,
        sha256,
        duration: Duration::from_micros((span + frame) * 100 / 9),
    })
}

fn run(pipeline: &gst::Pipeline, src: &gst_app::AppSrc, units: &[Unit]) -> Result<(), String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("clip pipeline did not start: {e}"))?;
    let base = units[0].pts_90k;
    let mut last_pts: Option<u64> = None;
    for u in units {
        let pts_ns = ((u.pts_90k - base).max(0) as u64) * 100_000 / 9;
        let mut buffer = gst::Buffer::from_slice(u.data.clone());
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            // Cameras send no B-frames as a rule: decode order is presentation order. Where the
            // times go back (B-frames), the parser works the decode times out.
            if last_pts.is_none_or(|p| pts_ns > p) {
                b.set_dts(gst::ClockTime::from_nseconds(pts_ns));
            }
            if !u.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        last_pts = Some(last_pts.map_or(pts_ns, |p| p.max(pts_ns)));
        src.push_buffer(buffer)
            .map_err(|e| format!("the muxer refused an access unit: {e:?}"))?;
    }
    src.end_of_stream()
        .map_err(|e| format!("end of stream refused: {e:?}"))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| "clip pipeline has no bus".to_owned())?;
    match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(WRITE_LIMIT.as_secs()),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(msg) => match msg.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(e) => Err(format!("clip not written: {}", e.error())),
            _ => Err("clip pipeline: unexpected message".into()),
        },
        None => Err(format!(
            "clip not written within {} s",
            WRITE_LIMIT.as_secs()
        )),
    }
}

fn digest(path: &Path) -> Result<(u64, String), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((n, hex::encode(h.finalize())))
}
