//! Media preparation: GStreamer turns a source file into RTP payloads ONCE at start-up.
//!
//! Every session then replays these in-memory packets with its own SSRC, sequence numbers and
//! timestamps, so serving 1,300 cameras costs copies and syscalls, not encoders.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use tokio_util::sync::CancellationToken;

pub use super::scene::RateControl;

/// RTP clock rate of H.264/H.265 video.
pub const CLOCK_RATE: u32 = 90_000;
/// Dynamic payload type used in the SDP and in every packet.
pub const PAYLOAD_TYPE: u8 = 96;
/// Payload size chosen so that a packet plus headers fits a 1500-byte Ethernet MTU.
const MTU: u32 = 1400;
/// Length of the encoded fault clips (black, covered) and of the busy scene clip; they loop like
/// the main clip.
const FAULT_CLIP_SECONDS: u32 = 10;
/// Length of the quiet scene clip.
const QUIET_CLIP_SECONDS: u32 = 60;

/// Why preparing a source failed; none of these is retryable, the file or the install is wrong.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The source file is missing.
    #[error("source file {path} does not exist")]
    Missing {
        /// The file named by `--source`.
        path: PathBuf,
    },
    /// A GStreamer pipeline could not be built (plugin missing or bad description).
    #[error("building the {what} pipeline for {path}")]
    Pipeline {
        /// Which pipeline (probe, payload, black clip …).
        what: &'static str,
        /// The source file.
        path: PathBuf,
        /// GStreamer's error.
        source: glib_error::GlibError,
    },
    /// The pipeline ran and reported an error on its bus.
    #[error("{what} pipeline for {path} failed: {message}")]
    Run {
        /// Which pipeline.
        what: &'static str,
        /// The source file.
        path: PathBuf,
        /// GStreamer's message, with the element that posted it.
        message: String,
    },
    /// The file is readable but not usable as a camera stream.
    #[error("source {path} is not usable: {reason}")]
    Unsupported {
        /// The source file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Preparation made no progress for too long (a pipe nobody writes, a hung network mount).
    #[error(
        "source {path}: no progress for {secs} s in the {what} pipeline; is it a pipe or on a \
         stalled network mount?"
    )]
    Stalled {
        /// The source file.
        path: PathBuf,
        /// Which pipeline was running.
        what: &'static str,
        /// How long nothing happened.
        secs: u64,
    },
    /// Preparation was stopped (shutdown signal) before it finished.
    #[error("preparing {path} was cancelled")]
    Cancelled {
        /// The source file.
        path: PathBuf,
    },
}

/// How preparation is watched from outside: a cancel token it checks between samples, and a
/// heartbeat (with the pipeline it is in) so that a stalled source can be told from a slow one.
#[derive(Debug)]
pub struct Watch {
    cancel: CancellationToken,
    started: Instant,
    /// Milliseconds since `started` of the last sign of progress.
    beat_ms: AtomicU64,
    stage: Mutex<(PathBuf, &'static str)>,
}

impl Watch {
    /// A watch that stops preparation when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Watch {
        Watch {
            cancel,
            started: Instant::now(),
            beat_ms: AtomicU64::new(0),
            stage: Mutex::new((PathBuf::new(), "probe")),
        }
    }

    /// Stops preparation at its next check.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether preparation was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Time since the last sign of progress.
    pub fn idle(&self) -> Duration {
        let beat = Duration::from_millis(self.beat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }

    /// The file and pipeline being prepared now.
    pub fn stage(&self) -> (PathBuf, &'static str) {
        self.stage
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The error for a preparation that made no progress for `idle`.
    pub fn stalled(&self, idle: Duration) -> MediaError {
        let (path, what) = self.stage();
        MediaError::Stalled {
            path,
            what,
            secs: idle.as_secs(),
        }
    }

    fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.beat_ms.store(ms, Ordering::Relaxed);
    }

    fn enter(&self, path: &Path, what: &'static str) {
        match self.stage.lock() {
            Ok(mut s) => *s = (path.to_owned(), what),
            Err(e) => *e.into_inner() = (path.to_owned(), what),
        }
        self.beat();
    }
}

/// A thin wrapper so the error enum does not leak glib types into the public API.
pub mod glib_error {
    /// A GStreamer/GLib error rendered to text.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct GlibError(pub String);
}

/// Video codec of a prepared source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl Codec {
    /// Encoding name used in `a=rtpmap`.
    pub fn rtp_name(self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::H265 => "H265",
        }
    }

    /// Whether the NAL unit type (already extracted) starts a random-access picture.
    fn is_irap(self, nal_type: u8) -> bool {
        match self {
            Codec::H264 => nal_type == 5,
            Codec::H265 => (16..=21).contains(&nal_type),
        }
    }
}

/// One RTP payload, without the 12-byte RTP header (each session writes its own header).
#[derive(Debug, Clone)]
pub struct Packet {
    /// RTP marker bit: last packet of an access unit.
    pub marker: bool,
    /// The RTP payload (FU-A/STAP-A/single NAL unit as `rtph26xpay` produced it).
    pub payload: Bytes,
}

/// One access unit: the packets that share a presentation timestamp.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode timestamp relative to the clip's first frame, in 90 kHz units: when it is sent.
    /// Non-decreasing over a clip, whatever the order of presentation.
    pub ts: u64,
    /// Presentation minus decode time (90 kHz, never negative): the RTP timestamp is the
    /// presentation time (RFC 6184), so a B-frame source sends `ts + cts`. 0 without B-frames.
    pub cts: u32,
    /// Whether the access unit is a random-access point (IDR/IRAP).
    pub keyframe: bool,
    /// Its packets in order.
    pub packets: Vec<Packet>,
}

/// A looping clip of prepared frames.
#[derive(Debug)]
pub struct Clip {
    /// Frames in decode order (the order they are sent); with B-frames not presentation order.
    pub frames: Vec<Frame>,
    /// Length of one loop in 90 kHz units (last frame's timestamp plus one frame duration).
    pub duration: u64,
    /// Nominal frame duration in 90 kHz units.
    pub frame_duration: u64,
    /// The B-frame reorder delay: a picture is presented this long (90 kHz) after the decode
    /// slot of its rank in presentation order. 0 without B-frames.
    pub delay: u32,
}

