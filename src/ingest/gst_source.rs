//! GStreamer sources for cameras whose URL is not RTSP: `file://` (looped, paced in real time),
//! `rtmp://`/`rtmps://` and `http://`/`https://` (HLS playlists, HTTP-FLV, MPEG-TS over HTTP).
//!
//! In: a camera URL. Out: the same access units as the RTSP path ([`AccessUnit`], Annex B, parameter sets
//! in-band on every keyframe) handed to the same [`SessionObserver`], and on failure an
//! [`IngestFailure`] with a DOMAIN.md reason — so the keyframe gate, the decoder pool and health see no
//! difference between a retina session and a GStreamer source.
//!
//! The pipeline is a source template from `pipelines/` (`source_file` or `source_uri`: protocol source ▸
//! `parsebin`), plus a codec tail (`source_h264`/`source_h265`: parser with `config-interval=-1` ▸
//! byte-stream/AU caps ▸ `appsink`) linked to parsebin's first H.264/H.265 pad once its caps are known.
//! Files and HLS/DASH are paced on the pipeline clock (appsink `sync`), since they can be read faster than
//! real time; RTMP and progressive HTTP arrive at the sender's pace. A file loops forever through segment
//! seeks, so its timestamps keep growing. Nothing is decoded here. V4L2 (raw capture devices) is not supported yet: it needs an
//! encoder in the pipeline, and such a URL fails at once as `not_found` with a detail saying so.
//!
//! Threads and queueing: the pipeline runs on GStreamer's streaming threads; the appsink callback sends
//! each access unit into a bounded tokio channel of [`AU_CHANNEL`] units that the async task drains into
//! the observer (which never blocks). When the channel is full the streaming thread BLOCKS until there is
//! room: backpressure, never a drop here, because a dropped delta unit would corrupt the GOP for a
//! full-GOP decoder without anyone knowing, and the supervisor's gate and the decoder queue are the one
//! place where frames are dropped and counted. A file then simply plays later; a network source buffers
//! in its own queue and the socket. The channel only fills if the tokio runtime is starved.
//!
//! Teardown: a guard owns the pipeline and sets it to Null on every exit path, including the drop of the
//! future (cancellation). It closes the channel first, so a streaming thread blocked on a full channel
//! wakes up and the state change to Null cannot deadlock. Calls that may wait on a streaming thread
//! (state changes, seeks) run on tokio's blocking pool, never on a runtime worker, except that final Null
//! when the future is dropped.
//!
//! Before the pipeline is built, a network URL's host gets a plain TCP connect (one extra handshake per
//! open), because GStreamer's sources report a refused or unroutable connection only as "internal data
//! stream error"; this classifies `refused`/`unreachable`/`timeout` exactly like the RTSP path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::{
    AccessUnit, HANDSHAKE_TIMEOUT, IngestFailure, SessionObserver, SessionSpec, StreamInfo,
};
use crate::decode::VideoCodec;
use crate::health::OfflineReason;

/// Access units buffered between the streaming thread and the async task (≈3 s at 10 fps). When full,
/// the streaming thread waits (see the module docs).
pub const AU_CHANNEL: usize = 32;

/// The `transport` a GStreamer source reports in [`StreamInfo`].
pub const TRANSPORT: &str = "gstreamer";

/// After a state change failed without an error on the bus, wait this long for one before giving up.
const STATE_FAILURE_GRACE: Duration = Duration::from_secs(1);

/// Longest failure detail kept (GStreamer debug strings can be long).
const MAX_DETAIL: usize = 400;

/// Name of the application messages the pad callbacks post on the bus.
const APP_MESSAGE: &str = "qianliyan-source";

/// What a GStreamer source needs to open a camera.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Camera id, for logs and errors.
    pub camera: Arc<str>,
    /// The URL to open: `file://`, `rtmp(s)://` or `http(s)://` (no credentials inside).
    pub url: url::Url,
    /// No access unit for this long, once media flowed, ends the source as `stalled`.
    pub stall_after: Duration,
}

impl SourceSpec {
    /// The source spec for a camera's session spec. Transport and credentials do not apply: RTMP and
    /// HTTP credentials, where a server needs them, go in the URL.
    pub fn from_session(spec: &SessionSpec) -> Self {
        Self {
            camera: spec.camera.clone(),
            url: spec.url.clone(),
            stall_after: spec.stall_after,
        }
    }
}

/// Runs one session of a camera, whatever its URL: RTSP(S) through retina ([`super::run_session`]),
/// anything else through a GStreamer source ([`run_source`]). Same observer, same failure reasons.
pub async fn run_any(spec: &SessionSpec, observer: &mut dyn SessionObserver) -> IngestFailure {
    if handles(&spec.url) {
        run_source(&SourceSpec::from_session(spec), observer).await
    } else {
        super::run_session(spec, observer).await
    }
}

/// True when `url` is ingested by [`run_source`] rather than by the retina session.
pub fn handles(url: &url::Url) -> bool {
    !matches!(url.scheme(), "rtsp" | "rtsps")
}

/// Opens the source and delivers access units until it fails, with the semantics of
/// [`super::run_session`]: `playing` once, when the first access unit's caps are known, then
/// `access_unit` for every unit. A `file://` source loops forever; a network source that ends is
/// reported as `eos`.
pub async fn run_source(spec: &SourceSpec, observer: &mut dyn SessionObserver) -> IngestFailure {
    let mut had_media = false;
    let result = run_inner(spec, observer, &mut had_media).await;
    let (reason, detail) = match result {
        Ok(()) => (OfflineReason::Eos, "the source ended the stream".to_owned()),
        Err(e) => e,
    };
    IngestFailure {
        camera: spec.camera.clone(),
        reason,
        detail,
        had_media,
    }
}

type Failure = (OfflineReason, String);

/// Which source template a URL uses.
#[derive(Debug, Clone)]
enum Origin {
    /// A local file, looped.
    File(PathBuf),
    /// A network URI for urisourcebin.
    Uri(url::Url),
}

impl Origin {
    fn of(url: &url::Url) -> Result<Self, Failure> {
        match url.scheme() {
            "file" => url.to_file_path().map(Origin::File).map_err(|()| {
                (
                    OfflineReason::NotFound,
                    format!("{url} is not a local file URL"),
                )
            }),
            "rtmp" | "rtmps" | "http" | "https" => Ok(Origin::Uri(url.clone())),
            "v4l2" | "video4linux" | "v4l" | "dev" => Err((
                OfflineReason::NotFound,
                "V4L2 capture devices are not supported yet (raw video would need an encoder in \
                 the source pipeline); stream the device as RTSP or RTMP instead"
                    .to_owned(),
            )),
            "rtsp" | "rtsps" => Err((
                OfflineReason::NotFound,
                "rtsp:// is ingested by the retina session (ingest::run_session), not by a \
                 GStreamer source"
                    .to_owned(),
            )),
            other => Err((
                OfflineReason::NotFound,
                format!("unsupported URL scheme {other}:// for a GStreamer source"),
            )),
        }
    }

    fn is_file(&self) -> bool {
        matches!(self, Origin::File(_))
    }
}

