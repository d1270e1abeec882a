//! Annotated JPEG snapshots for alerts: the decoded frame with the rule's zone (translucent fill and
//! outline) or tripwire (thick line, direction arrow, sides A and B), every box (the alert's in red,
//! other objects in yellow) with a tag above it ("人员 person #12 0.62"), and a header bar with the
//! severity, the Chinese and English titles and the time.
//!
//! Lines, boxes and polygons are drawn with OpenCV; text is rasterised with `fontdue` from a CJK
//! font (WenQuanYi Micro Hei, installed by `scripts/setup` as the Debian package
//! `fonts-wqy-microhei`) and alpha-blended onto the BGR picture, so Chinese renders properly (OpenCV's
//! Hershey fonts have no CJK glyphs). The font is loaded once per [`Renderer`] (about 5 MB, shared by
//! clones) and glyphs are cached per (character, pixel size), so repeated labels cost a lookup.
//!
//! Sizes follow the frame height: text is 20 px for titles and 17 px for tags on a 576-line frame,
//! never below 12 px, so 384×288 sub streams stay legible. Nothing here panics on odd input: boxes
//! partly or wholly outside the frame are clipped or skipped, NaN coordinates are skipped, empty text
//! draws no tag, and over-long titles are shortened with "…".

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use opencv::core::{Mat, Point, Rect, Scalar, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::DecodedFrame;
use crate::rules::{Alert, Direction, Severity};
use crate::track::{ObjectKind, Track};

/// Where `scripts/setup` installs the CJK font (Debian package `fonts-wqy-microhei`).
pub const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

/// JPEG quality used unless [`Renderer::set_quality`] says otherwise.
pub const DEFAULT_JPEG_QUALITY: u8 = 85;

/// Glyphs kept in the cache before it is emptied (a few hundred distinct characters is typical).
const MAX_CACHED_GLYPHS: usize = 8192;

/// BGR colours.
type Bgr = [u8; 3];
const RED: Bgr = [40, 40, 230];
const YELLOW: Bgr = [0, 215, 255];
const BLACK: Bgr = [0, 0, 0];
const WHITE: Bgr = [255, 255, 255];
const LIGHT: Bgr = [225, 225, 225];
const ZONE: Bgr = [255, 170, 0];

/// Snapshot errors.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The font file cannot be read.
    #[error(
        "cannot read the CJK snapshot font {}: {source}; run scripts/setup, which installs it \
         (Debian package fonts-wqy-microhei)",
        path.display()
    )]
    FontMissing {
        /// The path tried.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not a font fontdue can parse.
    #[error(
        "{} is not a usable font ({message}); scripts/setup installs the CJK font \
         (Debian package fonts-wqy-microhei)",
        path.display()
    )]
    FontInvalid {
        /// The path tried.
        path: PathBuf,
        /// fontdue's complaint.
        message: String,
    },
    /// The font has no Chinese glyphs, so labels would render as empty boxes.
    #[error(
        "font {} has no Chinese glyphs; use a CJK font such as {DEFAULT_FONT_PATH} \
         (installed by scripts/setup, Debian package fonts-wqy-microhei)",
        path.display()
    )]
    FontNotCjk {
        /// The path tried.
        path: PathBuf,
    },
    /// The frame's size, stride and buffer do not agree.
    #[error("bad frame: {width}x{height}, stride {stride}, {len} bytes")]
    BadFrame {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per row.
        stride: usize,
        /// Bytes in the buffer.
        len: usize,
    },
    /// An OpenCV call failed.
    #[error("snapshot {step}: {source}")]
    OpenCv {
        /// What was being done.
        step: &'static str,
        /// OpenCV's error.
        source: opencv::Error,
    },
    /// The JPEG encoder refused the picture.
    #[error("JPEG encoding failed for a {width}x{height} snapshot")]
    Encode {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

fn cv(step: &'static str) -> impl FnOnce(opencv::Error) -> SnapshotError {
    move |source| SnapshotError::OpenCv { step, source }
}

/// One box to draw, in camera pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayBox {
    /// (x1, y1, x2, y2) in frame pixels; may lie partly or wholly outside the frame.
    pub bbox: [f32; 4],
    /// Chinese label, e.g. "人员" (may be empty).
    pub label_zh: String,
    /// English label, e.g. "person" (may be empty).
    pub label_en: String,
    /// Track id, shown as "#12".
    pub track_id: Option<u64>,
    /// Detection score, shown as "0.62".
    pub score: Option<f32>,
    /// Part of the alert (red) rather than another object in view (yellow).
    pub highlight: bool,
}

impl OverlayBox {
    /// A box for a confirmed track, labelled with its kind, id and score.
    pub fn from_track(track: &Track, highlight: bool) -> OverlayBox {
        OverlayBox {
            bbox: track.bbox,
            label_zh: track.kind.zh().to_string(),
            label_en: track.kind.en().to_string(),
            track_id: Some(track.id),
            score: Some(track.score),
            highlight,
        }
    }

    /// The tag text: "人员 person #12 0.62", empty parts left out.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for s in [&self.label_zh, &self.label_en] {
            let s = s.trim();
            if !s.is_empty() {
                parts.push(s.to_string());
            }
        }
        if let Some(id) = self.track_id {
            parts.push(format!("#{id}"));
        }
        if let Some(score) = self.score.filter(|s| s.is_finite()) {
            parts.push(format!("{score:.2}"));
        }
        parts.join(" ")
    }
}

/// Everything drawn on a snapshot besides the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// First header line, e.g. "区域入侵：人员进入「北门广场」（目标 #12）".
    pub title_zh: String,
    /// Second header line, e.g. "Intrusion: person entered \"North gate\" (track #12)".
    pub title_en: String,
    /// Right end of the first header line, e.g. "2026-11-22 09:30:05".
    pub time_text: String,
    /// The rule's zone, normalised 0..1: a polygon (3 or more points) or a tripwire (2 points, a → b).
    pub zone: Option<Vec<[f32; 2]>>,
    /// For a tripwire: which way across counts (arrow from side A, the left of a → b, to side B).
    pub direction: Option<Direction>,
    /// Boxes to draw; highlighted ones are drawn last (on top).
    pub boxes: Vec<OverlayBox>,
    /// Colours the header's severity chip and bottom edge.
    pub severity: Severity,
}

