//! Minimum-cost assignment (Hungarian / Kuhn–Munkres with potentials, O(n²·m)).
//!
//! Why not greedy-by-IoU: at 1 fps two people crossing paths often both overlap both predictions,
//! and greedy takes the single best pair even when that forces the other person onto a poor match;
//! the optimal assignment keeps both. A camera rarely has more than a few dozen tracks, so the cubic
//! cost is microseconds.

/// Cost of a pair that must not be matched; any assignment using it is discarded.
pub(crate) const FORBIDDEN: f64 = 1.0e6;

/// Assigns rows to columns minimising total cost; returns `(row, col)` pairs whose cost is below
/// [`FORBIDDEN`]. `cost[r][c]`; all rows must have the same length.
pub(crate) fn assign(cost: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // The algorithm needs rows ≤ columns; transpose otherwise.
    let transposed = rows > cols;
    let (n, m) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let at = |i: usize, j: usize| -> f64 {
        let c = if transposed { cost[j][i] } else { cost[i][j] };
        if c.is_finite() {
            c.min(FORBIDDEN)
        } else {
            FORBIDDEN
        }
    };

    // 1-based arrays as in the classic formulation; index 0 is the virtual start.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = at(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            if j1 == 0 {
                // Cannot happen with finite costs; bail out rather than loop forever.
                break;
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }

    let mut out = Vec::new();
    for (j, &row) in p.iter().enumerate().skip(1) {
        if row != 0 {
            let (i, jj) = (row - 1, j - 1);
            if at(i, jj) < FORBIDDEN {
                out.push(if transposed { (jj, i) } else { (i, jj) });
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_total_over_greedy_best_pair() {
        // Greedy would take (0,0)=0.1 and force (1,1)=0.9; optimal is (0,1)+(1,0) = 0.4.
        let cost = vec![vec![0.1, 0.2], vec![0.2, 0.9]];
        assert_eq!(assign(&cost), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn rectangular_and_forbidden() {
        let cost = vec![
            vec![FORBIDDEN, 0.5],
            vec![0.3, FORBIDDEN],
            vec![FORBIDDEN, FORBIDDEN],
        ];
        assert_eq!(assign(&cost), vec![(0, 1), (1, 0)]);
        let wide = vec![vec![0.9, 0.1, 0.5]];
        assert_eq!(assign(&wide), vec![(0, 1)]);
        assert!(assign(&[]).is_empty());
        assert!(assign(&[vec![FORBIDDEN]]).is_empty());
    }
}
