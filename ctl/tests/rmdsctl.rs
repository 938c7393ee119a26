//! `rmdsctl` run as a binary against real agents on a real nats-server: every
//! command in human and `--json` form, its exit codes, and `check` going from OK to
//! WARNING to CRITICAL as the cluster changes.

use rmds_scenarios::harness::{agent_binary, eventually, TestNet};
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;

fn ctl(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rmdsctl"))
        .arg("--url")
        .arg(url)
        .args(args)
        .output()
        .expect("run rmdsctl")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "rmdsctl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

async fn net() -> TestNet {
    let net = TestNet::builder()
        .binary(agent_binary().unwrap())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net
}

#[tokio::test]
async fn given_two_agents_when_listing_then_status_nodes_topology_channels_and_groups_show_them() {
    let net = net().await;
    let a = net.client("alice").base().to_string();
    let b = net.client("bob").base().to_string();
    let o = ctl(&a, &["status"]);
    assert!(o.status.success());
    let t = text(&o);
    assert!(
        t.contains("node      alice") && t.contains("ready     ready"),
        "{t}"
    );
    let v = json_of(&ctl(&a, &["--json", "status"]));
    assert_eq!(v["ready"]["status"], "ready");
    let t = text(&ctl(&a, &["nodes"]));
    assert!(t.starts_with("NODE"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("bob ") && l.contains("chat=reader")),
        "{t}"
    );
    let v = json_of(&ctl(&a, &["--json", "nodes"]));
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    let t = text(&ctl(&a, &["topology"]));
    assert!(
        t.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["chat", "alice", "bob"]),
        "{t}"
    );
    let v = json_of(&ctl(&a, &["--json", "channels"]));
    assert_eq!(v["channels"][0]["channel"], "chat");
    net.client("bob")
        .post_json(
            "/v1/channels/chat/groups",
            &json!({"name": "workers", "start": "earliest"}),
        )
        .await
        .unwrap();
    let t = text(&ctl(&b, &["groups", "chat"]));
    assert!(t.lines().any(|l| l.starts_with("workers ")), "{t}");
    let v = json_of(&ctl(&b, &["--json", "groups", "chat"]));
    assert_eq!(v["groups"][0]["name"], "workers");
    let v = json_of(&ctl(&a, &["--json", "stats"]));
    assert_eq!(v["node_id"], "alice");
    assert!(text(&ctl(&a, &["stats"])).contains("published"));
    let v = json_of(&ctl(
        &a,
        &["--json", "stats", "--period", "10m", "--granularity", "1m"],
    ));
    assert_eq!(
        v["series"]["buckets"].as_array().map(Vec::len),
        Some(10),
        "{v}"
    );
}

#[tokio::test]
async fn given_bad_input_or_no_agent_then_exit_codes_say_which() {
    let net = net().await;
    let a = net.client("alice").base().to_string();
    let o = ctl(&a, &["groups", "bad name"]);
    assert_eq!(o.status.code(), Some(1), "refused is 1");
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid channel"));
    let o = ctl("http://127.0.0.1:1", &["nodes"]);
    assert_eq!(o.status.code(), Some(3), "unreachable is 3");
    let o = ctl(&a, &["no-such-command"]);
    assert_eq!(o.status.code(), Some(2), "usage is 2");
    let o = ctl(&a, &["dlq", "list", "--channel", "chat"]);
    assert_eq!(o.status.code(), Some(2), "--channel needs --group");
}

