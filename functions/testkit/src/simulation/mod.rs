//! Synthetic traffic with injected incidents, and the evaluation of the detector on it:
//! behind `revguard demo` and scripts/detect-eval, never in a Lambda build.

pub mod eval;
pub mod scenario;
