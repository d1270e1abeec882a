//! A decode worker: one named thread that owns a bounded input queue and one pipeline per codec, keeps
//! the pending map (pipeline PTS → camera, original PTS, arrival) and turns pictures into events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError, after, never, select};

use super::pipeline::{Ctl, DecodePipeline, Picture, describe};
use super::{
    DecodeConfig, DecodeDrops, DecodeError, DecodeEvent, DecodedFrame, EncodedFrame, PixelFormat,
    VideoCodec,
};

/// Access units a worker keeps inside a pipeline at first. Small, so that under overload frames wait in
/// the worker's queue, where the oldest can still be dropped, not inside GStreamer.
const INFLIGHT_START: usize = 4;
/// Upper bound when a decoder holds pictures back (reorder delay): a compliant decoder never holds more
/// than 16, so the limit can always grow past it and the worker cannot deadlock waiting for output.
const INFLIGHT_MAX: usize = 24;
/// No picture for this long while at the limit: the decoder is holding pictures back; allow one more.
const STALL: Duration = Duration::from_millis(200);
/// How long shutdown waits for a pipeline to drain after end-of-stream.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pool mode: spacing of the synthetic PTS (any increasing value works; sync=false ignores it).
const SYNTHETIC_STEP_NS: u64 = 1_000_000;
/// Dedicated mode: the first frame's PTS maps to this, leaving room for B-frames presented before it.
const DEDICATED_BASE_NS: u64 = 10_000_000_000;
/// Pool mode: pipelines per worker kept for one picture size each (one thread apiece). Switching sizes on
/// one pipeline works but renegotiates decoder, converter and buffer pools: measured +1.4 ms per switch
/// (768x576 ↔ 384x288). Sizes beyond this share the codec's any-size pipeline.
const MAX_SIZED_PIPELINES: usize = 4;

/// Cumulative counters shared by a pool's workers and its handle.
#[derive(Default)]
pub(crate) struct Counters {
    pub submitted: AtomicU64,
    pub decoded: AtomicU64,
    pub queue_full: AtomicU64,
    pub decode_error: AtomicU64,
    pub not_keyframe: AtomicU64,
    pub restarts: AtomicU64,
}

impl Counters {
    pub fn drops(&self) -> DecodeDrops {
        DecodeDrops {
            queue_full: self.queue_full.load(Ordering::Relaxed),
            decode_error: self.decode_error.load(Ordering::Relaxed),
            not_keyframe: self.not_keyframe.load(Ordering::Relaxed),
        }
    }
}

/// How a worker numbers buffers and what input it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pool: many cameras, keyframes only, synthetic increasing PTS (decode order = output order).
    Shared,
    /// [`super::CameraDecoder`]: one camera, full GOP, PTS from the camera (outputs come in PTS order).
    Dedicated,
}

/// The submit side of a worker: its queue and thread.
pub(crate) struct Lane {
    tx: Sender<EncodedFrame>,
    /// A second receiver, so `submit` can drop the oldest frame itself.
    rx: Receiver<EncodedFrame>,
    /// Set when a frame was dropped; a dedicated worker then waits for the next keyframe.
    resync: Arc<AtomicBool>,
    #[cfg(test)]
    ctl: Sender<Ctl>,
    handle: JoinHandle<()>,
}

