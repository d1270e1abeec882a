//! `qianliyan detect`: a detector run on still images through the service's own preprocessing, decoding
//! and label filter, for engineers checking a model and a threshold on their own cameras' snapshots.
//!
//! `--as-substream WxH` first shrinks each image into such a frame (centred, black bars), as a camera's
//! sub-stream carries the same view; boxes are reported in the original image's pixels either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opencv::core::{Mat, MatTrait, MatTraitConst, MatTraitConstManual, Rect, Scalar, Size};
use opencv::{imgcodecs, imgproc};

use super::error::InferError;
use super::runner::ModelRunner;
use crate::decode::DecodedFrame;

/// One box as `detect` prints it: `[x1, y1, x2, y2, score, kind]` in the image's pixels.
pub type DetectedBox = (f32, f32, f32, f32, f32, &'static str);

/// Why an image could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The file cannot be read or decoded as an image.
    #[error("{path}: not a readable image ({reason})")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model failed on it.
    #[error("{path}: {source}")]
    Infer {
        /// The image file.
        path: PathBuf,
        /// The inference error.
        source: InferError,
    },
}

/// A `WxH` sub-stream size, as `--as-substream` takes it.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT (e.g. 384x288)"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (16..=8192).contains(n))
    };
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!(
            "{s:?}: width and height must be whole numbers in 16..=8192"
        )),
    }
}

/// How an image was placed into the frame the model saw: frame pixel = image pixel × scale + offset.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Placement {
    scale: f32,
    offset: (f32, f32),
    /// The original image's size.
    image: (f32, f32),
}

/// Reads `path` as packed BGR, shrunk into a `substream` frame when given.
fn load(
    path: &Path,
    substream: Option<(u32, u32)>,
) -> Result<(DecodedFrame, Placement), DetectError> {
    let bad = |reason: String| DetectError::Image {
        path: path.to_owned(),
        reason,
    };
    let name = path
        .to_str()
        .ok_or_else(|| bad("the path is not UTF-8".into()))?;
    let image = imgcodecs::imread(name, imgcodecs::IMREAD_COLOR).map_err(|e| bad(e.to_string()))?;
    if image.empty() {
        return Err(bad("OpenCV cannot decode it".into()));
    }
    let (iw, ih) = (image.cols(), image.rows());
    let (frame, placement) = match substream {
        None => (
            image,
            Placement {
                scale: 1.0,
                offset: (0.0, 0.0),
                image: (iw as f32, ih as f32),
            },
        ),
        Some((w, h)) => {
            let scale = (f64::from(w) / f64::from(iw)).min(f64::from(h) / f64::from(ih));
            let nw = ((f64::from(iw) * scale).round() as i32).clamp(1, w as i32);
            let nh = ((f64::from(ih) * scale).round() as i32).clamp(1, h as i32);
            let (ox, oy) = ((w as i32 - nw) / 2, (h as i32 - nh) / 2);
            let mut canvas = Mat::new_rows_cols_with_default(
                h as i32,
                w as i32,
                opencv::core::CV_8UC3,
                Scalar::all(0.0),
            )
            .map_err(|e| bad(e.to_string()))?;
            {
                let mut dst = canvas
                    .roi_mut(Rect::new(ox, oy, nw, nh))
                    .map_err(|e| bad(e.to_string()))?;
                imgproc::resize(
                    &image,
                    &mut dst,
                    Size::new(nw, nh),
                    0.0,
                    0.0,
                    imgproc::INTER_AREA,
                )
                .map_err(|e| bad(e.to_string()))?;
            }
            // The scale actually used per axis is nw/iw ≈ nh/ih; report through the horizontal one.
            let scale = nw as f32 / iw as f32;
            (
                canvas,
                Placement {
                    scale,
                    offset: (ox as f32, oy as f32),
                    image: (iw as f32, ih as f32),
                },
            )
        }
    };
    let (w, h) = (frame.cols() as u32, frame.rows() as u32);
    let data = frame.data_bytes().map_err(|e| bad(e.to_string()))?.to_vec();
    let camera = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        DecodedFrame::still_bgr(camera.into(), w, h, data),
        placement,
    ))
}

/// Runs the detector on each image; boxes in each image's own pixels, best first, keyed by the path as
/// given.
pub fn detect_images(
    runner: &mut ModelRunner,
    images: &[PathBuf],
    substream: Option<(u32, u32)>,
) -> Result<BTreeMap<String, Vec<DetectedBox>>, DetectError> {
    let mut out = BTreeMap::new();
    for path in images {
        let (frame, at) = load(path, substream)?;
        let (iw, ih) = at.image;
        let found = runner
            .run(&[Arc::new(frame)])
            .map_err(|source| DetectError::Infer {
                path: path.clone(),
                source,
            })?;
        let mut boxes: Vec<DetectedBox> = found
            .into_iter()
            .flat_map(|d| d.objects)
            .map(|o| {
                let x = |v: f32| ((v - at.offset.0) / at.scale).clamp(0.0, iw);
                let y = |v: f32| ((v - at.offset.1) / at.scale).clamp(0.0, ih);
                (
                    x(o.bbox[0]),
                    y(o.bbox[1]),
                    x(o.bbox[2]),
                    y(o.bbox[3]),
                    o.score,
                    o.kind.as_str(),
                )
            })
            .collect();
        boxes.sort_by(|a, b| b.4.total_cmp(&a.4));
        out.insert(path.display().to_string(), boxes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substream_sizes_parse_or_say_why_not() {
        assert_eq!(parse_size("384x288"), Ok((384, 288)));
        assert_eq!(parse_size("704×576"), Ok((704, 576)));
        assert!(parse_size("384").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("0x288").unwrap_err().contains("16..=8192"));
    }

    #[test]
    fn an_unreadable_image_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("not-a-picture.jpg");
        std::fs::write(&p, b"hello").unwrap();
        let e = load(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("not-a-picture.jpg") && e.contains("not a readable image"),
            "{e}"
        );
    }
}

/// Person-height bands of [`Evaluation`], in the original image's pixels.
pub const HEIGHT_BANDS: [(&str, f32, f32); 4] = [
    ("<48", 0.0, 48.0),
    ("48-96", 48.0, 96.0),
    ("96-192", 96.0, 192.0),
    (">192", 192.0, f32::INFINITY),
];

/// Labelled people of one image: `[x1, y1, x2, y2]` boxes in its pixels.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LabelledImage {
    /// The image's file name.
    pub file: String,
    /// Its people.
    pub persons: Vec<[f32; 4]>,
}

