//! What revguard knows, as pure functions of their inputs: no port, no I/O.

pub mod account;
pub mod audience;
pub mod billing;
pub mod chat;
pub mod detector;
pub mod error;
pub mod event;
pub mod eventbridge;
pub mod finding;
pub mod message;
pub mod metric;
pub mod money;
pub mod pager;
pub mod signature;
pub mod time;