impl Lane {
    /// Builds the `eager` pipeline here (so config and install errors come back to the caller) and starts
    /// the worker thread.
    pub fn spawn(
        name: String,
        mode: Mode,
        cfg: DecodeConfig,
        eager: VideoCodec,
        out: Sender<DecodeEvent>,
        counters: Arc<Counters>,
    ) -> Result<Lane, DecodeError> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue);
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let resync = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            name: name.clone(),
            mode,
            cfg,
            input: rx.clone(),
            ctl_tx: ctl_tx.clone(),
            ctl_rx,
            out,
            out_gone: false,
            counters,
            resync: resync.clone(),
            slots: vec![Slot::new(SlotKey::any(eager), 0)],
            inflight: 0,
            limit: INFLIGHT_START,
            next_generation: 1,
            need_keyframe: true,
        };
        worker.slots[0].pipeline = Some(DecodePipeline::build(eager, &cfg, 0, &ctl_tx)?);
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || worker.run())
            .map_err(|source| DecodeError::Spawn { name, source })?;
        Ok(Lane {
            tx,
            rx,
            resync,
            #[cfg(test)]
            ctl: ctl_tx,
            handle,
        })
    }

    /// Queues a frame; when the queue is full the oldest queued frame is dropped and counted. Never blocks.
    pub fn submit(&self, mut frame: EncodedFrame, counters: &Counters) {
        counters.submitted.fetch_add(1, Ordering::Relaxed);
        loop {
            match self.tx.try_send(frame) {
                Ok(()) => return,
                Err(TrySendError::Full(f)) => {
                    frame = f;
                    // The worker may take it first; then there is room on the next try.
                    if let Ok(old) = self.rx.try_recv() {
                        counters.queue_full.fetch_add(1, Ordering::Relaxed);
                        self.resync.store(true, Ordering::Relaxed);
                        tracing::trace!(camera = %old.camera, "decode queue full, dropped oldest");
                    }
                }
                Err(TrySendError::Disconnected(f)) => {
                    // Only if the worker thread died; count it as a load drop, the queue cannot take it.
                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(camera = %f.camera, "decode worker is gone; frame dropped");
                    return;
                }
            }
        }
    }

    /// Frames waiting now.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }

    /// Test hook: make the worker's pipeline for `codec` post a bus error.
    #[cfg(test)]
    pub fn inject_error(&self, codec: VideoCodec) {
        let _ = self.ctl.send(Ctl::InjectError(codec));
    }

    /// Closes the queue; the worker decodes what is queued, drains its pipelines and exits.
    pub fn shutdown(self) {
        let Lane { tx, rx, handle, .. } = self;
        drop(tx);
        drop(rx);
        let name = handle.thread().name().unwrap_or("decode").to_owned();
        if handle.join().is_err() {
            tracing::error!(thread = %name, "decode worker panicked");
        }
    }
}

/// What is known about an access unit inside a pipeline.
struct Pending {
    camera: Arc<str>,
    pts_90k: i64,
    arrival: SystemTime,
}

/// Which frames a pipeline takes: a codec, and in pool mode a picture size (0×0: any size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotKey {
    codec: VideoCodec,
    width: u32,
    height: u32,
}

impl SlotKey {
    fn any(codec: VideoCodec) -> Self {
        Self {
            codec,
            width: 0,
            height: 0,
        }
    }

    fn sized(&self) -> bool {
        self.width > 0
    }
}

/// One pipeline on a worker, with its bookkeeping.
struct Slot {
    key: SlotKey,
    /// Generation of the current pipeline, or of the last one until it is rebuilt.
    generation: u64,
    pipeline: Option<DecodePipeline>,
    /// Pipeline PTS (ns) → access units pushed with it, oldest first.
    pending: BTreeMap<u64, VecDeque<Pending>>,
    /// Shared mode: last synthetic PTS.
    seq: u64,
    /// Dedicated mode: the camera PTS that maps to [`DEDICATED_BASE_NS`].
    base_90k: Option<i64>,
    /// Set once EOS came back during shutdown.
    drained: bool,
    /// The last build failure, so a missing element is logged once, not per frame.
    failed: Option<String>,
}

impl Slot {
    fn new(key: SlotKey, generation: u64) -> Self {
        Self {
            key,
            generation,
            pipeline: None,
            pending: BTreeMap::new(),
            seq: 0,
            base_90k: None,
            drained: false,
            failed: None,
        }
    }
}

