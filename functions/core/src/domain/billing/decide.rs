//! Deciding one event: `decide(event, current state, policy) -> effects`, pure.
//!
//! The worker use case ([`crate::usecases::apply_batch`]) loads the [`Current`] state named by
//! [`keys_of`](super::event::keys_of), calls [`decide`], and commits the effects with the event's "applied"
//! marker in one transaction.

use serde_json::{json, Value};

use super::counters::CounterSink;
use super::customer::CustomerState;
use super::dunning::{min_opt, DunningCase, PaidFact};
use super::effects::Effects;
use super::event::{obj_str, ApplyError, BillingEvent, Current};
use super::findings::{duplicate_charges, event_finding};
use super::kind::EventKind;
use super::mrr::mrr_before;
use super::objects::{
    money, Charge, CheckoutSession, Currency, Customer, Dispute, Invoice, PaymentIntent,
    PaymentMethod, Ref, Subscription,
};
use super::policy::BillingPolicy;
use super::stage::Stage;
use super::subscription::SubscriptionState;
use crate::domain::metric::Metric;
use crate::domain::time::card_expired_at;

/// What deciding one event works with: the event, the state it touches, the policy, and
/// the effects being gathered.
struct Decision<'a> {
    event: &'a BillingEvent,
    current: &'a Current,
    policy: &'a BillingPolicy,
    effects: Effects,
    counters: CounterSink,
}

pub fn decide(
    event: &BillingEvent,
    current: &Current,
    policy: &BillingPolicy,
) -> Result<Effects, ApplyError> {
    use EventKind::*;
    let mut d = Decision {
        event,
        current,
        policy,
        effects: Effects::default(),
        counters: CounterSink::default(),
    };
    d.count_delivery();
    // Exhaustive on purpose: a new kind does not compile until it is decided here.
    match event.kind {
        SubscriptionCreated | SubscriptionUpdated | SubscriptionDeleted | SubscriptionPaused
        | SubscriptionResumed => d.subscription_snapshot()?,
        SubscriptionTrialWillEnd => d.trial_will_end()?,
        InvoicePaid => d.invoice_paid()?,
        InvoicePaymentFailed => d.invoice_payment_failed()?,
        InvoicePaymentActionRequired => d.invoice_action_required()?,
        InvoiceMarkedUncollectible => d.invoice_uncollectible()?,
        InvoiceUpcoming => d.invoice_upcoming()?,
        InvoiceFinalizationFailed => d.invoice_finalization_failed()?,
        ChargeSucceeded => d.charge_succeeded()?,
        ChargeFailed => d.charge_failed()?,
        ChargeRefunded => d.charge_refunded()?,
        DisputeCreated => d.dispute_created()?,
        DisputeClosed => d.dispute_closed()?,
        EarlyFraudWarning => d.early_fraud_warning(),
        CheckoutCompleted => d.checkout_completed()?,
        CustomerUpdated => d.customer_updated()?,
        CustomerDeleted => d.customer_deleted()?,
        PaymentMethodAttached => d.payment_method_attached()?,
        // Payment intents mirror their charges; counting both would count a payment twice.
        // A failed one may say why more precisely than its charge.
        PaymentIntentSucceeded => {}
        PaymentIntentFailed => d.payment_intent_failed()?,
        Unknown => {}
    }
    let mut effects = d.effects;
    effects.counters = d.counters.updates;
    Ok(effects)
}

