//! Durations a person sets are bounded where they enter, so no timer can overflow
//! `Instant` and panic a task: channel and domain policies, per-message `?ttl=`, nack
//! delays, group idle TTLs over HTTP, and every duration of the configuration file.

use rmds_scenarios::harness::TestNet;
use serde_json::{json, Value};
use std::path::PathBuf;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn call(net: &TestNet, method: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("{}{path}", net.client("alice").base()),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn given_durations_past_their_bounds_over_http_then_each_is_a_400_naming_the_key() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:rw"])
        .start()
        .await
        .unwrap();
    let huge = "100000000years";
    let cases = [
        (
            "PUT",
            "/v1/channels/chat/policy".to_string(),
            json!({"retry": {"max_delay": huge}}),
            "retry.max_delay",
        ),
        (
            "PUT",
            "/v1/channels/chat/policy".to_string(),
            json!({"circuit_breaker": {"open_timeout": huge}}),
            "circuit_breaker.open_timeout",
        ),
        (
            "PUT",
            "/v1/channels/chat/policy".to_string(),
            json!({"ttl": huge}),
            "ttl",
        ),
        (
            "POST",
            "/v1/domains".to_string(),
            json!({"name": "shop", "policy": {"retry": {"initial_delay": "2days"}}}),
            "retry.initial_delay",
        ),
        (
            "POST",
            format!("/v1/channels/chat/messages?ttl={huge}"),
            json!({"n": 1}),
            "ttl",
        ),
        (
            "POST",
            "/v1/channels/chat/nacks".to_string(),
            json!({"ids": ["01J00000000000000000000000"], "delay": huge}),
            "delay",
        ),
        (
            "POST",
            "/v1/channels/chat/groups".to_string(),
            json!({"name": "g", "idle_ttl": huge}),
            "idle_ttl",
        ),
    ];
    for (method, path, body, key) in &cases {
        let (status, v) = call(&net, method, path, body.clone()).await;
        assert_eq!(status, 400, "{method} {path} {body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(key) && msg.contains("at most"),
            "{path}: {msg}"
        );
    }
    // Nothing was stored and the agent is still healthy and working.
    let policy = net
        .client("alice")
        .get_json("/v1/channels/chat/policy")
        .await
        .unwrap();
    assert_eq!(
        policy["effective"]["retry_max"],
        json!("1s"),
        "the refused policy did not apply: {policy}"
    );
    let (status, _) = call(
        &net,
        "PUT",
        "/v1/channels/chat/policy",
        json!({"ttl": "3650days", "retry": {"max_delay": "1day"}}),
    )
    .await;
    assert_eq!(status, 200, "values at the bounds are fine");
    net.client("alice")
        .publish_text("chat", "still fine")
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}

/// Runs the agent with `config`; an agent still running after 10 s (it accepted the
/// configuration) is killed and reported with no exit code.
fn run_briefly(config: &std::path::Path, data: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--nats")
        .arg("nats://127.0.0.1:1")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (code, err)
}

#[test]
fn given_a_config_duration_past_its_bound_then_the_agent_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (section, key) in [
        ("groups", "ack_wait"),
        ("delivery", "retry_max"),
        ("delivery", "delivered_message_retention"),
    ] {
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            format!("node_id = \"x\"\n[{section}]\n{key} = \"500000000000years\"\n"),
        )
        .unwrap();
        let (code, err) = run_briefly(&f, dir.path());
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(err.contains(key) && err.contains("at most"), "{key}: {err}");
    }
}
