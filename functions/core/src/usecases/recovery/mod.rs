//! Recovery through Stripe's API, for what webhooks alone lose: a backfill of missed
//! events, and a reconciliation of subscriptions with Stripe's current objects.
//!
//! Both feed what they fetch through the ingress use case ([`Ingress::ingest_fetched`](crate::usecases::ingest::Ingress::ingest_fetched)),
//! so the worker applies it exactly as it applies a delivery: an event already in the
//! event log is a duplicate, and a reconciliation snapshot is ordered after everything
//! revguard holds, never before.
//!
//! One file a use case: `backfill`, `reconcile`, `replay`, `requery` and `audit` (the
//! completeness audit); the Stripe API they read is a port (`crate::ports::StripeApi`).

mod audit;
mod backfill;
mod fetch;
mod reconcile;
mod replay;
mod requery;
#[cfg(test)]
mod tests;

pub use audit::*;
pub use backfill::*;
pub use fetch::*;
pub use reconcile::*;
pub use replay::*;
pub use requery::*;
