//! A secured nats-server, each way it can be secured: user/password, token, nkey,
//! credentials file (operator, account and user JWTs), TLS with a client certificate
//! and a server-name override. With the right credentials two agents deliver; with a
//! wrong one the agent keeps running, says why in `/healthz` and its log (never the
//! secret), keeps accepting publishes durably, and delivers them once the credential
//! is fixed.

mod support;

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, eventually, TestNet, TestNetBuilder};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use support::{jwt, tls};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

/// Sets `[section] key = value` in one agent's config file (it must be stopped).
fn rewrite(net: &mut TestNet, node: &str, section: &str, key: &str, value: toml::Value) {
    let path = net.node(node).config_path().to_path_buf();
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut table = &mut t;
    for part in section.split('.') {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap();
    }
    table.insert(key.into(), value);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
}

fn pair(b: TestNetBuilder) -> TestNetBuilder {
    b.binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
}

/// Alice publishes `ns`; bob's application gets exactly them, once, in order.
async fn delivered(net: &TestNet, ns: std::ops::RangeInclusive<u64>) {
    let alice = net.client("alice");
    for n in ns.clone() {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .expect("publish");
    }
    let want: Vec<u64> = ns.collect();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        want.len(),
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await
    .expect("drain");
    let r = check_stream("alice", "bob", "chat", &want, &got.numbers_from("alice"));
    assert!(r.ok(), "{}", r.describe());
}

/// The wrong-credential half of every case: alice restarts with `bad` applied, stays
/// up, names `expect` in `/healthz` and in her log, accepts messages 3..=4 durably;
/// with `good` applied again they reach bob, after 1..=2.
async fn wrong_then_fixed(
    net: &mut TestNet,
    bad: &[(&str, &str, toml::Value)],
    good: &[(&str, &str, toml::Value)],
    expect: &[&str],
    secrets: &[&str],
) {
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    delivered(net, 1..=2).await;
    net.node("alice").stop().await.unwrap();
    for (section, key, value) in bad {
        rewrite(net, "alice", section, key, value.clone());
    }
    net.node("alice").start().await.unwrap();
    let alice = net.client("alice");
    let named = |h: &serde_json::Value| {
        h["nats_error"]
            .as_str()
            .is_some_and(|r| expect.iter().all(|e| r.contains(e)))
    };
    let health = eventually(Duration::from_secs(20), "alice to report why", || {
        let c = alice.clone();
        async move {
            let h = c.health().await.ok()?;
            named(&h).then_some(h)
        }
    })
    .await;
    let health = match health {
        Ok(h) => h,
        Err(_) => panic!(
            "alice's reason does not name {expect:?}: {}",
            alice.health().await.unwrap()
        ),
    };
    assert_eq!(health["nats"], "disconnected", "{health}");
    // Still accepting, durably (201 after the commit).
    for n in 3..=4u64 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .expect("publish while NATS refuses the credentials");
    }
    let ready = alice.get_json("/readyz").await;
    assert!(
        ready.is_err(),
        "/readyz says ready while NATS refuses: {ready:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    net.assert_healthy().unwrap();
    let log = std::fs::read_to_string(net.agent("alice").log_path()).unwrap();
    assert!(
        log.contains(expect[0]),
        "the log does not say why alice cannot connect"
    );
    for s in secrets {
        assert!(!log.contains(s), "a secret appears in the log");
    }
    net.node("alice").stop().await.unwrap();
    for (section, key, value) in good {
        rewrite(net, "alice", section, key, value.clone());
    }
    net.node("alice").start().await.unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        2,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await
    .expect("drain after the fix");
    let r = check_stream("alice", "bob", "chat", &[3, 4], &got.numbers_from("alice"));
    assert!(r.ok(), "{}", r.describe());
    net.assert_healthy().unwrap();
}

fn s(v: &str) -> toml::Value {
    toml::Value::String(v.into())
}