/// One embedded template.
#[derive(Debug, Clone, Copy)]
struct Template {
    /// File name under `pipelines/`.
    name: &'static str,
    /// File contents.
    text: &'static str,
}

macro_rules! template {
    ($name:literal) => {
        Template {
            name: $name,
            text: include_str!(concat!("../../pipelines/", $name)),
        }
    };
}

const FILE_TEMPLATE: Template = template!("source_file.pipeline");
const URI_TEMPLATE: Template = template!("source_uri.pipeline");
const H264_TAIL: Template = template!("source_h264.pipeline");
const H265_TAIL: Template = template!("source_h265.pipeline");

fn tail_template(codec: VideoCodec) -> Template {
    match codec {
        VideoCodec::H264 => H264_TAIL,
        VideoCodec::H265 => H265_TAIL,
    }
}

/// A value as a quoted `gst-launch` string: backslashes and double quotes escaped.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Renders a template: drops `#` comment lines, substitutes `{key}` with the quoted value, and checks no
/// placeholder is left.
fn render(t: Template, values: &[(&str, &str)]) -> Result<String, String> {
    let body: Vec<&str> = t
        .text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut desc = body.join(" ");
    // Check before substituting: a value may legitimately contain braces.
    let mut rest = desc.as_str();
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        let end = tail.find('}').map_or(tail.len(), |i| i + 1);
        let key = &tail[1..end.saturating_sub(1).max(1)];
        if !values.iter().any(|(k, _)| *k == key) {
            return Err(format!(
                "template {}: unknown placeholder {}",
                t.name,
                &tail[..end]
            ));
        }
        rest = &tail[end..];
    }
    for (key, value) in values {
        desc = desc.replace(&format!("{{{key}}}"), &quote(value));
    }
    Ok(desc)
}

/// Codec of a parsed video pad, from its caps' structure name.
fn codec_of(name: &str) -> Option<VideoCodec> {
    match name {
        "video/x-h264" => Some(VideoCodec::H264),
        "video/x-h265" => Some(VideoCodec::H265),
        _ => None,
    }
}

/// Picture size from caps (0 when absent).
fn size_of(caps: &gst::CapsRef) -> (u32, u32) {
    let Some(s) = caps.structure(0) else {
        return (0, 0);
    };
    let get = |f: &str| {
        s.get::<i32>(f)
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    (get("width"), get("height"))
}

/// One access unit as the streaming thread hands it over.
struct RawAu {
    data: Bytes,
    keyframe: bool,
    /// Running time of the buffer's PTS, ns (grows across file loops).
    running_ns: Option<u64>,
    /// First unit of a new segment (a file loop, a seek, an HLS discontinuity).
    new_segment: bool,
    codec: VideoCodec,
    width: u32,
    height: u32,
    arrival: SystemTime,
}

/// State the pad and element callbacks share with the async task.
#[derive(Default)]
struct Shared {
    pads: Mutex<PadState>,
    /// Pace access units on the pipeline clock (appsink `sync`): a file, or an adaptive (HLS/DASH)
    /// stream, which is downloaded ahead in bursts. RTMP and progressive HTTP streams arrive at the
    /// sender's pace already, and their timestamps need not start near zero, so they are not synced.
    pace: AtomicBool,
    /// Factory names of the protocol source and demuxers, in the order they appeared (for `tool`).
    elements: Mutex<Vec<String>>,
}

#[derive(Default)]
struct PadState {
    /// A video pad was linked to a codec tail.
    linked: bool,
    /// Caps names of the pads that were not used.
    ignored: Vec<String>,
}

impl Shared {
    fn note_element(&self, element: &gst::Element) {
        let Some(factory) = element.factory() else {
            return;
        };
        let klass = factory.metadata("klass").unwrap_or("");
        if klass.contains("Adaptive") {
            self.pace.store(true, Ordering::Relaxed);
        }
        if klass.contains("Bin") || !(klass.contains("Source") || klass.contains("Demux")) {
            return;
        }
        let name = factory.name().to_string();
        let mut elements = crate::sync::lock(&self.elements);
        if !elements.contains(&name) {
            elements.push(name);
        }
    }

    fn tool(&self) -> String {
        crate::sync::lock(&self.elements).join(" ! ")
    }

    fn ignored(&self) -> String {
        let pads = crate::sync::lock(&self.pads);
        if pads.ignored.is_empty() {
            "nothing".to_owned()
        } else {
            pads.ignored.join(", ")
        }
    }
}

/// Posts one of our application messages (`kind` = `no-video` or `link-failed`) on the element's bus.
fn post(element: &gst::Element, kind: &str, detail: &str) {
    let s = gst::Structure::builder(APP_MESSAGE)
        .field("kind", kind)
        .field("detail", detail)
        .build();
    if element
        .post_message(gst::message::Application::builder(s).src(element).build())
        .is_err()
    {
        tracing::debug!(
            kind,
            detail,
            "source message not posted (pipeline shutting down)"
        );
    }
}

/// parsebin exposed a pad: link the first H.264/H.265 one to its codec tail; note the others.
fn on_pad_added(parse: &gst::Element, pad: &gst::Pad, shared: &Shared, tx: &mpsc::Sender<RawAu>) {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map_or_else(|| "unknown".to_owned(), |s| s.name().to_string());
    let codec = {
        let mut pads = crate::sync::lock(&shared.pads);
        match codec_of(&name) {
            Some(codec) if !pads.linked => {
                pads.linked = true;
                codec
            }
            _ => {
                pads.ignored.push(name);
                return;
            }
        }
    };
    let pace = shared.pace.load(Ordering::Relaxed);
    if let Err(detail) = attach_tail(parse, pad, codec, pace, tx.clone()) {
        post(parse, "link-failed", &detail);
    }
}

/// parsebin has exposed every pad: without a linked video pad there is nothing to ingest.
fn on_no_more_pads(parse: &gst::Element, shared: &Shared) {
    if crate::sync::lock(&shared.pads).linked {
        return;
    }
    let detail = format!("no H.264/H.265 video track (found: {})", shared.ignored());
    post(parse, "no-video", &detail);
}

/// Builds the codec tail, adds it next to parsebin and links `pad` to it.
fn attach_tail(
    parse: &gst::Element,
    pad: &gst::Pad,
    codec: VideoCodec,
    pace: bool,
    tx: mpsc::Sender<RawAu>,
) -> Result<(), String> {
    let t = tail_template(codec);
    let desc = render(t, &[("sync", if pace { "true" } else { "false" })])?;
    let tail = gst::parse::bin_from_description(&desc, true)
        .map_err(|e| format!("template {}: {e}", t.name))?;
    let sink = tail
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| format!("template {}: no appsink named `sink`", t.name))?;
    // Segment base + 1 of the previous sample (0: none yet), to flag the first unit of each segment.
    let last_segment = AtomicU64::new(0);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| on_sample(sink, codec, &last_segment, &tx))
            .build(),
    );
    let parent = parse
        .parent()
        .and_then(|p| p.downcast::<gst::Bin>().ok())
        .ok_or_else(|| "parsebin is not in a bin".to_owned())?;
    parent
        .add(&tail)
        .map_err(|e| format!("adding the {codec} tail: {e}"))?;
    let sinkpad = tail
        .static_pad("sink")
        .ok_or_else(|| format!("template {}: no unlinked sink pad", t.name))?;
    pad.link(&sinkpad)
        .map_err(|e| format!("linking the {codec} tail: {e:?}"))?;
    tail.sync_state_with_parent()
        .map_err(|e| format!("starting the {codec} tail: {e}"))?;
    Ok(())
}

