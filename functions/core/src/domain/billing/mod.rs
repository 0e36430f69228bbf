//! The worker's domain: Stripe events turned into subscription state, dunning cases,
//! customer flags, hourly counters and notifications — decided by pure functions, so the
//! same history gives the same state on every backend and in any delivery order.

pub mod access;
pub mod counters;
pub mod customer;
pub mod decide;
pub mod drafts;
pub mod dunning;
pub mod effects;
pub mod event;
pub mod findings;
pub mod kind;
pub mod mrr;
pub mod objects;
pub mod policy;
pub mod stage;
pub mod state;
pub mod subscription;
pub mod views;

pub use counters::CounterUpdate;
pub use customer::CustomerState;
pub use decide::decide;
pub use dunning::DunningCase;
pub use effects::{Effects, Notification};
pub use event::{
    keys_of, marker_charge, marker_charge_of_payload, ApplyError, BillingEvent, Current, Keys,
    StateLookup,
};
pub use kind::{EventKind, Version};
pub use mrr::{mrr_movement, MrrMovement};
pub use policy::BillingPolicy;
pub use stage::Stage;
pub use subscription::SubscriptionState;

pub use crate::domain::time::hour_of;
