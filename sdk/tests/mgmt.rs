//! Every management call of the SDK answers typed data that matches the REST answer
//! field for field: compared with the JSON of the same route (the typed value
//! written out again equals the agent's document, nulls aside), through a sidecar
//! agent and through an embedded one. Also: 409 is `ErrorKind::Conflict`.

mod support;

use rmds::model::{PurgeWhat, Scope};
use rmds::{ErrorKind, GroupOptions, GroupStart, Mgmt, Node, Role};
use rmds_scenarios::harness::{eventually, TestNet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use support::{embedded_config, wait_reader};

/// The document without null members (a typed `None` may be absent instead).
fn norm(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, norm(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
        v => v,
    }
}

fn same<T: Serialize>(what: &str, typed: &T, rest: Value) {
    let typed = norm(serde_json::to_value(typed).unwrap());
    assert_eq!(
        typed,
        norm(rest),
        "{what}: typed answer differs from the REST answer"
    );
}

/// For answers that change between two calls (clocks, counters): the REST document
/// read into the type and written out again loses nothing.
fn round_trip<T: Serialize + DeserializeOwned>(what: &str, rest: Value) -> T {
    let typed: T = serde_json::from_value(rest.clone())
        .unwrap_or_else(|e| panic!("{what}: REST answer does not fit the type: {e}"));
    same(what, &typed, rest);
    typed
}

async fn check_reads(node: &Node, id: &str) {
    let (m, c): (Mgmt, &rmds::Client) = (node.mgmt(), node.client());
    let get = |p: &'static str| async move { c.get_json(p).await.unwrap() };
    same("health", &m.health().await.unwrap(), get("/healthz").await);
    same(
        "topology",
        &m.topology().await.unwrap(),
        get("/v1/topology").await,
    );
    same(
        "channels",
        &m.channels().await.unwrap(),
        get("/v1/channels").await["channels"].take(),
    );
    same(
        "channel",
        &m.channel("chat").await.unwrap(),
        get("/v1/channels/chat").await,
    );
    same(
        "subscribers",
        &m.subscribers("chat").await.unwrap(),
        get("/v1/channels/chat/subscribers").await["subscribers"].take(),
    );
    m.nodes().await.unwrap();
    let nodes: Vec<rmds::model::NodeInfo> =
        round_trip("nodes", get("/v1/nodes").await["nodes"].take());
    assert!(nodes.iter().any(|n| n.is_self && n.nats == Some(true)));
    assert!(nodes.iter().any(|n| n.node_id == "bob" && n.online));
    let s = m.stats().await.unwrap();
    assert_eq!(s.node_id, node.id());
    round_trip::<rmds::model::Stats>("stats", get("/v1/stats").await);
    same(
        "dead letters",
        &m.dead_letters().await.unwrap(),
        get("/v1/dead-letters").await["dead_letters"].take(),
    );
    same(
        "audit",
        &m.audit().await.unwrap(),
        get("/v1/audit").await["audit"].take(),
    );
    if node.id() == "alice" {
        let st = m.message(id).await.unwrap();
        same(
            "message status",
            &st,
            c.get_json(&format!("/v1/messages/{id}")).await.unwrap(),
        );
        assert_eq!(st.receivers[0].receiver, "bob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_answers_are_typed_and_match_the_rest_answers() {
    let net = TestNet::builder()
        .agent("alice", &[])
        .agent("bob", &[])
        .start()
        .await
        .unwrap();
    let alice = Node::connect(net.agent("alice").client().base())
        .await
        .unwrap();
    let bob = Node::connect(net.agent("bob").client().base())
        .await
        .unwrap();
    let carol = Node::embedded(embedded_config(&net, "carol"))
        .await
        .unwrap();
    let chat = alice.join("chat", Role::Writer).await.unwrap();
    bob.join("chat", Role::Reader).await.unwrap();
    carol.join("chat", Role::Reader).await.unwrap();
    wait_reader(&alice, "chat", "bob").await;
    wait_reader(&alice, "chat", "carol").await;
    wait_reader(&carol, "chat", "bob").await;

    // Groups at bob: one with a dead letter.
    let bm = bob.mgmt();
    let opts = GroupOptions {
        ack_wait: Some(Duration::from_millis(500)),
        max_deliveries: Some(1),
        ..Default::default()
    };
    let g = bm.create_group("chat", "dlq", &opts).await.unwrap();
    assert_eq!((g.max_deliveries, g.ack_wait_ms), (1, 500));
    let e = bm.create_group("chat", "dlq", &opts).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "409 is Conflict: {e}");
    let receipt = chat.send_text("poison").await.unwrap();
    let bc = bob.client().clone();
    eventually(Duration::from_secs(20), "a dead letter", || {
        let (bc, bm) = (bc.clone(), bm.clone());
        async move {
            // Pulled and never acknowledged: dead after one delivery.
            let _ = bc.pull("chat", "dlq", 1, Duration::ZERO).await;
            (!bm.group_dead_letters("chat", "dlq").await.ok()?.is_empty()).then_some(())
        }
    })
    .await
    .unwrap();
    let path = "/v1/channels/chat/groups/dlq";
    same(
        "group",
        &bm.group("chat", "dlq").await.unwrap(),
        bc.get_json(path).await.unwrap(),
    );
    same(
        "groups",
        &bm.groups("chat").await.unwrap(),
        bc.get_json("/v1/channels/chat/groups").await.unwrap()["groups"].take(),
    );
    let dead = bm.group_dead_letters("chat", "dlq").await.unwrap();
    same(
        "group dead letters",
        &dead,
        bc.get_json(&format!("{path}/dead-letters")).await.unwrap()["dead_letters"].take(),
    );
    let (d, msg) = bm
        .group_dead_letter("chat", "dlq", &receipt.id)
        .await
        .unwrap();
    let raw = bc
        .get_json(&format!("{path}/dead-letters/{}", receipt.id))
        .await
        .unwrap();
    same("group dead letter", &d, raw["dead_letter"].clone());
    assert_eq!(
        (msg.id.as_str(), msg.text().unwrap().as_str()),
        (receipt.id.as_str(), "poison")
    );
    bm.redrive_group_dead_letter("chat", "dlq", &receipt.id)
        .await
        .unwrap();
    let g = bm
        .reset_group("chat", "dlq", GroupStart::Earliest)
        .await
        .unwrap();
    same("reset", &g, bc.get_json(path).await.unwrap());

    // Commands: typed answers that round-trip, per node.
    let am = alice.mgmt();
    let p = am.purge(PurgeWhat::Sent, Scope::All).await.unwrap();
    let mut applied: Vec<&str> = p.applied.iter().map(|a| a.node.as_str()).collect();
    applied.sort();
    assert_eq!(applied, ["alice", "bob", "carol"]);
    let raw = alice
        .client()
        .post_json(
            "/v1/purge",
            &serde_json::json!({"what": "queued", "scope": "self"}),
        )
        .await
        .unwrap();
    round_trip::<rmds::model::MgmtAnswer>("purge", raw);
    am.purge_queue(Scope::Node("bob".into())).await.unwrap();
    let k = am.kick_channel("carol", "chat").await.unwrap();
    assert!(k.applied.iter().any(|a| a.node == "carol"), "{k:?}");
    // The purge of bob's queue is not in alice's audit log: she did not apply it.
    assert_eq!(am.audit().await.unwrap().len(), 3);

    // A fresh message for the status check (the purge removed the first one's record).
    let id = chat.send_text("status").await.unwrap().id;
    eventually(Duration::from_secs(10), "delivered", || {
        let am = am.clone();
        let id = id.clone();
        async move {
            (am.message(&id)
                .await
                .ok()?
                .receivers
                .iter()
                .all(|r| r.state != "queued" && r.state != "sent"))
            .then_some(())
        }
    })
    .await
    .unwrap();
    check_reads(&alice, &id).await;
    check_reads(&carol, &id).await;
    carol.shutdown().await;
}
