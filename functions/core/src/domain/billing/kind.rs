//! The event kinds billing acts on, and the order of an object's snapshots.

use serde::{Deserialize, Serialize};

/// Orders snapshots of one object: the event's `created`, then its id as a deterministic
/// tie-break (Stripe's `created` has a one-second resolution).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
pub struct Version {
    pub created: i64,
    pub event_id: String,
}

impl Version {
    pub fn new(created: i64, event_id: &str) -> Self {
        Self {
            created,
            event_id: event_id.to_owned(),
        }
    }
}

/// The event types revguard acts on; anything else is recorded and acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
    SubscriptionTrialWillEnd,
    InvoicePaid,
    InvoicePaymentFailed,
    InvoicePaymentActionRequired,
    InvoiceUpcoming,
    InvoiceMarkedUncollectible,
    InvoiceFinalizationFailed,
    PaymentIntentSucceeded,
    PaymentIntentFailed,
    ChargeSucceeded,
    ChargeFailed,
    ChargeRefunded,
    DisputeCreated,
    DisputeClosed,
    EarlyFraudWarning,
    CheckoutCompleted,
    CustomerUpdated,
    CustomerDeleted,
    PaymentMethodAttached,
    Unknown,
}

impl EventKind {
    pub fn of(event_type: &str) -> Self {
        use EventKind::*;
        match event_type {
            "customer.subscription.created" => SubscriptionCreated,
            "customer.subscription.updated" => SubscriptionUpdated,
            "customer.subscription.deleted" => SubscriptionDeleted,
            "customer.subscription.paused" => SubscriptionPaused,
            "customer.subscription.resumed" => SubscriptionResumed,
            "customer.subscription.trial_will_end" => SubscriptionTrialWillEnd,
            "invoice.paid" | "invoice.payment_succeeded" => InvoicePaid,
            "invoice.payment_failed" => InvoicePaymentFailed,
            "invoice.payment_action_required" => InvoicePaymentActionRequired,
            "invoice.upcoming" => InvoiceUpcoming,
            "invoice.marked_uncollectible" => InvoiceMarkedUncollectible,
            "invoice.finalization_failed" => InvoiceFinalizationFailed,
            "payment_intent.succeeded" => PaymentIntentSucceeded,
            "payment_intent.payment_failed" => PaymentIntentFailed,
            "charge.succeeded" => ChargeSucceeded,
            "charge.failed" => ChargeFailed,
            "charge.refunded" => ChargeRefunded,
            "charge.dispute.created" => DisputeCreated,
            "charge.dispute.closed" => DisputeClosed,
            "radar.early_fraud_warning.created" => EarlyFraudWarning,
            "checkout.session.completed" => CheckoutCompleted,
            "customer.updated" => CustomerUpdated,
            "customer.deleted" => CustomerDeleted,
            "payment_method.attached" => PaymentMethodAttached,
            _ => Unknown,
        }
    }

    pub fn is_subscription_snapshot(self) -> bool {
        use EventKind::*;
        matches!(
            self,
            SubscriptionCreated
                | SubscriptionUpdated
                | SubscriptionDeleted
                | SubscriptionPaused
                | SubscriptionResumed
                | SubscriptionTrialWillEnd
        )
    }
}
