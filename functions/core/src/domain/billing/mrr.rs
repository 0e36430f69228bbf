//! How a subscription event moves MRR: before and after, from the event alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::BillingEvent;
use super::kind::EventKind;
use super::objects::Subscription;
use super::subscription::SubscriptionState;

/// The subscription before this event, from its own `previous_attributes`, so that MRR
/// movements depend on the event alone and not on what arrived before it.
pub(super) fn mrr_before(event: &BillingEvent, after: &SubscriptionState) -> i64 {
    match event.kind {
        EventKind::SubscriptionCreated => 0,
        EventKind::SubscriptionDeleted => {
            let mut before = after.clone();
            before.deleted = false;
            let prev_status = event
                .previous
                .as_ref()
                .and_then(|p| p.get("status"))
                .and_then(Value::as_str);
            before.status = match prev_status {
                Some(s) => s.to_owned(),
                // Canceled during its trial: it never paid.
                None if after
                    .trial_end
                    .zip(after.canceled_at)
                    .is_some_and(|(t, c)| c < t) =>
                {
                    "trialing".into()
                }
                None => "active".into(),
            };
            before.contributing_mrr()
        }
        _ => match &event.previous {
            Some(Value::Object(prev)) if !prev.is_empty() => {
                let mut obj = event.object.clone();
                if let Value::Object(o) = &mut obj {
                    for (k, v) in prev {
                        o.insert(k.clone(), v.clone());
                    }
                }
                match Subscription::deserialize(&obj) {
                    Ok(sub) => SubscriptionState::from_stripe(
                        &sub,
                        after.livemode,
                        after.version.clone(),
                        false,
                    )
                    .contributing_mrr(),
                    Err(_) => after.contributing_mrr(),
                }
            }
            _ => after.contributing_mrr(),
        },
    }
}

/// How a subscription event moved MRR, for the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrrMovement {
    pub event_id: String,
    pub subscription: String,
    pub customer: Option<String>,
    pub livemode: bool,
    pub created: i64,
    pub currency: String,
    /// Monthly, in minor units, before and after the event.
    pub before: i64,
    pub after: i64,
    /// `new`, `expansion`, `contraction`, `churn` or `reactivation`.
    pub kind: &'static str,
}

/// The MRR movement of a subscription event, if it moved MRR: computed from the event
/// alone (its object and `previous_attributes`), as the MRR counters are, so that it does
/// not depend on delivery order.
pub fn mrr_movement(event: &BillingEvent) -> Option<MrrMovement> {
    if !matches!(
        event.kind,
        EventKind::SubscriptionCreated
            | EventKind::SubscriptionUpdated
            | EventKind::SubscriptionDeleted
            | EventKind::SubscriptionPaused
            | EventKind::SubscriptionResumed
    ) {
        return None;
    }
    let sub: Subscription = event.object().ok()?;
    let deleted = event.kind == EventKind::SubscriptionDeleted;
    let next = SubscriptionState::from_stripe(&sub, event.livemode, event.version(), deleted);
    let (before, after) = (mrr_before(event, &next), next.contributing_mrr());
    if before == after {
        return None;
    }
    let previous_status = event
        .previous
        .as_ref()
        .and_then(|p| p.get("status"))
        .and_then(Value::as_str);
    let kind = match (before, after) {
        (0, _)
            if matches!(
                previous_status,
                Some("canceled" | "unpaid" | "paused" | "incomplete_expired")
            ) =>
        {
            "reactivation"
        }
        (0, _) => "new",
        (_, 0) => "churn",
        (b, a) if a > b => "expansion",
        _ => "contraction",
    };
    Some(MrrMovement {
        event_id: event.id.clone(),
        subscription: next.id.clone(),
        customer: next.customer.clone(),
        livemode: event.livemode,
        created: event.created,
        currency: next
            .currency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "xxx".into()),
        before,
        after,
        kind,
    })
}
