//! A least-squares line through measured points, and where a series crosses a limit.

/// `y = intercept + slope * x`, fitted by least squares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearFit {
    pub intercept: f64,
    pub slope: f64,
    /// Coefficient of determination: 1.0 when every point lies on the line.
    pub r_squared: f64,
}

impl LinearFit {
    /// Fits `points`; `None` with fewer than two distinct x values.
    pub fn of(points: &[(f64, f64)]) -> Option<Self> {
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
        if points.len() < 2 || sxx == 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let r_squared = if syy == 0.0 { 1.0 } else { sxy * sxy / (sxx * syy) };
        Some(Self {
            intercept: mean_y - slope * mean_x,
            slope,
            r_squared,
        })
    }

    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }

    /// The x where the line reaches `y`; `None` if it never rises to it.
    pub fn x_at(&self, y: f64) -> Option<f64> {
        (self.slope > 0.0).then(|| (y - self.intercept) / self.slope)
    }
}

/// Where a measured series first reaches `limit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Crossing {
    /// Between two measured points: x interpolated linearly between them.
    Measured(f64),
    /// Beyond the largest measured point: x from the fitted line.
    Extrapolated(f64),
    /// The series does not grow.
    Never,
}

impl Crossing {
    /// `points` sorted by x.
    pub fn of(points: &[(f64, f64)], fit: Option<&LinearFit>, limit: f64) -> Self {
        if let Some(i) = points.iter().position(|p| p.1 >= limit) {
            if i == 0 {
                return Crossing::Measured(points[0].0);
            }
            let ((x0, y0), (x1, y1)) = (points[i - 1], points[i]);
            return Crossing::Measured(x0 + (limit - y0) * (x1 - x0) / (y1 - y0));
        }
        match fit.and_then(|f| f.x_at(limit)) {
            Some(x) => Crossing::Extrapolated(x),
            None => Crossing::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_line_is_recovered() {
        let fit = LinearFit::of(&[(0.0, 5.0), (10.0, 25.0), (100.0, 205.0)]).unwrap();
        assert!((fit.intercept - 5.0).abs() < 1e-9 && (fit.slope - 2.0).abs() < 1e-9);
        assert!((fit.r_squared - 1.0).abs() < 1e-12);
        assert_eq!(fit.x_at(405.0), Some(200.0));
    }

    #[test]
    fn a_limit_past_the_points_is_extrapolated_and_one_within_is_interpolated() {
        let points = [(0.0, 5.0), (10.0, 25.0), (100.0, 205.0)];
        let fit = LinearFit::of(&points).unwrap();
        assert_eq!(Crossing::of(&points, Some(&fit), 405.0), Crossing::Extrapolated(200.0));
        assert_eq!(Crossing::of(&points, Some(&fit), 115.0), Crossing::Measured(55.0));
        let flat = LinearFit::of(&[(0.0, 5.0), (10.0, 5.0)]).unwrap();
        assert_eq!(
            Crossing::of(&[(0.0, 5.0), (10.0, 5.0)], Some(&flat), 405.0),
            Crossing::Never
        );
    }
}
