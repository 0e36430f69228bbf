//! Seeded synthetic Stripe traffic with injected incidents: the generator behind
//! `revguard demo` and `scripts/detect-eval`.
//!
//! A few hundred customers on three plans; a daily rhythm (quiet nights, a mid-afternoon
//! peak, weekends at 70 %); one-off charges with ordinary failures, renewals with dunning,
//! refunds, the odd dispute, steady churn. Day 0 seeds the customer base; the next
//! `warmup_days` give the detector its baseline; incidents fall in the `monitored_days`.

use serde::Serialize;
use serde_json::{json, Value};

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1A4_F87D)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A Poisson draw (Knuth; the rates here are small).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.f64();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    FailedChargeBurst,
    RefundSpike,
    DisputeCluster,
    WebhookOutage,
    CancellationWave,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 5] = [
        IncidentKind::FailedChargeBurst,
        IncidentKind::RefundSpike,
        IncidentKind::DisputeCluster,
        IncidentKind::WebhookOutage,
        IncidentKind::CancellationWave,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::FailedChargeBurst => "failed-charge burst",
            IncidentKind::RefundSpike => "refund spike",
            IncidentKind::DisputeCluster => "dispute cluster",
            IncidentKind::WebhookOutage => "webhook outage",
            IncidentKind::CancellationWave => "cancellation wave",
        }
    }

    /// Whether an alert (by its id, `<mode>:<signal>[:<metric>]`) is about this kind of
    /// incident: an alert only counts for an incident it could have been raised by.
    pub fn explains(self, alert_id: &str) -> bool {
        let key = alert_id.split_once(':').map_or(alert_id, |(_, k)| k);
        let related: &[&str] = match self {
            IncidentKind::FailedChargeBurst => &["spike:payments_failed", "failure_rate"],
            IncidentKind::RefundSpike => &["spike:refunds", "refund_rate", "large_refund"],
            IncidentKind::DisputeCluster => &["spike:disputes", "dispute_rate"],
            IncidentKind::WebhookOutage => &[
                "delivery_gap",
                "delivery_lag",
                "drop:",
                "silent_lapse",
                "events_missing",
            ],
            IncidentKind::CancellationWave => {
                &["spike:subscriptions_canceled", "spike:mrr_lost", "mrr_fall"]
            }
        };
        related.iter().any(|r| key.starts_with(r))
    }

    /// How long after its start an incident must be flagged (the quality bar).
    pub fn detection_target_secs(self) -> i64 {
        match self {
            IncidentKind::WebhookOutage => 2 * HOUR,
            _ => HOUR,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub start: i64,
    pub end: i64,
    /// How many events it injects (cancellations, failures, …); 0 for an outage.
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    pub id: String,
    pub created: i64,
    /// When Stripe's delivery reaches revguard (an outage defers it).
    pub received_at: i64,
    pub raw: String,
}

#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub seed: u64,
    /// Midnight UTC of day 0.
    pub start: i64,
    pub warmup_days: i64,
    pub monitored_days: i64,
    pub customers: usize,
    pub incidents: bool,
    pub livemode: bool,
}

impl ScenarioConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            start: 1_767_225_600, // 2026-01-01, a Thursday
            // Day 0's sign-ups stay out of every baseline the monitored days look at.
            warmup_days: 8,
            monitored_days: 1,
            customers: 400,
            incidents: true,
            livemode: true,
        }
    }

    /// When detection starts to be judged: after the seeding day and the warm-up.
    pub fn monitored_from(&self) -> i64 {
        self.start + (1 + self.warmup_days) * DAY
    }

    pub fn end(&self) -> i64 {
        self.monitored_from() + self.monitored_days * DAY
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub config: ScenarioConfig,
    /// In delivery order.
    pub events: Vec<SimEvent>,
    pub incidents: Vec<Incident>,
}

#[derive(Clone)]
struct Sub {
    id: String,
    customer: String,
    unit_amount: i64,
    interval: &'static str,
    period_end: i64,
    active: bool,
}

struct Gen {
    rng: Rng,
    livemode: bool,
    events: Vec<SimEvent>,
    next_id: u64,
    subs: Vec<Sub>,
    customers: usize,
}

