//! `rmds-bench` flags.

use super::jetstream::JsSync;
use super::latency::Mode;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// One benchmark phase; each runs on its own fresh processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// This machine's limits: one fsync, core NATS pub/sub rate.
    Limits,
    /// One HTTP request per message, end to end.
    Single,
    /// `--batch` messages per HTTP request, end to end.
    Batch,
    /// rmds batch vs JetStream, alternated `--compare` times; ratio of medians.
    Compare,
    /// Open-loop latency at `--latency-rates` (rmds pull, rmds WebSocket, JetStream).
    Latency,
    /// Closed-loop long-poll wake-up latency (the earlier latency phase).
    Wakeup,
    /// Backlog published during a NATS outage, then drained.
    Outage,
    /// `--memory-messages` queued with NATS down: peak RSS and database size.
    Memory,
    /// CPU of an idle agent with `--idle-peers` peers over `--idle-seconds`.
    Idle,
}

impl Phase {
    /// The name used in `--phases` and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Limits => "limits",
            Phase::Single => "single",
            Phase::Batch => "batch",
            Phase::Compare => "compare",
            Phase::Latency => "latency",
            Phase::Wakeup => "wakeup",
            Phase::Outage => "outage",
            Phase::Memory => "memory",
            Phase::Idle => "idle",
        }
    }
}

/// The phases run without `--phases` (everything but `wakeup`).
pub const DEFAULT_PHASES: &[Phase] = &[
    Phase::Limits,
    Phase::Single,
    Phase::Batch,
    Phase::Compare,
    Phase::Latency,
    Phase::Outage,
    Phase::Memory,
    Phase::Idle,
];

/// rmds benchmarks on this machine: real nats-server and agents on 127.0.0.1.
#[derive(Parser, Debug, Clone)]
#[command(
    about = "rmds benchmarks: throughput, JetStream comparison, open-loop latency, memory, limits, idle CPU",
    after_help = "Every phase starts its own nats-server and agents (production settings, \
                  synchronous as given). Prints numbers; asserts nothing about speed."
)]
pub struct Args {
    /// Phases to run, in this order (comma-separated). Default: limits, single, batch,
    /// compare, latency, outage, memory, idle.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub phases: Vec<Phase>,
    /// Write every number to this JSON file (rewritten after each phase).
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Messages per throughput run (single, batch, compare).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Payload size in bytes (every phase).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Concurrent HTTP publishers of the single phase (one request per message).
    #[arg(long, default_value_t = 64)]
    pub publishers: u64,
    /// Messages per HTTP request in the batch, compare, outage and memory phases.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Concurrent HTTP publishers of the batch, compare, outage and memory phases.
    #[arg(long, default_value_t = 64)]
    pub batch_publishers: u64,
    /// SQLite synchronous mode of every agent: full or normal.
    #[arg(long, default_value = "full")]
    pub synchronous: String,
    /// Keep the test harness's short timings (keepalive 250 ms, ack_timeout 1 s,
    /// reconnect_max_delay 200 ms, …) instead of the agent's production defaults, to
    /// compare with runs made before the bench used production timings.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub harness_timings: bool,
    /// Any agent setting for every agent, as `section.key=value` (TOML value; repeat
    /// the flag for more), e.g. `--agent-set delivery.window=1024`. Applied last.
    #[arg(long = "agent-set", value_name = "SECTION.KEY=VALUE")]
    pub agent_set: Vec<String>,
    /// Consumption receipts (groups.receipts) on every agent.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub receipts: bool,

    /// Alternations of the compare phase (rmds run, JetStream run) x N.
    #[arg(long, default_value_t = 3)]
    pub compare: usize,
    /// JetStream fsync: `default` (the server's interval) or `always` (fsync before
    /// every publish ack; needs nats-server 2.10+, refused otherwise).
    #[arg(long, value_enum, default_value_t = JsSync::Default)]
    pub js_sync: JsSync,
    /// JetStream publishers (compare phase).
    #[arg(long, default_value_t = 16)]
    pub js_publishers: u64,
    /// Publish acks outstanding per JetStream publisher (compare phase).
    #[arg(long, default_value_t = 64)]
    pub js_in_flight: usize,

    /// Open-loop publish rates of the latency phase (msg/s, comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub latency_rates: Vec<u64>,
    /// Seconds of publishing per latency run.
    #[arg(long, default_value_t = 20.0)]
    pub latency_seconds: f64,
    /// Publisher tasks of the latency phase (one request per message, keep-alive).
    #[arg(long, default_value_t = 64)]
    pub latency_publishers: usize,
    /// Consumers measured in the latency phase (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "pull,ws,jetstream"
    )]
    pub latency_modes: Vec<Mode>,
    /// WebSocket subscription credit (messages held unacknowledged at most).
    #[arg(long, default_value_t = 1000)]
    pub ws_credit: usize,

    /// Samples of the closed-loop wake-up phase.
    #[arg(long, default_value_t = 100)]
    pub latency_samples: usize,

    /// Messages published during the NATS outage (outage phase).
    #[arg(long, default_value_t = 100_000)]
    pub outage_messages: u64,

    /// Messages queued with NATS down (memory phase).
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_messages: u64,
    /// Receiver counts of the memory phase, one fresh network each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub memory_receivers: Vec<usize>,
    /// After measuring, start NATS again and time the drain to every receiver.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub memory_drain: bool,

    /// fsyncs timed by the limits phase.
    #[arg(long, default_value_t = 2000)]
    pub limits_fsyncs: usize,
    /// Messages of the core NATS pub/sub measurement (limits phase).
    #[arg(long, default_value_t = 1_000_000)]
    pub limits_nats_messages: u64,

    /// Seconds the idle agent's CPU is measured.
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
    /// Peers of the idle agent (all on one shared channel).
    #[arg(long, default_value_t = 10)]
    pub idle_peers: usize,
}

impl Args {
    /// The phases to run.
    pub fn phase_list(&self) -> Vec<Phase> {
        if self.phases.is_empty() {
            DEFAULT_PHASES.to_vec()
        } else {
            self.phases.clone()
        }
    }
}
