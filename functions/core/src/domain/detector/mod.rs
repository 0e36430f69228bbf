//! Anomaly detection: pure functions of (hourly counters, now, config) → findings.
//!
//! Each window signal compares what was counted in the window being judged with a rolling
//! 7-day baseline *before* it. The default rule respects time of day (the same hour on each
//! of the previous 7 days), tests counts with a Poisson tail against the baseline plus one
//! spread (days differ more than Poisson alone says), and needs a minimum volume and ratio,
//! so that 2 events against 0.3 stays quiet while 40 against 4 pages. The seeds' rule
//! (last hour > 3 × the 7-day hourly mean + 1) is kept for comparison.
//!
//! `series` (the counters read), `config` (rule and thresholds), `baseline` (windows and
//! their expectations), `signals` (each signal, and `detect`), `alerts` (the lifecycle),
//! `stats` (Poisson tails).

pub mod accounts;
pub mod alerts;
mod baseline;
mod config;
mod series;
mod signals;
pub mod stats;

pub use crate::domain::finding::{Finding, Severity};
pub use crate::domain::time::hhmm;
pub use accounts::detect_platform;
pub use config::{DetectConfig, Rule};
pub use series::{hours_needed, series_of, Series};
pub use signals::detect;
