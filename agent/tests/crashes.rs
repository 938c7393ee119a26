//! `kill -9` in the middle of a 5000-message stream, of the sender and of a receiver:
//! after restart every message reaches the application once, in order.

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const N: u64 = 5000;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

/// Publishes 1..=N from `client`, retrying through agent restarts with an idempotency
/// key so that an ambiguous failure never stores a message twice.
async fn publish_all(client: rmds::Client) {
    for n in 1..=N {
        let opts = rmds::PublishOptions {
            content_type: "application/json".into(),
            idempotency_key: Some(format!("n-{n}")),
            ..Default::default()
        };
        let body = serde_json::to_vec(&json!({"sender": "alice", "n": n})).unwrap();
        let mut tries = 0;
        loop {
            match client.publish_with("chat", body.clone(), &opts).await {
                Ok(_) => break,
                Err(e) if matches!(e.kind, rmds::ErrorKind::Connect | rmds::ErrorKind::Decode) => {
                    tries += 1;
                    assert!(tries < 400, "agent did not come back: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("publish {n}: {e}"),
            }
        }
    }
}

async fn net() -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net
}

async fn wait_published_at_least(net: &TestNet, node: &str, n: u64) {
    let c = net.client(node);
    rmds_scenarios::harness::eventually(Duration::from_secs(60), "publishing progress", || {
        let c = c.clone();
        async move { (c.stats().await.ok()?["published"].as_u64()? >= n).then_some(()) }
    })
    .await
    .unwrap();
}

fn verify(got: &rmds_scenarios::harness::Received) {
    let expected: Vec<u64> = (1..=N).collect();
    let r = check_stream(
        "alice",
        "bob",
        "chat",
        &expected,
        &got.numbers_from("alice"),
    );
    assert!(r.ok(), "{}", r.describe());
}

#[tokio::test]
async fn given_a_5000_message_stream_when_the_sender_is_killed_mid_stream_then_all_arrive_once_in_order(
) {
    let mut net = net().await;
    let publisher = tokio::spawn(publish_all(net.client("alice")));
    let consumer = {
        let c = net.client("bob");
        tokio::spawn(async move {
            drain(
                &c,
                "chat",
                "default",
                N as usize,
                Duration::from_secs(240),
                Duration::from_secs(1),
            )
            .await
        })
    };
    wait_published_at_least(&net, "alice", 1500).await;
    net.node("alice").crash_restart().await.unwrap();
    publisher.await.unwrap();
    let got = consumer.await.unwrap().unwrap();
    verify(&got);
    net.wait_drained("alice", Duration::from_secs(60))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_5000_message_stream_when_the_receiver_is_killed_mid_stream_then_all_arrive_once_in_order(
) {
    let mut net = net().await;
    let publisher = tokio::spawn(publish_all(net.client("alice")));
    let consumer = {
        let c = net.client("bob");
        tokio::spawn(async move {
            drain(
                &c,
                "chat",
                "default",
                N as usize,
                Duration::from_secs(240),
                Duration::from_secs(1),
            )
            .await
        })
    };
    let bob = net.client("bob");
    rmds_scenarios::harness::eventually(
        Duration::from_secs(60),
        "bob to have received 1500",
        || {
            let c = bob.clone();
            async move { (c.stats().await.ok()?["processed"].as_u64()? >= 1500).then_some(()) }
        },
    )
    .await
    .unwrap();
    net.node("bob").crash_restart().await.unwrap();
    publisher.await.unwrap();
    let got = consumer.await.unwrap().unwrap();
    verify(&got);
    net.wait_drained("alice", Duration::from_secs(60))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}
