//! Limits and poison: oversize payloads, roles, back-pressure, expiry and dead letters
//! never stall a stream.

use futures::StreamExt;
use rmds_agent::names::{Channel, NodeId, Role};
use rmds_agent::wire::{Ack, Announce, Codec, Packet, Stamp, StatePage};
use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn expect(net: &TestNet, reader: &str, want: &[u64]) {
    let got = drain(
        &net.client(reader),
        "chat",
        "default",
        want.len(),
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let r = check_stream("alice", reader, "chat", want, &got.numbers_from("alice"));
    assert!(r.ok(), "{}", r.describe());
}

async fn publish(c: &rmds::Client, n: u64) -> Result<rmds::Receipt, rmds::Error> {
    c.publish_json("chat", &json!({"sender": "alice", "n": n}))
        .await
}

#[tokio::test]
async fn given_a_payload_over_the_nats_max_when_published_then_413_and_the_stream_keeps_flowing() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let c = net.client("alice");
    publish(&c, 1).await.unwrap();
    let big = vec![b'x'; 1024 * 1024 + 1];
    let err = c
        .publish_bytes("chat", big, "application/octet-stream", None)
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(413), "{err}");
    assert_eq!(err.code.as_deref(), Some("payload_too_large"));
    assert!(err.message.contains("max payload"), "{err}");
    // Just under the limit still goes through, and so does what follows.
    let near = vec![b'y'; 1000 * 1000];
    c.publish_bytes("chat", near, "application/octet-stream", None)
        .await
        .unwrap();
    publish(&c, 2).await.unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        3,
        Duration::from_secs(30),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.messages.len(), 3);
    assert_eq!(got.numbers_from("alice"), vec![1, 2]);
    assert_eq!(got.messages[1].payload().len(), 1000 * 1000);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_reader_only_membership_when_publishing_then_403() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("lisa", &["chat:reader"])
        .start()
        .await
        .unwrap();
    let err = net
        .client("lisa")
        .publish_text("chat", "hi")
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(403));
    assert_eq!(err.code.as_deref(), Some("forbidden"));
    let err = net
        .client("lisa")
        .publish_text("other", "hi")
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(403), "not a member at all");
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_reject_policy_when_backlog_is_full_then_429_and_nothing_stored() {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "max_messages_per_receiver", 5)
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net.node("bob").stop().await.unwrap();
    let c = net.client("alice");
    for n in 1..=5 {
        publish(&c, n).await.unwrap();
    }
    let err = publish(&c, 6).await.unwrap_err();
    assert_eq!(err.status, Some(429), "{err}");
    assert_eq!(err.code.as_deref(), Some("backlog_full"));
    assert_eq!(
        c.stats().await.unwrap()["published"],
        5,
        "nothing stored for the refused one"
    );
    net.node("bob").start().await.unwrap();
    expect(&net, "bob", &[1, 2, 3, 4, 5]).await;
    // Room again once delivered.
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    publish(&c, 7).await.unwrap();
    expect(&net, "bob", &[7]).await;
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_drop_oldest_policy_when_backlog_is_full_then_oldest_dropped_and_counted() {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "max_messages_per_receiver", 5)
        .set("delivery", "overflow", "drop_oldest")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net.node("bob").stop().await.unwrap();
    let c = net.client("alice");
    let first = publish(&c, 1).await.unwrap();
    for n in 2..=7 {
        publish(&c, n).await.unwrap();
    }
    let stats = c.stats().await.unwrap();
    assert_eq!(stats["dropped"], 2, "{stats}");
    let st = c.status(&first.id).await.unwrap();
    assert_eq!(st["receivers"][0]["state"], "dropped", "{st}");
    net.node("bob").start().await.unwrap();
    // The dropped ones are explicit skips: the rest flows in order.
    expect(&net, "bob", &[3, 4, 5, 6, 7]).await;
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_drop_oldest_when_one_batch_overflows_then_the_items_it_dropped_never_reach_the_reader(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "max_messages_per_receiver", 3)
        .set("delivery", "overflow", "drop_oldest")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let c = net.client("alice");
    // The stream to bob exists and is idle: the batch's deliveries reach it from memory.
    publish(&c, 0).await.unwrap();
    expect(&net, "bob", &[0]).await;
    // The batch's later items drop its earlier ones, all in the same commit.
    let items: Vec<_> = (1..=10u64)
        .map(|n| json!({"sender": "alice", "n": n}))
        .collect();
    let v = c.publish_batch("chat", &items).await.unwrap();
    assert_eq!(v["accepted"], 10, "{v}");
    let stats = c.stats().await.unwrap();
    assert_eq!(stats["dropped"], 7, "{stats}");
    expect(&net, "bob", &[8, 9, 10]).await;
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_message_that_expires_while_its_reader_is_away_then_it_is_counted_expired_and_the_rest_flows(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net.node("bob").stop().await.unwrap();
    let c = net.client("alice");
    publish(&c, 1).await.unwrap();
    let short = c
        .publish_with(
            "chat",
            serde_json::to_vec(&json!({"sender": "alice", "n": 2})).unwrap(),
            &rmds::PublishOptions {
                content_type: "application/json".into(),
                ttl: Some(Duration::from_millis(500)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    publish(&c, 3).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.node("bob").start().await.unwrap();
    expect(&net, "bob", &[1, 3]).await;
    let st = c.status(&short.id).await.unwrap();
    assert_eq!(st["receivers"][0]["state"], "expired", "{st}");
    assert!(c.stats().await.unwrap()["expired"].as_u64().unwrap() >= 1);
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

/// A receiver on the bus, written by hand: it accepts sequences in order, but refuses
/// to ever accept the message with n == `poison` (as if its store rejected it). It
/// honours explicit skips.
async fn ghost_receiver(
    nats_url: String,
    poison: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<u64> {
    let nc = async_nats::connect(nats_url).await.unwrap();
    let codec = Codec::new(None);
    let me = NodeId::new("ghost").unwrap();
    let mut data = nc.subscribe("rmds.node.ghost.data").await.unwrap();
    let mut state = nc.subscribe("rmds.node.ghost.state").await.unwrap();
    let list: std::collections::BTreeMap<Channel, Role> =
        [(Channel::new("chat").unwrap(), Role::Reader)].into();
    let digest = rmds_agent::discovery::state::digest(
        Stamp {
            boot: 1,
            counter: 0,
        },
        &list,
    );
    let mut counter = 0;
    let mut announce = move || {
        counter += 1;
        Packet::Keepalive(Announce {
            node: NodeId::new("ghost").unwrap(),
            epoch: 42,
            stamp: Stamp { boot: 1, counter },
            digest,
            pending: 0,
            api: String::new(),
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last = 0u64;
    let mut got = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                nc.publish("rmds.keepalive", codec.encode(&announce()).into()).await.unwrap();
            }
            Some(msg) = state.next() => {
                let page = Packet::State(StatePage {
                    node: me.clone(),
                    digest,
                    page: 0,
                    pages: 1,
                    memberships: list.clone().into_iter().collect(),
                });
                if let Some(reply) = msg.reply {
                    nc.publish(reply, codec.encode(&page).into()).await.unwrap();
                }
            }
            Some(msg) = data.next() => {
                let Ok(Packet::Data(b)) = codec.decode(&msg.payload) else { continue };
                for e in &b.entries {
                    if e.seq != last + 1 { continue; }
                    if let Some(body) = &e.body {
                        let v: serde_json::Value = serde_json::from_slice(&body.decompressed(1 << 20).unwrap()).unwrap();
                        let n = v["n"].as_u64().unwrap();
                        if n == poison.load(Ordering::SeqCst) { break; }
                        got.push(n);
                    }
                    last = e.seq;
                }
                let ack = Packet::Ack(Ack { receiver: me.clone(), sender: b.sender.clone(), channel: b.channel.clone(), epoch: b.epoch, acked: last, had: vec![] });
                nc.publish("rmds.node.alice.ack", codec.encode(&ack).into()).await.unwrap();
            }
        }
    }
    got
}

#[tokio::test]
async fn given_a_receiver_that_never_acks_one_message_then_it_is_dead_lettered_and_the_stream_keeps_flowing(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "max_retry_attempts", 3)
        .set("delivery", "ack_timeout", "300ms")
        .set("delivery", "retry_initial", "50ms")
        .set("delivery", "retry_max", "200ms")
        .agent("alice", &["chat:writer"])
        .start()
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let poison = Arc::new(AtomicU64::new(2));
    let ghost = tokio::spawn(ghost_receiver(net.nats.url(), poison.clone(), stop.clone()));
    net.wait_discovered("alice", "chat", &["ghost"])
        .await
        .unwrap();
    let c = net.client("alice");
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(publish(&c, n).await.unwrap().id);
    }
    net.wait_drained("alice", Duration::from_secs(30))
        .await
        .unwrap();
    // The dead letter is listed with its reason and attempt history.
    let dead = c.get_json("/v1/dead-letters?channel=chat").await.unwrap();
    let list = dead["dead_letters"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{dead}");
    assert_eq!(list[0]["id"], ids[1].as_str());
    assert_eq!(list[0]["receiver"], "ghost");
    assert_eq!(list[0]["attempts"], 3);
    // Every send is in the history: at least one per counted attempt (a resend after
    // a reconnect or a liveness change adds one without counting as an attempt).
    assert!(list[0]["history"].as_array().unwrap().len() >= 3, "{dead}");
    let one = c
        .get_json(&format!("/v1/dead-letters/{}", ids[1]))
        .await
        .unwrap();
    assert_eq!(one["message"]["receivers"][0]["state"], "dead", "{one}");
    assert_eq!(
        c.get_json("/v1/dead-letters?receiver=andy").await.unwrap()["dead_letters"],
        json!([])
    );
    // The receiver recovers; a redrive sends the message once more.
    poison.store(0, Ordering::SeqCst);
    let r = c
        .post_json(&format!("/v1/dead-letters/{}/redrive", ids[1]), &json!({}))
        .await
        .unwrap();
    assert_eq!(r["receivers"], json!(["ghost"]));
    net.wait_drained("alice", Duration::from_secs(30))
        .await
        .unwrap();
    let again = c
        .post_json(&format!("/v1/dead-letters/{}/redrive", ids[1]), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(again.status, Some(404));
    let gone = c
        .delete(&format!("/v1/dead-letters/{}", ids[1]))
        .await
        .unwrap_err();
    assert_eq!(gone.status, Some(404));
    let bad = c.get_json("/v1/dead-letters/not-a-ulid").await.unwrap_err();
    assert_eq!(bad.status, Some(400));
    stop.cancel();
    let got = ghost.await.unwrap();
    assert_eq!(
        got,
        vec![1, 3, 4, 5, 2],
        "the poison message is skipped explicitly, the rest flows, the redrive delivers it"
    );
    let st = c.status(&ids[1]).await.unwrap();
    let states: Vec<&str> = st["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["dead", "delivered"], "{st}");
    assert!(st["receivers"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("max_retry_attempts"));
    for i in [0, 2, 3, 4] {
        let st = c.status(&ids[i]).await.unwrap();
        assert_eq!(st["receivers"][0]["state"], "delivered", "{st}");
    }
    let stats = c.stats().await.unwrap();
    assert_eq!(stats["dead_lettered"], 1, "{stats}");
    eventually(Duration::from_secs(5), "alice healthy", || async {
        Some(())
    })
    .await
    .unwrap();
    net.assert_healthy().unwrap();
}