/// appsink callback (streaming thread): one access unit into the channel, waiting while it is full.
fn on_sample(
    sink: &gst_app::AppSink,
    codec: VideoCodec,
    last_segment: &AtomicU64,
    tx: &mpsc::Sender<RawAu>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
    let (width, height) = sample.caps().map_or((0, 0), size_of);
    let buffer = sample.buffer_owned().ok_or(gst::FlowError::Error)?;
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>());
    let running_ns = segment
        .zip(buffer.pts())
        .and_then(|(segment, pts)| segment.to_running_time(pts))
        .map(gst::ClockTime::nseconds);
    let base = segment
        .and_then(|s| s.base())
        .map_or(1, |b| b.nseconds().saturating_add(1));
    let new_segment = last_segment.swap(base, Ordering::Relaxed) != base;
    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    let mapped = buffer
        .into_mapped_buffer_readable()
        .map_err(|_| gst::FlowError::Error)?;
    let au = RawAu {
        // Zero-copy: the Bytes owns the GStreamer buffer.
        data: Bytes::from_owner(mapped),
        keyframe,
        running_ns,
        new_segment,
        codec,
        width,
        height,
        arrival: SystemTime::now(),
    };
    // Err only once the async side has gone (closed or dropped): stop streaming quietly.
    tx.blocking_send(au).map_err(|_| gst::FlowError::Flushing)?;
    Ok(gst::FlowSuccess::Ok)
}

/// Owns the pipeline and the receiving end of the channel; whatever way the source ends (including
/// the drop of the future), the channel is closed and the pipeline goes to Null.
struct PipelineGuard {
    pipeline: gst::Pipeline,
    rx: mpsc::Receiver<RawAu>,
    stopped: bool,
}

impl PipelineGuard {
    /// Closes the channel (waking a streaming thread blocked on it) and drops what it still holds.
    fn close_channel(&mut self) {
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
    }

    /// Orderly teardown, off the runtime's worker threads.
    async fn stop(mut self) {
        self.close_channel();
        let pipeline = self.pipeline.clone();
        match tokio::task::spawn_blocking(move || set_null(&pipeline)).await {
            Ok(()) => self.stopped = true,
            // The blocking pool is gone (runtime shutting down): Drop does it here instead.
            Err(e) => tracing::debug!(error = %e, "teardown task failed"),
        }
    }
}

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if !self.stopped {
            // Cancellation: no await possible. Safe on this thread: the channel is closed first, so no
            // streaming thread waits on us while Null joins them.
            self.close_channel();
            set_null(&self.pipeline);
        }
    }
}

fn set_null(pipeline: &gst::Pipeline) {
    if let Err(e) = pipeline.set_state(gst::State::Null) {
        tracing::warn!(error = %e, pipeline = %pipeline.name(), "source pipeline did not go to Null");
    }
}

/// Test hook: the pipeline of each camera, weakly, so tests can check it is freed or poke at it.
#[cfg(test)]
static PIPELINES: Mutex<std::collections::BTreeMap<String, glib::WeakRef<gst::Pipeline>>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Runs a GStreamer call that may wait on a streaming thread on the blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        (
            OfflineReason::DecodeError,
            format!("GStreamer control call failed: {e}"),
        )
    })
}

async fn run_inner(
    spec: &SourceSpec,
    observer: &mut dyn SessionObserver,
    had_media: &mut bool,
) -> Result<(), Failure> {
    let origin = Origin::of(&spec.url)?;
    if let Origin::Uri(url) = &origin {
        probe(url).await?;
    }
    gst::init().map_err(|e| (OfflineReason::DecodeError, format!("GStreamer init: {e}")))?;
    let (tx, rx) = mpsc::channel(AU_CHANNEL);
    let shared = Arc::new(Shared::default());
    shared.pace.store(origin.is_file(), Ordering::Relaxed);
    let pipeline = build(spec, &origin, tx, &shared)?;
    let bus = pipeline.bus().ok_or_else(|| {
        (
            OfflineReason::DecodeError,
            "source pipeline has no bus".to_owned(),
        )
    })?;
    // Before the first state change, so no message is missed.
    let mut messages = bus.stream();
    let mut guard = PipelineGuard {
        pipeline: pipeline.clone(),
        rx,
        stopped: false,
    };
    #[cfg(test)]
    crate::sync::lock(&PIPELINES).insert(spec.camera.to_string(), pipeline.downgrade());
    let result = drive(
        spec,
        &origin,
        &pipeline,
        &mut messages,
        &mut guard.rx,
        &shared,
        observer,
        had_media,
    )
    .await;
    guard.stop().await;
    result
}

/// Renders the source template, builds the pipeline and wires parsebin's pads to the codec tail.
fn build(
    spec: &SourceSpec,
    origin: &Origin,
    tx: mpsc::Sender<RawAu>,
    shared: &Arc<Shared>,
) -> Result<gst::Pipeline, Failure> {
    let (t, key, property, value) = match origin {
        Origin::File(path) => {
            let value = path.to_str().ok_or_else(|| {
                (
                    OfflineReason::NotFound,
                    format!("{} is not a UTF-8 path", path.display()),
                )
            })?;
            (FILE_TEMPLATE, "location", "location", value.to_owned())
        }
        Origin::Uri(url) => (URI_TEMPLATE, "uri", "uri", url.to_string()),
    };
    let bad = |detail: String| {
        (
            OfflineReason::DecodeError,
            format!("template {}: {detail}", t.name),
        )
    };
    let desc = render(t, &[(key, &value)]).map_err(|e| (OfflineReason::DecodeError, e))?;
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| bad(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| bad("description is not a pipeline".to_owned()))?;
    pipeline.set_property("name", format!("source-{}", spec.camera));
    let src = pipeline
        .by_name("src")
        .ok_or_else(|| bad("no element named `src`".to_owned()))?;
    // The renderer quotes the value; make sure the element got it verbatim (nothing injected).
    if src.property::<Option<String>>(property).as_deref() != Some(value.as_str()) {
        return Err(bad(format!("{property} did not survive quoting")));
    }
    let parse = pipeline
        .by_name("parse")
        .ok_or_else(|| bad("no element named `parse`".to_owned()))?;

    for element in pipeline.iterate_recurse().into_iter().flatten() {
        shared.note_element(&element);
    }
    let s = shared.clone();
    pipeline.connect_deep_element_added(move |_, _, element| s.note_element(element));
    let s = shared.clone();
    parse.connect_pad_added(move |parse, pad| on_pad_added(parse, pad, &s, &tx));
    let s = shared.clone();
    parse.connect_no_more_pads(move |parse| on_no_more_pads(parse, &s));
    Ok(pipeline)
}

