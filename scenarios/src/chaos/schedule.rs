//! The nemesis schedule: a seeded RNG turns (seed, duration, options) into the list of
//! faults, each with its start and hold time, before the run starts. The same seed and
//! options always give the same schedule, so a failing run is replayed from its seed.
//!
//! Pure: no I/O, no clock. Carrying a fault out is `faults.rs`'s job.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::fmt;

/// One kind of fault, with its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// `kill -9` the agent, keep it down for the hold time, start it again.
    KillRestart {
        /// Node id.
        node: String,
    },
    /// SIGSTOP the agent for the hold time, then SIGCONT.
    Pause {
        /// Node id.
        node: String,
    },
    /// SIGTERM the agent (it says bye) and start it again at once.
    CleanRestart {
        /// Node id.
        node: String,
    },
    /// `kill -9` nats-server, keep it down for the hold time, start it again.
    NatsKill,
    /// SIGSTOP nats-server for the hold time.
    NatsPause,
    /// Cut one agent's link to NATS (its TCP proxy drops every connection).
    Partition {
        /// Node id.
        node: String,
    },
    /// iptables: every packet to the NATS port silently dropped (netns only).
    Blackhole,
    /// iptables: this share (per mille) of packets to the NATS port dropped (netns only).
    PacketLoss {
        /// Drop probability in 1/1000.
        permille: u32,
    },
    /// Restart the receiver with `store.max_size_mb = 1` for the hold time, then with
    /// no limit again.
    StoreFull {
        /// Node id.
        node: String,
    },
    /// Restart the agent under libfaketime with its clock shifted, then normally again.
    ClockSkew {
        /// Node id.
        node: String,
        /// Clock offset in seconds (negative: behind).
        offset_s: i64,
    },
    /// Republish frames captured earlier on `rmds.>` (spread over the hold time).
    Replay {
        /// Frames replayed.
        frames: u32,
    },
    /// Publish random bytes, truncated and bit-flipped copies of captured frames.
    Forge {
        /// Frames forged.
        frames: u32,
    },
}

impl Fault {
    /// Short name for the per-fault counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillRestart { .. } => "kill-9",
            Fault::Pause { .. } => "sigstop",
            Fault::CleanRestart { .. } => "clean-restart",
            Fault::NatsKill => "nats-kill",
            Fault::NatsPause => "nats-sigstop",
            Fault::Partition { .. } => "partition",
            Fault::Blackhole => "blackhole",
            Fault::PacketLoss { .. } => "packet-loss",
            Fault::StoreFull { .. } => "store-full",
            Fault::ClockSkew { .. } => "clock-skew",
            Fault::Replay { .. } => "replay",
            Fault::Forge { .. } => "forge",
        }
    }

    /// Whether it needs iptables (and so a private network namespace).
    pub fn needs_netns(&self) -> bool {
        matches!(self, Fault::Blackhole | Fault::PacketLoss { .. })
    }

    /// The agent it targets, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Fault::KillRestart { node }
            | Fault::Pause { node }
            | Fault::CleanRestart { node }
            | Fault::Partition { node }
            | Fault::StoreFull { node }
            | Fault::ClockSkew { node, .. } => Some(node),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::PacketLoss { permille } => {
                write!(
                    f,
                    "packet-loss {}% on the NATS port",
                    *permille as f64 / 10.0
                )
            }
            Fault::ClockSkew { node, offset_s } => {
                write!(f, "clock-skew {node} {offset_s:+}s")
            }
            Fault::Replay { frames } => write!(f, "replay {frames} captured frames"),
            Fault::Forge { frames } => write!(f, "forge {frames} frames"),
            other => match other.node() {
                Some(n) => write!(f, "{} {n}", other.kind()),
                None => write!(f, "{}", other.kind()),
            },
        }
    }
}

/// A fault at its place in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Start, from the beginning of the fault phase (ms).
    pub at_ms: u64,
    /// How long the fault lasts before it is healed (ms).
    pub hold_ms: u64,
    /// The fault.
    pub fault: Fault,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t={:>6.1}s  {:<40} for {:.1}s",
            self.at_ms as f64 / 1000.0,
            self.fault.to_string(),
            self.hold_ms as f64 / 1000.0
        )
    }
}

