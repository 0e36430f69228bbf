//! The operator API and dashboard of `revguard serve`: revguard-http's operator router
//! over the SQLite store. Open on a loopback address; elsewhere every request needs the
//! configured bearer token.

pub use revguard_http::operator::{operator_router as router, OperatorApi};

/// The state the embedded server gives the operator router.
pub type ApiState = OperatorApi<revguard_sqlite::SqliteStore>;
