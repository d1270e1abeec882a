//! Plane geometry on normalised image coordinates (x right, y down, 0..1).

/// A point `[x, y]` in normalised image coordinates.
pub type Point = [f32; 2];

/// True when `p` is inside `poly` (even–odd rule; points on an edge may go either way).
pub fn point_in_polygon(p: Point, poly: &[Point]) -> bool {
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let [x, y] = p;
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let [xi, yi] = poly[i];
        let [xj, yj] = poly[j];
        if (yi > y) != (yj > y) {
            let x_cross = xi + (y - yi) * (xj - xi) / (yj - yi);
            if x < x_cross {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Cross product of (b − a) × (p − a). With y pointing down, negative means `p` is on the left of
/// the direction a → b as seen on screen, positive on the right.
pub fn cross(a: Point, b: Point, p: Point) -> f32 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// True when segments p1–p2 and q1–q2 properly cross (touching at an end counts).
pub fn segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let d1 = cross(q1, q2, p1);
    let d2 = cross(q1, q2, p2);
    let d3 = cross(p1, p2, q1);
    let d4 = cross(p1, p2, q2);
    let straddles = |a: f32, b: f32| (a <= 0.0 && b >= 0.0) || (a >= 0.0 && b <= 0.0);
    if d1 == 0.0 && d2 == 0.0 {
        // Collinear: overlap of the projections.
        let overlap = |a1: f32, a2: f32, b1: f32, b2: f32| {
            a1.min(a2) <= b1.max(b2) && b1.min(b2) <= a1.max(a2)
        };
        return overlap(p1[0], p2[0], q1[0], q2[0]) && overlap(p1[1], p2[1], q1[1], q2[1]);
    }
    straddles(d1, d2) && straddles(d3, d4)
}

/// Absolute area of a polygon (shoelace).
pub fn polygon_area(poly: &[Point]) -> f32 {
    let n = poly.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0.0f32;
    for i in 0..n {
        let [x1, y1] = poly[i];
        let [x2, y2] = poly[(i + 1) % n];
        s += x1 * y2 - x2 * y1;
    }
    (s / 2.0).abs()
}

/// The first pair of non-adjacent edges that cross (edge i runs from point i to point i+1).
pub fn self_intersection(poly: &[Point]) -> Option<(usize, usize)> {
    let n = poly.len();
    if n < 4 {
        return None;
    }
    for i in 0..n {
        for j in (i + 1)..n {
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                continue;
            }
            if segments_intersect(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n]) {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [Point; 4] = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]];

    #[test]
    fn inside_outside() {
        assert!(point_in_polygon([0.3, 0.3], &SQUARE));
        assert!(!point_in_polygon([0.6, 0.3], &SQUARE));
        assert!(!point_in_polygon([0.3, 0.05], &SQUARE));
        // Concave: an L shape.
        let l = [
            [0.0, 0.0],
            [0.2, 0.0],
            [0.2, 0.8],
            [0.8, 0.8],
            [0.8, 1.0],
            [0.0, 1.0],
        ];
        assert!(point_in_polygon([0.1, 0.5], &l));
        assert!(!point_in_polygon([0.5, 0.5], &l));
        assert!(point_in_polygon([0.5, 0.9], &l));
    }

    #[test]
    fn sides_and_crossings() {
        let (a, b) = ([0.0, 0.5], [1.0, 0.5]);
        assert!(
            cross(a, b, [0.5, 0.4]) < 0.0,
            "above a left-to-right line is its left"
        );
        assert!(cross(a, b, [0.5, 0.6]) > 0.0);
        assert!(segments_intersect([0.5, 0.4], [0.5, 0.6], a, b));
        assert!(
            !segments_intersect([1.5, 0.4], [1.5, 0.6], a, b),
            "beyond the line's end"
        );
    }

    #[test]
    fn area_and_bow_tie() {
        assert!((polygon_area(&SQUARE) - 0.16).abs() < 1e-6);
        let bow = [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]];
        assert_eq!(self_intersection(&bow), Some((0, 2)));
        assert_eq!(self_intersection(&SQUARE), None);
    }
}
