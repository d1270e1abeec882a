//! Model output → objects: YOLOv8 (Ultralytics) and YOLOX decode (best class per box ≥ threshold),
//! class-aware NMS, the manifest's `keep` filter, boxes mapped back to the camera's pixels; and the
//! per-frame score of anomaly models.

use serde::Serialize;

use super::manifest::{DetectorSpec, ObjectKind, OutputFormat};
use super::preprocess::Geometry;

/// One detected object, in the camera's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in frame pixels, inside the frame.
    pub bbox: [f32; 4],
    /// Best class score.
    pub score: f32,
    /// The model's class index.
    pub class_id: u32,
    /// What the class means (from the manifest's labels).
    pub kind: ObjectKind,
}

/// A box before NMS, in model input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// `[x1, y1, x2, y2]` in model pixels.
    pub bbox: [f32; 4],
    /// Best class score.
    pub score: f32,
    /// Best class.
    pub class_id: u32,
}

/// Buffers reused across frames.
#[derive(Debug, Default)]
pub struct PostScratch {
    best_score: Vec<f32>,
    best_class: Vec<u32>,
    candidates: Vec<Candidate>,
    kept: Vec<Candidate>,
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Class-aware non-maximum suppression: highest score first, a box is dropped when it overlaps a kept box
/// of the same class by more than `iou_threshold`. Keeps at most `max` boxes; `candidates` is reordered.
pub fn nms(
    candidates: &mut [Candidate],
    iou_threshold: f32,
    max: usize,
    kept: &mut Vec<Candidate>,
) {
    kept.clear();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    for c in candidates.iter() {
        if kept.len() >= max {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == c.class_id && iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            kept.push(*c);
        }
    }
}

/// Decodes image `index` of a YOLOv8 output `[batch, 4 + C, anchors]` (row-major): rows 0–3 are cx, cy,
/// w, h in model pixels, rows 4.. the class scores. Returns boxes in frame pixels after NMS.
pub fn decode_yolov8(
    output: &[f32],
    rows: usize,
    anchors: usize,
    index: usize,
    spec: &DetectorSpec,
    geometry: &Geometry,
    scratch: &mut PostScratch,
) -> Vec<Detection> {
    let classes = rows.saturating_sub(4).min(spec.labels.len());
    let size = rows * anchors;
    let Some(img) = output.get(index * size..(index + 1) * size) else {
        return Vec::new();
    };
    if classes == 0 {
        return Vec::new();
    }
    let PostScratch {
        best_score,
        best_class,
        candidates,
        kept,
    } = scratch;

    // Best class per anchor, one class row at a time (contiguous reads).
    best_score.clear();
    best_score.extend_from_slice(&img[4 * anchors..5 * anchors]);
    best_class.clear();
    best_class.resize(anchors, 0);
    for c in 1..classes {
        let row = &img[(4 + c) * anchors..(5 + c) * anchors];
        for ((s, k), v) in best_score.iter_mut().zip(best_class.iter_mut()).zip(row) {
            if *v > *s {
                *s = *v;
                *k = c as u32;
            }
        }
    }

    candidates.clear();
    let (cx, cy) = (&img[..anchors], &img[anchors..2 * anchors]);
    let (w, h) = (
        &img[2 * anchors..3 * anchors],
        &img[3 * anchors..4 * anchors],
    );
    for a in 0..anchors {
        let score = best_score[a];
        // NaN scores fail the comparison and are dropped too.
        if score.is_nan() || score < spec.score_threshold {
            continue;
        }
        let (hw, hh) = (w[a] / 2.0, h[a] / 2.0);
        candidates.push(Candidate {
            bbox: [cx[a] - hw, cy[a] - hh, cx[a] + hw, cy[a] + hh],
            score,
            class_id: best_class[a],
        });
    }

    nms(candidates, spec.nms_iou, spec.max_detections, kept);
    to_frame(kept, spec, geometry)
}

/// Kept boxes → detections in frame pixels, of the kinds the manifest keeps.
fn to_frame(kept: &[Candidate], spec: &DetectorSpec, geometry: &Geometry) -> Vec<Detection> {
    kept.iter()
        .filter_map(|c| {
            let bbox = geometry.to_frame(c.bbox);
            if bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
                return None;
            }
            let label = spec.labels.get(c.class_id as usize)?;
            if spec.keep.as_ref().is_some_and(|k| !k.contains(&label.kind)) {
                return None;
            }
            Some(Detection {
                bbox,
                score: c.score,
                class_id: c.class_id,
                kind: label.kind,
            })
        })
        .collect()
}

