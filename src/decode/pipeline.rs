//! One decode pipeline: appsrc → parse → decoder → scale → appsink, built from a template.
//!
//! The pipeline's streaming thread (appsrc's task) does all the decoding; the appsink callback copies each
//! picture out (releasing GStreamer's buffer at once) and the bus sync handler forwards errors; both hand
//! a [`Ctl`] message to the owning worker, which holds all the bookkeeping. Neither ever blocks: the
//! channel is unbounded but holds at most the worker's in-flight limit of pictures.

use bytes::Bytes;
use crossbeam_channel::Sender;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::template::{self, element_names};
use super::{DecodeConfig, DecodeError, DecoderKind, VideoCodec};

/// A picture copied out of the appsink.
pub(crate) struct Picture {
    /// Buffer PTS in ns: the one the worker gave the access unit.
    pub pts: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub data: Vec<u8>,
}

/// Messages from a pipeline's threads to its worker.
pub(crate) enum Ctl {
    /// A decoded picture from the pipeline of this generation.
    Picture { generation: u64, picture: Picture },
    /// The bus reported an error; the pipeline of this generation is dead.
    Error { generation: u64, detail: String },
    /// End of stream reached the bus (after `end_of_stream`): the pipeline is drained.
    Eos { generation: u64 },
    /// Test hook: post an error on this codec's pipeline bus from the worker.
    #[cfg(test)]
    InjectError(VideoCodec),
}

/// A running decode pipeline. Dropping it sets it to Null.
pub(crate) struct DecodePipeline {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
}

impl DecodePipeline {
    /// Renders the template, checks its elements, builds the pipeline, wires the callbacks to `ctl` (their
    /// messages carry `generation`, unique per worker) and sets it PLAYING.
    pub fn build(
        codec: VideoCodec,
        cfg: &DecodeConfig,
        generation: u64,
        ctl: &Sender<Ctl>,
    ) -> Result<Self, DecodeError> {
        let kind = cfg.kind;
        let tpl = template::template(codec, kind);
        let desc = template::render(codec, kind, cfg)?;
        // Check first so that a missing hardware decoder is named as such, not as a parse error.
        for element in element_names(&desc) {
            if gst::ElementFactory::find(element).is_none() {
                return Err(DecodeError::ElementMissing {
                    kind,
                    codec,
                    element: element.to_owned(),
                });
            }
        }
        let bad = |detail: String| DecodeError::Pipeline {
            codec,
            kind,
            template: tpl.name,
            detail,
        };
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| bad(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| bad("description is not a pipeline".to_owned()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| bad("no appsrc named `src`".to_owned()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| bad("no appsink named `sink`".to_owned()))?;

        let pictures = ctl.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    match picture(&sample) {
                        // The worker may be gone at shutdown; nothing to do then.
                        Ok(picture) => {
                            let _ = pictures.send(Ctl::Picture {
                                generation,
                                picture,
                            });
                        }
                        // The access unit stays pending and is reported as lost by the worker.
                        Err(detail) => tracing::warn!(%codec, %detail, "decoded sample unusable"),
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        let bus = pipeline
            .bus()
            .ok_or_else(|| bad("pipeline has no bus".to_owned()))?;
        let events = ctl.clone();
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let from = msg
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    let mut detail = format!("{} (from {from})", e.error());
                    if let Some(debug) = e.debug() {
                        detail.push_str(": ");
                        detail.push_str(debug.as_str());
                    }
                    let _ = events.send(Ctl::Error { generation, detail });
                }
                gst::MessageView::Eos(_) => {
                    let _ = events.send(Ctl::Eos { generation });
                }
                gst::MessageView::Warning(w) => {
                    tracing::debug!(%codec, warning = %w.error(), "decode pipeline warning");
                }
                _ => {}
            }
            // Handled here; nobody pops this bus, so nothing may pile up on it.
            gst::BusSyncReply::Drop
        });

        let this = Self { pipeline, src };
        this.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| DecodeError::Start {
                codec,
                kind,
                detail: e.to_string(),
            })?;
        Ok(this)
    }

    /// Pushes one access unit (zero-copy from `data`) with the given PTS in ns.
    pub fn push(
        &self,
        data: Bytes,
        pts_ns: u64,
        keyframe: bool,
        set_dts: bool,
    ) -> Result<(), String> {
        let mut buffer = gst::Buffer::from_slice(data);
        {
            let b = buffer.make_mut();
            let pts = gst::ClockTime::from_nseconds(pts_ns);
            b.set_pts(pts);
            if set_dts {
                b.set_dts(pts);
            }
            if !keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| format!("appsrc refused the access unit: {e:?}"))
    }

    /// Asks the pipeline to drain; [`Ctl::Eos`] follows once every picture is out.
    pub fn end_of_stream(&self) {
        if let Err(e) = self.src.end_of_stream() {
            tracing::debug!(error = ?e, "end_of_stream refused (pipeline already stopping)");
        }
    }

    /// Posts an error on the bus as an element would (test hook for the error path).
    #[cfg(test)]
    pub fn post_test_error(&self) {
        let msg = gst::message::Error::builder(gst::CoreError::Failed, "injected test error")
            .src(&self.src)
            .build();
        let _ = self.src.post_message(msg);
    }
}

impl Drop for DecodePipeline {
    fn drop(&mut self) {
        // Never called from a streaming thread (only the worker owns pipelines), so this cannot deadlock.
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!(error = %e, "decode pipeline did not go to Null");
        }
    }
}

/// Copies a BGR sample out, stride-aware.
fn picture(sample: &gst::Sample) -> Result<Picture, String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    if info.format() != gst_video::VideoFormat::Bgr {
        return Err(format!("unexpected format {:?}", info.format()));
    }
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| e.to_string())?;
    let stride = usize::try_from(*frame.plane_stride().first().ok_or("no plane")?)
        .map_err(|_| "negative stride".to_owned())?;
    let height = frame.height();
    let rows = usize::try_from(height).map_err(|e| e.to_string())?;
    let plane = frame.plane_data(0).map_err(|e| e.to_string())?;
    let len = stride * rows;
    let data = plane
        .get(..len)
        .ok_or_else(|| format!("plane of {} bytes, need {len}", plane.len()))?
        .to_vec();
    Ok(Picture {
        pts: buffer.pts().map(gst::ClockTime::nseconds),
        width: frame.width(),
        height,
        stride,
        data,
    })
}

/// The decoder kind a pipeline error is about, for messages.
pub(crate) fn describe(codec: VideoCodec, kind: DecoderKind) -> String {
    format!("{codec} `{kind}` pipeline")
}
