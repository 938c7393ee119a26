//! What a receiver has decides: a skip for a message it already committed is reported
//! back as delivered (`had`), and a message id reaches a channel's log once, whatever
//! stream carries it.

use futures::StreamExt;
use rmds_agent::names::{Channel, NodeId};
use rmds_agent::wire::{Codec, DataBatch, Entry, MessageBody, Packet};
use rmds_scenarios::harness::{eventually, pull_some, TestNet};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

const ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

fn batch(epoch: u64, entries: Vec<Entry>) -> Vec<u8> {
    Codec::new(None).encode(&Packet::Data(DataBatch {
        sender: NodeId::new("ghost").unwrap(),
        epoch,
        receiver: NodeId::new("bob").unwrap(),
        channel: Channel::new("chat").unwrap(),
        base: 1,
        entries,
    }))
}

fn message(seq: u64, id: &str) -> Entry {
    Entry {
        seq,
        body: Some(MessageBody::new(
            id.into(),
            0,
            60_000,
            "text/plain".into(),
            vec![],
            b"hello",
            None,
        )),
        skipped: None,
    }
}

/// The next ACK of the stream with `epoch` (the probes' ACKs are skipped).
async fn next_ack(acks: &mut async_nats::Subscriber, epoch: u64) -> rmds_agent::wire::Ack {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), acks.next())
            .await
            .expect("no ack")
            .unwrap();
        match Codec::new(None).decode(&m.payload).unwrap() {
            Packet::Ack(a) if a.epoch == epoch => return a,
            Packet::Ack(_) => {}
            other => panic!("not an ack: {other:?}"),
        }
    }
}

/// Waits until bob's inbox listens: a stray skip of a throwaway stream is counted.
async fn wait_subscribed(net: &TestNet, nc: &async_nats::Client) {
    let bob = net.client("bob");
    eventually(Duration::from_secs(10), "bob's inbox listening", || {
        let (c, nc) = (bob.clone(), nc.clone());
        async move {
            let probe = Entry {
                seq: 1,
                body: None,
                skipped: None,
            };
            nc.publish("rmds.node.bob.data", batch(1, vec![probe]).into())
                .await
                .ok()?;
            nc.flush().await.ok()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            (c.stats().await.ok()?["sent_acks"].as_u64()? > 0).then_some(())
        }
    })
    .await
    .unwrap();
}

async fn net() -> TestNet {
    TestNet::builder()
        .binary(bin())
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn given_a_skip_for_a_message_the_receiver_has_then_its_ack_reports_it_had_it() {
    let mut net = net().await;
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let mut acks = nc.subscribe("rmds.node.ghost.ack").await.unwrap();
    nc.flush().await.unwrap();
    let data = "rmds.node.bob.data";
    wait_subscribed(&net, &nc).await;
    nc.publish(data, batch(5, vec![message(1, ID)]).into())
        .await
        .unwrap();
    let first = next_ack(&mut acks, 5).await;
    assert_eq!((first.acked, first.had.clone()), (1, vec![]));
    // The sender never heard that ACK and gave up on 1; it skips 1 (naming it) and
    // 2, a message bob never had.
    let skips = vec![
        Entry {
            seq: 1,
            body: None,
            skipped: Some(ID.into()),
        },
        Entry {
            seq: 2,
            body: None,
            skipped: Some("01ARZ3NDEKTSV4RRFFQ69G5FAW".into()),
        },
    ];
    nc.publish(data, batch(5, skips).into()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let a = next_ack(&mut acks, 5).await;
        seen.push((a.acked, a.had));
    }
    assert!(seen.contains(&(1, vec![1])), "no had report: {seen:?}");
    assert!(
        seen.contains(&(2, vec![])),
        "the new skip is acknowledged: {seen:?}"
    );
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_the_same_message_on_another_stream_then_the_log_holds_it_once() {
    let mut net = net().await;
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    wait_subscribed(&net, &nc).await;
    for epoch in [5, 6, 7] {
        nc.publish(
            "rmds.node.bob.data",
            batch(epoch, vec![message(1, ID)]).into(),
        )
        .await
        .unwrap();
    }
    nc.flush().await.unwrap();
    let bob = net.client("bob");
    eventually(Duration::from_secs(10), "repeats counted", || {
        let c = bob.clone();
        async move { (c.stats().await.ok()?["repeated_ids"].as_u64()? == 2).then_some(()) }
    })
    .await
    .unwrap();
    let got = pull_some(&bob, "chat", "default", 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let more = bob
        .pull("chat", "default", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(
        more.is_empty(),
        "the same message id was appended twice: {more:?}"
    );
    net.assert_healthy().unwrap();
}
