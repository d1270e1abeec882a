//! Decode pipeline templates from `pipelines/`, embedded so the binary is self-contained, and their
//! rendering into a `gst-launch` description.

use gstreamer as gst;

use super::{DecodeConfig, DecodeError, DecoderKind, VideoCodec};

/// Bound on appsrc's internal queue. The worker keeps only a few access units in flight, so this is a
/// safety net (a few 1080p keyframes), not where frames wait.
pub(crate) const APPSRC_MAX_BYTES: u64 = 4 << 20;

/// One embedded template.
pub(crate) struct Template {
    /// File name under `pipelines/`.
    pub name: &'static str,
    /// File contents.
    pub text: &'static str,
}

/// The template for a codec and decoder kind.
pub(crate) fn template(codec: VideoCodec, kind: DecoderKind) -> Template {
    macro_rules! t {
        ($name:literal) => {
            Template {
                name: $name,
                text: include_str!(concat!("../../pipelines/", $name)),
            }
        };
    }
    match (codec, kind) {
        (VideoCodec::H264, DecoderKind::Cpu) => t!("decode_h264_cpu.pipeline"),
        (VideoCodec::H265, DecoderKind::Cpu) => t!("decode_h265_cpu.pipeline"),
        (VideoCodec::H264, DecoderKind::Nvdec) => t!("decode_h264_nvdec.pipeline"),
        (VideoCodec::H265, DecoderKind::Nvdec) => t!("decode_h265_nvdec.pipeline"),
        (VideoCodec::H264, DecoderKind::Vaapi) => t!("decode_h264_vaapi.pipeline"),
        (VideoCodec::H265, DecoderKind::Vaapi) => t!("decode_h265_vaapi.pipeline"),
    }
}

/// Caps after the scaler: BGR, and at most `max_width` wide when set. Square pixels are asked for only
/// when scaling, so that videoscale derives the height from the display aspect ratio.
pub(crate) fn output_caps(max_width: u32) -> String {
    if max_width == 0 {
        "video/x-raw,format=BGR".to_owned()
    } else {
        format!(
            "video/x-raw,format=BGR,width=(int)[1,{max_width}],pixel-aspect-ratio=(fraction)1/1"
        )
    }
}

/// Renders the template: drops `#` comment lines, substitutes the placeholders, and checks none is left.
pub(crate) fn render(
    codec: VideoCodec,
    kind: DecoderKind,
    cfg: &DecodeConfig,
) -> Result<String, DecodeError> {
    let t = template(codec, kind);
    let body: Vec<&str> = t
        .text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let desc = body
        .join(" ")
        .replace("{max_bytes}", &APPSRC_MAX_BYTES.to_string())
        .replace("{output_caps}", &output_caps(cfg.max_width));
    if let Some(start) = desc.find('{') {
        let rest = &desc[start..];
        let end = rest.find('}').map_or(rest.len(), |i| i + 1);
        return Err(DecodeError::Pipeline {
            codec,
            kind,
            template: t.name,
            detail: format!("unknown placeholder {}", &rest[..end]),
        });
    }
    Ok(desc)
}

/// Element factory names a rendered description uses (the first word of each `!` segment that is not a
/// caps filter).
pub(crate) fn element_names(desc: &str) -> Vec<&str> {
    desc.split('!')
        .filter_map(|seg| seg.split_whitespace().next())
        .filter(|w| !w.contains('/') && !w.contains('=') && !w.contains('"'))
        .collect()
}

/// Checks that every element of the `codec` pipeline for `kind` is installed, so a caller can report a
/// missing hardware decoder (named, with its kind) before any camera is routed to it.
pub fn check_available(kind: DecoderKind, codec: VideoCodec) -> Result<(), DecodeError> {
    gst::init().map_err(|e| DecodeError::Init {
        detail: e.to_string(),
    })?;
    let desc = render(codec, kind, &DecodeConfig::default())?;
    for element in element_names(&desc) {
        if gst::ElementFactory::find(element).is_none() {
            return Err(DecodeError::ElementMissing {
                kind,
                codec,
                element: element.to_owned(),
            });
        }
    }
    Ok(())
}