impl Clip {
    /// Index of the keyframe at or before position `pos` (90 kHz units, wrapped into the clip).
    pub fn keyframe_at(&self, pos: u64) -> usize {
        let pos = pos % self.duration.max(1);
        let idx = self
            .frames
            .partition_point(|f| f.ts <= pos)
            .saturating_sub(1);
        (0..=idx)
            .rev()
            .find(|&i| self.frames[i].keyframe)
            .unwrap_or(0)
    }

    /// Total payload bytes, for the start-up log.
    pub fn bytes(&self) -> usize {
        self.frames
            .iter()
            .flat_map(|f| f.packets.iter())
            .map(|p| p.payload.len())
            .sum()
    }
}

/// Which picture a camera is currently sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The source video.
    Normal,
    /// An all-black clip (lens failure, night without IR).
    Black,
    /// The source video with most of the picture covered by a flat grey board (tampering).
    Cover,
    /// The source's background (no people) with sensor noise: a quiet scene.
    Quiet,
    /// The source re-encoded like the quiet clip (the same rate control): the people of a burst.
    Scene,
}

/// A prepared stream: its codec description and the clips it can play.
#[derive(Debug)]
pub struct Media {
    /// Codec of all clips.
    pub codec: Codec,
    /// `a=fmtp` parameters (sprop-parameter-sets …) from the payloader.
    pub fmtp: String,
    /// Picture width in pixels.
    pub width: i32,
    /// Picture height in pixels.
    pub height: i32,
    /// Frames per second of the source (numerator, denominator).
    pub framerate: (i32, i32),
    /// The source as payloads.
    pub normal: Clip,
    /// The black fault clip.
    pub black: Clip,
    /// The covered fault clip.
    pub cover: Clip,
    /// The quiet scene clip (made only when scenes are asked for).
    pub quiet: Option<Clip>,
    /// The busy scene clip, encoded like the quiet one (made only when scenes are asked for).
    pub scene: Option<Clip>,
}

impl Media {
    /// The clip for a variant.
    pub fn clip(&self, variant: Variant) -> &Clip {
        match variant {
            Variant::Normal => &self.normal,
            Variant::Black => &self.black,
            Variant::Cover => &self.cover,
            Variant::Quiet => self.quiet.as_ref().unwrap_or(&self.normal),
            Variant::Scene => self.scene.as_ref().unwrap_or(&self.normal),
        }
    }

    /// Prepares `path`: probes it, payloads it, and encodes the black and covered fault clips.
    pub fn prepare(path: &Path) -> Result<Arc<Media>, MediaError> {
        Media::prepare_watched(path, &Watch::new(CancellationToken::new()), None)
    }

    /// [`Media::prepare`] that stops with [`MediaError::Cancelled`] when `watch` is cancelled
    /// and beats `watch` at every sample, so that a caller can tell a stalled source. With `scenes`,
    /// the quiet and busy scene clips are made too, encoded with that rate control.
    pub fn prepare_watched(
        path: &Path,
        watch: &Watch,
        scenes: Option<RateControl>,
    ) -> Result<Arc<Media>, MediaError> {
        watch.enter(path, "probe");
        if !path.exists() {
            return Err(MediaError::Missing {
                path: path.to_owned(),
            });
        }
        gst::init().map_err(|e| pipeline_err("init", path, e))?;
        let probe = probe(path, watch)?;
        let (normal, caps) = payload_clip(path, &probe, None, watch)?;
        let fmtp = fmtp_from_caps(&caps);
        let synth = |v, rc, bg| payload_clip(path, &probe, Some((v, rc, bg)), watch).map(|c| c.0);
        let mut black = synth(Variant::Black, RateControl::Cbr, None)?;
        let mut cover = synth(Variant::Cover, RateControl::Cbr, None)?;
        let (mut quiet, mut scene) = match scenes {
            None => (None, None),
            Some(rc) => {
                let bg = Arc::new(background(path, watch)?);
                (
                    Some(synth(Variant::Quiet, rc, Some(bg))?),
                    Some(synth(Variant::Scene, rc, None)?),
                )
            }
        };
        // The synthetic clips have no B-frames; presented with the source's delay, a switch between
        // them and the source never steps the presentation time backwards.
        for clip in [&mut black, &mut cover]
            .into_iter()
            .chain(quiet.as_mut())
            .chain(scene.as_mut())
        {
            clip.delay = normal.delay;
            for f in &mut clip.frames {
                f.cts = normal.delay;
            }
        }
        Ok(Arc::new(Media {
            codec: probe.codec,
            fmtp,
            width: probe.width,
            height: probe.height,
            framerate: probe.framerate,
            normal,
            black,
            cover,
            quiet,
            scene,
        }))
    }

    /// SDP for this stream (RFC 4566), with the track control URL `trackID=0`.
    pub fn sdp(&self, session_id: u64, host: &str) -> String {
        let (num, den) = self.framerate;
        let fps = if den > 0 {
            num as f64 / den as f64
        } else {
            0.0
        };
        let mut sdp = format!(
            "v=0\r\no=- {session_id} 1 IN IP4 {host}\r\ns=qianliyan camsim\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=control:*\r\na=range:npt=now-\r\nm=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/{CLOCK_RATE}\r\n",
            pt = PAYLOAD_TYPE,
            name = self.codec.rtp_name(),
        );
        if !self.fmtp.is_empty() {
            sdp.push_str(&format!("a=fmtp:{PAYLOAD_TYPE} {}\r\n", self.fmtp));
        }
        sdp.push_str(&format!(
            "a=framerate:{fps:.3}\r\na=x-dimensions:{},{}\r\na=control:trackID=0\r\n",
            self.width, self.height
        ));
        sdp
    }
}

struct Probe {
    codec: Codec,
    width: i32,
    height: i32,
    framerate: (i32, i32),
}

fn pipeline_err(what: &'static str, path: &Path, e: impl std::fmt::Display) -> MediaError {
    MediaError::Pipeline {
        what,
        path: path.to_owned(),
        source: glib_error::GlibError(e.to_string()),
    }
}