/// The cells of a YOLOX head at one input size: per stride (finest first) a `width/s × height/s` grid,
/// row-major; output box `i` belongs to the `i`-th cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YoloxGrid {
    /// `(stride, columns, rows)` per level.
    levels: Vec<(u32, u32, u32)>,
}

impl YoloxGrid {
    /// The grid for an input of `size` (width, height).
    pub fn new(size: (u32, u32), strides: &[u32]) -> Self {
        Self {
            levels: strides
                .iter()
                .map(|s| (*s, size.0 / s.max(&1), size.1 / s.max(&1)))
                .collect(),
        }
    }

    /// Boxes the head outputs at this size.
    pub fn boxes(&self) -> usize {
        self.levels
            .iter()
            .map(|(_, c, r)| *c as usize * *r as usize)
            .sum()
    }
}

/// Decodes image `index` of a YOLOX output `[batch, boxes, 5 + C]`: per box the grid offsets (x, y), the
/// log width and height (in strides), objectness and C class probabilities. Box centre =
/// (offset + cell) × stride, size = exp(log size) × stride; score = objectness × best class. Returns
/// boxes in frame pixels after NMS and the `keep` filter.
pub fn decode_yolox(
    output: &[f32],
    grid: &YoloxGrid,
    per_box: usize,
    index: usize,
    spec: &DetectorSpec,
    geometry: &Geometry,
    scratch: &mut PostScratch,
) -> Vec<Detection> {
    debug_assert!(matches!(spec.format, OutputFormat::Yolox { .. }));
    let classes = per_box.saturating_sub(5).min(spec.labels.len());
    let size = grid.boxes() * per_box;
    let Some(img) = output.get(index * size..(index + 1) * size) else {
        return Vec::new();
    };
    if classes == 0 {
        return Vec::new();
    }
    let PostScratch {
        candidates, kept, ..
    } = scratch;
    candidates.clear();
    let mut rows = img.chunks_exact(per_box);
    for &(stride, cols, lines) in &grid.levels {
        let s = stride as f32;
        for gy in 0..lines {
            for gx in 0..cols {
                let Some(p) = rows.next() else {
                    break;
                };
                let objectness = p[4];
                // score = objectness × class ≤ objectness: most boxes end here. NaN fails too.
                if objectness.is_nan() || objectness < spec.score_threshold {
                    continue;
                }
                let (mut best, mut class) = (p[5], 0u32);
                for (c, v) in p[6..5 + classes].iter().enumerate() {
                    if *v > best {
                        best = *v;
                        class = c as u32 + 1;
                    }
                }
                let score = objectness * best;
                if score.is_nan() || score < spec.score_threshold {
                    continue;
                }
                let cx = (p[0] + gx as f32) * s;
                let cy = (p[1] + gy as f32) * s;
                let (hw, hh) = (p[2].exp() * s / 2.0, p[3].exp() * s / 2.0);
                if !(hw.is_finite() && hh.is_finite()) {
                    continue;
                }
                candidates.push(Candidate {
                    bbox: [cx - hw, cy - hh, cx + hw, cy + hh],
                    score,
                    class_id: class,
                });
            }
        }
    }
    nms(candidates, spec.nms_iou, spec.max_detections, kept);
    to_frame(kept, spec, geometry)
}

