//! The embedded detector's wiring: the core detector run over the SQLite store, its
//! alarms and notices split by audience, and Stripe's list of events as its evidence of
//! delivery when a key is configured.

use revguard_core::usecases::detector_run::ByAudience;
use revguard_sqlite::SqliteStore;

pub type EmbeddedDetector = revguard_core::usecases::detector_run::Detector<
    revguard_sqlite::billing::SqliteCounters,
    SqliteStore,
    ByAudience<crate::chat::AlertPublisher, crate::chat::NotificationPublisher>,
    SqliteStore,
    EmbeddedAudit,
    revguard_core::ports::TokioPause,
>;

/// The embedded detector's evidence of delivery: Stripe's list of events when a key is
/// configured; `None`: silence alone.
pub type EmbeddedAudit = Option<
    revguard_core::usecases::recovery::StripeAudit<revguard_stripe::StripeClient, SqliteStore>,
>;

/// The embedded detector: alarms to `on_call` (the alerts file and chat), win-backs that
/// come due to `team` (the notifications file, shared with the worker).
pub fn detector(
    store: &SqliteStore,
    config: revguard_core::domain::detector::DetectConfig,
    on_call: crate::chat::AlertPublisher,
    team: impl Into<crate::chat::NotificationPublisher>,
) -> EmbeddedDetector {
    revguard_core::usecases::detector_run::Detector {
        counters: revguard_sqlite::billing::SqliteCounters {
            store: store.clone(),
            received_before: None,
        },
        alerts: store.clone(),
        publisher: ByAudience {
            on_call,
            team: team.into(),
        },
        comebacks: store.clone(),
        config,
        audit: None,
        pause: revguard_core::ports::TokioPause,
        wall_clock: revguard_core::domain::time::unix_now,
    }
}
