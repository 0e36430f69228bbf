//! Paging through PagerDuty's Events API v2: one incident follows one alert's life. An
//! alert's opening, escalation and reminders are `trigger`s with the alert id and the
//! time it opened as the `dedup_key` (PagerDuty folds them into the incident that key
//! opened; an alert that reopens later is a new incident, which a late resolve of the
//! previous one cannot close), its resolution a `resolve` of the same key. Delivering a transition twice is therefore harmless: a second
//! trigger of an open incident is an update, a second resolve does nothing.
//!
//! The routing key (the integration key of a PagerDuty service) is a secret: the bodies
//! rendered here carry none, and it is added only when the body is sent.

use serde_json::{json, Value};

use crate::domain::chat::view;
use crate::domain::detector::alerts::{AlertMessage, Transition};
use crate::domain::finding::Severity;

/// Where Events API v2 requests go.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limits: `dedup_key` 255 characters, `summary` 1,024.
const DEDUP_KEY_MAX: usize = 255;
const SUMMARY_MAX: usize = 1024;

/// The incident an alert's transitions share.
pub fn dedup_key(alert_id: &str) -> String {
    if alert_id.len() <= DEDUP_KEY_MAX {
        return alert_id.to_owned();
    }
    // Longer ids (none today) keep a readable start and a digest of the whole.
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(alert_id.as_bytes()));
    let mut start: String = alert_id.chars().take(DEDUP_KEY_MAX - 65).collect();
    start.push(':');
    start + &digest
}

/// The Events API body for one alert transition, without its routing key; `None` for a
/// transition that is never published.
pub fn pagerduty_event(m: &AlertMessage, link: Option<&str>) -> Option<Value> {
    // Messages written before `opened_at` existed carry 0: the alert id alone.
    let dedup = match m.opened_at {
        0 => dedup_key(&m.alert_id),
        opened => dedup_key(&format!("{}:{opened}", m.alert_id)),
    };
    let action = match m.transition {
        Transition::Opened | Transition::Escalated | Transition::Reminder => "trigger",
        Transition::Resolved => "resolve",
        Transition::Quiet => return None,
    };
    if action == "resolve" {
        return Some(json!({ "event_action": "resolve", "dedup_key": dedup }));
    }
    let shown = view(m, link);
    let summary: String = format!("{}: {}", shown.title, m.finding.explanation)
        .chars()
        .take(SUMMARY_MAX)
        .collect();
    let details: serde_json::Map<String, Value> = shown
        .facts
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
        .chain([
            (
                "Next step".to_owned(),
                Value::String(shown.next_step.into()),
            ),
            (
                "Transition".to_owned(),
                Value::String(m.transition.as_str().into()),
            ),
        ])
        .collect();
    let mut body = json!({
        "event_action": action,
        "dedup_key": dedup,
        "payload": {
            "summary": summary,
            "source": format!("revguard ({} mode)", if m.livemode { "live" } else { "test" }),
            "severity": match m.severity {
                Severity::Critical => "critical",
                Severity::Warning => "warning",
            },
            "timestamp": crate::domain::time::rfc3339(m.at),
            "component": m.metric,
            "group": m.signal,
            "class": m.signal,
            "custom_details": details,
        },
    });
    if let Some(href) = link {
        body["links"] = json!([{ "href": href, "text": "revguard dashboard" }]);
    }
    Some(body)
}

/// `event` as sent: with the routing key.
pub fn with_routing_key(mut event: Value, routing_key: &str) -> Value {
    event["routing_key"] = Value::String(routing_key.to_owned());
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::sample_alert;

    #[test]
    fn an_alert_triggers_and_resolves_one_incident_by_its_id() {
        let opened = sample_alert(Transition::Opened);
        let trigger = pagerduty_event(&opened, Some("https://dash.example")).unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        let incident = format!("{}:{}", opened.alert_id, opened.opened_at);
        assert_eq!(trigger["dedup_key"], incident.as_str());
        assert_eq!(trigger["payload"]["severity"], opened.severity.as_str());
        assert!(trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains(&opened.finding.explanation));
        assert_eq!(trigger["links"][0]["href"], "https://dash.example");
        assert!(
            trigger.get("routing_key").is_none(),
            "no secret in a stored body"
        );

        let resolved = sample_alert(Transition::Resolved);
        let resolve = pagerduty_event(&resolved, None).unwrap();
        assert_eq!(
            resolve,
            json!({"event_action": "resolve", "dedup_key": incident})
        );
        // The same alert reopened later is another incident.
        let mut reopened = sample_alert(Transition::Opened);
        reopened.opened_at += 86_400;
        assert_ne!(
            pagerduty_event(&reopened, None).unwrap()["dedup_key"],
            incident.as_str()
        );
        assert!(pagerduty_event(&sample_alert(Transition::Quiet), None).is_none());
        assert_eq!(
            with_routing_key(resolve, "R0UT1NG")["routing_key"],
            "R0UT1NG"
        );
    }

    #[test]
    fn a_long_alert_id_still_names_one_incident_within_the_limit() {
        let long = "live:spike:".to_owned() + &"x".repeat(400);
        let key = dedup_key(&long);
        assert!(key.len() <= DEDUP_KEY_MAX, "{}", key.len());
        assert_eq!(key, dedup_key(&long));
        assert_ne!(key, dedup_key(&(long + "y")));
    }
}