struct Worker {
    name: String,
    mode: Mode,
    cfg: DecodeConfig,
    input: Receiver<EncodedFrame>,
    ctl_tx: Sender<Ctl>,
    ctl_rx: Receiver<Ctl>,
    out: Sender<DecodeEvent>,
    out_gone: bool,
    counters: Arc<Counters>,
    resync: Arc<AtomicBool>,
    slots: Vec<Slot>,
    /// Access units pushed and not yet resolved (picture out, or reported lost), over all slots.
    inflight: usize,
    limit: usize,
    next_generation: u64,
    /// Dedicated mode: skip delta frames until a keyframe (at start, after a drop or an error).
    need_keyframe: bool,
}

impl Worker {
    fn run(mut self) {
        let span = tracing::debug_span!("decode", worker = %self.name);
        let _enter = span.enter();
        let closed: Receiver<EncodedFrame> = never();
        loop {
            let at_limit = self.inflight >= self.limit;
            let input = if at_limit { &closed } else { &self.input };
            let stall = if at_limit { after(STALL) } else { never() };
            select! {
                recv(self.ctl_rx) -> msg => {
                    if let Ok(msg) = msg {
                        self.handle(msg);
                    }
                }
                recv(input) -> frame => match frame {
                    Ok(frame) => self.push(frame),
                    Err(_) => break,
                },
                recv(stall) -> _ => {
                    if self.limit < INFLIGHT_MAX {
                        self.limit += 1;
                        tracing::debug!(limit = self.limit, "decoder holds pictures back; in-flight limit raised");
                    }
                }
            }
        }
        self.drain();
    }