impl Overlay {
    /// The overlay for an alert: its messages as titles, its frame time in China Standard Time,
    /// its rule's `zone`, its boxes in red and the other confirmed tracks seen in this frame in
    /// yellow. Kinds and scores of the alert's boxes come from `tracks` (matched by id);
    /// `direction` is the tripwire's, if the rule is one.
    pub fn from_alert(
        alert: &Alert,
        zone: Option<Vec<[f32; 2]>>,
        tracks: &[Track],
        direction: Option<Direction>,
    ) -> Overlay {
        let mut boxes: Vec<OverlayBox> = tracks
            .iter()
            .filter(|t| t.missed == 0 && !alert.track_ids.contains(&t.id))
            .map(|t| OverlayBox::from_track(t, false))
            .collect();
        for (i, bbox) in alert.boxes.iter().enumerate() {
            let id = alert.track_ids.get(i).copied();
            let b = match id.and_then(|id| tracks.iter().find(|t| t.id == id)) {
                Some(t) => OverlayBox {
                    bbox: *bbox,
                    ..OverlayBox::from_track(t, true)
                },
                None => OverlayBox {
                    bbox: *bbox,
                    label_zh: ObjectKind::Other.zh().to_string(),
                    label_en: ObjectKind::Other.en().to_string(),
                    track_id: id,
                    score: (alert.boxes.len() == 1).then_some(alert.score),
                    highlight: true,
                },
            };
            boxes.push(b);
        }
        let or_type = |msg: &str, name: &str| {
            if msg.trim().is_empty() {
                name.to_string()
            } else {
                msg.to_string()
            }
        };
        let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(alert.time_ms).unwrap_or(0));
        Overlay {
            title_zh: or_type(&alert.message_zh, alert.alert_type.zh()),
            title_en: or_type(&alert.message_en, alert.alert_type.en()),
            time_text: crate::time::format_cst(t),
            zone,
            direction,
            boxes,
            severity: alert.severity,
        }
    }
}

/// Header chip text and colour for a severity.
fn severity_chip(s: Severity) -> (&'static str, Bgr) {
    match s {
        Severity::Low => ("低 Low", [150, 110, 40]),
        Severity::Medium => ("中 Medium", [0, 150, 230]),
        Severity::High => ("高 High", [0, 80, 240]),
        Severity::Critical => ("紧急 Critical", [30, 0, 200]),
    }
}

/// A rasterised glyph.
#[derive(Debug, Clone)]
struct Glyph {
    /// Bitmap left edge relative to the pen.
    xmin: i32,
    /// Bitmap bottom edge relative to the baseline (up is positive).
    ymin: i32,
    width: usize,
    height: usize,
    /// Pen advance in pixels.
    advance: f32,
    /// Coverage, row-major, top row first.
    coverage: Vec<u8>,
}

/// The font and its glyph cache.
#[derive(Clone)]
struct Glyphs {
    font: Arc<fontdue::Font>,
    cache: HashMap<(char, u16), Glyph>,
    hits: u64,
    misses: u64,
}

impl Glyphs {
    fn glyph(&mut self, c: char, px: u16) -> &Glyph {
        match self.cache.entry((c, px)) {
            Entry::Occupied(e) => {
                self.hits += 1;
                e.into_mut()
            }
            Entry::Vacant(e) => {
                self.misses += 1;
                let (m, coverage) = self.font.rasterize(c, f32::from(px));
                e.insert(Glyph {
                    xmin: m.xmin,
                    ymin: m.ymin,
                    width: m.width,
                    height: m.height,
                    advance: m.advance_width,
                    coverage,
                })
            }
        }
    }

    fn trim(&mut self) {
        if self.cache.len() > MAX_CACHED_GLYPHS {
            self.cache.clear();
        }
    }

    /// Ascent and line height (ascent − descent) in whole pixels.
    fn line(&self, px: u16) -> (i32, i32) {
        let px_f = f32::from(px);
        match self.font.horizontal_line_metrics(px_f) {
            Some(m) => {
                let ascent = m.ascent.ceil() as i32;
                (ascent, ascent + (-m.descent).ceil() as i32)
            }
            None => (px_f.ceil() as i32, (px_f * 1.25).ceil() as i32),
        }
    }

    /// Width of `text` in pixels.
    fn measure(&mut self, text: &str, px: u16) -> i32 {
        let mut pen = 0.0f32;
        for c in text.chars() {
            pen += self.glyph(clean(c), px).advance;
        }
        pen.ceil() as i32
    }

    /// `text`, shortened with "…" to fit `max_w` pixels.
    fn fit(&mut self, text: &str, px: u16, max_w: i32) -> String {
        if self.measure(text, px) <= max_w {
            return text.to_string();
        }
        let ell = self.glyph('…', px).advance;
        let mut pen = 0.0f32;
        let mut out = String::new();
        for c in text.chars() {
            let a = self.glyph(clean(c), px).advance;
            if pen + a + ell > max_w as f32 {
                break;
            }
            pen += a;
            out.push(c);
        }
        if max_w as f32 >= ell {
            out.push('…');
        }
        out
    }

    /// Blends `text` onto `img` with its baseline at `y`, starting at `x`; returns the width drawn.
    fn draw(
        &mut self,
        img: &mut Canvas<'_>,
        x: i32,
        y: i32,
        text: &str,
        px: u16,
        colour: Bgr,
    ) -> i32 {
        let mut pen = x as f32;
        for c in text.chars() {
            let g = self.glyph(clean(c), px);
            let left = pen.round() as i32 + g.xmin;
            let top = y - g.ymin - g.height as i32;
            img.blend_coverage(left, top, g.width, g.height, &g.coverage, colour);
            pen += g.advance;
        }
        (pen - x as f32).ceil() as i32
    }
}

/// Control characters would draw as boxes; a space is what was meant.
fn clean(c: char) -> char {
    if c.is_control() { ' ' } else { c }
}

/// A packed BGR picture being drawn on (the renderer's OpenCV canvas, as bytes).
struct Canvas<'a> {
    data: &'a mut [u8],
    w: i32,
    h: i32,
}

impl Canvas<'_> {
    /// dst = dst + (colour − dst) · coverage / 255, clipped to the picture.
    fn blend_coverage(
        &mut self,
        left: i32,
        top: i32,
        gw: usize,
        gh: usize,
        coverage: &[u8],
        colour: Bgr,
    ) {
        let gw_i = gw as i32;
        for gy in 0..gh as i32 {
            let y = top + gy;
            if y < 0 || y >= self.h {
                continue;
            }
            let x0 = left.max(0);
            let x1 = (left + gw_i).min(self.w);
            for x in x0..x1 {
                let a = coverage
                    .get((gy * gw_i + x - left) as usize)
                    .copied()
                    .unwrap_or(0);
                if a == 0 {
                    continue;
                }
                let i = ((y * self.w + x) * 3) as usize;
                blend_px(&mut self.data[i..i + 3], colour, u32::from(a));
            }
        }
    }

    /// Multiplies every pixel of rows `y0..y1` by `keep`/256 (a translucent dark band).
    fn darken_rows(&mut self, y0: i32, y1: i32, keep: u32) {
        let (y0, y1) = (y0.clamp(0, self.h), y1.clamp(0, self.h));
        let row = self.w as usize * 3;
        for b in &mut self.data[y0 as usize * row..y1 as usize * row] {
            *b = ((u32::from(*b) * keep) >> 8) as u8;
        }
    }
}