fn build(desc: &str, what: &'static str, path: &Path) -> Result<gst::Pipeline, MediaError> {
    let element = gst::parse::launch(desc).map_err(|e| pipeline_err(what, path, e))?;
    let pipeline = element
        .downcast::<gst::Pipeline>()
        .map_err(|_| pipeline_err(what, path, "not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .ok_or_else(|| pipeline_err(what, path, "no element named src"))?;
    src.set_property("location", path.to_string_lossy().to_string());
    Ok(pipeline)
}

fn sink_of(
    pipeline: &gst::Pipeline,
    what: &'static str,
    path: &Path,
) -> Result<gst_app::AppSink, MediaError> {
    pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| pipeline_err(what, path, "no appsink named sink"))
}

/// What the demuxer (`parsebin`/`decodebin` named `demux`) exposed, and whether a video stream
/// was linked to the element named `first`.
#[derive(Debug, Default)]
struct VideoLink {
    streams: Mutex<Vec<String>>,
    linked: std::sync::atomic::AtomicBool,
    no_more_pads: std::sync::atomic::AtomicBool,
}

impl VideoLink {
    /// Links the first video stream of `demux` to `first` (audio, subtitles and data stay
    /// unlinked: a phone recording's audio track may come before its video).
    fn install(
        pipeline: &gst::Pipeline,
        what: &'static str,
        path: &Path,
    ) -> Result<Arc<VideoLink>, MediaError> {
        let demux = pipeline
            .by_name("demux")
            .ok_or_else(|| pipeline_err(what, path, "no element named demux"))?;
        let first = pipeline
            .by_name("first")
            .ok_or_else(|| pipeline_err(what, path, "no element named first"))?;
        let link = Arc::new(VideoLink::default());
        let state = link.clone();
        demux.connect_pad_added(move |_, pad| {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let name = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| "unknown".into());
            let video = name.starts_with("video/");
            if let Ok(mut streams) = state.streams.lock() {
                streams.push(name);
            }
            if video
                && !state.linked.load(Ordering::Acquire)
                && let Some(sink) = first.static_pad("sink")
                && pad.link(&sink).is_ok()
            {
                state.linked.store(true, Ordering::Release);
            }
        });
        let state = link.clone();
        demux.connect_no_more_pads(move |_| state.no_more_pads.store(true, Ordering::Release));
        Ok(link)
    }

    fn linked(&self) -> bool {
        self.linked.load(Ordering::Acquire)
    }

    /// The error for a file without a video stream (with GStreamer's `message` if it gave one),
    /// or `None` if one was linked.
    fn no_video(&self, path: &Path, message: Option<&str>) -> Option<MediaError> {
        if self.linked() {
            return None;
        }
        let streams = self
            .streams
            .lock()
            .map(|s| s.join(", "))
            .unwrap_or_default();
        let reason = match (streams.is_empty(), message) {
            (true, Some(m)) => format!("not a media file GStreamer can read ({m})"),
            (true, None) => "no stream found in the file".into(),
            (false, _) => format!("no video stream (found: {streams})"),
        };
        Some(MediaError::Unsupported {
            path: path.to_owned(),
            reason,
        })
    }
}

/// The first error on the bus, with the element that posted it.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(err) = msg.view() {
            let from = msg
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default();
            let debug = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
            return Some(format!("{from}: {}{debug}", err.error()));
        }
    }
    None
}

fn run_err(
    what: &'static str,
    path: &Path,
    pipeline: &gst::Pipeline,
    fallback: &str,
) -> MediaError {
    MediaError::Run {
        what,
        path: path.to_owned(),
        message: bus_error(pipeline).unwrap_or_else(|| fallback.to_owned()),
    }
}

/// How long one wait for a sample lasts before cancellation and the bus are checked again.
const POLL: gst::ClockTime = gst::ClockTime::from_mseconds(100);

/// The next sample of a playing pipeline, `None` at end of stream. Never waits unboundedly:
/// cancellation, errors on the bus and a file without video end the wait.
fn next_sample(
    appsink: &gst_app::AppSink,
    pipeline: &gst::Pipeline,
    link: &VideoLink,
    what: &'static str,
    path: &Path,
    watch: &Watch,
) -> Result<Option<gst::Sample>, MediaError> {
    loop {
        if watch.is_cancelled() {
            return Err(MediaError::Cancelled {
                path: path.to_owned(),
            });
        }
        if let Some(sample) = appsink.try_pull_sample(POLL) {
            watch.beat();
            return Ok(Some(sample));
        }
        if appsink.is_eos() {
            return Ok(None);
        }
        if let Some(message) = bus_error(pipeline) {
            return Err(link
                .no_video(path, Some(&message))
                .unwrap_or(MediaError::Run {
                    what,
                    path: path.to_owned(),
                    message,
                }));
        }
        if link.no_more_pads.load(Ordering::Acquire)
            && let Some(e) = link.no_video(path, None)
        {
            return Err(e);
        }
    }
}

