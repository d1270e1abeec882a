//! Decode-stage errors, each with the context a reader needs (camera, codec, decoder kind, element).

use std::sync::Arc;

use super::{DecoderKind, VideoCodec};

/// Why the decode stage could not start, or could not (re)build a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// GStreamer itself could not be initialised.
    #[error("GStreamer could not be initialised: {detail}")]
    Init {
        /// GStreamer's message.
        detail: String,
    },
    /// The config asks for something the stage cannot do.
    #[error("invalid decode config: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// An element the requested decoder kind needs is not installed. Never retried, never replaced by
    /// another kind: install the plugin or configure another decoder.
    #[error(
        "decoder kind `{kind}` needs GStreamer element `{element}` for {codec}, and it is not installed \
         (no fallback: install the plugin or set the decoder to another kind)"
    )]
    ElementMissing {
        /// Requested decoder kind.
        kind: DecoderKind,
        /// Codec whose pipeline needs the element.
        codec: VideoCodec,
        /// The missing element factory name.
        element: String,
    },
    /// The rendered template did not parse into a usable pipeline.
    #[error("{codec} `{kind}` decode pipeline from template {template}: {detail}")]
    Pipeline {
        /// Codec.
        codec: VideoCodec,
        /// Decoder kind.
        kind: DecoderKind,
        /// Template file under `pipelines/`.
        template: &'static str,
        /// GStreamer's message or what was missing.
        detail: String,
    },
    /// The pipeline was built but refused to start (state change failed).
    #[error("{codec} `{kind}` decode pipeline refused to start: {detail}")]
    Start {
        /// Codec.
        codec: VideoCodec,
        /// Decoder kind.
        kind: DecoderKind,
        /// GStreamer's message.
        detail: String,
    },
    /// A worker thread could not be spawned.
    #[error("spawning thread {name}: {source}")]
    Spawn {
        /// Thread name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A per-camera decoder failed; the inner error says how.
    #[error("camera {camera}: {source}")]
    Camera {
        /// Camera id.
        camera: Arc<str>,
        /// What failed.
        source: Box<DecodeError>,
    },
}

impl DecodeError {
    /// Whether trying again later can help (a transient state change or thread spawn failure); a missing
    /// element or a bad template stays broken until the install or config changes.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Start { .. } | Self::Spawn { .. } => true,
            Self::Camera { source, .. } => source.is_retryable(),
            Self::Init { .. }
            | Self::Config { .. }
            | Self::ElementMissing { .. }
            | Self::Pipeline { .. } => false,
        }
    }
}
