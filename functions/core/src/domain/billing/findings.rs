//! What an event alone raises for the detector: a finding's shape, and duplicate charges.

use super::customer::CustomerState;
use super::event::{BillingEvent, Current};
use super::objects::Money;
use super::policy::BillingPolicy;
use crate::domain::finding::{Finding, Severity};
use crate::domain::metric::Metric;

pub(super) fn event_finding(
    event: &BillingEvent,
    signal: &str,
    metric: &Metric,
    subject: &str,
    observed: f64,
    expected: f64,
    explanation: String,
) -> Finding {
    Finding {
        scope: Default::default(),
        accounts: Vec::new(),
        key: format!("{signal}:{subject}"),
        signal: signal.to_owned(),
        metric: metric.name(),
        livemode: event.livemode,
        window_start: event.created,
        window_end: event.created,
        observed,
        expected,
        spread: 0.0,
        ratio: if expected > 0.0 {
            ((observed / expected) * 100.0).round() / 100.0
        } else {
            0.0
        },
        severity: Severity::Warning,
        explanation,
    }
}

/// How long a customer's successful charges are remembered for duplicate detection:
/// far longer than the window, so that a charge delivered late (Stripe retries for up to
/// 3 days) still meets its twin, whatever the delivery order.
const RECENT_CHARGES_HORIZON_SECS: i64 = 7 * 86_400;

/// Two successful charges of one amount to one customer within the policy's window, and
/// the customer with this charge remembered. Each
/// pair is found once, when the later-delivered of the two arrives, so the set of findings
/// is the same in any delivery order (within the horizon).
pub(super) fn duplicate_charges(
    event: &BillingEvent,
    current: &Current,
    policy: &BillingPolicy,
    charge_id: &str,
    customer_id: &str,
    m: Money,
) -> (Vec<Finding>, CustomerState) {
    let mut found = Vec::new();
    let window = policy.duplicate_charge_secs;
    let mut c = current
        .customer
        .clone()
        .unwrap_or_else(|| CustomerState::new(customer_id, event.livemode));
    if !c.recent_charges.iter().any(|r| r.3 == charge_id) {
        let twins = c.recent_charges.iter().filter(|r| {
            r.1 == m.amount && r.2 == m.currency.as_str() && (r.0 - event.created).abs() <= window
        });
        for twin in twins {
            let (a, b) = if twin.3.as_str() < charge_id {
                (twin.3.as_str(), charge_id)
            } else {
                (charge_id, twin.3.as_str())
            };
            let apart = (twin.0 - event.created).abs();
            let mut finding = event_finding(
                event,
                "duplicate_charge",
                &Metric::PaymentsSucceededAmount(m.currency.to_string()),
                &format!("{a}+{b}"),
                m.amount as f64,
                0.0,
                format!(
                    "Customer {customer_id} was charged {} twice within {apart} s ({a}, {b})",
                    m.display()
                ),
            );
            // The pair's span, whichever of the two arrived last.
            (finding.window_start, finding.window_end) =
                (twin.0.min(event.created), twin.0.max(event.created));
            found.push(finding);
        }
        c.recent_charges.push((
            event.created,
            m.amount,
            m.currency.to_string(),
            charge_id.to_owned(),
        ));
    }
    let newest = c
        .recent_charges
        .iter()
        .map(|r| r.0)
        .max()
        .unwrap_or(event.created);
    c.recent_charges
        .retain(|r| r.0 >= newest - RECENT_CHARGES_HORIZON_SECS.max(window));
    c.recent_charges.sort();
    (found, c)
}
