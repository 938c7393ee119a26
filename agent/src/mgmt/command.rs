//! Management commands as data: what each one means, whom it concerns, and whether
//! a copy that arrives is fresh enough to apply. Pure; the actor in `mgmt.rs` does
//! the I/O.

use crate::names::{Channel, NodeId};
use serde::{Deserialize, Serialize};

/// What to purge from a node's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeWhat {
    /// Messages not yet delivered (queued, sent and unacknowledged, unrouted): dropped
    /// on purpose, counted as purged; their receipts say `purged`.
    Queued,
    /// The records of delivered messages (statuses and payloads kept for
    /// `delivered_message_retention`): their receipts are gone.
    Sent,
    /// Both.
    All,
}

/// Which nodes a purge concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Only the node that received the API call.
    SelfOnly,
    /// Every node.
    All,
    /// One node.
    Node(NodeId),
}

/// A management command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Remove `node` from every channel, on every agent; it must join again.
    Kick {
        /// The node.
        node: NodeId,
    },
    /// Remove `node` from `channel`, on every agent.
    KickChannel {
        /// The node.
        node: NodeId,
        /// The channel.
        channel: Channel,
    },
    /// Purge outboxes.
    Purge {
        /// What.
        what: PurgeWhat,
        /// Where.
        scope: Scope,
    },
}

/// A command as it travels: signed like every frame, identified for idempotence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// ULID chosen by the issuer; a node applies an id once.
    pub id: String,
    /// The node whose API received the command.
    pub issuer: NodeId,
    /// Issuer's wall clock (ms) when issued.
    pub issued_at: i64,
    /// The command.
    pub command: Command,
}

/// A node's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The command's id.
    pub id: String,
    /// The answering node.
    pub node: NodeId,
    /// Whether it applied the command (now or before: a repeated id is applied once).
    pub applied: bool,
    /// What it did, in words (or why not).
    pub detail: String,
}

/// Commands older than this are refused (a replay); within it, the id makes a copy
/// harmless. Generous, for skewed clocks.
pub const MAX_AGE_MS: i64 = 10 * 60 * 1000;

impl Command {
    /// Whether `me` has something to apply (every node applies a kick: each keeps
    /// its own view of the kicked node; a purge only where its scope says).
    pub fn concerns(&self, me: &NodeId, issuer: &NodeId) -> bool {
        match self {
            Command::Kick { .. } | Command::KickChannel { .. } => true,
            Command::Purge { scope, .. } => match scope {
                Scope::SelfOnly => me == issuer,
                Scope::All => true,
                Scope::Node(n) => n == me,
            },
        }
    }

    /// Whether the command needs the bus (false: only the issuer applies it).
    pub fn travels(&self) -> bool {
        !matches!(
            self,
            Command::Purge {
                scope: Scope::SelfOnly,
                ..
            }
        )
    }

    /// The node whose answer is expected when only one is (a purge of one node).
    pub fn single_target(&self) -> Option<&NodeId> {
        match self {
            Command::Purge {
                scope: Scope::Node(n),
                ..
            } => Some(n),
            _ => None,
        }
    }

    /// A short name for metrics and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Kick { .. } => "kick",
            Command::KickChannel { .. } => "kick_channel",
            Command::Purge { .. } => "purge",
        }
    }
}

/// Why a received command is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Issued longer ago than [`MAX_AGE_MS`] (or far in the future): a replay or a
    /// badly wrong clock.
    Stale,
}

/// Whether a command issued at `issued_at` may be applied at `now` (both wall ms).
pub fn fresh(issued_at: i64, now: i64) -> Result<(), Refusal> {
    if (now - issued_at).abs() > MAX_AGE_MS {
        return Err(Refusal::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s.to_string()).unwrap()
    }

    #[test]
    fn given_each_command_when_asked_whom_it_concerns_then_scope_decides() {
        let (a, b, c) = (n("a"), n("b"), n("c"));
        let kick = Command::Kick { node: b.clone() };
        assert!(kick.concerns(&a, &a) && kick.concerns(&b, &a) && kick.concerns(&c, &a));
        assert!(kick.travels());
        let own = Command::Purge {
            what: PurgeWhat::Queued,
            scope: Scope::SelfOnly,
        };
        assert!(own.concerns(&a, &a) && !own.concerns(&b, &a));
        assert!(!own.travels());
        let one = Command::Purge {
            what: PurgeWhat::All,
            scope: Scope::Node(c.clone()),
        };
        assert!(one.concerns(&c, &a) && !one.concerns(&a, &a) && !one.concerns(&b, &a));
        assert_eq!(one.single_target(), Some(&c));
        let all = Command::Purge {
            what: PurgeWhat::Sent,
            scope: Scope::All,
        };
        assert!(all.concerns(&a, &a) && all.concerns(&b, &a));
        assert_eq!(all.single_target(), None);
    }

    #[test]
    fn given_a_command_when_old_or_from_the_future_then_refused_as_stale() {
        assert_eq!(fresh(1_000_000, 1_000_000 + MAX_AGE_MS), Ok(()));
        assert_eq!(
            fresh(1_000_000, 1_000_001 + MAX_AGE_MS),
            Err(Refusal::Stale)
        );
        assert_eq!(
            fresh(1_000_001 + MAX_AGE_MS, 1_000_000),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn given_a_command_when_serialized_then_it_round_trips() {
        let c = Issued {
            id: "01ABC".into(),
            issuer: n("a"),
            issued_at: 5,
            command: Command::KickChannel {
                node: n("b"),
                channel: Channel::new("chat".to_string()).unwrap(),
            },
        };
        let bytes = rmp_serde::to_vec(&c).unwrap();
        assert_eq!(rmp_serde::from_slice::<Issued>(&bytes).unwrap(), c);
    }
}