/// One pixel: dst = dst + (colour − dst) · a / 255.
fn blend_px(px: &mut [u8], colour: Bgr, a: u32) {
    for (d, c) in px.iter_mut().zip(colour) {
        let v = u32::from(*d) * (255 - a) + u32::from(c) * a;
        *d = ((v + 127) / 255) as u8;
    }
}

fn scalar(c: Bgr) -> Scalar {
    Scalar::new(f64::from(c[0]), f64::from(c[1]), f64::from(c[2]), 0.0)
}

/// Where things went on the last picture (for tests).
#[derive(Debug, Clone, Default)]
struct Layout {
    header: Option<Rect>,
    /// Tag rectangles, in drawing order, with the text drawn in each.
    tags: Vec<(Rect, String)>,
}

/// Tag and title text sizes in pixels for a frame `height` lines high: 17 and 20 px at 576 lines,
/// never below 12 px.
fn text_px(height: u32) -> (u16, u16) {
    let s = height as f32 / 576.0;
    (
        (17.0 * s).round().clamp(12.0, 64.0) as u16,
        (20.0 * s).round().clamp(12.0, 72.0) as u16,
    )
}

/// Draws annotated snapshots. Holds the font (shared by clones), a glyph cache and a reused canvas;
/// one per thread, or behind a mutex.
#[derive(Clone)]
pub struct Renderer {
    glyphs: Glyphs,
    font_path: PathBuf,
    quality: u8,
    canvas: Mat,
    layout: Layout,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("font_path", &self.font_path)
            .field("quality", &self.quality)
            .field("cached_glyphs", &self.glyphs.cache.len())
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Loads the font at `font_path` (default [`DEFAULT_FONT_PATH`]; a `.ttc` collection uses its
    /// first face) and checks it has Chinese glyphs.
    pub fn new(font_path: Option<&Path>) -> Result<Renderer, SnapshotError> {
        let path = font_path.map_or_else(|| PathBuf::from(DEFAULT_FONT_PATH), Path::to_path_buf);
        let started = Instant::now();
        let bytes = std::fs::read(&path).map_err(|source| SnapshotError::FontMissing {
            path: path.clone(),
            source,
        })?;
        let settings = fontdue::FontSettings {
            collection_index: 0,
            scale: 20.0,
            load_substitutions: false,
        };
        let font = fontdue::Font::from_bytes(bytes, settings).map_err(|message| {
            SnapshotError::FontInvalid {
                path: path.clone(),
                message: message.to_string(),
            }
        })?;
        if !"人员区域入侵".chars().all(|c| font.has_glyph(c)) {
            return Err(SnapshotError::FontNotCjk { path });
        }
        tracing::info!(
            font = %path.display(),
            name = font.name().unwrap_or("?"),
            glyphs = font.glyph_count(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "snapshot font loaded"
        );
        Ok(Renderer {
            glyphs: Glyphs {
                font: Arc::new(font),
                cache: HashMap::new(),
                hits: 0,
                misses: 0,
            },
            font_path: path,
            quality: DEFAULT_JPEG_QUALITY,
            canvas: Mat::default(),
            layout: Layout::default(),
        })
    }

    /// The font file in use.
    pub fn font_path(&self) -> &Path {
        &self.font_path
    }

    /// JPEG quality, 1–100.
    pub fn quality(&self) -> u8 {
        self.quality
    }

    /// Sets the JPEG quality (clamped to 1–100; default [`DEFAULT_JPEG_QUALITY`]).
    pub fn set_quality(&mut self, quality: u8) {
        self.quality = quality.clamp(1, 100);
    }

    /// Builder form of [`Renderer::set_quality`].
    pub fn with_quality(mut self, quality: u8) -> Renderer {
        self.set_quality(quality);
        self
    }

    /// Glyph cache: (glyphs held, lookups served from the cache, glyphs rasterised).
    pub fn glyph_cache_stats(&self) -> (usize, u64, u64) {
        (
            self.glyphs.cache.len(),
            self.glyphs.hits,
            self.glyphs.misses,
        )
    }

    /// Draws `overlay` on `frame` and encodes the result as a JPEG (same size as the frame).
    pub fn render(
        &mut self,
        frame: &DecodedFrame,
        overlay: &Overlay,
    ) -> Result<Vec<u8>, SnapshotError> {
        self.draw(frame, overlay)?;
        self.encode(frame.width, frame.height)
    }

    /// Draws `overlay` on `frame` and returns the annotated picture, packed BGR (`width × 3` bytes
    /// per row, no padding).
    pub fn render_bgr(
        &mut self,
        frame: &DecodedFrame,
        overlay: &Overlay,
    ) -> Result<Vec<u8>, SnapshotError> {
        self.draw(frame, overlay)?;
        Ok(self
            .canvas
            .data_bytes()
            .map_err(cv("canvas bytes"))?
            .to_vec())
    }

    fn encode(&self, width: u32, height: u32) -> Result<Vec<u8>, SnapshotError> {
        let mut buf = Vector::<u8>::new();
        let params =
            Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(self.quality)]);
        let ok = imgcodecs::imencode(".jpg", &self.canvas, &mut buf, &params)
            .map_err(cv("JPEG encode"))?;
        if !ok || buf.is_empty() {
            return Err(SnapshotError::Encode { width, height });
        }
        Ok(buf.to_vec())
    }

    /// Copies the frame into the canvas and draws everything on it.
    fn draw(&mut self, frame: &DecodedFrame, overlay: &Overlay) -> Result<(), SnapshotError> {
        let (wi, hi) = copy_into(&mut self.canvas, frame)?;
        let h = hi as usize;
        let s = h as f32 / 576.0;
        let thick = (2.0 * s).round().max(1.0) as i32;
        let (label_px, title_px) = text_px(frame.height);
        let mut layout = Layout::default();

        let header_h = self.header_height(overlay, title_px);
        if let Some(zone) = &overlay.zone {
            self.draw_zone(zone, overlay.direction, wi, hi, s, thick)?;
        }
        // Rectangles first (highlighted on top), then tags, so no box line crosses a label. The
        // alert's tags are placed first and get the best spots.
        let mut boxes: Vec<(&OverlayBox, Rect)> = Vec::new();
        for b in overlay.boxes.iter().filter(|b| !b.highlight) {
            boxes.extend(self.draw_box(b, wi, hi, thick)?.map(|r| (b, r)));
        }
        let mut highlighted = 0;
        for b in overlay.boxes.iter().filter(|b| b.highlight) {
            if let Some(r) = self.draw_box(b, wi, hi, thick)? {
                boxes.push((b, r));
                highlighted += 1;
            }
        }
        let (others, alert_boxes) = boxes.split_at(boxes.len() - highlighted);
        for &(b, r) in alert_boxes.iter().chain(others) {
            if let Some(tag) = self.draw_tag(b, r, wi, hi, label_px, header_h, &layout.tags)? {
                layout.tags.push(tag);
            }
        }
        layout.header = self.draw_header(overlay, wi, header_h, title_px, thick)?;
        self.layout = layout;
        self.glyphs.trim();
        Ok(())
    }

