//! What the group state machine plans and hands back: leases, take plans, commits
//! and fresh reads (the machine itself: `state.rs`).

use super::Leased;
use crate::store::groups::GroupDeadRow;
use std::collections::BTreeSet;
use std::time::Instant;

/// One handed-out entry.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Message id.
    pub id: String,
    /// The consumer's lease runs out.
    pub until: Instant,
    /// Eligible for redelivery.
    pub retry_at: Instant,
    /// Times handed out, this lease included.
    pub deliveries: u32,
    /// The last error a consumer reported with a nack.
    pub last_error: Option<String>,
}

/// What the actor reads for a pull, planned by [`GroupState::plan_take`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakePlan {
    /// Due leases delivered `max_deliveries` times: dead-letter them first.
    pub dead: Vec<u64>,
    /// Offsets to read again: due redeliveries (oldest first), then redriven.
    pub reread: Vec<u64>,
    /// Most entries the pull hands out (rereads included; the rest are fresh).
    pub room: usize,
}

/// What a settlement commits, worked out before the store has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    /// Floor before.
    pub old_floor: u64,
    /// Floor after.
    pub floor: u64,
    /// Acknowledged offsets above the new floor.
    pub acked: BTreeSet<u64>,
    /// Offsets above the new floor acknowledged by this commit.
    pub new_above: Vec<u64>,
    /// Redriven dead letters settled again.
    pub redriven: Vec<u64>,
    /// Dead letters to record.
    pub dead: Vec<GroupDeadRow>,
    /// Offsets consumed (acks with receipts).
    pub consumed: Vec<u64>,
    /// The settled ranges.
    pub settled: Vec<(u64, u64)>,
}

impl Commit {
    /// Nothing durable changes.
    pub fn is_noop(&self) -> bool {
        self.floor == self.old_floor
            && self.new_above.is_empty()
            && self.dead.is_empty()
            && self.redriven.is_empty()
            && self.consumed.is_empty()
    }
}

/// What a read of fresh log entries gave.
#[derive(Debug, Default)]
pub struct Fresh {
    /// Leased now.
    pub leased: Vec<Leased>,
    /// Never to be delivered: expired, or gone from the log.
    pub skipped: Vec<(u64, u64)>,
    /// Entries already delivered `max_deliveries` times (before a restart).
    pub dead: Vec<GroupDeadRow>,
    /// The room ran out before the end of the read.
    pub full: bool,
}

impl Fresh {
    /// Adds what another read gave.
    pub fn absorb(&mut self, other: Fresh) {
        self.leased.extend(other.leased);
        self.skipped.extend(other.skipped);
        self.dead.extend(other.dead);
        self.full |= other.full;
    }
}
