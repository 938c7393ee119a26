//! The dashboard (`/ui/`) and the API viewer (`/docs/`) in a real headless Chromium
//! against real agents: the overview shows the node, its peers, the topology picture,
//! the charts and the NATS banner while NATS is down; a channel's group is reset with
//! a confirmation; the live tap pauses and resumes; a group's dead letter is inspected
//! (its content shown as text, never as HTML) and redriven, and it arrives again; a
//! purge and a kick show the per-node answer; with authentication on, the API key
//! field opens the pages (the tap's WebSocket included). Screenshots go to
//! docs/screenshots/.

use fantoccini::Locator;
use rmds_scenarios::harness::{eventually, Browser, TestNet};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

const T: Duration = Duration::from_secs(30);

async fn confirm(b: &Browser) {
    b.click("[data-testid=confirm-yes]").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pages_work_against_real_agents() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let url = net.agent("bob").client().base().to_string();
    let bob = net.client("bob");

    // The page and its policy.
    let r = reqwest::get(format!("{url}/ui/")).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("<script>") && !body.contains("onclick"),
        "no inline script"
    );

    let b = Browser::start().await.unwrap();
    b.goto(&format!("{url}/ui/")).await.unwrap();
    b.wait_text("[data-testid=node-id]", T, |t| t.contains("bob"))
        .await
        .unwrap();
    b.wait_text(
        "[data-testid=peer-row][data-node=alice] [data-testid=peer-state]",
        T,
        |t| t.contains("online"),
    )
    .await
    .unwrap();
    b.wait_for("[data-testid=topology]").await.unwrap();
    b.wait_for("[data-testid=chart-throughput]").await.unwrap();
    b.wait_for("[data-testid=chart-backlog]").await.unwrap();
    b.wait_text("[data-testid=store-size]", T, |t| {
        t.chars().any(|c| c.is_ascii_digit())
    })
    .await
    .unwrap();
    b.screenshot(&shots().join("dashboard-overview.png"))
        .await
        .unwrap();

    // A group with a dead letter whose content looks like HTML.
    let evil = "<img src=x onerror=alert(1)>";
    bob.create_group(
        "chat",
        "dlq",
        &rmds::GroupOptions {
            ack_wait: Some(Duration::from_millis(300)),
            max_deliveries: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = net
        .client("alice")
        .publish_text("chat", evil)
        .await
        .unwrap()
        .id;
    eventually(T, "a dead letter", || {
        let bob = bob.clone();
        async move {
            let _ = bob.pull("chat", "dlq", 10, Duration::ZERO).await;
            (!bob.group_dead_letters("chat", "dlq").await.ok()?.is_empty()).then_some(())
        }
    })
    .await
    .unwrap();

    // The channel page: groups, reset with a confirmation, the tap paused and resumed.
    b.goto(&format!("{url}/ui/#/channel/chat")).await.unwrap();
    b.wait_for("[data-testid=group-row][data-group=dlq]")
        .await
        .unwrap();
    b.click("[data-testid=group-row][data-group=dlq] [data-testid=group-reset]")
        .await
        .unwrap();
    confirm(&b).await;
    eventually(T, "the group moved back", || {
        let bob = bob.clone();
        async move { (bob.group("chat", "dlq").await.ok()?["next_offset"] == 1).then_some(()) }
    })
    .await
    .unwrap();
    net.client("alice")
        .publish_text("chat", "tap one")
        .await
        .unwrap();
    b.wait_text("[data-testid=tap-event]", T, |t| !t.trim().is_empty())
        .await
        .unwrap();
    b.click("[data-testid=tap-pause]").await.unwrap();
    let before = b
        .client
        .find_all(Locator::Css("[data-testid=tap-event]"))
        .await
        .unwrap()
        .len();
    net.client("alice")
        .publish_text("chat", "while paused")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = b
        .client
        .find_all(Locator::Css("[data-testid=tap-event]"))
        .await
        .unwrap()
        .len();
    assert_eq!(paused, before, "a paused tap does not change");
    b.screenshot(&shots().join("dashboard-channel.png"))
        .await
        .unwrap();
    b.click("[data-testid=tap-resume]").await.unwrap();
    net.client("alice")
        .publish_text("chat", "after resume")
        .await
        .unwrap();
    eventually(T, "the tap moves again", || {
        let c = b.client.clone();
        async move {
            (c.find_all(Locator::Css("[data-testid=tap-event]"))
                .await
                .ok()?
                .len()
                > paused)
                .then_some(())
        }
    })
    .await
    .unwrap();

    // Dead letters: inspect (as text), redrive with a confirmation; it arrives again.
    b.goto(&format!("{url}/ui/#/dead-letters")).await.unwrap();
    let row = format!("[data-testid=group-dead-row][data-id='{id}']");
    b.click(&format!("{row} [data-testid=dead-inspect]"))
        .await
        .unwrap();
    let shown = b
        .text("[data-testid=dead-detail] [data-testid=dead-message]")
        .await
        .unwrap();
    assert!(
        shown.contains(evil),
        "the content is shown as text: {shown:?}"
    );
    assert!(b
        .client
        .find_all(Locator::Css("[data-testid=dead-detail] img"))
        .await
        .unwrap()
        .is_empty());
    assert!(b.client.get_alert_text().await.is_err(), "a script ran");
    b.screenshot(&shots().join("dashboard-dead-letters.png"))
        .await
        .unwrap();
    b.click(&format!("{row} [data-testid=dead-redrive]"))
        .await
        .unwrap();
    confirm(&b).await;
    let again = eventually(T, "the redriven message", || {
        let bob = bob.clone();
        let id = id.clone();
        async move {
            let msgs = bob
                .pull("chat", "dlq", 100, Duration::from_millis(200))
                .await
                .ok()?;
            msgs.into_iter().find(|m| m.id == id)
        }
    })
    .await
    .unwrap();
    assert_eq!(again.text().unwrap(), evil);
    bob.ack("chat", "dlq", std::slice::from_ref(&again.id))
        .await
        .unwrap();

    // Another dead letter, deleted from the dashboard with a confirmation.
    let gone = net
        .client("alice")
        .publish_text("chat", "to delete")
        .await
        .unwrap()
        .id;
    eventually(T, "a second dead letter", || {
        let bob = bob.clone();
        let gone = gone.clone();
        async move {
            let _ = bob.pull("chat", "dlq", 10, Duration::ZERO).await;
            bob.group_dead_letters("chat", "dlq")
                .await
                .ok()?
                .iter()
                .any(|d| d["id"] == gone.as_str())
                .then_some(())
        }
    })
    .await
    .unwrap();
    b.goto(&format!("{url}/ui/#/management")).await.unwrap();
    b.goto(&format!("{url}/ui/#/dead-letters")).await.unwrap();
    let row = format!("[data-testid=group-dead-row][data-id='{gone}']");
    b.click(&format!("{row} [data-testid=dead-delete]"))
        .await
        .unwrap();
    confirm(&b).await;
    eventually(T, "the dead letter deleted", || {
        let bob = bob.clone();
        let gone = gone.clone();
        async move {
            (!bob
                .group_dead_letters("chat", "dlq")
                .await
                .ok()?
                .iter()
                .any(|d| d["id"] == gone.as_str()))
            .then_some(())
        }
    })
    .await
    .unwrap();

    // Management: a purge and a kick, each confirmed, with the answer per node.
    b.goto(&format!("{url}/ui/#/management")).await.unwrap();
    let purge_what = b.wait_for("[data-testid=purge-what]").await.unwrap();
    purge_what.select_by_value("sent").await.unwrap();
    let scope = b.wait_for("[data-testid=purge-scope]").await.unwrap();
    scope.select_by_value("all").await.unwrap();
    b.click("[data-testid=purge-button]").await.unwrap();
    confirm(&b).await;
    b.wait_text("[data-testid=mgmt-result-row]", T, |t| {
        t.contains("alice") && t.contains("bob")
    })
    .await
    .unwrap();
    let kick = b.wait_for("[data-testid=kick-node]").await.unwrap();
    kick.select_by_value("alice").await.unwrap();
    b.type_into("[data-testid=kick-channel]", "chat")
        .await
        .unwrap();
    b.click("[data-testid=kick-channel-button]").await.unwrap();
    confirm(&b).await;
    b.wait_text("[data-testid=mgmt-result-row]", T, |t| {
        t.contains("kicked") || t.contains("alice")
    })
    .await
    .unwrap();
    b.screenshot(&shots().join("dashboard-management.png"))
        .await
        .unwrap();
    eventually(T, "alice kicked from chat", || {
        let alice = net.client("alice");
        async move {
            let h = alice.get_json("/v1/channels").await.ok()?;
            (!h["channels"]
                .as_array()?
                .iter()
                .any(|c| c["channel"] == "chat" && !c["role"].is_null()))
            .then_some(())
        }
    })
    .await
    .unwrap();

    // NATS down: the banner shows and the overview keeps working.
    net.stop_nats().await.unwrap();
    b.goto(&format!("{url}/ui/")).await.unwrap();
    b.wait_text("[data-testid=nats-banner]", T, |t| !t.trim().is_empty())
        .await
        .unwrap();
    b.wait_text("[data-testid=node-id]", T, |t| t.contains("bob"))
        .await
        .unwrap();
    b.screenshot(&shots().join("dashboard-nats-down.png"))
        .await
        .unwrap();
    net.start_nats().await.unwrap();

    // The API viewer.
    b.goto(&format!("{url}/docs/")).await.unwrap();
    b.wait_text(".swagger-ui .info .title", T, |t| {
        t.to_lowercase().contains("rmds")
    })
    .await
    .unwrap();
    b.wait_text(".swagger-ui", T, |t| {
        t.contains("/v1/channels/{ch}/messages")
    })
    .await
    .unwrap();
    b.screenshot(&shots().join("api-docs.png")).await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_the_api_key_field_opens_the_dashboard() {
    let key = "dashboard-admin-key-0123456789";
    let mut auth = toml::Table::new();
    auth.insert("enabled".into(), true.into());
    auth.insert("admin_key".into(), key.into());
    let net = TestNet::builder()
        .binary(bin())
        .set("api", "auth", toml::Value::Table(auth))
        .api_key(key)
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let url = net.agent("bob").client().base().to_string();
    // The page itself is public; the API behind it is not.
    assert_eq!(
        reqwest::get(format!("{url}/ui/")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{url}/v1/nodes"))
            .await
            .unwrap()
            .status(),
        401
    );
    let b = Browser::start().await.unwrap();
    b.goto(&format!("{url}/ui/")).await.unwrap();
    b.type_into("[data-testid=api-key]", key).await.unwrap();
    b.click("[data-testid=api-key-save]").await.unwrap();
    b.wait_text("[data-testid=node-id]", T, |t| t.contains("bob"))
        .await
        .unwrap();
    b.wait_text("[data-testid=peer-row][data-node=alice]", T, |t| {
        t.contains("alice")
    })
    .await
    .unwrap();
    // A user signs in with the login form (a JWT from /v1/auth/login).
    let admin = rmds::Client::with_api_key(&url, key);
    admin
        .post_json(
            "/v1/auth/bootstrap",
            &serde_json::json!({"username": "ops", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    let u = Browser::start().await.unwrap();
    u.goto(&format!("{url}/ui/")).await.unwrap();
    u.type_into("[data-testid=login-user]", "ops")
        .await
        .unwrap();
    u.type_into("[data-testid=login-password]", "correct horse battery")
        .await
        .unwrap();
    u.click("[data-testid=login-submit]").await.unwrap();
    u.wait_text("[data-testid=peer-row][data-node=alice]", T, |t| {
        t.contains("alice")
    })
    .await
    .unwrap();
    u.close().await.unwrap();
    // The tap's WebSocket carries the key as a subprotocol.
    b.goto(&format!("{url}/ui/#/channel/chat")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    net.client("alice")
        .publish_text("chat", "with auth")
        .await
        .unwrap();
    b.wait_text("[data-testid=tap-event]", T, |t| !t.trim().is_empty())
        .await
        .unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_dead_letters_are_inspected_redriven_and_deleted_from_the_dashboard() {
    // A receiver that stops answering but stays online: deliveries to it are given up.
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "max_retry_attempts", 1)
        .set("delivery", "ack_timeout", "300ms")
        .set("discovery", "node_offline_timeout", "60s")
        .agent("bob", &["chat:rw"])
        .agent("carol", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("bob", "chat", &["carol"])
        .await
        .unwrap();
    let url = net.agent("bob").client().base().to_string();
    let bob = net.client("bob");
    net.node("carol").pause().unwrap();
    let first = bob.publish_text("chat", "first").await.unwrap().id;
    let second = bob.publish_text("chat", "second").await.unwrap().id;
    eventually(
        Duration::from_secs(60),
        "two dead letters at the sender",
        || {
            let bob = bob.clone();
            async move {
                (bob.get_json("/v1/dead-letters").await.ok()?["dead_letters"]
                    .as_array()?
                    .len()
                    >= 2)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    let b = Browser::start().await.unwrap();
    b.goto(&format!("{url}/ui/#/dead-letters")).await.unwrap();
    let row = |id: &str| format!("[data-testid=dead-row][data-id='{id}']");
    b.click(&format!("{} [data-testid=dead-inspect]", row(&first)))
        .await
        .unwrap();
    b.wait_text("[data-testid=dead-detail]", T, |t| t.contains("carol"))
        .await
        .unwrap();
    b.click(&format!("{} [data-testid=dead-redrive]", row(&first)))
        .await
        .unwrap();
    confirm(&b).await;
    eventually(T, "queued again", || {
        let bob = bob.clone();
        let first = first.clone();
        async move {
            let st = bob.status(&first).await.ok()?;
            st["receivers"]
                .as_array()?
                .iter()
                .any(|r| r["state"] == "queued" || r["state"] == "sent")
                .then_some(())
        }
    })
    .await
    .unwrap();
    b.click(&format!("{} [data-testid=dead-delete]", row(&second)))
        .await
        .unwrap();
    confirm(&b).await;
    eventually(T, "the second dead letter deleted", || {
        let bob = bob.clone();
        let second = second.clone();
        async move {
            let d = bob.get_json("/v1/dead-letters").await.ok()?;
            (!d["dead_letters"]
                .as_array()?
                .iter()
                .any(|x| x["id"] == second.as_str()))
            .then_some(())
        }
    })
    .await
    .unwrap();
    // The receiver answers again: the redriven message arrives.
    net.node("carol").resume().unwrap();
    let carol = net.client("carol");
    let got = eventually(
        Duration::from_secs(60),
        "the redriven message at carol",
        || {
            let carol = carol.clone();
            async move {
                let msgs = carol
                    .pull("chat", "default", 10, Duration::from_millis(300))
                    .await
                    .ok()?;
                msgs.into_iter()
                    .find(|m| m.text().ok().as_deref() == Some("first"))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(got.sender, "bob");
    b.close().await.unwrap();
}
