//! Replayed signed traffic: with a cluster key, frames captured on the bus and sent
//! again later (keepalives, hellos, byes) change nothing. A reader that is still a
//! member stays a reader, stays online and receives every publish.

use futures::StreamExt;
use rmds_agent::wire::{Codec, Packet};
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "replay-test-cluster-key";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn stat(c: &rmds::Client, key: &str) -> u64 {
    c.stats().await.unwrap()[key].as_u64().unwrap_or(0)
}

/// Frames on `subject` sent by `node` (decoded with the cluster key).
struct Capture {
    sub: async_nats::Subscriber,
    codec: Codec,
}

impl Capture {
    async fn start(nc: &async_nats::Client, subject: &str) -> Capture {
        let sub = nc.subscribe(subject.to_string()).await.unwrap();
        nc.flush().await.unwrap();
        Capture {
            sub,
            codec: Codec::new(Some(KEY)),
        }
    }

    /// The next frame from `node` that `keep` accepts.
    async fn next_from(&mut self, node: &str, keep: impl Fn(&Packet) -> bool) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let msg = self.sub.next().await.unwrap();
                let from = match self.codec.decode(&msg.payload) {
                    Ok(p @ (Packet::Keepalive(_) | Packet::Hello(_))) if keep(&p) => match p {
                        Packet::Keepalive(a) | Packet::Hello(a) => a.node.to_string(),
                        _ => unreachable!(),
                    },
                    Ok(Packet::Bye(b)) if keep(&Packet::Bye(b.clone())) => b.node.to_string(),
                    _ => continue,
                };
                if from == node {
                    return msg.payload.to_vec();
                }
            }
        })
        .await
        .expect("a frame from the node")
    }
}

