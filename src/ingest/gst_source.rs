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
//! byte-stream/AU caps ▸ `appsink sync=true`) linked to parsebin's first H.264/H.265 pad once its caps
//! are known. Nothing is decoded here. V4L2 (raw capture devices) is not supported yet: it needs an
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::{AccessUnit, HANDSHAKE_TIMEOUT, IngestFailure, SessionObserver, StreamInfo};
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
    codec: VideoCodec,
    width: u32,
    height: u32,
    arrival: SystemTime,
}

/// State the pad and element callbacks share with the async task.
#[derive(Default)]
struct Shared {
    pads: Mutex<PadState>,
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
        if klass.contains("Bin") || !(klass.contains("Source") || klass.contains("Demux")) {
            return;
        }
        let name = factory.name().to_string();
        let mut elements = crate::camera::lock(&self.elements);
        if !elements.contains(&name) {
            elements.push(name);
        }
    }

    fn tool(&self) -> String {
        crate::camera::lock(&self.elements).join(" ! ")
    }

    fn ignored(&self) -> String {
        let pads = crate::camera::lock(&self.pads);
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
        let mut pads = crate::camera::lock(&shared.pads);
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
    if let Err(detail) = attach_tail(parse, pad, codec, tx.clone()) {
        post(parse, "link-failed", &detail);
    }
}

/// parsebin has exposed every pad: without a linked video pad there is nothing to ingest.
fn on_no_more_pads(parse: &gst::Element, shared: &Shared) {
    if crate::camera::lock(&shared.pads).linked {
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
    tx: mpsc::Sender<RawAu>,
) -> Result<(), String> {
    let t = tail_template(codec);
    let desc = render(t, &[])?;
    let tail = gst::parse::bin_from_description(&desc, true)
        .map_err(|e| format!("template {}: {e}", t.name))?;
    let sink = tail
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| format!("template {}: no appsink named `sink`", t.name))?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| on_sample(sink, codec, &tx))
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
    tx: &mpsc::Sender<RawAu>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
    let (width, height) = sample.caps().map_or((0, 0), size_of);
    let buffer = sample.buffer_owned().ok_or(gst::FlowError::Error)?;
    let running_ns = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .zip(buffer.pts())
        .and_then(|(segment, pts)| segment.to_running_time(pts))
        .map(gst::ClockTime::nseconds);
    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    let mapped = buffer
        .into_mapped_buffer_readable()
        .map_err(|_| gst::FlowError::Error)?;
    let au = RawAu {
        // Zero-copy: the Bytes owns the GStreamer buffer.
        data: Bytes::from_owner(mapped),
        keyframe,
        running_ns,
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
    crate::camera::lock(&PIPELINES).insert(spec.camera.to_string(), pipeline.downgrade());
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
    let mut info: Option<StreamInfo> = None;
    let mut first_ns: Option<u64> = None;
    let mut last_ns: u64 = 0;
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err((OfflineReason::DecodeError, "source pipeline bus closed".to_owned()));
                };
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        return Err(classify(origin, *had_media, &msg, &e.error(), e.debug().as_deref()));
                    }
                    gst::MessageView::Eos(_) if looping => {
                        // Only when the demuxer refused the SEGMENT seek; the supervisor reopens it.
                        return Err((
                            OfflineReason::Eos,
                            "end of file, and the file cannot be looped seamlessly (the demuxer \
                             refused a segment seek)"
                                .to_owned(),
                        ));
                    }
                    gst::MessageView::Eos(_) => return Ok(()),
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
                let ns = au.running_ns.unwrap_or(last_ns);
                last_ns = ns;
                let first = *first_ns.get_or_insert(ns);
                let pts_90k = i64::try_from((i128::from(ns) - i128::from(first)) * 9 / 100_000)
                    .unwrap_or(i64::MAX);
                let info = match &mut info {
                    Some(info) => {
                        (info.width, info.height) = (au.width, au.height);
                        info
                    }
                    None => {
                        let fresh = info.insert(StreamInfo {
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
                *had_media = true;
                deadline = tokio::time::Instant::now() + spec.stall_after;
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
            () = tokio::time::sleep_until(deadline) => {
                return Err(if info.is_some() {
                    (
                        OfflineReason::Stalled,
                        format!("no access unit for {}s on a playing source", spec.stall_after.as_secs_f32()),
                    )
                } else if started.is_err() {
                    (OfflineReason::DecodeError, "the source pipeline would not start".to_owned())
                } else {
                    (
                        OfflineReason::Timeout,
                        format!(
                            "no video within {}s of opening (pads seen: {})",
                            HANDSHAKE_TIMEOUT.as_secs(),
                            shared.ignored()
                        ),
                    )
                });
            }
        }
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
                format!("{} has no port", redact_url(url)),
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
                format!("{} has no host", redact_url(url)),
            ));
        }
    };
    if addrs.is_empty() {
        return Err((
            OfflineReason::Unreachable,
            format!("{} resolves to no address", redact_url(url)),
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

/// The URL without user name and password.
fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Removes `user:password@` after every `://` in free text (GStreamer debug strings quote URLs).
fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ',')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => rest = &tail[at + 1..],
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
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
    {
        if !extra.is_empty() {
            detail.push_str(" (");
            detail.push_str(&extra.replace('\n', " "));
            detail.push(')');
        }
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
    let mut detail = redact_text(&detail);
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
