//! Movement read from decoded pictures: each picture as a small grey grid of cell means (VQD's
//! 32×24 thumbnail; the averaging drowns sensor noise), two grids compared cell by cell after taking
//! out a change of the whole picture's brightness (exposure, clouds).

/// Cells across.
pub const GRID_W: usize = 32;
/// Cells down.
pub const GRID_H: usize = 24;

/// A picture as `GRID_W × GRID_H` mean grey levels (0–255).
#[derive(Debug, Clone, PartialEq)]
pub struct GreyGrid {
    cells: Vec<f32>,
}

/// Tuning of the picture difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PictureTuning {
    /// A cell whose mean grey level changed by more than this (after the picture-wide change) moved.
    pub cell_change: f32,
    /// This many moved cells mean movement.
    pub min_cells: usize,
}

impl Default for PictureTuning {
    fn default() -> Self {
        PictureTuning {
            cell_change: 10.0,
            min_cells: 2,
        }
    }
}

impl GreyGrid {
    /// A grid from `GRID_W × GRID_H` cell means, row by row (VQD's thumbnail of the same picture);
    /// `None` when the count is wrong.
    pub fn from_cells(cells: Vec<f32>) -> Option<GreyGrid> {
        (cells.len() == GRID_W * GRID_H).then_some(GreyGrid { cells })
    }

    /// Test pictures: a packed BGR picture shrunk to cell means (luma ≈ (B + 2G + R) / 4).
    #[cfg(test)]
    pub(crate) fn from_bgr(
        data: &[u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Option<GreyGrid> {
        let (w, h) = (width as usize, height as usize);
        if w < GRID_W || h < GRID_H || stride < w * 3 || data.len() < stride * (h - 1) + w * 3 {
            return None;
        }
        let mut sums = vec![0u32; GRID_W * GRID_H];
        let mut counts = vec![0u32; GRID_W * GRID_H];
        for y in 0..h {
            for x in 0..w {
                let p = &data[y * stride + x * 3..y * stride + x * 3 + 3];
                let i = (y * GRID_H / h) * GRID_W + x * GRID_W / w;
                sums[i] += (p[0] as u32 + 2 * p[1] as u32 + p[2] as u32) / 4;
                counts[i] += 1;
            }
        }
        GreyGrid::from_cells(
            sums.iter()
                .zip(&counts)
                .map(|(&s, &n)| s as f32 / n.max(1) as f32)
                .collect(),
        )
    }

    /// The cells that moved between `earlier` and `self`, row by row (`GRID_W × GRID_H`).
    pub fn moved_cells(&self, earlier: &GreyGrid, tuning: &PictureTuning) -> Vec<bool> {
        let mut diffs: Vec<f32> = self
            .cells
            .iter()
            .zip(&earlier.cells)
            .map(|(a, b)| a - b)
            .collect();
        let mut sorted = diffs.clone();
        sorted.sort_by(f32::total_cmp);
        let offset = sorted[sorted.len() / 2];
        for d in &mut diffs {
            *d -= offset;
        }
        diffs.iter().map(|d| d.abs() > tuning.cell_change).collect()
    }

    /// True when enough cells moved between `earlier` and `self`.
    pub fn moved(&self, earlier: &GreyGrid, tuning: &PictureTuning) -> bool {
        self.moved_cells(earlier, tuning)
            .iter()
            .filter(|m| **m)
            .count()
            >= tuning.min_cells
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 384×288 grey picture with deterministic noise of ±`noise`, a brightness `offset`, and a
    /// dark 20×60 "person" at `person` (left, top).
    fn picture(noise: i32, offset: i32, person: Option<(usize, usize)>, seed: u64) -> Vec<u8> {
        let (w, h) = (384usize, 288usize);
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = if noise > 0 {
                    ((s >> 33) % (2 * noise as u64 + 1)) as i32 - noise
                } else {
                    0
                };
                let mut v = 90 + (x as i32 / 8) + n + offset;
                if let Some((px, py)) = person
                    && (px..px + 20).contains(&x)
                    && (py..py + 60).contains(&y)
                {
                    v = 30 + n;
                }
                let v = v.clamp(0, 255) as u8;
                data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
        data
    }

    fn grid(data: &[u8]) -> GreyGrid {
        GreyGrid::from_bgr(data, 384, 288, 384 * 3).expect("grid")
    }

    #[test]
    fn sensor_noise_and_exposure_do_not_move_a_person_does() {
        let t = PictureTuning::default();
        let a = grid(&picture(12, 0, None, 1));
        let b = grid(&picture(12, 0, None, 2));
        assert!(!a.moved(&b, &t), "noise alone");
        let brighter = grid(&picture(12, 25, None, 3));
        assert!(!brighter.moved(&a, &t), "the whole picture brighter");
        let walker = grid(&picture(12, 0, Some((100, 150)), 4));
        assert!(walker.moved(&a, &t), "a person entered");
        let moved_on = grid(&picture(12, 0, Some((160, 150)), 5));
        assert!(moved_on.moved(&walker, &t), "the person walked on");
        let cells = moved_on.moved_cells(&walker, &t);
        // Only cells near the person: at most the two positions' columns and rows.
        assert!(
            cells.iter().filter(|c| **c).count() <= 4 * 6 * 2,
            "{cells:?}"
        );
    }

    #[test]
    fn a_grid_needs_every_cell() {
        assert!(GreyGrid::from_cells(vec![0.0; GRID_W * GRID_H - 1]).is_none());
        assert!(GreyGrid::from_cells(vec![0.0; GRID_W * GRID_H]).is_some());
    }
}
