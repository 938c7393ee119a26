//! `rmds-demo`: a local multi-node demo with real processes.
//!
//! Starts nats-server and four agents (alice writer, bob rw, lisa and andy readers),
//! sends messages, stops NATS while alice and bob keep publishing, brings it back, and
//! shows that every reader got everything once and in order. Then it keeps the cluster
//! running so you can use the API yourself, until Ctrl-C (or exits with `--exit`).

use clap::Parser;
use rmds_scenarios::harness::{drain, TestNet};
use serde_json::json;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "rmds local multi-node demo")]
struct Args {
    /// Exit after the scripted part instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
}

const READERS: [&str; 3] = ["bob", "lisa", "andy"];

async fn show(net: &TestNet, expected: &[(&str, usize)]) -> anyhow::Result<()> {
    for &(r, expected) in expected {
        net.client(r)
            .ensure_group("chat", "demo", &rmds::GroupOptions::default())
            .await?;
        let got = drain(
            &net.client(r),
            "chat",
            "demo",
            expected,
            Duration::from_secs(30),
            Duration::from_millis(200),
        )
        .await?;
        let lines: Vec<String> = got
            .messages
            .iter()
            .filter(|m| m.sender != r)
            .map(|m| {
                format!(
                    "{}:{}",
                    m.sender,
                    m.data
                        .as_ref()
                        .and_then(|d| d["text"].as_str())
                        .unwrap_or("?")
                )
            })
            .collect();
        println!("  {r:>5} received {lines:?}");
    }
    Ok(())
}

async fn say(net: &TestNet, from: &str, text: &str) -> anyhow::Result<()> {
    let r = net
        .client(from)
        .publish_json("chat", &json!({"text": text}))
        .await?;
    println!(
        "  {from} published {text:?} -> stored as {} for {:?}{}",
        r.id,
        r.receivers,
        if r.unrouted {
            " (no reader known yet)"
        } else {
            ""
        }
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("Starting nats-server and four agents (real processes, temporary data dirs)...");
    let mut net = TestNet::builder()
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .agent("lisa", &["chat:reader"])
        .agent("andy", &["chat:reader"])
        .start()
        .await?;
    net.wait_discovered("alice", "chat", &READERS).await?;
    net.wait_discovered("bob", "chat", &["lisa", "andy"])
        .await?;
    for n in net.nodes() {
        let port = net.node(&n).port();
        println!("  {n:>5}: http://127.0.0.1:{port}");
    }

    println!("\n1. Normal operation: alice sends three messages.");
    for t in ["hello", "how are you", "bye"] {
        say(&net, "alice", t).await?;
    }
    show(&net, &[("bob", 3), ("lisa", 3), ("andy", 3)]).await?;

    println!("\n2. NATS goes down; alice and bob keep publishing (stored in SQLite).");
    net.stop_nats().await?;
    let h = net.client("alice").health().await?;
    println!("  alice /healthz: nats={}", h["nats"]);
    say(&net, "alice", "sent during the outage").await?;
    say(&net, "bob", "me too").await?;
    println!("  NATS comes back after 3 s...");
    tokio::time::sleep(Duration::from_secs(3)).await;
    net.start_nats().await?;
    // Bob does not receive his own message; lisa and andy get both.
    show(&net, &[("bob", 1), ("lisa", 2), ("andy", 2)]).await?;

    net.wait_drained("alice", Duration::from_secs(30)).await?;
    net.wait_drained("bob", Duration::from_secs(30)).await?;
    let s = net.client("alice").stats().await?;
    println!(
        "\n3. alice's stats: published={} delivered={} pending={} reconnects={}",
        s["published"], s["delivered"], s["pending_messages"], s["reconnects"]
    );
    println!("Every reader got every message once, in order, across the outage.");
    if args.exit {
        return Ok(());
    }
    let alice = net.node("alice").port();
    let lisa = net.node("lisa").port();
    println!("\nThe cluster keeps running. Try:");
    println!("  curl -s -XPOST localhost:{alice}/v1/channels/chat/messages -H 'content-type: application/json' -d '{{\"text\":\"hi\"}}'");
    println!("  curl -s 'localhost:{lisa}/v1/channels/chat/messages?wait=5s'");
    println!("  curl -s localhost:{alice}/v1/topology");
    println!("Dashboards (and the API viewer at /docs/):");
    for n in net.nodes() {
        println!("  {n}: http://127.0.0.1:{}/ui/", net.node(&n).port());
    }
    println!("A chat page for a node: cargo run -p rmds-chat -- --agent http://127.0.0.1:{alice} --role writer --web 8081");
    println!("Press Ctrl-C to stop everything.");
    tokio::signal::ctrl_c().await?;
    println!("stopping...");
    for n in net.nodes() {
        net.node(&n).stop().await?;
    }
    Ok(())
}
