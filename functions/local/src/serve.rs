//! `revguard serve`: the webhook endpoint on the embedded store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use revguard_core::domain::billing::BillingPolicy;
use revguard_core::{IngestConfig, Ingress, ModeFilter, SecretSet, WebhookSecret};
use revguard_http::{router, system_clock, App};

use crate::api::{self, ApiState};
use crate::chat::{AlertPublisher, DeliveryOutbox, Destinations, NotificationPublisher};
use crate::consumer;
use crate::detector::{self, EmbeddedDetector};
use crate::publish::JsonlPublisher;
use crate::stop::StopSignal;
use revguard_sqlite::SqliteStore;

/// The settings key under which a generated development secret is kept.
pub const DEV_SECRET_KEY: &str = "dev_webhook_secret";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Secrets from the environment; `None` uses (or creates) the stored dev secret.
    pub secrets: Option<SecretSet>,
    pub tolerance_secs: i64,
    pub max_body_bytes: usize,
    pub event_ttl_secs: i64,
    pub modes: ModeFilter,
    pub policy: BillingPolicy,
    /// Where notifications are appended as JSON lines (besides the log).
    pub notifications_file: PathBuf,
    /// Bearer token for the operator API; required for it to answer off loopback.
    pub api_token: Option<String>,
    /// Where alert transitions are appended as JSON lines (besides the log).
    pub alerts_file: PathBuf,
    /// Seconds between detector runs (0: never).
    pub detect_interval_secs: u64,
    pub detect: revguard_core::domain::detector::DetectConfig,
    /// Where alerts, notifications and digests are delivered besides the files: chat
    /// webhooks (Slack, Teams), PagerDuty, email.
    pub destinations: Destinations,
    /// A dashboard link shown in chat messages.
    pub dashboard_url: Option<String>,
    /// Stripe's API, for the detector's completeness audit.
    pub stripe: Option<revguard_stripe::StripeClient>,
    /// The URL Stripe delivers to, for the endpoint audit (with `stripe`).
    pub webhook_url: Option<String>,
    /// Which digests are made on schedule (none: off).
    pub digests: Vec<revguard_core::usecases::digest::Period>,
    /// Where digests are appended as JSON lines (besides the log).
    pub digests_file: PathBuf,
    /// Re-query subscriptions after important transitions (needs `stripe`).
    pub requery: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the notifications file {path}")]
    Notifications {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or store the development secret")]
    Secret(#[source] revguard_core::StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("cannot start the worker's thread")]
    Worker(#[source] std::io::Error),
}

/// Returns the configured secrets, or the stored dev secret (created on first use) and
/// whether it is one.
pub async fn secrets_or_dev(
    store: &SqliteStore,
    configured: Option<SecretSet>,
) -> Result<(SecretSet, Option<WebhookSecret>), ServeError> {
    if let Some(set) = configured {
        return Ok((set, None));
    }
    let fresh = format!("whsec_dev_{}", random_hex(24));
    let stored = store
        .setting_or_insert(DEV_SECRET_KEY, &fresh)
        .await
        .map_err(ServeError::Secret)?;
    let secret = WebhookSecret::new(stored)
        .map_err(|e| ServeError::Secret(revguard_core::StoreError::Corrupt(e.to_string())))?;
    Ok((SecretSet::single(secret.clone()), Some(secret)))
}

pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish and every
/// accepted write reach the disk before returning.
pub async fn serve(
    store: SqliteStore,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (secrets, dev_secret) = secrets_or_dev(&store, options.secrets.clone()).await?;
    let config = IngestConfig {
        secrets,
        tolerance_secs: options.tolerance_secs,
        max_body_bytes: options.max_body_bytes,
        event_ttl_secs: options.event_ttl_secs,
        modes: options.modes,
        keep_payloads: true,
    };
    let app = Arc::new(App::new(
        Ingress::new(store.clone(), store.clone(), config),
        system_clock(),
    ));
    let deliveries = options
        .destinations
        .outbox(&store, options.dashboard_url.clone());
    let notifier = NotificationPublisher {
        file: JsonlPublisher::to_file("notification", &options.notifications_file).map_err(
            |source| ServeError::Notifications {
                path: options.notifications_file.clone(),
                source,
            },
        )?,
        deliveries: deliveries.clone(),
    };
    let worker = embedded_worker(&store, &options, notifier.clone())?;
    let detector = embedded_detector(&store, &options, &deliveries, notifier)?;
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.addr,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;

    // What a person starting the server needs, on stdout (not the log): where to send
    // webhooks and, for a dev secret, which secret signs them.
    println!(
        "revguard listening on http://{local}/webhook (database {})",
        store.path().display()
    );
    if let Some(secret) = &dev_secret {
        println!(
            "No STRIPE_WEBHOOK_SECRET set: using the development secret kept in the database:\n  {}",
            secret.expose()
        );
    }

    let routes = routes(app, &store, &options, local);
    println!(
        "notifications go to {}, alerts to {}",
        options.notifications_file.display(),
        options.alerts_file.display()
    );

    let stop = StopSignal::default();
    let purger = tokio::spawn(purge_expired_hourly(store.clone()));
    let digesting = start_digests(&store, &options, &deliveries)?;
    let delivery_task = deliveries.map(|outbox| {
        println!("{}", options.destinations.described());
        tokio::spawn(crate::chat::deliver(
            store.clone(),
            options.destinations.delivery(),
            outbox.wake_signal(),
            stop.clone(),
        ))
    });
    let detecting = (options.detect_interval_secs > 0).then(|| {
        tokio::spawn(detect_every(
            detector,
            Duration::from_secs(options.detect_interval_secs),
        ))
    });
    let worker_thread = consumer::run_on_own_thread(store.clone(), worker, stop.clone())
        .map_err(ServeError::Worker)?;
    let result = axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve);
    purger.abort();
    if let Some(d) = digesting {
        d.abort();
    }
    if let Some(d) = detecting {
        d.abort();
    }
    stop.stop();
    let _ = tokio::task::spawn_blocking(move || worker_thread.join()).await;
    if let Some(task) = delivery_task {
        let _ = task.await;
    }
    // Every response already sent was preceded by its commit; closing drains any write
    // still in the writer's hands.
    store.close();
    tracing::info!("stopped");
    result
}

/// The worker, with re-query through Stripe when asked for and a key is given.
fn embedded_worker(
    store: &SqliteStore,
    options: &ServeOptions,
    notifier: NotificationPublisher,
) -> Result<consumer::EmbeddedWorker, ServeError> {
    let mut worker = consumer::worker(store, options.policy.clone(), notifier);
    match (options.requery, options.stripe.clone()) {
        (true, Some(api)) => {
            // The worker runs on a runtime of its own (consumer::run_on_own_thread).
            let api = api
                .with_own_connections()
                .map_err(|e| ServeError::Worker(std::io::Error::other(e.to_string())))?;
            worker.requery = Some(Box::new(revguard_core::usecases::recovery::StripeRequery {
                api,
                ingress: crate::recover::fetched_ingress(store),
            }))
        }
        (true, None) => {
            tracing::warn!("--requery needs a Stripe key (--stripe-key): re-query is off")
        }
        _ => {}
    }
    Ok(worker)
}

/// The detector: alerts to the alerts file and the destinations, win-backs to the team,
/// and the completeness audit with a Stripe key.
fn embedded_detector(
    store: &SqliteStore,
    options: &ServeOptions,
    deliveries: &Option<DeliveryOutbox>,
    notifier: NotificationPublisher,
) -> Result<EmbeddedDetector, ServeError> {
    let sink = JsonlPublisher::to_file("alert", &options.alerts_file).map_err(|source| {
        ServeError::Notifications {
            path: options.alerts_file.clone(),
            source,
        }
    })?;
    let mut detector = detector::detector(
        store,
        options.detect.clone(),
        AlertPublisher {
            file: sink,
            deliveries: deliveries.clone(),
        },
        notifier,
    );
    if let Some(api) = options.stripe.clone() {
        detector.audit = Some(revguard_core::usecases::recovery::StripeAudit {
            api,
            log: store.clone(),
            endpoint_url: options.webhook_url.clone(),
            // No EventBridge door: the embedded revguard has only the webhook.
            eventbridge_source: None,
        });
    }
    Ok(detector)
}

/// The webhook route, and the operator API and dashboard where they may be served:
/// on loopback, or with a token.
fn routes(
    app: Arc<App<SqliteStore, SqliteStore>>,
    store: &SqliteStore,
    options: &ServeOptions,
    local: SocketAddr,
) -> axum::Router {
    let mut routes = router(app.clone());
    if options.api_token.is_some() || local.ip().is_loopback() {
        let api_state = ApiState {
            store: store.clone(),
            policy: options.policy.clone(),
            token: options.api_token.clone(),
            clock: system_clock(),
            rejections: Some({
                let app = app.clone();
                Arc::new(move || {
                    app.rejections
                        .snapshot()
                        .into_iter()
                        .map(|(code, n)| (code.to_owned(), n))
                        .collect()
                })
            }),
        };
        routes = routes.merge(api::router(Arc::new(api_state)));
    } else {
        tracing::warn!("the operator API is off: it holds billing data and needs REVGUARD_API_TOKEN off loopback");
    }
    routes
}

/// The digests' schedule, when any period is asked for.
fn start_digests(
    store: &SqliteStore,
    options: &ServeOptions,
    deliveries: &Option<DeliveryOutbox>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    Ok(if options.digests.is_empty() {
        None
    } else {
        let file = JsonlPublisher::to_file("digest", &options.digests_file).map_err(|source| {
            ServeError::Notifications {
                path: options.digests_file.clone(),
                source,
            }
        })?;
        println!("digests go to {}", options.digests_file.display());
        Some(tokio::spawn(crate::digests::every_ten_minutes(
            store.clone(),
            crate::digests::DigestSchedule {
                periods: options.digests.clone(),
                publisher: crate::digests::DigestPublisher {
                    file,
                    deliveries: deliveries.clone(),
                },
                policy: options.policy.clone(),
            },
        )))
    })
}

async fn detect_every(detector: EmbeddedDetector, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match detector.run(revguard_core::domain::time::unix_now()).await {
            Ok(run) => {
                if !run.transitions.is_empty() {
                    tracing::info!(
                        transitions = run.transitions.len(),
                        findings = run.findings.len(),
                        "detector run"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "detector run failed"),
        }
    }
}

async fn purge_expired_hourly(store: SqliteStore) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match store
            .purge_expired(revguard_core::domain::time::unix_now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired event-log entries removed"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired events"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
