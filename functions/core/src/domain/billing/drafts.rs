//! Customer-facing dunning drafts: for each dunning notification, a subject and a
//! plain-text body the SaaS can send as they are, written for the stage and the decline
//! reason, with the link where the customer pays or updates the card (the invoice's
//! `hosted_invoice_url`). Deterministic templates; every one can be replaced from a JSON
//! file (`REVGUARD_DUNNING_TEMPLATES`), by stage (`"notice"`) or stage and reason
//! (`"notice:expired_card"`), and the reason sentences by reason.
//!
//! Placeholders: `{amount}`, `{reason}` (the reason sentence), `{pay_line}` (the link, or
//! where to update the card without one), `{next_attempt}` (when the next automatic
//! retry is, or that there is none), `{attempt}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stage::Stage;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftTemplate {
    pub subject: String,
    pub body: String,
}

/// Overrides of the built-in drafts (empty: the built-in ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DunningDrafts {
    /// By `"<stage>"` or `"<stage>:<reason>"` (the more specific wins).
    pub templates: BTreeMap<String, DraftTemplate>,
    /// Reason sentences by reason.
    pub reasons: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DraftsError {
    #[error("the dunning templates are not valid JSON of the documented shape")]
    Json(#[from] serde_json::Error),
    #[error("unknown key {0:?}: keys are a stage (notice, action_required, final_warning, recovered, lost), optionally with :<reason>")]
    UnknownKey(String),
}

impl DunningDrafts {
    pub fn from_json(json: &str) -> Result<Self, DraftsError> {
        let drafts: DunningDrafts = serde_json::from_str(json)?;
        for key in drafts.templates.keys() {
            let stage = key.split(':').next().unwrap_or_default();
            if !STAGES.contains(&stage) {
                return Err(DraftsError::UnknownKey(key.clone()));
            }
        }
        Ok(drafts)
    }
}

const STAGES: [&str; 5] = [
    "notice",
    "action_required",
    "final_warning",
    "recovered",
    "lost",
];

/// A draft as written for one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub subject: String,
    pub body: String,
    /// The reason the wording was chosen for (`generic` when none is known).
    pub reason: String,
}

/// What a draft says of one case.
pub struct DraftFacts<'a> {
    pub stage: Stage,
    /// Stripe's `decline_code`, `outcome.reason` or `failure_code`, if known.
    pub decline: Option<&'a str>,
    /// The amount for people ("$49.00").
    pub amount: String,
    pub invoice_url: Option<&'a str>,
    pub next_attempt: Option<i64>,
    pub attempt: i64,
}

/// Stripe's decline and failure codes, in the families a customer acts on alike.
pub fn reason_family(code: &str) -> &'static str {
    match code {
        "insufficient_funds" | "card_velocity_exceeded" | "withdrawal_count_limit_exceeded" => {
            "insufficient_funds"
        }
        "expired_card" => "expired_card",
        "authentication_required" | "authentication_not_handled" => "authentication_required",
        "incorrect_number"
        | "invalid_number"
        | "incorrect_cvc"
        | "invalid_cvc"
        | "invalid_expiry_month"
        | "invalid_expiry_year"
        | "incorrect_zip" => "incorrect_card",
        "processing_error" | "issuer_not_available" | "try_again_later" | "reenter_transaction" => {
            "processing_error"
        }
        "lost_card" | "stolen_card" | "pickup_card" | "restricted_card" => "card_unusable",
        _ => "generic",
    }
}

fn builtin_reason(reason: &str) -> &'static str {
    match reason {
        "insufficient_funds" => "your bank declined it for insufficient funds",
        "expired_card" => "the card on file has expired",
        "authentication_required" => "your bank asks you to confirm the payment",
        "incorrect_card" => "the card details on file were declined as incorrect",
        "processing_error" => "the card network had a temporary error",
        "card_unusable" => "your bank reports that the card on file can no longer be used",
        _ => "your bank declined it",
    }
}

fn builtin(stage: Stage, reason: &str) -> DraftTemplate {
    let t = |subject: &str, body: &str| DraftTemplate {
        subject: subject.to_owned(),
        body: body.to_owned(),
    };
    match (stage, reason) {
        (Stage::Notice, "processing_error") => t(
            "We couldn't process your payment of {amount}",
            "Hi,\n\nWe tried to charge {amount} for your subscription, but {reason}. Nothing is wrong with your account, and no action is needed: {next_attempt}\n\n{pay_line}\n\nQuestions? Just reply to this email.\n",
        ),
        (Stage::Notice, "expired_card" | "incorrect_card" | "card_unusable") => t(
            "Please update your card: your payment of {amount} didn't go through",
            "Hi,\n\nWe tried to charge {amount} for your subscription, but {reason}. To keep your subscription running, please update your card:\n\n{pay_line}\n\n{next_attempt}\n\nQuestions? Just reply to this email.\n",
        ),
        (Stage::Notice, _) => t(
            "Your payment of {amount} didn't go through",
            "Hi,\n\nWe tried to charge {amount} for your subscription, but {reason}. {next_attempt}\n\nTo pay now or use another card:\n\n{pay_line}\n\nQuestions? Just reply to this email.\n",
        ),
        (Stage::ActionRequired, _) => t(
            "Please confirm your payment of {amount}",
            "Hi,\n\nYour bank asks you to confirm the payment of {amount} for your subscription (a security check such as 3-D Secure). It takes a minute:\n\n{pay_line}\n\nUntil then the payment stays pending. Questions? Just reply to this email.\n",
        ),
        (Stage::FinalWarning, _) => t(
            "Action needed: your subscription is about to lapse",
            "Hi,\n\nWe have now tried {attempt} times to charge {amount} for your subscription, and {reason}. {next_attempt} If that attempt fails too, your subscription will be canceled.\n\nTo keep it, please pay or update your card now:\n\n{pay_line}\n\nQuestions? Just reply to this email.\n",
        ),
        (Stage::Recovered, _) => t(
            "Thank you: your payment of {amount} went through",
            "Hi,\n\nYour payment of {amount} went through and your subscription continues as before. Thank you!\n",
        ),
        (Stage::Lost, _) => t(
            "Your subscription has been canceled for non-payment",
            "Hi,\n\nWe couldn't collect {amount} for your subscription, and it has been canceled. You can pay the open invoice and restart at any time:\n\n{pay_line}\n\nWe'd be glad to have you back. Questions? Just reply to this email.\n",
        ),
    }
}

