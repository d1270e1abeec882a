//! Video-quality diagnosis (视频质量诊断) on one small decoded frame: cheap measurements
//! ([`VqdSample::measure`]) and a per-camera detector ([`VqdDetector`]) that turns them into faults.
//!
//! Calibration on `assets/video/vtest_sub.mp4` (384×288, 795 frames at 10 fps, a real elevated CCTV
//! view of a campus path, decoded with `gst-launch-1.0 … ! videoconvert ! video/x-raw,format=BGR !
//! filesink`): mean luma 116–123; Laplacian variance 1650–2160 sharp, 320–360 after a 5×5 box blur of
//! the source, 140–160 after 7×7, 48–55 after 11×11, 23–27 after 15×15, so the default blur threshold
//! (15) flags only pictures softer than a 15×15 smear of this scene (a lens knocked out of focus);
//! flat fraction 0.0; colour offset D 0.12–0.13 (the scene is yellowish: B − G ≈ −33) with chroma
//! spread M 0.134–0.139, so a threshold on D alone would flag this normal picture and the cast test
//! uses D / M (the "equivalent circle" factor K, cast when K > 1.5) as well; thumbnail difference of
//! consecutive frames: at 10 fps mean 0.10–2.9 / max 4.5–158 (5 of 794 pairs under mean 0.5 and max 8,
//! none under max 3), 1 s apart mean 0.54–7.3 / max 43–202. Hence "same picture" = mean < 0.5 and max
//! < 3: a distant walker or a ticking OSD clock keeps the picture live; a frozen decoder gives 0.
//! See `calibrate_on_vtest` below to re-run it.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::state::QualityFault;
use crate::time::local_hour;

/// Width of the grey picture the measurements run on.
pub const GREY_W: usize = 160;
/// Height of the grey picture the measurements run on.
pub const GREY_H: usize = 120;
const THUMB_W: usize = 32;
const THUMB_H: usize = 24;
const THUMB_CELL: usize = GREY_W / THUMB_W;
/// Side of a texture block.
const BLOCK: usize = 8;
/// A block whose grey range (max − min) is at most this is flat.
const FLAT_RANGE: u8 = 4;

/// A frame that cannot be measured: the caller described its buffer wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VqdError {
    /// Width or height is zero, or the stride is shorter than a row.
    #[error(
        "vqd: bad frame geometry {width}x{height} stride {stride} (BGR needs stride >= 3*width)"
    )]
    Geometry {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per row.
        stride: usize,
    },
    /// The buffer is shorter than the geometry needs.
    #[error("vqd: BGR buffer has {len} bytes, {width}x{height} stride {stride} needs {needed}")]
    ShortBuffer {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per row.
        stride: usize,
    },
}

/// Measurements of one frame, taken on a 160×120 grey copy (plus a 32×24 thumbnail for freeze checks).
#[derive(Clone, PartialEq, Serialize)]
pub struct VqdSample {
    /// Mean luma, 0–255 (BT.601 weights).
    pub mean_luma: f32,
    /// Variance of the 4-neighbour Laplacian of the 160×120 grey picture; low = blurred.
    pub laplacian_var: f32,
    /// Fraction of 8×8 blocks whose grey range is ≤ 4, 0–1.
    pub flat_fraction: f32,
    /// Mean (R − G) / 255, −1–1.
    pub cast_rg: f32,
    /// Mean (B − G) / 255, −1–1.
    pub cast_bg: f32,
    /// Colour-cast strength D: hypot(`cast_rg`, `cast_bg`), 0–~1.4.
    pub cast: f32,
    /// Chroma spread M: hypot of the standard deviations of (R − G) and (B − G), / 255.
    pub chroma_spread: f32,
    /// 5×5 sums of the grey picture (32×24); compared between consecutive samples.
    #[serde(skip)]
    thumb: Box<[u16]>,
}

impl fmt::Debug for VqdSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VqdSample")
            .field("mean_luma", &self.mean_luma)
            .field("laplacian_var", &self.laplacian_var)
            .field("flat_fraction", &self.flat_fraction)
            .field("cast_rg", &self.cast_rg)
            .field("cast_bg", &self.cast_bg)
            .field("chroma_spread", &self.chroma_spread)
            .finish_non_exhaustive()
    }
}