fn probe(path: &Path, watch: &Watch) -> Result<Probe, MediaError> {
    const WHAT: &str = "probe";
    watch.enter(path, WHAT);
    // Not a preroll: a sink prerolls only on a buffer inside the segment, and the first buffers of
    // a B-frame MP4 are stamped (by DTS) before the segment its edit list starts: waiting for the
    // preroll hung for ever. Playing and pulling the first sample works for any source.
    let pipeline = build(
        "filesrc name=src ! parsebin name=demux  appsink name=first sync=false max-buffers=1",
        WHAT,
        path,
    )?;
    let link = VideoLink::install(&pipeline, WHAT, path)?;
    let sink = pipeline
        .by_name("first")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| pipeline_err(WHAT, path, "no appsink named first"))?;
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| run_err(WHAT, path, &pipeline, "could not start"))?;
        let sample = next_sample(&sink, &pipeline, &link, WHAT, path, watch)?.ok_or_else(|| {
            link.no_video(path, None)
                .unwrap_or(MediaError::Unsupported {
                    path: path.to_owned(),
                    reason: "the video stream has no frames".into(),
                })
        })?;
        let caps = sample
            .caps()
            .ok_or_else(|| run_err(WHAT, path, &pipeline, "stream has no caps"))?;
        let s = caps
            .structure(0)
            .ok_or_else(|| run_err(WHAT, path, &pipeline, "stream has empty caps"))?;
        let unsupported = |reason: String| MediaError::Unsupported {
            path: path.to_owned(),
            reason,
        };
        let codec = match s.name().as_str() {
            "video/x-h264" => Codec::H264,
            "video/x-h265" => Codec::H265,
            other => {
                return Err(unsupported(format!(
                    "codec {other}; camsim serves H.264 or H.265 (encode with x264enc first, see scripts/setup)"
                )));
            }
        };
        let width = s
            .get::<i32>("width")
            .map_err(|_| unsupported("no width in caps".into()))?;
        let height = s
            .get::<i32>("height")
            .map_err(|_| unsupported("no height in caps".into()))?;
        let framerate = s
            .get::<gst::Fraction>("framerate")
            .map(|f| (f.numer(), f.denom()))
            .unwrap_or((0, 1));
        if framerate.0 <= 0 || framerate.1 <= 0 {
            return Err(unsupported(
                "no frame rate in the container; camsim paces by it".into(),
            ));
        }
        Ok(Probe {
            codec,
            width,
            height,
            framerate,
        })
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Runs a payloading pipeline to EOS and groups the packets into frames.
/// The source as payloads (`synth` = `None`), or a synthetic clip of `FAULT_CLIP_SECONDS` made
/// from the decoded source: painted (black, cover, quiet on `background`) or not (scene), encoded
/// with the given rate control.
fn payload_clip(
    path: &Path,
    probe: &Probe,
    synth: Option<(Variant, RateControl, Option<Arc<Background>>)>,
    watch: &Watch,
) -> Result<(Clip, gst::Caps), MediaError> {
    let variant = synth.as_ref().map(|s| s.0);
    let pay = match probe.codec {
        Codec::H264 => "rtph264pay",
        Codec::H265 => "rtph265pay",
    };
    let pay =
        format!("{pay} config-interval=-1 mtu={MTU} pt={PAYLOAD_TYPE} aggregate-mode=zero-latency");
    let sink = "appsink name=sink sync=false max-buffers=0 emit-signals=false";
    let (num, den) = probe.framerate;
    // The quiet view loops once a minute: pictures checked every few seconds never meet the same
    // OSD second and noise twice in a row, as they would in a 10 s loop (a false "frozen").
    let seconds = if variant == Some(Variant::Quiet) {
        QUIET_CLIP_SECONDS
    } else {
        FAULT_CLIP_SECONDS
    };
    let frames = (seconds as i64 * num as i64 / den as i64).max(1);
    let (what, desc): (&'static str, String) = match variant {
        None => (
            "payload",
            format!("filesrc name=src ! parsebin name=demux  {pay} name=first ! {sink}"),
        ),
        Some(v) => {
            let what = match v {
                Variant::Black => "black clip",
                Variant::Cover => "cover clip",
                Variant::Quiet => "quiet scene clip",
                Variant::Scene | Variant::Normal => "busy scene clip",
            };
            let gop = (num / den.max(1)).max(1) * 2;
            let rc = synth.as_ref().map_or(RateControl::Cbr, |s| s.1);
            let enc = match (probe.codec, rc) {
                (Codec::H264, RateControl::Cbr) => format!(
                    "x264enc speed-preset=veryfast key-int-max={gop} bframes=0 bitrate=800 ! video/x-h264,profile=high"
                ),
                (Codec::H264, RateControl::Vbr) => format!(
                    "x264enc speed-preset=veryfast key-int-max={gop} bframes=0 pass=qual quantizer=26 ! video/x-h264,profile=high"
                ),
                (Codec::H265, RateControl::Cbr) => {
                    format!("x265enc speed-preset=veryfast key-int-max={gop} bitrate=800")
                }
                (Codec::H265, RateControl::Vbr) => {
                    format!("x265enc speed-preset=veryfast key-int-max={gop} option-string=crf=28")
                }
            };
            (
                what,
                format!(
                    "filesrc name=src ! decodebin name=demux  videoconvert name=first ! \
                     video/x-raw,format=I420 ! identity name=paint eos-after={frames} ! {enc} ! \
                     {pay} ! {sink}"
                ),
            )
        }
    };
    watch.enter(path, what);
    let pipeline = build(&desc, what, path)?;
    let appsink = sink_of(&pipeline, what, path)?;
    let link = VideoLink::install(&pipeline, what, path)?;
    match synth {
        Some((v @ (Variant::Black | Variant::Cover), _, _)) => {
            install_painter(&pipeline, what, path, move |f, _| paint(f, v))?
        }
        Some((Variant::Quiet, _, Some(bg))) => {
            install_painter(&pipeline, what, path, move |f, pts| {
                paint_quiet(f, &bg, pts)
            })?
        }
        _ => {}
    }
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| run_err(what, path, &pipeline, "could not start"))?;
        let mut builder = ClipBuilder::new(probe.codec);
        let mut caps = None;
        while let Some(sample) = next_sample(&appsink, &pipeline, &link, what, path, watch)? {
            if caps.is_none() {
                caps = sample.caps_owned();
            }
            if let Some(list) = sample.buffer_list() {
                for buf in list.iter() {
                    builder.push(buf);
                }
            } else if let Some(buf) = sample.buffer() {
                builder.push(buf);
            }
        }
        if let Some(msg) = bus_error(&pipeline) {
            return Err(MediaError::Run {
                what,
                path: path.to_owned(),
                message: msg,
            });
        }
        let caps = caps.ok_or_else(|| MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!("the {what} pipeline produced no packets"),
        })?;
        let frame_duration = (CLOCK_RATE as u64 * den as u64 / num.max(1) as u64).max(1);
        let mut clip =
            builder
                .finish(frame_duration)
                .map_err(|reason| MediaError::Unsupported {
                    path: path.to_owned(),
                    reason,
                })?;
        if variant.is_some() {
            // The encoder drains one extra picture at end of stream, stamped well after the
            // others (0.6 s at 10 fps), and its timestamps can skip a slot: looped, that was a
            // hole in the stream every ten seconds. A synthetic clip gets an exact cadence
            // (no B-frames, so decode order is presentation order).
            clip.frames.truncate(frames as usize);
            for (i, f) in clip.frames.iter_mut().enumerate() {
                f.ts = i as u64 * frame_duration;
                f.cts = 0;
            }
            clip.duration = clip.frames.len() as u64 * frame_duration;
        }
        if !clip.frames.first().is_some_and(|f| f.keyframe) {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: format!("the {what} does not start with a keyframe"),
            });
        }
        Ok((clip, caps))
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Runs `painter` on every raw frame before encoding, with the frame's presentation time (ns).
fn install_painter(
    pipeline: &gst::Pipeline,
    what: &'static str,
    path: &Path,
    painter: impl Fn(&mut gst_video::VideoFrameRef<&mut gst::BufferRef>, u64) + Send + Sync + 'static,
) -> Result<(), MediaError> {
    let pad = pipeline
        .by_name("paint")
        .and_then(|e| e.static_pad("src"))
        .ok_or_else(|| pipeline_err(what, path, "no paint element"))?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(caps) = pad.current_caps() else {
            return gst::PadProbeReturn::Ok;
        };
        let Ok(vinfo) = gst_video::VideoInfo::from_caps(&caps) else {
            return gst::PadProbeReturn::Ok;
        };
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let buffer = buffer.make_mut();
            let pts = buffer.pts().map_or(0, |t| t.nseconds());
            if let Ok(mut frame) =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &vinfo)
            {
                painter(&mut frame, pts);
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// A picture's planes (I420), as bytes laid out the way the decoder gave them.
#[derive(Debug)]
pub struct Background {
    planes: Vec<Vec<u8>>,
}

/// Source frames kept for the background: every this many.
const BACKGROUND_STEP: usize = 8;
/// At most this many frames (the median's memory: this many pictures).
const BACKGROUND_FRAMES: usize = 64;

/// The source's background: the per-pixel median of frames spread over it, which removes people
/// who walk through (each pixel shows background most of the time).
fn background(path: &Path, watch: &Watch) -> Result<Background, MediaError> {
    const WHAT: &str = "background";
    watch.enter(path, WHAT);
    let pipeline = build(
        "filesrc name=src ! decodebin name=demux  videoconvert name=first ! video/x-raw,format=I420 ! \
         appsink name=sink sync=false max-buffers=4",
        WHAT,
        path,
    )?;
    let appsink = sink_of(&pipeline, WHAT, path)?;
    let link = VideoLink::install(&pipeline, WHAT, path)?;
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| run_err(WHAT, path, &pipeline, "could not start"))?;
        let mut kept: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut step = BACKGROUND_STEP;
        let mut n = 0usize;
        while let Some(sample) = next_sample(&appsink, &pipeline, &link, WHAT, path, watch)? {
            n += 1;
            if !(n - 1).is_multiple_of(step) {
                continue;
            }
            let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                continue;
            };
            let Ok(info) = gst_video::VideoInfo::from_caps(caps) else {
                continue;
            };
            let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            else {
                continue;
            };
            let planes = (0..frame.n_planes())
                .map(|p| frame.plane_data(p).map(<[u8]>::to_vec).unwrap_or_default())
                .collect();
            kept.push(planes);
            if kept.len() >= BACKGROUND_FRAMES * 2 {
                // A long source: keep every other one and sample half as often.
                kept = kept.into_iter().step_by(2).collect();
                step *= 2;
            }
        }
        let Some(first) = kept.first() else {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: "no decoded frame for the quiet scene's background".into(),
            });
        };
        let planes = (0..first.len())
            .map(|p| {
                let len = kept.iter().map(|k| k[p].len()).min().unwrap_or(0);
                let mut values = Vec::with_capacity(kept.len());
                (0..len)
                    .map(|i| {
                        values.clear();
                        values.extend(kept.iter().map(|k| k[p][i]));
                        let mid = values.len() / 2;
                        *values.select_nth_unstable(mid).1
                    })
                    .collect()
            })
            .collect();
        Ok(Background { planes })
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// 3×5 bitmaps of 0–9 and ':' (bit 2 of each row is the leftmost pixel).
const OSD_FONT: [[u8; 5]; 11] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
    [0, 2, 0, 2, 0],
];