#[tokio::test]
async fn given_a_group_dead_letter_when_using_dlq_then_list_show_redrive_and_purge_work() {
    let net = net().await;
    let bob = net.client("bob");
    let b = bob.base().to_string();
    bob.post_json(
        "/v1/channels/chat/groups",
        &json!({"name": "d", "start": "earliest", "max_deliveries": 1}),
    )
    .await
    .unwrap();
    let id = net
        .client("alice")
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap()
        .id;
    let got = eventually(Duration::from_secs(10), "bob to get it", || {
        let c = bob.clone();
        async move {
            let m = c.pull("chat", "d", 1, Duration::from_secs(1)).await.ok()?;
            (!m.is_empty()).then_some(m)
        }
    })
    .await
    .unwrap();
    assert_eq!(got[0].id, id);
    bob.nack("chat", "d", std::slice::from_ref(&id), Duration::ZERO)
        .await
        .unwrap();
    let at = ["--channel", "chat", "--group", "d"];
    let listed = eventually(Duration::from_secs(10), "a dead letter", || {
        let c = bob.clone();
        let b = b.clone();
        async move {
            let _ = c.pull("chat", "d", 1, Duration::from_millis(200)).await;
            let mut args = vec!["--json", "dlq", "list"];
            args.extend(at);
            let v = json_of(&ctl(&b, &args));
            (v["dead_letters"].as_array()?.len() == 1).then_some(v)
        }
    })
    .await
    .unwrap();
    assert_eq!(listed["dead_letters"][0]["id"], id.as_str());
    let mut args = vec!["dlq", "list"];
    args.extend(at);
    let t = text(&ctl(&b, &args));
    assert!(
        t.lines().any(|l| l.starts_with(&id) && l.contains("dead")),
        "{t}"
    );
    let mut args = vec!["--json", "dlq", "show", &id];
    args.extend(at);
    let v = json_of(&ctl(&b, &args));
    assert_eq!(v["dead_letter"]["id"], id.as_str());
    let mut args = vec!["dlq", "redrive", &id];
    args.extend(at);
    let o = ctl(&b, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text(&o).contains("redriven"));
    let again = bob
        .pull("chat", "d", 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the redriven message is delivered again");
    let mut args = vec!["dlq", "purge", &id];
    args.extend(at);
    let o = ctl(&b, &args);
    // A redriven letter is still in the queue (state redriven) until deleted.
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut args = vec!["dlq", "show", &id];
    args.extend(at);
    assert_eq!(ctl(&b, &args).status.code(), Some(1), "deleted: 404");
    let v = json_of(&ctl(&b, &["--json", "dlq", "list"]));
    assert!(v["dead_letters"].as_array().unwrap().is_empty(), "{v}");
}

#[tokio::test]
async fn given_the_live_tap_when_tailing_then_published_events_are_printed_and_filtered() {
    let net = net().await;
    let a = net.client("alice").base().to_string();
    let alice = net.client("alice");
    for n in 0..3 {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
    let o = tokio::task::spawn_blocking(move || {
        ctl(
            &a,
            &[
                "--json",
                "tail",
                "chat",
                "--last",
                "100",
                "--kind",
                "published",
                "--count",
                "3",
            ],
        )
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: Vec<Value> = text(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["kind"] == "published" && e["channel"] == "chat"));
}

#[tokio::test]
async fn given_a_changing_cluster_when_checking_then_ok_then_warning_then_critical() {
    let mut net = net().await;
    let a = net.client("alice").base().to_string();
    let o = ctl(&a, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).starts_with("RMDS OK - node alice ready |"),
        "{}",
        text(&o)
    );
    // Bob goes away: a peer offline is a warning; a backlog past the threshold too.
    net.node("bob").stop().await.unwrap();
    let alice = net.client("alice");
    for n in 0..5 {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
    let line = eventually(Duration::from_secs(10), "a warning", || {
        let a = a.clone();
        async move {
            let o = ctl(&a, &["check", "--warn-pending", "5"]);
            (o.status.code() == Some(1)).then(|| text(&o))
        }
    })
    .await
    .unwrap();
    assert!(
        line.contains("peers offline: bob") && line.contains("5 messages undelivered"),
        "{line}"
    );
    let o = ctl(&a, &["check", "--warn-pending", "2", "--crit-pending", "5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // NATS down: unready, critical, with the reason.
    net.stop_nats().await.unwrap();
    let line = eventually(Duration::from_secs(10), "critical", || {
        let a = a.clone();
        async move {
            let o = ctl(
                &a,
                &["check", "--warn-offline", "5", "--warn-pending", "100"],
            );
            (o.status.code() == Some(2)).then(|| text(&o))
        }
    })
    .await
    .unwrap();
    assert!(
        line.starts_with("RMDS CRITICAL - node alice: unready (") && line.contains("nats"),
        "{line}"
    );
    let o = ctl("http://127.0.0.1:1", &["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("cannot reach the agent"));
}

#[tokio::test]
async fn given_two_agents_when_kicking_and_purging_then_answers_per_node_and_audit_show_it() {
    let mut net = net().await;
    let a = net.client("alice").base().to_string();
    let o = ctl(&a, &["kick", "bob", "chat"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = text(&o);
    assert!(t.starts_with("command "), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("bob ") && l.contains("applied")),
        "{t}"
    );
    let v = json_of(&ctl(&a, &["--json", "audit"]));
    assert_eq!(v["audit"][0]["kind"], "kick_channel", "{v}");
    let t = text(&ctl(&a, &["audit"]));
    assert!(t.lines().any(|l| l.contains("kick_channel")), "{t}");
    let v = json_of(&ctl(&a, &["--json", "purge", "queued", "--scope", "all"]));
    assert_eq!(v["applied"].as_array().unwrap().len(), 2, "{v}");
    // A node that does not answer makes the command exit 1, naming it.
    net.node("bob").stop().await.unwrap();
    let o = ctl(&a, &["purge", "sent", "--scope", "bob", "--wait", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not answered"), "{}", text(&o));
    let o = ctl(&a, &["purge", "everything"]);
    assert_eq!(o.status.code(), Some(1));
}

#[tokio::test]
async fn given_an_agent_with_auth_when_using_rmdsctl_then_the_api_key_is_needed_and_enough() {
    let key = "rmdsctl-test-admin-key-0123";
    let mut auth = toml::Table::new();
    auth.insert("enabled".into(), true.into());
    auth.insert("admin_key".into(), key.into());
    let net = TestNet::builder()
        .binary(agent_binary().unwrap())
        .set("api", "auth", toml::Value::Table(auth))
        .api_key(key)
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let a = net.client("alice").base().to_string();
    let o = ctl(&a, &["nodes"]);
    assert_eq!(o.status.code(), Some(1), "refused without a key");
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
    let with = |args: &[&str]| {
        let mut all = vec!["--api-key", key];
        all.extend(args);
        ctl(&a, &all)
    };
    assert!(with(&["nodes"]).status.success());
    assert_eq!(
        with(&["check"]).status.code(),
        Some(0),
        "{}",
        text(&with(&["check"]))
    );
    net.client("alice")
        .publish_json("chat", &json!({"n": 1}))
        .await
        .unwrap();
    let a2 = a.clone();
    let o = tokio::task::spawn_blocking(move || {
        ctl(
            &a2,
            &[
                "--api-key",
                key,
                "--json",
                "tail",
                "-",
                "--last",
                "50",
                "--kind",
                "published",
                "--count",
                "1",
            ],
        )
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