/// Sums of B, G, R, (R−G)² and (B−G)² over one row of BGR pixels.
///
/// Generic so the common unsampled case (`chunks_exact`) compiles to its own tight loop. u32 sums
/// cannot overflow: a row has at most ~640 samples and 640 · 255² < 2³².
#[inline(always)]
fn chroma_row<'a>(pixels: impl Iterator<Item = &'a [u8]>) -> [u32; 5] {
    let (mut b, mut g, mut r, mut q1, mut q2) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for px in pixels {
        let (pb, pg, pr) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        b += pb as u32;
        g += pg as u32;
        r += pr as u32;
        q1 += ((pr - pg) * (pr - pg)) as u32;
        q2 += ((pb - pg) * (pb - pg)) as u32;
    }
    [b, g, r, q1, q2]
}

/// Source range `[start, end)` (in sampled units) feeding each of `out` bins over `n` samples.
fn bins(n: usize, out: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|o| {
            let a = o * n / out;
            let b = ((o + 1) * n / out).max(a + 1).min(n);
            (a, b)
        })
        .collect()
}

impl VqdSample {
    /// Measures a packed BGR frame (`stride` bytes per row, rows may be padded).
    ///
    /// Larger frames are sampled on a grid of about 320×240 points before the 160×120 box
    /// filter, so the cost stays bounded: about 0.19 ms for 384×288 in a release build on a busy
    /// 2-core 2.6 GHz Xeon VM (0.29 ms in the worst run while the VM was overloaded; `measure_cost`).
    pub fn measure(
        bgr: &[u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<VqdSample, VqdError> {
        let geometry = VqdError::Geometry {
            width,
            height,
            stride,
        };
        let (Ok(w), Ok(h)) = (usize::try_from(width), usize::try_from(height)) else {
            return Err(geometry);
        };
        if w == 0 || h == 0 || stride < w.saturating_mul(3) {
            return Err(geometry);
        }
        let needed = stride
            .checked_mul(h - 1)
            .and_then(|n| n.checked_add(w * 3))
            .unwrap_or(usize::MAX);
        if bgr.len() < needed {
            return Err(VqdError::ShortBuffer {
                len: bgr.len(),
                needed,
                width,
                height,
                stride,
            });
        }
        let (width, height) = (w, h);
        let sx = (width / (2 * GREY_W)).max(1);
        let sy = (height / (2 * GREY_H)).max(1);
        let nx = width.div_ceil(sx);
        let ny = height.div_ceil(sy);
        let xb = bins(nx, GREY_W);
        let yb = bins(ny, GREY_H);

        // 1 / (rows · columns) of every output pixel in 8.24 fixed point, by rows per output row
        // (a handful of distinct counts): no division per pixel.
        let max_rows = yb.iter().map(|&(a, b)| b - a).max().unwrap_or(1);
        let recip: Vec<Vec<u64>> = (0..=max_rows)
            .map(|rows| {
                xb.iter()
                    .map(|&(x0, x1)| {
                        let n = (rows.max(1) * (x1 - x0)) as u64;
                        ((1u64 << 24) + n / 2) / n
                    })
                    .collect()
            })
            .collect();
        // Luma is linear, so the box filter sums B, G and R down each column of samples (a plain
        // widening add over the row's bytes, which vectorises) and converts a bin's sums once.
        // u16 is enough: `sy` keeps a bin to at most 5 sample rows, 5 · 255 < 2¹⁶.
        let mut vacc = vec![0u16; 3 * nx];
        let mut grey = vec![0u8; GREY_W * GREY_H];
        let mut chroma = [0u64; 5];
        let mut chroma_rows = 0usize;
        let mut last_row = usize::MAX;
        for (oy, &(y0, y1)) in yb.iter().enumerate() {
            vacc.fill(0);
            for j in y0..y1 {
                let start = j * sy * stride;
                let row = &bgr[start..start + width * 3];
                if sx == 1 {
                    for (a, &v) in vacc.iter_mut().zip(row) {
                        *a += u16::from(v);
                    }
                } else {
                    for (a, px) in vacc
                        .chunks_exact_mut(3)
                        .zip(row.chunks_exact(3).step_by(sx))
                    {
                        a[0] += u16::from(px[0]);
                        a[1] += u16::from(px[1]);
                        a[2] += u16::from(px[2]);
                    }
                }
                // Colour statistics describe the whole scene: every other row is plenty.
                if j % 2 == 0 && j != last_row {
                    let sums = if sx == 1 {
                        chroma_row(row.chunks_exact(3))
                    } else {
                        chroma_row(row.chunks_exact(3).step_by(sx))
                    };
                    for (c, v) in chroma.iter_mut().zip(sums) {
                        *c += u64::from(v);
                    }
                    chroma_rows += 1;
                }
                last_row = j;
            }
            let out = &mut grey[oy * GREY_W..(oy + 1) * GREY_W];
            for ((o, &(x0, x1)), &inv) in out.iter_mut().zip(xb.iter()).zip(recip[y1 - y0].iter()) {
                let (mut b, mut g, mut r) = (0u64, 0u64, 0u64);
                for px in vacc[3 * x0..3 * x1].chunks_exact(3) {
                    b += u64::from(px[0]);
                    g += u64::from(px[1]);
                    r += u64::from(px[2]);
                }
                // BT.601 weights in 8.8 fixed point (they sum to 256), times 1/n in 8.24.
                let luma = 29 * b + 150 * g + 77 * r;
                *o = ((luma * inv + (1 << 31)) >> 32).min(255) as u8;
            }
        }
        let [sb, sg, sr, qrg, qbg] = chroma;
        let npx = (nx * chroma_rows.max(1)) as f64;
        let cast_rg = ((sr as f64 - sg as f64) / npx / 255.0) as f32;
        let cast_bg = ((sb as f64 - sg as f64) / npx / 255.0) as f32;
        let var_rg = qrg as f64 / npx / 65025.0 - f64::from(cast_rg).powi(2);
        let var_bg = qbg as f64 / npx / 65025.0 - f64::from(cast_bg).powi(2);
        let spread = (var_rg.max(0.0) + var_bg.max(0.0)).sqrt() as f32;
        Ok(Self::from_grey(&grey, cast_rg, cast_bg, spread))
    }

    /// Measurements of a 160×120 grey picture with the given chroma offsets.
    fn from_grey(grey: &[u8], cast_rg: f32, cast_bg: f32, chroma_spread: f32) -> VqdSample {
        debug_assert_eq!(grey.len(), GREY_W * GREY_H);
        let sum: u64 = grey.iter().map(|&v| u64::from(v)).sum();
        let mean_luma = (sum as f64 / (GREY_W * GREY_H) as f64) as f32;

        let (mut ls, mut ls2) = (0i64, 0i64);
        for y in 1..GREY_H - 1 {
            let up = &grey[(y - 1) * GREY_W..y * GREY_W];
            let mid = &grey[y * GREY_W..(y + 1) * GREY_W];
            let down = &grey[(y + 1) * GREY_W..(y + 2) * GREY_W];
            for x in 1..GREY_W - 1 {
                let l = 4 * i32::from(mid[x])
                    - i32::from(mid[x - 1])
                    - i32::from(mid[x + 1])
                    - i32::from(up[x])
                    - i32::from(down[x]);
                ls += i64::from(l);
                ls2 += i64::from(l * l);
            }
        }
        let n = ((GREY_W - 2) * (GREY_H - 2)) as f64;
        let lm = ls as f64 / n;
        let laplacian_var = (ls2 as f64 / n - lm * lm).max(0.0) as f32;

        let (bw, bh) = (GREY_W / BLOCK, GREY_H / BLOCK);
        let mut flat = 0usize;
        for by in 0..bh {
            for bx in 0..bw {
                let (mut lo, mut hi) = (u8::MAX, u8::MIN);
                for y in by * BLOCK..(by + 1) * BLOCK {
                    for &v in &grey[y * GREY_W + bx * BLOCK..y * GREY_W + (bx + 1) * BLOCK] {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
                if hi - lo <= FLAT_RANGE {
                    flat += 1;
                }
            }
        }
        let flat_fraction = flat as f32 / (bw * bh) as f32;

        let mut thumb = vec![0u16; THUMB_W * THUMB_H].into_boxed_slice();
        for y in 0..GREY_H {
            let ty = y / THUMB_CELL;
            for (x, &v) in grey[y * GREY_W..(y + 1) * GREY_W].iter().enumerate() {
                thumb[ty * THUMB_W + x / THUMB_CELL] += u16::from(v);
            }
        }

        VqdSample {
            mean_luma,
            laplacian_var,
            flat_fraction,
            cast_rg,
            cast_bg,
            cast: cast_rg.hypot(cast_bg),
            chroma_spread,
            thumb,
        }
    }

    /// The 32×24 thumbnail as mean grey levels per cell, row by row (the activity stage's picture
    /// difference runs on it: one pass over the frame serves both).
    pub fn cell_means(&self) -> Vec<f32> {
        let cell = (THUMB_CELL * THUMB_CELL) as f32;
        self.thumb.iter().map(|&v| f32::from(v) / cell).collect()
    }

    /// Mean and max absolute difference between the two 32×24 thumbnails, in grey levels.
    pub fn diff(&self, other: &VqdSample) -> (f32, f32) {
        let (mut sum, mut max) = (0u32, 0u16);
        for (&a, &b) in self.thumb.iter().zip(other.thumb.iter()) {
            let d = a.abs_diff(b);
            sum += u32::from(d);
            max = max.max(d);
        }
        let cell = (THUMB_CELL * THUMB_CELL) as f32;
        (
            sum as f32 / (self.thumb.len() as f32 * cell),
            f32::from(max) / cell,
        )
    }
}

/// Night hours with their own darkness threshold (local time, UTC+8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NightOverride {
    /// First night hour, 0–23 (e.g. 19).
    pub start_hour: u8,
    /// First day hour, 0–23 (e.g. 6); may be below `start_hour` (wraps midnight).
    pub end_hour: u8,
    /// Mean luma below this is dark at night (e.g. 8).
    pub dark_below: f32,
}

impl NightOverride {
    /// True when local hour `h` is a night hour.
    pub fn contains_hour(&self, h: u32) -> bool {
        let (s, e) = (u32::from(self.start_hour), u32::from(self.end_hour));
        if s <= e {
            (s..e).contains(&h)
        } else {
            h >= s || h < e
        }
    }
}

/// Thresholds of the quality detectors; per camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqdConfig {
    /// Mean luma below this is `dark` (DOMAIN.md: 30).
    pub dark_below: f32,
    /// Mean luma above this is `overexposed` (DOMAIN.md: 220).
    pub overexposed_above: f32,
    /// Laplacian variance below this is `blur` (0 disables).
    pub blur_below: f32,
    /// Occlusion needs the flat fraction above this …
    pub occlusion_flat_above: f32,
    /// … and at least this much above the camera's baseline.
    pub occlusion_rise: f32,
    /// Weight of each fault-free sample in the flat-fraction baseline (slow EWMA).
    pub baseline_alpha: f32,
    /// A colour cast needs the mean chroma offset D (`cast`) above this …
    pub cast_above: f32,
    /// … and D / M (offset over chroma spread) above this (1.5 in the colour-cast literature).
    pub cast_ratio_above: f32,
    /// Consecutive samples whose thumbnails differ by less than this on average are the same picture …
    pub frozen_diff_below: f32,
    /// … provided no thumbnail cell changed by this much (a ticking OSD clock keeps a live picture live).
    pub frozen_max_diff_below: f32,
    /// This many consecutive same pictures is `frozen` (0 disables).
    pub frozen_samples: u32,
    /// Night hours with a lower darkness threshold.
    pub night: Option<NightOverride>,
}

impl Default for VqdConfig {
    fn default() -> Self {
        Self {
            dark_below: 30.0,
            overexposed_above: 220.0,
            blur_below: 15.0,
            occlusion_flat_above: 0.6,
            occlusion_rise: 0.3,
            baseline_alpha: 0.02,
            cast_above: 0.06,
            cast_ratio_above: 1.5,
            frozen_diff_below: 0.5,
            frozen_max_diff_below: 3.0,
            frozen_samples: 5,
            night: None,
        }
    }
}

impl VqdConfig {
    /// The darkness threshold in force at `wall` (the night one during night hours, UTC+8).
    pub fn dark_below_at(&self, wall: SystemTime) -> f32 {
        match self.night {
            Some(n) if n.contains_hour(local_hour(wall)) => n.dark_below,
            _ => self.dark_below,
        }
    }
}

/// Per-camera detector state: the previous sample, the same-picture run and the flat baseline.
#[derive(Debug, Clone, Default)]
pub struct VqdDetector {
    prev: Option<VqdSample>,
    same_run: u32,
    baseline: Option<f32>,
}

impl VqdDetector {
    /// A detector with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The faults this sample shows (sorted), updating the history.
    ///
    /// One cause, one fault: a dark or overexposed picture reports only that (its texture, colour
    /// and motion mean nothing), and an occluded one does not also report blur. The baseline starts
    /// at the first sample's flat fraction, so a camera covered before it was first seen is not
    /// reported as occluded.
    pub fn assess(
        &mut self,
        s: &VqdSample,
        cfg: &VqdConfig,
        wall: SystemTime,
    ) -> Vec<QualityFault> {
        let dark = s.mean_luma < cfg.dark_below_at(wall);
        let over = s.mean_luma > cfg.overexposed_above;
        self.same_run = match &self.prev {
            Some(p) => {
                let (mean, max) = p.diff(s);
                if mean < cfg.frozen_diff_below && max < cfg.frozen_max_diff_below {
                    self.same_run.saturating_add(1)
                } else {
                    1
                }
            }
            None => 1,
        };
        let base = *self.baseline.get_or_insert(s.flat_fraction);

        let exposure = dark || over;
        let frozen = !exposure && cfg.frozen_samples > 0 && self.same_run >= cfg.frozen_samples;
        let occlusion = !exposure
            && s.flat_fraction > cfg.occlusion_flat_above
            && s.flat_fraction - base >= cfg.occlusion_rise;
        let blur = !exposure && !occlusion && s.laplacian_var < cfg.blur_below;
        let cast =
            !exposure && s.cast > cfg.cast_above && s.cast > cfg.cast_ratio_above * s.chroma_spread;

        let mut out = Vec::new();
        for (on, f) in [
            (frozen, QualityFault::Frozen),
            (dark, QualityFault::Dark),
            (over, QualityFault::Overexposed),
            (blur, QualityFault::Blur),
            (occlusion, QualityFault::Occlusion),
            (cast, QualityFault::ColorCast),
        ] {
            if on {
                out.push(f);
            }
        }
        if out.is_empty() {
            self.baseline = Some(base + cfg.baseline_alpha * (s.flat_fraction - base));
        }
        self.prev = Some(s.clone());
        out
    }

    /// Forgets the previous picture and the same-picture run (after an outage); keeps the baseline.
    pub fn reset(&mut self) {
        self.prev = None;
        self.same_run = 0;
    }

    /// The flat-fraction baseline, once a sample was seen.
    pub fn baseline(&self) -> Option<f32> {
        self.baseline
    }

    /// The last sample assessed.
    pub fn last(&self) -> Option<&VqdSample> {
        self.prev.as_ref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const W: usize = 384;
    pub(crate) const H: usize = 288;

    /// xorshift noise, deterministic.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 24) as u8
        }
    }

    /// A textured grey frame: smooth gradient plus ±`amp` noise.
    pub(crate) fn noisy(seed: u64, amp: u8) -> Vec<u8> {
        let mut rng = Rng(seed | 1);
        let mut f = vec![0u8; W * H * 3];
        for y in 0..H {
            for x in 0..W {
                let base = 60 + (x * 80 / W) as i32 + (y * 40 / H) as i32;
                let n = i32::from(rng.next() % (2 * amp + 1)) - i32::from(amp);
                let v = (base + n).clamp(0, 255) as u8;
                let i = (y * W + x) * 3;
                f[i..i + 3].copy_from_slice(&[v, v, v]);
            }
        }
        f
    }

    fn solid(b: u8, g: u8, r: u8) -> Vec<u8> {
        [b, g, r].repeat(W * H)
    }

    fn box_blur(src: &[u8], k: usize) -> Vec<u8> {
        let r = k / 2;
        let mut out = src.to_vec();
        for y in 0..H {
            for x in 0..W {
                for c in 0..3 {
                    let (mut s, mut n) = (0u32, 0u32);
                    for yy in y.saturating_sub(r)..(y + r + 1).min(H) {
                        for xx in x.saturating_sub(r)..(x + r + 1).min(W) {
                            s += u32::from(src[(yy * W + xx) * 3 + c]);
                            n += 1;
                        }
                    }
                    out[(y * W + x) * 3 + c] = (s / n) as u8;
                }
            }
        }
        out
    }

    fn m(f: &[u8]) -> VqdSample {
        VqdSample::measure(f, W as u32, H as u32, W * 3).unwrap()
    }

    fn day() -> SystemTime {
        // 2024-06-01 12:00 CST.
        crate::time::from_unix_ms(crate::time::cst_ms(2024, 6, 1, 12, 0, 0))
    }

    /// A detector that has seen a few normal frames (baseline set, picture moving).
    fn warmed(cfg: &VqdConfig) -> VqdDetector {
        let mut d = VqdDetector::new();
        for seed in 1..4 {
            assert!(d.assess(&m(&noisy(seed, 40)), cfg, day()).is_empty());
        }
        d
    }

    #[test]
    fn geometry_errors() {
        let f = vec![0u8; 100];
        assert!(matches!(
            VqdSample::measure(&f, 0, 10, 30),
            Err(VqdError::Geometry { .. })
        ));
        assert!(matches!(
            VqdSample::measure(&f, 10, 10, 29),
            Err(VqdError::Geometry { .. })
        ));
        assert!(matches!(
            VqdSample::measure(&f, 10, 10, 30),
            Err(VqdError::ShortBuffer { needed: 300, .. })
        ));
    }

    #[test]
    fn normal_textured_frames_trigger_nothing() {
        let cfg = VqdConfig::default();
        let mut d = VqdDetector::new();
        for seed in 1..20 {
            let s = m(&noisy(seed, 40));
            assert!(s.laplacian_var > 100.0, "{s:?}");
            assert!(s.flat_fraction < 0.05, "{s:?}");
            assert!(s.cast < 0.01, "{s:?}");
            assert_eq!(d.assess(&s, &cfg, day()), vec![], "{s:?}");
        }
    }

    #[test]
    fn black_frame_is_dark_only() {
        let cfg = VqdConfig::default();
        let mut d = warmed(&cfg);
        let black = m(&solid(3, 3, 3));
        assert!(black.mean_luma < 5.0);
        for _ in 0..10 {
            assert_eq!(d.assess(&black, &cfg, day()), vec![QualityFault::Dark]);
        }
    }

    #[test]
    fn night_override_lowers_dark_threshold() {
        let cfg = VqdConfig {
            night: Some(NightOverride {
                start_hour: 19,
                end_hour: 6,
                dark_below: 10.0,
            }),
            ..VqdConfig::default()
        };
        let night = crate::time::from_unix_ms(crate::time::cst_ms(2024, 6, 1, 23, 30, 0));
        assert_eq!(cfg.dark_below_at(night), 10.0);
        assert_eq!(cfg.dark_below_at(day()), 30.0);
        // A dim but textured night picture.
        let dim: Vec<u8> = noisy(5, 40).iter().map(|&v| v / 4).collect();
        let s = m(&dim);
        assert!(s.mean_luma > 10.0 && s.mean_luma < 30.0, "{s:?}");
        assert!(VqdDetector::new().assess(&s, &cfg, night).is_empty());
        assert!(
            VqdDetector::new()
                .assess(&s, &cfg, day())
                .contains(&QualityFault::Dark)
        );
    }

    #[test]
    fn overexposed_frame() {
        let cfg = VqdConfig::default();
        let mut d = warmed(&cfg);
        let s = m(&solid(250, 250, 250));
        assert_eq!(d.assess(&s, &cfg, day()), vec![QualityFault::Overexposed]);
    }

    #[test]
    fn board_over_most_of_the_view_is_occlusion() {
        let cfg = VqdConfig::default();
        let mut d = warmed(&cfg);
        let mut f = noisy(9, 40);
        // A uniform mid-grey board over the left 82 % of the picture.
        for y in 0..H {
            for x in 0..W * 82 / 100 {
                let i = (y * W + x) * 3;
                f[i..i + 3].copy_from_slice(&[120, 118, 116]);
            }
        }
        let s = m(&f);
        assert!(s.flat_fraction > 0.75, "{s:?}");
        assert_eq!(d.assess(&s, &cfg, day()), vec![QualityFault::Occlusion]);
        // The baseline did not follow the occluded picture.
        assert!(d.baseline().unwrap() < 0.1);
        // A camera that always looks at a flat scene is not occluded (baseline from the first sample).
        let mut fresh = VqdDetector::new();
        assert!(
            !fresh
                .assess(&s, &cfg, day())
                .contains(&QualityFault::Occlusion)
        );
    }

    #[test]
    fn blurred_noise_is_blur_sharp_noise_is_not() {
        let cfg = VqdConfig::default();
        let sharp = noisy(11, 40);
        let blurred = box_blur(&sharp, 9);
        let (ss, sb) = (m(&sharp), m(&blurred));
        assert!(ss.laplacian_var > 10.0 * cfg.blur_below, "{ss:?}");
        assert!(sb.laplacian_var < cfg.blur_below, "{sb:?}");
        let mut d = warmed(&cfg);
        assert_eq!(d.assess(&sb, &cfg, day()), vec![QualityFault::Blur]);
        assert_eq!(d.assess(&ss, &cfg, day()), vec![]);
    }

    #[test]
    fn colour_cast() {
        let cfg = VqdConfig::default();
        let mut d = warmed(&cfg);
        // Textured picture with red pushed up and blue down (a failed IR-cut filter looks like this).
        let mut f = noisy(13, 40);
        for px in f.chunks_exact_mut(3) {
            px[0] = px[0].saturating_sub(30);
            px[2] = px[2].saturating_add(40);
        }
        let s = m(&f);
        assert!(s.cast_rg > 0.1 && s.cast_bg < -0.05, "{s:?}");
        assert_eq!(d.assess(&s, &cfg, day()), vec![QualityFault::ColorCast]);

        // A colourful scene with a dominant hue (like the yellowish sample video) is not a cast …
        let mut rng = Rng(99);
        let mut colourful = vec![0u8; W * H * 3];
        for px in colourful.chunks_exact_mut(3) {
            let n: [i32; 3] = std::array::from_fn(|_| i32::from(rng.next() % 81) - 40);
            px[0] = (100 + n[0]).clamp(0, 255) as u8;
            px[1] = (130 + n[1]).clamp(0, 255) as u8;
            px[2] = (125 + n[2]).clamp(0, 255) as u8;
        }
        let s = m(&colourful);
        assert!(s.cast > cfg.cast_above, "{s:?}");
        let mut d = warmed(&cfg);
        assert_eq!(d.assess(&s, &cfg, day()), vec![], "{s:?}");
        // … but the same scene pushed far towards purple (a stuck IR-cut filter) is.
        for px in colourful.chunks_exact_mut(3) {
            px[0] = px[0].saturating_add(70);
            px[1] = px[1].saturating_sub(10);
            px[2] = px[2].saturating_add(60);
        }
        let s = m(&colourful);
        assert_eq!(
            d.assess(&s, &cfg, day()),
            vec![QualityFault::ColorCast],
            "{s:?}"
        );
    }

    #[test]
    fn identical_frames_freeze_after_n_samples() {
        let cfg = VqdConfig::default();
        let mut d = warmed(&cfg);
        let s = m(&noisy(21, 40));
        for i in 1..=8u32 {
            let faults = d.assess(&s, &cfg, day());
            if i < cfg.frozen_samples {
                assert_eq!(faults, vec![], "sample {i}");
            } else {
                assert_eq!(faults, vec![QualityFault::Frozen], "sample {i}");
            }
        }
        // The picture moves again.
        assert_eq!(d.assess(&m(&noisy(22, 40)), &cfg, day()), vec![]);
        // Re-encoding noise (±2 levels, fresh each frame) still counts as the same picture.
        let mut d = warmed(&cfg);
        let base = noisy(23, 40);
        let mut rng = Rng(77);
        let mut last = vec![];
        for _ in 0..cfg.frozen_samples {
            let jitter: Vec<u8> = base
                .iter()
                .map(|&v| (i32::from(v) + i32::from(rng.next() % 5) - 2).clamp(0, 255) as u8)
                .collect();
            last = d.assess(&m(&jitter), &cfg, day());
        }
        assert_eq!(last, vec![QualityFault::Frozen]);
    }

    #[test]
    fn stride_padding_and_odd_sizes() {
        let f = noisy(3, 40);
        let plain = m(&f);
        let stride = W * 3 + 64;
        let mut padded = vec![0xEEu8; stride * H];
        for y in 0..H {
            padded[y * stride..y * stride + W * 3].copy_from_slice(&f[y * W * 3..(y + 1) * W * 3]);
        }
        let p = VqdSample::measure(&padded, W as u32, H as u32, stride).unwrap();
        assert_eq!(p, plain);
        // Smaller than 160×120 and much larger both work.
        let tiny = [10u8, 20, 30].repeat(50 * 40);
        let t = VqdSample::measure(&tiny, 50, 40, 150).unwrap();
        assert!((t.mean_luma - 21.5).abs() < 1.0, "{t:?}");
        let big = [90u8, 100, 110].repeat(1920 * 1080);
        let b = VqdSample::measure(&big, 1920, 1080, 1920 * 3).unwrap();
        assert!((b.mean_luma - 101.6).abs() < 1.0, "{b:?}");
        assert_eq!(b.flat_fraction, 1.0);
    }

    /// Cost of one measurement; run in release:
    /// `cargo test --release --lib health::vqd::tests::measure_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run in release"]
    fn measure_cost() {
        let f = noisy(7, 40);
        let n = 2000;
        let t = std::time::Instant::now();
        let mut acc = 0.0f32;
        for _ in 0..n {
            acc += m(std::hint::black_box(&f)).laplacian_var;
        }
        let per = t.elapsed() / n;
        eprintln!("measure 384x288 BGR: {per:?} per frame ({acc})");
        if !cfg!(debug_assertions) {
            assert!(per < std::time::Duration::from_micros(300), "{per:?}");
        }
    }

    /// Measurements over real footage; needs raw BGR frames made with
    /// `gst-launch-1.0 -q filesrc location=assets/video/vtest_sub.mp4 ! decodebin ! videoconvert !
    /// video/x-raw,format=BGR ! filesink location=/tmp/vtest_sub.bgr`, then
    /// `VQD_BGR=/tmp/vtest_sub.bgr cargo test --lib health::vqd::tests::calibrate_on_vtest -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs decoded footage (see doc comment)"]
    fn calibrate_on_vtest() {
        let Ok(path) = std::env::var("VQD_BGR") else {
            return;
        };
        let data = std::fs::read(path).unwrap();
        let frame = W * H * 3;
        let cfg = VqdConfig::default();
        let mut d = VqdDetector::new();
        let mut prev: Option<VqdSample> = None;
        let stats = |v: &[f32]| {
            let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (lo, hi)
        };
        let (mut luma, mut lap, mut flat, mut cast, mut dm, mut dx) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut lap5, mut lap7, mut lap11, mut lap15) = (vec![], vec![], vec![], vec![]);
        let mut spread = vec![];
        let (mut dm10, mut dx10) = (vec![], vec![]);
        let mut flagged = vec![];
        for (i, f) in data.chunks_exact(frame).enumerate() {
            let s = m(f);
            let faults = d.assess(&s, &cfg, day());
            if !faults.is_empty() {
                flagged.push((i, faults));
            }
            luma.push(s.mean_luma);
            lap.push(s.laplacian_var);
            flat.push(s.flat_fraction);
            cast.push(s.cast);
            spread.push(s.chroma_spread);
            if let Some(p) = &prev {
                let (a, b) = p.diff(&s);
                dm.push(a);
                dx.push(b);
            }
            if i >= 10 {
                let (a, b) = m(&data[(i - 10) * frame..(i - 9) * frame]).diff(&s);
                dm10.push(a);
                dx10.push(b);
            }
            if i % 100 == 0 {
                lap5.push(m(&box_blur(f, 5)).laplacian_var);
                lap7.push(m(&box_blur(f, 7)).laplacian_var);
                lap11.push(m(&box_blur(f, 11)).laplacian_var);
                lap15.push(m(&box_blur(f, 15)).laplacian_var);
            }
            prev = Some(s);
        }
        eprintln!(
            "frames {} luma {:?} lap {:?} flat {:?} cast {:?} diff mean {:?} max {:?} lap blur5 {:?} blur7 {:?} blur11 {:?} blur15 {:?} spread {:?}",
            luma.len(),
            stats(&luma),
            stats(&lap),
            stats(&flat),
            stats(&cast),
            stats(&dm),
            stats(&dx),
            stats(&lap5),
            stats(&lap7),
            stats(&lap11),
            stats(&lap15),
            stats(&spread)
        );
        let same = |m: &[f32], x: &[f32], lim: f32| {
            m.iter()
                .zip(x)
                .filter(|(a, b)| **a < 0.5 && **b < lim)
                .count()
        };
        eprintln!(
            "1 s apart: diff mean {:?} max {:?}; same pairs (max<8 / max<3) at 10 fps {} / {}, at 1 fps {} / {}",
            stats(&dm10),
            stats(&dx10),
            same(&dm, &dx, 8.0),
            same(&dm, &dx, 3.0),
            same(&dm10, &dx10, 8.0),
            same(&dm10, &dx10, 3.0)
        );
        assert!(
            flagged.is_empty(),
            "normal footage raised faults: {flagged:?}"
        );

        // camsim's "cover" fault: a flat board (Y 70 in video range ≈ 63 in BGR) over x 5–95 %,
        // y 10–95 % of the same footage.
        let mut covered = data[..frame].to_vec();
        for y in H / 10..H - H / 20 {
            for x in W / 20..W - W / 20 {
                covered[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&[63, 63, 63]);
            }
        }
        let s = m(&covered);
        eprintln!("covered: {s:?}");
        assert_eq!(d.assess(&s, &cfg, day()), vec![QualityFault::Occlusion]);
    }
}