    fn push(&mut self, frame: EncodedFrame) {
        if self.mode == Mode::Dedicated {
            if self.resync.swap(false, Ordering::Relaxed) {
                self.need_keyframe = true;
            }
            if self.need_keyframe {
                if !frame.unit.keyframe {
                    self.counters.not_keyframe.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.need_keyframe = false;
            }
        }
        // (The pool lets only keyframes in: DecoderPool::submit.)
        let i = self.slot_for(&frame);
        if self.slots[i].pipeline.is_none() && !self.rebuild(i, &frame.camera) {
            return;
        }
        let pts = match self.pts_for(i, frame.unit.pts_90k) {
            Some(pts) => pts,
            None => {
                // The camera's clock went back: restart the pipeline so PTS increase again.
                self.fail_slot(i, "camera timestamps went backwards; decoder restarted");
                self.slots[i].base_90k = None;
                if !self.rebuild(i, &frame.camera) {
                    return;
                }
                match self.pts_for(i, frame.unit.pts_90k) {
                    Some(pts) => pts,
                    None => return,
                }
            }
        };
        let set_dts = self.mode == Mode::Shared;
        let slot = &mut self.slots[i];
        let Some(pipeline) = slot.pipeline.as_ref() else {
            return;
        };
        let pending = Pending {
            camera: frame.camera,
            pts_90k: frame.unit.pts_90k,
            arrival: frame.unit.arrival,
        };
        match pipeline.push(frame.unit.data, pts, frame.unit.keyframe, set_dts) {
            Ok(()) => {
                slot.pending.entry(pts).or_default().push_back(pending);
                self.inflight += 1;
            }
            Err(detail) => {
                self.lost(vec![pending], &detail);
                self.fail_slot(i, &detail);
            }
        }
    }

    /// The slot for a frame: in pool mode one per known picture size (up to [`MAX_SIZED_PIPELINES`]),
    /// else the codec's any-size slot; created empty if new.
    fn slot_for(&mut self, frame: &EncodedFrame) -> usize {
        let mut key = SlotKey::any(frame.codec);
        if self.mode == Mode::Shared && frame.width > 0 && frame.height > 0 {
            let sized = SlotKey {
                codec: frame.codec,
                width: frame.width,
                height: frame.height,
            };
            let in_use = self.slots.iter().filter(|s| s.key.sized()).count();
            if in_use < MAX_SIZED_PIPELINES || self.slots.iter().any(|s| s.key == sized) {
                key = sized;
            }
        }
        if let Some(i) = self.slots.iter().position(|s| s.key == key) {
            return i;
        }
        // No generation yet: u64::MAX is never handed out, so no message matches it.
        self.slots.push(Slot::new(key, u64::MAX));
        self.slots.len() - 1
    }

    /// Pipeline PTS for an access unit; `None` if a dedicated camera's clock went back past the base.
    fn pts_for(&mut self, i: usize, pts_90k: i64) -> Option<u64> {
        let slot = &mut self.slots[i];
        match self.mode {
            Mode::Shared => {
                slot.seq += SYNTHETIC_STEP_NS;
                Some(slot.seq)
            }
            Mode::Dedicated => {
                let base = *slot.base_90k.get_or_insert(pts_90k);
                let rel_ns =
                    i128::from(pts_90k - base) * 100_000 / 9 + i128::from(DEDICATED_BASE_NS);
                u64::try_from(rel_ns).ok()
            }
        }
    }

    /// Builds slot `i`'s pipeline; on failure reports the frame's camera and returns false.
    fn rebuild(&mut self, i: usize, camera: &Arc<str>) -> bool {
        let generation = self.next_generation;
        self.next_generation += 1;
        let codec = self.slots[i].key.codec;
        match DecodePipeline::build(codec, &self.cfg, generation, &self.ctl_tx) {
            Ok(p) => {
                let slot = &mut self.slots[i];
                slot.pipeline = Some(p);
                slot.generation = generation;
                slot.drained = false;
                slot.failed = None;
                true
            }
            Err(e) => {
                let detail = e.to_string();
                let slot = &mut self.slots[i];
                if slot.failed.as_deref() != Some(detail.as_str()) {
                    tracing::warn!(%codec, error = %detail, "decode pipeline could not be built");
                    slot.failed = Some(detail.clone());
                }
                self.counters.decode_error.fetch_add(1, Ordering::Relaxed);
                self.need_keyframe = true;
                self.emit(DecodeEvent::Error {
                    camera: camera.clone(),
                    detail,
                });
                false
            }
        }
    }

    fn handle(&mut self, msg: Ctl) {
        match msg {
            Ctl::Picture {
                generation,
                picture,
            } => match self.slots.iter().position(|s| s.generation == generation) {
                Some(i) => self.picture(i, picture),
                None => tracing::debug!(generation, "picture from an unknown pipeline ignored"),
            },
            Ctl::Error { generation, detail } => {
                if let Some(i) = self.live_slot(generation) {
                    let what = describe(self.slots[i].key.codec, self.cfg.kind);
                    self.fail_slot(i, &format!("{what} failed: {detail}"));
                }
            }
            Ctl::Eos { generation } => {
                if let Some(i) = self.live_slot(generation) {
                    self.slots[i].drained = true;
                }
            }
            #[cfg(test)]
            Ctl::InjectError(codec) => {
                if let Some(p) = self
                    .slots
                    .iter()
                    .filter(|s| s.key.codec == codec)
                    .find_map(|s| s.pipeline.as_ref())
                {
                    p.post_test_error();
                }
            }
        }
    }

    /// The slot whose running pipeline has this generation.
    fn live_slot(&self, generation: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.generation == generation && s.pipeline.is_some())
    }