    /// Header height for `overlay` (0 when there is nothing to show).
    fn header_height(&self, overlay: &Overlay, px: u16) -> i32 {
        let (_, line_h) = self.glyphs.line(px);
        let pad = (f32::from(px) * 0.3).round() as i32;
        let lines = if overlay.title_en.trim().is_empty() {
            1
        } else {
            2
        };
        pad + lines * line_h + (lines - 1) * (pad / 2) + pad
    }

    fn draw_zone(
        &mut self,
        zone: &[[f32; 2]],
        direction: Option<Direction>,
        w: i32,
        h: i32,
        s: f32,
        thick: i32,
    ) -> Result<(), SnapshotError> {
        if zone.len() < 2 || zone.iter().flatten().any(|v| !v.is_finite()) {
            return Ok(());
        }
        // Far-away points are clamped so OpenCV's fixed-point maths cannot overflow.
        let pts: Vec<Point> = zone
            .iter()
            .map(|p| {
                Point::new(
                    (p[0] * w as f32).clamp(-4.0 * w as f32, 5.0 * w as f32) as i32,
                    (p[1] * h as f32).clamp(-4.0 * h as f32, 5.0 * h as f32) as i32,
                )
            })
            .collect();
        if let [a, b] = pts[..] {
            return self.draw_tripwire(a, b, direction, s, thick);
        }

        // Translucent fill: an anti-aliased mask over the zone's bounding box, blended in Rust.
        let (min_x, max_x) = pts.iter().fold((i32::MAX, i32::MIN), |(lo, hi), p| {
            (lo.min(p.x), hi.max(p.x))
        });
        let (min_y, max_y) = pts.iter().fold((i32::MAX, i32::MIN), |(lo, hi), p| {
            (lo.min(p.y), hi.max(p.y))
        });
        let (x0, y0) = (min_x.max(0), min_y.max(0));
        let (x1, y1) = ((max_x + 1).min(w), (max_y + 1).min(h));
        if x1 > x0 && y1 > y0 {
            let (rw, rh) = (x1 - x0, y1 - y0);
            let mut mask =
                Mat::new_rows_cols_with_default(rh, rw, opencv::core::CV_8UC1, Scalar::all(0.0))
                    .map_err(cv("zone mask"))?;
            let polys = Vector::<Vector<Point>>::from_iter([Vector::from_slice(&pts)]);
            imgproc::fill_poly(
                &mut mask,
                &polys,
                Scalar::all(255.0),
                imgproc::LINE_AA,
                0,
                Point::new(-x0, -y0),
            )
            .map_err(cv("zone fill"))?;
            let m = mask.data_bytes().map_err(cv("zone mask bytes"))?;
            let data = self.canvas.data_bytes_mut().map_err(cv("canvas bytes"))?;
            const FILL_ALPHA: u32 = 70; // of 255
            for ry in 0..rh {
                for rx in 0..rw {
                    let a = u32::from(m[(ry * rw + rx) as usize]);
                    if a == 0 {
                        continue;
                    }
                    let i = (((y0 + ry) * w + x0 + rx) * 3) as usize;
                    blend_px(&mut data[i..i + 3], ZONE, a * FILL_ALPHA / 255);
                }
            }
        }
        let polys = Vector::<Vector<Point>>::from_iter([Vector::from_slice(&pts)]);
        imgproc::polylines(
            &mut self.canvas,
            &polys,
            true,
            scalar(ZONE),
            thick,
            imgproc::LINE_AA,
            0,
        )
        .map_err(cv("zone outline"))
    }

    fn draw_tripwire(
        &mut self,
        a: Point,
        b: Point,
        direction: Option<Direction>,
        s: f32,
        thick: i32,
    ) -> Result<(), SnapshotError> {
        let line_t = (thick * 2).max(3);
        imgproc::line(
            &mut self.canvas,
            a,
            b,
            scalar(ZONE),
            line_t,
            imgproc::LINE_AA,
            0,
        )
        .map_err(cv("tripwire"))?;
        for p in [a, b] {
            imgproc::circle(
                &mut self.canvas,
                p,
                line_t + 2,
                scalar(ZONE),
                -1,
                imgproc::LINE_AA,
                0,
            )
            .map_err(cv("tripwire end"))?;
        }
        let Some(direction) = direction else {
            return Ok(());
        };
        let (dx, dy) = ((b.x - a.x) as f32, (b.y - a.y) as f32);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1.0 {
            return Ok(());
        }
        // Unit normal towards side B (the right of a → b on screen, y down).
        let (nx, ny) = (-dy / len, dx / len);
        let mid = ((a.x + b.x) as f32 / 2.0, (a.y + b.y) as f32 / 2.0);
        let reach = 45.0 * s.max(0.5);
        let at = |k: f32| Point::new((mid.0 + nx * k) as i32, (mid.1 + ny * k) as i32);
        let arrows: &[(f32, f32)] = match direction {
            Direction::AToB => &[(-reach, reach)],
            Direction::BToA => &[(reach, -reach)],
            Direction::Both => &[(0.0, reach), (0.0, -reach)],
        };
        for &(from, to) in arrows {
            imgproc::arrowed_line(
                &mut self.canvas,
                at(from),
                at(to),
                scalar(ZONE),
                thick + 1,
                imgproc::LINE_AA,
                0,
                0.35,
            )
            .map_err(cv("tripwire arrow"))?;
        }
        // Side letters just beyond the arrow ends.
        let px = (16.0 * s).round().clamp(12.0, 64.0) as u16;
        let (ascent, _) = self.glyphs.line(px);
        let (w, h) = (self.canvas.cols(), self.canvas.rows());
        let mut img = Canvas {
            data: self.canvas.data_bytes_mut().map_err(cv("canvas bytes"))?,
            w,
            h,
        };
        for (letter, k) in [("A", -reach * 1.35), ("B", reach * 1.35)] {
            let p = at(k);
            let lw = self.glyphs.measure(letter, px);
            self.glyphs
                .draw(&mut img, p.x - lw / 2, p.y + ascent / 2, letter, px, ZONE);
        }
        Ok(())
    }

