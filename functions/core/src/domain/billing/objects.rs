//! Lenient views of the Stripe objects revguard reads, in the older and newer API shapes.
//! Every field is optional or defaulted: an object never fails on what it does not need.

use serde::{Deserialize, Serialize};

/// A related object, sent as its id or expanded.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Ref {
    Id(String),
    Object { id: String },
}

impl Ref {
    pub fn id(&self) -> &str {
        match self {
            Ref::Id(id) | Ref::Object { id } => id,
        }
    }
}

fn ref_id(r: &Option<Ref>) -> Option<String> {
    r.as_ref().map(|r| r.id().to_owned())
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Recurring {
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
    pub usage_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Price {
    pub id: Option<String>,
    pub currency: Option<String>,
    pub unit_amount: Option<i64>,
    pub unit_amount_decimal: Option<String>,
    pub recurring: Option<Recurring>,
    // Older API versions: a `plan` with interval fields at its top level.
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
    pub usage_type: Option<String>,
    pub amount: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SubscriptionItem {
    pub id: Option<String>,
    pub price: Option<Price>,
    pub plan: Option<Price>,
    pub quantity: Option<i64>,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub customer: Option<Ref>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub items: Option<List<SubscriptionItem>>,
    #[serde(default)]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub trial_end: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub cancel_at_period_end: Option<bool>,
    #[serde(default)]
    pub canceled_at: Option<i64>,
    #[serde(default)]
    pub default_payment_method: Option<Ref>,
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub ended_at: Option<i64>,
    /// Why the customer canceled (newer API versions).
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct CancellationDetails {
    pub reason: Option<String>,
    pub feedback: Option<String>,
    pub comment: Option<String>,
}

impl Subscription {
    pub fn customer_id(&self) -> Option<String> {
        ref_id(&self.customer)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SubscriptionDetails {
    pub subscription: Option<Ref>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct InvoiceParent {
    pub subscription_details: Option<SubscriptionDetails>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Invoice {
    pub id: Option<String>,
    pub customer: Option<Ref>,
    pub currency: Option<String>,
    pub amount_due: Option<i64>,
    pub amount_paid: Option<i64>,
    pub attempt_count: Option<i64>,
    pub next_payment_attempt: Option<i64>,
    pub status: Option<String>,
    pub billing_reason: Option<String>,
    /// Older API versions.
    pub subscription: Option<Ref>,
    /// Newer API versions: `parent.subscription_details.subscription`.
    pub parent: Option<InvoiceParent>,
    pub period_end: Option<i64>,
    /// Where the customer pays the invoice or updates the card.
    pub hosted_invoice_url: Option<String>,
    pub lines: Option<List<InvoiceLine>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct InvoiceLine {
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Period {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl Invoice {
    /// The end of the service period the invoice pays for: its lines' latest period end.
    /// (An invoice's own `period_end` is that of the previous period for renewals.)
    pub fn service_period_end(&self) -> Option<i64> {
        self.lines
            .as_ref()
            .and_then(|l| l.data.iter().filter_map(|i| i.period.as_ref()?.end).max())
    }

    pub fn customer_id(&self) -> Option<String> {
        ref_id(&self.customer)
    }

    pub fn subscription_id(&self) -> Option<String> {
        ref_id(&self.subscription).or_else(|| {
            self.parent
                .as_ref()
                .and_then(|p| p.subscription_details.as_ref())
                .and_then(|d| ref_id(&d.subscription))
        })
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Charge {
    pub id: Option<String>,
    pub customer: Option<Ref>,
    pub amount: Option<i64>,
    pub amount_refunded: Option<i64>,
    pub currency: Option<String>,
    /// `card_declined`, `expired_card`, … on a failed charge.
    pub failure_code: Option<String>,
    pub outcome: Option<ChargeOutcome>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ChargeOutcome {
    /// The decline reason (`insufficient_funds`, `generic_decline`, …).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PaymentIntent {
    pub id: Option<String>,
    pub customer: Option<Ref>,
    pub last_payment_error: Option<PaymentError>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PaymentError {
    pub code: Option<String>,
    pub decline_code: Option<String>,
}

impl PaymentIntent {
    pub fn customer_id(&self) -> Option<String> {
        ref_id(&self.customer)
    }

    /// The most specific reason given: the decline code, else the error code.
    pub fn decline(&self) -> Option<String> {
        let e = self.last_payment_error.as_ref()?;
        e.decline_code.clone().or_else(|| e.code.clone())
    }
}

impl Charge {
    pub fn customer_id(&self) -> Option<String> {
        ref_id(&self.customer)
    }

    /// The most specific reason given: the outcome's reason, else the failure code.
    pub fn decline(&self) -> Option<String> {
        self.outcome
            .as_ref()
            .and_then(|o| o.reason.clone())
            .or_else(|| self.failure_code.clone())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Dispute {
    pub id: Option<String>,
    pub charge: Option<Ref>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct CheckoutSession {
    pub id: Option<String>,
    pub customer: Option<Ref>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct InvoiceSettings {
    pub default_payment_method: Option<Ref>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub invoice_settings: Option<InvoiceSettings>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Card {
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct PaymentMethod {
    pub id: String,
    #[serde(default)]
    pub customer: Option<Ref>,
    #[serde(default)]
    pub card: Option<Card>,
}

/// The money of an event, in minor units of a lower-case ISO currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

/// A currency code in 3 ASCII bytes, so money is `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Option<Self> {
        let b = code.as_bytes();
        (b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic)).then(|| {
            Currency([
                b[0].to_ascii_lowercase(),
                b[1].to_ascii_lowercase(),
                b[2].to_ascii_lowercase(),
            ])
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("xxx")
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Currency::parse(&s).ok_or_else(|| format!("not a currency: {s}"))
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Money {
    /// For people: "$652.60", "¥5,000".
    pub fn display(&self) -> String {
        crate::domain::money::format_minor(self.amount, self.currency.as_str())
    }
}

pub fn money(amount: Option<i64>, currency: &Option<String>) -> Option<Money> {
    Some(Money {
        amount: amount?,
        currency: Currency::parse(currency.as_deref()?)?,
    })
}