/// The async side: starts the pipeline, handles its bus and hands access units to the observer.
#[allow(clippy::too_many_arguments)]
async fn drive(
    spec: &SourceSpec,
    origin: &Origin,
    pipeline: &gst::Pipeline,
    messages: &mut gst::bus::BusStream,
    rx: &mut mpsc::Receiver<RawAu>,
    shared: &Shared,
    observer: &mut dyn SessionObserver,
    had_media: &mut bool,
) -> Result<(), Failure> {
    let looping = origin.is_file();
    // A file prerolls first so that the looping SEGMENT seek comes before any sample is rendered.
    let target = if looping {
        gst::State::Paused
    } else {
        gst::State::Playing
    };
    let p = pipeline.clone();
    let started = blocking(move || p.set_state(target)).await?;
    let mut deadline = tokio::time::Instant::now()
        + if started.is_ok() {
            HANDSHAKE_TIMEOUT
        } else {
            STATE_FAILURE_GRACE
        };
    let mut seeked = false;
    let mut out = Delivered {
        info: None,
        timeline: Timeline::default(),
        had_media,
    };
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err((OfflineReason::DecodeError, "source pipeline bus closed".to_owned()));
                };
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        let debug = e.debug();
                        // A demuxer whose pads were all left unlinked (no H.264/H.265 among them) may
                        // stop with not-linked before parsebin says no-more-pads.
                        let unlinked = debug.as_deref().is_some_and(|d| d.contains("not-linked"));
                        if unlinked && !*out.had_media && !crate::sync::lock(&shared.pads).linked {
                            return Err((
                                OfflineReason::NotFound,
                                format!("no H.264/H.265 video track (found: {})", shared.ignored()),
                            ));
                        }
                        return Err(classify(origin, *out.had_media, &msg, &e.error(), debug.as_deref()));
                    }
                    gst::MessageView::Eos(_) if looping => {
                        // Only when the demuxer refused the SEGMENT seek; the supervisor reopens it.
                        drain(rx, &mut out, shared, observer);
                        return Err((
                            OfflineReason::Eos,
                            "end of file, and the file cannot be looped seamlessly (the demuxer \
                             refused a segment seek)"
                                .to_owned(),
                        ));
                    }
                    gst::MessageView::Eos(_) => {
                        // EOS reaches the bus after the sink rendered everything; hand over the rest.
                        drain(rx, &mut out, shared, observer);
                        return Ok(());
                    }
                    gst::MessageView::AsyncDone(_) if looping && !seeked => {
                        seeked = true;
                        let p = pipeline.clone();
                        let (seek, state) = blocking(move || {
                            let seek = p.seek(
                                1.0,
                                gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT,
                                gst::SeekType::Set,
                                gst::ClockTime::ZERO,
                                gst::SeekType::None,
                                gst::ClockTime::NONE,
                            );
                            (seek, p.set_state(gst::State::Playing))
                        })
                        .await?;
                        if let Err(e) = seek {
                            tracing::info!(camera_id = %spec.camera, error = %e, "file cannot be looped seamlessly; it plays once per session");
                        }
                        if let Err(e) = state {
                            return Err((OfflineReason::DecodeError, format!("source pipeline would not play: {e}")));
                        }
                    }
                    gst::MessageView::SegmentDone(_) if looping => {
                        let p = pipeline.clone();
                        let seek = blocking(move || {
                            p.seek(
                                1.0,
                                gst::SeekFlags::SEGMENT,
                                gst::SeekType::Set,
                                gst::ClockTime::ZERO,
                                gst::SeekType::None,
                                gst::ClockTime::NONE,
                            )
                        })
                        .await?;
                        if let Err(e) = seek {
                            return Err((OfflineReason::Eos, format!("end of file, and looping it failed: {e}")));
                        }
                    }
                    gst::MessageView::Application(a) => {
                        if let Some(s) = a.structure().filter(|s| s.name() == APP_MESSAGE) {
                            let detail = s.get::<String>("detail").unwrap_or_default();
                            let reason = match s.get::<String>("kind").as_deref() {
                                Ok("no-video") => OfflineReason::NotFound,
                                _ => OfflineReason::DecodeError,
                            };
                            return Err((reason, detail));
                        }
                    }
                    gst::MessageView::Warning(w) => {
                        tracing::debug!(camera_id = %spec.camera, warning = %w.error(), debug = ?w.debug(), "source pipeline warning");
                    }
                    _ => {}
                }
            }
            au = rx.recv() => {
                // The pipeline holds a sender for as long as it lives, so None cannot happen here.
                let Some(au) = au else {
                    return Err((OfflineReason::Eos, "the source pipeline went away".to_owned()));
                };
                deliver(au, &mut out, shared, observer);
                deadline = tokio::time::Instant::now() + spec.stall_after;
            }
            () = tokio::time::sleep_until(deadline) => {
                return Err(if out.info.is_some() {
                    (
                        OfflineReason::Stalled,
                        format!("no access unit for {}s on a playing source", spec.stall_after.as_secs_f32()),
                    )
                } else if !crate::sync::lock(&shared.pads).ignored.is_empty() {
                    // The demuxer showed its streams and none is H.264/H.265 (parsebin said neither
                    // no-more-pads nor not-linked in time).
                    (
                        OfflineReason::NotFound,
                        format!("no H.264/H.265 video track (found: {})", shared.ignored()),
                    )
                } else if started.is_err() {
                    (OfflineReason::DecodeError, "the source pipeline would not start".to_owned())
                } else {
                    (
                        OfflineReason::Timeout,
                        format!(
                            "no stream within {}s of opening",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    )
                });
            }
        }
    }
}

/// What the async side has handed to the observer so far.
struct Delivered<'a> {
    /// The stream as announced by `playing` (None until the first unit).
    info: Option<StreamInfo>,
    timeline: Timeline,
    had_media: &'a mut bool,
}

/// Hands one unit to the observer, announcing `playing` before the first.
fn deliver(
    au: RawAu,
    out: &mut Delivered<'_>,
    shared: &Shared,
    observer: &mut dyn SessionObserver,
) {
    let pts_90k = out.timeline.pts_90k(au.running_ns, au.new_segment);
    let info = match &mut out.info {
        Some(info) => {
            (info.width, info.height) = (au.width, au.height);
            info
        }
        None => {
            let fresh = out.info.insert(StreamInfo {
                codec: au.codec,
                width: au.width,
                height: au.height,
                transport: TRANSPORT,
                tool: Some(shared.tool()),
            });
            observer.playing(fresh);
            fresh
        }
    };
    *out.had_media = true;
    observer.access_unit(
        AccessUnit {
            data: au.data,
            keyframe: au.keyframe,
            pts_90k,
            arrival: au.arrival,
            loss: 0,
        },
        info,
    );
}

/// Hands over the units still in the channel.
fn drain(
    rx: &mut mpsc::Receiver<RawAu>,
    out: &mut Delivered<'_>,
    shared: &Shared,
    observer: &mut dyn SessionObserver,
) {
    while let Ok(au) = rx.try_recv() {
        deliver(au, out, shared, observer);
    }
}

