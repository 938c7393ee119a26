//! NATS outages: during operation (scenario 2) and at start (scenario 3, warm and cold).

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

fn four() -> rmds_scenarios::harness::TestNetBuilder {
    TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .agent("lisa", &["chat:reader"])
        .agent("andy", &["chat:reader"])
}

async fn expect(net: &TestNet, reader: &str, sender: &str, want: &[u64]) {
    let got = drain(
        &net.client(reader),
        "chat",
        "default",
        want.len(),
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await
    .expect("drain");
    let r = check_stream(sender, reader, "chat", want, &got.numbers_from(sender));
    assert!(r.ok(), "{}", r.describe());
}

async fn publish(net: &TestNet, from: &str, n: u64) {
    net.client(from)
        .publish_json("chat", &json!({"sender": from, "n": n}))
        .await
        .unwrap_or_else(|e| {
            panic!("publish {n} from {from} must succeed even with NATS down: {e}")
        });
}

/// Scenario 2 with `sender` publishing and an outage of `outage`.
async fn nats_outage_during_operation(sender: &str, outage: Duration) {
    let mut net = four().start().await.unwrap();
    let readers: Vec<&str> = ["bob", "lisa", "andy"]
        .into_iter()
        .filter(|r| *r != sender)
        .collect();
    net.wait_discovered(sender, "chat", &readers).await.unwrap();
    publish(&net, sender, 1).await;
    for r in &readers {
        expect(&net, r, sender, &[1]).await;
    }
    net.stop_nats().await.unwrap();
    let h = net.client(sender).health().await.unwrap();
    assert_eq!(h["nats"], "disconnected");
    publish(&net, sender, 2).await;
    publish(&net, sender, 3).await;
    tokio::time::sleep(outage).await;
    net.start_nats().await.unwrap();
    for r in &readers {
        expect(&net, r, sender, &[2, 3]).await;
    }
    net.wait_drained(sender, Duration::from_secs(30))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_1s_nats_outage_when_alice_publishes_during_it_then_every_reader_gets_both_once() {
    nats_outage_during_operation("alice", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn given_a_1s_nats_outage_when_bob_publishes_during_it_then_every_reader_gets_both_once() {
    nats_outage_during_operation("bob", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn given_a_30s_nats_outage_when_alice_publishes_during_it_then_every_reader_gets_both_once() {
    nats_outage_during_operation("alice", Duration::from_secs(30)).await;
}

#[tokio::test]
async fn given_a_30s_nats_outage_when_bob_publishes_during_it_then_every_reader_gets_both_once() {
    nats_outage_during_operation("bob", Duration::from_secs(30)).await;
}

#[tokio::test]
async fn given_agents_that_knew_each_other_when_they_restart_without_nats_then_messages_arrive_once_nats_starts(
) {
    // Warm: the agents met before, so alice knows her readers from her database.
    let mut net = four().start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob", "lisa", "andy"])
        .await
        .unwrap();
    for n in net.nodes() {
        net.node(&n).stop().await.unwrap();
    }
    net.stop_nats().await.unwrap();
    for n in net.nodes() {
        net.node(&n).start().await.unwrap();
    }
    let r = net
        .client("alice")
        .publish_json("chat", &json!({"sender": "alice", "n": 1}))
        .await
        .unwrap();
    assert!(
        !r.unrouted,
        "warm start: readers are known from the database"
    );
    assert_eq!(r.receivers.len(), 3);
    publish(&net, "alice", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.start_nats().await.unwrap();
    for reader in ["bob", "lisa", "andy"] {
        expect(&net, reader, "alice", &[1, 2]).await;
    }
    net.wait_drained("alice", Duration::from_secs(30))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_new_database_and_no_nats_when_alice_publishes_then_readers_discovered_later_get_them_once(
) {
    // Cold: alice has never seen a reader; her messages are kept as unrouted.
    let mut net = four().nats_down().start().await.unwrap();
    let r = net
        .client("alice")
        .publish_json("chat", &json!({"sender": "alice", "n": 1}))
        .await
        .unwrap();
    assert!(r.unrouted, "no reader known yet: {r:?}");
    assert!(r.receivers.is_empty());
    publish(&net, "alice", 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.start_nats().await.unwrap();
    for reader in ["bob", "lisa", "andy"] {
        expect(&net, reader, "alice", &[1, 2]).await;
    }
    // Routed to every reader, then delivered.
    let st = net.client("alice").status(&r.id).await.unwrap();
    assert_eq!(st["receivers"].as_array().unwrap().len(), 3, "{st}");
    net.wait_drained("alice", Duration::from_secs(30))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

/// A round sent while its receiver is still reconnecting reaches nobody on the bus.
/// The receiver says hello once its subscriptions are back, and the sender resends
/// then, not after its ACK timeout (a minute here, longer than the test waits).
#[tokio::test]
async fn given_a_round_lost_while_the_receiver_reconnects_when_it_says_hello_then_the_sender_resends_at_once(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "ack_timeout", "60s")
        .set("discovery", "node_offline_timeout", "60s")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    publish(&net, "alice", 1).await;
    expect(&net, "bob", "alice", &[1]).await;
    // bob is frozen through a NATS restart: alice reconnects and still sees him online
    // (his offline timeout has not run out), so what she sends now is lost.
    net.node("bob").pause().unwrap();
    net.stop_nats().await.unwrap();
    net.start_nats().await.unwrap();
    let alice = net.client("alice");
    rmds_scenarios::harness::eventually(Duration::from_secs(20), "alice reconnected", || {
        let a = alice.clone();
        async move { (a.health().await.ok()?["nats"] == "connected").then_some(()) }
    })
    .await
    .unwrap();
    publish(&net, "alice", 2).await;
    publish(&net, "alice", 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.node("bob").resume().unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        2,
        Duration::from_secs(25),
        Duration::from_millis(500),
    )
    .await
    .expect("drain");
    let r = check_stream("alice", "bob", "chat", &[2, 3], &got.numbers_from("alice"));
    assert!(
        r.ok(),
        "within 25 s of bob's return (ACK timeout 60 s): {}",
        r.describe()
    );
    net.assert_healthy().unwrap();
}