/// Burns a ticking `HH:MM:SS` clock into the luma plane's top-left corner, as nearly every
/// surveillance camera shows one: a still scene is still not a frozen picture.
fn osd_clock(frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>, secs: u64) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let Ok(y_plane) = frame.plane_data_mut(0) else {
        return;
    };
    let scale = (h / 144).max(1);
    let text = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    );
    let (x0, y0) = (w / 32, h / 24);
    let cell = 4 * scale;
    let (bw, bh) = (text.len() * cell + scale, 7 * scale);
    for y in y0..(y0 + bh).min(h) {
        if let Some(row) = y_plane.get_mut(y * stride + x0..y * stride + (x0 + bw).min(w)) {
            row.fill(16);
        }
    }
    for (i, ch) in text.bytes().enumerate() {
        let glyph = match ch {
            b'0'..=b'9' => OSD_FONT[(ch - b'0') as usize],
            _ => OSD_FONT[10],
        };
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..3 {
                if bits & (4 >> gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    let y = y0 + scale + gy * scale + dy;
                    let x = x0 + scale + i * cell + gx * scale;
                    if let Some(px) = y_plane.get_mut(y * stride + x..y * stride + x + scale) {
                        px.fill(235);
                    }
                }
            }
        }
    }
}

/// The quiet view: the background with fresh sensor noise (±3 grey levels on luma, seeded by the
/// frame's time) and a ticking OSD clock, so the quiet scene is not trivially static: the encoder
/// spends a little on every P-frame, and consecutive pictures are never identical.
fn paint_quiet(
    frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    bg: &Background,
    pts_ns: u64,
) {
    for (p, plane) in bg.planes.iter().enumerate() {
        let Ok(data) = frame.plane_data_mut(p as u32) else {
            continue;
        };
        if data.len() != plane.len() {
            continue;
        }
        data.copy_from_slice(plane);
        if p == 0 {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ pts_ns.wrapping_mul(0xA24B_AED4_963E_E407);
            for v in data.iter_mut() {
                // xorshift64: cheap, deterministic noise.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = (seed % 7) as i16 - 3;
                *v = (*v as i16 + n).clamp(16, 235) as u8;
            }
        }
    }
    osd_clock(frame, pts_ns / 1_000_000_000);
}

