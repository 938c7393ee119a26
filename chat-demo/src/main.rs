//! `rmds-chat`: chat over rmds from the terminal, through the local agent.
//!
//! ```text
//! rmds-chat --agent http://127.0.0.1:7700 --channel chat --role rw
//! ```
//! Type a line to send it. Commands: `/stats`, `/nodes`, `/topology`, `/quit`.

use anyhow::Context;
use clap::Parser;
use rmds::{Client, Role};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
#[command(about = "Chat over rmds")]
struct Args {
    /// The local agent's API.
    #[arg(long, env = "RMDS_AGENT", default_value = "http://127.0.0.1:7700")]
    agent: String,
    /// Channel to chat on.
    #[arg(long, default_value = "chat")]
    channel: String,
    /// reader, writer or rw.
    #[arg(long, default_value = "rw")]
    role: String,
    /// Consumer group used to read (each chat window should use its own).
    #[arg(long, default_value = "chat-cli")]
    group: String,
}

fn parse_role(s: &str) -> anyhow::Result<Role> {
    match s {
        "reader" => Ok(Role::Reader),
        "writer" => Ok(Role::Writer),
        "rw" => Ok(Role::Rw),
        other => anyhow::bail!("invalid role {other:?}: expected reader, writer or rw"),
    }
}

async fn read_loop(client: Client, channel: String, group: String) {
    loop {
        match client
            .pull(&channel, &group, 100, Duration::from_secs(10))
            .await
        {
            Ok(msgs) if !msgs.is_empty() => {
                for m in &msgs {
                    let text = match &m.data {
                        Some(serde_json::Value::Object(o)) => o
                            .get("text")
                            .and_then(|t| t.as_str())
                            .map(String::from)
                            .unwrap_or_else(|| serde_json::Value::Object(o.clone()).to_string()),
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => format!("<{} bytes>", m.payload().len()),
                    };
                    println!("[{}] {}", m.sender, text);
                }
                let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
                if let Err(e) = client.ack(&channel, &group, &ids).await {
                    eprintln!("! ack failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("! {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let role = parse_role(&args.role)?;
    let client = Client::new(&args.agent);
    let health = client
        .health()
        .await
        .with_context(|| format!("cannot reach the agent at {}", args.agent))?;
    client.join(&args.channel, role).await?;
    println!(
        "connected to {} (node {}, NATS {}) on #{} as {}. /quit to leave.",
        args.agent, health["node_id"], health["nats"], args.channel, args.role
    );
    if matches!(role, Role::Reader | Role::Rw) {
        client
            .ensure_group(&args.channel, &args.group, &rmds::GroupOptions::default())
            .await?;
        tokio::spawn(read_loop(
            client.clone(),
            args.channel.clone(),
            args.group.clone(),
        ));
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        match line {
            "" => {}
            "/quit" => break,
            "/stats" => println!("{:#}", client.stats().await?),
            "/nodes" => println!("{:#}", client.get_json("/v1/nodes").await?),
            "/topology" => println!("{:#}", client.get_json("/v1/topology").await?),
            text => match client
                .publish_json(&args.channel, &serde_json::json!({ "text": text }))
                .await
            {
                Ok(r) if r.unrouted => println!("(stored; no reader known yet)"),
                Ok(_) => {}
                Err(e) => eprintln!("! not sent: {e}"),
            },
        }
    }
    Ok(())
}