    /// Matches a picture to its pending access unit. Pictures leave the decoder in PTS order, so pending
    /// units with a smaller PTS will never come out: the decoder dropped them (corrupt data).
    fn picture(&mut self, i: usize, picture: Picture) {
        let slot = &mut self.slots[i];
        let lost = match picture.pts {
            Some(pts) => {
                let rest = slot.pending.split_off(&pts);
                std::mem::replace(&mut slot.pending, rest)
            }
            None => BTreeMap::new(),
        };
        // Without a PTS, the oldest pending unit is the best guess (decode order = output order).
        let matched = match slot.pending.first_entry() {
            Some(mut e) if picture.pts.is_none_or(|pts| *e.key() == pts) => {
                let p = e.get_mut().pop_front();
                if e.get().is_empty() {
                    e.remove();
                }
                p
            }
            _ => None,
        };
        let lost: Vec<Pending> = lost.into_values().flatten().collect();
        if !lost.is_empty() {
            self.lost(
                lost,
                "decoder produced no picture (corrupt or undecodable access unit)",
            );
        }
        let Some(p) = matched else {
            // Already reported lost (pipeline torn down) or unknown: nothing to attribute it to.
            tracing::debug!(pts = ?picture.pts, "picture without a pending access unit ignored");
            return;
        };
        self.inflight = self.inflight.saturating_sub(1);
        self.counters.decoded.fetch_add(1, Ordering::Relaxed);
        self.emit(DecodeEvent::Frame(DecodedFrame {
            camera: p.camera,
            pts_90k: p.pts_90k,
            arrival: p.arrival,
            decoded_at: SystemTime::now(),
            width: picture.width,
            height: picture.height,
            stride: picture.stride,
            format: PixelFormat::Bgr,
            data: picture.data,
        }));
    }

    /// Tears a failed pipeline down (Null), keeps the pictures it had already delivered, and reports every
    /// access unit still inside it. The slot's next frame rebuilds it.
    fn fail_slot(&mut self, i: usize, detail: &str) {
        let Some(pipeline) = self.slots[i].pipeline.take() else {
            return;
        };
        drop(pipeline);
        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        // Its threads are stopped now; pictures it sent before stopping are still attributable (the slot
        // keeps its generation until the rebuild).
        while let Ok(msg) = self.ctl_rx.try_recv() {
            self.handle(msg);
        }
        let lost: Vec<Pending> = std::mem::take(&mut self.slots[i].pending)
            .into_values()
            .flatten()
            .collect();
        let codec = self.slots[i].key.codec;
        tracing::debug!(%codec, lost = lost.len(), %detail, "decode pipeline torn down");
        self.lost(lost, detail);
        self.need_keyframe = true;
    }

    /// Counts lost access units and sends one error per camera, in order of first loss.
    fn lost(&mut self, lost: Vec<Pending>, detail: &str) {
        if lost.is_empty() {
            return;
        }
        self.inflight = self.inflight.saturating_sub(lost.len());
        self.counters
            .decode_error
            .fetch_add(lost.len() as u64, Ordering::Relaxed);
        let mut by_camera: Vec<(Arc<str>, usize)> = Vec::new();
        for p in lost {
            match by_camera.iter_mut().find(|(c, _)| *c == p.camera) {
                Some((_, n)) => *n += 1,
                None => by_camera.push((p.camera, 1)),
            }
        }
        for (camera, n) in by_camera {
            let detail = if n == 1 {
                detail.to_owned()
            } else {
                format!("{n} access units lost: {detail}")
            };
            self.emit(DecodeEvent::Error { camera, detail });
        }
    }

    /// Sends an event, waiting while the consumer is behind (the input queue absorbs and drops meanwhile).
    fn emit(&mut self, event: DecodeEvent) {
        if self.out_gone {
            return;
        }
        if self.out.send(event).is_err() {
            self.out_gone = true;
            tracing::debug!("decode output channel closed; results are discarded");
        }
    }

    /// Input closed: end every pipeline's stream, wait for the last pictures, then stop.
    fn drain(&mut self) {
        for slot in &mut self.slots {
            match &slot.pipeline {
                Some(p) => p.end_of_stream(),
                None => slot.drained = true,
            }
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.slots.iter().all(|s| s.drained || s.pipeline.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ctl_rx.recv_timeout(left) {
                Ok(msg) => self.handle(msg),
                Err(_) => {
                    tracing::warn!("decode pipeline did not drain in time");
                    break;
                }
            }
        }
        for i in 0..self.slots.len() {
            drop(self.slots[i].pipeline.take());
            let lost: Vec<Pending> = std::mem::take(&mut self.slots[i].pending)
                .into_values()
                .flatten()
                .collect();
            self.lost(lost, "decoder shut down before it produced a picture");
        }
    }
}