/// Image `index`'s score from an anomaly output `[batch]` or `[batch, 1]`.
pub fn anomaly_score(output: &[f32], index: usize) -> Option<f32> {
    output.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::manifest::Label;

    fn spec() -> DetectorSpec {
        DetectorSpec {
            output: "output0".into(),
            format: OutputFormat::Ultralytics,
            keep: None,
            track_high_score: None,
            track_start_score: None,
            score_threshold: 0.35,
            nms_iou: 0.45,
            max_detections: 300,
            labels: vec![
                Label {
                    name: "Normal".into(),
                    kind: ObjectKind::Person,
                },
                Label {
                    name: "Fall".into(),
                    kind: ObjectKind::FallenPerson,
                },
            ],
        }
    }

    /// A `[batch, 6, anchors]` tensor with the given (cx, cy, w, h, s0, s1) per anchor, per image.
    fn tensor(images: &[Vec<[f32; 6]>], anchors: usize) -> Vec<f32> {
        let mut t = vec![0.0; images.len() * 6 * anchors];
        for (b, boxes) in images.iter().enumerate() {
            for (a, v) in boxes.iter().enumerate() {
                for (r, x) in v.iter().enumerate() {
                    t[b * 6 * anchors + r * anchors + a] = *x;
                }
            }
        }
        t
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[10.0, 0.0, 20.0, 10.0]), 0.0);
        // Overlap 5×10 = 50; union 150.
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn nms_is_class_aware_and_keeps_the_best() {
        let c = |x: f32, score: f32, class_id: u32| Candidate {
            bbox: [x, 0.0, x + 10.0, 10.0],
            score,
            class_id,
        };
        let mut cands = vec![
            c(0.0, 0.6, 0),  // IoU with best 0.82: dropped
            c(1.0, 0.9, 0),  // best of the cluster
            c(2.0, 0.7, 0),  // IoU with best 0.82 > 0.45: dropped
            c(1.0, 0.5, 1),  // same place, other class: kept
            c(6.0, 0.8, 0),  // IoU with best 0.33: kept
            c(50.0, 0.4, 0), // far away: kept
        ];
        let mut kept = Vec::new();
        nms(&mut cands, 0.45, 10, &mut kept);
        let got: Vec<(f32, f32, u32)> = kept
            .iter()
            .map(|k| (k.bbox[0], k.score, k.class_id))
            .collect();
        assert_eq!(
            got,
            [(1.0, 0.9, 0), (6.0, 0.8, 0), (1.0, 0.5, 1), (50.0, 0.4, 0)]
        );

        nms(&mut cands, 0.45, 2, &mut kept);
        assert_eq!(kept.len(), 2, "max_detections caps the result");
    }

    #[test]
    fn decode_gives_exact_boxes_in_frame_pixels() {
        // Model 640×640, frame 1280×320 stretched: x scale 0.5, y scale 2.
        let g = Geometry::stretch(1280, 320, 640, 640);
        let anchors = 5;
        let t = tensor(
            &[
                vec![
                    [100.0, 200.0, 40.0, 80.0, 0.9, 0.1],   // person
                    [102.0, 201.0, 40.0, 80.0, 0.8, 0.1],   // duplicate of it: suppressed
                    [400.0, 600.0, 100.0, 100.0, 0.2, 0.7], // fallen, runs off the bottom: clamped
                    [300.0, 300.0, 10.0, 10.0, 0.3, 0.34],  // below threshold
                    [10.0, 10.0, 4.0, 4.0, f32::NAN, 0.0],  // NaN score: ignored
                ],
                vec![[320.0, 320.0, 64.0, 64.0, 0.5, 0.0]],
            ],
            anchors,
        );
        let mut scratch = PostScratch::default();
        let d0 = decode_yolov8(&t, 6, anchors, 0, &spec(), &g, &mut scratch);
        assert_eq!(
            d0,
            [
                Detection {
                    bbox: [160.0, 80.0, 240.0, 120.0],
                    score: 0.9,
                    class_id: 0,
                    kind: ObjectKind::Person
                },
                Detection {
                    bbox: [700.0, 275.0, 900.0, 320.0],
                    score: 0.7,
                    class_id: 1,
                    kind: ObjectKind::FallenPerson
                },
            ]
        );
        let d1 = decode_yolov8(&t, 6, anchors, 1, &spec(), &g, &mut scratch);
        assert_eq!(
            d1,
            [Detection {
                bbox: [576.0, 144.0, 704.0, 176.0],
                score: 0.5,
                class_id: 0,
                kind: ObjectKind::Person
            }]
        );
        assert!(decode_yolov8(&t, 6, anchors, 2, &spec(), &g, &mut scratch).is_empty());
    }

    #[test]
    fn letterboxed_boxes_map_back_through_the_padding() {
        // 1280×720 into 640×640: scale 0.5, 640×360 centred, 140 px padding on top.
        let (g, _) = Geometry::letterbox(1280, 720, 640, 640);
        assert_eq!((g.pad_x, g.pad_y), (0.0, 140.0));
        let t = tensor(&[vec![[320.0, 320.0, 100.0, 50.0, 0.8, 0.0]]], 1);
        let d = decode_yolov8(&t, 6, 1, 0, &spec(), &g, &mut PostScratch::default());
        assert_eq!(d[0].bbox, [540.0, 310.0, 740.0, 410.0]);
    }

    #[test]
    fn yolox_boxes_come_from_their_grid_cell_and_stride() {
        let mut spec = spec();
        spec.format = OutputFormat::Yolox {
            strides: vec![8, 16, 32],
        };
        spec.keep = Some(vec![ObjectKind::Person]);
        // 64×32 input: 8×4 + 4×2 + 2×1 = 42 boxes, 5 + 2 values each.
        let grid = YoloxGrid::new((64, 32), &[8, 16, 32]);
        assert_eq!(grid.boxes(), 42);
        let mut t = vec![0.0f32; 2 * 42 * 7];
        // Image 1, stride 16, cell (1, 1) = box 32 + 4 + 1: centre (1.5 × 16, 1.5 × 16), 2 × 4 strides.
        let row = 42 * 7 + 37 * 7;
        t[row..row + 7].copy_from_slice(&[0.5, 0.5, 2f32.ln(), 4f32.ln(), 0.9, 0.8, 0.1]);
        // Stride 8, cell (3, 0): a confident "fallen" box, which `keep` drops.
        let row = 42 * 7 + 3 * 7;
        t[row..row + 7].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.9, 0.1, 0.8]);
        // Stride 32, cell (1, 0): objectness below the threshold.
        let row = 42 * 7 + 41 * 7;
        t[row..row + 7].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.3, 1.0, 0.0]);
        let (g, _) = Geometry::fit(
            64,
            32,
            64,
            32,
            crate::infer::manifest::Anchor::TopLeft,
            Some(1.0),
        );
        let mut scratch = PostScratch::default();
        let d = decode_yolox(&t, &grid, 7, 1, &spec, &g, &mut scratch);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            d[0].bbox,
            [8.0, 0.0, 40.0, 32.0],
            "(24 ± 16, 24 ± 32), clamped"
        );
        assert!((d[0].score - 0.72).abs() < 1e-6, "objectness × class");
        assert_eq!(d[0].kind, ObjectKind::Person);
        assert!(decode_yolox(&t, &grid, 7, 0, &spec, &g, &mut scratch).is_empty());
        spec.keep = None;
        let all = decode_yolox(&t, &grid, 7, 1, &spec, &g, &mut scratch);
        assert_eq!(all.len(), 2, "without `keep` the fallen box stays: {all:?}");
    }

    #[test]
    fn anomaly_scores_by_index() {
        assert_eq!(anomaly_score(&[0.1, 0.9], 1), Some(0.9));
        assert_eq!(anomaly_score(&[0.1], 1), None);
    }
}
