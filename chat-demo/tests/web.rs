//! The chat's web page in a real headless Chromium, across four nodes (alice, bob,
//! lisa, andy), each with its own `rmds-chat --web` beside its agent: a line typed in
//! alice's page appears in the others'; while NATS is down her page shows the banner
//! and her line as queued, and after NATS returns it is delivered and appears at the
//! others; a line that looks like HTML is shown as text; the page's WebSocket refuses
//! a foreign Origin. Screenshots go to docs/screenshots/.

use rmds_scenarios::harness::{free_port, Browser, TestNet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const NODES: [&str; 4] = ["alice", "bob", "lisa", "andy"];

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

struct ChatWeb {
    _child: Child,
    url: String,
}

async fn chat_web(net: &TestNet, node: &str) -> ChatWeb {
    chat_web_as(net, node, "rw").await
}

async fn chat_web_as(net: &TestNet, node: &str, role: &str) -> ChatWeb {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rmds-chat"))
        .args([
            "--agent",
            net.agent(node).client().base(),
            "--role",
            role,
            "--web",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    for _ in 0..200 {
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return ChatWeb { _child: child, url };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("rmds-chat --web for {node} did not answer");
}

async fn send(b: &Browser, text: &str) {
    b.type_into("[data-testid=chat-input]", text).await.unwrap();
    b.click("[data-testid=chat-send]").await.unwrap();
}

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_works_across_four_nodes_through_a_nats_outage() {
    let mut b = TestNet::builder();
    for n in NODES {
        b = b.agent(n, &["chat:rw"]);
    }
    let mut net = b.start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob", "lisa", "andy"])
        .await
        .unwrap();
    for n in ["bob", "lisa", "andy"] {
        net.wait_discovered(n, "chat", &["alice"]).await.unwrap();
    }
    let mut webs = Vec::new();
    for n in NODES {
        webs.push(chat_web(&net, n).await);
    }
    let (alice_url, bob_url) = (webs[0].url.clone(), webs[1].url.clone());

    // The page: strict policy, and its WebSocket only for its own origin.
    let r = reqwest::get(&alice_url).await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let ws_url = alice_url.replacen("http://", "ws://", 1) + "ws";
    let host = alice_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    for (origin, ok) in [
        ("http://evil.example", false),
        (&*format!("http://{host}"), true),
    ] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let r = tokio_tungstenite::connect_async(req).await;
        assert_eq!(
            r.is_ok(),
            ok,
            "WebSocket from Origin {origin}: {:?}",
            r.err()
        );
    }

    let alice = Browser::start().await.unwrap();
    let bob = Browser::start().await.unwrap();
    alice.goto(&alice_url).await.unwrap();
    bob.goto(&bob_url).await.unwrap();
    assert_eq!(
        alice.text("[data-testid=node-name]").await.unwrap().trim(),
        "alice"
    );
    alice
        .wait_text("[data-testid=peer]", T, |t| {
            ["bob", "lisa", "andy"].iter().all(|n| t.contains(n)) && !t.contains("offline")
        })
        .await
        .unwrap();

    // A line from alice appears at bob, with its sender.
    send(&alice, "hello from alice").await;
    bob.wait_text(
        "[data-testid=msg][data-sender=alice] [data-testid=msg-text]",
        T,
        |t| t.contains("hello from alice"),
    )
    .await
    .unwrap();
    alice
        .wait_text("[data-testid=msg-state]", T, |t| t.contains("delivered"))
        .await
        .unwrap();

    // HTML is text.
    let evil = "<img src=x onerror=alert(1)>";
    send(&alice, evil).await;
    let shown = bob
        .wait_text("[data-testid=msg] [data-testid=msg-text]", T, |t| {
            t.contains(evil)
        })
        .await
        .unwrap();
    assert!(shown.contains(evil));
    let imgs = bob
        .client
        .find_all(fantoccini::Locator::Css("[data-testid=msg] img"))
        .await
        .unwrap();
    assert!(imgs.is_empty(), "the message became an element");
    assert!(bob.client.get_alert_text().await.is_err(), "a script ran");
    bob.screenshot(&shots().join("chat-bob.png")).await.unwrap();

    // NATS goes down: the banner shows; alice's line waits as queued.
    net.stop_nats().await.unwrap();
    alice
        .wait_text("[data-testid=nats-banner]", T, |t| !t.trim().is_empty())
        .await
        .unwrap();
    send(&alice, "typed during the outage").await;
    let states = alice
        .wait_text("[data-testid=msg-state]", T, |t| t.contains("queued"))
        .await
        .unwrap();
    assert!(states.contains("queued"), "{states}");
    alice
        .screenshot(&shots().join("chat-outage.png"))
        .await
        .unwrap();

    // NATS returns: delivered, and it reaches every other node.
    net.start_nats().await.unwrap();
    bob.wait_text("[data-testid=msg-text]", Duration::from_secs(60), |t| {
        t.contains("typed during the outage")
    })
    .await
    .unwrap();
    alice
        .wait_text("[data-testid=msg-state]", Duration::from_secs(60), |t| {
            !t.contains("queued") && !t.contains("sending")
        })
        .await
        .unwrap();
    // The page polls the health once a second: the banner goes within a few polls.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let shown = alice
            .client
            .find_all(fantoccini::Locator::Css("[data-testid=nats-banner]"))
            .await
            .unwrap();
        let mut any = false;
        for b in shown {
            any |= b.is_displayed().await.unwrap_or(false);
        }
        if !any {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the banner is gone when NATS is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice
        .screenshot(&shots().join("chat-alice.png"))
        .await
        .unwrap();
    for (i, n) in ["lisa", "andy"].iter().enumerate() {
        bob.goto(&webs[i + 2].url).await.unwrap();
        let t = bob
            .wait_text(
                "[data-testid=msg][data-sender=alice] [data-testid=msg-text]",
                T,
                |t| t.contains("hello from alice") && t.contains("typed during the outage"),
            )
            .await
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(
            t.matches("typed during the outage").count(),
            1,
            "{n} shows it once"
        );
    }
    // The views.
    bob.goto(&format!("{}#/topology", webs[1].url))
        .await
        .unwrap();
    bob.wait_text("body", T, |t| t.contains("andy") && t.contains("chat"))
        .await
        .unwrap();
    bob.goto(&format!("{}#/stats", webs[1].url)).await.unwrap();
    bob.wait_text("body", T, |t| t.contains("published"))
        .await
        .unwrap();
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_only_nodes_page_serves_and_sends() {
    let net = TestNet::builder()
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let web = chat_web_as(&net, "alice", "writer").await;
    let h: serde_json::Value = reqwest::get(format!("{}api/health", web.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["node"], "alice");
    let b = Browser::start().await.unwrap();
    b.goto(&web.url).await.unwrap();
    send(&b, "from a writer").await;
    b.wait_text("[data-testid=msg-state]", T, |t| t.contains("delivered"))
        .await
        .unwrap();
    let got = net
        .client("bob")
        .pull("chat", "default", 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(got
        .iter()
        .any(|m| m.text().unwrap().contains("from a writer")));
    b.close().await.unwrap();
}
