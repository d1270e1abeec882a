//! Decode: in, [`EncodedFrame`] access units from ingest ([`DecoderPool::submit`], never blocks); out,
//! [`DecodeEvent`]s (BGR [`DecodedFrame`]s and per-camera errors) on the caller's channel; when a worker's
//! bounded queue is full the OLDEST queued frame is dropped and counted ([`DecodeDrops::queue_full`]).
//!
//! Keyframe-only analysis (the default) goes through a small [`DecoderPool`]: `workers` long-lived
//! GStreamer pipelines shared by every camera, each fed by one named thread (`decode-N`). A camera is
//! routed to a worker by a stable hash of its id, so its frames stay in order. Every buffer pushed into a
//! pipeline gets a unique, increasing PTS and a pending entry (PTS → camera, original PTS, arrival), which
//! is how a decoded picture finds its camera again. Each keyframe carries its SPS/PPS, so cameras with
//! different sizes can share one pipeline (the parser renegotiates), but a size switch costs ~1.4 ms of
//! renegotiation; when ingest fills in [`EncodedFrame::width`]/`height`, a worker keeps one pipeline per
//! size (up to 4, then the shared one). H.265 pipelines are created on a worker's first H.265 frame. A
//! pipeline error reports [`DecodeEvent::Error`] for the cameras whose frames were in flight, tears the
//! pipeline down (Null) and rebuilds it on the next frame; the pool lives on.
//!
//! Threads: a worker is its own thread plus one streaming thread per pipeline (appsrc's task, which runs
//! parse, decode, convert and the appsink callback that copies the picture out); decoders run with one
//! thread each, so parallelism comes from `workers`.
//!
//! Full-GOP decoding (cameras with `keyframe_only = false`) uses a [`CameraDecoder`]: one pipeline from the
//! same template for one camera, same output.
//!
//! Pipelines come from the templates in `pipelines/` (embedded in the binary). A hardware kind whose
//! element is missing fails at start with [`DecodeError::ElementMissing`]; there is no silent fallback.
//!
//! If the `out` channel is full the worker waits for it; its queue then fills and drops the oldest, so
//! there is exactly one place where frames are dropped for load.

mod error;
mod pipeline;
mod pool;
mod router;
mod template;
mod worker;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

pub use error::DecodeError;
pub use pool::{CameraDecoder, DecoderPool};
pub use router::Router;
pub use template::check_available;

/// Video codec of an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl VideoCodec {
    /// Both codecs.
    pub const ALL: [VideoCodec; 2] = [VideoCodec::H264, VideoCodec::H265];

    /// Short lower-case name used in template file names (`h264`, `h265`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::H265 => "h265",
        }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::H264 => "H.264",
            Self::H265 => "H.265",
        })
    }
}

/// One access unit as ingest received it: Annex-B byte stream (00 00 00 01 start codes); a keyframe
/// carries its parameter sets (SPS/PPS, VPS for H.265) in-band at its start (ingest prepends them), so
/// any keyframe decodes on its own. The same value goes from ingest to the decoder inside an
/// [`EncodedFrame`].
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Annex-B data.
    pub data: bytes::Bytes,
    /// IDR / random access point with its parameter sets in front.
    pub keyframe: bool,
    /// Presentation time, 90 kHz units since the session's first frame.
    pub pts_90k: i64,
    /// When ingest received it.
    pub arrival: SystemTime,
    /// RTP packets lost just before it.
    pub loss: u16,
}

/// One access unit from ingest, with the camera and stream it belongs to.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// Camera id.
    pub camera: Arc<str>,
    /// Codec of the unit's data.
    pub codec: VideoCodec,
    /// The access unit, as ingest received it.
    pub unit: AccessUnit,
    /// Picture width if known (0 = unknown). The decoder reads the real size from the SPS; the pool uses
    /// this hint to give each size its own pipeline (no renegotiation between cameras).
    pub width: u32,
    /// Picture height if known (0 = unknown).
    pub height: u32,
}

/// Pixel layout of a [`DecodedFrame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PixelFormat {
    /// 8-bit B, G, R, packed, 3 bytes per pixel.
    Bgr,
}

