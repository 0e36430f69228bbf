//! Alert transitions as chat messages, once for every channel: AWS Chatbot's custom
//! notifications (Slack and Microsoft Teams through the alerts topic on AWS), and Slack
//! Block Kit and a Teams Adaptive Card for incoming webhooks (embedded). Each shows the
//! severity, what happened with its numbers (money with its currency's exponent), since
//! when, what to check first, and a link to a dashboard when one is configured. Pure.

use serde_json::{json, Value};

use crate::domain::detector::alerts::{
    datetime, render, what_to_check, AlertChange, AlertMessage, AlertState, Transition,
};
use crate::domain::finding::{Finding, Severity};
use crate::domain::metric::figure;

/// Where a chat message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChatApp {
    Slack,
    Teams,
}

impl ChatApp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatApp::Slack => "slack",
            ChatApp::Teams => "teams",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "slack" => Some(ChatApp::Slack),
            "teams" => Some(ChatApp::Teams),
            _ => None,
        }
    }

    /// The body to post to this app's incoming webhook.
    pub fn render(self, m: &AlertMessage, link: Option<&str>) -> Value {
        match self {
            ChatApp::Slack => slack_message(m, link),
            ChatApp::Teams => teams_message(m, link),
        }
    }
}

/// What every rendering shows, in the same words.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatView {
    /// "🔴 CRITICAL · Payments failed spiking (live)".
    pub title: String,
    /// The finding's explanation: what happened, with its numbers.
    pub summary: String,
    /// Label and value pairs: observed, expected, window, open since…
    pub facts: Vec<(&'static str, String)>,
    pub next_step: &'static str,
    pub link: Option<String>,
}

pub fn view(m: &AlertMessage, link: Option<&str>) -> ChatView {
    let f = &m.finding;
    let mode = if m.livemode { "live" } else { "test" };
    let what = headline(&f.signal, &f.metric);
    let title = match m.transition {
        Transition::Resolved => format!("✅ RESOLVED · {what} ({mode})"),
        t => {
            let (mark, sev) = match m.severity {
                Severity::Critical => ("🔴", "CRITICAL"),
                Severity::Warning => ("🟠", "WARNING"),
            };
            let verb = match t {
                Transition::Escalated => " (escalated)",
                Transition::Reminder => " (still open)",
                _ => "",
            };
            format!("{mark} {sev}{verb} · {what} ({mode})")
        }
    };
    let mut facts = vec![
        ("Observed", figure(&f.metric, f.observed)),
        (
            // An event-level alert compares one amount with the configured threshold.
            if f.signal == "large_refund" {
                "Threshold"
            } else {
                "Expected"
            },
            figure(&f.metric, f.expected),
        ),
        (
            "Window",
            format!("{} to {}", datetime(f.window_start), datetime(f.window_end)),
        ),
    ];
    if m.opened_at > 0 {
        facts.push(("Open since", datetime(m.opened_at)));
    }
    if m.transition == Transition::Resolved {
        facts.push(("Resolved at", datetime(m.at)));
    }
    facts.push(("Metric", format!("{} ({mode} mode)", f.metric)));
    facts.push(("Alert", m.id.clone()));
    ChatView {
        title,
        summary: f.explanation.clone(),
        facts,
        next_step: what_to_check(&f.signal, &f.metric),
        link: link.map(str::to_owned),
    }
}

