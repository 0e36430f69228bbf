//! Subscription state and MRR, normalised to a month in minor units.

use serde::{Deserialize, Serialize};

use super::kind::Version;
use super::objects::{Currency, Price, Subscription};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemState {
    pub price_id: Option<String>,
    pub quantity: i64,
    pub interval: String,
    pub interval_count: i64,
    pub unit_amount: Option<i64>,
    /// Usage-based prices have no fixed monthly amount: counted as 0 and flagged.
    pub metered: bool,
    pub mrr: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionState {
    pub id: String,
    pub customer: Option<String>,
    pub livemode: bool,
    /// Stripe's status: incomplete, incomplete_expired, trialing, active, past_due,
    /// unpaid, canceled or paused.
    pub status: String,
    pub items: Vec<ItemState>,
    pub currency: Option<Currency>,
    /// The monthly run rate of the items, whatever the status.
    pub mrr: i64,
    pub has_metered: bool,
    pub trial_end: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    /// `customer.subscription.deleted` was applied: final.
    pub deleted: bool,
    pub version: Version,
}

impl SubscriptionState {
    pub fn from_stripe(
        sub: &Subscription,
        livemode: bool,
        version: Version,
        deleted: bool,
    ) -> Self {
        let items: Vec<ItemState> = sub
            .items
            .as_ref()
            .map(|l| l.data.iter().map(|i| item_state(i, sub.quantity)).collect())
            .unwrap_or_default();
        let current_period_end = sub.current_period_end.or_else(|| {
            sub.items
                .as_ref()
                .and_then(|l| l.data.iter().filter_map(|i| i.current_period_end).max())
        });
        let currency = sub
            .currency
            .as_deref()
            .and_then(Currency::parse)
            .or_else(|| {
                sub.items.as_ref().and_then(|l| {
                    l.data.iter().find_map(|i| {
                        i.price
                            .as_ref()
                            .or(i.plan.as_ref())
                            .and_then(|p| p.currency.as_deref())
                            .and_then(Currency::parse)
                    })
                })
            });
        let status = if deleted {
            "canceled".to_owned()
        } else {
            sub.status.clone().unwrap_or_else(|| "unknown".into())
        };
        SubscriptionState {
            id: sub.id.clone(),
            customer: sub.customer_id(),
            livemode,
            status,
            mrr: items.iter().map(|i| i.mrr).sum(),
            has_metered: items.iter().any(|i| i.metered),
            items,
            currency,
            trial_end: sub.trial_end,
            current_period_end,
            cancel_at_period_end: sub.cancel_at_period_end.unwrap_or(false),
            canceled_at: sub.canceled_at,
            deleted,
            version,
        }
    }

    /// What this subscription adds to MRR now: paying statuses only (a trial, an
    /// unpaid or a paused subscription brings in nothing).
    pub fn contributing_mrr(&self) -> i64 {
        if !self.deleted && matches!(self.status.as_str(), "active" | "past_due") {
            self.mrr
        } else {
            0
        }
    }
}

fn item_state(item: &super::objects::SubscriptionItem, sub_quantity: Option<i64>) -> ItemState {
    let empty = Price::default();
    let price = item.price.as_ref().or(item.plan.as_ref()).unwrap_or(&empty);
    let recurring = price.recurring.clone().unwrap_or_default();
    let interval = recurring
        .interval
        .or_else(|| price.interval.clone())
        .unwrap_or_else(|| "month".into());
    let interval_count = recurring
        .interval_count
        .or(price.interval_count)
        .unwrap_or(1)
        .max(1);
    let usage = recurring.usage_type.or_else(|| price.usage_type.clone());
    let metered = usage.as_deref() == Some("metered");
    let unit_amount = price
        .unit_amount
        .or_else(|| {
            price
                .unit_amount_decimal
                .as_deref()
                .and_then(|d| d.parse::<f64>().ok())
                .map(|d| d.round() as i64)
        })
        .or(price.amount);
    let quantity = item.quantity.or(sub_quantity).unwrap_or(1);
    let mrr = if metered {
        0
    } else {
        monthly(
            unit_amount.unwrap_or(0) * quantity,
            &interval,
            interval_count,
        )
    };
    ItemState {
        price_id: price.id.clone(),
        quantity,
        interval,
        interval_count,
        unit_amount,
        metered,
        mrr,
    }
}

/// `amount` per `interval_count` × `interval`, as a monthly amount, rounded half up.
pub fn monthly(amount: i64, interval: &str, interval_count: i64) -> i64 {
    let count = interval_count.max(1) as i128;
    let (num, den): (i128, i128) = match interval {
        "day" => (365, 12 * count),
        "week" => (52, 12 * count),
        "year" => (1, 12 * count),
        _ => (1, count), // month
    };
    let scaled = amount as i128 * num;
    ((scaled * 2 + den) / (2 * den)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_a_month() {
        assert_eq!(monthly(2000, "month", 1), 2000);
        assert_eq!(monthly(24000, "year", 1), 2000);
        assert_eq!(monthly(1000, "week", 1), 4333); // 1000 × 52 / 12
        assert_eq!(monthly(6000, "month", 3), 2000); // quarterly
        assert_eq!(monthly(100, "day", 1), 3042); // 100 × 365 / 12
        assert_eq!(monthly(1, "year", 1), 0);
    }

    fn sub(json: &str) -> Subscription {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn newer_shape_items_quantity_and_period_on_items() {
        let s = sub(
            r#"{"id":"sub_1","customer":"cus_1","status":"active","currency":"usd",
            "items":{"data":[
              {"price":{"id":"p_pro","unit_amount":2000,"currency":"usd","recurring":{"interval":"month","interval_count":1,"usage_type":"licensed"}},"quantity":3,"current_period_end":1700000000},
              {"price":{"id":"p_year","unit_amount":120000,"currency":"usd","recurring":{"interval":"year","interval_count":1}},"quantity":1,"current_period_end":1700000500},
              {"price":{"id":"p_meter","unit_amount":5,"currency":"usd","recurring":{"interval":"month","usage_type":"metered"}}}
            ]}}"#,
        );
        let st = SubscriptionState::from_stripe(&s, true, Version::new(1, "evt"), false);
        assert_eq!(st.mrr, 6000 + 10000);
        assert!(st.has_metered);
        assert_eq!(st.current_period_end, Some(1_700_000_500));
        assert_eq!(st.contributing_mrr(), 16000);
        assert_eq!(st.items[2].mrr, 0);
    }

    #[test]
    fn older_shape_plan_and_top_level_period() {
        let s = sub(
            r#"{"id":"sub_2","customer":{"id":"cus_2"},"status":"trialing","quantity":2,
            "current_period_end":1600000000,"plan":{"amount":999},
            "items":{"data":[{"plan":{"id":"plan_x","amount":999,"currency":"eur","interval":"week","interval_count":2}}]}}"#,
        );
        let st = SubscriptionState::from_stripe(&s, false, Version::new(1, "evt"), false);
        assert_eq!(st.customer.as_deref(), Some("cus_2"));
        assert_eq!(st.items[0].quantity, 2);
        assert_eq!(st.mrr, monthly(1998, "week", 2));
        assert_eq!(st.currency.unwrap().as_str(), "eur");
        assert_eq!(st.current_period_end, Some(1_600_000_000));
        assert_eq!(st.contributing_mrr(), 0, "a trial brings in nothing yet");
    }
}
