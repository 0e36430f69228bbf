//! revguard's test support, kept out of the domain crate: in-memory adapters of core's
//! ports (with switchable outages), the port contract suites that every backend runs,
//! the Stripe fixtures in `events/` and the traffic built from them, and the simulation
//! (seeded synthetic traffic with injected incidents) behind `revguard demo` and
//! scripts/detect-eval. Used by tests, the load generator and the demo; never by a
//! Lambda build.

pub mod contract;
pub mod fixtures;
pub mod memory;
pub mod simulation;
