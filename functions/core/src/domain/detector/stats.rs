//! Poisson tails, from `statrs` (regularised incomplete gamma functions).
//!
//! Measured against 202 tails computed with mpmath at 60 digits (tests/poisson_tails.rs),
//! from near 1 down to 1e-300 and λ from 0.01 to 5000: worst relative error 5.4e-12. The
//! hand-written Lanczos series it replaced was as precise in the far tail (2.6e-11) but
//! answered 0 instead of ~1 for an upper tail with k far below a large λ (its first
//! term underflowed), which could have passed an ordinary count as unusual.

use statrs::distribution::{DiscreteCDF, Poisson};

/// P(X ≥ k) for X ~ Poisson(λ).
pub fn upper_tail(k: i64, lambda: f64) -> f64 {
    if k <= 0 {
        return 1.0;
    }
    match Poisson::new(lambda) {
        Ok(p) => p.sf(k as u64 - 1),
        // λ = 0 (nothing expected): any count is impossible.
        Err(_) => 0.0,
    }
}

/// P(X ≤ k) for X ~ Poisson(λ).
pub fn lower_tail(k: i64, lambda: f64) -> f64 {
    if k < 0 {
        return 0.0;
    }
    match Poisson::new(lambda) {
        Ok(p) => p.cdf(k as u64),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        ((a - b) / b).abs() < 1e-9
    }

    #[test]
    fn tails_match_closed_forms() {
        // P(X >= 2 | 0.3) = 1 - e^-0.3 (1 + 0.3)
        assert!(close(upper_tail(2, 0.3), 1.0 - (-0.3f64).exp() * 1.3));
        // P(X <= 1 | 2) = e^-2 (1 + 2)
        assert!(close(lower_tail(1, 2.0), (-2.0f64).exp() * 3.0));
        assert_eq!(upper_tail(0, 4.0), 1.0);
        assert!(close(lower_tail(0, 8.0), (-8.0f64).exp()));
        // 40 against 4: vanishingly unlikely; 2 against 0.3: ordinary.
        assert!(upper_tail(40, 4.0) < 1e-20);
        assert!(upper_tail(2, 0.3) > 0.03);
    }

    #[test]
    fn a_count_far_below_a_large_expectation_is_not_unusual() {
        assert!(upper_tail(5, 1000.0) > 0.999_999);
        assert!(upper_tail(1, 5000.0) > 0.999_999);
    }

    #[test]
    fn nothing_expected() {
        assert_eq!(upper_tail(1, 0.0), 0.0);
        assert_eq!(lower_tail(0, 0.0), 1.0);
    }
}