/// Turns running times into `pts_90k` since the first unit, never stepping back at a segment start.
///
/// Running time already grows across file loops (segment seeks accumulate it), but where a file's last
/// frame has no duration the next loop starts ON that frame's time; an HLS discontinuity can even step
/// back. The first unit of a segment that would not move forward is placed one frame interval after
/// the latest unit, and everything after it shifts alike. Within a segment nothing is touched, so
/// B-frame reordering is kept.
#[derive(Debug, Default)]
struct Timeline {
    /// Running time of the first unit.
    first_ns: Option<u64>,
    /// Added to every running time (grows at each non-advancing segment start).
    offset_ns: u64,
    /// Latest (shifted) time handed out.
    latest_ns: Option<u64>,
    /// Last positive step between consecutive units: the frame interval.
    step_ns: u64,
    /// Previous shifted time, for the step.
    prev_ns: Option<u64>,
}

impl Timeline {
    /// Fallback frame interval before two units were seen (25 fps).
    const DEFAULT_STEP_NS: u64 = 40_000_000;

    fn pts_90k(&mut self, running_ns: Option<u64>, new_segment: bool) -> i64 {
        // A unit without a timestamp keeps the previous one's.
        let mut ns = match running_ns {
            Some(rt) => rt.saturating_add(self.offset_ns),
            None => self.prev_ns.unwrap_or(0),
        };
        if let Some(latest) = self.latest_ns.filter(|l| new_segment && ns <= *l) {
            let step = if self.step_ns > 0 {
                self.step_ns
            } else {
                Self::DEFAULT_STEP_NS
            };
            let bump = latest + step - ns;
            self.offset_ns += bump;
            ns += bump;
        }
        if let Some(prev) = self.prev_ns.filter(|p| ns > *p) {
            self.step_ns = ns - prev;
        }
        self.prev_ns = Some(ns);
        self.latest_ns = Some(self.latest_ns.map_or(ns, |l| l.max(ns)));
        let first = *self.first_ns.get_or_insert(ns);
        i64::try_from((i128::from(ns) - i128::from(first)) * 9 / 100_000).unwrap_or(i64::MAX)
    }
}

