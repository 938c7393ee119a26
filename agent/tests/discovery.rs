//! Discovery that scales with change: keepalives stay small whatever the number of
//! channels, and a node whose membership list is far larger than the NATS max payload
//! stays online, with every membership known at its peers (fetched in pages).

use futures::StreamExt;
use rmds_agent::wire::{Codec, Packet};
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "discovery-test-cluster-key";
const MAX_PAYLOAD: usize = 8 * 1024;
const CHANNELS: usize = 600;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

/// A 64-character channel name.
fn channel(i: usize) -> String {
    format!("ch-{i:04}-{}", "x".repeat(56))
}

/// How many memberships `of` has as `at` knows it, and whether it is online there.
async fn known_at(at: &rmds::Client, of: &str) -> Option<(usize, bool)> {
    let v = at.get_json("/v1/nodes").await.ok()?;
    let n = v["nodes"].as_array()?.iter().find(|n| n["node_id"] == of)?;
    Some((n["memberships"].as_object()?.len(), n["online"] == true))
}

/// Size of the next keepalive of each of `nodes` seen on the bus.
async fn keepalive_sizes(nc: &async_nats::Client, nodes: &[&str]) -> BTreeMap<String, usize> {
    let codec = Codec::new(Some(KEY));
    // A writer's periodic keepalives go to every node, a reader-only node's to the
    // writers only.
    let common = nc.subscribe("rmds.keepalive").await.unwrap();
    let readers = nc.subscribe("rmds.keepalive.reader").await.unwrap();
    let mut sub = futures::stream::select(common, readers);
    let mut sizes = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while sizes.len() < nodes.len() {
            let msg = sub.next().await.unwrap();
            if let Ok(Packet::Keepalive(a)) = codec.decode(&msg.payload) {
                if nodes.contains(&a.node.as_str()) {
                    sizes.insert(a.node.to_string(), msg.payload.len());
                }
            }
        }
    })
    .await
    .expect("a keepalive of every node");
    sizes
}

#[tokio::test]
async fn given_more_channels_than_fit_in_max_payload_when_announced_then_the_node_stays_online_fully_known_and_keepalives_stay_small(
) {
    let mut joins: Vec<String> = (0..CHANNELS)
        .map(|i| format!("{}:reader", channel(i)))
        .collect();
    joins.push("chat:reader".into());
    let joins: Vec<&str> = joins.iter().map(String::as_str).collect();
    let mut net = TestNet::builder()
        .binary(bin())
        .nats_max_payload(MAX_PAYLOAD)
        .set("nats", "cluster_key", KEY)
        .agent("alice", &["chat:writer"])
        .agent("bob", &joins)
        .start()
        .await
        .unwrap();
    let alice = net.client("alice");
    let bob = net.client("bob");
    // The list alone is several times the max payload.
    const { assert!(CHANNELS * 64 > 4 * MAX_PAYLOAD) };

    eventually(
        Duration::from_secs(30),
        "alice to know all of bob's memberships, online",
        || {
            let a = alice.clone();
            async move { (known_at(&a, "bob").await? == (CHANNELS + 1, true)).then_some(()) }
        },
    )
    .await
    .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();

    // Keepalives are small and do not grow with the channel count: bob's (601
    // channels) is the size of alice's (1 channel), up to the ids' lengths.
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let sizes = keepalive_sizes(&nc, &["alice", "bob"]).await;
    assert!(
        sizes["bob"] <= 256,
        "bob's keepalive is {} bytes",
        sizes["bob"]
    );
    assert!(
        sizes["bob"].abs_diff(sizes["alice"]) <= 16,
        "keepalive sizes {sizes:?}"
    );

    // A change is announced at once and fetched: bob leaves one channel, joins another.
    bob.leave(&channel(0)).await.unwrap();
    bob.join("late", rmds::Role::Reader).await.unwrap();
    net.wait_discovered("alice", "late", &["bob"])
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the leave to be known", || {
        let a = alice.clone();
        async move {
            let v = a.get_json("/v1/nodes").await.ok()?;
            let n = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["node_id"] == "bob")?
                .clone();
            (n["memberships"].get(channel(0)).is_none()).then_some(())
        }
    })
    .await
    .unwrap();
    assert!(
        alice.stats().await.unwrap()["state_fetches"]
            .as_u64()
            .unwrap()
            >= 2
    );

    // Publishes reach bob.
    for n in 1..=3 {
        let r = alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
        assert_eq!(r.receivers, vec!["bob".to_string()]);
    }
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
