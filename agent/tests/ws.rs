//! The WebSocket API and the live tap, end to end: credit-based flow control, acks
//! granting more, publish over the socket, errors with request ids, a client that
//! stops reading disconnected as a slow consumer with the agent's memory bounded,
//! and the tap's history and live events without touching any group.

use futures::{SinkExt, StreamExt};
use rmds_scenarios::harness::{eventually, wait_pending, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn pair() -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
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

async fn connect(net: &TestNet, node: &str, path: &str) -> Ws {
    let base = net.client(node).base().replace("http://", "ws://");
    let (ws, _) = tokio_tungstenite::connect_async(format!("{base}{path}"))
        .await
        .unwrap();
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON frame, or None if nothing comes within `wait`.
async fn next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return None,
            Ok(None) => return None,
            Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn reply(ws: &mut Ws, v: Value) -> Value {
    send(ws, v).await;
    next(ws, Duration::from_secs(10)).await.expect("a reply")
}

async fn publish_n(net: &TestNet, range: std::ops::RangeInclusive<u64>) {
    let alice = net.client("alice");
    for n in range {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
}

#[tokio::test]
async fn given_a_credit_of_ten_then_the_client_never_holds_more_than_ten_and_acks_grant_more() {
    let mut net = pair().await;
    let mut ws = connect(&net, "bob", "/v1/ws").await;
    let r = reply(
        &mut ws,
        json!({"op": "subscribe", "request_id": "r1", "channel": "chat", "credit": 10}),
    )
    .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    assert_eq!(r["request_id"], "r1");
    let sub = r["subscription"].as_str().unwrap().to_string();
    publish_n(&net, 1..=30).await;
    let mut held: Vec<(u64, String)> = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 30 {
        match next(&mut ws, Duration::from_secs(1)).await {
            Some(f) if f["type"] == "message" => {
                let n = f["message"]["data"]["n"].as_u64().unwrap();
                held.push((n, f["message"]["id"].as_str().unwrap().to_string()));
                seen.push(n);
                assert!(held.len() <= 10, "client holds {} > credit 10", held.len());
            }
            Some(f) if f["type"] == "acked" => {}
            Some(f) => panic!("unexpected frame {f}"),
            None => {
                // Nothing more comes while the credit is used up: ack half of it.
                assert!(!held.is_empty(), "stalled with credit left after {seen:?}");
                if held.len() < 10 {
                    // Not yet delivered by alice; wait for more.
                    continue;
                }
                let ids: Vec<String> = held.drain(..5).map(|(_, id)| id).collect();
                send(
                    &mut ws,
                    json!({"op": "ack", "request_id": 2, "subscription": sub, "ids": ids}),
                )
                .await;
            }
        }
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    let ids: Vec<String> = held.drain(..).map(|(_, id)| id).collect();
    let r = reply(
        &mut ws,
        json!({"op": "ack", "request_id": 3, "subscription": sub, "ids": ids}),
    )
    .await;
    assert_eq!(r["type"], "acked", "{r}");
    assert_eq!(r["not_found"], json!([]));
    assert_eq!(
        net.client("bob").group("chat", "default").await.unwrap()["pending"],
        0
    );
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_websocket_requests_then_publish_works_and_mistakes_get_coded_errors() {
    let mut net = pair().await;
    let mut a = connect(&net, "alice", "/v1/ws").await;
    let r = reply(&mut a, json!({"op": "ping", "request_id": 1})).await;
    assert_eq!(r, json!({"type": "pong", "request_id": 1}));
    let r = reply(
        &mut a,
        json!({"op": "publish", "request_id": 2, "channel": "chat", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(r["type"], "published", "{r}");
    assert_eq!(r["receivers"], json!(["bob"]));
    let r = reply(
        &mut a,
        json!({"op": "publish", "request_id": 3, "channel": "chat", "text": "hi", "idempotency_key": "k1"}),
    )
    .await;
    let first = r["id"].clone();
    let r = reply(
        &mut a,
        json!({"op": "publish", "request_id": 4, "channel": "chat", "text": "hi", "idempotency_key": "k1"}),
    )
    .await;
    assert_eq!(r["id"], first, "same key, same message");
    assert_eq!(r["duplicate"], true);
    for (req, code) in [
        (json!({"op": "fly", "request_id": 5}), "bad_request"),
        (
            json!({"op": "publish", "request_id": 6, "channel": "chat"}),
            "bad_request",
        ),
        (
            json!({"op": "publish", "request_id": 7, "channel": "bad name", "text": "x"}),
            "bad_request",
        ),
        (
            json!({"op": "subscribe", "request_id": 8, "channel": "chat"}),
            "forbidden",
        ),
        (
            json!({"op": "ack", "request_id": 9, "subscription": "nope", "ids": ["x"]}),
            "not_found",
        ),
        (
            json!({"op": "credit", "request_id": 10, "subscription": "nope", "credit": 0}),
            "bad_request",
        ),
        (
            json!({"op": "ping", "request_id": 11, "colour": "red"}),
            "bad_request",
        ),
    ] {
        let r = reply(&mut a, req.clone()).await;
        assert_eq!(r["type"], "error", "{req} -> {r}");
        assert_eq!(r["code"], code, "{req} -> {r}");
        assert_eq!(r["request_id"], req["request_id"], "{r}");
    }
    a.send(Message::Text("{not json".into())).await.unwrap();
    let r = next(&mut a, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r["code"], "bad_request");
    // Bob gets what alice published over the socket.
    let mut b = connect(&net, "bob", "/v1/ws").await;
    reply(
        &mut b,
        json!({"op": "subscribe", "channel": "chat", "group": "default"}),
    )
    .await;
    let m1 = next(&mut b, Duration::from_secs(10)).await.unwrap();
    assert_eq!(m1["message"]["data"]["n"], 1, "{m1}");
    let m2 = next(&mut b, Duration::from_secs(10)).await.unwrap();
    assert_eq!(m2["message"]["data"], "hi", "{m2}");
    assert!(next(&mut b, Duration::from_millis(500)).await.is_none());
    net.assert_healthy().unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn given_a_client_that_stops_reading_then_it_is_disconnected_as_slow_consumer_and_memory_stays_bounded(
) {
    let mut net = pair().await;
    let mut ws = connect(&net, "bob", "/v1/ws").await;
    reply(
        &mut ws,
        json!({"op": "subscribe", "channel": "chat", "credit": 10000}),
    )
    .await;
    // 48 MB of messages for a client that reads nothing.
    let alice = net.client("alice");
    let big = "x".repeat(16 * 1024);
    for _ in 0..30 {
        let batch: Vec<Value> = (0..100).map(|_| json!(big)).collect();
        alice.publish_batch("chat", &batch).await.unwrap();
    }
    let bob = net.client("bob");
    eventually(
        Duration::from_secs(60),
        "bob to drop the slow consumer",
        || {
            let b = bob.clone();
            async move {
                let s = b.stats().await.ok()?;
                (s["ws_slow_consumers"] == 1).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let pid = net.node("bob").pid().unwrap();
    let rss = rss_kib(pid);
    assert!(rss < 400 * 1024, "bob's RSS is {rss} KiB");
    // The client finds the connection closed, the last frame telling why if it fit.
    let mut frames = 0;
    let mut last = Value::Null;
    while let Some(f) = next(&mut ws, Duration::from_secs(5)).await {
        frames += 1;
        last = f;
    }
    assert!(
        frames < 3000,
        "the connection was closed before everything was sent"
    );
    if last["type"] == "error" {
        assert_eq!(last["code"], "slow_consumer");
    }
    // Nothing was lost: the held messages come back through the group.
    let got = rmds_scenarios::harness::drain(
        &bob,
        "chat",
        "default",
        3000,
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.messages.len(), 3000);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_tap_then_it_sees_history_and_live_events_without_moving_any_group() {
    let mut net = pair().await;
    let bob = net.client("bob");
    bob.create_group("chat", "g", &rmds::GroupOptions::default())
        .await
        .unwrap();
    publish_n(&net, 1..=5).await;
    wait_pending(&bob, "chat", "g", 5, Duration::from_secs(10))
        .await
        .unwrap();
    let mut tap = connect(&net, "bob", "/v1/ws/tap?channel=chat&last_n=3").await;
    let hello = next(&mut tap, Duration::from_secs(5)).await.unwrap();
    assert_eq!(hello["type"], "tap");
    let mut history = Vec::new();
    for _ in 0..hello["history"].as_u64().unwrap() {
        history.push(next(&mut tap, Duration::from_secs(5)).await.unwrap());
    }
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|h| h["history"] == true));
    let received: Vec<u64> = history
        .iter()
        .filter(|h| h["event"]["kind"] == "received")
        .map(|h| h["event"]["detail"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(received, vec![3, 4, 5]);
    // Live: alice publishes two more; the tap sees them arrive.
    publish_n(&net, 6..=7).await;
    let mut live = Vec::new();
    while live.len() < 2 {
        let f = next(&mut tap, Duration::from_secs(10))
            .await
            .expect("live event");
        if f["event"]["kind"] == "received" {
            live.push(f["event"]["detail"]["offset"].as_u64().unwrap());
        }
    }
    assert_eq!(live, vec![6, 7]);
    // Alice's tap (all channels) shows the sending side.
    let mut atap = connect(&net, "alice", "/v1/ws/tap?last_n=100").await;
    let hello = next(&mut atap, Duration::from_secs(5)).await.unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..hello["history"].as_u64().unwrap() {
        let f = next(&mut atap, Duration::from_secs(5)).await.unwrap();
        kinds.insert(f["event"]["kind"].as_str().unwrap().to_string());
        if f["event"]["kind"] == "published" {
            // Receivers are named up to a bound, and counted.
            let d = &f["event"]["detail"];
            assert_eq!(d["receivers"], serde_json::json!(["bob"]), "{f}");
            assert_eq!(d["receivers_total"], 1, "{f}");
        }
    }
    for k in ["published", "sent", "acked", "peer_up"] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    // Watching consumed nothing.
    let g = bob.group("chat", "g").await.unwrap();
    assert_eq!(g["pending"], 7, "{g}");
    assert_eq!(g["ack_floor"], 0, "{g}");
    assert_eq!(g["in_flight"], 0, "{g}");
    // Bad tap requests are plain HTTP errors.
    let e = reqwest::get(format!("{}/v1/ws/tap?last_n=999999999", bob.base()))
        .await
        .unwrap();
    assert_eq!(e.status().as_u16(), 400);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_strict_group_over_websocket_then_each_ack_releases_the_next_message_at_once() {
    let mut net = pair().await;
    net.client("bob")
        .create_group(
            "chat",
            "strict",
            &rmds::GroupOptions {
                max_in_flight: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut ws = connect(&net, "bob", "/v1/ws").await;
    let r = reply(
        &mut ws,
        json!({"op": "subscribe", "channel": "chat", "group": "strict", "credit": 10}),
    )
    .await;
    let sub = r["subscription"].as_str().unwrap().to_string();
    let r = reply(
        &mut ws,
        json!({"op": "subscribe", "request_id": 2, "channel": "chat", "group": "nope"}),
    )
    .await;
    assert_eq!(r["code"], "not_found", "{r}");
    publish_n(&net, 1..=5).await;
    let mut got = Vec::new();
    while got.len() < 5 {
        // Nothing waits for a poll timeout: the ack wakes the pull holding the slot.
        let f = next(&mut ws, Duration::from_secs(5))
            .await
            .expect("the next message soon after the ack");
        if f["type"] != "message" {
            continue;
        }
        got.push(f["message"]["data"]["n"].as_u64().unwrap());
        let id = f["message"]["id"].as_str().unwrap().to_string();
        send(
            &mut ws,
            json!({"op": "ack", "subscription": sub, "ids": [id]}),
        )
        .await;
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    net.assert_healthy().unwrap();
}