    /// Draws one box's rectangle; returns it clipped to the frame (None when nothing is visible).
    fn draw_box(
        &mut self,
        b: &OverlayBox,
        w: i32,
        h: i32,
        thick: i32,
    ) -> Result<Option<Rect>, SnapshotError> {
        if b.bbox.iter().any(|v| !v.is_finite()) {
            return Ok(None);
        }
        let (wf, hf) = (w as f32, h as f32);
        let x1 = b.bbox[0].min(b.bbox[2]).clamp(-1.0, wf) as i32;
        let y1 = b.bbox[1].min(b.bbox[3]).clamp(-1.0, hf) as i32;
        let x2 = b.bbox[0].max(b.bbox[2]).clamp(-1.0, wf) as i32;
        let y2 = b.bbox[1].max(b.bbox[3]).clamp(-1.0, hf) as i32;
        if x2 <= 0 || y2 <= 0 || x1 >= w || y1 >= h || x2 <= x1 || y2 <= y1 {
            return Ok(None);
        }
        let (colour, t) = if b.highlight {
            (RED, thick + 1)
        } else {
            (YELLOW, thick)
        };
        let r = Rect::new(x1, y1, x2 - x1, y2 - y1);
        imgproc::rectangle(&mut self.canvas, r, scalar(colour), t, imgproc::LINE_8, 0)
            .map_err(cv("box"))?;
        Ok(Some(r))
    }

    /// Draws the tag of box `b` (drawn at `r`): above the box if there is room below the header,
    /// else stacked higher, below it, or inside its top edge, whichever first overlaps no tag
    /// already `placed`. Returns the tag rectangle and text.
    #[allow(clippy::too_many_arguments)]
    fn draw_tag(
        &mut self,
        b: &OverlayBox,
        r: Rect,
        w: i32,
        h: i32,
        px: u16,
        header_h: i32,
        placed: &[(Rect, String)],
    ) -> Result<Option<(Rect, String)>, SnapshotError> {
        let text = b.label();
        if text.is_empty() {
            return Ok(None);
        }
        let (colour, text_colour) = if b.highlight {
            (RED, WHITE)
        } else {
            (YELLOW, BLACK)
        };
        let pad = (f32::from(px) * 0.25).round().max(2.0) as i32;
        let (ascent, line_h) = self.glyphs.line(px);
        let text = self.glyphs.fit(&text, px, w - 2 * pad);
        let tw = self.glyphs.measure(&text, px);
        let (tag_w, tag_h) = (tw + 2 * pad, line_h + pad);
        let tx = r.x.clamp(0, (w - tag_w).max(0));
        let (top, bottom) = (r.y, r.y + r.height);
        let fits = |y: i32| y >= header_h && y + tag_h <= h;
        let free = |y: i32| {
            let t = Rect::new(tx, y, tag_w, tag_h);
            placed.iter().all(|(p, _)| (*p & t).area() == 0)
        };
        // Inside the box (over the object itself) only as a last resort.
        let candidates = [
            top - tag_h,
            top - 2 * tag_h,
            bottom,
            bottom + tag_h,
            top - 3 * tag_h,
            top,
        ];
        let ty = candidates
            .iter()
            .copied()
            .find(|&y| fits(y) && free(y))
            .or_else(|| candidates.iter().copied().find(|&y| fits(y)))
            .unwrap_or_else(|| top.max(header_h).min(h - tag_h).max(0));
        let tag = Rect::new(tx, ty, tag_w.min(w - tx), tag_h.min(h - ty));
        imgproc::rectangle(
            &mut self.canvas,
            tag,
            scalar(colour),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )
        .map_err(cv("tag"))?;
        let mut img = Canvas {
            data: self.canvas.data_bytes_mut().map_err(cv("canvas bytes"))?,
            w,
            h,
        };
        self.glyphs.draw(
            &mut img,
            tx + pad,
            ty + pad / 2 + ascent,
            &text,
            px,
            text_colour,
        );
        Ok(Some((tag, text)))
    }

    /// Dark translucent band: severity chip, Chinese title and time on line 1, English title on
    /// line 2, a severity-coloured bottom edge.
    fn draw_header(
        &mut self,
        overlay: &Overlay,
        w: i32,
        header_h: i32,
        px: u16,
        thick: i32,
    ) -> Result<Option<Rect>, SnapshotError> {
        let h = self.canvas.rows();
        let header_h = header_h.min(h);
        if header_h <= 0 {
            return Ok(None);
        }
        let (chip_text, chip_colour) = severity_chip(overlay.severity);
        let (ascent, line_h) = self.glyphs.line(px);
        let pad = (f32::from(px) * 0.3).round() as i32;
        let gap = px as i32;
        let min_px = 10u16.min(px);

        let time = overlay.time_text.trim();
        let time_w = self.glyphs.measure(time, px);
        let chip_w = self.glyphs.measure(chip_text, px) + 2 * pad;

        {
            let mut img = Canvas {
                data: self.canvas.data_bytes_mut().map_err(cv("canvas bytes"))?,
                w,
                h,
            };
            img.darken_rows(0, header_h, 90);
        }
        let chip = Rect::new(
            pad,
            pad / 2,
            chip_w.min(w - pad).max(0),
            (line_h + pad).min(header_h),
        );
        imgproc::rectangle(
            &mut self.canvas,
            chip,
            scalar(chip_colour),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )
        .map_err(cv("severity chip"))?;
        let edge = thick.max(2);
        imgproc::rectangle(
            &mut self.canvas,
            Rect::new(0, (header_h - edge).max(0), w, edge.min(header_h)),
            scalar(chip_colour),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )
        .map_err(cv("header edge"))?;

        let base1 = pad + ascent;
        let title_x = pad + chip_w + pad;
        let time_x = (w - pad - time_w).max(title_x);
        let room1 = time_x - gap.min(time_x - title_x) - title_x;
        let zh = overlay.title_zh.trim();
        let zh_px = self.shrink_to_fit(zh, px, min_px, room1);
        let zh = self.glyphs.fit(zh, zh_px, room1);
        let en = overlay.title_en.trim();
        let room2 = w - 2 * pad;
        let en_px = self.shrink_to_fit(en, px, min_px, room2);
        let en = self.glyphs.fit(en, en_px, room2);

        let mut img = Canvas {
            data: self.canvas.data_bytes_mut().map_err(cv("canvas bytes"))?,
            w,
            h,
        };
        self.glyphs
            .draw(&mut img, 2 * pad, base1, chip_text, px, WHITE);
        self.glyphs
            .draw(&mut img, title_x, base1, &zh, zh_px, WHITE);
        if time_w <= w - title_x {
            self.glyphs.draw(&mut img, time_x, base1, time, px, LIGHT);
        }
        if !en.is_empty() {
            let base2 = pad + line_h + pad / 2 + ascent;
            self.glyphs.draw(&mut img, pad, base2, &en, en_px, LIGHT);
        }
        Ok(Some(Rect::new(0, 0, w, header_h)))
    }

