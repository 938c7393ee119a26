//! Frames at the edges: batches of messages with long headers never exceed the NATS
//! max payload, and forged sequence numbers near `u64::MAX` never panic a receiver.

use rmds_agent::names::{Channel, NodeId};
use rmds_agent::wire::{Codec, DataBatch, Entry, MessageBody, Packet};
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
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

#[tokio::test]
async fn given_messages_with_many_long_headers_when_batched_then_every_batch_fits_and_all_arrive() {
    let mut net = net().await;
    // Long header names and values take more MessagePack framing per pair than a
    // short one: ten of these messages fill a batch to the byte.
    let headers: Vec<(String, String)> = (0..90)
        .map(|i| (format!("{i:03}{}", "k".repeat(267)), "v".repeat(300)))
        .collect();
    let opts = rmds::PublishOptions {
        content_type: "text/plain".into(),
        headers: headers.clone(),
        ..Default::default()
    };
    net.node("bob").stop().await.unwrap();
    let alice = net.client("alice");
    let n = 20;
    for i in 0..n {
        // Incompressible text, so that snappy cannot make the batch small.
        let mut body = format!("n={i};").into_bytes();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ i as u64;
        while body.len() < 53_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(
                b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    [(x % 62) as usize],
            );
        }
        alice.publish_with("chat", body, &opts).await.unwrap();
    }
    net.node("bob").start().await.unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        n,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert_eq!(got.messages.len(), n, "not every batch reached bob");
    assert_eq!(got.messages[0].headers.len(), 90);
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_forged_sequences_near_u64_max_when_received_then_refused_and_the_real_stream_flows()
{
    let mut net = net().await;
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let codec = Codec::new(None);
    let body = |id: &str| {
        MessageBody::new(
            id.into(),
            0,
            60_000,
            "text/plain".into(),
            vec![],
            b"forged",
            None,
        )
    };
    for (base, seqs) in [
        (u64::MAX, vec![u64::MAX]),
        (u64::MAX - 1, vec![u64::MAX - 1, u64::MAX]),
        (1, vec![1, u64::MAX]),
        ((i64::MAX as u64) + 1, vec![(i64::MAX as u64) + 1]),
    ] {
        let p = Packet::Data(DataBatch {
            sender: NodeId::new("mallory").unwrap(),
            epoch: 7,
            receiver: NodeId::new("bob").unwrap(),
            channel: Channel::new("chat").unwrap(),
            base,
            entries: seqs
                .iter()
                .map(|&seq| Entry {
                    seq,
                    body: Some(body("01ARZ3NDEKTSV4RRFFQ69G5FAV")),
                    skipped: None,
                })
                .collect(),
        });
        nc.publish("rmds.node.bob.data", codec.encode(&p).into())
            .await
            .unwrap();
        // Then the next one after the forged maximum.
        let p = Packet::Data(DataBatch {
            sender: NodeId::new("mallory").unwrap(),
            epoch: 7,
            receiver: NodeId::new("bob").unwrap(),
            channel: Channel::new("chat").unwrap(),
            base: 1,
            entries: vec![Entry {
                seq: 1,
                body: None,
                skipped: None,
            }],
        });
        nc.publish("rmds.node.bob.data", codec.encode(&p).into())
            .await
            .unwrap();
    }
    nc.flush().await.unwrap();
    let alice = net.client("alice");
    for n in 1..=5 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        5,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), vec![1, 2, 3, 4, 5]);
    let bob = net.client("bob");
    eventually(Duration::from_secs(5), "forged frames counted", || {
        let c = bob.clone();
        async move { (c.stats().await.ok()?["malformed_frames"].as_u64()? >= 4).then_some(()) }
    })
    .await
    .unwrap();
    net.assert_healthy().unwrap();
}
