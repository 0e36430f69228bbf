//! "May this customer use the product?" — derived at query time from state and `now`.

use serde::Serialize;

use super::customer::CustomerState;
use super::dunning::DunningCase;
use super::policy::BillingPolicy;
use super::stage::Stage;
use super::subscription::SubscriptionState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Granted,
    /// Past due, inside the grace period.
    Grace,
    Revoked,
    /// Disputed, with `suspend_on_dispute` set.
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    pub verdict: Verdict,
    pub reason: String,
    /// End of the grace period, while in grace.
    pub grace_until: Option<i64>,
    /// Until when the verdict holds as things stand: the end of the paid period while
    /// granted (renewal is due then, or access ends for a subscription canceled at period
    /// end), the end of the grace period while in grace.
    pub until: Option<i64>,
    /// Open or lost dispute (whatever the verdict).
    pub disputed: bool,
}

pub fn access(
    customer: Option<&CustomerState>,
    subscriptions: &[SubscriptionState],
    cases: &[DunningCase],
    now: i64,
    policy: &BillingPolicy,
) -> Access {
    let disputed = customer.is_some_and(CustomerState::disputed);
    let verdict = |verdict, reason: &str, grace_until: Option<i64>| Access {
        verdict,
        reason: reason.to_owned(),
        grace_until,
        until: grace_until,
        disputed,
    };
    let granted_until = |reason: &str, until: Option<i64>| Access {
        until,
        ..verdict(Verdict::Granted, reason, None)
    };
    // The latest end of a service period an invoice of the customer paid for, unless its
    // subscription is known to have ended at once (canceled not at period end): a paid
    // period then ends with the subscription.
    let ended_at_once = |c: &DunningCase| {
        subscriptions.iter().any(|s| {
            c.subscription.as_deref() == Some(s.id.as_str()) && s.deleted && !s.cancel_at_period_end
        })
    };
    let paid_until = cases
        .iter()
        .filter(|c| c.paid.is_some() && !ended_at_once(c))
        .filter_map(|c| c.period_end)
        .max();
    if customer.is_some_and(|c| c.deleted) {
        return verdict(Verdict::Revoked, "customer deleted", None);
    }
    if disputed && policy.suspend_on_dispute {
        return verdict(Verdict::Suspended, "open or lost dispute", None);
    }
    let live: Vec<&SubscriptionState> = subscriptions.iter().filter(|s| !s.deleted).collect();
    let lost = |s: &SubscriptionState| {
        cases.iter().any(|c| {
            c.subscription.as_deref() == Some(s.id.as_str()) && c.stage(policy) == Some(Stage::Lost)
        })
    };
    let active: Vec<&&SubscriptionState> = live
        .iter()
        .filter(|s| matches!(s.status.as_str(), "active" | "trialing") && !lost(s))
        .collect();
    if !active.is_empty() {
        let period_end = active.iter().filter_map(|s| s.current_period_end).max();
        let until = period_end.max(paid_until.filter(|p| *p > now));
        let ending = active.iter().all(|s| s.cancel_at_period_end);
        let reason = if ending {
            "canceled at period end: access until the paid period ends"
        } else {
            "active subscription"
        };
        return granted_until(reason, until);
    }
    let past_due: Vec<&&SubscriptionState> = live
        .iter()
        .filter(|s| s.status == "past_due" && !lost(s))
        .collect();
    if !past_due.is_empty() {
        // Grace counts from the first failure of the open case, else from when Stripe
        // reported the subscription past due.
        let since = past_due
            .iter()
            .map(|s| {
                cases
                    .iter()
                    .filter(|c| c.subscription.as_deref() == Some(s.id.as_str()))
                    .filter(|c| c.stage(policy).is_some_and(Stage::is_open))
                    .filter_map(|c| c.opened_at)
                    .min()
                    .unwrap_or(s.version.created)
            })
            .min()
            .unwrap_or(now);
        let until = since + policy.grace_days * 86_400;
        return if now < until {
            verdict(Verdict::Grace, "past due, in grace", Some(until))
        } else {
            verdict(Verdict::Revoked, "past due beyond the grace period", None)
        };
    }
    if live.iter().any(|s| lost(s)) || cases.iter().any(|c| c.stage(policy) == Some(Stage::Lost)) {
        return verdict(Verdict::Revoked, "payment lost", None);
    }
    // Canceled at period end (and perhaps deleted already), or an invoice paid for a period
    // that still runs: access until that period ends.
    let paid_period = subscriptions
        .iter()
        .filter(|s| s.cancel_at_period_end)
        .filter_map(|s| s.current_period_end)
        .chain(paid_until)
        .filter(|end| *end > now)
        .max();
    if let Some(end) = paid_period {
        return granted_until("inside the period paid for", Some(end));
    }
    match live.first() {
        Some(s) => verdict(
            Verdict::Revoked,
            &format!("subscription {}", s.status),
            None,
        ),
        None => verdict(Verdict::Revoked, "no subscription", None),
    }
}

/// Whether any of these subscriptions of one mode is live: active, trialing or past due.
pub fn is_subscribed(subscriptions: &[SubscriptionState], livemode: bool) -> bool {
    subscriptions.iter().any(|s| {
        s.livemode == livemode
            && !s.deleted
            && matches!(s.status.as_str(), "active" | "trialing" | "past_due")
    })
}