/// Paints a raw frame black, or covers most of it with a flat grey board.
fn paint(frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>, variant: Variant) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    // Fraction of the picture that is painted: all of it for black, a board over ~80 % for cover.
    let (x0, y0, x1, y1, luma) = match variant {
        Variant::Black => (0, 0, w, h, 16u8),
        _ => (w / 20, h / 10, w - w / 20, h - h / 20, 70u8),
    };
    for plane in 0..3u32 {
        let stride = frame.plane_stride()[plane as usize] as usize;
        let (sx, sy, value) = if plane == 0 {
            (1, 1, luma)
        } else {
            (2, 2, 128)
        };
        let Ok(data) = frame.plane_data_mut(plane) else {
            continue;
        };
        for y in (y0 / sy)..(y1 / sy) {
            let row = y * stride;
            if let Some(slice) = data.get_mut(row + x0 / sx..row + x1 / sx) {
                slice.fill(value);
            }
        }
    }
}

/// The largest presentation delay (presentation minus decode time) accepted, in 90 kHz units:
/// B-frame encoders delay a few frames; more is a timestamp jump, which would stall the stream.
const MAX_REORDER: i64 = 10 * CLOCK_RATE as i64;

/// Groups RTP packets into access units, in decode order, and recovers decode times.
struct ClipBuilder {
    codec: Codec,
    /// Frames so far in decode order, each with its presentation time (90 kHz, relative to the
    /// first frame's).
    frames: Vec<(i64, Frame)>,
    current: Option<(i64, Frame)>,
    /// The current frame's keys: its buffers' PTS (ns) when they carry one, its RTP timestamp.
    keys: Option<(Option<u64>, u32)>,
}

impl ClipBuilder {
    fn new(codec: Codec) -> Self {
        ClipBuilder {
            codec,
            frames: Vec::new(),
            current: None,
            keys: None,
        }
    }

    fn push(&mut self, buf: &gst::BufferRef) {
        let Ok(map) = buf.map_readable() else { return };
        let Some(rtp) = RtpView::parse(&map) else {
            return;
        };
        // An access unit is the packets that share a PTS. The buffers' own PTS is the key, not
        // the RTP timestamp: the payloader gives every frame presented before the segment start
        // (leading frames an edit list cuts) the same RTP timestamp.
        let pts_ns = buf.pts().map(gst::ClockTime::nseconds);
        let pts = match self.keys {
            None => 0,
            Some((prev_ns, prev_rtp)) => match (prev_ns, pts_ns) {
                (Some(prev), Some(now)) => {
                    self.current_pts() + ns_to_90k(now as i128 - prev as i128)
                }
                // No PTS: the RTP timestamp's signed step (B-frames step backwards).
                _ => self.current_pts() + rtp.timestamp.wrapping_sub(prev_rtp) as i32 as i64,
            },
        };
        let same = self.current.is_some() && pts == self.current_pts();
        if !same {
            self.flush();
            self.keys = Some((pts_ns, rtp.timestamp));
            self.current = Some((
                pts,
                Frame {
                    ts: 0,
                    cts: 0,
                    keyframe: false,
                    packets: Vec::new(),
                },
            ));
        }
        if let Some((_, frame)) = self.current.as_mut() {
            frame.keyframe |= contains_irap(self.codec, rtp.payload);
            frame.packets.push(Packet {
                marker: rtp.marker,
                payload: Bytes::copy_from_slice(rtp.payload),
            });
        }
        // No flush on the marker bit: rtph264pay marks the parameter-set packet it sends ahead
        // of an IDR, and that packet belongs to the IDR's access unit (same timestamp).
    }

    fn current_pts(&self) -> i64 {
        self.current.as_ref().map(|(pts, _)| *pts).unwrap_or(0)
    }

    fn flush(&mut self) {
        if let Some(frame) = self.current.take() {
            self.frames.push(frame);
        }
    }

    /// The clip, with decode times recovered from the presentation times: the n-th frame in
    /// decode order is decoded when the n-th earliest picture is due, less the largest delay that
    /// keeps every frame's decode time at or before its presentation time. Exact for constant
    /// frame rates, monotonic for any.
    fn finish(mut self, frame_duration: u64) -> Result<Clip, String> {
        self.flush();
        let mut sorted: Vec<i64> = self.frames.iter().map(|(pts, _)| *pts).collect();
        sorted.sort_unstable();
        let delay = self
            .frames
            .iter()
            .zip(&sorted)
            .map(|((pts, _), s)| s - pts)
            .max()
            .unwrap_or(0)
            .max(0);
        if delay > MAX_REORDER {
            return Err(format!(
                "frames are decoded up to {:.1} s before they are presented (timestamps jump); \
                 camsim serves B-frame delays up to {} s",
                delay as f64 / CLOCK_RATE as f64,
                MAX_REORDER / CLOCK_RATE as i64
            ));
        }
        let base = sorted.first().copied().unwrap_or(0);
        let mut frames = Vec::with_capacity(self.frames.len());
        for ((pts, mut frame), s) in self.frames.into_iter().zip(&sorted) {
            let cts = pts - (s - delay);
            if cts > MAX_REORDER {
                return Err(format!(
                    "a frame is presented {:.1} s after it is decoded (timestamps jump); camsim \
                     serves B-frame delays up to {} s",
                    cts as f64 / CLOCK_RATE as f64,
                    MAX_REORDER / CLOCK_RATE as i64
                ));
            }
            frame.ts = (s - base) as u64;
            frame.cts = cts as u32;
            frames.push(frame);
        }
        let duration = frames
            .last()
            .map(|f| f.ts + frame_duration)
            .unwrap_or(frame_duration);
        Ok(Clip {
            frames,
            duration,
            frame_duration,
            delay: delay as u32,
        })
    }
}

