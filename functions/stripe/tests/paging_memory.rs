//! Backfill and reconciliation of a busy account hold a page at a time, not the account:
//! 100,000 events over three days and 50,000 subscriptions, served by a Stripe double
//! that makes each page when asked, go through the real client and core's use cases
//! while a counting allocator keeps the heap's high-water mark. The cursor moves after
//! every hour of events, so a run that stops resumes where it got to.
//!
//! Its own test binary: the allocator counts the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::RawQuery;
use axum::routing::get;
use axum::Router;
use revguard_core::domain::billing::BillingPolicy;
use revguard_core::ports::{BackfillCursor, EventsQuery};
use revguard_core::ports::{
    EventLog, EventRecord, InsertOutcome, Queue, QueueError, ReadModel, StoreError,
};
use revguard_core::usecases::recovery::{
    backfill_from_cursor, fetched_ingress, HANDLED_EVENT_TYPES,
};
use revguard_core::QueueMessage;
use revguard_stripe::{ApiKey, StripeClient};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap's high-water mark above what was allocated when `f` started, in bytes.
async fn peak_heap_of<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f.await;
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

const EVENTS: usize = 100_000;
const SUBSCRIPTIONS: usize = 50_000;
const T0: i64 = 1_780_000_000;
const SPAN: i64 = 3 * 86_400;
const KEY: &str = "sk_test_paging_memory";

fn created_of(i: usize) -> i64 {
    T0 + (i as i64 * SPAN) / EVENTS as i64
}

