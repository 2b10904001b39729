//! A running sum that can both add and remove values without drifting.
//!
//! Neumaier's compensated summation keeps the rounding error of each step in a second float,
//! so adding and later subtracting the same values cancels to within a few ulps. The window
//! also rebuilds the sum from its buffer whenever as many readings have left as remain, which
//! bounds the error by the current contents, not the service's whole history.

/// A compensated (Neumaier) running sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// The empty sum, exactly 0.
    pub const ZERO: CompensatedSum = CompensatedSum {
        sum: 0.0,
        compensation: 0.0,
    };

    /// Adds `x` (use a negative `x` to remove a value).
    #[inline]
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The best estimate of the sum.
    #[inline]
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }

    /// The compensated sum of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut s = CompensatedSum::ZERO;
        for v in values {
            s.add(v);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_what_was_added_returns_to_zero_closely() {
        let mut s = CompensatedSum::ZERO;
        for i in 0..100_000 {
            s.add(0.1 + f64::from(i % 7) * 0.01);
        }
        for i in 0..100_000 {
            s.add(-(0.1 + f64::from(i % 7) * 0.01));
        }
        assert!(s.value().abs() < 1e-9, "{}", s.value());
    }

    #[test]
    fn large_and_small_values_do_not_swallow_each_other() {
        let s = CompensatedSum::of([1e16, 1.0, -1e16]);
        assert_eq!(s.value(), 1.0);
    }
}