#[tokio::test]
async fn given_user_password_auth_when_right_then_delivers_and_when_wrong_then_reported_and_publishes_kept(
) {
    let mut net = pair(TestNet::builder())
        .nats_conf("authorization { user: rmds, password: \"p4ss-right\" }")
        .set("nats", "user", "rmds")
        .set("nats", "password", "p4ss-right")
        .start()
        .await
        .unwrap();
    wrong_then_fixed(
        &mut net,
        &[("nats", "password", s("p4ss-wrong"))],
        &[("nats", "password", s("p4ss-right"))],
        &["authorization violation", "nats.user and nats.password"],
        &["p4ss-wrong", "p4ss-right"],
    )
    .await;
}

#[tokio::test]
async fn given_token_auth_from_env_or_file_when_right_then_delivers_and_when_wrong_then_reported() {
    let mut net = pair(TestNet::builder())
        .nats_conf("authorization { token: \"t0ken-right\" }")
        .set("nats", "token", "t0ken-right")
        .start()
        .await
        .unwrap();
    // Bob takes his token from the environment instead.
    net.node("bob").stop().await.unwrap();
    rewrite(&mut net, "bob", "nats", "token", s("not-this-one"));
    net.node("bob")
        .set_env(vec![("RMDS_NATS_TOKEN".into(), "t0ken-right".into())]);
    net.node("bob").start().await.unwrap();
    wrong_then_fixed(
        &mut net,
        &[("nats", "token", s("t0ken-wrong"))],
        &[("nats", "token", s("t0ken-right"))],
        &["authorization violation", "nats.token"],
        &["t0ken-wrong", "t0ken-right"],
    )
    .await;
}

#[tokio::test]
async fn given_nkey_auth_when_seed_known_then_delivers_and_when_unknown_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let known = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let seed_file = |kp: &nkeys::KeyPair, name: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, kp.seed().unwrap()).unwrap();
        p.display().to_string()
    };
    let good = seed_file(&known, "known.nk");
    let bad = seed_file(&stranger, "stranger.nk");
    let mut net = pair(TestNet::builder())
        .nats_conf(&format!(
            "authorization {{ users: [ {{ nkey: {} }} ] }}",
            known.public_key()
        ))
        .set("nats", "nkey_seed", good.as_str())
        .start()
        .await
        .unwrap();
    wrong_then_fixed(
        &mut net,
        &[("nats", "nkey_seed", s(&bad))],
        &[("nats", "nkey_seed", s(&good))],
        &["authorization violation", "nats.nkey_seed"],
        &[&known.seed().unwrap(), &stranger.seed().unwrap()],
    )
    .await;
}

#[tokio::test]
async fn given_jwt_auth_when_creds_file_valid_then_delivers_and_when_from_unknown_account_then_reported(
) {
    let dir = tempfile::tempdir().unwrap();
    let op = jwt::Operator::new();
    let account = op.account("RMDS");
    let good = dir.path().join("good.creds");
    let user_seed;
    {
        let (creds, seed) = account.user_creds("alice");
        std::fs::write(&good, creds).unwrap();
        user_seed = seed;
    }
    // A user of an account the server has never heard of.
    let other = jwt::Operator::new().account("ELSEWHERE");
    let bad = dir.path().join("bad.creds");
    std::fs::write(&bad, other.user_creds("mallory").0).unwrap();
    let mut net = pair(TestNet::builder())
        .nats_conf(&op.server_conf(dir.path(), &[&account]))
        .set("nats", "credentials", good.display().to_string())
        .start()
        .await
        .unwrap();
    wrong_then_fixed(
        &mut net,
        &[("nats", "credentials", s(&bad.display().to_string()))],
        &[("nats", "credentials", s(&good.display().to_string()))],
        &["authorization violation", "nats.credentials"],
        &[&user_seed],
    )
    .await;
}