/// A signal as people say it.
fn headline(signal: &str, metric: &str) -> String {
    let metric_words = || {
        let base = metric.split('.').next().unwrap_or(metric);
        base.replace('_', " ")
    };
    let text = match signal {
        "spike" => format!("{} spiking", metric_words()),
        "drop" => format!("{} dropping", metric_words()),
        "delivery_gap" => "No webhooks arriving".to_owned(),
        "delivery_lag" => "Webhooks arriving late".to_owned(),
        "events_missing" => "Events missing".to_owned(),
        "reconcile_drift" => "State drifted from Stripe".to_owned(),
        "mrr_fall" => "MRR falling".to_owned(),
        "large_refund" => "Large refund".to_owned(),
        "duplicate_charge" => "Possible duplicate charge".to_owned(),
        "early_fraud_warning" => "Early fraud warning".to_owned(),
        "silent_lapse" => "Renewals missing".to_owned(),
        "win_back" => "Win-back due".to_owned(),
        "endpoint_disabled" => "Webhook endpoint disabled".to_owned(),
        "endpoint_missing" => "No webhook endpoint for revguard".to_owned(),
        "endpoint_events" => "Event types not sent".to_owned(),
        "endpoint_api_version" => "Webhook API version unchecked".to_owned(),
        other => other.replace('_', " "),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// An AWS Chatbot (Amazon Q Developer in chat applications) custom notification, as its
/// documented schema has it: `version` 1.0, `source` custom, `content` in client markdown,
/// and the alert's id as the thread, so that an alert's transitions share a thread.
pub fn chatbot_notification(m: &AlertMessage, link: Option<&str>) -> Value {
    let v = view(m, link);
    let mut description = format!("{}\n", v.summary);
    for (label, value) in &v.facts {
        description.push_str(&format!("\n*{label}:* {value}"));
    }
    let mut next_steps = vec![v.next_step.to_owned()];
    if let Some(link) = &v.link {
        next_steps.push(format!("Dashboard: {link}"));
    }
    let mut related = Vec::new();
    related.extend(v.link.clone());
    json!({
        "version": "1.0",
        "source": "custom",
        "id": m.id,
        "content": {
            "textType": "client-markdown",
            "title": v.title,
            "description": description,
            "nextSteps": next_steps,
            "keywords": [m.severity.as_str(), m.transition.as_str(), m.finding.signal, if m.livemode { "live" } else { "test" }],
        },
        "metadata": {
            "threadId": m.alert_id,
            "summary": m.subject,
            "eventType": format!("revguard.alert.{}", m.transition.as_str()),
            "relatedResources": related,
            "additionalContext": {
                "alert_id": m.alert_id,
                "message_id": m.id,
                "transition": m.transition.as_str(),
                "severity": m.severity.as_str(),
                "signal": m.finding.signal,
                "metric": m.finding.metric,
                "livemode": if m.livemode { "true" } else { "false" },
            },
        },
    })
}

/// Slack's mrkdwn treats these three as control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: Block Kit (header, summary, up to ten fields, what to
/// check, a button to the dashboard) with `text` as the notification's fallback.
pub fn slack_message(m: &AlertMessage, link: Option<&str>) -> Value {
    let v = view(m, link);
    // Header text stops at 150 characters, section fields at ten.
    let header: String = v.title.chars().take(150).collect();
    let fields: Vec<Value> = v
        .facts
        .iter()
        .take(10)
        .map(|(label, value)| json!({ "type": "mrkdwn", "text": format!("*{label}*\n{}", slack_escape(value)) }))
        .collect();
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": header, "emoji": true } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": slack_escape(&v.summary) } }),
        json!({ "type": "section", "fields": fields }),
        json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("*What to check first:* {}", slack_escape(v.next_step)) }] }),
    ];
    if let Some(link) = &v.link {
        blocks.push(json!({ "type": "actions", "elements": [{ "type": "button", "text": { "type": "plain_text", "text": "Open the dashboard" }, "url": link }] }));
    }
    json!({
        "text": slack_escape(&format!("{}: {}", v.title, v.summary)),
        "blocks": blocks,
    })
}

/// A Microsoft Teams message carrying an Adaptive Card (what Teams' incoming webhooks and
/// Workflows' "post to a channel when a webhook request is received" both accept).
pub fn teams_message(m: &AlertMessage, link: Option<&str>) -> Value {
    let v = view(m, link);
    let color = match (m.transition, m.severity) {
        (Transition::Resolved, _) => "Good",
        (_, Severity::Critical) => "Attention",
        (_, Severity::Warning) => "Warning",
    };
    let facts: Vec<Value> = v
        .facts
        .iter()
        .map(|(label, value)| json!({ "title": label, "value": value }))
        .collect();
    let actions: Vec<Value> = v
        .link
        .iter()
        .map(|url| json!({ "type": "Action.OpenUrl", "title": "Open the dashboard", "url": url }))
        .collect();
    json!({
        "type": "message",
        "summary": v.title,
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": { "width": "Full" },
                "body": [
                    { "type": "TextBlock", "text": v.title, "weight": "Bolder", "size": "Medium", "color": color, "wrap": true },
                    { "type": "TextBlock", "text": v.summary, "wrap": true },
                    { "type": "FactSet", "facts": facts },
                    { "type": "TextBlock", "text": format!("**What to check first:** {}", v.next_step), "wrap": true, "isSubtle": true },
                ],
                "actions": actions,
            },
        }],
    })
}

const JAN_10: i64 = 1_768_003_200; // 2026-01-10 00:00 UTC