/// Nanoseconds to 90 kHz units, rounded to the nearest.
fn ns_to_90k(ns: i128) -> i64 {
    let t = ns * CLOCK_RATE as i128;
    let half = 500_000_000i128 * t.signum();
    ((t + half) / 1_000_000_000) as i64
}

/// The parts of an RTP packet (RFC 3550) that preparation needs.
pub(crate) struct RtpView<'a> {
    pub marker: bool,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpView<'a> {
    /// Parses a packet; `None` for anything that is not RTP version 2.
    pub(crate) fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < 12 || data[0] >> 6 != 2 {
            return None;
        }
        let csrc = (data[0] & 0x0f) as usize * 4;
        let mut offset = 12 + csrc;
        if data[0] & 0x10 != 0 {
            let ext = data.get(offset + 2..offset + 4)?;
            offset += 4 + u16::from_be_bytes([ext[0], ext[1]]) as usize * 4;
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            end = end.checked_sub(*data.last()? as usize)?;
        }
        Some(RtpView {
            marker: data[1] & 0x80 != 0,
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            payload: data.get(offset..end)?,
        })
    }
}

/// Whether an RTP payload carries (part of the start of) a random-access picture.
pub(crate) fn contains_irap(codec: Codec, payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match codec {
        Codec::H264 => {
            let t = b0 & 0x1f;
            match t {
                // FU-A: the real type is in the FU header.
                28 => payload.get(1).is_some_and(|h| codec.is_irap(h & 0x1f)),
                // STAP-A: 16-bit size-prefixed NAL units.
                24 => aggregated(&payload[1..])
                    .any(|n| n.first().is_some_and(|b| codec.is_irap(b & 0x1f))),
                t => codec.is_irap(t),
            }
        }
        Codec::H265 => {
            let t = (b0 >> 1) & 0x3f;
            match t {
                49 => payload.get(2).is_some_and(|h| codec.is_irap(h & 0x3f)),
                48 => payload
                    .get(2..)
                    .map(|p| {
                        aggregated(p)
                            .any(|n| n.first().is_some_and(|b| codec.is_irap((b >> 1) & 0x3f)))
                    })
                    .unwrap_or(false),
                t => codec.is_irap(t),
            }
        }
    }
}

/// NAL units inside an aggregation packet body (each prefixed by a 16-bit size).
pub(crate) fn aggregated(mut body: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if body.len() < 2 {
            return None;
        }
        let n = u16::from_be_bytes([body[0], body[1]]) as usize;
        let nal = body.get(2..2 + n)?;
        body = &body[2 + n..];
        Some(nal)
    })
}