/// A TCP connect to the URL's host and port, so a refused or unroutable camera is classified exactly
/// (GStreamer's network sources report both as an internal data-flow error).
async fn probe(url: &url::Url) -> Result<(), Failure> {
    let port = url
        .port_or_known_default()
        .or(match url.scheme() {
            "rtmp" => Some(1935),
            "rtmps" => Some(443),
            _ => None,
        })
        .ok_or_else(|| {
            (
                OfflineReason::NotFound,
                format!("{} has no port", crate::config::redact_url(url)),
            )
        })?;
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Domain(host)) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
            {
                Err(_) => {
                    return Err((
                        OfflineReason::Timeout,
                        format!(
                            "resolving {host} took over {}s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Ok(Err(e)) => {
                    return Err((
                        OfflineReason::Unreachable,
                        format!("cannot resolve {host}: {e}"),
                    ));
                }
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
        None => {
            return Err((
                OfflineReason::NotFound,
                format!("{} has no host", crate::config::redact_url(url)),
            ));
        }
    };
    if addrs.is_empty() {
        return Err((
            OfflineReason::Unreachable,
            format!("{} resolves to no address", crate::config::redact_url(url)),
        ));
    }
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio::net::TcpStream::connect(&addrs[..]),
    )
    .await
    {
        Err(_) => Err((
            OfflineReason::Timeout,
            format!(
                "connecting to {} took over {}s",
                addrs[0],
                HANDSHAKE_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) => {
            let reason = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => OfflineReason::Refused,
                std::io::ErrorKind::TimedOut => OfflineReason::Timeout,
                _ => OfflineReason::Unreachable,
            };
            Err((reason, format!("connecting to {}: {e}", addrs[0])))
        }
        Ok(Ok(_stream)) => Ok(()),
    }
}

/// Maps a bus error to a DOMAIN.md reason and a one-line detail naming the element.
fn classify(
    origin: &Origin,
    had_media: bool,
    msg: &gst::Message,
    error: &glib::Error,
    debug: Option<&str>,
) -> Failure {
    let element = msg.src().and_then(|s| s.downcast_ref::<gst::Element>());
    let factory = element.and_then(|e| e.factory());
    let from = factory.as_ref().map_or_else(
        || {
            msg.src()
                .map_or_else(|| "pipeline".to_owned(), |s| s.name().to_string())
        },
        |f| f.name().to_string(),
    );
    let from_source = factory
        .as_ref()
        .and_then(|f| f.metadata("klass").map(|k| k.contains("Source")))
        .unwrap_or(false);
    let mut detail = format!("{from}: {}", error.message().trim_end_matches('.'));
    // Debug strings start with the code location; only a second line says something useful.
    if let Some(extra) = debug
        .and_then(|d| d.split_once('\n'))
        .map(|(_, rest)| rest.trim())
        .filter(|rest| !rest.is_empty())
    {
        detail.push_str(" (");
        detail.push_str(&extra.replace('\n', " "));
        detail.push(')');
    }
    let text = format!("{} {}", error.message(), debug.unwrap_or("")).to_ascii_lowercase();
    let network = || {
        if text.contains("refused") {
            OfflineReason::Refused
        } else if text.contains("401")
            || text.contains("403")
            || text.contains("unauthori")
            || text.contains("forbidden")
        {
            OfflineReason::AuthFailed
        } else if text.contains("404") || text.contains("not found") {
            OfflineReason::NotFound
        } else if text.contains("timed out") || text.contains("timeout") {
            OfflineReason::Timeout
        } else {
            OfflineReason::Unreachable
        }
    };
    let reason = if let Some(code) = error.kind::<gst::ResourceError>() {
        match code {
            // The connection or the file went away mid-stream: the source ended.
            _ if had_media => OfflineReason::Eos,
            gst::ResourceError::NotFound => OfflineReason::NotFound,
            gst::ResourceError::NotAuthorized => OfflineReason::AuthFailed,
            // Opening or reading a local file failed: for a camera, it is not there.
            _ if origin.is_file() => OfflineReason::NotFound,
            _ => network(),
        }
    } else if let Some(code) = error.kind::<gst::StreamError>() {
        match code {
            gst::StreamError::TypeNotFound
            | gst::StreamError::WrongType
            | gst::StreamError::CodecNotFound
            | gst::StreamError::Format
                if !had_media =>
            {
                detail = format!("no playable H.264/H.265 video: {detail}");
                OfflineReason::NotFound
            }
            // A network source that stops with a flow error: before media it never connected
            // properly, after media the connection dropped.
            gst::StreamError::Failed if from_source && !origin.is_file() => {
                if had_media {
                    OfflineReason::Eos
                } else {
                    network()
                }
            }
            _ => OfflineReason::DecodeError,
        }
    } else if error.matches(gst::CoreError::MissingPlugin) {
        detail = format!("missing GStreamer plugin: {detail}");
        OfflineReason::NotFound
    } else {
        OfflineReason::DecodeError
    };
    let mut detail = crate::config::redact_credentials(&detail);
    if detail.len() > MAX_DETAIL {
        let cut = (0..=MAX_DETAIL)
            .rev()
            .find(|i| detail.is_char_boundary(*i))
            .unwrap_or(0);
        detail.truncate(cut);
        detail.push('…');
    }
    (reason, detail)
}

#[cfg(test)]
mod tests {
    //! Real GStreamer against real files, a local HLS server and closed ports.

    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::decode::{DecodeConfig, DecodeEvent, DecoderPool, EncodedFrame};
    use crate::sync::lock;

    fn asset(name: &str) -> PathBuf {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/video")
            .join(name);
        assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
        p
    }

    fn file_url(path: &Path) -> url::Url {
        url::Url::from_file_path(path).unwrap()
    }

    fn spec(camera: &str, url: url::Url) -> SourceSpec {
        SourceSpec {
            camera: Arc::from(camera),
            url,
            stall_after: Duration::from_secs(5),
        }
    }

    /// Runs a gst-launch description to EOS (for cutting test media).
    fn run_to_eos(desc: &str) {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(desc).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("no EOS within 30 s");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            matches!(msg.view(), gst::MessageView::Eos(_)),
            "{desc}: {msg:?}"
        );
    }

    /// A 2.9 s mp4 (29 units) cut from vtest_sub.mp4 (10 fps, keyframes at 0 s and 2 s), so a loop comes
    /// quickly. Its last frame has no duration, so each loop starts on that frame's time (see [`Timeline`]).
    fn cut_clip(dir: &Path) -> PathBuf {
        let out = dir.join("clip.mp4");
        run_to_eos(&format!(
            "filesrc location={} ! qtdemux ! h264parse ! identity eos-after=30 ! mp4mux \
             ! filesink location={}",
            asset("vtest_sub.mp4").display(),
            out.display()
        ));
        out
    }

    /// NAL unit types of an Annex-B H.264 access unit.
    fn nal_types(data: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut i = 0;
        while i + 3 < data.len() {
            if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                types.push(data[i + 3] & 0x1f);
                i += 3;
            } else {
                i += 1;
            }
        }
        types
    }

    #[derive(Default)]
    struct Recorder {
        infos: Vec<StreamInfo>,
        aus: Vec<(Instant, AccessUnit)>,
        au_before_playing: bool,
    }

    impl SessionObserver for Recorder {
        fn playing(&mut self, info: &StreamInfo) {
            self.infos.push(info.clone());
        }

        fn access_unit(&mut self, au: AccessUnit, _info: &StreamInfo) {
            if self.infos.is_empty() {
                self.au_before_playing = true;
            }
            self.aus.push((Instant::now(), au));
        }
    }

    /// Runs the source for at most `limit`; `None` when it was still running (and got cancelled).
    async fn run_for(spec: &SourceSpec, limit: Duration) -> (Recorder, Option<IngestFailure>) {
        let mut rec = Recorder::default();
        let failure = tokio::time::timeout(limit, run_source(spec, &mut rec))
            .await
            .ok();
        (rec, failure)
    }

    async fn expect_failure(spec: &SourceSpec) -> IngestFailure {
        let (rec, failure) = run_for(spec, Duration::from_secs(15)).await;
        let failure = failure.expect("the source should have failed");
        assert!(rec.aus.is_empty(), "{failure}");
        assert!(!failure.had_media);
        failure
    }

    /// Waits until the camera's pipeline is freed (Null, no references left).
    async fn assert_freed(camera: &str) {
        let weak = lock(&PIPELINES).get(camera).cloned().expect("no pipeline");
        for _ in 0..100 {
            if weak.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let p = weak.upgrade().unwrap();
        panic!(
            "pipeline still alive: state {:?}, refcount {}",
            p.current_state(),
            p.ref_count()
        );
    }

    #[test]
    fn templates_render_quote_and_parse() {
        gst::init().unwrap();
        for t in [FILE_TEMPLATE, URI_TEMPLATE, H264_TAIL, H265_TAIL] {
            let values: &[(&str, &str)] = match t.name {
                "source_file.pipeline" => &[("location", "/tmp/a \"b\" \\c {x}.mp4")],
                "source_uri.pipeline" => &[("uri", "http://127.0.0.1:1/a%20b.m3u8?x={y}")],
                _ => &[("sync", "true")],
            };
            let desc = render(t, values).unwrap();
            assert!(!desc.contains('#'), "{}: {desc}", t.name);
            if values[0].0 == "sync" {
                let bin = gst::parse::bin_from_description(&desc, true)
                    .unwrap_or_else(|e| panic!("{}: {e}", t.name));
                assert!(bin.by_name("sink").unwrap().property::<bool>("sync"));
                assert!(bin.static_pad("sink").is_some());
            } else {
                let p = gst::parse::launch(&desc).unwrap_or_else(|e| panic!("{}: {e}", t.name));
                let p = p.downcast::<gst::Bin>().unwrap();
                let src = p.by_name("src").unwrap();
                let (key, value) = values[0];
                assert_eq!(src.property::<Option<String>>(key).as_deref(), Some(value));
                assert!(p.by_name("parse").is_some());
            }
        }
        assert!(
            render(FILE_TEMPLATE, &[])
                .unwrap_err()
                .contains("{location}")
        );
    }

    #[test]
    fn gstreamer_handles_the_non_rtsp_schemes() {
        let u = url::Url::parse("rtmp://user:pw@host:1935/live").unwrap();
        assert!(handles(&u));
        assert!(!handles(&url::Url::parse("rtsp://h/x").unwrap()));
    }

    #[test]
    fn timeline_never_steps_back_at_a_segment_start() {
        let mut t = Timeline::default();
        let ms = |v: u64| Some(v * 1_000_000);
        // 10 fps; the file's last frame (200 ms) has no duration, so the loop restarts at 200 ms.
        assert_eq!(t.pts_90k(ms(1_000), true), 0);
        assert_eq!(t.pts_90k(ms(1_100), false), 9_000);
        assert_eq!(t.pts_90k(ms(1_200), false), 18_000);
        assert_eq!(t.pts_90k(ms(1_200), true), 27_000);
        assert_eq!(t.pts_90k(ms(1_300), false), 36_000);
        // Inside a segment, reordered (B-frame) times are kept as they are.
        assert_eq!(t.pts_90k(ms(1_250), false), 31_500);
        // A discontinuity back in time: placed one interval after the latest.
        assert_eq!(t.pts_90k(ms(0), true), 45_000);
        // No timestamp: the previous one.
        assert_eq!(t.pts_90k(None, false), 45_000);
        // A forward jump at a segment start is kept (5 s after the unit at 0 ms).
        assert_eq!(t.pts_90k(ms(5_000), true), 45_000 + 450_000);
    }

    #[test]
    fn run_source_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let spec = spec("send", url::Url::parse("file:///x").unwrap());
        let mut rec = Recorder::default();
        is_send(&run_source(&spec, &mut rec));
    }

    /// A file camera: real-time pace, keyframes with SPS/PPS, and it loops past the end of the file with
    /// timestamps that keep growing.
    #[tokio::test]
    async fn file_loops_in_real_time_with_parameter_sets_in_band() {
        let dir = tempfile::tempdir().unwrap();
        let clip = cut_clip(dir.path());
        let spec = spec("file-loop", file_url(&clip));
        let started = Instant::now();
        let (rec, failure) = run_for(&spec, Duration::from_secs(9)).await;
        assert!(failure.is_none(), "{failure:?}");
        assert!(!rec.au_before_playing);
        assert_eq!(rec.infos.len(), 1, "playing once");
        let info = &rec.infos[0];
        assert_eq!(info.codec, VideoCodec::H264);
        assert_eq!(info.transport, "gstreamer");
        assert!(info.width > 0 && info.height > 0, "{info:?}");
        let tool = info.tool.as_deref().unwrap();
        assert!(
            tool.contains("filesrc") && tool.contains("qtdemux"),
            "{tool}"
        );

        // ≈10 access units per second of wall time (the clip is 10 fps), not a burst. (Timings are
        // loose: tests share two cores.)
        let n = rec.aus.len();
        assert!((55..=95).contains(&n), "{n} access units in 9 s");
        let (t0, first) = &rec.aus[0];
        assert!(t0.duration_since(started) < Duration::from_secs(3));
        assert!(first.keyframe && first.pts_90k == 0);
        let (t_last, last) = rec.aus.last().unwrap();
        let wall = t_last.duration_since(*t0).as_secs_f64();
        let media = last.pts_90k as f64 / 90_000.0;
        assert!(
            (wall - media).abs() < 0.5,
            "wall {wall:.2}s, media {media:.2}s"
        );
        let rate = (n - 1) as f64 / wall;
        assert!((9.0..=11.0).contains(&rate), "{rate:.1} units/s");

        // Timestamps grow by one frame (100 ms) every time, across the loop points too.
        for pair in rec.aus.windows(2) {
            let step = pair[1].1.pts_90k - pair[0].1.pts_90k;
            assert!(
                (8_000..=10_000).contains(&step),
                "step {step}: {:?}",
                rec.aus
                    .iter()
                    .map(|(_, a)| (a.pts_90k, a.keyframe))
                    .collect::<Vec<_>>()
            );
        }
        // Past the end of the 2.9 s clip at least twice: keyframes at 0, 2, 2.9, 4.9, 5.8 s …
        assert!(media > 6.0, "only {media:.1}s of media");
        let keyframes: Vec<&AccessUnit> = rec
            .aus
            .iter()
            .map(|(_, a)| a)
            .filter(|a| a.keyframe)
            .collect();
        assert!(keyframes.len() >= 5, "{} keyframes", keyframes.len());
        for au in &rec.aus {
            let types = nal_types(&au.1.data);
            assert_eq!(au.1.loss, 0);
            if au.1.keyframe {
                for t in [7, 8, 5] {
                    assert!(types.contains(&t), "keyframe NAL types {types:?}");
                }
            } else {
                assert!(
                    !types.contains(&5) && types.contains(&1),
                    "delta NAL types {types:?}"
                );
            }
        }
        assert_freed("file-loop").await;
    }

    /// The full sample: a keyframe every 2 s at 10 fps, and its keyframes decode through the pool.
    #[tokio::test]
    async fn file_keyframes_decode_through_the_pool() {
        let spec = spec("file-decode", file_url(&asset("vtest_sub.mp4")));
        let (rec, failure) = run_for(&spec, Duration::from_millis(4_500)).await;
        assert!(failure.is_none(), "{failure:?}");
        let info = &rec.infos[0];
        let keyframes: Vec<i64> = rec
            .aus
            .iter()
            .filter(|(_, a)| a.keyframe)
            .map(|(_, a)| a.pts_90k)
            .collect();
        assert_eq!(&keyframes[..3], &[0, 180_000, 360_000], "{keyframes:?}");
        assert!(
            (38..=48).contains(&rec.aus.len()),
            "{} units",
            rec.aus.len()
        );

        let (tx, rx) = crossbeam_channel::bounded(4);
        let pool = DecoderPool::start(DecodeConfig::default(), tx).unwrap();
        let au = &rec
            .aus
            .iter()
            .find(|(_, a)| a.keyframe && a.pts_90k > 0)
            .unwrap()
            .1;
        pool.submit(EncodedFrame {
            camera: spec.camera.clone(),
            codec: info.codec,
            unit: au.clone(),
            width: info.width,
            height: info.height,
        });
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            DecodeEvent::Frame(f) => {
                assert_eq!((f.width, f.height), (info.width, info.height));
                assert_eq!(f.pts_90k, au.pts_90k);
                assert_eq!(&*f.camera, "file-decode");
            }
            DecodeEvent::Error { detail, .. } => panic!("decode error: {detail}"),
        }
        drop(rx);
        pool.shutdown();
    }

    #[tokio::test]
    async fn missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.mp4");
        let f = expect_failure(&spec("file-missing", file_url(&path))).await;
        assert_eq!(f.reason, OfflineReason::NotFound, "{f}");
        assert!(f.detail.contains("nope.mp4"), "{}", f.detail);
        assert_freed("file-missing").await;
    }

    /// A server that answers garbage to RTSP is a protocol error, not `refused`.
    #[tokio::test]
    async fn garbage_answers_are_a_protocol_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HELLO THIS IS NOT RTSP\r\n\r\n").await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        let spec = SessionSpec {
            camera: Arc::from("garbage"),
            url: url::Url::parse(&format!("rtsp://{addr}/live")).unwrap(),
            transport: crate::config::Transport::Tcp,
            credentials: None,
            stall_after: Duration::from_secs(5),
        };
        let mut rec = Recorder::default();
        let f = run_any(&spec, &mut rec).await;
        assert_eq!(f.reason, OfflineReason::ProtocolError, "{f}");
    }

    /// The supervisor's one call: a file URL in a session spec goes to GStreamer, RTSP to retina.
    #[tokio::test]
    async fn run_any_dispatches_on_the_scheme() {
        let session = |camera: &str, url: &str| SessionSpec {
            camera: Arc::from(camera),
            url: url::Url::parse(url).unwrap(),
            transport: crate::config::Transport::Tcp,
            credentials: None,
            stall_after: Duration::from_secs(5),
        };
        let mut rec = Recorder::default();
        let f = run_any(
            &session("any-file", "file:///nonexistent/cam.mp4"),
            &mut rec,
        )
        .await;
        assert_eq!(f.reason, OfflineReason::NotFound, "{f}");
        assert!(f.detail.contains("filesrc"), "{}", f.detail);
        let port = closed_port();
        let url = format!("rtsp://127.0.0.1:{port}/x");
        let f = run_any(&session("any-rtsp", &url), &mut rec).await;
        assert_eq!(f.reason, OfflineReason::Refused, "{f}");
        assert!(!f.detail.contains("GStreamer"), "{}", f.detail);
        assert!(rec.aus.is_empty());
    }

    #[tokio::test]
    async fn text_file_is_not_found_with_a_clear_detail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "camera 17 is on the north gate\n".repeat(200)).unwrap();
        let f = expect_failure(&spec("file-text", file_url(&path))).await;
        assert_eq!(f.reason, OfflineReason::NotFound, "{f}");
        assert!(
            f.detail.starts_with("no playable H.264/H.265 video"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("text file"), "{}", f.detail);
    }

    #[tokio::test]
    async fn other_video_codec_is_not_found_naming_it() {
        // vtest.avi is DivX 3.
        let f = expect_failure(&spec("file-divx", file_url(&asset("vtest.avi")))).await;
        assert_eq!(f.reason, OfflineReason::NotFound, "{f}");
        assert!(f.detail.contains("video/x-divx"), "{}", f.detail);
        assert!(f.detail.contains("no H.264/H.265 video"), "{}", f.detail);
    }

    #[tokio::test]
    async fn audio_only_file_is_not_found_naming_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        run_to_eos(&format!(
            "audiotestsrc num-buffers=20 ! wavenc ! filesink location={}",
            path.display()
        ));
        let f = expect_failure(&spec("file-audio", file_url(&path))).await;
        assert_eq!(f.reason, OfflineReason::NotFound, "{f}");
        assert!(f.detail.contains("audio/x-raw"), "{}", f.detail);
    }

    /// A port nobody listens on: bind, take the port, close.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn closed_http_and_rtmp_ports_are_refused() {
        let port = closed_port();
        for url in [
            format!("http://127.0.0.1:{port}/live/x.m3u8"),
            format!("rtmp://127.0.0.1:{port}/live/x"),
        ] {
            let f = expect_failure(&spec("net-refused", url::Url::parse(&url).unwrap())).await;
            assert_eq!(f.reason, OfflineReason::Refused, "{f}");
            assert!(f.detail.contains(&port.to_string()), "{}", f.detail);
        }
    }

    #[tokio::test]
    async fn unsupported_schemes_say_why() {
        let f = expect_failure(&spec(
            "v4l2",
            url::Url::parse("v4l2:///dev/video0").unwrap(),
        ))
        .await;
        assert_eq!(f.reason, OfflineReason::NotFound);
        assert!(
            f.detail.contains("V4L2") && f.detail.contains("not supported"),
            "{}",
            f.detail
        );
        let f = expect_failure(&spec("rtsp", url::Url::parse("rtsp://h/x").unwrap())).await;
        assert!(f.detail.contains("retina"), "{}", f.detail);
    }

    /// No access unit for `stall_after` once media flowed: `stalled`, with `had_media`.
    #[tokio::test]
    async fn silent_source_is_stalled() {
        let camera = "file-stall";
        let mut spec = spec(camera, file_url(&asset("vtest_sub.mp4")));
        spec.stall_after = Duration::from_secs(1);
        // Once the appsink exists, let 5 buffers through, then block its streaming thread (teardown
        // must still work: Null flushes the pad, which releases a blocking probe).
        let starve = tokio::spawn(async move {
            loop {
                let sink = lock(&PIPELINES)
                    .get(camera)
                    .and_then(|w| w.upgrade())
                    .and_then(|p| p.by_name("sink"));
                if let Some(sink) = sink {
                    let passed = std::sync::atomic::AtomicU32::new(0);
                    sink.static_pad("sink").unwrap().add_probe(
                        gst::PadProbeType::BUFFER | gst::PadProbeType::BLOCK,
                        move |_, _| {
                            if passed.fetch_add(1, Ordering::Relaxed) < 5 {
                                gst::PadProbeReturn::Pass
                            } else {
                                gst::PadProbeReturn::Ok
                            }
                        },
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let started = Instant::now();
        let (rec, failure) = run_for(&spec, Duration::from_secs(10)).await;
        starve.await.unwrap();
        let f = failure.expect("should stall");
        assert_eq!(f.reason, OfflineReason::Stalled, "{f}");
        assert!(f.had_media);
        // The probe lands a few units after the appsink appears.
        assert!(
            !rec.aus.is_empty() && rec.aus.len() <= 12,
            "{}",
            rec.aus.len()
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_freed(camera).await;
    }

    /// Dropping the future (the supervisor's cancellation) takes the pipeline down at once.
    #[tokio::test]
    async fn cancellation_sets_the_pipeline_to_null() {
        let camera = "file-cancel";
        let spec = spec(camera, file_url(&asset("vtest_sub.mp4")));
        let (rec, failure) = run_for(&spec, Duration::from_millis(1_500)).await;
        assert!(failure.is_none());
        assert!(!rec.aus.is_empty());
        assert_freed(camera).await;
    }

    /// Serves the files of `dir` over HTTP/1.1 (one request per connection), like a tiny HLS origin.
    async fn serve(dir: PathBuf) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let dir = dir.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&req);
                    let path = req.split_whitespace().nth(1).unwrap_or("/");
                    let name = path.trim_start_matches('/').split('?').next().unwrap_or("");
                    let reply = match std::fs::read(dir.join(name)) {
                        Ok(body) if !name.contains("..") => {
                            let kind = if name.ends_with(".m3u8") {
                                "application/vnd.apple.mpegurl"
                            } else {
                                "video/mp2t"
                            };
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                                 Connection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        }
                        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = sock.write_all(&reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        port
    }

    /// An HLS playlist over HTTP: the same access units, paced, and `eos` at the end of a VOD playlist;
    /// a playlist that is not there is `not_found`.
    #[tokio::test]
    async fn hls_over_http_yields_paced_access_units_then_eos() {
        let dir = tempfile::tempdir().unwrap();
        let clip = cut_clip(dir.path());
        run_to_eos(&format!(
            "filesrc location={} ! qtdemux ! h264parse ! hlssink2 location={} \
             playlist-location={} target-duration=1 max-files=0 playlist-length=0",
            clip.display(),
            dir.path().join("seg%05d.ts").display(),
            dir.path().join("cam.m3u8").display()
        ));
        let port = serve(dir.path().to_owned()).await;

        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/cam.m3u8")).unwrap();
        let started = Instant::now();
        let (rec, failure) = run_for(&spec("hls", url), Duration::from_secs(15)).await;
        let f = failure.expect("a VOD playlist ends");
        assert_eq!(f.reason, OfflineReason::Eos, "{f}");
        assert!(f.had_media);
        let info = &rec.infos[0];
        assert_eq!(info.codec, VideoCodec::H264);
        let tool = info.tool.as_deref().unwrap();
        assert!(
            tool.contains("souphttpsrc") && tool.contains("tsdemux"),
            "{tool}"
        );
        assert!(
            (25..=31).contains(&rec.aus.len()),
            "{} units",
            rec.aus.len()
        );
        // Paced: ≈3 s of media takes ≈3 s.
        let wall = rec.aus.last().unwrap().0.duration_since(rec.aus[0].0);
        assert!(wall > Duration::from_secs(2), "{wall:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let first = &rec.aus[0].1;
        assert!(first.keyframe);
        let types = nal_types(&first.data);
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
        assert_freed("hls").await;

        // A progressive MPEG-TS over HTTP (like HTTP-FLV): not paced, the sender paces a live one.
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/seg00000.ts")).unwrap();
        let (rec, failure) = run_for(&spec("http-ts", url), Duration::from_secs(15)).await;
        let f = failure.expect("a finite stream ends");
        assert_eq!(f.reason, OfflineReason::Eos, "{f}");
        assert!(
            (18..=21).contains(&rec.aus.len()),
            "{} units",
            rec.aus.len()
        );
        let wall = rec.aus.last().unwrap().0.duration_since(rec.aus[0].0);
        assert!(wall < Duration::from_secs(1), "{wall:?}");
        assert!(rec.aus[0].1.keyframe);

        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/gone.m3u8")).unwrap();
        let f = expect_failure(&spec("hls-404", url)).await;
        assert_eq!(f.reason, OfflineReason::NotFound, "{f}");
    }
}