/// How a detector did on labelled images: people matched greedily by score at IoU ≥ 0.5.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Per [`HEIGHT_BANDS`] label: `(found, labelled)`.
    pub by_height: BTreeMap<&'static str, (u32, u32)>,
    /// Person boxes on a labelled person.
    pub true_positives: u32,
    /// Person boxes on nobody.
    pub false_positives: u32,
    /// Images with nobody labelled on which a person was found.
    pub false_on_empty: Vec<String>,
}

impl Evaluation {
    /// Share of labelled people at least `min_height` px tall (a band's lower edge) that were found.
    pub fn recall_from(&self, min_height: f32) -> f64 {
        let (found, all) = HEIGHT_BANDS
            .iter()
            .filter(|(_, lo, _)| *lo >= min_height)
            .filter_map(|(name, ..)| self.by_height.get(name))
            .fold((0, 0), |(f, a), (bf, ba)| (f + bf, a + ba));
        if all == 0 {
            0.0
        } else {
            f64::from(found) / f64::from(all)
        }
    }

    /// Person boxes that were on a person, of all person boxes.
    pub fn precision(&self) -> f64 {
        let all = self.true_positives + self.false_positives;
        if all == 0 {
            0.0
        } else {
            f64::from(self.true_positives) / f64::from(all)
        }
    }
}

/// Scores `found` (as [`detect_images`] returns it, keyed by path; matched to labels by file name)
/// against `labels`. Boxes of kinds other than persons are ignored.
pub fn evaluate(
    labels: &[LabelledImage],
    found: &BTreeMap<String, Vec<DetectedBox>>,
) -> Evaluation {
    let mut e = Evaluation::default();
    for image in labels {
        let boxes = found
            .iter()
            .find(|(path, _)| {
                Path::new(path)
                    .file_name()
                    .is_some_and(|n| *n == *image.file)
            })
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        let mut people: Vec<&DetectedBox> = boxes
            .iter()
            .filter(|b| super::ObjectKind::parse(b.5).is_some_and(|k| k.is_person()))
            .collect();
        people.sort_by(|a, b| b.4.total_cmp(&a.4));
        let mut used = vec![false; image.persons.len()];
        for b in people {
            let bbox = [b.0, b.1, b.2, b.3];
            let best = image
                .persons
                .iter()
                .enumerate()
                .filter(|(j, _)| !used[*j])
                .map(|(j, t)| (j, super::postprocess::iou(&bbox, t)))
                .filter(|(_, v)| *v >= 0.5)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, _)) = best {
                used[j] = true;
                e.true_positives += 1;
            } else {
                e.false_positives += 1;
                if image.persons.is_empty() && !e.false_on_empty.contains(&image.file) {
                    e.false_on_empty.push(image.file.clone());
                }
            }
        }
        for (t, hit) in image.persons.iter().zip(&used) {
            let h = t[3] - t[1];
            if let Some((name, ..)) = HEIGHT_BANDS
                .iter()
                .find(|(_, lo, hi)| (*lo..*hi).contains(&h))
            {
                let band = e.by_height.entry(name).or_default();
                band.0 += u32::from(*hit);
                band.1 += 1;
            }
        }
    }
    e
}

#[cfg(test)]
mod evaluation_tests {
    use super::*;

    #[test]
    fn people_are_matched_once_best_score_first() {
        let labels = vec![
            LabelledImage {
                file: "a.jpg".into(),
                persons: vec![[0.0, 0.0, 10.0, 100.0], [50.0, 0.0, 60.0, 30.0]],
            },
            LabelledImage {
                file: "empty.jpg".into(),
                persons: vec![],
            },
        ];
        let mut found = BTreeMap::new();
        found.insert(
            "dir/a.jpg".to_owned(),
            vec![
                // Two boxes on the tall person: the better one counts, the other is a false positive.
                (0.0, 0.0, 10.0, 95.0, 0.9, "person"),
                (0.0, 5.0, 10.0, 100.0, 0.5, "person"),
                // A car is not scored.
                (50.0, 0.0, 60.0, 30.0, 0.8, "vehicle"),
            ],
        );
        found.insert(
            "dir/empty.jpg".to_owned(),
            vec![(1.0, 1.0, 5.0, 5.0, 0.4, "person")],
        );
        let e = evaluate(&labels, &found);
        assert_eq!(e.true_positives, 1);
        assert_eq!(e.false_positives, 2);
        assert_eq!(e.false_on_empty, ["empty.jpg"]);
        assert_eq!(e.by_height.get("96-192"), Some(&(1, 1)));
        assert_eq!(
            e.by_height.get("<48"),
            Some(&(0, 1)),
            "the 30 px person was missed"
        );
        assert_eq!(e.recall_from(96.0), 1.0);
        assert_eq!(e.recall_from(0.0), 0.5);
        assert!((e.precision() - 1.0 / 3.0).abs() < 1e-9);
    }
}
