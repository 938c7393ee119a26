//! # rmds-scenarios
//!
//! Everything that proves rmds by running it for real:
//!
//! ```text
//! harness/   real nats-server and rmds-agent processes on loopback ports, with faults
//! bench      the benchmarks behind rmds-bench and jetstream-bench
//! checker    delivery invariants: lost, duplicated, out of order, per stream
//! chaos      a seeded nemesis (kill -9, SIGSTOP, NATS faults, iptables in a private
//!            netns, full stores, skewed clocks, replayed and forged frames)
//! ```
//!
//! Nothing here mocks NATS or SQLite: the harness starts the real binaries with
//! temporary data directories and kills them on drop.

pub mod bench;
pub mod catalogue;
pub mod chaos;
pub mod checker;
pub mod compose;
pub mod harness;
pub mod report;
pub mod scale;
pub mod scenario;