impl DunningDrafts {
    /// The draft for a case at a stage.
    pub fn draft(&self, facts: &DraftFacts<'_>) -> Draft {
        let reason = match facts.stage {
            Stage::ActionRequired => "authentication_required",
            _ => facts.decline.map_or("generic", reason_family),
        };
        let stage = facts.stage.as_str();
        let template = self
            .templates
            .get(&format!("{stage}:{reason}"))
            .or_else(|| self.templates.get(stage))
            .cloned()
            .unwrap_or_else(|| builtin(facts.stage, reason));
        let reason_text = self
            .reasons
            .get(reason)
            .map_or(builtin_reason(reason), String::as_str);
        let pay_line = match facts.invoice_url {
            Some(url) => url.to_owned(),
            None => {
                "Sign in to your account and open Billing to pay or update your card.".to_owned()
            }
        };
        let next_attempt = match (facts.stage, facts.next_attempt) {
            (_, Some(at)) => format!(
                "We'll try again automatically on {}.",
                crate::domain::time::datetime(at)
                    .split(' ')
                    .next()
                    .unwrap_or_default()
            ),
            (Stage::Notice | Stage::FinalWarning, None) => {
                "We won't retry automatically.".to_owned()
            }
            _ => String::new(),
        };
        let fill = |text: &str| {
            text.replace("{amount}", &facts.amount)
                .replace("{reason}", reason_text)
                .replace("{pay_line}", &pay_line)
                .replace("{next_attempt}", &next_attempt)
                .replace("{attempt}", &facts.attempt.to_string())
        };
        Draft {
            subject: fill(&template.subject),
            body: fill(&template.body),
            reason: reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(stage: Stage, decline: Option<&'static str>) -> DraftFacts<'static> {
        DraftFacts {
            stage,
            decline,
            amount: "$49.00".into(),
            invoice_url: Some("https://invoice.stripe.com/i/acct_1/test_x"),
            next_attempt: Some(1_767_484_800), // 2026-01-04
            attempt: 3,
        }
    }

    #[test]
    fn each_reason_gets_its_words_and_the_link() {
        let drafts = DunningDrafts::default();
        let funds = drafts.draft(&facts(Stage::Notice, Some("insufficient_funds")));
        assert_eq!(funds.reason, "insufficient_funds");
        assert_eq!(funds.subject, "Your payment of $49.00 didn't go through");
        assert!(funds.body.contains("insufficient funds"), "{}", funds.body);
        assert!(funds
            .body
            .contains("https://invoice.stripe.com/i/acct_1/test_x"));
        assert!(funds.body.contains("on 2026-01-04"), "{}", funds.body);
        let expired = drafts.draft(&facts(Stage::Notice, Some("expired_card")));
        assert!(expired.subject.starts_with("Please update your card"));
        let auth = drafts.draft(&facts(Stage::ActionRequired, None));
        assert_eq!(auth.reason, "authentication_required");
        assert!(auth.body.contains("3-D Secure"));
        let generic = drafts.draft(&facts(Stage::Notice, Some("do_not_honor")));
        assert_eq!(generic.reason, "generic");
        let last = drafts.draft(&DraftFacts {
            next_attempt: None,
            invoice_url: None,
            ..facts(Stage::FinalWarning, Some("card_declined"))
        });
        assert!(last.body.contains("tried 3 times") && last.body.contains("won't retry"));
        assert!(last.body.contains("open Billing"), "{}", last.body);
        for body in [
            &funds.body,
            &expired.body,
            &auth.body,
            &generic.body,
            &last.body,
        ] {
            assert!(!body.contains('{'), "a placeholder left: {body}");
        }
    }

    #[test]
    fn a_file_replaces_a_stage_or_a_stage_and_reason() {
        let drafts = DunningDrafts::from_json(
            r#"{"templates": {"notice": {"subject": "Payment issue ({amount})", "body": "Pay at {pay_line}"},
                "notice:expired_card": {"subject": "New card needed", "body": "{reason}: {pay_line}"}},
                "reasons": {"expired_card": "your card expired"}}"#,
        )
        .unwrap();
        let d = drafts.draft(&facts(Stage::Notice, Some("insufficient_funds")));
        assert_eq!(d.subject, "Payment issue ($49.00)");
        let d = drafts.draft(&facts(Stage::Notice, Some("expired_card")));
        assert_eq!(d.subject, "New card needed");
        assert_eq!(
            d.body,
            "your card expired: https://invoice.stripe.com/i/acct_1/test_x"
        );
        // Stages without an override keep the built-in text.
        let d = drafts.draft(&facts(Stage::Lost, None));
        assert!(d.subject.contains("canceled"));
        assert!(DunningDrafts::from_json(
            r#"{"templates": {"noticed": {"subject": "", "body": ""}}}"#
        )
        .is_err());
        assert!(DunningDrafts::from_json(r#"{"template": {}}"#).is_err());
    }
}