/// Replays `frame` on `subject` and waits until `alice` has handled it (counted as a
/// replay, or applied as a keepalive by an agent without replay protection).
async fn replay(nc: &async_nats::Client, alice: &rmds::Client, subject: &str, frame: &[u8]) {
    let seen = |s: serde_json::Value| {
        s["replayed_frames"].as_u64().unwrap_or(0) + s["received_keepalives"].as_u64().unwrap_or(0)
    };
    let before = seen(alice.stats().await.unwrap());
    nc.publish(subject.to_string(), frame.to_vec().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    if subject.ends_with("bye") {
        // A bye is not counted as a keepalive: give it the same path time as a probe.
        tokio::time::sleep(Duration::from_millis(500)).await;
        return;
    }
    eventually(
        Duration::from_secs(10),
        "alice to handle the replay",
        || {
            let a = alice.clone();
            async move { (seen(a.stats().await.ok()?) > before).then_some(()) }
        },
    )
    .await
    .unwrap();
}

async fn bob_reads_chat_at_alice(alice: &rmds::Client) -> (bool, bool) {
    let v = alice
        .get_json("/v1/channels/chat/subscribers")
        .await
        .unwrap();
    let bob = v["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == "bob" && s["role"] != "writer")
        .cloned();
    match bob {
        Some(b) => (true, b["online"] == true),
        None => (false, false),
    }
}

#[tokio::test]
async fn given_a_cluster_key_when_old_keepalives_and_byes_are_replayed_then_bob_stays_a_reader_and_receives_everything(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("nats", "cluster_key", KEY)
        // Slow keepalives: a replayed frame's effect would last until the next one.
        .set("discovery", "keepalive_interval", "60s")
        .set("discovery", "node_offline_timeout", "120s")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["other:reader"])
        .start()
        .await
        .unwrap();
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let alice = net.client("alice");
    let bob = net.client("bob");
    for c in [&alice, &bob] {
        eventually(Duration::from_secs(10), "NATS connected", || {
            let c = c.clone();
            async move { (c.health().await.ok()?["nats"] == "connected").then_some(()) }
        })
        .await
        .unwrap();
    }

    // Given a keepalive of bob captured before he joined chat.
    let mut keepalives = Capture::start(&nc, "rmds.keepalive").await;
    bob.join("other2", rmds::Role::Reader).await.unwrap();
    let old_keepalive = keepalives.next_from("bob", |_| true).await;
    // When bob joins chat as a reader and alice knows it.
    bob.join("chat", rmds::Role::Reader).await.unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();

    // Then replaying the old keepalive does not remove bob from chat.
    replay(&nc, &alice, "rmds.keepalive", &old_keepalive).await;
    assert_eq!(bob_reads_chat_at_alice(&alice).await, (true, true));
    let r = alice
        .publish_json("chat", &json!({"sender": "alice", "n": 1}))
        .await
        .unwrap();
    assert_eq!(r.receivers, vec!["bob".to_string()], "bob must be routed");
    assert!(stat(&alice, "replayed_frames").await >= 1);

    // And after alice restarts (what she knows comes from her database), again.
    net.node("alice").stop().await.unwrap();
    net.node("alice").start().await.unwrap();
    replay(&nc, &alice, "rmds.keepalive", &old_keepalive).await;
    assert!(bob_reads_chat_at_alice(&alice).await.0);
    let r = alice
        .publish_json("chat", &json!({"sender": "alice", "n": 2}))
        .await
        .unwrap();
    assert_eq!(r.receivers, vec!["bob".to_string()]);

    // When bob restarts (his bye and his previous run's frames are captured) ...
    let mut byes = Capture::start(&nc, "rmds.bye").await;
    net.node("bob").stop().await.unwrap();
    let old_bye = byes.next_from("bob", |_| true).await;
    net.node("bob").start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    // ... then neither his old bye nor his old keepalive changes anything.
    replay(&nc, &alice, "rmds.bye", &old_bye).await;
    replay(&nc, &alice, "rmds.keepalive", &old_keepalive).await;
    assert_eq!(bob_reads_chat_at_alice(&alice).await, (true, true));
    let r = alice
        .publish_json("chat", &json!({"sender": "alice", "n": 3}))
        .await
        .unwrap();
    assert_eq!(r.receivers, vec!["bob".to_string()]);

    let got = drain(
        &bob,
        "chat",
        "default",
        3,
        Duration::from_secs(20),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), vec![1, 2, 3]);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_cluster_key_when_a_nack_is_replayed_then_the_copy_is_dropped_and_counted() {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("nats", "cluster_key", KEY)
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    // bob writes no channel: his periodic keepalives go to the writers' subject.
    let mut keepalives = Capture::start(&nc, "rmds.keepalive.reader").await;
    let frame = keepalives.next_from("bob", |_| true).await;
    let codec = Codec::new(Some(KEY));
    let Ok(Packet::Keepalive(bob)) = codec.decode(&frame) else {
        panic!("a keepalive")
    };
    let nodes = alice.get_json("/v1/nodes").await.unwrap();
    let epoch = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["self"] == true)
        .unwrap()["epoch"]
        .as_u64()
        .unwrap();
    alice
        .publish_json("chat", &json!({"sender": "alice", "n": 1}))
        .await
        .unwrap();
    // A refusal as bob would send it (this test holds the key), sent twice.
    let nack = codec.encode(&Packet::Nack(rmds_agent::wire::Nack {
        receiver: bob.node.clone(),
        sender: rmds_agent::names::NodeId::new("alice").unwrap(),
        channel: rmds_agent::names::Channel::new("chat").unwrap(),
        epoch,
        acked: 0,
        reason: "captured".into(),
        stamp: rmds_agent::wire::Stamp {
            boot: bob.stamp.boot,
            counter: bob.stamp.counter + 1_000_000,
        },
    }));
    let before = stat(&alice, "replayed_frames").await;
    for _ in 0..2 {
        nc.publish("rmds.node.alice.ack", nack.clone().into())
            .await
            .unwrap();
    }
    nc.flush().await.unwrap();
    eventually(Duration::from_secs(10), "the copy to be dropped", || {
        let a = alice.clone();
        async move { (stat(&a, "replayed_frames").await > before).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(stat(&alice, "received_nacks").await, 1);
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        1,
        Duration::from_secs(20),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), vec![1]);
    net.assert_healthy().unwrap();
}