impl Decision<'_> {
    /// Counted for every Stripe event, whatever its kind. Receipt, lag and the last
    /// delivery speak of Stripe's deliveries (webhook or EventBridge), so an event fetched later from the API is not
    /// counted there (a backfill would otherwise read as a burst of late deliveries); a
    /// reconciliation snapshot is no Stripe event and counts nowhere.
    fn count_delivery(&mut self) {
        use crate::domain::message::Via;
        let (e, live) = (self.event, self.event.livemode);
        if e.via == Via::Reconcile {
            return;
        }
        self.counters.add(live, e.created, Metric::Events, 1);
        self.counters.add(
            live,
            e.created,
            Metric::EventsOfType(e.event_type.clone()),
            1,
        );
        if e.via == Via::Backfill {
            return;
        }
        self.counters
            .add(live, e.received_at, Metric::EventsReceived, 1);
        self.counters
            .lag(live, e.received_at, e.received_at - e.created);
        self.counters
            .at_hour(live, 0, Metric::MaxReceivedAt, e.received_at);
    }

    fn add(&mut self, metric: Metric, value: i64) {
        self.counters
            .add(self.event.livemode, self.event.created, metric, value);
    }

    fn customer_or_new(&self, id: &str) -> CustomerState {
        self.current
            .customer
            .clone()
            .unwrap_or_else(|| CustomerState::new(id, self.event.livemode))
    }

    fn notify(
        &mut self,
        kind: &str,
        stage: Option<String>,
        customer: Option<String>,
        subject: &str,
        details: Value,
    ) {
        self.effects
            .notify(self.event, kind, stage, customer, subject, details);
    }

    fn subscription_snapshot(&mut self) -> Result<(), ApplyError> {
        let (next, sub) = self.subscription_event()?;
        // A deletion applies once (it is final), so its churn notice goes out once.
        if self.event.kind == EventKind::SubscriptionDeleted && !self.effects.stale {
            self.churned(&next, &sub);
        }
        Ok(())
    }

    /// Who left, with what MRR, after how long, and why when Stripe says.
    fn churned(&mut self, next: &SubscriptionState, sub: &Subscription) {
        let ended = sub
            .ended_at
            .or(sub.canceled_at)
            .unwrap_or(self.event.created);
        let tenure_days = sub.created.map(|c| (ended - c).max(0) / 86_400);
        let details = sub.cancellation_details.clone().unwrap_or_default();
        let mut subject = "A customer canceled".to_owned();
        if let Some(reason) = details.feedback.as_deref().or(details.reason.as_deref()) {
            subject.push_str(&format!(" ({})", reason.replace('_', " ")));
        }
        // The win-back notice waits with the findings until its day; the detector then
        // opens it only if the customer is not subscribed again.
        if let (Some(customer), true) = (&next.customer, self.policy.win_back_days > 0) {
            let due = ended + self.policy.win_back_days * 86_400;
            let cur = next
                .currency
                .map(|c| c.to_string())
                .unwrap_or_else(|| "xxx".into());
            let mut finding = event_finding(
                self.event,
                "win_back",
                &Metric::MrrLost(cur.clone()),
                customer,
                next.mrr as f64,
                0.0,
                format!(
                    "{customer} canceled {} on {} ({} a month{}) and has not come back in {} days: time for a win-back offer",
                    next.id,
                    crate::domain::time::datetime(ended).split(' ').next().unwrap_or_default(),
                    crate::domain::money::format_minor(next.mrr, &cur),
                    details
                        .feedback
                        .as_deref()
                        .or(details.reason.as_deref())
                        .map(|r| format!(", {}", r.replace('_', " ")))
                        .unwrap_or_default(),
                    self.policy.win_back_days
                ),
            );
            finding.window_start = ended;
            finding.window_end = due;
            self.effects.findings.push(finding);
        }
        self.notify(
            "churn",
            None,
            next.customer.clone(),
            &subject,
            json!({
                "subscription": next.id,
                "mrr_lost": next.mrr,
                "currency": next.currency,
                "status_before": self.current.subscription.as_ref().map(|s| s.status.clone()),
                "started_at": sub.created,
                "ended_at": ended,
                "tenure_days": tenure_days,
                "cancellation_reason": details.reason,
                "cancellation_feedback": details.feedback,
                "cancellation_comment": details.comment,
            }),
        );
    }

    fn trial_will_end(&mut self) -> Result<(), ApplyError> {
        let (next, sub) = self.subscription_event()?;
        let has_pm = self
            .current
            .customer
            .as_ref()
            .is_some_and(CustomerState::has_payment_method);
        if sub.default_payment_method.is_none() && !has_pm {
            self.notify("pre_dunning", Some("trial_ending_without_payment_method".into()), next.customer.clone(),
                "A trial ends soon and no payment method is on file",
                json!({ "subscription": next.id, "trial_end": next.trial_end, "mrr": next.mrr, "currency": next.currency }));
        }
        Ok(())
    }

    fn invoice_paid(&mut self) -> Result<(), ApplyError> {
        let t = self.event.created;
        self.invoice_fact(|case, inv| {
            let amount = inv.amount_paid.unwrap_or(case.amount_due);
            case.paid = Some(match case.paid {
                Some(p) if p.at <= t => p,
                _ => PaidFact { at: t, amount },
            });
        })
    }

    fn invoice_payment_failed(&mut self) -> Result<(), ApplyError> {
        let t = self.event.created;
        self.invoice_fact(|case, inv| {
            case.attempt_count = case.attempt_count.max(inv.attempt_count.unwrap_or(1));
            if case.last_failure_at.is_none_or(|f| t >= f) {
                case.last_failure_at = Some(t);
                case.next_payment_attempt = inv.next_payment_attempt;
            }
            case.opened_at = min_opt(case.opened_at, t);
            if inv.next_payment_attempt.is_none() {
                case.exhausted_at = min_opt(case.exhausted_at, t);
            }
        })
    }

    fn invoice_action_required(&mut self) -> Result<(), ApplyError> {
        let t = self.event.created;
        self.invoice_fact(|case, _| {
            case.action_required_at = Some(case.action_required_at.map_or(t, |a| a.max(t)));
            case.opened_at = min_opt(case.opened_at, t);
        })
    }

    fn invoice_uncollectible(&mut self) -> Result<(), ApplyError> {
        let t = self.event.created;
        self.invoice_fact(|case, _| case.uncollectible_at = min_opt(case.uncollectible_at, t))
    }

    fn invoice_finalization_failed(&mut self) -> Result<(), ApplyError> {
        let inv: Invoice = self.event.object()?;
        self.notify(
            "invoice_finalization_failed",
            None,
            inv.customer_id(),
            "An invoice could not be finalized",
            json!({ "invoice": inv.id }),
        );
        Ok(())
    }

    fn charge_succeeded(&mut self) -> Result<(), ApplyError> {
        let ch: Charge = self.event.object()?;
        self.add(Metric::PaymentsSucceeded, 1);
        let m = money(ch.amount, &ch.currency);
        if let Some(m) = m {
            self.add(
                Metric::PaymentsSucceededAmount(m.currency.to_string()),
                m.amount,
            );
            let threshold = self.policy.large_payment_minor_units;
            if threshold > 0 && m.amount >= threshold {
                self.notify(
                    "large_payment",
                    None,
                    ch.customer_id(),
                    "A large payment succeeded",
                    json!({ "charge": ch.id, "amount": m.amount, "currency": m.currency }),
                );
            }
        }
        if let (Some(id), Some(customer)) = (ch.id.clone(), ch.customer_id()) {
            if let Some(m) = m {
                let (found, customer) =
                    duplicate_charges(self.event, self.current, self.policy, &id, &customer, m);
                self.effects.findings.extend(found);
                self.effects.customer = Some(customer);
            }
            self.effects.charge_link = Some((id, customer));
        }
        Ok(())
    }

    fn charge_failed(&mut self) -> Result<(), ApplyError> {
        let ch: Charge = self.event.object()?;
        self.add(Metric::PaymentsFailed, 1);
        if let Some(m) = money(ch.amount, &ch.currency) {
            self.add(
                Metric::PaymentsFailedAmount(m.currency.to_string()),
                m.amount,
            );
        }
        if let (Some(id), Some(customer)) = (ch.id.clone(), ch.customer_id()) {
            self.effects.charge_link = Some((id, customer));
        }
        self.remember_decline(ch.customer_id(), ch.decline());
        Ok(())
    }

    fn payment_intent_failed(&mut self) -> Result<(), ApplyError> {
        let pi: PaymentIntent = self.event.object()?;
        self.remember_decline(pi.customer_id(), pi.decline());
        Ok(())
    }

    /// Keeps the customer's latest decline reason: by event time, and at a tie the more
    /// specific code (a payment intent's decline code over its charge's `card_declined`),
    /// then the greater, so that any delivery order ends alike.
    fn remember_decline(&mut self, customer: Option<String>, reason: Option<String>) {
        let (Some(customer), Some(reason)) = (customer, reason) else {
            return;
        };
        let mut state = self.customer_or_new(&customer);
        let t = self.event.created;
        let rank = |t: i64, code: &str| {
            let specific = super::drafts::reason_family(code) != "generic";
            (t, specific, code.to_owned())
        };
        let newer = match &state.last_decline {
            None => true,
            Some((at, code)) => rank(t, &reason) > rank(*at, code),
        };
        if newer {
            state.last_decline = Some((t, reason));
            self.effects.customer = Some(state);
        }
    }

    fn charge_refunded(&mut self) -> Result<(), ApplyError> {
        let event = self.event;
        let ch: Charge = event.object()?;
        let before = event
            .previous
            .as_ref()
            .and_then(|p| p.get("amount_refunded"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let refunded = ch.amount_refunded.unwrap_or(0) - before;
        if let Some(m) = money(Some(refunded), &ch.currency) {
            let cur = m.currency.to_string();
            let threshold = self.policy.large_refund_minor_units;
            if threshold > 0 && m.amount >= threshold {
                let subject = ch.id.clone().unwrap_or_else(|| event.id.clone());
                self.effects.findings.push(event_finding(
                    event,
                    "large_refund",
                    &Metric::RefundsAmount(cur.clone()),
                    &subject,
                    m.amount as f64,
                    threshold as f64,
                    format!("A single refund of {} on charge {subject}", m.display()),
                ));
            }
            self.add(Metric::Refunds, 1);
            self.add(Metric::RefundsAmount(cur.clone()), m.amount);
            self.add(Metric::RefundMax(cur), m.amount);
        }
        Ok(())
    }

    fn dispute_created(&mut self) -> Result<(), ApplyError> {
        let d: Dispute = self.event.object()?;
        self.add(Metric::Disputes, 1);
        if let Some(m) = money(d.amount, &d.currency) {
            self.add(Metric::DisputesAmount(m.currency.to_string()), m.amount);
        }
        // An opening never overwrites a closing that arrived first.
        let customer = self.dispute_status(&d, |c, id| {
            c.disputes
                .entry(id.to_owned())
                .or_insert_with(|| "open".into());
        });
        self.notify("dispute", d.status.clone(), customer, "A payment is disputed", json!({ "dispute": d.id, "charge": d.charge.as_ref().map(Ref::id), "amount": d.amount, "currency": d.currency }));
        Ok(())
    }

    fn dispute_closed(&mut self) -> Result<(), ApplyError> {
        let d: Dispute = self.event.object()?;
        let status = d.status.clone().unwrap_or_else(|| "closed".into());
        let customer = self.dispute_status(&d, |c, id| {
            c.disputes.insert(id.to_owned(), status);
        });
        self.notify("dispute_closed", d.status.clone(), customer, "A dispute was closed", json!({ "dispute": d.id, "charge": d.charge.as_ref().map(Ref::id), "amount": d.amount, "currency": d.currency }));
        Ok(())
    }

    /// Records a dispute's status on its customer (found through the charge); returns the customer.
    fn dispute_status(
        &mut self,
        d: &Dispute,
        set: impl FnOnce(&mut CustomerState, &str),
    ) -> Option<String> {
        let customer_id = self
            .current
            .charge_customer
            .clone()
            .or_else(|| obj_str(&self.event.object, "customer"));
        if let (Some(cid), Some(did)) = (customer_id.as_deref(), d.id.as_deref()) {
            let mut c = self.customer_or_new(cid);
            set(&mut c, did);
            self.effects.customer = Some(c);
        }
        customer_id
    }

    fn early_fraud_warning(&mut self) {
        let event = self.event;
        self.add(Metric::EarlyFraudWarnings, 1);
        let customer_id = self.current.charge_customer.clone();
        if let Some(cid) = &customer_id {
            let mut c = self.customer_or_new(cid);
            c.early_fraud_warnings += 1;
            self.effects.customer = Some(c);
        }
        let charge = obj_str(&event.object, "charge");
        self.notify(
            "early_fraud_warning",
            None,
            customer_id,
            "Stripe Radar raised an early fraud warning",
            json!({ "charge": charge }),
        );
        // The finding names only what the event itself says, so that it is the same
        // whether or not the charge's own event arrived first.
        let subject = obj_str(&event.object, "id").unwrap_or_else(|| event.id.clone());
        self.effects.findings.push(event_finding(
            event,
            "early_fraud_warning",
            &Metric::EarlyFraudWarnings,
            &subject,
            1.0,
            0.0,
            format!(
                "Radar early fraud warning on charge {}",
                charge.unwrap_or_default()
            ),
        ));
    }

    fn checkout_completed(&mut self) -> Result<(), ApplyError> {
        let s: CheckoutSession = self.event.object()?;
        self.notify(
            "checkout_completed",
            s.mode.clone(),
            s.customer.as_ref().map(|c| c.id().to_owned()),
            "A checkout was completed",
            json!({ "session": s.id, "amount_total": s.amount_total, "currency": s.currency }),
        );
        Ok(())
    }

    fn customer_updated(&mut self) -> Result<(), ApplyError> {
        let cu: Customer = self.event.object()?;
        let mut c = self.customer_or_new(&cu.id);
        let version = self.event.version();
        if c.default_pm_version.as_ref().is_none_or(|v| *v < version) {
            c.default_payment_method = cu
                .invoice_settings
                .and_then(|s| s.default_payment_method)
                .map(|r| r.id().to_owned());
            c.default_pm_version = Some(version);
        }
        self.effects.customer = Some(c);
        Ok(())
    }

    fn customer_deleted(&mut self) -> Result<(), ApplyError> {
        let cu: Customer = self.event.object()?;
        let mut c = self.customer_or_new(&cu.id);
        c.deleted = true;
        self.effects.customer = Some(c);
        Ok(())
    }

    fn payment_method_attached(&mut self) -> Result<(), ApplyError> {
        let pm: PaymentMethod = self.event.object()?;
        if let Some(cid) = pm.customer.as_ref().map(|c| c.id().to_owned()) {
            let mut c = self.customer_or_new(&cid);
            if let Some((y, m)) = pm
                .card
                .as_ref()
                .and_then(|card| card.exp_year.zip(card.exp_month))
            {
                c.cards.insert(pm.id.clone(), (y, m));
            }
            self.effects.customer = Some(c);
        }
        Ok(())
    }

    /// A subscription snapshot: MRR movements from the event alone, and the state if newer.
    fn subscription_event(&mut self) -> Result<(SubscriptionState, Subscription), ApplyError> {
        let sub: Subscription = self.event.object()?;
        let deleted = self.event.kind == EventKind::SubscriptionDeleted;
        let next = SubscriptionState::from_stripe(
            &sub,
            self.event.livemode,
            self.event.version(),
            deleted,
        );
        let live = self.event.livemode;

        let delta = next.contributing_mrr() - mrr_before(self.event, &next);
        let cur = next
            .currency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "xxx".into());
        if delta > 0 {
            self.counters.add(
                live,
                self.event.created,
                Metric::MrrGained(cur.clone()),
                delta,
            );
        } else if delta < 0 {
            self.counters.add(
                live,
                self.event.created,
                Metric::MrrLost(cur.clone()),
                -delta,
            );
        }
        self.counters.at_hour(live, 0, Metric::MrrTotal(cur), delta);
        match self.event.kind {
            EventKind::SubscriptionCreated => {
                self.counters
                    .add(live, self.event.created, Metric::SubscriptionsNew, 1)
            }
            EventKind::SubscriptionDeleted => {
                self.counters
                    .add(live, self.event.created, Metric::SubscriptionsCanceled, 1)
            }
            _ => {}
        }

        let apply = match &self.current.subscription {
            None => true,
            Some(stored) if stored.deleted => false, // deletion is final
            Some(_) if deleted => true,
            Some(stored) => next.version > stored.version,
        };
        if apply {
            // Where renewals are due: the stored state's period end moves to the new one.
            let due = |s: &SubscriptionState| {
                (s.status == "active" && !s.deleted && !s.cancel_at_period_end)
                    .then_some(s.current_period_end)
                    .flatten()
                    .map(crate::domain::time::hour_of)
            };
            self.counters.moved(
                live,
                self.current.subscription.as_ref().and_then(due),
                due(&next),
                Metric::ActivePeriodEnds,
                1,
            );
            self.effects.subscription = Some(next.clone());
        } else {
            self.effects.stale = true;
        }
        Ok((next, sub))
    }

    fn invoice_fact(
        &mut self,
        fact: impl FnOnce(&mut DunningCase, &Invoice),
    ) -> Result<(), ApplyError> {
        let inv: Invoice = self.event.object()?;
        let Some(invoice_id) = inv.id.clone() else {
            return Err(ApplyError::Malformed(format!(
                "{} without an invoice id",
                self.event.event_type
            )));
        };
        let before = self.current.case.clone();
        let mut case = before
            .clone()
            .unwrap_or_else(|| DunningCase::new(&invoice_id, self.event.livemode));
        case.customer = case.customer.or_else(|| inv.customer_id());
        case.subscription = case.subscription.or_else(|| inv.subscription_id());
        case.currency = case
            .currency
            .or_else(|| inv.currency.as_deref().and_then(Currency::parse));
        if let Some(due) = inv.amount_due {
            case.amount_due = case.amount_due.max(due);
        }
        case.hosted_invoice_url = case
            .hosted_invoice_url
            .or_else(|| inv.hosted_invoice_url.clone());
        case.period_end = case.period_end.max(inv.service_period_end());
        fact(&mut case, &inv);

        // Counters follow the facts: each lands once, at the hour of the fact that defines it.
        let live = self.event.livemode;
        let opened = |c: &Option<DunningCase>| c.as_ref().and_then(|c| c.opened_at);
        let recovered = |c: &Option<DunningCase>| c.as_ref().and_then(DunningCase::recovered);
        let lost = |c: &Option<DunningCase>| {
            c.as_ref()
                .filter(|c| c.opened_at.is_some())
                .and_then(DunningCase::lost_at)
        };
        let after = Some(case.clone());
        self.counters.moved(
            live,
            opened(&before),
            opened(&after),
            Metric::DunningOpened,
            1,
        );
        self.counters
            .moved(live, lost(&before), lost(&after), Metric::DunningLost, 1);
        let (rb, ra) = (recovered(&before), recovered(&after));
        if rb != ra {
            self.counters.moved(
                live,
                rb.map(|p| p.at),
                ra.map(|p| p.at),
                Metric::DunningRecovered,
                1,
            );
            let cur = case
                .currency
                .map(|c| c.to_string())
                .unwrap_or_else(|| "xxx".into());
            let metric = Metric::DunningRecoveredAmount(cur);
            if let Some(p) = rb {
                self.counters.add(live, p.at, metric.clone(), -p.amount);
            }
            if let Some(p) = ra {
                self.counters.add(live, p.at, metric, p.amount);
            }
        }

        let stage_before = before.as_ref().and_then(|c| c.stage(self.policy));
        let stage_after = case.stage(self.policy);
        if stage_after != stage_before {
            if let Some(stage) = stage_after {
                let subject = match stage {
                    Stage::Notice => "A renewal payment failed",
                    Stage::ActionRequired => "A payment needs the customer to authenticate",
                    Stage::FinalWarning => "A renewal keeps failing: final warning",
                    Stage::Recovered => "A failed renewal was recovered",
                    Stage::Lost => "A failed renewal is lost",
                };
                let draft =
                    customer_draft(&case, stage, self.current.customer.as_ref(), self.policy);
                self.notify(
                    "dunning",
                    Some(stage.as_str().into()),
                    case.customer.clone(),
                    subject,
                    json!({
                        "invoice": case.invoice_id,
                        "subscription": case.subscription,
                        "amount_due": case.amount_due,
                        "currency": case.currency,
                        "attempt_count": case.attempt_count,
                        "next_payment_attempt": case.next_payment_attempt,
                        "recovered_amount": case.recovered().map(|p| p.amount),
                        "time_to_recover_secs": case.time_to_recover_secs(),
                        "hosted_invoice_url": case.hosted_invoice_url,
                        "customer_draft": draft,
                    }),
                );
            }
        }
        self.effects.case = Some(case);
        Ok(())
    }

    fn invoice_upcoming(&mut self) -> Result<(), ApplyError> {
        let inv: Invoice = self.event.object()?;
        let charge_at = inv.next_payment_attempt.or(inv.period_end);
        let card = self
            .current
            .customer
            .as_ref()
            .and_then(CustomerState::charging_card_expiry);
        if let (Some(at), Some(expiry)) = (charge_at, card) {
            if card_expired_at(expiry, at) {
                self.notify("pre_dunning",
                    Some("card_expires_before_renewal".into()),
                    inv.customer_id(),
                    "The card on file expires before the next renewal",
                    json!({ "subscription": inv.subscription_id(), "charge_at": at, "card_expiry": format!("{:04}-{:02}", expiry.0, expiry.1), "amount_due": inv.amount_due, "currency": inv.currency }),
                );
            }
        }
        Ok(())
    }
}

/// The message the SaaS can send its customer for a case at a stage, worded for the
/// customer's decline reason when one was given around the case's latest failure.
fn customer_draft(
    case: &DunningCase,
    stage: Stage,
    customer: Option<&CustomerState>,
    policy: &BillingPolicy,
) -> super::drafts::Draft {
    const NEAR_SECS: i64 = 86_400;
    let decline = customer
        .and_then(|c| c.last_decline.as_ref())
        .filter(|(at, _)| {
            case.last_failure_at
                .is_some_and(|f| (f - at).abs() <= NEAR_SECS)
        })
        .map(|(_, code)| code.as_str());
    let amount = match case.currency {
        Some(c) => crate::domain::money::format_minor(case.amount_due, c.as_str()),
        None => case.amount_due.to_string(),
    };
    policy.dunning_drafts.draft(&super::drafts::DraftFacts {
        stage,
        decline,
        amount,
        invoice_url: case.hosted_invoice_url.as_deref(),
        next_attempt: case.next_payment_attempt,
        attempt: case.attempt_count,
    })
}