#[tokio::test]
async fn given_tls_with_client_certificates_when_trusted_then_delivers_and_when_ca_or_name_wrong_then_reported(
) {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls::Pki::new(dir.path(), "nats.test");
    let mut net = pair(TestNet::builder())
        .nats_conf(&pki.server_conf(true))
        .set(
            "nats",
            "tls",
            pki.client_table(&pki.ca_pem, Some("nats.test")),
        )
        .start()
        .await
        .unwrap();
    // An untrusted server certificate: alice trusts another CA.
    let other = tls::Pki::new(&dir.path().join("other"), "nats.test");
    wrong_then_fixed(
        &mut net,
        &[(
            "nats",
            "tls",
            pki.client_table(&other.ca_pem, Some("nats.test")),
        )],
        &[(
            "nats",
            "tls",
            pki.client_table(&pki.ca_pem, Some("nats.test")),
        )],
        &[
            "invalid peer certificate",
            "not signed by a CA in nats.tls.ca",
        ],
        &[],
    )
    .await;
    // The certificate names nats.test, the URL 127.0.0.1: without the override (or
    // with a wrong one) the name does not match.
    net.node("alice").stop().await.unwrap();
    rewrite(
        &mut net,
        "alice",
        "nats",
        "tls",
        pki.client_table(&pki.ca_pem, Some("wrong.test")),
    );
    net.node("alice").start().await.unwrap();
    let alice = net.client("alice");
    // The first failure may be reported before its diagnosis is done: wait for it.
    let reason = eventually(Duration::from_secs(20), "a name mismatch reported", || {
        let c = alice.clone();
        async move {
            let r = c.health().await.ok()?["nats_error"].as_str()?.to_string();
            r.contains("not valid for name").then_some(r)
        }
    })
    .await
    .unwrap();
    assert!(
        reason.contains("not valid for name") && reason.contains("set nats.tls.server_name"),
        "{reason}"
    );
    // No client certificate: the server (verify: true) refuses the handshake.
    net.node("alice").stop().await.unwrap();
    let mut no_cert = toml::Table::new();
    no_cert.insert("ca".into(), s(&pki.ca_pem.display().to_string()));
    no_cert.insert("server_name".into(), s("nats.test"));
    rewrite(
        &mut net,
        "alice",
        "nats",
        "tls",
        toml::Value::Table(no_cert),
    );
    net.node("alice").start().await.unwrap();
    let alice = net.client("alice");
    let reason = eventually(Duration::from_secs(20), "a refused client reported", || {
        let c = alice.clone();
        async move {
            let r = c.health().await.ok()?["nats_error"].as_str()?.to_string();
            r.contains("alert").then_some(r)
        }
    })
    .await
    .unwrap();
    assert!(reason.contains("nats.tls.cert"), "{reason}");
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_bad_security_settings_when_starting_then_the_agent_refuses_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("nats.password", "[nats]\nuser = \"u\"\n".into()),
        (
            "nats",
            "[nats]\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"\n".into(),
        ),
        (
            "nats.nkey_seed",
            "[nats]\nnkey_seed = \"/nonexistent/seed\"\n".into(),
        ),
        ("nats.credentials", {
            let p = dir.path().join("junk.creds");
            std::fs::write(&p, "not a creds file").unwrap();
            format!("[nats]\ncredentials = {:?}\n", p.display().to_string())
        }),
        ("nats.tls.key", {
            let p = dir.path().join("c.pem");
            std::fs::write(&p, "-----BEGIN CERTIFICATE-----\n").unwrap();
            format!("[nats.tls]\ncert = {:?}\n", p.display().to_string())
        }),
    ];
    for (key, toml) in cases {
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            format!(
                "node_id = \"x\"\ndata_dir = {:?}\n{toml}",
                dir.path().join("d").display().to_string()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(bin())
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(&format!("`{key}`")), "{key} not named: {err}");
    }
}