/// Activity relative to the afternoon peak: quiet nights, weekends at 70 %.
pub fn rhythm(t: i64) -> f64 {
    let hour = (t.rem_euclid(DAY)) as f64 / HOUR as f64;
    let day_of_week = (t.div_euclid(DAY) + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    let weekend = if day_of_week == 0 || day_of_week == 6 {
        0.7
    } else {
        1.0
    };
    weekend * (0.3 + 0.7 * (-((hour - 15.0) / 5.0).powi(2)).exp())
}

impl Gen {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_sim{:07}", self.next_id)
    }

    fn emit(&mut self, event_type: &str, created: i64, object: Value, previous: Option<Value>) {
        let id = self.id("evt");
        let mut data = json!({ "object": object });
        if let Some(p) = previous {
            data["previous_attributes"] = p;
        }
        let raw = json!({
            "id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
            "livemode": self.livemode, "pending_webhooks": 1, "type": event_type, "data": data,
        })
        .to_string();
        // Most deliveries take a second or two; a few are retried after a minute or two.
        let lag = if self.rng.chance(0.01) {
            self.rng.range(30, 120)
        } else {
            self.rng.range(0, 4)
        };
        self.events.push(SimEvent {
            id,
            created,
            received_at: created + lag,
            raw,
        });
    }

    fn customer(&mut self) -> String {
        format!("cus_sim{:05}", self.rng.below(self.customers as u64))
    }

    fn sub_object(&self, s: &Sub, status: &str) -> Value {
        json!({
            "id": s.id, "object": "subscription", "customer": s.customer, "status": status, "currency": "usd",
            "cancel_at_period_end": false, "canceled_at": null,
            "items": { "data": [{ "id": format!("si_{}", &s.id[4..]), "quantity": 1, "current_period_end": s.period_end,
                "price": { "id": format!("price_{}_{}", s.interval, s.unit_amount), "unit_amount": s.unit_amount, "currency": "usd",
                    "recurring": { "interval": s.interval, "interval_count": 1, "usage_type": "licensed" } } }] }
        })
    }

    fn charge(&mut self, t: i64, customer: &str, amount: i64, ok: bool) -> String {
        let id = self.id("ch");
        let object = json!({ "id": id, "object": "charge", "customer": customer, "amount": amount, "amount_refunded": 0,
            "currency": "usd", "status": if ok { "succeeded" } else { "failed" },
            "failure_code": if ok { Value::Null } else { json!("card_declined") } });
        self.emit(
            if ok {
                "charge.succeeded"
            } else {
                "charge.failed"
            },
            t,
            object,
            None,
        );
        id
    }

    fn invoice(&mut self, t: i64, s: &Sub, paid: bool, attempt: i64, next_attempt: Option<i64>) {
        let id = format!("in_{}_{}", &s.id[4..], s.period_end);
        let object = json!({ "id": id, "object": "invoice", "customer": s.customer, "currency": "usd",
            "amount_due": s.unit_amount, "amount_paid": if paid { s.unit_amount } else { 0 }, "attempt_count": attempt,
            "next_payment_attempt": next_attempt, "status": if paid { "paid" } else { "open" }, "billing_reason": "subscription_cycle",
            "parent": { "type": "subscription_details", "subscription_details": { "subscription": s.id } } });
        self.emit(
            if paid {
                "invoice.paid"
            } else {
                "invoice.payment_failed"
            },
            t,
            object,
            None,
        );
    }

    /// A new customer signs up.
    fn new_subscription(&mut self, t: i64) {
        let customer = format!("cus_sim{:05}", self.customers + self.subs.len());
        self.subscribe(t, customer);
    }

    fn subscribe(&mut self, t: i64, customer: String) {
        let (unit_amount, interval) = match self.rng.below(10) {
            0..=5 => (1_500, "month"),
            6..=8 => (4_900, "month"),
            _ => (49_000, "year"),
        };
        let id = self.id("sub");
        let length = if interval == "year" {
            365 * DAY
        } else {
            30 * DAY
        };
        let s = Sub {
            id,
            customer: customer.clone(),
            unit_amount,
            interval,
            period_end: t + length,
            active: true,
        };
        let session = self.id("cs");
        self.emit("checkout.session.completed", t, json!({ "id": session, "object": "checkout.session", "customer": customer,
            "mode": "subscription", "amount_total": unit_amount, "currency": "usd", "subscription": s.id }), None);
        let obj = self.sub_object(&s, "active");
        self.emit("customer.subscription.created", t, obj, None);
        self.charge(t + 1, &customer, unit_amount, true);
        self.invoice(t + 2, &s, true, 1, None);
        self.subs.push(s);
    }

    fn cancel(&mut self, t: i64) {
        let active: Vec<usize> = self
            .subs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .map(|(i, _)| i)
            .collect();
        if active.is_empty() {
            return;
        }
        let i = active[self.rng.below(active.len() as u64) as usize];
        self.subs[i].active = false;
        let s = self.subs[i].clone();
        let mut obj = self.sub_object(&s, "canceled");
        obj["canceled_at"] = json!(t);
        self.emit(
            "customer.subscription.deleted",
            t,
            obj,
            Some(json!({ "status": "active" })),
        );
    }

    /// Renewals due in [t, t + 1 h): most pay; some fail, are retried in 3 days, and
    /// either recover or are lost.
    fn renewals(&mut self, t: i64, retries: &mut Vec<(i64, usize)>) {
        let due: Vec<usize> = self
            .subs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active && s.period_end >= t && s.period_end < t + HOUR)
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let at = self.subs[i].period_end;
            if self.rng.chance(0.07) {
                let s = self.subs[i].clone();
                let customer = s.customer.clone();
                self.charge(at, &customer, s.unit_amount, false);
                self.invoice(at + 1, &s, false, 1, Some(at + 3 * DAY));
                let obj = self.sub_object(&s, "past_due");
                self.emit(
                    "customer.subscription.updated",
                    at + 2,
                    obj,
                    Some(json!({ "status": "active" })),
                );
                retries.push((at + 3 * DAY, i));
            } else {
                self.renew(at, i, "active");
            }
        }
    }

    fn renew(&mut self, at: i64, i: usize, previous_status: &str) {
        let old = self.subs[i].clone();
        let customer = old.customer.clone();
        self.charge(at, &customer, old.unit_amount, true);
        self.invoice(at + 1, &old, true, 1, None);
        let length = if old.interval == "year" {
            365 * DAY
        } else {
            30 * DAY
        };
        self.subs[i].period_end = old.period_end + length;
        let new = self.subs[i].clone();
        let obj = self.sub_object(&new, "active");
        let prev_items = self.sub_object(&old, previous_status)["items"].clone();
        self.emit(
            "customer.subscription.updated",
            at + 2,
            obj,
            Some(json!({ "status": previous_status, "items": prev_items })),
        );
    }

    fn retry(&mut self, at: i64, i: usize) {
        if !self.subs[i].active {
            return;
        }
        if self.rng.chance(0.6) {
            self.renew(at, i, "past_due");
        } else {
            let s = self.subs[i].clone();
            let customer = s.customer.clone();
            self.charge(at, &customer, s.unit_amount, false);
            self.invoice(at + 1, &s, false, 2, None);
            self.subs[i].active = false;
            let mut obj = self.sub_object(&s, "canceled");
            obj["canceled_at"] = json!(at + 2);
            self.emit(
                "customer.subscription.deleted",
                at + 2,
                obj,
                Some(json!({ "status": "past_due" })),
            );
        }
    }

    fn refund(&mut self, t: i64) {
        let customer = self.customer();
        let amount = self.rng.range(5, 150) * 100;
        let id = self.id("ch");
        self.emit(
            "charge.refunded",
            t,
            json!({ "id": id, "object": "charge", "customer": customer, "amount": amount,
            "amount_refunded": amount, "currency": "usd", "refunded": true }),
            Some(json!({ "amount_refunded": 0, "refunded": false })),
        );
    }

    fn dispute(&mut self, t: i64) {
        let amount = self.rng.range(10, 200) * 100;
        let (id, charge) = (self.id("dp"), self.id("ch"));
        self.emit(
            "charge.dispute.created",
            t,
            json!({ "id": id, "object": "dispute", "charge": charge, "amount": amount,
            "currency": "usd", "reason": "fraudulent", "status": "needs_response" }),
            None,
        );
    }

    fn hour(&mut self, t: i64, retries: &mut Vec<(i64, usize)>) {
        let f = rhythm(t);
        for _ in 0..self.rng.poisson(1.2 * f) {
            let at = t + self.rng.range(0, HOUR - 5);
            self.new_subscription(at);
        }
        for _ in 0..self.rng.poisson(10.0 * f) {
            let at = t + self.rng.range(0, HOUR);
            let customer = self.customer();
            let amount = self.rng.range(50, 2_000) * 10;
            let ok = !self.rng.chance(0.03);
            self.charge(at, &customer, amount, ok);
        }
        for _ in 0..self.rng.poisson(0.5 * f) {
            let at = t + self.rng.range(0, HOUR);
            self.refund(at);
        }
        for _ in 0..self.rng.poisson(0.02) {
            let at = t + self.rng.range(0, HOUR);
            self.dispute(at);
        }
        for _ in 0..self.rng.poisson(0.25 * f) {
            let at = t + self.rng.range(0, HOUR);
            self.cancel(at);
        }
        self.renewals(t, retries);
        let due: Vec<(i64, usize)> = retries
            .iter()
            .filter(|(at, _)| *at >= t && *at < t + HOUR)
            .copied()
            .collect();
        retries.retain(|(at, _)| !(*at >= t && *at < t + HOUR));
        for (at, i) in due {
            self.retry(at, i);
        }
    }

    fn inject(&mut self, incident: &Incident) {
        let (start, end) = (incident.start, incident.end);
        match incident.kind {
            IncidentKind::FailedChargeBurst => {
                for _ in 0..incident.size {
                    let at = self.rng.range(start, end);
                    let customer = self.customer();
                    let amount = self.rng.range(5, 200) * 100;
                    self.charge(at, &customer, amount, false);
                }
            }
            IncidentKind::RefundSpike => {
                for _ in 0..incident.size {
                    let at = self.rng.range(start, end);
                    self.refund(at);
                }
            }
            IncidentKind::DisputeCluster => {
                for _ in 0..incident.size {
                    let at = self.rng.range(start, end);
                    self.dispute(at);
                }
            }
            IncidentKind::CancellationWave => {
                for _ in 0..incident.size {
                    let at = self.rng.range(start, end);
                    self.cancel(at);
                }
            }
            IncidentKind::WebhookOutage => {
                // Nothing reaches revguard; Stripe retries once the endpoint is back.
                for e in self
                    .events
                    .iter_mut()
                    .filter(|e| e.created >= start && e.created < end)
                {
                    e.received_at = end + (e.received_at - e.created) + (e.created - start) / 20;
                }
            }
        }
    }
}

