//! Consumer groups under faults: delivery counts that survive `kill -9`, a default
//! group that expires and comes back without replaying what it acknowledged, and a
//! WebSocket subscription whose credit comes back when the leases it held run out.

use futures::{SinkExt, StreamExt};
use rmds::GroupOptions;
use rmds_scenarios::harness::{eventually, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn pair(extra: &[(&str, &str, &str)]) -> TestNet {
    let mut b = TestNet::builder()
        .binary(bin())
        .set("delivery", "sweep_interval", "200ms");
    for (s, k, v) in extra {
        b = b.set(s, k, *v);
    }
    let net = b
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net
}

async fn publish_n(net: &TestNet, range: std::ops::RangeInclusive<u64>) {
    let alice = net.client("alice");
    for n in range {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
}

/// Pulls until something comes (at most 20 s).
async fn pull_one(net: &TestNet, group: &str) -> Vec<rmds::Message> {
    let bob = net.client("bob");
    eventually(Duration::from_secs(20), "a message to pull", || {
        let b = bob.clone();
        let g = group.to_string();
        async move {
            let m = b
                .pull("chat", &g, 10, Duration::from_millis(500))
                .await
                .ok()?;
            (!m.is_empty()).then_some(m)
        }
    })
    .await
    .unwrap()
}

fn numbers(msgs: &[rmds::Message]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m.data.as_ref().and_then(|d| d["n"].as_u64()).unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn given_max_deliveries_when_the_reader_is_killed_after_each_delivery_then_the_count_survives_and_the_message_is_dead_lettered(
) {
    let mut net = pair(&[]).await;
    let bob = net.client("bob");
    let opts = GroupOptions {
        ack_wait: Some(Duration::from_secs(30)),
        max_deliveries: Some(3),
        ..Default::default()
    };
    bob.create_group("chat", "g", &opts).await.unwrap();
    publish_n(&net, 1..=1).await;
    for round in 1..=3u32 {
        let got = pull_one(&net, "g").await;
        assert_eq!(numbers(&got), vec![1]);
        assert_eq!(got[0].deliveries, round, "delivery {round}");
        // Never acknowledged: the process dies holding the lease.
        net.node("bob").crash_restart().await.unwrap();
    }
    // Three deliveries in three lives: the fourth pull finds nothing to deliver.
    let bob = net.client("bob");
    let again = bob
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(again.is_empty(), "delivered a 4th time: {again:?}");
    let dead = bob.group_dead_letters("chat", "g").await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["deliveries"], 3, "{dead:?}");
    let info = bob.group("chat", "g").await.unwrap();
    assert_eq!(info["dead_letters"], 1, "{info}");
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_default_group_that_expired_after_its_idle_ttl_when_it_is_used_again_then_acknowledged_messages_are_not_replayed(
) {
    let mut net = pair(&[("groups", "idle_ttl", "1s")]).await;
    let bob = net.client("bob");
    publish_n(&net, 1..=5).await;
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = pull_one(&net, "default").await;
        let ids: Vec<String> = m.iter().map(|m| m.id.clone()).collect();
        bob.ack("chat", "default", &ids).await.unwrap();
        got.extend(numbers(&m));
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    eventually(
        Duration::from_secs(20),
        "the default group to expire",
        || {
            let b = bob.clone();
            async move {
                let s = b.stats().await.ok()?;
                (s["groups_expired"].as_u64()? >= 1).then_some(())
            }
        },
    )
    .await
    .unwrap();
    // The next pull creates the default group again: nothing acknowledged comes back.
    let replay = bob
        .pull("chat", "default", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(numbers(&replay), Vec::<u64>::new(), "replayed after expiry");
    publish_n(&net, 6..=6).await;
    let next = pull_one(&net, "default").await;
    assert_eq!(numbers(&next), vec![6]);
    net.assert_healthy().unwrap();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) | Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next frame of type `kind`, skipping others.
async fn next_of(ws: &mut Ws, kind: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = next(ws, left).await?;
        if v["type"] == kind {
            return Some(v);
        }
    }
}

#[tokio::test]
async fn given_a_websocket_subscription_holding_its_whole_credit_when_the_leases_run_out_then_the_credit_comes_back(
) {
    let mut net = pair(&[("groups", "ack_wait", "1s")]).await;
    let base = net.client("bob").base().replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/v1/ws"))
        .await
        .unwrap();
    send(
        &mut ws,
        json!({"op": "subscribe", "request_id": "r1", "channel": "chat", "credit": 1}),
    )
    .await;
    let r = next_of(&mut ws, "subscribed", Duration::from_secs(10))
        .await
        .unwrap();
    let sub = r["subscription"].as_str().unwrap().to_string();
    publish_n(&net, 1..=2).await;
    let first = next_of(&mut ws, "message", Duration::from_secs(20))
        .await
        .expect("the first message");
    assert_eq!(first["message"]["data"]["n"], 1, "{first}");
    assert_eq!(first["message"]["deliveries"], 1, "{first}");
    // Not acknowledged: its lease runs out after a second and the credit it used is
    // free again, so the subscription gets it redelivered.
    let again = next_of(&mut ws, "message", Duration::from_secs(10))
        .await
        .expect("the redelivery after the lease ran out");
    assert_eq!(again["message"]["data"]["n"], 1, "{again}");
    assert_eq!(again["message"]["deliveries"], 2, "{again}");
    let id = again["message"]["id"].as_str().unwrap().to_string();
    send(
        &mut ws,
        json!({"op": "ack", "request_id": "a1", "subscription": sub, "ids": [id]}),
    )
    .await;
    let second = next_of(&mut ws, "message", Duration::from_secs(10))
        .await
        .expect("the second message");
    assert_eq!(second["message"]["data"]["n"], 2, "{second}");
    net.assert_healthy().unwrap();
}
