//! The local API end to end: memberships, batch publish, leases, views, CLI.

use rmds_scenarios::harness::{drain, eventually, pull_some, wait_pending, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn pair() -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
        .set("groups", "ack_wait", "1s")
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

#[tokio::test]
async fn given_a_reader_that_leaves_then_new_messages_no_longer_route_to_it_and_rejoining_restores_it(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .agent("lisa", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob", "lisa"])
        .await
        .unwrap();
    let lisa = net.client("lisa");
    lisa.leave("chat").await.unwrap();
    let alice = net.client("alice");
    let r = eventually(Duration::from_secs(10), "alice to see lisa leave", || {
        let a = alice.clone();
        async move {
            let r = a.publish_json("chat", &json!({"n": 1})).await.ok()?;
            (r.receivers == vec!["bob".to_string()]).then_some(r)
        }
    })
    .await
    .unwrap();
    assert_eq!(r.receivers, vec!["bob"]);
    let err = lisa.leave("chat").await.unwrap_err();
    assert_eq!(err.status, Some(404));
    lisa.join("chat", rmds::Role::Reader).await.unwrap();
    net.wait_discovered("alice", "chat", &["lisa"])
        .await
        .unwrap();
    let r = alice.publish_json("chat", &json!({"n": 2})).await.unwrap();
    let mut rs = r.receivers.clone();
    rs.sort();
    assert_eq!(rs, vec!["bob", "lisa"]);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_batch_as_json_array_or_ndjson_then_each_item_is_stored_and_reported() {
    let mut net = pair().await;
    let alice = net.client("alice");
    let v = alice
        .publish_batch("chat", &[json!({"n": 1}), json!({"n": 2}), json!("three")])
        .await
        .unwrap();
    assert_eq!(v["accepted"], 3, "{v}");
    let results = v["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .all(|r| r["status"] == 201 && r["id"].is_string()),
        "{v}"
    );
    let port = net.node("alice").port();
    let ndjson = "{\"n\": 4}\n\n{\"n\": 5}\n";
    let resp = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/v1/channels/chat/messages:batch"
        ))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["accepted"], 2, "{v}");
    // A batch retried with the same Idempotency-Key is stored once, same ids.
    let send_keyed = || async {
        let r = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/v1/channels/chat/messages:batch"
            ))
            .header("idempotency-key", "batch-7")
            .json(&json!([{"n": 6}, {"n": 7}]))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };
    let (s1, first) = send_keyed().await;
    let (s2, again) = send_keyed().await;
    assert_eq!((s1, s2), (201, 201), "{first} {again}");
    for i in 0..2 {
        assert_eq!(first["results"][i]["id"], again["results"][i]["id"]);
        assert_eq!(again["results"][i]["status"], 200, "{again}");
        assert_eq!(again["results"][i]["duplicate"], true, "{again}");
    }
    assert_ne!(first["results"][0]["id"], first["results"][1]["id"]);
    // A bad query refuses the whole batch.
    let resp = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/v1/channels/chat/messages:batch?ttl=0s"
        ))
        .json(&json!([{"n": 8}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        7,
        Duration::from_secs(20),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), vec![1, 2, 4, 5, 6, 7]);
    assert_eq!(got.messages[2].data, Some(json!("three")));
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_pulled_messages_then_unacked_ones_return_after_ack_wait_nacked_ones_after_delay_and_termed_ones_never(
) {
    let mut net = pair().await;
    let alice = net.client("alice");
    for n in 1..=3 {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
    let bob = net.client("bob");
    for g in ["g", "other"] {
        bob.create_group("chat", g, &rmds::GroupOptions::default())
            .await
            .unwrap();
    }
    // All three in bob's log before the first pull: every pull counts a delivery.
    wait_pending(&bob, "chat", "g", 3, Duration::from_secs(10))
        .await
        .unwrap();
    let first = bob
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    // While leased, another consumer of the group gets nothing.
    assert!(bob
        .pull("chat", "g", 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    // A second group sees everything independently.
    let other = bob
        .pull("chat", "other", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(other.len(), 3);
    let ids: Vec<String> = first.iter().map(|m| m.id.clone()).collect();
    bob.ack("chat", "g", &ids[0..1]).await.unwrap();
    bob.nack("chat", "g", &ids[1..2], Duration::ZERO)
        .await
        .unwrap();
    let t = bob.term("chat", "g", &ids[2..3]).await.unwrap();
    assert_eq!(t.applied, vec![ids[2].clone()]);
    let again = bob
        .pull("chat", "g", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "only the nacked one comes back");
    assert_eq!(again[0].id, ids[1]);
    assert_eq!(again[0].deliveries, 2);
    // Not acknowledged: it returns once its lease (ack_wait = 1s) runs out.
    let t0 = Instant::now();
    let third = bob
        .pull("chat", "g", 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].id, ids[1]);
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "came back before its lease ran out"
    );
    bob.ack("chat", "g", &[ids[1].clone()]).await.unwrap();
    assert!(bob
        .pull("chat", "g", 10, Duration::from_secs(2))
        .await
        .unwrap()
        .is_empty());
    let s = bob.ack("chat", "g", &ids[0..1]).await.unwrap();
    assert_eq!(
        s.not_found,
        vec![ids[0].clone()],
        "acking twice reports not_found"
    );
    // Acknowledged messages stay acknowledged across a restart.
    net.node("bob").stop().await.unwrap();
    net.node("bob").start().await.unwrap();
    assert!(net
        .client("bob")
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_long_poll_when_a_message_arrives_then_it_returns_at_once_and_when_none_at_the_deadline(
) {
    let mut net = pair().await;
    let bob = net.client("bob");
    let t0 = Instant::now();
    assert!(bob
        .pull("chat", "default", 10, Duration::from_secs(5))
        .await
        .unwrap()
        .is_empty());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(7),
        "an honest empty answer at the deadline, not before: {waited:?}"
    );
    let alice = net.client("alice");
    let poll = tokio::spawn(async move {
        let t = Instant::now();
        let m = bob
            .pull("chat", "default", 10, Duration::from_secs(20))
            .await
            .unwrap();
        (m, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.publish_json("chat", &json!({"n": 1})).await.unwrap();
    let (m, took) = poll.await.unwrap();
    assert_eq!(m.len(), 1);
    // Woken by the arrival, long before its 20 s deadline (the wake latency itself is
    // measured by rmds-bench, not asserted here).
    assert!(
        took < Duration::from_secs(5),
        "long poll returned after {took:?}"
    );
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_cluster_then_nodes_topology_channels_and_subscribers_describe_it() {
    let mut net = pair().await;
    let a = net.client("alice");
    let nodes = a.get_json("/v1/nodes").await.unwrap();
    let list = nodes["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{nodes}");
    assert!(
        list.iter().any(|n| n["node_id"] == "bob"
            && n["online"] == true
            && n["memberships"]["chat"] == "rw"),
        "{nodes}"
    );
    let topo = a.get_json("/v1/topology").await.unwrap();
    assert_eq!(
        topo["channels"]["chat"]["readers"],
        json!(["bob"]),
        "{topo}"
    );
    let mut writers: Vec<String> =
        serde_json::from_value(topo["channels"]["chat"]["writers"].clone()).unwrap();
    writers.sort();
    assert_eq!(writers, vec!["alice", "bob"]);
    let chans = a.get_json("/v1/channels").await.unwrap();
    assert_eq!(chans["channels"][0]["channel"], "chat");
    assert_eq!(chans["channels"][0]["role"], "writer");
    let subs = a.get_json("/v1/channels/chat/subscribers").await.unwrap();
    assert_eq!(subs["subscribers"].as_array().unwrap().len(), 2, "{subs}");
    let h = a.health().await.unwrap();
    assert_eq!(
        h,
        json!({"status": "ok", "node_id": "alice", "nats": "connected",
               "nats_error": null, "nats_auth": "none", "kicked": null})
    );
    // A clean stop says bye: alice marks bob offline at once, not after the timeout.
    net.node("bob").stop().await.unwrap();
    let t0 = Instant::now();
    eventually(Duration::from_secs(5), "bob offline at alice", || {
        let a = a.clone();
        async move {
            let v = a.get_json("/v1/nodes").await.ok()?;
            v["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["node_id"] == "bob" && n["online"] == false)
                .then_some(())
        }
    })
    .await
    .unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(1400),
        "bye not honoured: {:?}",
        t0.elapsed()
    );
    net.assert_healthy().unwrap();
}

#[test]
fn given_the_cli_then_generate_config_prints_every_key_and_bad_config_fails_with_the_key_named() {
    let out = std::process::Command::new(bin())
        .arg("--generate-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "keepalive_interval",
        "node_offline_timeout",
        "ack_timeout",
        "window",
        "overflow",
        "cluster_key",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
    // No node id.
    let out = std::process::Command::new(bin())
        .env_remove("RMDS_NODE_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node_id"));
    // A bad value in a file, and a bad flag value.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "node_id = \"x\"\n[delivery]\nack_timeout = \"soon\"\n").unwrap();
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ack_timeout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin())
        .args(["--node-id", "x", "--join", "bad*name:rw"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("join"));
}

#[tokio::test]
async fn given_env_and_json_logs_when_the_agent_starts_then_env_applies_and_every_log_line_is_json()
{
    let dir = tempfile::tempdir().unwrap();
    let port = rmds_scenarios::harness::free_port();
    let child = tokio::process::Command::new(bin())
        .env("RMDS_NODE_ID", "envnode")
        .env("RMDS_NATS", "nats://127.0.0.1:1")
        .env("RMDS_DATA_DIR", dir.path())
        .env("RMDS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RMDS_JOIN", "a:reader,b:writer")
        .args(["--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let c = rmds::Client::new(format!("http://127.0.0.1:{port}"));
    let h = eventually(Duration::from_secs(10), "agent up without NATS", || {
        let c = c.clone();
        async move { c.health().await.ok() }
    })
    .await
    .unwrap();
    assert_eq!(h["node_id"], "envnode");
    assert_eq!(h["nats"], "disconnected", "starts fine with NATS down");
    let chans = c.get_json("/v1/channels").await.unwrap();
    assert_eq!(chans["channels"].as_array().unwrap().len(), 2, "{chans}");
    nix_kill(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "SIGTERM is a clean exit");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.lines().count() >= 2);
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    }
}

fn nix_kill(child: &tokio::process::Child) {
    let pid = child.id().unwrap();
    rmds_scenarios::harness::signal(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[tokio::test]
async fn given_a_leased_message_when_the_agent_restarts_then_acking_it_by_id_still_settles_it() {
    let mut net = pair().await;
    net.client("alice")
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap();
    let bob = net.client("bob");
    bob.create_group("chat", "g", &rmds::GroupOptions::default())
        .await
        .unwrap();
    let got = pull_some(&bob, "chat", "g", 1, Duration::from_secs(10))
        .await
        .unwrap();
    net.node("bob").stop().await.unwrap();
    net.node("bob").start().await.unwrap();
    let bob = net.client("bob");
    let s = bob.ack("chat", "g", &[got[0].id.clone()]).await.unwrap();
    assert_eq!(s.applied, vec![got[0].id.clone()], "{s:?}");
    assert!(s.not_found.is_empty());
    assert!(bob
        .pull("chat", "g", 10, Duration::from_secs(2))
        .await
        .unwrap()
        .is_empty());
    let unknown = bob.ack("chat", "g", &["nope".to_string()]).await.unwrap();
    assert_eq!(unknown.not_found, vec!["nope".to_string()]);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_log_entries_that_expire_before_a_group_reads_them_then_the_group_skips_them_and_moves_on(
) {
    let mut net = pair().await;
    let alice = net.client("alice");
    let short = rmds::PublishOptions {
        content_type: "application/json".into(),
        ttl: Some(Duration::from_millis(1500)),
        ..Default::default()
    };
    for n in 1..=3 {
        alice
            .publish_with("chat", json!({"n": n}).to_string().into_bytes(), &short)
            .await
            .unwrap();
    }
    net.wait_drained("alice", Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 4..=5 {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
    net.client("bob")
        .create_group("chat", "g", &rmds::GroupOptions::default())
        .await
        .unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "g",
        2,
        Duration::from_secs(20),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), vec![4, 5]);
    let stats = net.client("bob").stats().await.unwrap();
    assert_eq!(stats["group_skipped"], 3, "{stats}");
    assert_eq!(stats["group_acks"], 2, "{stats}");
    // The position moved past the expired entries and survives a restart.
    net.node("bob").stop().await.unwrap();
    net.node("bob").start().await.unwrap();
    assert!(net
        .client("bob")
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    net.assert_healthy().unwrap();
}
