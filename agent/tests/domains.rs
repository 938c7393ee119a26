//! Domains with schemas (GoRTMS shorthand and full JSON Schema), channel policies
//! inherited channel → domain → config, declared in the config file or through the
//! API, and the circuit breaker on a receiver whose store refuses writes.

use rmds_scenarios::harness::{eventually, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn put(c: &rmds::Client, path: &str, body: Value) -> Result<Value, (u16, Value)> {
    let r = reqwest::Client::new()
        .put(format!("{}{path}", c.base()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status < 300 {
        Ok(v)
    } else {
        Err((status, v))
    }
}

async fn post_raw(c: &rmds::Client, path: &str, ct: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", c.base()))
        .header("content-type", ct)
        .header(rmds::REQUEST_MARKER, "1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn edit_config(path: &std::path::Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut t);
    std::fs::write(path, toml::to_string(&t).unwrap()).unwrap();
}

#[tokio::test]
async fn given_domains_with_schemas_then_valid_payloads_pass_and_invalid_ones_name_the_field() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &[])
        .agent("bob", &["orders:reader"])
        .start()
        .await
        .unwrap();
    let alice = net.client("alice");
    let v = alice
        .post_json(
            "/v1/domains",
            &json!({"name": "shop", "schema": {"fields": {"item": "string", "qty": "number"}}}),
        )
        .await
        .unwrap();
    assert_eq!(v["name"], "shop");
    let dup = alice
        .post_json("/v1/domains", &json!({"name": "shop"}))
        .await
        .unwrap_err();
    assert_eq!(dup.status, Some(409));
    let bad = alice
        .post_json("/v1/domains", &json!({"name": "x", "schema": {"type": 12}}))
        .await
        .unwrap_err();
    assert_eq!(bad.status, Some(400), "{bad:?}");
    let bad = alice
        .post_json(
            "/v1/domains",
            &json!({"name": "x", "schema": {"fields": {"a": "date"}}}),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.status, Some(400));
    put(
        &alice,
        "/v1/domains/shop/channels/orders",
        json!({"role": "writer"}),
    )
    .await
    .unwrap();
    net.wait_discovered("alice", "orders", &["bob"])
        .await
        .unwrap();
    let ok = post_raw(
        &alice,
        "/v1/domains/shop/channels/orders/messages",
        "application/json",
        r#"{"item":"tea","qty":2}"#,
    )
    .await;
    assert_eq!(ok.0, 201, "{ok:?}");
    // The plain channel path applies the same schema.
    for (body, needle) in [
        (r#"{"item":"tea","qty":"two"}"#, "/qty"),
        (r#"{"qty":2}"#, "item"),
        (r#"[1,2]"#, "object"),
    ] {
        let (status, v) = post_raw(
            &alice,
            "/v1/channels/orders/messages",
            "application/json",
            body,
        )
        .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "schema_violation");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (status, v) = post_raw(&alice, "/v1/channels/orders/messages", "text/plain", "hi").await;
    assert_eq!(status, 400, "{v}");
    // A full JSON Schema.
    alice
        .post_json(
            "/v1/domains",
            &json!({"name": "strict", "schema": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 1}},
                "required": ["n"], "additionalProperties": false
            }}),
        )
        .await
        .unwrap();
    put(
        &alice,
        "/v1/domains/strict/channels/counts",
        json!({"role": "writer"}),
    )
    .await
    .unwrap();
    for (body, status, needle) in [
        (r#"{"n":0}"#, 400, "/n"),
        (r#"{"n":1,"x":2}"#, 400, "x"),
        (r#"{"n":1.5}"#, 400, "/n"),
        (r#"{"n":2}"#, 201, ""),
    ] {
        let (s, v) = post_raw(
            &alice,
            "/v1/domains/strict/channels/counts/messages",
            "application/json",
            body,
        )
        .await;
        assert_eq!(s, status, "{body}: {v}");
        if status == 400 {
            assert!(
                v["error"]["message"].as_str().unwrap().contains(needle),
                "{v}"
            );
        }
    }
    // Wrong domain for the channel, unknown domain.
    let (s, _) = post_raw(
        &alice,
        "/v1/domains/strict/channels/orders/messages",
        "application/json",
        r#"{"n":2}"#,
    )
    .await;
    assert_eq!(s, 404);
    let e = alice.get_json("/v1/domains/nope").await.unwrap_err();
    assert_eq!(e.status, Some(404));
    let list = alice.get_json("/v1/domains").await.unwrap();
    let names: Vec<&str> = list["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["default", "shop", "strict"]);
    let shop = alice.get_json("/v1/domains/shop").await.unwrap();
    assert_eq!(shop["channels"], json!(["orders"]));
    // Deleting the domain returns its channels to default: no schema any more.
    alice.delete("/v1/domains/shop").await.unwrap();
    let (s, v) = post_raw(
        &alice,
        "/v1/channels/orders/messages",
        "application/json",
        r#"{"anything":true}"#,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let e = alice.delete("/v1/domains/default").await.unwrap_err();
    assert_eq!(e.status, Some(400));
    // Bob got the two valid orders.
    let got = rmds_scenarios::harness::drain(
        &net.client("bob"),
        "orders",
        "default",
        2,
        Duration::from_secs(10),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.messages.len(), 2);
    assert_eq!(
        alice.stats().await.unwrap()["schema_rejections"],
        7,
        "every refused publish is counted"
    );
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_policies_on_domains_and_channels_then_the_most_specific_applies() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer", "lonely:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    alice
        .post_json(
            "/v1/domains",
            &json!({"name": "ops", "policy": {
                "max_messages_per_receiver": 2, "overflow": "drop_oldest", "ttl": "1h"
            }}),
        )
        .await
        .unwrap();
    put(&alice, "/v1/domains/ops/channels/chat", json!({}))
        .await
        .unwrap();
    let v = put(&alice, "/v1/channels/chat/policy", json!({"ttl": "2s"}))
        .await
        .unwrap();
    assert_eq!(v["domain"], "ops");
    assert_eq!(v["effective"]["ttl"], "2s", "{v}");
    assert_eq!(v["effective"]["overflow"], "drop_oldest", "{v}");
    assert_eq!(v["effective"]["max_messages_per_receiver"], 2, "{v}");
    assert_eq!(v["effective"]["max_attempts"], 10, "{v}");
    // Bob away: three messages, a backlog of two, the oldest dropped.
    net.node("bob").stop().await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            alice
                .publish_json("chat", &json!({"n": n}))
                .await
                .unwrap()
                .id,
        );
    }
    assert_eq!(alice.stats().await.unwrap()["dropped"], 1);
    let st = alice.status(&ids[0]).await.unwrap();
    assert_eq!(st["receivers"][0]["state"], "dropped", "{st}");
    // The channel's TTL (2s) applies: the other two expire while bob is away.
    eventually(Duration::from_secs(10), "the backlog to expire", || {
        let a = alice.clone();
        let id = ids[2].clone();
        async move {
            let st = a.status(&id).await.ok()?;
            (st["receivers"][0]["state"] == "expired").then_some(())
        }
    })
    .await
    .unwrap();
    // Unrouted messages refused by policy.
    put(
        &alice,
        "/v1/channels/lonely/policy",
        json!({"unrouted": "reject"}),
    )
    .await
    .unwrap();
    let e = alice
        .publish_json("lonely", &json!({"n": 1}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(409), Some("no_readers"))
    );
    // Bad policies are 400 and name the key.
    let (s, v) = put(
        &alice,
        "/v1/channels/chat/policy",
        json!({"retry": {"factor": 0.1}}),
    )
    .await
    .unwrap_err();
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry.factor"),
        "{v}"
    );
    let (s, _) = put(&alice, "/v1/channels/chat/policy", json!({"colour": "red"}))
        .await
        .unwrap_err();
    assert_eq!(s, 400);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_domains_and_channels_in_the_config_file_then_they_apply_at_start() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["orders:writer"])
        .start()
        .await
        .unwrap();
    net.node("alice").stop().await.unwrap();
    let path = net.node("alice").config_path().to_path_buf();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        r#"
[[domains]]
name = "shop"
schema = { fields = { item = "string" } }
policy = { ttl = "10m" }

[[channels]]
name = "orders"
domain = "shop"
policy = { overflow = "drop_oldest" }
"#,
    );
    std::fs::write(&path, text).unwrap();
    net.node("alice").start().await.unwrap();
    let alice = net.client("alice");
    let p = alice.get_json("/v1/channels/orders/policy").await.unwrap();
    assert_eq!(p["domain"], "shop", "{p}");
    assert_eq!(p["effective"]["ttl"], "10m", "{p}");
    assert_eq!(p["effective"]["overflow"], "drop_oldest", "{p}");
    let (s, v) = post_raw(
        &alice,
        "/v1/channels/orders/messages",
        "application/json",
        r#"{"item":1}"#,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // A config naming an undeclared domain does not start, naming the key.
    net.node("alice").stop().await.unwrap();
    edit_config(&path, |t| {
        t.insert(
            "channels".into(),
            toml::Value::Array(vec![toml::Value::Table(
                toml::from_str(
                    r#"name = "x"
domain = "ghost""#,
                )
                .unwrap(),
            )]),
        );
    });
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("channels.domain"), "{err}");
}

#[tokio::test]
async fn given_a_receiver_whose_store_refuses_writes_then_its_circuit_opens_probes_and_closes_without_loss(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    // Bob's database may not grow past 1 MiB.
    net.node("bob").stop().await.unwrap();
    let bob_config = net.node("bob").config_path().to_path_buf();
    edit_config(&bob_config, |t| {
        let mut store = toml::Table::new();
        store.insert("max_size_mb".into(), toml::Value::Integer(1));
        t.insert("store".into(), toml::Value::Table(store));
    });
    net.node("bob").start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    put(
        &alice,
        "/v1/channels/chat/policy",
        json!({"circuit_breaker": {"min_requests": 2, "error_threshold": 0.5, "open_timeout": "3s"},
               "retry": {"initial_delay": "100ms"}}),
    )
    .await
    .unwrap();
    let big = "x".repeat(40 * 1024);
    let mut ids = Vec::new();
    for n in 0..60 {
        let r = alice
            .publish_json("chat", &json!({"n": n, "pad": big}))
            .await
            .unwrap();
        ids.push(r.id);
    }
    eventually(Duration::from_secs(30), "the circuit to open", || {
        let a = alice.clone();
        async move {
            let s = a.stats().await.ok()?;
            (s["circuit_opened"].as_u64()? >= 1).then_some(())
        }
    })
    .await
    .unwrap();
    let bob_stats = net.client("bob").stats().await.unwrap();
    assert!(
        bob_stats["sent_nacks"].as_u64().unwrap() >= 1,
        "{bob_stats}"
    );
    // Open: nothing goes to bob (at most one probe when it turns half-open).
    let s1 = alice.stats().await.unwrap()["sent_messages"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s2 = alice.stats().await.unwrap()["sent_messages"]
        .as_u64()
        .unwrap();
    assert!(
        s2 - s1 <= 1,
        "sent {} messages while the circuit was open",
        s2 - s1
    );
    assert_eq!(alice.stats().await.unwrap()["dead_lettered"], 0);
    // Bob recovers (more room); the probe succeeds and the circuit closes.
    net.node("bob").stop().await.unwrap();
    edit_config(&bob_config, |t| {
        t.remove("store");
    });
    net.node("bob").start().await.unwrap();
    let got = rmds_scenarios::harness::drain(
        &net.client("bob"),
        "chat",
        "default",
        60,
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let mut ns: Vec<u64> = got
        .messages
        .iter()
        .map(|m| m.data.as_ref().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns.len(), 60, "every message arrives once");
    ns.dedup();
    assert_eq!(ns, (0..60).collect::<Vec<_>>(), "in order, once");
    let s = alice.stats().await.unwrap();
    assert!(s["circuit_closed"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["dead_lettered"], 0, "{s}");
    net.assert_healthy().unwrap();
}
