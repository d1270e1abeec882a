//! Frames of the sample video for the benches, decoded by a small GStreamer pipeline.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use qianliyan::decode::{DecodedFrame, PixelFormat};

/// A bench's result.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// `count` frames spread over the first minute of the video, packed BGR.
pub fn decode(path: &Path, count: usize) -> Res<Vec<Arc<DecodedFrame>>> {
    gst::init()?;
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=BGR \
         ! appsink name=sink sync=false max-buffers=4",
        path.display()
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .ok_or("no sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let mut out = Vec::new();
    let mut i = 0usize;
    // Spread the frames over the 795-frame clip (different scenes, different numbers of people).
    let spacing = (780 / count.max(1)).max(1);
    while out.len() < count {
        let sample = sink.pull_sample()?;
        i += 1;
        if !i.is_multiple_of(spacing) {
            continue;
        }
        let info = gst_video::VideoInfo::from_caps(sample.caps().ok_or("no caps")?)?;
        let buf = sample.buffer().ok_or("no buffer")?;
        let map = buf.map_readable()?;
        let stride = info.stride()[0] as usize;
        let h = info.height() as usize;
        out.push(Arc::new(DecodedFrame {
            camera: format!("bench-{}", out.len()).into(),
            pts_90k: i as i64 * 9000,
            arrival: SystemTime::now(),
            decoded_at: SystemTime::now(),
            width: info.width(),
            height: info.height(),
            stride,
            format: PixelFormat::Bgr,
            data: map[..stride * h].to_vec(),
        }));
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(out)
}
