//! Recovery on AWS: core's backfill and reconcile use cases over DynamoDB and SQS, run by
//! the scheduled recovery function, and the detector's completeness audit.
//!
//! - The backfill remembers where it stopped in the state table (`cursor#backfill`): the
//!   next run starts there, less core's `CURSOR_OVERLAP_SECS`.
//! - A reconciliation fixes what it finds (unless told not to), and drift of at least
//!   the threshold leaves a `reconcile_drift` finding for the detector, which opens the
//!   alert and publishes it once, as it does the worker's event-level findings.

use aws_sdk_dynamodb::types::AttributeValue;
use revguard_core::ports::{Account, BackfillCursor, EventsQuery};
use revguard_core::usecases::ingest::Ingress;
use revguard_core::usecases::recovery::{
    backfill_every_account, reconcile_every_account, BackfillSummary, ReconcileReport,
    ReconcileSettings, RecoveryError, StripeAudit, StripeRequery, HANDLED_EVENT_TYPES,
};
use revguard_core::StoreError;

use revguard_stripe::StripeClient;

use crate::alerts::DynamoAlerts;
use crate::config::{
    optional_parsed, policy_from_env, required, ConfigError, StripeEnv, DEFAULT_MAX_MESSAGE_BYTES,
};
use crate::dynamo::DynamoEventLog;
use crate::item::PK;
use crate::read_model::DynamoReadModel;
use crate::sqs::SqsQueue;

pub const CURSOR_PK: &str = "cursor#backfill";

/// The detector's evidence of delivery on AWS: Stripe's list of events when a key is
/// configured (`None`: silence alone).
pub type AwsAudit = Option<StripeAudit<StripeClient, DynamoEventLog>>;

/// Re-query after important transitions, in the worker function (`REVGUARD_REQUERY`
/// with a Stripe key); `None`: off.
pub type AwsRequery = Option<Box<StripeRequery<StripeClient, DynamoEventLog, SqsQueue>>>;

/// The ingress over the stack, for events fetched from Stripe.
pub fn fetched_ingress(
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    events_table: &str,
    queue_url: &str,
    max_message_bytes: usize,
) -> Ingress<DynamoEventLog, SqsQueue> {
    revguard_core::usecases::recovery::fetched_ingress(
        DynamoEventLog::new(dynamodb, events_table),
        SqsQueue::new(sqs, queue_url, max_message_bytes),
    )
}

/// What the recovery function and the operator CLI need, read once.
#[derive(Debug, Clone)]
pub struct RecoveryEnv {
    pub events_table: String,
    pub state_table: String,
    pub counters_table: String,
    pub alerts_table: String,
    pub queue_url: String,
    pub max_message_bytes: usize,
    /// `REVGUARD_BACKFILL_UNDELIVERED_ONLY`: list only events a webhook endpoint has not
    /// acknowledged (cheaper; blind to events never sent to revguard).
    pub undelivered_only: bool,
    /// `REVGUARD_RECONCILE_FIX` (default true): apply Stripe's objects to what drifted.
    pub fix: bool,
    /// `REVGUARD_RECONCILE_ALERT_THRESHOLD` (default 1): subscriptions missing, drifted
    /// or extra from which a reconciliation raises an alert (0: never).
    pub drift_alert_threshold: usize,
    /// The billing policy, for the stages of open dunning cases.
    pub policy: revguard_core::domain::billing::BillingPolicy,
    pub stripe: StripeEnv,
}

impl RecoveryEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            events_table: required("REVGUARD_EVENTS_TABLE")?,
            state_table: required("REVGUARD_STATE_TABLE")?,
            counters_table: required("REVGUARD_COUNTERS_TABLE")?,
            alerts_table: required("REVGUARD_ALERTS_TABLE")?,
            queue_url: required("REVGUARD_QUEUE_URL")?,
            max_message_bytes: optional_parsed(
                "REVGUARD_QUEUE_MAX_MESSAGE_BYTES",
                DEFAULT_MAX_MESSAGE_BYTES,
            )?,
            undelivered_only: optional_parsed("REVGUARD_BACKFILL_UNDELIVERED_ONLY", false)?,
            fix: optional_parsed("REVGUARD_RECONCILE_FIX", true)?,
            drift_alert_threshold: optional_parsed("REVGUARD_RECONCILE_ALERT_THRESHOLD", 1)?,
            policy: policy_from_env()?,
            stripe: StripeEnv::from_env()?,
        })
    }
}

