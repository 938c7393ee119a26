//! # rmds-scenarios
//!
//! Everything that proves rmds by running it for real:
//!
//! ```text
//! harness/   real nats-server and rmds-agent processes on loopback ports, with faults
//! checker    delivery invariants: lost, duplicated, out of order, per stream
//! ```
//!
//! Nothing here mocks NATS or SQLite: the harness starts the real binaries with
//! temporary data directories and kills them on drop.

pub mod catalogue;
pub mod checker;
pub mod compose;
pub mod harness;
pub mod report;
pub mod scenario;
