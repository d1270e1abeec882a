//! Constant-velocity Kalman filter on a box's (cx, cy, w, h), with prediction scaled by the real
//! time step because analysed frames arrive at irregular 1–5 fps intervals.
//!
//! With diagonal process and measurement noise the 8-state filter of SORT/ByteTrack never couples
//! different coordinates (each position is paired only with its own velocity), so it is exactly four
//! independent (position, velocity) filters; running them separately keeps the maths to 2×2 matrices.

/// Noise model, in box sizes (width for x and w, height for y and h) so it works at any scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Noise {
    /// Measurement standard deviation of the centre, in box sizes.
    pub meas_pos: f64,
    /// Measurement standard deviation of the width/height, in box sizes.
    pub meas_size: f64,
    /// Random acceleration of the centre, box sizes per s².
    pub accel_pos: f64,
    /// Random walk of the width/height, box sizes per √s (sizes have no velocity: a person who
    /// falls or turns changes shape in one step, and a size velocity learnt from that step would
    /// overshoot to nothing).
    pub walk_size: f64,
    /// Standard deviation of the unknown centre velocity of a new track, box sizes per s.
    pub init_vel_pos: f64,
}

/// One (position, velocity) filter with covariance `[[p00, p01], [p01, p11]]`.
#[derive(Debug, Clone, Copy)]
struct Axis {
    x: f64,
    v: f64,
    p00: f64,
    p01: f64,
    p11: f64,
}

impl Axis {
    fn new(x: f64, pos_std: f64, vel_std: f64) -> Self {
        Axis {
            x,
            v: 0.0,
            p00: pos_std * pos_std,
            p01: 0.0,
            p11: vel_std * vel_std,
        }
    }

    /// Piecewise-constant white acceleration with variance `q` per s², plus a random walk of the
    /// position with variance `walk` per s, over `dt` seconds.
    fn predict(&mut self, dt: f64, q: f64, walk: f64) {
        let dt2 = dt * dt;
        self.x += self.v * dt;
        self.p00 += 2.0 * dt * self.p01 + dt2 * self.p11 + q * dt2 * dt2 / 4.0 + walk * dt;
        self.p01 += dt * self.p11 + q * dt2 * dt / 2.0;
        self.p11 += q * dt2;
    }

    fn update(&mut self, z: f64, r: f64) {
        let s = self.p00 + r;
        if s <= 0.0 || !s.is_finite() {
            return;
        }
        let k0 = self.p00 / s;
        let k1 = self.p01 / s;
        let y = z - self.x;
        self.x += k0 * y;
        self.v += k1 * y;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 = p11 - k1 * p01;
    }
}

/// The filter for one track: centre x, centre y, width, height.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxFilter {
    cx: Axis,
    cy: Axis,
    w: Axis,
    h: Axis,
}

/// Smallest width/height the filter keeps, in pixels, so noise scaled by size never collapses.
const MIN_SIZE: f64 = 1.0;

impl BoxFilter {
    /// Starts a filter at a measured box (x1, y1, x2, y2) with unknown velocity.
    pub fn new(b: [f32; 4], n: &Noise) -> Self {
        let (cx, cy, w, h) = to_cxcywh(b);
        BoxFilter {
            cx: Axis::new(cx, 2.0 * n.meas_pos * w, n.init_vel_pos * w),
            cy: Axis::new(cy, 2.0 * n.meas_pos * h, n.init_vel_pos * h),
            w: Axis::new(w, 2.0 * n.meas_size * w, 0.0),
            h: Axis::new(h, 2.0 * n.meas_size * h, 0.0),
        }
    }

    /// Moves the state `dt` seconds forward.
    pub fn predict(&mut self, dt: f64, n: &Noise) {
        if dt <= 0.0 || !dt.is_finite() {
            return;
        }
        let (w, h) = (self.w.x.max(MIN_SIZE), self.h.x.max(MIN_SIZE));
        self.cx.predict(dt, (n.accel_pos * w).powi(2), 0.0);
        self.cy.predict(dt, (n.accel_pos * h).powi(2), 0.0);
        self.w.predict(dt, 0.0, (n.walk_size * w).powi(2));
        self.h.predict(dt, 0.0, (n.walk_size * h).powi(2));
        self.w.x = self.w.x.max(MIN_SIZE);
        self.h.x = self.h.x.max(MIN_SIZE);
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, b: [f32; 4], n: &Noise) {
        let (cx, cy, w, h) = to_cxcywh(b);
        self.cx.update(cx, (n.meas_pos * w).powi(2));
        self.cy.update(cy, (n.meas_pos * h).powi(2));
        self.w.update(w, (n.meas_size * w).powi(2));
        self.h.update(h, (n.meas_size * h).powi(2));
        self.w.x = self.w.x.max(MIN_SIZE);
        self.h.x = self.h.x.max(MIN_SIZE);
    }

    /// The current (predicted or corrected) box as (x1, y1, x2, y2).
    pub fn bbox(&self) -> [f32; 4] {
        let (cx, cy) = (self.cx.x, self.cy.x);
        let (w, h) = (self.w.x.max(MIN_SIZE), self.h.x.max(MIN_SIZE));
        [
            (cx - w / 2.0) as f32,
            (cy - h / 2.0) as f32,
            (cx + w / 2.0) as f32,
            (cy + h / 2.0) as f32,
        ]
    }

    /// Centre velocity, pixels per second.
    pub fn velocity(&self) -> (f32, f32) {
        (self.cx.v as f32, self.cy.v as f32)
    }
}

fn to_cxcywh(b: [f32; 4]) -> (f64, f64, f64, f64) {
    let [x1, y1, x2, y2] = b.map(f64::from);
    (
        (x1 + x2) / 2.0,
        (y1 + y2) / 2.0,
        (x2 - x1).max(MIN_SIZE),
        (y2 - y1).max(MIN_SIZE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Noise = Noise {
        meas_pos: 0.05,
        meas_size: 0.05,
        accel_pos: 0.25,
        walk_size: 0.1,
        init_vel_pos: 3.0,
    };

    #[test]
    fn learns_velocity_at_irregular_intervals() {
        let mut f = BoxFilter::new([0.0, 0.0, 20.0, 40.0], &N);
        let mut t = 0.0;
        for dt in [1.0, 0.3, 0.7, 0.2, 1.0, 0.5, 0.5, 0.8] {
            t += dt;
            f.predict(dt, &N);
            let x = (30.0 * t) as f32;
            f.update([x, 0.0, x + 20.0, 40.0], &N);
        }
        let (vx, vy) = f.velocity();
        assert!((vx - 30.0).abs() < 3.0, "vx {vx}");
        assert!(vy.abs() < 1.0, "vy {vy}");
        f.predict(1.0, &N);
        let b = f.bbox();
        let expect = (30.0 * (t + 1.0)) as f32;
        assert!((b[0] - expect).abs() < 4.0, "{b:?} vs {expect}");
    }
}