/// Places the incidents in the monitored days, at least 6 hours apart.
fn plan_incidents(rng: &mut Rng, config: &ScenarioConfig, active_subs: usize) -> Vec<Incident> {
    let from = config.monitored_from();
    let span = config.monitored_days * DAY;
    let mut kinds = IncidentKind::ALL.to_vec();
    // A different order each seed.
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let slot = span / kinds.len() as i64;
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let start = from + i as i64 * slot + rng.range(HOUR, (slot - 5 * HOUR).max(2 * HOUR));
            let (minutes, size) = match kind {
                IncidentKind::FailedChargeBurst => (60, 25),
                IncidentKind::RefundSpike => (45, 20),
                IncidentKind::DisputeCluster => (60, 8),
                IncidentKind::WebhookOutage => (180, 0),
                IncidentKind::CancellationWave => (90, (active_subs / 10).max(10) as u32),
            };
            Incident {
                kind,
                start,
                end: start + minutes * 60,
                size,
            }
        })
        .collect()
}

pub fn generate(config: ScenarioConfig) -> Scenario {
    let mut g = Gen {
        rng: Rng::new(config.seed),
        livemode: config.livemode,
        events: Vec::new(),
        next_id: 0,
        subs: Vec::new(),
        customers: config.customers,
    };
    // Day 0: the existing customer base signs up, renewals spread over the next month.
    for i in 0..config.customers {
        let at = config.start + (i as i64 * DAY) / config.customers as i64;
        g.subscribe(at, format!("cus_sim{i:05}"));
        let offset = g.rng.range(DAY, 30 * DAY);
        if let Some(s) = g.subs.last_mut() {
            if s.interval == "month" {
                s.period_end = config.start + offset;
            }
        }
    }
    // The seeding day's renewal dates were moved after the fact: restate the snapshots.
    let seeded: Vec<Sub> = g.subs.clone();
    for s in &seeded {
        let obj = g.sub_object(s, "active");
        g.emit(
            "customer.subscription.updated",
            config.start + DAY - 60,
            obj,
            Some(json!({})),
        );
    }
    let mut retries = Vec::new();
    let mut t = config.start + DAY;
    let mut incidents = Vec::new();
    while t < config.end() {
        if config.incidents && t == config.monitored_from() {
            let active = g.subs.iter().filter(|s| s.active).count();
            incidents = plan_incidents(&mut g.rng, &config, active);
        }
        g.hour(t, &mut retries);
        for inc in incidents
            .clone()
            .iter()
            .filter(|i| i.start >= t && i.start < t + HOUR && i.kind != IncidentKind::WebhookOutage)
        {
            g.inject(inc);
        }
        t += HOUR;
    }
    for inc in incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::WebhookOutage)
    {
        g.inject(inc);
    }
    let mut events = g.events;
    events
        .sort_by(|a, b| (a.received_at, a.created, &a.id).cmp(&(b.received_at, b.created, &b.id)));
    Scenario {
        config,
        events,
        incidents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_scenario_and_another_seed_another() {
        let a = generate(ScenarioConfig::new(7));
        let b = generate(ScenarioConfig::new(7));
        let c = generate(ScenarioConfig::new(8));
        assert_eq!(a.events, b.events);
        assert_eq!(a.incidents, b.incidents);
        assert_ne!(a.events, c.events);
        assert_eq!(a.incidents.len(), 5);
        assert!(a.events.len() > 3_000, "{} events", a.events.len());
        assert!(a
            .events
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at));
    }

    #[test]
    fn an_outage_defers_deliveries_until_it_ends() {
        let s = generate(ScenarioConfig::new(3));
        let outage = s
            .incidents
            .iter()
            .find(|i| i.kind == IncidentKind::WebhookOutage)
            .unwrap();
        assert!(s
            .events
            .iter()
            .all(|e| !(e.received_at >= outage.start && e.received_at < outage.end)));
        assert!(s
            .events
            .iter()
            .any(|e| e.created >= outage.start && e.created < outage.end));
    }
}