    /// The largest size from `px` down to `min_px` at which `text` fits `room` pixels.
    fn shrink_to_fit(&mut self, text: &str, px: u16, min_px: u16, room: i32) -> u16 {
        let mut p = px;
        while p > min_px && self.glyphs.measure(text, p) > room {
            p -= 1;
        }
        p
    }
}

/// Copies a decoded frame (packed BGR rows of `stride` bytes) into `canvas`, resizing it if needed;
/// returns the size. A frame whose sizes do not add up is an error, never a panic.
fn copy_into(canvas: &mut Mat, frame: &DecodedFrame) -> Result<(i32, i32), SnapshotError> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let bad = || SnapshotError::BadFrame {
        width: frame.width,
        height: frame.height,
        stride: frame.stride,
        len: frame.data.len(),
    };
    let row = w.checked_mul(3).ok_or_else(bad)?;
    let needed = frame
        .stride
        .checked_mul(h.saturating_sub(1))
        .and_then(|n| n.checked_add(row))
        .ok_or_else(bad)?;
    if w == 0
        || h == 0
        || frame.stride < row
        || frame.data.len() < needed
        || i32::try_from(w).is_err()
        || i32::try_from(h).is_err()
    {
        return Err(bad());
    }
    let (wi, hi) = (w as i32, h as i32);
    if canvas.cols() != wi || canvas.rows() != hi || canvas.typ() != opencv::core::CV_8UC3 {
        *canvas = Mat::new_rows_cols_with_default(hi, wi, opencv::core::CV_8UC3, Scalar::all(0.0))
            .map_err(cv("canvas"))?;
    }
    {
        let dst = canvas.data_bytes_mut().map_err(cv("canvas bytes"))?;
        for (y, out) in dst.chunks_exact_mut(row).enumerate() {
            let start = y * frame.stride;
            out.copy_from_slice(&frame.data[start..start + row]);
        }
    }

    Ok((wi, hi))
}

