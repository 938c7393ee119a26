//! Hostile or broken input: forged, stale and duplicate ACKs, replayed envelopes,
//! malformed NATS messages and HTTP bodies. Nothing is lost, duplicated or reordered,
//! everything bad is counted or answered 4xx, and the agent never panics.

use futures::StreamExt;
use rmds_agent::names::{Channel, NodeId};
use rmds_agent::wire::{Ack, Codec, Packet};
use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

fn ack(sender_epoch: u64, acked: u64) -> Packet {
    Packet::Ack(Ack {
        receiver: NodeId::new("bob").unwrap(),
        sender: NodeId::new("alice").unwrap(),
        channel: Channel::new("chat").unwrap(),
        epoch: sender_epoch,
        acked,
        had: vec![],
    })
}

async fn epoch_of(c: &rmds::Client) -> u64 {
    let v = c.get_json("/v1/nodes").await.unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["self"] == true)
        .unwrap()["epoch"]
        .as_u64()
        .unwrap()
}

async fn stat(c: &rmds::Client, key: &str) -> u64 {
    c.stats().await.unwrap()[key].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn given_forged_stale_and_duplicate_acks_and_replayed_envelopes_then_nothing_is_lost_duplicated_or_reordered(
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
    let alice = net.client("alice");
    let epoch = epoch_of(&alice).await;
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let codec = Codec::new(None);
    // Record every real envelope sent to bob, to replay later.
    let mut tap = nc.subscribe("rmds.node.bob.data").await.unwrap();
    nc.flush().await.unwrap();

    // Bob is away: alice queues 1..=20 and sends nothing.
    net.node("bob").stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 1..=20 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    // Forged ACKs for sequences never sent, with the right and a wrong epoch.
    // (The one above the highest possible sequence is refused while decoding.)
    let refused = |a: rmds::Client| async move {
        stat(&a, "invalid_acks").await + stat(&a, "malformed_frames").await
    };
    let before = refused(alice.clone()).await;
    for a in [
        ack(epoch, 20),
        ack(epoch, 5),
        ack(epoch ^ 1, 20),
        ack(epoch, u64::MAX),
    ] {
        nc.publish("rmds.node.alice.ack", codec.encode(&a).into())
            .await
            .unwrap();
    }
    nc.flush().await.unwrap();
    eventually(Duration::from_secs(5), "forged acks counted", || {
        let a = alice.clone();
        async move { (refused(a).await >= before + 4).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        stat(&alice, "pending_messages").await,
        20,
        "forged ACKs must not acknowledge anything"
    );
    assert_eq!(stat(&alice, "delivered").await, 0);

    net.node("bob").start().await.unwrap();
    let want: Vec<u64> = (1..=20).collect();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        20,
        Duration::from_secs(30),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let r = check_stream("alice", "bob", "chat", &want, &got.numbers_from("alice"));
    assert!(r.ok(), "{}", r.describe());
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();

    // Stale, duplicate and out-of-order ACKs after the fact change nothing.
    for a in [
        ack(epoch, 3),
        ack(epoch, 20),
        ack(epoch, 10),
        ack(epoch, 20),
    ] {
        nc.publish("rmds.node.alice.ack", codec.encode(&a).into())
            .await
            .unwrap();
    }
    // Replay every captured envelope to bob, twice.
    let mut frames = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), tap.next()).await {
        frames.push(m.payload);
    }
    assert!(!frames.is_empty(), "captured real envelopes");
    let dup_before = stat(&net.client("bob"), "duplicates").await;
    for _ in 0..2 {
        for f in &frames {
            nc.publish("rmds.node.bob.data", f.clone()).await.unwrap();
        }
    }
    nc.flush().await.unwrap();
    let extra = drain(
        &net.client("bob"),
        "chat",
        "default",
        0,
        Duration::from_secs(2),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert!(
        extra.messages.is_empty(),
        "replayed envelopes were delivered again: {:?}",
        extra.numbers()
    );
    assert!(stat(&net.client("bob"), "duplicates").await > dup_before);
    assert_eq!(stat(&alice, "delivered").await, 20);
    // Still delivering normally afterwards.
    alice
        .publish_json("chat", &json!({"sender": "alice", "n": 21}))
        .await
        .unwrap();
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
    assert_eq!(got.numbers_from("alice"), vec![21]);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_malformed_nats_messages_on_every_subject_then_they_are_counted_and_dropped() {
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
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let codec = Codec::new(None);
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![9, 0, 1, 2, 3],
        vec![1, 0, 0xc1, 0xff, 0x00],
        b"{\"json\":true}".to_vec(),
        vec![1, 0]
            .into_iter()
            .chain(std::iter::repeat_n(0x92, 5000))
            .collect(),
        // A valid frame of the wrong kind on a data subject.
        codec.encode(&ack(1, 1)),
    ];
    for subject in [
        "rmds.node.bob.data",
        "rmds.node.alice.ack",
        "rmds.hello",
        "rmds.keepalive",
        "rmds.bye",
    ] {
        for g in &garbage {
            nc.publish(subject, g.clone().into()).await.unwrap();
        }
    }
    nc.flush().await.unwrap();
    let bob = net.client("bob");
    eventually(
        Duration::from_secs(5),
        "malformed frames counted at bob",
        || {
            let b = bob.clone();
            async move { (stat(&b, "malformed_frames").await >= 12).then_some(()) }
        },
    )
    .await
    .unwrap();
    assert!(stat(&bob, "misrouted_frames").await >= 1);
    // Delivery still works.
    net.client("alice")
        .publish_json("chat", &json!({"sender": "alice", "n": 1}))
        .await
        .unwrap();
    let got = drain(
        &bob,
        "chat",
        "default",
        1,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), vec![1]);
    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        net.node("bob").port()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(metrics.contains("rmds_malformed_frames_total"), "{metrics}");
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_cluster_key_when_unsigned_or_wrongly_signed_traffic_arrives_then_it_is_dropped_and_counted(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("nats", "cluster_key", "s3cret-cluster-key")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    let epoch = epoch_of(&alice).await;
    net.node("bob").stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 1..=3 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    for codec in [Codec::new(None), Codec::new(Some("wrong-key"))] {
        nc.publish("rmds.node.alice.ack", codec.encode(&ack(epoch, 3)).into())
            .await
            .unwrap();
    }
    nc.flush().await.unwrap();
    eventually(Duration::from_secs(5), "bad signatures counted", || {
        let a = alice.clone();
        async move { (stat(&a, "bad_signatures").await >= 2).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(stat(&alice, "pending_messages").await, 3);
    net.node("bob").start().await.unwrap();
    let got = drain(
        &net.client("bob"),
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

async fn call(method: &str, url: &str, body: Option<&str>, ct: &str) -> (u16, Value) {
    let c = reqwest::Client::new();
    // A local program: marked, so that text bodies reach the handlers' own checks.
    let mut req = c
        .request(method.parse().unwrap(), url)
        .header(rmds::REQUEST_MARKER, "1");
    if let Some(b) = body {
        req = req.header("content-type", ct).body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn given_malformed_http_requests_then_each_gets_a_4xx_with_the_error_shape_and_is_counted() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:rw"])
        .start()
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", net.node("alice").port());
    let json = "application/json";
    let cases: Vec<(&str, String, Option<&str>, &str, u16)> = vec![
        (
            "PUT",
            format!("{base}/v1/channels/chat"),
            Some("{not json"),
            json,
            400,
        ),
        (
            "PUT",
            format!("{base}/v1/channels/chat"),
            Some("{\"role\":\"admin\"}"),
            json,
            400,
        ),
        (
            "PUT",
            format!("{base}/v1/channels/chat"),
            Some("{\"rol\":\"reader\"}"),
            json,
            400,
        ),
        (
            "PUT",
            format!("{base}/v1/channels/a*b"),
            Some("{\"role\":\"reader\"}"),
            json,
            400,
        ),
        (
            "PUT",
            format!("{base}/v1/channels/a%20b"),
            Some("{\"role\":\"reader\"}"),
            json,
            400,
        ),
        (
            "PUT",
            format!("{base}/v1/channels/{}", "x".repeat(65)),
            Some("{\"role\":\"reader\"}"),
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/messages"),
            Some("{broken"),
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/messages?ttl=forever"),
            Some("x"),
            "text/plain",
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/messages?ttl=0s"),
            Some("x"),
            "text/plain",
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/ch>/messages"),
            Some("x"),
            "text/plain",
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/messages:batch"),
            Some("[]"),
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/messages:batch"),
            Some("{\"a\":1}\n{oops"),
            json,
            400,
        ),
        (
            "GET",
            format!("{base}/v1/channels/chat/messages?max=0"),
            None,
            json,
            400,
        ),
        (
            "GET",
            format!("{base}/v1/channels/chat/messages?max=abc"),
            None,
            json,
            400,
        ),
        (
            "GET",
            format!("{base}/v1/channels/chat/messages?wait=1h"),
            None,
            json,
            400,
        ),
        (
            "GET",
            format!("{base}/v1/channels/chat/messages?group=a.b"),
            None,
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/acks"),
            Some("{\"ids\":\"x\"}"),
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/acks"),
            Some("{\"ids\":[]}"),
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/acks"),
            Some("[1,2]"),
            json,
            400,
        ),
        (
            "POST",
            format!("{base}/v1/channels/chat/nacks"),
            Some("{\"ids\":[\"a\"],\"delay\":\"soon\"}"),
            json,
            400,
        ),
        (
            "GET",
            format!("{base}/v1/messages/not-a-ulid!"),
            None,
            json,
            400,
        ),
        (
            "GET",
            format!("{base}/v1/messages/01J00000000000000000000000"),
            None,
            json,
            404,
        ),
        (
            "DELETE",
            format!("{base}/v1/channels/never-joined"),
            None,
            json,
            404,
        ),
        ("GET", format!("{base}/v1/nope"), None, json, 404),
        ("PATCH", format!("{base}/v1/stats"), None, json, 405),
    ];
    let before = stat(&net.client("alice"), "api_client_errors").await;
    for (method, url, body, ct, want) in &cases {
        let (status, v) = call(method, url, *body, ct).await;
        assert_eq!(status, *want, "{method} {url} {body:?} -> {status} {v}");
        let code = v["error"]["code"].as_str().unwrap_or_default();
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && !message.is_empty(),
            "{method} {url}: error shape missing: {v}"
        );
        assert!(
            code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "code not snake_case: {code}"
        );
    }
    let after = stat(&net.client("alice"), "api_client_errors").await;
    assert!(
        after >= before + cases.len() as u64,
        "4xx answers are counted ({before} -> {after})"
    );
    // The agent still works.
    net.client("alice")
        .publish_text("chat", "still fine")
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}
