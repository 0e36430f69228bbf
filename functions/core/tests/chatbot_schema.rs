//! Every alert transition, as an AWS Chatbot custom notification, against the schema
//! that AWS documents (validated by `jsonschema` in the test venv).

use revguard_core::domain::chat::chatbot_notification;
use revguard_core::domain::detector::alerts::Transition;
use revguard_testkit::fixtures::{check_chatbot_notifications, large_refund_alert};

#[test]
fn every_transition_renders_a_valid_custom_notification() {
    let mut documents = Vec::new();
    for transition in [
        Transition::Opened,
        Transition::Escalated,
        Transition::Reminder,
        Transition::Resolved,
    ] {
        let m = large_refund_alert(transition);
        documents.push(chatbot_notification(&m, None));
        documents.push(chatbot_notification(&m, Some("https://example.test/d")));
    }
    check_chatbot_notifications(&documents);
}

#[test]
#[should_panic(expected = "off their schema")]
fn the_check_refuses_what_the_schema_refuses() {
    let mut bad = chatbot_notification(&large_refund_alert(Transition::Opened), None);
    bad["content"]["textType"] = "markdown".into();
    check_chatbot_notifications(&[bad]);
}
