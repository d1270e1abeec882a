//! Frame → model input: OpenCV resize (INTER_LINEAR; stretch or letterbox) into a reused canvas, then one
//! pass that swaps channels, normalises through a lookup table and writes NCHW/NHWC f32 into a reused
//! batch buffer. Nothing is allocated per frame.
//!
//! The colour swap happens in that pass (reading B, G, R bytes in the model's order) rather than with
//! `cvtColor`: the same result without a second pass over the picture.

use opencv::core::{Mat, MatTrait, MatTraitConst, MatTraitConstManual, Rect, Scalar, Size};
use opencv::imgproc;

use super::error::InferError;
use super::manifest::{Anchor, ColourOrder, InputSpec, Layout, ResizeMode};
use crate::decode::{DecodedFrame, PixelFormat};

/// How one frame was fitted into the model input, to map boxes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Frame width in pixels.
    pub frame_w: u32,
    /// Frame height in pixels.
    pub frame_h: u32,
    /// Model pixels per frame pixel, horizontally.
    pub scale_x: f32,
    /// Model pixels per frame pixel, vertically.
    pub scale_y: f32,
    /// Left padding in model pixels (letterbox).
    pub pad_x: f32,
    /// Top padding in model pixels (letterbox).
    pub pad_y: f32,
}

impl Geometry {
    /// Plain resize of a `frame_w × frame_h` frame to `in_w × in_h`.
    pub fn stretch(frame_w: u32, frame_h: u32, in_w: u32, in_h: u32) -> Self {
        Self {
            frame_w,
            frame_h,
            scale_x: in_w as f32 / frame_w.max(1) as f32,
            scale_y: in_h as f32 / frame_h.max(1) as f32,
            pad_x: 0.0,
            pad_y: 0.0,
        }
    }

    /// Aspect-preserving fit, centred; also returns the resized rectangle inside the input.
    pub fn letterbox(frame_w: u32, frame_h: u32, in_w: u32, in_h: u32) -> (Self, Rect) {
        Self::fit(frame_w, frame_h, in_w, in_h, Anchor::Centre, None)
    }

    /// Aspect-preserving fit at `anchor`, the scale at most `max_scale` when given (a native-size input
    /// never enlarges the frame: it only pads it to the input's multiple of 32); also returns the
    /// resized rectangle inside the input.
    pub fn fit(
        frame_w: u32,
        frame_h: u32,
        in_w: u32,
        in_h: u32,
        anchor: Anchor,
        max_scale: Option<f64>,
    ) -> (Self, Rect) {
        let (fw, fh) = (frame_w.max(1) as f64, frame_h.max(1) as f64);
        let mut scale = (f64::from(in_w) / fw).min(f64::from(in_h) / fh);
        if let Some(cap) = max_scale {
            scale = scale.min(cap);
        }
        let nw = ((fw * scale).round() as i32).clamp(1, in_w as i32);
        let nh = ((fh * scale).round() as i32).clamp(1, in_h as i32);
        let (px, py) = match anchor {
            Anchor::Centre => ((in_w as i32 - nw) / 2, (in_h as i32 - nh) / 2),
            Anchor::TopLeft => (0, 0),
        };
        (
            Self {
                frame_w,
                frame_h,
                scale_x: nw as f32 / fw as f32,
                scale_y: nh as f32 / fh as f32,
                pad_x: px as f32,
                pad_y: py as f32,
            },
            Rect::new(px, py, nw, nh),
        )
    }

    /// Maps an `[x1, y1, x2, y2]` box in model pixels to frame pixels, clamped to the frame.
    pub fn to_frame(&self, b: [f32; 4]) -> [f32; 4] {
        let (w, h) = (self.frame_w as f32, self.frame_h as f32);
        [
            ((b[0] - self.pad_x) / self.scale_x).clamp(0.0, w),
            ((b[1] - self.pad_y) / self.scale_y).clamp(0.0, h),
            ((b[2] - self.pad_x) / self.scale_x).clamp(0.0, w),
            ((b[3] - self.pad_y) / self.scale_y).clamp(0.0, h),
        ]
    }
}

