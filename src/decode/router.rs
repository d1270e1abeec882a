//! The decode router. In: access units from the camera stage, each marked keyframe-only or not.
//! Out: [`DecodeEvent`]s from the shared pool (keyframe-only cameras) or from a camera's own
//! decoder (cameras that decode full GOPs). Never blocks: a full decoder queue drops its oldest frame.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CameraDecoder, DecodeConfig, DecodeEvent, DecoderPool, EncodedFrame};
use crate::sync::lock;

/// Keyframe-only cameras share the pool; a camera that decodes full GOPs gets its own decoder,
/// started on its first frame (a decoder that cannot start is reported once and retried on the next
/// keyframe).
pub struct Router {
    pool: Arc<DecoderPool>,
    config: DecodeConfig,
    out: crossbeam_channel::Sender<DecodeEvent>,
    dedicated: std::sync::Mutex<HashMap<Arc<str>, CameraDecoder>>,
}

impl Router {
    /// Routes to `pool`; dedicated decoders are built with `config` and send to `out`.
    pub fn new(
        pool: Arc<DecoderPool>,
        config: DecodeConfig,
        out: crossbeam_channel::Sender<DecodeEvent>,
    ) -> Router {
        Router {
            pool,
            config,
            out,
            dedicated: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Hands `frame` to the shared pool (keyframe-only cameras) or to the camera's own decoder,
    /// starting that on the camera's first keyframe. Never blocks: each decoder's queue drops its
    /// oldest frame when full (counted in its stats).
    pub fn submit(&self, frame: EncodedFrame, keyframe_only: bool) {
        if keyframe_only {
            self.pool.submit(frame);
            return;
        }
        let mut dedicated = lock(&self.dedicated);
        if !dedicated.contains_key(&frame.camera) {
            if !frame.unit.keyframe {
                return;
            }
            match CameraDecoder::start(
                frame.camera.clone(),
                frame.codec,
                self.config,
                self.out.clone(),
            ) {
                Ok(d) => {
                    dedicated.insert(frame.camera.clone(), d);
                }
                Err(e) => {
                    let _ = self.out.try_send(DecodeEvent::Error {
                        camera: frame.camera.clone(),
                        detail: e.to_string(),
                    });
                    return;
                }
            }
        }
        if let Some(d) = dedicated.get(&frame.camera) {
            d.submit(frame);
        }
    }

    /// The camera's session ended: its own decoder (if any) is shut down.
    pub fn release(&self, camera: &str) {
        let removed = lock(&self.dedicated).remove(camera);
        if let Some(d) = removed {
            d.shutdown();
        }
    }

    /// Shuts every decoder down, draining what they hold.
    pub fn shutdown(self) {
        let dedicated = std::mem::take(&mut *lock(&self.dedicated));
        for (_, d) in dedicated {
            d.shutdown();
        }
        match Arc::try_unwrap(self.pool) {
            Ok(pool) => pool.shutdown(),
            Err(_) => tracing::warn!("decoder pool still referenced at shutdown; not drained"),
        }
    }
}
