//! Who hears what: on call the alarms, the team its tasks (win-backs).

use revguard_core::domain::billing::Notification;
use revguard_core::domain::detector::alerts::{AlertMessage, Transition};
use revguard_core::domain::finding::{Finding, Severity};
use revguard_core::ports::Publisher;
use revguard_core::usecases::detector_run::ByAudience;
use revguard_testkit::memory::MemoryPublisher;

fn message(signal: &str, transition: Transition) -> AlertMessage {
    let finding = Finding {
        scope: Default::default(),
        accounts: Vec::new(),
        key: format!("{signal}:cus_W"),
        signal: signal.into(),
        metric: "mrr_lost.eur".into(),
        livemode: true,
        window_start: 1_767_225_600,
        window_end: 1_768_435_200,
        observed: 4_900.0,
        expected: 0.0,
        spread: 0.0,
        ratio: 0.0,
        severity: Severity::Warning,
        explanation: "cus_W canceled sub_W".into(),
    };
    AlertMessage {
        id: format!("live:{signal}:cus_W:1"),
        alert_id: format!("live:{signal}:cus_W"),
        transition,
        severity: Severity::Warning,
        metric: finding.metric.clone(),
        signal: signal.into(),
        livemode: true,
        at: 1_768_435_260,
        opened_at: 1_768_435_260,
        subject: "WARNING".into(),
        email: String::new(),
        sms: String::new(),
        default: String::new(),
        finding,
    }
}

#[tokio::test]
async fn a_win_back_reaches_the_team_once_and_on_call_never() {
    let by = ByAudience {
        on_call: MemoryPublisher::<AlertMessage>::default(),
        team: MemoryPublisher::<Notification>::default(),
    };
    by.publish(&message("win_back", Transition::Opened))
        .await
        .unwrap();
    by.publish(&message("win_back", Transition::Resolved))
        .await
        .unwrap();
    by.publish(&message("spike", Transition::Opened))
        .await
        .unwrap();
    let notices = by.team.taken();
    assert_eq!(notices.len(), 1);
    let notice = &notices[0];
    assert_eq!(
        (
            notice.id.as_str(),
            notice.kind.as_str(),
            notice.customer.as_deref()
        ),
        ("live:win_back:cus_W:1", "win_back", Some("cus_W"))
    );
    assert_eq!(notice.details["mrr_lost"], 4_900);
    assert_eq!(notice.details["currency"], "eur");
    assert_eq!(notice.details["canceled_at"], 1_767_225_600);
    assert!(notice.subject.contains("cus_W"), "{}", notice.subject);
    let alarms: Vec<String> = by
        .on_call
        .taken()
        .iter()
        .map(|m| m.signal.clone())
        .collect();
    assert_eq!(alarms, ["spike"]);
}