/// The frame as a plain JPEG (no annotation), at most `max_width` wide: camera-wall thumbnails and
/// the zone editor's background.
pub fn frame_jpeg(
    frame: &DecodedFrame,
    max_width: u32,
    quality: u8,
) -> Result<Vec<u8>, SnapshotError> {
    let mut full = Mat::default();
    let (wi, hi) = copy_into(&mut full, frame)?;
    let picture = if wi as u32 > max_width && max_width > 0 {
        let nh = ((hi as f64) * f64::from(max_width) / f64::from(wi))
            .round()
            .max(1.0) as i32;
        let mut small = Mat::default();
        imgproc::resize(
            &full,
            &mut small,
            opencv::core::Size::new(max_width as i32, nh),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .map_err(cv("thumbnail resize"))?;
        small
    } else {
        full
    };
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    let ok = imgcodecs::imencode(".jpg", &picture, &mut buf, &params).map_err(cv("JPEG encode"))?;
    if !ok || buf.is_empty() {
        return Err(SnapshotError::Encode {
            width: frame.width,
            height: frame.height,
        });
    }
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::SystemTime;

    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;
    use gstreamer_video as gst_video;

    use super::*;
    use crate::decode::PixelFormat;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// One loaded renderer per test binary; tests clone it (the font is shared, the cache copied).
    fn renderer() -> Renderer {
        static R: OnceLock<Renderer> = OnceLock::new();
        R.get_or_init(|| Renderer::new(None).expect("font: run scripts/setup"))
            .clone()
    }

    /// A grey gradient frame with `pad` spare bytes per row.
    fn synthetic(w: u32, h: u32, pad: usize) -> DecodedFrame {
        let stride = w as usize * 3 + pad;
        let mut data = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let v = (60 + (x * 80 / w as usize) + (y * 40 / h as usize)) as u8;
                data[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
        DecodedFrame {
            camera: "cam-test".into(),
            pts_90k: 0,
            arrival: SystemTime::now(),
            decoded_at: SystemTime::now(),
            width: w,
            height: h,
            stride,
            format: PixelFormat::Bgr,
            data,
        }
    }

    fn obox(bbox: [f32; 4], zh: &str, en: &str, id: u64, score: f32, hi: bool) -> OverlayBox {
        OverlayBox {
            bbox,
            label_zh: zh.into(),
            label_en: en.into(),
            track_id: Some(id),
            score: Some(score),
            highlight: hi,
        }
    }

    fn overlay(s: f32) -> Overlay {
        Overlay {
            title_zh: "区域入侵：人员进入「北门广场」（目标 #12）".into(),
            title_en: "Intrusion: person entered \"North gate square\" (track #12)".into(),
            time_text: "2026-11-22 09:30:05".into(),
            zone: Some(vec![[0.2, 0.4], [0.8, 0.35], [0.9, 0.9], [0.15, 0.85]]),
            direction: None,
            boxes: vec![
                obox(
                    [300.0 * s, 250.0 * s, 360.0 * s, 400.0 * s],
                    "人员",
                    "person",
                    12,
                    0.62,
                    true,
                ),
                obox(
                    [500.0 * s, 200.0 * s, 550.0 * s, 330.0 * s],
                    "车辆",
                    "vehicle",
                    7,
                    0.48,
                    false,
                ),
            ],
            severity: Severity::High,
        }
    }

    fn decode_jpeg(jpeg: &[u8]) -> Mat {
        imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), imgcodecs::IMREAD_COLOR).unwrap()
    }

    #[test]
    fn renders_a_valid_jpeg_of_the_frame_size() {
        let mut r = renderer();
        for (w, h, pad) in [(768, 576, 0), (384, 288, 16)] {
            let frame = synthetic(w, h, pad);
            let jpeg = r.render(&frame, &overlay(h as f32 / 576.0)).unwrap();
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "JPEG SOI");
            assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9], "JPEG EOI");
            let img = decode_jpeg(&jpeg);
            assert_eq!((img.cols(), img.rows()), (w as i32, h as i32));
            assert_eq!(r.layout.tags.len(), 2);
            assert!(r.layout.header.is_some());
            // Text scales with the frame height, never below 12 px.
            let want = if h == 576 { (17, 20) } else { (12, 12) };
            assert_eq!(text_px(h), want);
        }
    }

    /// Pixels inside `rect` of a packed BGR picture that differ from `bg` by more than 60 in some
    /// channel.
    fn changed(bgr: &[u8], w: i32, rect: Rect, bg: Bgr) -> usize {
        let mut n = 0;
        for y in rect.y..rect.y + rect.height {
            for x in rect.x..rect.x + rect.width {
                let i = ((y * w + x) * 3) as usize;
                if bgr[i..i + 3]
                    .iter()
                    .zip(bg)
                    .any(|(a, b)| a.abs_diff(b) > 60)
                {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn chinese_label_text_is_really_drawn() {
        let mut r = renderer();
        let frame = synthetic(768, 576, 0);
        let font = r.glyphs.font.clone();
        for c in "人员车辆区域入侵北门广场".chars() {
            assert_ne!(font.lookup_glyph_index(c), 0, "{c} has no glyph");
        }
        let mut ov = overlay(1.0);
        ov.boxes = vec![OverlayBox {
            bbox: [300.0, 250.0, 420.0, 400.0],
            label_zh: "倒地人员".into(),
            label_en: String::new(),
            track_id: None,
            score: None,
            highlight: false,
        }];
        let bgr = r.render_bgr(&frame, &ov).unwrap();
        let (tag, text) = r.layout.tags[0].clone();
        assert_eq!(text, "倒地人员");
        let n = changed(&bgr, 768, tag, YELLOW);
        // Four 17 px CJK characters: a few hundred dark pixels on the yellow tag.
        assert!(n > 150, "only {n} text pixels in the tag {tag:?}");
        let area = (tag.width * tag.height) as usize;
        assert!(n < area * 6 / 10, "{n} of {area}: text, not a filled block");
        // And they are the real glyphs, not the font's "missing glyph" box (tofu).
        let (_, tofu) = font.rasterize_indexed(0, f32::from(text_px(576).0));
        for c in text.chars() {
            let (_, bitmap) = font.rasterize(c, f32::from(text_px(576).0));
            assert_ne!(bitmap, tofu, "{c} rasterises as tofu");
            assert!(
                bitmap.iter().filter(|&&a| a > 128).count() > 20,
                "{c} is blank"
            );
        }
        // The header shows text too: pixels brighter than the darkened band.
        let bgr = r.render_bgr(&frame, &overlay(1.0)).unwrap();
        let header = r.layout.header.unwrap();
        let bright = changed(&bgr, 768, header, [40, 40, 40]);
        assert!(bright > 1500, "{bright} bright pixels in the header");
    }

    #[test]
    fn missing_font_is_a_clear_error() {
        let err =
            Renderer::new(Some(Path::new("/nonexistent/fonts/wqy-microhei.ttc"))).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SnapshotError::FontMissing { .. }), "{msg}");
        assert!(msg.contains("/nonexistent/fonts/wqy-microhei.ttc"), "{msg}");
        assert!(msg.contains("scripts/setup"), "{msg}");
        assert!(msg.contains("fonts-wqy-microhei"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.ttf");
        std::fs::write(&junk, b"not a font").unwrap();
        let err = Renderer::new(Some(&junk)).unwrap_err();
        assert!(matches!(err, SnapshotError::FontInvalid { .. }), "{err}");
        assert!(err.to_string().contains("fonts-wqy-microhei"), "{err}");
    }

    #[test]
    fn glyph_cache_is_reused() {
        let mut r = renderer();
        let frame = synthetic(768, 576, 0);
        let ov = overlay(1.0);
        r.render(&frame, &ov).unwrap();
        let (held, hits, misses) = r.glyph_cache_stats();
        assert!(held > 20);
        let again = r.render(&frame, &ov).unwrap();
        let (held2, hits2, misses2) = r.glyph_cache_stats();
        assert_eq!(held2, held, "no new glyphs");
        assert_eq!(misses2, misses, "nothing rasterised the second time");
        assert!(hits2 > hits + 50);
        // Same input, same picture.
        assert_eq!(again, r.render(&frame, &ov).unwrap());
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut r = renderer();
        let frame = synthetic(384, 288, 5);
        let odd = Overlay {
            title_zh: String::new(),
            title_en: String::new(),
            time_text: String::new(),
            zone: Some(vec![[-3.0, 0.5], [1e30, 2.0], [0.5, f32::MAX]]),
            direction: Some(Direction::Both),
            boxes: vec![
                obox([-50.0, -40.0, 30.0, 60.0], "人员", "person", 1, 0.9, true),
                obox([370.0, 270.0, 500.0, 400.0], "", "", 2, f32::NAN, false),
                obox([f32::NAN, 0.0, 10.0, 10.0], "人员", "", 3, 0.5, false),
                obox([900.0, 900.0, 950.0, 950.0], "人员", "", 4, 0.5, true),
                obox([100.0, 100.0, 100.0, 100.0], "", "", 5, 0.5, false),
                obox(
                    [200.0, 150.0, 120.0, 80.0],
                    "很长的标签".repeat(20).as_str(),
                    "\n\t",
                    6,
                    0.1,
                    false,
                ),
                OverlayBox {
                    bbox: [10.0, 200.0, 60.0, 280.0],
                    label_zh: String::new(),
                    label_en: String::new(),
                    track_id: None,
                    score: None,
                    highlight: false,
                },
            ],
            severity: Severity::Critical,
        };
        let jpeg = r.render(&frame, &odd).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        for zone in [
            vec![],
            vec![[0.5, 0.5]],
            vec![[0.1, 0.5], [0.1, 0.5]],
            vec![[f32::NAN, 0.0], [1.0, 1.0]],
        ] {
            let ov = Overlay {
                zone: Some(zone),
                direction: Some(Direction::AToB),
                ..odd.clone()
            };
            r.render(&frame, &ov).unwrap();
        }
        let long = Overlay {
            title_zh: "特别长的告警标题".repeat(30),
            title_en: "A very long alert title ".repeat(30),
            ..overlay(0.5)
        };
        r.render(&frame, &long).unwrap();
        // Tiny frames and bad buffers.
        r.render(&synthetic(8, 6, 0), &overlay(0.01)).unwrap();
        let mut short = synthetic(64, 48, 0);
        short.data.truncate(100);
        assert!(matches!(
            r.render(&short, &odd),
            Err(SnapshotError::BadFrame { .. })
        ));
        let mut narrow = synthetic(64, 48, 0);
        narrow.stride = 10;
        assert!(matches!(
            r.render(&narrow, &odd),
            Err(SnapshotError::BadFrame { .. })
        ));
    }

    #[test]
    fn overlay_from_alert_uses_tracks() {
        let track = |id: u64, kind: ObjectKind, bbox: [f32; 4], missed: u32| Track {
            id,
            bbox,
            kind,
            score: 0.7,
            velocity_px_s: (0.0, 0.0),
            first_seen: 0.0,
            last_seen: 1.0,
            hits: 5,
            missed,
        };
        let tracks = vec![
            track(12, ObjectKind::Person, [10.0, 10.0, 50.0, 100.0], 0),
            track(13, ObjectKind::Vehicle, [100.0, 10.0, 200.0, 100.0], 0),
            track(14, ObjectKind::Person, [300.0, 10.0, 340.0, 100.0], 2),
        ];
        // 2026-11-22 09:30:05 CST.
        let mut alert = Alert::raised(
            "r1",
            "cam-1",
            crate::rules::AlertType::Intrusion,
            Severity::High,
            1_795_311_005_000,
            0.7,
            false,
        );
        alert.boxes = vec![[11.0, 11.0, 51.0, 101.0]];
        alert.track_ids = vec![12];
        alert.message_zh = "区域入侵：人员进入「北门」（目标 #12）".into();
        let zone = Some(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]);
        let ov = Overlay::from_alert(&alert, zone, &tracks, None);
        assert_eq!(ov.time_text, "2026-11-22 09:30:05");
        assert_eq!(ov.title_en, "Intrusion");
        assert_eq!(ov.boxes.len(), 2, "the missed track is not drawn");
        assert!(!ov.boxes[0].highlight);
        assert_eq!(ov.boxes[0].label(), "机动车 vehicle #13 0.70");
        assert!(ov.boxes[1].highlight);
        assert_eq!(ov.boxes[1].bbox, [11.0, 11.0, 51.0, 101.0]);
        assert_eq!(ov.boxes[1].label(), "人员 person #12 0.70");
    }

    /// Frames of an asset video by index, packed BGR.
    fn video_frames(rel: &str, indices: &[usize]) -> Vec<DecodedFrame> {
        let path = repo().join("assets/video").join(rel);
        assert!(
            path.exists(),
            "{} is missing: run scripts/setup",
            path.display()
        );
        gst::init().unwrap();
        let desc = format!(
            "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=BGR \
             ! appsink name=sink sync=false max-buffers=4",
            path.display()
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        for i in 0..=*indices.iter().max().unwrap() {
            let sample = sink.pull_sample().expect("video ended early");
            if !indices.contains(&i) {
                continue;
            }
            let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            let map = sample.buffer().unwrap().map_readable().unwrap();
            let stride = info.stride()[0] as usize;
            out.push(DecodedFrame {
                camera: rel.into(),
                pts_90k: i as i64 * 9000,
                arrival: SystemTime::now(),
                decoded_at: SystemTime::now(),
                width: info.width(),
                height: info.height(),
                stride,
                format: PixelFormat::Bgr,
                data: map[..stride * info.height() as usize].to_vec(),
            });
        }
        pipeline.set_state(gst::State::Null).unwrap();
        out
    }

    /// The people in frame 200 (20 s) of the sample video, boxed by eye on the 768×576 main stream.
    fn frame_200_boxes(s: f32) -> Vec<OverlayBox> {
        let b = |x1: f32, y1: f32, x2: f32, y2: f32| [x1 * s, y1 * s, x2 * s, y2 * s];
        vec![
            obox(
                b(80.0, 150.0, 112.0, 217.0),
                "人员",
                "person",
                3,
                0.55,
                false,
            ),
            obox(
                b(217.0, 188.0, 252.0, 269.0),
                "人员",
                "person",
                5,
                0.61,
                false,
            ),
            obox(
                b(485.0, 143.0, 520.0, 224.0),
                "人员",
                "person",
                8,
                0.58,
                false,
            ),
            obox(
                b(612.0, 261.0, 655.0, 371.0),
                "人员",
                "person",
                12,
                0.62,
                true,
            ),
            obox(
                b(700.0, 250.0, 748.0, 356.0),
                "人员",
                "person",
                13,
                0.57,
                true,
            ),
        ]
    }

    fn footpath_overlay(s: f32) -> Overlay {
        Overlay {
            title_zh: "区域入侵：2 名人员进入「北门广场」（目标 #12, #13）".into(),
            title_en: "Intrusion: 2 people entered \"North gate square\" (tracks #12, #13)".into(),
            time_text: "2026-11-22 09:30:05".into(),
            zone: Some(vec![[0.52, 0.42], [0.97, 0.40], [0.99, 0.80], [0.62, 0.72]]),
            direction: None,
            boxes: frame_200_boxes(s),
            severity: Severity::High,
        }
    }

    /// Writes target/snapshots/example_snapshot.jpg (main stream, zone) and
    /// example_snapshot_sub.jpg (384×288 sub stream, tripwire) from frame 200 of the sample video.
    #[test]
    fn example_snapshot_from_the_sample_video() {
        let dir = repo().join("target/snapshots");
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = renderer();

        let main = &video_frames("vtest_main.mp4", &[200])[0];
        assert_eq!((main.width, main.height), (768, 576));
        let jpeg = r.render(main, &footpath_overlay(1.0)).unwrap();
        let img = decode_jpeg(&jpeg);
        assert_eq!((img.cols(), img.rows()), (768, 576));
        assert_eq!(r.layout.tags.len(), 5);
        std::fs::write(dir.join("example_snapshot.jpg"), &jpeg).unwrap();

        let sub = &video_frames("vtest_sub.mp4", &[200])[0];
        let s = sub.height as f32 / 576.0;
        let mut ov = footpath_overlay(s);
        ov.title_zh = "绊线：人员越过「广场入口」（A→B，目标 #5）".into();
        ov.title_en = "Tripwire: person crossed \"Square entrance\" (A→B, track #5)".into();
        ov.zone = Some(vec![[0.22, 0.30], [0.40, 0.62]]);
        ov.direction = Some(Direction::AToB);
        ov.severity = Severity::Medium;
        for b in &mut ov.boxes {
            b.highlight = b.track_id == Some(5);
        }
        let jpeg = r.render(sub, &ov).unwrap();
        let img = decode_jpeg(&jpeg);
        assert_eq!(
            (img.cols() as u32, img.rows() as u32),
            (sub.width, sub.height)
        );
        std::fs::write(dir.join("example_snapshot_sub.jpg"), &jpeg).unwrap();
    }

    /// Render cost at 768×576 with five boxes: `cargo test --release --lib snapshot_render_time --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run by hand"]
    fn snapshot_render_time() {
        let mut r = renderer();
        let frame = video_frames("vtest_main.mp4", &[200]).remove(0);
        let ov = footpath_overlay(1.0);
        r.render(&frame, &ov).unwrap();
        let n = 200;
        let t0 = Instant::now();
        for _ in 0..n {
            r.draw(&frame, &ov).unwrap();
        }
        let draw_ms = t0.elapsed().as_secs_f64() * 1e3 / f64::from(n);
        let t0 = Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes = r.render(&frame, &ov).unwrap().len();
        }
        let total_ms = t0.elapsed().as_secs_f64() * 1e3 / f64::from(n);
        println!(
            "snapshot 768x576 (sample video frame 200), 5 boxes, q{}: draw {draw_ms:.3} ms, draw+JPEG {total_ms:.3} ms, {bytes} bytes",
            r.quality()
        );
        let t0 = Instant::now();
        let fresh = Renderer::new(None).unwrap();
        println!(
            "font load {:.1} ms ({})",
            t0.elapsed().as_secs_f64() * 1e3,
            fresh.font_path().display()
        );
    }
}