/// One decoded picture.
#[derive(Clone)]
pub struct DecodedFrame {
    /// Camera id (from the [`EncodedFrame`]).
    pub camera: Arc<str>,
    /// The [`AccessUnit::pts_90k`] this picture was decoded from.
    pub pts_90k: i64,
    /// The [`AccessUnit::arrival`] this picture was decoded from.
    pub arrival: SystemTime,
    /// When the picture left the decoder.
    pub decoded_at: SystemTime,
    /// Width in pixels (after `max_width` scaling).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row, `>= width * 3`.
    pub stride: usize,
    /// Pixel layout.
    pub format: PixelFormat,
    /// `height` rows of `stride` bytes, packed BGR.
    pub data: Vec<u8>,
}

impl DecodedFrame {
    /// A still picture (not from a stream: pts 0, arrived and decoded now) of `width × height`
    /// tightly packed BGR pixels, e.g. an image file given to `qianliyan detect`.
    pub fn still_bgr(camera: Arc<str>, width: u32, height: u32, data: Vec<u8>) -> Self {
        let now = SystemTime::now();
        Self {
            camera,
            pts_90k: 0,
            arrival: now,
            decoded_at: now,
            width,
            height,
            stride: width as usize * 3,
            format: PixelFormat::Bgr,
            data,
        }
    }
}

impl fmt::Debug for DecodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedFrame")
            .field("camera", &self.camera)
            .field("pts_90k", &self.pts_90k)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("format", &self.format)
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// Which decoder element family a pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum DecoderKind {
    /// libav (`avdec_h264`, `avdec_h265`).
    #[default]
    Cpu,
    /// NVIDIA NVDEC (`nvh264dec`, `nvh265dec`).
    Nvdec,
    /// VA-API (`vaapih264dec`, `vaapih265dec`).
    Vaapi,
}

impl DecoderKind {
    /// The config spelling (`cpu`, `nvdec`, `vaapi`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Nvdec => "nvdec",
            Self::Vaapi => "vaapi",
        }
    }
}

impl fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<crate::config::Decoder> for DecoderKind {
    fn from(d: crate::config::Decoder) -> Self {
        match d {
            crate::config::Decoder::Cpu => Self::Cpu,
            crate::config::Decoder::Nvdec => Self::Nvdec,
            crate::config::Decoder::Vaapi => Self::Vaapi,
        }
    }
}

/// How the decode stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeConfig {
    /// Decoder family.
    pub kind: DecoderKind,
    /// Pool workers (one thread and one pipeline per codec each); at least 1.
    pub workers: usize,
    /// Bounded queue per worker, in frames; the oldest is dropped when full. At least 1.
    pub queue: usize,
    /// Scale frames wider than this down, keeping the aspect ratio; 0 keeps the decoded size.
    pub max_width: u32,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            kind: DecoderKind::Cpu,
            workers: 1,
            queue: 64,
            max_width: 0,
        }
    }
}

/// What the decode stage sends out.
#[derive(Debug, Clone)]
pub enum DecodeEvent {
    /// A decoded picture.
    Frame(DecodedFrame),
    /// Frames of this camera could not be decoded (corrupt data, pipeline error, missing element).
    Error {
        /// Camera id.
        camera: Arc<str>,
        /// What went wrong, for the health page.
        detail: String,
    },
}

/// Frames given to the decoders that produced no picture, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecodeDrops {
    /// Dropped (oldest first) because a worker's queue was full.
    pub queue_full: u64,
    /// Submitted but no picture came out (corrupt data, pipeline error, shut down mid-decode).
    pub decode_error: u64,
    /// Delta frames that cannot be decoded where they are: any delta frame given to the pool (keyframes
    /// only), or a [`CameraDecoder`] waiting for a keyframe after a drop, an error or at start.
    pub not_keyframe: u64,
}

/// Counters of a [`DecoderPool`] or [`CameraDecoder`], cumulative since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    /// Frames given to `submit`.
    pub submitted: u64,
    /// Pictures sent out.
    pub decoded: u64,
    /// Frames that produced no picture, by reason.
    pub dropped: DecodeDrops,
    /// Pipelines torn down after an error and rebuilt.
    pub pipeline_restarts: u64,
    /// Frames waiting in each worker's queue now.
    pub queue_depth: Vec<usize>,
}

/// Stable FNV-1a hash of a camera id: the same camera goes to the same worker on every run.
fn camera_hash(camera: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in camera.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
