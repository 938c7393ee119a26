//! Crash loops under load: a writer killed with `kill -9` again and again while it
//! publishes, with a small window, a short ACK timeout and few retry attempts. Every
//! accepted message still reaches every reader once and in order, and nothing lands
//! in the sender's dead-letter store (the receivers were online all along).

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const N: u64 = 3000;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

/// Batch size of one publish request: many sequences in flight per kill.
const BATCH: u64 = 50;

/// Publishes 1..=N in batches, retrying through restarts with one idempotency key per
/// batch (the agent derives a key per item), so an ambiguous failure never duplicates.
async fn publish_all(base: String, done: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    for b in 0..N / BATCH {
        let items: Vec<_> = (b * BATCH + 1..=(b + 1) * BATCH)
            .map(|n| json!({"sender": "alice", "n": n}))
            .collect();
        let mut tries = 0;
        loop {
            let r = http
                .post(format!("{base}/v1/channels/chat/messages:batch"))
                .header("idempotency-key", format!("b-{b}"))
                .json(&items)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => break,
                Ok(r) if r.status().is_server_error() => {}
                Ok(r) => panic!(
                    "batch {b}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(_) => {}
            }
            tries += 1;
            assert!(tries < 600, "agent did not come back");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    done.store(true, Ordering::SeqCst);
}

fn consume(
    net: &TestNet,
    node: &str,
) -> tokio::task::JoinHandle<rmds_scenarios::harness::Received> {
    let c = net.client(node);
    tokio::spawn(async move {
        drain(
            &c,
            "chat",
            "default",
            N as usize,
            Duration::from_secs(240),
            Duration::from_secs(2),
        )
        .await
        .unwrap()
    })
}

#[tokio::test]
async fn given_a_writer_killed_again_and_again_under_load_when_it_recovers_then_every_reader_gets_everything_once_and_nothing_is_dead(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "window", 8)
        .set("delivery", "ack_timeout", "300ms")
        .set("delivery", "retry_initial", "50ms")
        .set("delivery", "retry_max", "200ms")
        .set("delivery", "max_retry_attempts", 3)
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .agent("carol", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob", "carol"])
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_all(
        format!("http://127.0.0.1:{}", net.node("alice").port()),
        done.clone(),
    ));
    let (bob, carol) = (consume(&net, "bob"), consume(&net, "carol"));
    let mut kills = 0;
    while !done.load(Ordering::SeqCst) && kills < 20 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        net.node("alice").crash_restart().await.unwrap();
        kills += 1;
    }
    publisher.await.unwrap();
    let expected: Vec<u64> = (1..=N).collect();
    for (name, h) in [("bob", bob), ("carol", carol)] {
        let got = h.await.unwrap();
        let r = check_stream("alice", name, "chat", &expected, &got.numbers_from("alice"));
        assert!(r.ok(), "after {kills} kills: {}", r.describe());
    }
    let alice = net.client("alice");
    let dead = alice.get_json("/v1/dead-letters").await.unwrap();
    assert_eq!(
        dead["dead_letters"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "dead letters although every receiver was online: {dead}"
    );
    eventually(Duration::from_secs(30), "alice drained", || {
        let c = alice.clone();
        async move { (c.stats().await.ok()?["pending_messages"].as_u64()? == 0).then_some(()) }
    })
    .await
    .unwrap();
    net.assert_healthy().unwrap();
}