/// A Stripe-sized `invoice.paid` (about 2 KB), made when listed.
fn event(i: usize) -> String {
    let lines: String = (0..6)
        .map(|l| format!(r#"{{"id":"il_{i}_{l}","object":"line_item","amount":1900,"currency":"usd","description":"1 × Team seat (at $19.00 / month)","period":{{"end":1782592000,"start":1780000000}},"price":{{"id":"price_team","unit_amount":1900,"currency":"usd"}},"quantity":1}}"#))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"{{"id":"evt_{i:08}","object":"event","api_version":"2024-06-20","type":"invoice.paid","created":{created},"livemode":false,"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"data":{{"object":{{"id":"in_{i:08}","object":"invoice","customer":"cus_{c:06}","subscription":"sub_{c:06}","amount_due":11400,"amount_paid":11400,"currency":"usd","status":"paid","paid":true,"attempt_count":1,"billing_reason":"subscription_cycle","lines":{{"object":"list","data":[{lines}],"has_more":false}}}}}}}}"#,
        created = created_of(i),
        c = i % SUBSCRIPTIONS,
    )
}

fn subscription(i: usize) -> String {
    format!(
        r#"{{"id":"sub_{i:06}","object":"subscription","customer":"cus_{i:06}","status":"active","livemode":false,"currency":"usd","created":{T0},"current_period_start":{T0},"current_period_end":{end},"cancel_at_period_end":false,"items":{{"object":"list","data":[{{"id":"si_{i:06}","object":"subscription_item","quantity":3,"current_period_end":{end},"price":{{"id":"price_team","object":"price","unit_amount":1900,"currency":"usd","recurring":{{"interval":"month","interval_count":1}}}}}}],"has_more":false}}}}"#,
        end = T0 + 30 * 86_400
    )
}

/// The first event created at or after `t` (a binary search: `created_of` rises).
fn first_at_or_after(t: i64) -> usize {
    let (mut lo, mut hi) = (0, EVENTS);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if created_of(mid) < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn params(q: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in q.split('&').filter_map(|p| p.split_once('=')) {
        let key = pair.0.replace("%5B", "[").replace("%5D", "]");
        out.entry(key).or_default().push(pair.1.to_owned());
    }
    out
}

/// A page newest first: the indices `[lo, hi)` listed from the top, after `starting_after`.
fn page(
    lo: usize,
    hi: usize,
    starting_after: Option<usize>,
    limit: usize,
    render: fn(usize) -> String,
) -> String {
    let top = starting_after.map_or(hi, |after| after.min(hi));
    let bottom = top.saturating_sub(limit).max(lo);
    let data: Vec<String> = (bottom..top).rev().map(render).collect();
    format!(
        r#"{{"object":"list","data":[{}],"has_more":{}}}"#,
        data.join(","),
        bottom > lo
    )
}

/// Stripe, for these two lists: events filtered by `created` and `types[]` as Stripe
/// filters them, subscriptions all; each page made when asked.
async fn stripe_double(requests: Arc<AtomicUsize>) -> String {
    let events_requests = requests.clone();
    let app = Router::new()
        .route(
            "/v1/events",
            get(move |RawQuery(q): RawQuery| {
                let requests = events_requests.clone();
                async move {
                    requests.fetch_add(1, Ordering::Relaxed);
                    let p = params(&q.unwrap_or_default());
                    let one = |k: &str| p.get(k).and_then(|v| v.first()).cloned();
                    let gte: i64 = one("created[gte]").map_or(i64::MIN, |v| v.parse().unwrap());
                    let lt: i64 = one("created[lt]").map_or(i64::MAX, |v| v.parse().unwrap());
                    let limit: usize = one("limit").map_or(10, |v| v.parse().unwrap());
                    let typed = p
                        .get("types[]")
                        .is_none_or(|t| t.iter().any(|t| t == "invoice.paid"));
                    let first = first_at_or_after(gte);
                    let end = first_at_or_after(lt);
                    let (lo, hi) = if typed { (first, end) } else { (0, 0) };
                    let after = one("starting_after")
                        .map(|id| id.trim_start_matches("evt_").parse::<usize>().unwrap());
                    page(lo, hi, after, limit, event)
                }
            }),
        )
        .route(
            "/v1/subscriptions",
            get(move |RawQuery(q): RawQuery| {
                let requests = requests.clone();
                async move {
                    requests.fetch_add(1, Ordering::Relaxed);
                    let p = params(&q.unwrap_or_default());
                    let one = |k: &str| p.get(k).and_then(|v| v.first()).cloned();
                    let limit: usize = one("limit").map_or(10, |v| v.parse().unwrap());
                    let after = one("starting_after")
                        .map(|id| id.trim_start_matches("sub_").parse::<usize>().unwrap());
                    page(0, SUBSCRIPTIONS, after, limit, subscription)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// An event log and queue that count and keep nothing: the store is not what is measured.
#[derive(Default)]
struct Counted {
    inserted: AtomicUsize,
    sent: AtomicUsize,
}

impl EventLog for &Counted {
    async fn insert_if_absent(&self, _record: &EventRecord) -> Result<InsertOutcome, StoreError> {
        self.inserted.fetch_add(1, Ordering::Relaxed);
        Ok(InsertOutcome::Inserted)
    }
    async fn mark_queued(&self, _event_id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn stored_payload(&self, _event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
}

impl Queue for &Counted {
    fn max_message_bytes(&self) -> usize {
        256 * 1024
    }
    async fn send(&self, _message: &QueueMessage) -> Result<(), QueueError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Every position the cursor was moved to.
#[derive(Default)]
struct Cursor(Mutex<Vec<i64>>);

impl BackfillCursor for Cursor {
    async fn cursor(
        &self,
        _account: &revguard_core::ports::Account,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self.0.lock().unwrap().last().copied())
    }
    async fn advance(
        &self,
        _account: &revguard_core::ports::Account,
        to: i64,
    ) -> Result<(), StoreError> {
        let mut moves = self.0.lock().unwrap();
        if moves.last().is_none_or(|at| to > *at) {
            moves.push(to);
        }
        Ok(())
    }
}

/// A read model of a store that holds no subscription yet (a first reconciliation).
struct HoldsNothing;

impl ReadModel for HoldsNothing {
    async fn customer_view(
        &self,
        _account: &revguard_core::ports::Account,
        _id: &str,
        _now: i64,
        _policy: &BillingPolicy,
    ) -> Result<revguard_core::domain::billing::views::CustomerView, StoreError> {
        Err(StoreError::unavailable("not read by a reconciliation"))
    }
    async fn subscription(
        &self,
        _account: &revguard_core::ports::Account,
        _id: &str,
    ) -> Result<Option<revguard_core::domain::billing::SubscriptionState>, StoreError> {
        Ok(None)
    }
    async fn subscription_ids(
        &self,
    ) -> Result<Vec<(revguard_core::ports::Account, String)>, StoreError> {
        Ok(Vec::new())
    }
    async fn dunning_cases(
        &self,
        _account: &revguard_core::ports::Account,
        _status: Option<&str>,
        _policy: &BillingPolicy,
    ) -> Result<Vec<revguard_core::domain::billing::views::CaseView>, StoreError> {
        Ok(Vec::new())
    }
    async fn metrics(
        &self,
        _scope: &revguard_core::ports::Scope,
        _from: i64,
        _to: i64,
    ) -> Result<Vec<revguard_core::domain::billing::views::HourCounters>, StoreError> {
        Err(StoreError::unavailable("not read by a reconciliation"))
    }
    async fn recent_alerts(
        &self,
        _scope: Option<&revguard_core::ports::Scope>,
        _now: i64,
        _recent_secs: i64,
    ) -> Result<Vec<revguard_core::domain::detector::alerts::AlertState>, StoreError> {
        Err(StoreError::unavailable("not read by a reconciliation"))
    }
    async fn accounts(
        &self,
        _now: i64,
    ) -> Result<Vec<revguard_core::domain::billing::views::AccountSummary>, StoreError> {
        Err(StoreError::unavailable("not read by a reconciliation"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_account_is_backfilled_and_reconciled_a_page_at_a_time() {
    let requests = Arc::new(AtomicUsize::new(0));
    let base = stripe_double(requests.clone()).await;
    let api = StripeClient::new(&base, ApiKey::new(KEY).unwrap()).unwrap();
    let counted = Counted::default();
    let ingress = fetched_ingress(&counted, &counted);
    let cursor = Cursor::default();
    let query = EventsQuery {
        since: T0,
        until: None,
        undelivered_only: false,
        types: HANDLED_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
    };
    let now = T0 + SPAN;

    // Three days of events, stopped after a day's windows as a function out of time is.
    let keep_going = || cursor.0.lock().unwrap().len() < 24;
    let (first, first_peak) = peak_heap_of(backfill_from_cursor(
        &api,
        &ingress,
        &cursor,
        &query,
        Some(T0),
        now,
        &keep_going,
    ))
    .await;
    let (_, first) = first.unwrap();
    assert!(!first.complete, "{first:?}");
    assert_eq!(first.windows, 24, "{first:?}");
    let after_a_day = *cursor.0.lock().unwrap().last().unwrap();
    assert!(after_a_day >= T0 + 86_400 - 60, "{after_a_day}");

    // The next run resumes from the cursor and reaches now.
    let (rest, rest_peak) = peak_heap_of(backfill_from_cursor(
        &api,
        &ingress,
        &cursor,
        &query,
        None,
        now,
        &|| true,
    ))
    .await;
    let (since, rest) = rest.unwrap();
    assert!(rest.complete, "{rest:?}");
    assert_eq!(
        since,
        after_a_day - revguard_core::usecases::recovery::CURSOR_OVERLAP_SECS
    );
    // Every event once, and those of the overlap (from `since` to the cursor) twice.
    let overlap = first_at_or_after(after_a_day + 1) - first_at_or_after(since);
    let listed = first.listed + rest.listed;
    assert_eq!(listed, EVENTS + overlap);
    assert_eq!(counted.sent.load(Ordering::SeqCst), listed);
    let moves = cursor.0.lock().unwrap().clone();
    assert!(
        moves.len() >= 72,
        "the cursor moved after each hour: {}",
        moves.len()
    );
    assert_eq!(*moves.last().unwrap(), created_of(EVENTS - 1));

    // Every subscription compared, none held beyond its page (revguard holds none here:
    // each is missing, reported by id).
    let read = HoldsNothing;
    let (report, reconcile_peak) = peak_heap_of(revguard_core::usecases::recovery::reconcile(
        &api,
        &read,
        None::<&revguard_core::Ingress<&Counted, &Counted>>,
        &BillingPolicy::default(),
        &revguard_core::usecases::recovery::Holdings {
            account: revguard_core::ports::Account::PLATFORM,
            subscriptions: Vec::new(),
        },
        now,
    ))
    .await;
    let report = report.unwrap();
    assert_eq!(report.checked, SUBSCRIPTIONS);
    assert_eq!(report.missing.len(), SUBSCRIPTIONS);

    let mb = |b: usize| b as f64 / 1_048_576.0;
    println!(
        "backfill of {EVENTS} events (~2 KB each, {} requests): peak heap {:.1} MB for the first day's run, {:.1} MB for the rest; reconcile of {SUBSCRIPTIONS} subscriptions: {:.1} MB",
        requests.load(Ordering::SeqCst),
        mb(first_peak),
        mb(rest_peak),
        mb(reconcile_peak),
    );
    // Holding the account would take its size: ~200 MB of events, ~60 MB of subscriptions.
    assert!(
        mb(first_peak.max(rest_peak)) < 32.0,
        "{:.1} MB",
        mb(first_peak.max(rest_peak))
    );
    assert!(mb(reconcile_peak) < 32.0, "{:.1} MB", mb(reconcile_peak));
}