/// Builds the `a=fmtp` value from the payloader's caps (sprop-parameter-sets, profile-level-id …).
fn fmtp_from_caps(caps: &gst::Caps) -> String {
    const NOT_FMTP: [&str; 9] = [
        "media",
        "clock-rate",
        "encoding-name",
        "payload",
        "ssrc",
        "timestamp-offset",
        "seqnum-offset",
        "a-framerate",
        "encoding-params",
    ];
    let Some(s) = caps.structure(0) else {
        return String::new();
    };
    let mut params = Vec::new();
    for (name, value) in s.iter() {
        if NOT_FMTP.contains(&name.as_str()) {
            continue;
        }
        if let Ok(v) = value.get::<String>() {
            params.push(format!("{name}={v}"));
        }
    }
    params.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_idr_in_fu_a_and_stap_a() {
        // FU-A start of an IDR slice.
        assert!(contains_irap(Codec::H264, &[0x7c, 0x85, 0x00]));
        // FU-A of a non-IDR slice.
        assert!(!contains_irap(Codec::H264, &[0x7c, 0x81, 0x00]));
        // STAP-A carrying SPS, PPS and a small IDR.
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 2, 0x65, 0x88];
        assert!(contains_irap(Codec::H264, &stap));
        // H.265 IDR_W_RADL (19) as a single NAL unit, and inside an FU.
        assert!(contains_irap(Codec::H265, &[19 << 1, 1, 0]));
        assert!(contains_irap(Codec::H265, &[49 << 1, 1, 0x80 | 19]));
        assert!(!contains_irap(Codec::H265, &[1 << 1, 1, 0]));
    }

    #[test]
    fn rtp_view_rejects_garbage_and_skips_csrc() {
        assert!(RtpView::parse(&[0u8; 4]).is_none());
        let mut pkt = vec![0x81, 0xe0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 7, 0xaa];
        let v = RtpView::parse(&pkt).expect("valid packet");
        assert!(v.marker);
        assert_eq!(v.timestamp, 9);
        assert_eq!(v.payload, &[0xaa]);
        pkt[0] = 0x40; // version 1
        assert!(RtpView::parse(&pkt).is_none());
    }

    /// An RTP packet for `ClipBuilder`, its buffer stamped with `pts_ms`.
    fn rtp_buffer(pts_ms: u64, rtp_ts: u32, nal_type: u8) -> gst::Buffer {
        let mut data = vec![0x80, 0x60, 0, 0];
        data.extend_from_slice(&rtp_ts.to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 1, nal_type, 0xaa]);
        let mut buf = gst::Buffer::from_mut_slice(data);
        buf.get_mut()
            .expect("fresh buffer")
            .set_pts(gst::ClockTime::from_mseconds(pts_ms));
        buf
    }

    #[test]
    fn b_frames_keep_decode_order_and_get_presentation_offsets() {
        gst::init().expect("gst");
        // x264 with B-frames at 10 fps: decode order I P B B P B B, the first picture at 200 ms
        // (edit list), RTP timestamps as the payloader stamps them (PTS at 90 kHz).
        let pts_ms = [200u64, 500, 300, 400, 800, 600, 700];
        let mut b = ClipBuilder::new(Codec::H264);
        for (i, &pts) in pts_ms.iter().enumerate() {
            let nal = if i == 0 { 5 } else { 1 };
            let rtp_ts = 1_000 + (pts * 90) as u32;
            // Two packets per access unit, as a large frame is fragmented.
            b.push(&rtp_buffer(pts, rtp_ts, nal));
            b.push(&rtp_buffer(pts, rtp_ts, nal));
        }
        let clip = b.finish(9_000).expect("clip");
        let ts: Vec<u64> = clip.frames.iter().map(|f| f.ts).collect();
        let pts: Vec<u64> = clip.frames.iter().map(|f| f.ts + f.cts as u64).collect();
        assert_eq!(ts, [0, 9_000, 18_000, 27_000, 36_000, 45_000, 54_000]);
        // Presentation = decode + cts; the first picture one B-frame delay after its decode.
        assert_eq!(pts, [9_000, 36_000, 18_000, 27_000, 63_000, 45_000, 54_000]);
        assert_eq!(clip.delay, 9_000);
        assert!(clip.frames.iter().all(|f| f.packets.len() == 2));
        assert!(clip.frames[0].keyframe && !clip.frames[1].keyframe);
        assert_eq!(clip.duration, 63_000);
    }

    #[test]
    fn a_timestamp_jump_is_refused_not_served() {
        gst::init().expect("gst");
        let mut b = ClipBuilder::new(Codec::H264);
        for (i, pts) in [0u64, 100, 60_000, 200].into_iter().enumerate() {
            b.push(&rtp_buffer(pts, i as u32, if i == 0 { 5 } else { 1 }));
        }
        let err = b.finish(9_000).expect_err("a minute of reorder");
        assert!(err.contains("timestamps jump"), "{err}");
    }

    #[test]
    fn keyframe_lookup_wraps_and_goes_back_to_the_gop_start() {
        let frame = |ts, keyframe| Frame {
            ts,
            cts: 0,
            keyframe,
            packets: Vec::new(),
        };
        let clip = Clip {
            frames: vec![
                frame(0, true),
                frame(10, false),
                frame(20, true),
                frame(30, false),
            ],
            duration: 40,
            frame_duration: 10,
            delay: 0,
        };
        assert_eq!(clip.keyframe_at(15), 0);
        assert_eq!(clip.keyframe_at(35), 2);
        assert_eq!(clip.keyframe_at(45), 0);
    }
}
#[cfg(test)]
mod cadence {
    /// A looped fault clip must have no hole: a receiver sees one every ten seconds otherwise.
    #[test]
    fn fault_clips_loop_with_an_exact_frame_cadence() {
        gstreamer::init().unwrap();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/video/vtest_sub.mp4");
        let m = super::Media::prepare(&path).expect("prepare the sample video (run scripts/setup)");
        for (name, c) in [
            ("normal", &m.normal),
            ("black", &m.black),
            ("cover", &m.cover),
        ] {
            assert!(c.frames[0].keyframe, "{name} starts with a keyframe");
            for w in c.frames.windows(2) {
                assert_eq!(
                    w[1].ts - w[0].ts,
                    c.frame_duration,
                    "{name}: hole at ts {}",
                    w[0].ts
                );
            }
            let last = c.frames.last().unwrap().ts;
            assert_eq!(
                c.duration,
                last + c.frame_duration,
                "{name}: the wrap is one frame long"
            );
        }
        let (num, den) = m.framerate;
        let expected = (super::FAULT_CLIP_SECONDS as i64 * num as i64 / den as i64) as usize;
        assert_eq!(m.black.frames.len(), expected);
        assert_eq!(m.cover.frames.len(), expected);
    }
}

#[cfg(test)]
mod scenes {
    use super::{Clip, Media, RateControl, Variant, Watch};

    /// Mean bytes of a clip's P-frames, and its first keyframe's bytes.
    fn sizes(c: &Clip) -> (f64, usize) {
        let bytes = |f: &super::Frame| f.packets.iter().map(|p| p.payload.len()).sum::<usize>();
        let p: Vec<usize> = c.frames.iter().filter(|f| !f.keyframe).map(bytes).collect();
        (
            p.iter().sum::<usize>() as f64 / p.len().max(1) as f64,
            bytes(&c.frames[0]),
        )
    }

    /// The quiet scene is quiet in the bitstream at constant quality and not at constant bit rate;
    /// both scene clips loop cleanly like the fault clips.
    #[test]
    fn quiet_scene_costs_few_bytes_at_constant_quality_not_at_constant_rate() {
        gstreamer::init().unwrap();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/video/vtest_sub.mp4");
        let watch = Watch::new(Default::default());
        let vbr = Media::prepare_watched(&path, &watch, Some(RateControl::Vbr)).expect("vbr");
        let (quiet, quiet_key) = sizes(vbr.clip(Variant::Quiet));
        let (busy, _) = sizes(vbr.clip(Variant::Scene));
        eprintln!("vbr: quiet P {quiet:.0} B (keyframe {quiet_key} B), busy P {busy:.0} B");
        assert!(
            busy > 3.0 * quiet,
            "vbr: busy {busy:.0} vs quiet {quiet:.0}"
        );
        assert!(quiet_key > 2_000, "the quiet view is a real picture");
        for v in [Variant::Quiet, Variant::Scene] {
            let c = vbr.clip(v);
            assert!(c.frames[0].keyframe);
            assert!(
                c.frames
                    .windows(2)
                    .all(|w| w[1].ts - w[0].ts == c.frame_duration)
            );
        }
        let cbr = Media::prepare_watched(&path, &watch, Some(RateControl::Cbr)).expect("cbr");
        let (quiet, _) = sizes(cbr.clip(Variant::Quiet));
        let (busy, _) = sizes(cbr.clip(Variant::Scene));
        eprintln!("cbr: quiet P {quiet:.0} B, busy P {busy:.0} B");
        assert!(
            busy < 2.0 * quiet,
            "cbr: busy {busy:.0} vs quiet {quiet:.0}"
        );
        // Without scenes none are made, and the variants fall back to the source.
        let plain = Media::prepare(&path).expect("plain");
        assert!(plain.quiet.is_none() && plain.scene.is_none());
    }
}
