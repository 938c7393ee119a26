//! `rmds-chat`: chat over rmds from the terminal, with the rmds SDK.
//!
//! ```text
//! rmds-chat --agent http://127.0.0.1:7700 --channel chat --role rw      # a sidecar agent
//! rmds-chat --embedded --node-id dave --nats nats://127.0.0.1:4222      # its own agent
//! ```
//! Type a line to send it. Commands: `/stats`, `/nodes`, `/topology`, `/quit`.
//! Incoming lines arrive through `Channel::on_message` (acknowledged once printed);
//! typed lines go out with `Channel::send` as `{"text": …}`.

use anyhow::Context;
use clap::Parser;
use rmds::{Node, Role};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader};

mod web;

#[derive(Parser, Debug)]
#[command(about = "Chat over rmds")]
struct Args {
    /// The local agent's API (sidecar mode).
    #[arg(long, env = "RMDS_AGENT", default_value = "http://127.0.0.1:7700")]
    agent: String,
    /// API key, for an agent with api.auth.enabled.
    #[arg(long, env = "RMDS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Run an agent inside this process instead of talking to a sidecar one.
    #[arg(long)]
    embedded: bool,
    /// Embedded mode: this node's id.
    #[arg(long, default_value = "chat")]
    node_id: String,
    /// Embedded mode: NATS URLs, comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Embedded mode: the agent's data directory (default ./data-<node-id>).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Embedded mode: where the agent's API listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Channel to chat on.
    #[arg(long, default_value = "chat")]
    channel: String,
    /// reader, writer or rw.
    #[arg(long, default_value = "rw")]
    role: String,
    /// Consumer group used to read (each chat window should use its own).
    #[arg(long, default_value = "chat-cli")]
    group: String,
    /// Serve the chat as a web page on this port instead of the terminal.
    #[arg(long)]
    web: Option<u16>,
    /// Address the web page listens on (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    web_host: std::net::IpAddr,
}

/// One chat line on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) text: String,
}

async fn node(args: &Args) -> anyhow::Result<Node> {
    if args.embedded {
        let mut config = rmds::agent::config::Config {
            node_id: args.node_id.clone(),
            data_dir: args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("data-{}", args.node_id))),
            listen: args.listen,
            ..Default::default()
        };
        config.nats.urls = args.nats.split(',').map(|s| s.trim().to_string()).collect();
        return Node::embedded(config)
            .await
            .context("starting the embedded agent");
    }
    let opts = rmds::ConnectOptions {
        api_key: args.api_key.clone(),
    };
    Node::connect_with(&args.agent, opts)
        .await
        .with_context(|| format!("cannot reach the agent at {}", args.agent))
}

/// How an incoming message is shown: the text of a chat line, else the payload.
pub(crate) fn show(m: &rmds::Message) -> String {
    match m.json::<Line>() {
        Ok(l) => l.text,
        Err(_) => m
            .text()
            .unwrap_or_else(|_| format!("<{} bytes>", m.bytes().len())),
    }
}

async fn command(node: &Node, cmd: &str) -> rmds::Result<()> {
    let mgmt = node.mgmt();
    match cmd {
        "/stats" => {
            let s = mgmt.stats().await?;
            println!(
                "published {}  delivered {}  pending {}  peers online {}  NATS {}",
                s.published,
                s.delivered,
                s.pending_messages,
                s.peers_online,
                if s.nats_connected { "up" } else { "down" }
            );
        }
        "/nodes" => {
            for n in mgmt.nodes().await? {
                let seen = n
                    .last_seen_ago_seconds
                    .map(|s| format!(", seen {s}s ago"))
                    .unwrap_or_default();
                println!(
                    "{}{} {}{seen}: {:?}",
                    n.node_id,
                    if n.is_self { " (this node)" } else { "" },
                    if n.online { "online" } else { "offline" },
                    n.memberships
                );
            }
        }
        "/topology" => {
            let t = mgmt.topology().await?;
            for (ch, m) in &t.channels {
                println!("#{ch}: readers {:?}, writers {:?}", m.readers, m.writers);
            }
        }
        other => println!("unknown command {other}; try /stats, /nodes, /topology, /quit"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let role: Role = args.role.parse()?;
    let node = node(&args).await?;
    let chat = node.join(&args.channel, role).await?;
    println!(
        "node {} ({}) on #{} as {}. /quit to leave.",
        node.id(),
        if node.is_embedded() {
            "embedded agent".to_string()
        } else {
            format!("agent at {}", args.agent)
        },
        args.channel,
        args.role
    );
    if let Some(port) = args.web {
        let group = if args.group == "chat-cli" {
            "chat-web".to_string()
        } else {
            args.group.clone()
        };
        return web::serve(
            node,
            chat,
            &group,
            std::net::SocketAddr::new(args.web_host, port),
        )
        .await;
    }
    let handler = if role.reads() {
        Some(
            chat.on_message(&args.group, |m| async move {
                println!("[{}] {}", m.sender, show(&m));
                Ok::<_, rmds::Error>(())
            })
            .await?,
        )
    } else {
        None
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        match line {
            "" => {}
            "/quit" => break,
            cmd if cmd.starts_with('/') => {
                if let Err(e) = command(&node, cmd).await {
                    eprintln!("! {e}");
                }
            }
            text => match chat
                .send(&Line {
                    text: text.to_string(),
                })
                .await
            {
                Ok(r) if r.unrouted => println!("(stored; no reader known yet)"),
                Ok(_) => {}
                Err(e) => eprintln!("! not sent: {e}"),
            },
        }
    }
    if let Some(h) = handler {
        h.stop().await?;
    }
    node.shutdown().await;
    Ok(())
}
