//! Management across three nodes: kick from every channel and from one, purge of
//! queued and sent messages for this node, one node and every node, the audit log,
//! idempotence of a replayed command, and a node that was offline when it was
//! kicked (it applies the kick when it comes back: the issuer sends it again).

use futures::StreamExt;
use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn three(key: Option<&str>) -> TestNet {
    let mut b = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw", "news:rw"])
        .agent("carol", &["chat:reader", "news:reader"]);
    if let Some(k) = key {
        b = b.set("nats", "cluster_key", k);
    }
    let net = b.start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob", "carol"])
        .await
        .unwrap();
    net.wait_discovered("bob", "news", &["carol"])
        .await
        .unwrap();
    net
}

fn nodes(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn readers(net: &TestNet, on: &str, channel: &str) -> Vec<String> {
    let v = net
        .client(on)
        .get_json(&format!("/v1/channels/{channel}/subscribers"))
        .await
        .unwrap();
    // Peers that read the channel (members also lists writers and this node).
    let mut r: Vec<String> = v["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["self"] == false && (s["role"] == "reader" || s["role"] == "rw"))
        .map(|s| s["node"].as_str().unwrap().to_string())
        .collect();
    r.sort();
    r
}

/// Waits until `on` considers `node` offline.
async fn offline_at(net: &TestNet, on: &str, node: &str) {
    let c = net.client(on);
    eventually(
        Duration::from_secs(10),
        &format!("{node} offline at {on}"),
        || {
            let c = c.clone();
            async move {
                let v = c.get_json("/v1/nodes").await.ok()?;
                v["nodes"]
                    .as_array()?
                    .iter()
                    .any(|n| n["node_id"] == node && n["online"] == false)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
}

async fn audit_ids(net: &TestNet, on: &str) -> Vec<String> {
    net.client(on).get_json("/v1/audit").await.unwrap()["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn given_three_nodes_when_a_node_is_kicked_then_every_agent_drops_it_and_it_must_join_again()
{
    let mut net = three(Some("mgmt-test-key")).await;
    let out = net
        .client("alice")
        .post_json("/v1/nodes/carol/kick", &json!({}))
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["alice", "bob", "carol"], "{out}");
    assert!(out["not_answered"].as_array().unwrap().is_empty(), "{out}");
    let id = out["id"].as_str().unwrap().to_string();
    for n in ["alice", "bob", "carol"] {
        assert!(
            audit_ids(&net, n).await.contains(&id),
            "{n} has no audit entry"
        );
    }
    assert_eq!(readers(&net, "alice", "chat").await, ["bob"]);
    assert_eq!(readers(&net, "bob", "news").await, Vec::<String>::new());
    let h = net.client("carol").health().await.unwrap();
    assert_eq!(h["kicked"]["by"], "alice", "{h}");
    let me = net.client("carol").get_json("/v1/nodes").await.unwrap();
    assert!(me["nodes"][0]["kicked"].is_object(), "{me}");
    // Its tap shows it.
    let tap = format!(
        "{}/v1/ws/tap?last_n=1000",
        net.client("carol").base().replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(tap.as_str())
        .await
        .unwrap();
    let mut kicked = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["event"]["kind"] == "kicked" && v["event"]["detail"]["self"] == true {
                kicked = true;
                break;
            }
        }
    }
    assert!(kicked, "carol's tap does not show the kick");
    assert!(
        me["nodes"][0]["memberships"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{me}"
    );
    // Several keepalives later it is still out (its own announces do not re-add it).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(readers(&net, "alice", "chat").await, ["bob"]);
    let r = net
        .client("alice")
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(r.receivers, ["bob"]);
    // A restart does not re-join it through its configured joins either.
    net.node("carol").stop().await.unwrap();
    net.node("carol").start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(readers(&net, "alice", "chat").await, ["bob"]);
    assert!(net.client("carol").health().await.unwrap()["kicked"].is_object());
    // Joining again through the API ends the kick.
    net.client("carol")
        .join("chat", rmds::Role::Reader)
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob", "carol"])
        .await
        .unwrap();
    assert!(net.client("carol").health().await.unwrap()["kicked"].is_null());
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_kick_from_one_channel_when_applied_then_the_node_keeps_its_other_channels() {
    let mut net = three(None).await;
    let out = net
        .client("bob")
        .post_json("/v1/nodes/carol/channels/news/kick", &json!({}))
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["alice", "bob", "carol"], "{out}");
    assert_eq!(readers(&net, "bob", "news").await, Vec::<String>::new());
    assert_eq!(readers(&net, "bob", "chat").await, ["carol"]);
    let h = net.client("carol").health().await.unwrap();
    assert_eq!(h["kicked"]["channels"], json!(["news"]), "{h}");
    // Kicking again is harmless: nothing left to remove.
    let again = net
        .client("bob")
        .post_json("/v1/nodes/carol/channels/news/kick", &json!({}))
        .await
        .unwrap();
    assert_eq!(
        nodes(&again["applied"]),
        ["alice", "bob", "carol"],
        "{again}"
    );
    assert!(again.to_string().contains("no channel"), "{again}");
    let bad = net
        .client("bob")
        .post_json("/v1/nodes/no%20such/kick", &json!({}))
        .await;
    assert!(bad.is_err());
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_replayed_command_when_it_arrives_again_then_it_is_applied_once() {
    let net = three(None).await;
    let nats = async_nats::connect(net.nats.url()).await.unwrap();
    let mut sub = nats.subscribe("rmds.mgmt").await.unwrap();
    nats.flush().await.unwrap();
    let out = net
        .client("alice")
        .post_json("/v1/purge", &json!({"what": "queued", "scope": "all"}))
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["alice", "bob", "carol"], "{out}");
    let frame = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    let answers = {
        let inbox = nats.new_inbox();
        let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
        nats.publish_with_reply("rmds.mgmt", inbox, frame.payload.clone())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
            got.push(m.payload.len());
        }
        got
    };
    assert_eq!(answers.len(), 2, "bob and carol answer the replay");
    let bob = net.client("bob").get_json("/v1/audit").await.unwrap();
    assert_eq!(
        bob["audit"].as_array().unwrap().len(),
        1,
        "applied once: {bob}"
    );
    let s = net.client("bob").stats().await.unwrap();
    assert_eq!(s["mgmt_applied"], 1, "{s}");
}

async fn status_states(net: &TestNet, on: &str, id: &str) -> Vec<String> {
    let v = net.client(on).status(id).await.unwrap();
    let mut s: Vec<String> = v["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

#[tokio::test]
async fn given_queued_messages_when_purged_then_receipts_say_purged_and_the_streams_go_on() {
    let mut net = three(None).await;
    net.node("bob").stop().await.unwrap();
    net.node("carol").stop().await.unwrap();
    let alice = net.client("alice");
    let mut ids = Vec::new();
    for n in 1..=5u64 {
        let r = alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
        ids.push(r.id);
    }
    let out = alice
        .post_json("/v1/purge", &json!({"what": "queued", "scope": "self"}))
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["alice"], "{out}");
    assert!(
        out["applied"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("purged 10"),
        "{out}"
    );
    for id in &ids {
        assert_eq!(status_states(&net, "alice", id).await, ["purged", "purged"]);
    }
    assert_eq!(alice.stats().await.unwrap()["purged"], 10);
    net.node("bob").start().await.unwrap();
    net.node("carol").start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob", "carol"])
        .await
        .unwrap();
    alice
        .publish_json("chat", &json!({"sender": "alice", "n": 6}))
        .await
        .unwrap();
    for reader in ["bob", "carol"] {
        let got = drain(
            &net.client(reader),
            "chat",
            "default",
            1,
            Duration::from_secs(20),
            Duration::from_millis(800),
        )
        .await
        .unwrap();
        let r = check_stream("alice", reader, "chat", &[6], &got.numbers_from("alice"));
        assert!(r.ok(), "{}", r.describe());
    }
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_purges_for_all_and_for_one_node_then_each_applies_where_its_scope_says() {
    let mut net = three(None).await;
    net.node("carol").stop().await.unwrap();
    offline_at(&net, "bob", "carol").await;
    let a = net
        .client("alice")
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap();
    let b = net
        .client("bob")
        .publish_json("news", &json!({"n": 1}))
        .await
        .unwrap();
    let out = net
        .client("bob")
        .post_json(
            "/v1/purge?wait=2s",
            &json!({"what": "queued", "scope": "all"}),
        )
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["alice", "bob"], "{out}");
    assert_eq!(out["not_answered"][0]["node"], "carol", "{out}");
    assert_eq!(out["not_answered"][0]["online"], false, "{out}");
    assert!(status_states(&net, "alice", &a.id)
        .await
        .contains(&"purged".to_string()));
    assert_eq!(status_states(&net, "bob", &b.id).await, ["purged"]);
    // Sent records of one node only: bob's delivered message, not alice's.
    net.node("carol").start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob", "carol"])
        .await
        .unwrap();
    let a2 = net
        .client("alice")
        .publish_json("chat", &json!({"n": 2}))
        .await
        .unwrap();
    let b2 = net
        .client("bob")
        .publish_json("chat", &json!({"n": 2}))
        .await
        .unwrap();
    for (on, id) in [("alice", &a2.id), ("bob", &b2.id)] {
        eventually(Duration::from_secs(20), "delivered", || {
            let net = &net;
            async move {
                let s = status_states(net, on, id).await;
                s.iter()
                    .all(|x| x == "delivered" || x == "consumed")
                    .then_some(())
            }
        })
        .await
        .unwrap();
    }
    let out = net
        .client("alice")
        .post_json("/v1/purge", &json!({"what": "sent", "scope": "bob"}))
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["bob"], "{out}");
    assert!(
        net.client("bob").status(&b2.id).await.is_err(),
        "bob's record survived"
    );
    assert!(
        net.client("alice").status(&a2.id).await.is_ok(),
        "alice's record went"
    );
    let bad = net
        .client("alice")
        .post_json("/v1/purge", &json!({"what": "everything"}))
        .await;
    assert!(bad.is_err());
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_node_offline_when_kicked_then_it_is_reported_and_applies_the_kick_when_back() {
    let mut net = three(None).await;
    net.node("carol").stop().await.unwrap();
    offline_at(&net, "alice", "carol").await;
    let out = net
        .client("alice")
        .post_json("/v1/nodes/carol/kick?wait=1s", &json!({}))
        .await
        .unwrap();
    assert_eq!(nodes(&out["applied"]), ["alice", "bob"], "{out}");
    assert_eq!(out["not_answered"][0]["node"], "carol", "{out}");
    net.node("carol").start().await.unwrap();
    let carol = net.client("carol");
    eventually(Duration::from_secs(20), "carol applies the kick", || {
        let c = carol.clone();
        async move { c.health().await.ok()?["kicked"].is_object().then_some(()) }
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "carol out everywhere", || {
        let net = &net;
        async move {
            (readers(net, "alice", "chat").await == ["bob"]
                && readers(net, "bob", "news").await.is_empty())
            .then_some(())
        }
    })
    .await
    .unwrap();
    net.assert_healthy().unwrap();
}
