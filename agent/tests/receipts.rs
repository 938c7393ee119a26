//! Delivery receipts: a message's status at its sender moves from queued through
//! delivered to consumed (first group ack at the receiver), per receiver, with
//! timestamps; a receipt made while NATS is down arrives when it returns.

use rmds_scenarios::harness::{eventually, pull_some, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

fn receiver<'a>(status: &'a Value, node: &str) -> &'a Value {
    status["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["receiver"] == node)
        .unwrap_or_else(|| panic!("{node} not in {status}"))
}

async fn wait_state(alice: &rmds::Client, id: &str, node: &str, state: &str) -> Value {
    let (a, id2, n, s) = (
        alice.clone(),
        id.to_string(),
        node.to_string(),
        state.to_string(),
    );
    eventually(
        Duration::from_secs(20),
        &format!("{node} to read {state}"),
        move || {
            let (a, id, n, s) = (a.clone(), id2.clone(), n.clone(), s.clone());
            async move {
                let st = a.status(&id).await.ok()?;
                (receiver(&st, &n)["state"] == s.as_str()).then_some(st)
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn given_a_message_then_its_receipt_moves_from_queued_to_delivered_to_consumed() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .agent("lisa", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob", "lisa"])
        .await
        .unwrap();
    let alice = net.client("alice");
    // Bob is away: his copy waits, queued.
    net.node("bob").stop().await.unwrap();
    let id = alice
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap()
        .id;
    let st = alice.status(&id).await.unwrap();
    assert_eq!(receiver(&st, "bob")["state"], "queued", "{st}");
    wait_state(&alice, &id, "lisa", "delivered").await;
    net.node("bob").start().await.unwrap();
    let st = wait_state(&alice, &id, "bob", "delivered").await;
    assert!(receiver(&st, "bob")["done_at"].is_i64(), "{st}");
    assert!(receiver(&st, "bob")["consumed_at"].is_null(), "{st}");
    // Bob's application acknowledges it: consumed, at bob only.
    let bob = net.client("bob");
    let got = pull_some(&bob, "chat", "default", 1, Duration::from_secs(10))
        .await
        .unwrap();
    bob.ack("chat", "default", &[got[0].id.clone()])
        .await
        .unwrap();
    let st = wait_state(&alice, &id, "bob", "consumed").await;
    assert!(receiver(&st, "bob")["consumed_at"].is_i64(), "{st}");
    assert_eq!(receiver(&st, "lisa")["state"], "delivered", "{st}");
    // A receipt made while NATS is down arrives once it is back.
    let lisa = net.client("lisa");
    let m = pull_some(&lisa, "chat", "default", 1, Duration::from_secs(10))
        .await
        .unwrap();
    net.stop_nats().await.unwrap();
    lisa.ack("chat", "default", &[m[0].id.clone()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = alice.status(&id).await.unwrap();
    assert_eq!(receiver(&st, "lisa")["state"], "delivered", "{st}");
    net.start_nats().await.unwrap();
    wait_state(&alice, &id, "lisa", "consumed").await;
    // A second group's ack does not move the first consumption time.
    let first = receiver(&alice.status(&id).await.unwrap(), "bob")["consumed_at"].clone();
    bob.create_group("chat", "second", &rmds::GroupOptions::default())
        .await
        .unwrap();
    let again = bob
        .pull("chat", "second", 10, Duration::from_secs(2))
        .await
        .unwrap();
    bob.ack("chat", "second", &[again[0].id.clone()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = alice.status(&id).await.unwrap();
    assert_eq!(receiver(&st, "bob")["consumed_at"], first, "{st}");
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_receipts_switched_off_then_status_stays_delivered_after_the_ack() {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("groups", "receipts", false)
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    let id = alice
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap()
        .id;
    let bob = net.client("bob");
    let got = pull_some(&bob, "chat", "default", 1, Duration::from_secs(10))
        .await
        .unwrap();
    bob.ack("chat", "default", &[got[0].id.clone()])
        .await
        .unwrap();
    wait_state(&alice, &id, "bob", "delivered").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = alice.status(&id).await.unwrap();
    assert_eq!(receiver(&st, "bob")["state"], "delivered", "{st}");
    assert!(receiver(&st, "bob")["consumed_at"].is_null(), "{st}");
    net.assert_healthy().unwrap();
}

/// Publishes `n` messages from `client` in batches of 100 and returns their ids.
async fn publish_many(client: &rmds::Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for start in (0..n).step_by(100) {
        let items: Vec<Value> = (start..(start + 100).min(n))
            .map(|i| json!({"n": i}))
            .collect();
        let v = client.publish_batch("chat", &items).await.unwrap();
        for r in v["results"].as_array().unwrap() {
            ids.push(r["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

async fn wait_all_consumed(client: &rmds::Client, ids: &[String], node: &str) {
    for id in ids {
        wait_state(client, id, node, "consumed").await;
    }
}

#[tokio::test]
async fn given_many_receipts_for_two_senders_one_away_then_each_sender_hears_all_of_its_own() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("carol", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    for w in ["alice", "carol"] {
        net.wait_discovered(w, "chat", &["bob"]).await.unwrap();
    }
    let (alice, carol, bob) = (net.client("alice"), net.client("carol"), net.client("bob"));
    // More than one receipt request's worth (1,000) from each sender, interleaved in
    // bob's log, so that runs mix senders and requests stop inside a run.
    let mut from_alice = Vec::new();
    let mut from_carol = Vec::new();
    for _ in 0..3 {
        from_alice.extend(publish_many(&alice, 400).await);
        from_carol.extend(publish_many(&carol, 400).await);
    }
    let total = from_alice.len() + from_carol.len();
    let mut got = Vec::new();
    while got.len() < total {
        got.extend(
            pull_some(&bob, "chat", "default", 1, Duration::from_secs(20))
                .await
                .unwrap(),
        );
    }
    // Carol is killed before bob's application acknowledges: her receipts wait.
    net.node("carol").kill().await.unwrap();
    for chunk in got.chunks(700) {
        let ids: Vec<String> = chunk.iter().map(|m| m.id.clone()).collect();
        bob.ack("chat", "default", &ids).await.unwrap();
    }
    wait_all_consumed(&alice, &from_alice, "bob").await;
    // Bob restarts with carol's receipts still queued; they reach her once she is back.
    net.node("bob").crash_restart().await.unwrap();
    net.node("carol").start().await.unwrap();
    wait_all_consumed(&carol, &from_carol, "bob").await;
    net.assert_healthy().unwrap();
}
