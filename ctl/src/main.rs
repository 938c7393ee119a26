//! `rmdsctl`: the admin CLI of a local rmds agent, over its HTTP API.
//!
//! Every command prints a table for humans, or the agent's JSON with `--json`. Exit
//! codes: 0 done, 1 the agent refused (its error is printed), 2 bad usage, 3 the agent
//! could not be reached. `rmdsctl check` uses Nagios codes instead (0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN).

mod agent;
mod check;
mod table;
mod tail;

use agent::{segment, Agent, CallError};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// Admin CLI for a local rmds agent.
#[derive(Parser, Debug)]
#[command(name = "rmdsctl", version, about)]
struct Cli {
    /// The agent's API.
    #[arg(
        long,
        env = "RMDS_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    url: String,
    /// Print the agent's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// API key for an agent with `api.auth.enabled` (sent as X-API-Key).
    #[arg(long, env = "RMDS_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// This node: NATS, readiness, peers, backlog.
    Status,
    /// Known nodes with liveness and memberships.
    Nodes,
    /// Channels with their readers and writers.
    Topology,
    /// Channels known on the bus and this node's role.
    Channels,
    /// Consumer groups of a channel.
    Groups {
        /// The channel.
        channel: String,
    },
    /// Follow the live tap of a channel (or all, with `-`).
    Tail {
        /// The channel, or `-` for every channel.
        channel: String,
        /// Only events of these kinds (repeatable), e.g. `published`.
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Start with this many recent events.
        #[arg(long, default_value_t = 0)]
        last: usize,
        /// Stop after this many events (default: follow until interrupted).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Dead letters: the sender's, or a consumer group's with `--channel` and `--group`.
    Dlq {
        #[command(subcommand)]
        action: Dlq,
    },
    /// Kick a node from every channel (or one), on every agent.
    Kick {
        /// The node.
        node: String,
        /// Only this channel.
        channel: Option<String>,
        /// How long to gather the nodes' answers, e.g. `5s`.
        #[arg(long, default_value = "3s")]
        wait: String,
    },
    /// Purge outboxes: `queued` (dropped on purpose), `sent` (records of delivered
    /// messages) or `all`.
    Purge {
        /// `queued`, `sent` or `all`.
        what: String,
        /// `self`, `all` or a node id.
        #[arg(long, default_value = "self")]
        scope: String,
        /// How long to gather the nodes' answers, e.g. `5s`.
        #[arg(long, default_value = "3s")]
        wait: String,
    },
    /// Management commands this node applied, newest first.
    Audit {
        /// Most rows.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Counters (`--period` and `--granularity` ask for a time series).
    Stats {
        /// How far back, e.g. `1h`.
        #[arg(long)]
        period: Option<String>,
        /// Bucket width, e.g. `1m`.
        #[arg(long)]
        granularity: Option<String>,
    },
    /// Nagios-style check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check {
        /// Undelivered messages for WARNING.
        #[arg(long, default_value_t = 10_000)]
        warn_pending: u64,
        /// Undelivered messages for CRITICAL.
        #[arg(long, default_value_t = 100_000)]
        crit_pending: u64,
        /// Sender's dead letters for WARNING.
        #[arg(long, default_value_t = 1)]
        warn_dead: u64,
        /// Offline peers for WARNING.
        #[arg(long, default_value_t = 1)]
        warn_offline: u64,
    },
}

#[derive(Subcommand, Debug)]
enum Dlq {
    /// List dead letters.
    List {
        #[command(flatten)]
        at: DlqAt,
    },
    /// One dead letter (by message id) with its message and attempts.
    Show {
        /// Message id.
        id: String,
        #[command(flatten)]
        at: DlqAt,
    },
    /// Deliver a dead letter again.
    Redrive {
        /// Message id.
        id: String,
        #[command(flatten)]
        at: DlqAt,
    },
    /// Delete a dead letter.
    Purge {
        /// Message id.
        id: String,
        #[command(flatten)]
        at: DlqAt,
    },
}

#[derive(clap::Args, Debug)]
struct DlqAt {
    /// A consumer group's queue: its channel (with `--group`).
    #[arg(long, requires = "group")]
    channel: Option<String>,
    /// A consumer group's queue: the group (with `--channel`).
    #[arg(long, requires = "channel")]
    group: Option<String>,
}

impl DlqAt {
    fn base(&self) -> String {
        match (&self.channel, &self.group) {
            (Some(c), Some(g)) => format!(
                "/v1/channels/{}/groups/{}/dead-letters",
                segment(c),
                segment(g)
            ),
            _ => "/v1/dead-letters".into(),
        }
    }
}

fn print(json_mode: bool, v: &Value, human: impl FnOnce(&Value) -> String) {
    if json_mode {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", human(v));
    }
}

fn rows(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

async fn run(cli: Cli, agent: &Agent) -> Result<(), CallError> {
    let j = cli.json;
    match cli.command {
        Command::Status => {
            let health = agent.get("/healthz", &[]).await?;
            let (code, ready) = agent.probe("/readyz").await?;
            let stats = agent.get("/v1/stats", &[]).await?;
            let v = json!({"health": health, "ready": ready, "ready_status": code, "stats": stats});
            print(j, &v, |v| {
                let s = &v["stats"];
                let mut out = format!(
                    "node      {}\nnats      {}{}\nready     {}\npeers     {} online\npending   {}\npublished {}  delivered {}  dead-lettered {}\n",
                    table::cell(&v["health"]["node_id"]),
                    table::cell(&v["health"]["nats"]),
                    v["health"]["nats_error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    table::cell(&v["ready"]["status"]),
                    table::cell(&s["peers_online"]),
                    table::cell(&s["pending_messages"]),
                    table::cell(&s["published"]),
                    table::cell(&s["delivered"]),
                    table::cell(&s["dead_lettered"]),
                );
                if let Some(checks) = v["ready"]["checks"].as_object() {
                    for (name, c) in checks {
                        if c["ok"] != Value::Bool(true) {
                            out.push_str(&format!("  {name}: {}\n", table::cell(&c["reason"])));
                        }
                    }
                }
                out
            });
        }
        Command::Nodes => {
            let v = agent.get("/v1/nodes", &[]).await?;
            print(j, &v, |v| {
                table::render(
                    &[
                        ("node", "node_id"),
                        ("online", "online"),
                        ("self", "self"),
                        ("seen (s ago)", "last_seen_ago_seconds"),
                        ("pending", "pending"),
                        ("memberships", "memberships"),
                    ],
                    &rows(&v["nodes"]),
                )
            });
        }
        Command::Topology => {
            let v = agent.get("/v1/topology", &[]).await?;
            print(j, &v, |v| {
                let list: Vec<Value> = v["channels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(c, x)| json!({"channel": c, "readers": x["readers"], "writers": x["writers"]}))
                            .collect()
                    })
                    .unwrap_or_default();
                table::render(
                    &[
                        ("channel", "channel"),
                        ("writers", "writers"),
                        ("readers", "readers"),
                    ],
                    &list,
                )
            });
        }
        Command::Channels => {
            let v = agent.get("/v1/channels", &[]).await?;
            print(j, &v, |v| {
                table::render(
                    &[
                        ("channel", "channel"),
                        ("role", "role"),
                        ("writers", "writers"),
                        ("readers", "readers"),
                    ],
                    &rows(&v["channels"]),
                )
            });
        }
        Command::Groups { channel } => {
            let v = agent
                .get(&format!("/v1/channels/{}/groups", segment(&channel)), &[])
                .await?;
            print(j, &v, |v| {
                table::render(
                    &[
                        ("group", "name"),
                        ("pending", "pending"),
                        ("in flight", "in_flight"),
                        ("ack floor", "ack_floor"),
                        ("dead letters", "dead_letters"),
                    ],
                    &rows(&v["groups"]),
                )
            });
        }
        Command::Tail {
            channel,
            kinds,
            last,
            count,
        } => {
            let channel = (channel != "-").then_some(channel);
            tail::follow(agent, channel.as_deref(), &kinds, last, count, j).await?;
        }
        Command::Dlq { action } => match action {
            Dlq::List { at } => {
                let v = agent.get(&at.base(), &[]).await?;
                print(j, &v, |v| {
                    table::render(
                        &[
                            ("id", "id"),
                            ("channel", "channel"),
                            ("receiver", "receiver"),
                            ("deliveries", "deliveries"),
                            ("attempts", "attempts"),
                            ("state", "state"),
                            ("last error", "last_error"),
                        ],
                        &rows(&v["dead_letters"]),
                    )
                });
            }
            Dlq::Show { id, at } => {
                let v = agent
                    .get(&format!("{}/{}", at.base(), segment(&id)), &[])
                    .await?;
                print(j, &v, |v| {
                    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
                });
            }
            Dlq::Redrive { id, at } => {
                let v = agent
                    .post(
                        &format!("{}/{}/redrive", at.base(), segment(&id)),
                        &json!({}),
                    )
                    .await?;
                print(j, &v, |_| format!("{id} redriven\n"));
            }
            Dlq::Purge { id, at } => {
                let v = agent
                    .delete(&format!("{}/{}", at.base(), segment(&id)), &[])
                    .await?;
                print(j, &v, |_| format!("{id} deleted\n"));
            }
        },
        Command::Stats {
            period,
            granularity,
        } => {
            let mut q = Vec::new();
            if let Some(p) = period {
                q.push(("period", p));
            }
            if let Some(g) = granularity {
                q.push(("granularity", g));
            }
            let v = agent.get("/v1/stats", &q).await?;
            print(j, &v, |v| {
                let mut out = String::new();
                if let Some(m) = v.as_object() {
                    for (k, x) in m {
                        if !x.is_array() && !x.is_object() {
                            out.push_str(&format!("{k:<28} {}\n", table::cell(x)));
                        }
                    }
                }
                out
            });
        }
        Command::Kick {
            node,
            channel,
            wait,
        } => {
            let path = match &channel {
                Some(c) => format!("/v1/nodes/{}/channels/{}/kick", segment(&node), segment(c)),
                None => format!("/v1/nodes/{}/kick", segment(&node)),
            };
            let v = agent
                .post(&format!("{path}?wait={wait}"), &json!({}))
                .await?;
            print(j, &v, answers);
            return not_all(&v);
        }
        Command::Purge { what, scope, wait } => {
            let v = agent
                .post(
                    &format!("/v1/purge?wait={wait}"),
                    &json!({"what": what, "scope": scope}),
                )
                .await?;
            print(j, &v, answers);
            return not_all(&v);
        }
        Command::Audit { limit } => {
            let v = agent
                .get("/v1/audit", &[("limit", limit.to_string())])
                .await?;
            print(j, &v, |v| {
                table::render(
                    &[
                        ("id", "id"),
                        ("at", "at"),
                        ("issuer", "issuer"),
                        ("kind", "kind"),
                        ("detail", "detail"),
                    ],
                    &rows(&v["audit"]),
                )
            });
        }
        Command::Check { .. } => unreachable!("handled before"),
    }
    Ok(())
}

/// A management command's per-node answers as a table.
fn answers(v: &Value) -> String {
    let mut list = Vec::new();
    for (key, word) in [("applied", "applied"), ("failed", "failed")] {
        for a in rows(&v[key]) {
            list.push(json!({"node": a["node"], "result": word, "detail": a["detail"]}));
        }
    }
    for a in rows(&v["not_answered"]) {
        let why = if a["online"] == Value::Bool(true) {
            "online, no answer in time"
        } else {
            "offline"
        };
        list.push(json!({"node": a["node"], "result": "not answered", "detail": why}));
    }
    let mut out = format!("command {}\n", table::cell(&v["id"]));
    if let Some(n) = v["note"].as_str() {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push_str(&table::render(
        &[("node", "node"), ("result", "result"), ("detail", "detail")],
        &list,
    ));
    out
}

/// Exit 1 when some node did not apply a management command (named in the output).
fn not_all(v: &Value) -> Result<(), CallError> {
    let missing = rows(&v["failed"]).len() + rows(&v["not_answered"]).len();
    if missing > 0 {
        return Err(CallError::Refused {
            status: 200,
            message: format!(
                "{missing} node(s) did not apply command {}",
                table::cell(&v["id"])
            ),
        });
    }
    Ok(())
}

async fn check(agent: &Agent, t: check::Thresholds) -> (u8, String) {
    let observed = async {
        let ready = agent.probe("/readyz").await?;
        let stats = agent.get("/v1/stats", &[]).await?;
        let dead = agent.get("/v1/dead-letters", &[]).await?["dead_letters"]
            .as_array()
            .map_or(0, |a| a.len() as u64);
        let offline = agent.get("/v1/nodes", &[]).await?["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .filter(|n| n["online"] == Value::Bool(false))
                    .filter_map(|n| n["node_id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok::<_, CallError>(check::Observed {
            ready,
            stats,
            dead,
            offline,
        })
    }
    .await;
    match observed {
        Ok(o) => check::verdict(&o, &t),
        Err(CallError::Unreachable(e)) => check::unreachable(&e),
        Err(e) => (3, format!("RMDS UNKNOWN - {e}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let agent = Agent::new(
        &cli.url,
        Duration::from_secs(cli.timeout.max(1)),
        cli.api_key.as_deref(),
    );
    if let Command::Check {
        warn_pending,
        crit_pending,
        warn_dead,
        warn_offline,
    } = cli.command
    {
        let t = check::Thresholds {
            warn_pending,
            crit_pending: crit_pending.max(warn_pending),
            warn_dead: warn_dead.max(1),
            warn_offline: warn_offline.max(1),
        };
        let (code, line) = check(&agent, t).await;
        println!("{line}");
        return ExitCode::from(code);
    }
    match run(cli, &agent).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rmdsctl: {e}");
            match e {
                CallError::Unreachable(_) => {
                    eprintln!(
                        "rmdsctl: is the agent running at {}? (--url, RMDS_URL)",
                        agent.base()
                    );
                    ExitCode::from(3)
                }
                CallError::Refused { .. } => ExitCode::from(1),
            }
        }
    }
}