/// What the schedule may use.
#[derive(Debug, Clone)]
pub struct Options {
    /// Length of the fault phase (ms).
    pub duration_ms: u64,
    /// Every agent (targets of process faults).
    pub nodes: Vec<String>,
    /// Readers (targets of store-full).
    pub readers: Vec<String>,
    /// iptables faults allowed (inside the run's own network namespace).
    pub network: bool,
}

/// The faults of a run, in order, from `seed`.
pub fn schedule(seed: u64, opts: &Options) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut t = 2_000;
    while t < opts.duration_ms && !opts.nodes.is_empty() {
        let fault = pick(&mut rng, opts);
        let hold_ms = match fault {
            Fault::CleanRestart { .. } => 0,
            Fault::StoreFull { .. } => rng.random_range(8_000..20_000),
            Fault::ClockSkew { .. } => rng.random_range(4_000..10_000),
            Fault::Replay { .. } | Fault::Forge { .. } => rng.random_range(500..3_000),
            _ => rng.random_range(1_000..7_000),
        };
        let hold_ms = hold_ms.min(opts.duration_ms.saturating_sub(t).max(500));
        steps.push(Step {
            at_ms: t,
            hold_ms,
            fault,
        });
        t += hold_ms + rng.random_range(1_000..4_000);
    }
    steps
}

fn pick(rng: &mut StdRng, opts: &Options) -> Fault {
    let node = |rng: &mut StdRng, from: &[String]| from[rng.random_range(0..from.len())].clone();
    let readers = if opts.readers.is_empty() {
        &opts.nodes
    } else {
        &opts.readers
    };
    loop {
        let f = match rng.random_range(0..13u32) {
            0 | 1 => Fault::KillRestart {
                node: node(rng, &opts.nodes),
            },
            2 => Fault::Pause {
                node: node(rng, &opts.nodes),
            },
            3 => Fault::CleanRestart {
                node: node(rng, &opts.nodes),
            },
            4 => Fault::NatsKill,
            5 => Fault::NatsPause,
            6 => Fault::Partition {
                node: node(rng, &opts.nodes),
            },
            7 => Fault::Blackhole,
            8 => Fault::PacketLoss {
                permille: [100, 300, 500][rng.random_range(0..3)],
            },
            9 => Fault::StoreFull {
                node: node(rng, readers),
            },
            10 => Fault::ClockSkew {
                node: node(rng, &opts.nodes),
                offset_s: [-7_200, -600, 600, 7_200][rng.random_range(0..4)],
            },
            11 => Fault::Replay {
                frames: rng.random_range(20..300),
            },
            _ => Fault::Forge {
                frames: rng.random_range(20..300),
            },
        };
        if opts.network || !f.needs_netns() {
            return f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(network: bool) -> Options {
        Options {
            duration_ms: 120_000,
            nodes: vec!["alice".into(), "bob".into(), "lisa".into()],
            readers: vec!["bob".into(), "lisa".into()],
            network,
        }
    }

    #[test]
    fn given_the_same_seed_when_scheduled_twice_then_the_same_faults() {
        assert_eq!(schedule(42, &opts(true)), schedule(42, &opts(true)));
    }

    #[test]
    fn given_different_seeds_when_scheduled_then_the_schedules_differ() {
        assert_ne!(schedule(1, &opts(true)), schedule(2, &opts(true)));
    }

    #[test]
    fn given_a_schedule_then_faults_are_sequential_and_inside_the_phase() {
        let s = schedule(7, &opts(true));
        assert!(s.len() > 5, "{s:?}");
        for w in s.windows(2) {
            assert!(w[0].at_ms + w[0].hold_ms < w[1].at_ms, "{w:?}");
        }
        assert!(s.iter().all(|x| x.at_ms < 120_000));
    }

    #[test]
    fn given_no_network_namespace_then_no_iptables_fault() {
        for seed in 0..50 {
            assert!(schedule(seed, &opts(false))
                .iter()
                .all(|s| !s.fault.needs_netns()));
        }
    }

    #[test]
    fn given_store_full_then_it_targets_a_reader() {
        for seed in 0..50 {
            for s in schedule(seed, &opts(true)) {
                if let Fault::StoreFull { node } = &s.fault {
                    assert!(node == "bob" || node == "lisa", "{node}");
                }
            }
        }
    }
}