/// A sample alert at a transition: a large refund ($6,500.00 against a $1,000.00
/// threshold, opened at 00:10 on 2026-01-10), for previews (`revguard chat-test`) and tests.
pub fn sample_alert(transition: Transition) -> AlertMessage {
    let finding = Finding {
        scope: Default::default(),
        accounts: Vec::new(),
        key: "large_refund:ch_1".into(),
        signal: "large_refund".into(),
        metric: "refunds_amount.usd".into(),
        livemode: true,
        window_start: JAN_10,
        window_end: JAN_10 + 3600,
        observed: 650_000.0,
        expected: 100_000.0,
        spread: 0.0,
        ratio: 6.5,
        severity: Severity::Critical,
        explanation: "A single refund of $6,500.00 on charge ch_1".into(),
    };
    let state = AlertState {
        id: "live:large_refund:ch_1".into(),
        livemode: true,
        open: transition != Transition::Resolved,
        severity: Severity::Critical,
        opened_at: JAN_10 + 600,
        last_sent_at: JAN_10 + 4000,
        resolved_at: (transition == Transition::Resolved).then_some(JAN_10 + 4000),
        event_level: true,
        quiet_since: None,
        finding,
        version: 2,
        missing_events: Vec::new(),
    };
    render(&AlertChange {
        state,
        transition,
        expected_version: Some(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::sample_alert as large_refund;

    #[test]
    fn money_durations_and_counts_read_as_people_say_them() {
        assert_eq!(figure("refunds_amount.usd", 650_000.0), "$6,500.00");
        assert_eq!(figure("refund_max.jpy", 5_000_000.0), "¥5,000,000");
        assert_eq!(figure("lag_p95_secs", 1500.0), "25 min");
        assert_eq!(figure("lag_p95_secs", 45.0), "45 s");
        assert_eq!(figure("payments_failed", 12_345.0), "12,345");
        assert_eq!(figure("failure_rate", 0.3456), "34.56 %");
        assert_eq!(figure("subscriptions_canceled", 0.02), "0.02");
    }

    #[test]
    fn every_app_shows_the_same_numbers_and_next_step() {
        let mut m = large_refund(Transition::Opened);
        m.finding.explanation.push_str(" (Pro & Team plan)");
        let link = "https://example.test/dashboard";
        let chatbot = chatbot_notification(&m, Some(link)).to_string();
        let slack = slack_message(&m, Some(link)).to_string();
        let teams = teams_message(&m, Some(link)).to_string();
        for body in [&chatbot, &slack, &teams] {
            assert!(body.contains("$6,500.00"), "{body}");
            assert!(body.contains("$1,000.00"), "{body}");
            assert!(body.contains("CRITICAL"), "{body}");
            assert!(body.contains("Review recent refunds"), "{body}");
            assert!(body.contains(link), "{body}");
            assert!(body.contains("2026-01-10 00:10 UTC"), "open since: {body}");
        }
        // Slack's control characters are escaped; Teams and Chatbot take text as is.
        assert!(slack.contains("Pro &amp; Team") && !slack.contains("Pro & Team"));
        assert!(teams.contains("Pro & Team"));
    }

    #[test]
    fn email_and_sms_bodies_show_money_for_people() {
        let m = large_refund(Transition::Opened);
        assert!(m.email.contains("Observed:  $6,500.00"), "{}", m.email);
        assert!(m.email.contains("Expected:  $1,000.00"), "{}", m.email);
        assert!(
            m.sms.contains("$6,500.00 vs $1,000.00 expected"),
            "{}",
            m.sms
        );
    }

    #[test]
    fn a_resolution_reads_as_one_and_threads_with_its_alert() {
        let opened = chatbot_notification(&large_refund(Transition::Opened), None);
        let resolved = chatbot_notification(&large_refund(Transition::Resolved), None);
        assert_eq!(
            opened["metadata"]["threadId"],
            resolved["metadata"]["threadId"]
        );
        let title = resolved["content"]["title"].as_str().unwrap();
        assert!(
            title.starts_with("✅ RESOLVED · Large refund (live)"),
            "{title}"
        );
        assert_eq!(resolved["metadata"]["eventType"], "revguard.alert.resolved");
        let teams = teams_message(&large_refund(Transition::Resolved), None);
        let card = &teams["attachments"][0]["content"];
        assert_eq!(card["body"][0]["color"], "Good");
        assert_eq!(card["actions"], json!([]), "no link, no button");
        let slack = slack_message(&large_refund(Transition::Resolved), None);
        assert!(slack["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions"));
    }
}
