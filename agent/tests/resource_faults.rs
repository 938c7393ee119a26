//! Resource faults and limits stay where they belong: a receiver that cannot store
//! makes its senders wait (never dead-letter), and a `drop_oldest` channel only ever
//! drops its own messages.

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

/// Rewrites one agent's `[store] max_size_mb` (0: no limit).
fn set_max_size(net: &mut TestNet, node: &str, mb: u64) {
    let path = net.node(node).config_path().to_path_buf();
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let store = t
        .entry("store")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    store
        .as_table_mut()
        .unwrap()
        .insert("max_size_mb".into(), toml::Value::Integer(mb as i64));
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
}

async fn dead_letters(c: &rmds::Client) -> usize {
    c.get_json("/v1/dead-letters").await.unwrap()["dead_letters"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

#[tokio::test]
async fn given_a_receiver_whose_store_is_full_when_the_sender_retries_then_nothing_is_dead_lettered_and_all_flows_once_space_returns(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "max_retry_attempts", 2)
        .set("delivery", "ack_timeout", "300ms")
        .set("delivery", "retry_initial", "50ms")
        .set("delivery", "retry_max", "200ms")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net.node("bob").stop().await.unwrap();
    set_max_size(&mut net, "bob", 1);
    net.node("bob").start().await.unwrap();
    let alice = net.client("alice");
    let filler = "x".repeat(2000);
    let n = 1500u64;
    for b in 0..n / 100 {
        let items: Vec<_> = (b * 100 + 1..=(b + 1) * 100)
            .map(|i| json!({"sender": "alice", "n": i, "pad": filler}))
            .collect();
        alice.publish_batch("chat", &items).await.unwrap();
    }
    // Bob fills up and refuses; alice keeps trying for many attempt budgets.
    let bob = net.client("bob");
    eventually(Duration::from_secs(30), "bob refusing", || {
        let c = alice.clone();
        async move { (c.stats().await.ok()?["received_nacks"].as_u64()? >= 3).then_some(()) }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        dead_letters(&alice).await,
        0,
        "a full receiver caused dead letters"
    );
    assert!(bob.health().await.is_ok());
    // Space returns: everything flows, once, in order.
    net.node("bob").stop().await.unwrap();
    set_max_size(&mut net, "bob", 0);
    net.node("bob").start().await.unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        n as usize,
        Duration::from_secs(120),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let expected: Vec<u64> = (1..=n).collect();
    let r = check_stream(
        "alice",
        "bob",
        "chat",
        &expected,
        &got.numbers_from("alice"),
    );
    assert!(r.ok(), "{}", r.describe());
    assert_eq!(dead_letters(&alice).await, 0);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_small_drop_oldest_channel_and_a_reject_channel_when_the_small_one_overflows_then_only_its_own_messages_are_dropped(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["big:writer", "small:writer"])
        .agent("bob", &["big:reader", "small:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "big", &["bob"]).await.unwrap();
    net.wait_discovered("alice", "small", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    let put = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{}/v1/channels/small/policy",
            net.node("alice").port()
        ))
        .json(&json!({"max_messages_per_receiver": 5, "overflow": "drop_oldest"}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    net.node("bob").stop().await.unwrap();
    for n in 1..=10 {
        alice
            .publish_json("big", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    for n in 1..=20 {
        alice
            .publish_json("small", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    let stats = alice.stats().await.unwrap();
    assert_eq!(stats["dropped"], 15, "{stats}");
    net.node("bob").start().await.unwrap();
    for (ch, want) in [
        ("big", (1..=10).collect::<Vec<u64>>()),
        ("small", (16..=20).collect()),
    ] {
        let got = drain(
            &net.client("bob"),
            ch,
            "default",
            want.len(),
            Duration::from_secs(30),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        let r = check_stream("alice", "bob", ch, &want, &got.numbers_from("alice"));
        assert!(r.ok(), "{ch}: {}", r.describe());
    }
    net.assert_healthy().unwrap();
}
