//! The person detector as an engineer tries it: `qianliyan detect --as-substream 384x288` on the
//! persons-dev photographs (COCO images with their labelled people, from scripts/setup), each shrunk
//! into a sub-stream frame as a camera would send it. People are matched to the labels greedily by
//! score at IoU ≥ 0.5, heights in the original image's pixels.
//!
//! The bar (issue 20): people taller than 96 px found ≥ 0.80 at an overall precision ≥ 0.80, and no
//! person on the images with nobody. Today's fall-tuned YOLOv8s reached 0.70 and 0.81 here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn iou(a: &[f64], b: &[f64]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Found/total by person height band, and precision.
#[derive(Debug, Default)]
struct Score {
    bands: BTreeMap<&'static str, (u32, u32)>,
    true_pos: u32,
    false_pos: u32,
    on_nobody: Vec<String>,
}

const BANDS: [(&str, f64, f64); 4] = [
    ("< 48 px", 0.0, 48.0),
    ("48–96 px", 48.0, 96.0),
    ("96–192 px", 96.0, 192.0),
    ("> 192 px", 192.0, f64::INFINITY),
];

fn score(labels: &Value, found: &Value, dir: &Path) -> Score {
    let mut s = Score::default();
    for image in labels["images"].as_array().expect("labels.json images") {
        let file = image["file"].as_str().unwrap();
        let key = dir.join(file).display().to_string();
        let boxes = found[&key]
            .as_array()
            .unwrap_or_else(|| panic!("no result for {key}"));
        let truth: Vec<Vec<f64>> = image["persons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                b.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let mut used = vec![false; truth.len()];
        // `detect` prints boxes best first.
        for b in boxes {
            let b = b.as_array().unwrap();
            assert!(
                matches!(b[5].as_str(), Some("person")),
                "{file}: only people are kept: {b:?}"
            );
            let xy: Vec<f64> = b[..4].iter().map(|v| v.as_f64().unwrap()).collect();
            let best = truth
                .iter()
                .enumerate()
                .filter(|(j, _)| !used[*j])
                .map(|(j, t)| (j, iou(&xy, t)))
                .filter(|(_, v)| *v >= 0.5)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((j, _)) => {
                    used[j] = true;
                    s.true_pos += 1;
                }
                None => {
                    s.false_pos += 1;
                    if truth.is_empty() {
                        s.on_nobody.push(file.to_owned());
                    }
                }
            }
        }
        for (t, found) in truth.iter().zip(&used) {
            let h = t[3] - t[1];
            let (band, ..) = BANDS
                .iter()
                .find(|(_, lo, hi)| (*lo..*hi).contains(&h))
                .unwrap();
            let e = s.bands.entry(band).or_default();
            e.0 += u32::from(*found);
            e.1 += 1;
        }
    }
    s
}

#[test]
fn yolox_nano_finds_most_people_in_a_substream_at_high_precision() {
    let dir = repo().join("assets/persons-dev/images");
    let labels: Value = serde_json::from_slice(
        &std::fs::read(repo().join("assets/persons-dev/labels.json"))
            .expect("assets/persons-dev/labels.json: run scripts/setup"),
    )
    .unwrap();
    let mut images: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("assets/persons-dev/images: run scripts/setup")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    images.sort();
    assert_eq!(images.len(), 71, "persons-dev has 71 images");
    let out = Command::new(env!("CARGO_BIN_EXE_qianliyan"))
        .current_dir(repo())
        .args([
            "detect",
            "--model",
            "models/yolox_nano.toml",
            "--as-substream",
            "384x288",
        ])
        .args(["--threads", "1"])
        .args(&images)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "detect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).expect("detect prints JSON");
    let s = score(&labels, &found, &dir);
    let (tall_found, tall) = s
        .bands
        .iter()
        .filter(|(b, _)| b.starts_with("96") || b.starts_with("> 192"))
        .fold((0, 0), |(f, t), (_, (bf, bt))| (f + bf, t + bt));
    let recall = f64::from(tall_found) / f64::from(tall);
    let precision = f64::from(s.true_pos) / f64::from(s.true_pos + s.false_pos);
    eprintln!("recall by height: {:?}", s.bands);
    eprintln!(
        "taller than 96 px: {recall:.2}; precision {precision:.2} ({} of {})",
        s.true_pos,
        s.true_pos + s.false_pos
    );
    assert_eq!(tall, 111, "people taller than 96 px in persons-dev");
    assert!(
        recall >= 0.80,
        "recall {recall:.2} of people taller than 96 px: {:?}",
        s.bands
    );
    assert!(precision >= 0.80, "precision {precision:.2}");
    assert!(
        s.on_nobody.is_empty(),
        "people found on images with nobody: {:?}",
        s.on_nobody
    );

    // A file that is no picture is named in the error, and nothing is printed for it.
    let bad = tempfile::NamedTempFile::with_suffix(".jpg").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qianliyan"))
        .current_dir(repo())
        .args(["detect", "--model", "models/yolox_nano.toml"])
        .arg(bad.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not a readable image") && err.contains(&*bad.path().display().to_string()),
        "{err}"
    );
}
