//! The detector's Poisson tails against a reference computed with mpmath at 60 digits
//! (`scripts/poisson-reference.py` wrote tests/data/poisson_tails.json).

use revguard_core::domain::detector::stats::{lower_tail, upper_tail};

#[test]
fn tails_match_the_mpmath_reference_to_1e_9_relative() {
    let raw = include_str!("data/poisson_tails.json");
    let reference: Vec<(String, i64, f64, String)> = serde_json::from_str(raw).unwrap();
    assert!(reference.len() >= 200);
    let mut worst = (0.0f64, String::new());
    for (kind, k, lambda, exact) in &reference {
        let exact: f64 = exact.parse().unwrap();
        let got = match kind.as_str() {
            "upper" => upper_tail(*k, *lambda),
            "lower" => lower_tail(*k, *lambda),
            other => panic!("unknown tail {other}"),
        };
        let relative = ((got - exact) / exact).abs();
        assert!(
            relative < 1e-9,
            "{kind} tail k={k} λ={lambda}: {got:e}, exact {exact:e} (relative error {relative:e})"
        );
        if relative > worst.0 {
            worst = (relative, format!("{kind} k={k} λ={lambda}"));
        }
    }
    eprintln!(
        "{} tails, worst relative error {:.1e} at {}",
        reference.len(),
        worst.0,
        worst.1
    );
}