/// Checks that a frame can be read as `height` rows of `stride` bytes of packed BGR.
pub fn check_frame(frame: &DecodedFrame) -> Result<(), InferError> {
    let bad = |reason: String| InferError::Frame {
        camera: frame.camera.to_string(),
        pts_90k: frame.pts_90k,
        reason,
    };
    let PixelFormat::Bgr = frame.format;
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w == 0 || h == 0 || w > 16_384 || h > 16_384 {
        return Err(bad(format!("size {w}×{h} is out of range 1..=16384")));
    }
    if frame.stride < w * 3 {
        return Err(bad(format!(
            "stride {} < width × 3 = {}",
            frame.stride,
            w * 3
        )));
    }
    if frame.data.len() < frame.stride * h {
        return Err(bad(format!(
            "{} bytes of data, {h} rows of {} bytes need {}",
            frame.data.len(),
            frame.stride,
            frame.stride * h
        )));
    }
    Ok(())
}

/// Turns frames into a model's input batch. One per inference thread.
pub struct Preprocessor {
    model: String,
    spec: InputSpec,
    max_batch: usize,
    /// Normalised value of every byte, per model channel.
    lut: [[f32; 256]; 3],
    /// For model channel c, the byte offset (0 = B, 1 = G, 2 = R) it reads.
    src_channel: [usize; 3],
    /// `height × width` BGR, the resized picture (letterbox: with its padding).
    canvas: Mat,
    /// The letterbox rectangle the canvas padding was last painted for.
    painted: Option<Rect>,
    /// The input size of the batch being filled (native-size models: the first frame's).
    size: (u32, u32),
    buffer: Vec<f32>,
    geometries: Vec<Geometry>,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("model", &self.model)
            .field("len", &self.geometries.len())
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// Allocates the canvas and a batch buffer for `max_batch` images of `spec`.
    pub fn new(model: &str, spec: &InputSpec, max_batch: usize) -> Result<Self, InferError> {
        let cv_err = |e: opencv::Error| InferError::Preprocess {
            model: model.to_owned(),
            camera: "-".to_owned(),
            message: e.to_string(),
        };
        let canvas = Mat::new_rows_cols_with_default(
            spec.height as i32,
            spec.width as i32,
            opencv::core::CV_8UC3,
            Scalar::all(f64::from(spec.pad_value)),
        )
        .map_err(cv_err)?;
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 * spec.scale - spec.mean[c]) / spec.std[c];
            }
        }
        let src_channel = match spec.colour {
            ColourOrder::Rgb => [2, 1, 0],
            ColourOrder::Bgr => [0, 1, 2],
        };
        let image = 3 * spec.width as usize * spec.height as usize;
        Ok(Self {
            model: model.to_owned(),
            spec: spec.clone(),
            max_batch: max_batch.max(1),
            lut,
            src_channel,
            canvas,
            painted: None,
            size: (spec.width, spec.height),
            // Native-size models grow it to the largest batch they meet (then it stays).
            buffer: if spec.native.is_some() {
                Vec::new()
            } else {
                vec![0.0; image * max_batch.max(1)]
            },
            geometries: Vec::with_capacity(max_batch.max(1)),
        })
    }

    /// Values per image (of the batch being filled).
    pub fn image_len(&self) -> usize {
        3 * self.size.0 as usize * self.size.1 as usize
    }

    /// The input `(width, height)` of the batch being filled.
    pub fn input_size(&self) -> (u32, u32) {
        self.size
    }

    /// Starts a new batch (keeps the buffers).
    pub fn clear(&mut self) {
        self.geometries.clear();
    }

    /// Images in the batch so far.
    pub fn len(&self) -> usize {
        self.geometries.len()
    }

    /// No image yet.
    pub fn is_empty(&self) -> bool {
        self.geometries.is_empty()
    }

    /// Most images one batch holds.
    pub fn capacity(&self) -> usize {
        self.max_batch
    }

    /// The batch so far, laid out as the model wants it.
    pub fn input(&self) -> &[f32] {
        &self.buffer[..self.len() * self.image_len()]
    }

    /// How image `i` was fitted.
    pub fn geometries(&self) -> &[Geometry] {
        &self.geometries
    }

    /// Resizes and normalises `frame` into the next slot of the batch.
    pub fn push(&mut self, frame: &DecodedFrame) -> Result<Geometry, InferError> {
        check_frame(frame)?;
        if self.len() >= self.max_batch {
            return Err(InferError::Frame {
                camera: frame.camera.to_string(),
                pts_90k: frame.pts_90k,
                reason: format!(
                    "the batch already holds max_batch = {} frames",
                    self.max_batch
                ),
            });
        }
        let size = self.spec.analysed_size(frame.width, frame.height);
        if size != self.size {
            if !self.is_empty() {
                return Err(InferError::Frame {
                    camera: frame.camera.to_string(),
                    pts_90k: frame.pts_90k,
                    reason: format!(
                        "analysed at {}×{}, but this batch is {}×{}: a batch holds one size",
                        size.0, size.1, self.size.0, self.size.1
                    ),
                });
            }
            self.set_size(size).map_err(|e| InferError::Preprocess {
                model: self.model.clone(),
                camera: frame.camera.to_string(),
                message: e.to_string(),
            })?;
        }
        let need = (self.len() + 1) * self.image_len();
        if self.buffer.len() < need {
            self.buffer.resize(need, 0.0);
        }
        let geometry = self.resize(frame).map_err(|e| InferError::Preprocess {
            model: self.model.clone(),
            camera: frame.camera.to_string(),
            message: e.to_string(),
        })?;
        let slot = self.len();
        self.scatter(slot).map_err(|e| InferError::Preprocess {
            model: self.model.clone(),
            camera: frame.camera.to_string(),
            message: e.to_string(),
        })?;
        self.geometries.push(geometry);
        Ok(geometry)
    }

    /// A canvas for input size `size` (native-size models, when the size changes between batches).
    fn set_size(&mut self, size: (u32, u32)) -> opencv::Result<()> {
        self.canvas = Mat::new_rows_cols_with_default(
            size.1 as i32,
            size.0 as i32,
            opencv::core::CV_8UC3,
            Scalar::all(f64::from(self.spec.pad_value)),
        )?;
        self.painted = None;
        self.size = size;
        Ok(())
    }

    /// OpenCV resize of the frame into the canvas.
    fn resize(&mut self, frame: &DecodedFrame) -> opencv::Result<Geometry> {
        let (w, h) = (frame.width as i32, frame.height as i32);
        let (in_w, in_h) = self.size;
        // `height` rows of `stride` bytes, viewed as `width` BGR pixels per row without copying.
        let rows = Mat::new_rows_cols_with_data::<u8>(
            h,
            frame.stride as i32,
            &frame.data[..frame.stride * frame.height as usize],
        )?;
        let pixels = rows.roi(Rect::new(0, 0, w * 3, h))?;
        let src = pixels.reshape(3, 0)?;
        match self.spec.resize {
            ResizeMode::Stretch => {
                imgproc::resize(
                    &src,
                    &mut self.canvas,
                    Size::new(in_w as i32, in_h as i32),
                    0.0,
                    0.0,
                    imgproc::INTER_LINEAR,
                )?;
                Ok(Geometry::stretch(frame.width, frame.height, in_w, in_h))
            }
            ResizeMode::Letterbox => {
                let max_scale = self.spec.native.map(|max_side| {
                    (f64::from(max_side) / f64::from(frame.width.max(frame.height).max(1))).min(1.0)
                });
                let (geometry, rect) = Geometry::fit(
                    frame.width,
                    frame.height,
                    in_w,
                    in_h,
                    self.spec.anchor,
                    max_scale,
                );
                if self.painted != Some(rect) {
                    self.canvas
                        .set_to_def(&Scalar::all(f64::from(self.spec.pad_value)))?;
                    self.painted = Some(rect);
                }
                let mut dst = self.canvas.roi_mut(rect)?;
                if rect.width == w && rect.height == h {
                    // Native size, no shrinking: a copy, not a resize.
                    src.copy_to(&mut dst)?;
                } else {
                    imgproc::resize(&src, &mut dst, rect.size(), 0.0, 0.0, imgproc::INTER_LINEAR)?;
                }
                Ok(geometry)
            }
        }
    }

    /// Canvas bytes → normalised f32 in slot `slot`, in the model's layout and channel order.
    fn scatter(&mut self, slot: usize) -> opencv::Result<()> {
        let len = self.image_len();
        let hw = len / 3;
        let src = self.canvas.data_bytes()?;
        let out = &mut self.buffer[slot * len..(slot + 1) * len];
        let [s0, s1, s2] = self.src_channel;
        let [l0, l1, l2] = &self.lut;
        match self.spec.layout {
            Layout::Nchw => {
                let (p0, rest) = out.split_at_mut(hw);
                let (p1, p2) = rest.split_at_mut(hw);
                for (((px, o0), o1), o2) in src
                    .chunks_exact(3)
                    .zip(p0.iter_mut())
                    .zip(p1.iter_mut())
                    .zip(p2.iter_mut())
                {
                    *o0 = l0[usize::from(px[s0])];
                    *o1 = l1[usize::from(px[s1])];
                    *o2 = l2[usize::from(px[s2])];
                }
            }
            Layout::Nhwc => {
                for (px, o) in src.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
                    o[0] = l0[usize::from(px[s0])];
                    o[1] = l1[usize::from(px[s1])];
                    o[2] = l2[usize::from(px[s2])];
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;

    fn spec(resize: ResizeMode, colour: ColourOrder, layout: Layout) -> InputSpec {
        InputSpec {
            name: "images".into(),
            width: 8,
            height: 8,
            native: None,
            anchor: Anchor::Centre,
            layout,
            colour,
            resize,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad_value: 114,
        }
    }

    /// A frame filled with one BGR colour, rows padded to `stride`.
    fn solid(w: u32, h: u32, stride: usize, bgr: [u8; 3]) -> DecodedFrame {
        let mut data = vec![0xEE; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                data[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&bgr);
            }
        }
        DecodedFrame {
            camera: Arc::from("cam"),
            pts_90k: 0,
            arrival: SystemTime::UNIX_EPOCH,
            decoded_at: SystemTime::UNIX_EPOCH,
            width: w,
            height: h,
            stride,
            format: PixelFormat::Bgr,
            data,
        }
    }

    #[test]
    fn stretch_swaps_to_rgb_and_normalises_nchw() {
        let mut p = Preprocessor::new(
            "m",
            &spec(ResizeMode::Stretch, ColourOrder::Rgb, Layout::Nchw),
            2,
        )
        .unwrap();
        // Stride padding (0xEE bytes) must not leak into the picture.
        let g = p.push(&solid(16, 4, 16 * 3 + 4, [10, 20, 255])).unwrap();
        assert_eq!(g, Geometry::stretch(16, 4, 8, 8));
        p.push(&solid(4, 4, 12, [0, 0, 0])).unwrap();
        let input = p.input();
        assert_eq!(input.len(), 2 * 3 * 64);
        let first = &input[..192];
        assert!(
            first[..64].iter().all(|v| (*v - 1.0).abs() < 1e-6),
            "R plane"
        );
        assert!(
            first[64..128]
                .iter()
                .all(|v| (*v - 20.0 / 255.0).abs() < 1e-6),
            "G plane"
        );
        assert!(
            first[128..]
                .iter()
                .all(|v| (*v - 10.0 / 255.0).abs() < 1e-6),
            "B plane"
        );
        assert!(input[192..].iter().all(|v| *v == 0.0));
        p.clear();
        assert!(p.is_empty());
        assert!(p.input().is_empty());
    }

    #[test]
    fn bgr_nhwc_with_mean_and_std() {
        let mut s = spec(ResizeMode::Stretch, ColourOrder::Bgr, Layout::Nhwc);
        s.scale = 1.0;
        s.mean = [100.0, 0.0, 50.0];
        s.std = [2.0, 1.0, 5.0];
        let mut p = Preprocessor::new("m", &s, 1).unwrap();
        p.push(&solid(8, 8, 24, [200, 7, 100])).unwrap();
        for px in p.input().chunks_exact(3) {
            assert_eq!(px, [50.0, 7.0, 10.0]);
        }
    }

    #[test]
    fn letterbox_pads_and_maps_back() {
        let mut p = Preprocessor::new(
            "m",
            &spec(ResizeMode::Letterbox, ColourOrder::Bgr, Layout::Nchw),
            1,
        )
        .unwrap();
        // 16×8 → scale 0.5 → 8×4 centred: rows 0-1 and 6-7 are padding.
        let g = p.push(&solid(16, 8, 48, [255, 255, 255])).unwrap();
        assert_eq!((g.pad_x, g.pad_y), (0.0, 2.0));
        assert_eq!((g.scale_x, g.scale_y), (0.5, 0.5));
        let b = &p.input()[..64];
        let pad = 114.0 / 255.0;
        for y in 0..8 {
            let row = &b[y * 8..y * 8 + 8];
            let want = if (2..6).contains(&y) { 1.0 } else { pad };
            assert!(
                row.iter().all(|v| (*v - want).abs() < 1e-6),
                "row {y}: {row:?}"
            );
        }
        // Model box (1, 3)-(5, 5) → frame (2, 2)-(10, 6); boxes in the padding clamp to the frame.
        assert_eq!(g.to_frame([1.0, 3.0, 5.0, 5.0]), [2.0, 2.0, 10.0, 6.0]);
        assert_eq!(g.to_frame([-4.0, 0.0, 9.0, 8.0]), [0.0, 0.0, 16.0, 8.0]);
    }

    #[test]
    fn native_size_copies_at_the_top_left_and_pads_to_32() {
        let mut s = spec(ResizeMode::Letterbox, ColourOrder::Bgr, Layout::Nchw);
        s.native = Some(64);
        s.anchor = Anchor::TopLeft;
        s.scale = 1.0;
        let mut p = Preprocessor::new("m", &s, 2).unwrap();
        // 40×20 → input 64×32, the frame unscaled at (0, 0).
        let g = p.push(&solid(40, 20, 120, [9, 9, 9])).unwrap();
        assert_eq!(p.input_size(), (64, 32));
        assert_eq!(
            (g.scale_x, g.scale_y, g.pad_x, g.pad_y),
            (1.0, 1.0, 0.0, 0.0)
        );
        let plane = &p.input()[..64 * 32];
        assert_eq!(plane[19 * 64 + 39], 9.0, "inside the frame");
        assert_eq!(plane[19 * 64 + 40], 114.0, "right of it: padding");
        assert_eq!(plane[20 * 64], 114.0, "below it: padding");
        // A frame of another size cannot join this batch; after `clear` it sets the next batch's size.
        let e = p
            .push(&solid(20, 40, 60, [1, 1, 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a batch holds one size"), "{e}");
        p.clear();
        p.push(&solid(20, 40, 60, [1, 1, 1])).unwrap();
        assert_eq!(p.input_size(), (32, 64));
        assert_eq!(p.input().len(), 3 * 32 * 64);
        // 128×64 is shrunk to the 64 cap: the same input size as the first frame.
        p.clear();
        let g = p.push(&solid(128, 64, 384, [1, 1, 1])).unwrap();
        assert_eq!((p.input_size(), g.scale_x), ((64, 32), 0.5));
    }

    #[test]
    fn bad_frames_and_a_full_batch_are_errors() {
        let mut p = Preprocessor::new(
            "m",
            &spec(ResizeMode::Stretch, ColourOrder::Rgb, Layout::Nchw),
            1,
        )
        .unwrap();
        let mut f = solid(4, 4, 12, [1, 2, 3]);
        f.data.truncate(40);
        let e = p.push(&f).unwrap_err().to_string();
        assert!(e.contains("camera cam") && e.contains("40 bytes"), "{e}");
        let mut f = solid(4, 4, 12, [1, 2, 3]);
        f.stride = 8;
        assert!(p.push(&f).unwrap_err().to_string().contains("stride 8"));
        p.push(&solid(4, 4, 12, [1, 2, 3])).unwrap();
        let e = p.push(&solid(4, 4, 12, [1, 2, 3])).unwrap_err().to_string();
        assert!(e.contains("max_batch = 1"), "{e}");
    }
}
