//! Normal operation against real nats-server and agent processes: the brief's
//! scenario 1 and 4, and a reader that was down while the others were up.

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn four_nodes() -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .agent("lisa", &["chat:reader"])
        .agent("andy", &["chat:reader"])
        .start()
        .await
        .expect("net starts");
    net.wait_discovered("alice", "chat", &["bob", "lisa", "andy"])
        .await
        .expect("alice discovers every reader");
    net
}

async fn publish_numbers(net: &TestNet, from: &str, range: std::ops::RangeInclusive<u64>) {
    let c = net.client(from);
    for n in range {
        c.publish_json("chat", &json!({"sender": from, "n": n}))
            .await
            .unwrap_or_else(|e| panic!("publish {n} from {from}: {e}"));
    }
}

async fn assert_exactly(net: &TestNet, reader: &str, sender: &str, expected: &[u64]) {
    let got = drain(
        &net.client(reader),
        "chat",
        "default",
        expected.len(),
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await
    .expect("drain");
    let r = check_stream(sender, reader, "chat", expected, &got.numbers_from(sender));
    assert!(r.ok(), "{}", r.describe());
    assert_eq!(
        got.numbers_from(sender),
        expected,
        "exact sequence at {reader}"
    );
}

#[tokio::test]
async fn given_four_nodes_when_alice_publishes_then_every_reader_gets_each_once_in_order_and_all_acked(
) {
    let mut net = four_nodes().await;
    let c = net.client("alice");
    let r = c.publish_json("chat", &json!({"n": 1})).await.unwrap();
    let mut receivers = r.receivers.clone();
    receivers.sort();
    assert_eq!(
        receivers,
        vec!["andy", "bob", "lisa"],
        "writer never receives its own message"
    );
    publish_numbers(&net, "alice", 2..=3).await;
    for reader in ["bob", "lisa", "andy"] {
        assert_exactly(&net, reader, "alice", &[1, 2, 3]).await;
    }
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    let st = c.status(&r.id).await.unwrap();
    for rcv in st["receivers"].as_array().unwrap() {
        // Acknowledged by the receiver; "consumed" once the receipt of the
        // application's ack has come back.
        let state = rcv["state"].as_str().unwrap();
        assert!(state == "delivered" || state == "consumed", "{st}");
        assert!(rcv["done_at"].is_i64(), "{st}");
    }
    let stats = c.stats().await.unwrap();
    assert_eq!(stats["delivered"], 9);
    assert_eq!(stats["acknowledged_messages"], 9);
    for key in [
        "delivered",
        "queued",
        "dropped",
        "expired",
        "processed",
        "sent_acks",
        "received_acks",
        "sent_keepalives",
        "received_keepalives",
        "reconnects",
        "uptime_seconds",
        "pending_messages",
        "sent_messages",
        "acknowledged_messages",
        "nats_connected",
    ] {
        assert!(stats.get(key).is_some(), "stats lacks {key}: {stats}");
    }
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_1000_messages_back_to_back_then_each_reader_gets_exactly_1_to_1000() {
    let mut net = four_nodes().await;
    publish_numbers(&net, "alice", 1..=1000).await;
    let expected: Vec<u64> = (1..=1000).collect();
    for reader in ["bob", "lisa", "andy"] {
        assert_exactly(&net, reader, "alice", &expected).await;
    }
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_1000_messages_with_a_nats_restart_in_the_middle_then_exactly_1_to_1000() {
    let mut net = four_nodes().await;
    let c = net.client("alice");
    let publisher = tokio::spawn(async move {
        for n in 1..=1000u64 {
            c.publish_json("chat", &json!({"sender": "alice", "n": n}))
                .await
                .unwrap_or_else(|e| panic!("publish {n}: {e}"));
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.kill_nats().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    net.start_nats().await.unwrap();
    publisher.await.unwrap();
    let expected: Vec<u64> = (1..=1000).collect();
    for reader in ["bob", "lisa", "andy"] {
        assert_exactly(&net, reader, "alice", &expected).await;
    }
    net.wait_drained("alice", Duration::from_secs(30))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_reader_down_while_others_are_up_when_it_returns_then_it_gets_everything_once() {
    let mut net = four_nodes().await;
    publish_numbers(&net, "alice", 1..=5).await;
    assert_exactly(&net, "lisa", "alice", &[1, 2, 3, 4, 5]).await;
    net.node("lisa").stop().await.unwrap();
    publish_numbers(&net, "alice", 6..=50).await;
    // The others keep receiving while lisa is away.
    let all: Vec<u64> = (1..=50).collect();
    assert_exactly(&net, "bob", "alice", &all).await;
    // Long enough for alice to consider lisa offline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.node("lisa").start().await.unwrap();
    let rest: Vec<u64> = (6..=50).collect();
    assert_exactly(&net, "lisa", "alice", &rest).await;
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}