/// The recovery jobs over one stack.
pub struct Recovery {
    pub api: StripeClient,
    pub ingress: Ingress<DynamoEventLog, SqsQueue>,
    pub read: DynamoReadModel,
    pub alerts: DynamoAlerts,
    dynamodb: aws_sdk_dynamodb::Client,
    /// Its settings, the billing policy among them (for the stages of open dunning cases).
    env: RecoveryEnv,
}

impl Recovery {
    pub fn new(
        api: StripeClient,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        env: &RecoveryEnv,
    ) -> Self {
        Self {
            ingress: fetched_ingress(
                dynamodb.clone(),
                sqs,
                &env.events_table,
                &env.queue_url,
                env.max_message_bytes,
            ),
            read: DynamoReadModel::new(
                dynamodb.clone(),
                &env.state_table,
                &env.counters_table,
                &env.alerts_table,
            ),
            alerts: DynamoAlerts::new(dynamodb.clone(), &env.alerts_table),
            api,
            dynamodb,
            env: env.clone(),
        }
    }

    /// One backfill from the cursor (or `since`) to now, an hour's window at a time, the
    /// cursor moving after each; it starts no window once `keep_going` says no.
    pub async fn backfill(
        &self,
        now: i64,
        since: Option<i64>,
        keep_going: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(i64, BackfillSummary), RecoveryError> {
        let query = EventsQuery {
            since: now,
            until: None,
            undelivered_only: self.env.undelivered_only,
            types: HANDLED_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        };
        // The platform's own events first, as before Connect; then each connected
        // account seen, on its behalf, from its own cursor.
        backfill_every_account(
            &self.api,
            &self.ingress,
            self,
            &crate::DynamoCounters::new(self.dynamodb.clone(), &self.env.counters_table),
            &query,
            since,
            now,
            keep_going,
        )
        .await
    }

    /// One reconciliation (core's [`reconcile_and_alert`]): drift at or over the
    /// threshold leaves a finding for the detector.
    pub async fn reconcile(&self, now: i64) -> Result<ReconcileReport, RecoveryError> {
        let settings = ReconcileSettings {
            fix: self.env.fix,
            drift_alert_threshold: self.env.drift_alert_threshold,
        };
        // Every account revguard holds subscriptions of, each on its own behalf.
        let mut all = ReconcileReport::default();
        let every = reconcile_every_account(
            &self.api,
            &self.read,
            &self.ingress,
            &self.alerts,
            &self.env.policy,
            settings,
            now,
        )
        .await?;
        for (account, report) in every.reports {
            if !account.is_platform() {
                tracing::info!(account = %account, summary = %report.summary(settings.fix), "connected account reconciled");
            }
            all.merge(report);
        }
        Ok(all)
    }
}

/// The backfill's cursor item of each account (`cursor#backfill`, the platform's as it
/// always was; `<acct>#cursor#backfill` for a connected account).
impl BackfillCursor for Recovery {
    async fn cursor(&self, account: &Account) -> Result<Option<i64>, StoreError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.env.state_table)
            .key(PK, AttributeValue::S(account.key(CURSOR_PK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out
            .item
            .and_then(|i| i.get("at")?.as_n().ok()?.parse().ok()))
    }

    async fn advance(&self, account: &Account, to: i64) -> Result<(), StoreError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.env.state_table)
            .key(PK, AttributeValue::S(account.key(CURSOR_PK)))
            .update_expression("SET #at = :to")
            .condition_expression("attribute_not_exists(#at) OR #at < :to")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}
