//! Cross-site use of the local API, end to end against a real agent: web pages on
//! foreign origins cannot open the WebSocket or publish, a `text/plain` POST (a
//! browser's "simple request") is refused unless it carries `X-Rmds-Request`, and a
//! foreign `Host` (DNS rebinding) is refused. Local programs without `Origin` (the SDK,
//! curl) keep working. Every refusal is counted.

use futures::StreamExt;
use rmds_scenarios::harness::TestNet;
use serde_json::{json, Value};
use std::path::PathBuf;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DASHBOARD: &str = "http://dashboard.example:8080";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn agent() -> TestNet {
    TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:rw"])
        .set("api", "allowed_origins", vec![DASHBOARD.to_string()])
        .set("api", "allowed_hosts", vec!["agent.internal".to_string()])
        .start()
        .await
        .unwrap()
}

/// The upgrade's answer: `Ok(())` when the socket opened, else the HTTP status and body.
async fn upgrade(net: &TestNet, path: &str, headers: &[(&str, &str)]) -> Result<(), (u16, Value)> {
    let base = net.client("alice").base().replace("http://", "ws://");
    let mut req = format!("{base}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            while ws.next().await.is_some() {}
            Ok(())
        }
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

async fn request(
    net: &TestNet,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let url = format!("{}{path}", net.client("alice").base());
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn stat(net: &TestNet, key: &str) -> u64 {
    let s = net.client("alice").stats().await.unwrap();
    s[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {s}"))
}

#[tokio::test]
async fn given_a_foreign_origin_when_upgrading_a_websocket_then_it_is_refused_and_counted() {
    let net = agent().await;
    for path in ["/v1/ws", "/v1/ws/tap"] {
        let (status, v) = upgrade(&net, path, &[("origin", "http://evil.example")])
            .await
            .unwrap_err();
        assert_eq!(status, 403, "{path}: {v}");
        assert_eq!(v["error"]["code"], "forbidden_origin", "{path}: {v}");
    }
    // A sandboxed page sends `Origin: null`: foreign too.
    let (status, _) = upgrade(&net, "/v1/ws", &[("origin", "null")])
        .await
        .unwrap_err();
    assert_eq!(status, 403);
    assert_eq!(stat(&net, "api_refused_origin").await, 3);
    let metrics = reqwest::get(format!("{}/metrics", net.client("alice").base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rmds_api_refused_total{reason=\"origin\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn given_no_origin_or_an_allowed_one_when_upgrading_then_the_websocket_opens() {
    let net = agent().await;
    let port = net
        .client("alice")
        .base()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let own = format!("http://127.0.0.1:{port}");
    for path in ["/v1/ws", "/v1/ws/tap"] {
        upgrade(&net, path, &[]).await.unwrap();
        upgrade(&net, path, &[("origin", DASHBOARD)]).await.unwrap();
        // A page served by the agent itself: its origin is the Host it was asked as.
        upgrade(&net, path, &[("origin", &own)]).await.unwrap();
    }
    assert_eq!(stat(&net, "api_refused_origin").await, 0);
}

#[tokio::test]
async fn given_a_cross_site_text_post_when_publishing_then_it_is_refused_and_nothing_is_stored() {
    let net = agent().await;
    let publish = "/v1/channels/chat/messages";
    // From a foreign page: the origin is refused first.
    let (status, v) = request(
        &net,
        "POST",
        publish,
        &[
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        Some("hi"),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden_origin");
    // A simple request without Origin (an old browser, a form): no JSON, no marker header.
    for ct in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, v) = request(&net, "POST", publish, &[("content-type", ct)], Some("hi")).await;
        assert_eq!(status, 415, "{ct}: {v}");
        assert_eq!(v["error"]["code"], "forbidden_content_type", "{ct}: {v}");
    }
    let (status, v) = request(&net, "POST", publish, &[], Some("hi")).await;
    assert_eq!(status, 415, "no content type: {v}");
    assert_eq!(stat(&net, "published").await, 0, "nothing was stored");
    assert_eq!(stat(&net, "api_refused_content_type").await, 5);
    // The same text publish with the marker header is a local program: accepted.
    let (status, v) = request(
        &net,
        "POST",
        publish,
        &[("content-type", "text/plain"), ("x-rmds-request", "1")],
        Some("hi"),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(stat(&net, "published").await, 1);
}

#[tokio::test]
async fn given_a_foreign_host_when_calling_the_api_then_it_is_refused_as_dns_rebinding() {
    let net = agent().await;
    for host in [
        "evil.example",
        "evil.example:7700",
        "localhost.evil.example",
    ] {
        let (status, v) = request(&net, "GET", "/v1/stats", &[("host", host)], None).await;
        assert_eq!(status, 403, "{host}: {v}");
        assert_eq!(v["error"]["code"], "forbidden_host", "{host}: {v}");
    }
    let (status, _) = upgrade(&net, "/v1/ws", &[("host", "evil.example")])
        .await
        .unwrap_err();
    assert_eq!(status, 403);
    for host in [
        "localhost",
        "LOCALHOST:1234",
        "127.0.0.1",
        "[::1]:9",
        "agent.internal",
    ] {
        let (status, v) = request(&net, "GET", "/v1/stats", &[("host", host)], None).await;
        assert_eq!(status, 200, "{host}: {v}");
    }
    assert_eq!(stat(&net, "api_refused_host").await, 4);
}

#[tokio::test]
async fn given_local_programs_when_they_use_the_api_as_before_then_nothing_is_refused() {
    let mut net = agent().await;
    let c = net.client("alice");
    // The SDK: text, JSON, batch, pull, ack, join, leave.
    c.publish_text("chat", "plain text").await.unwrap();
    c.publish_json("chat", &json!({"n": 1})).await.unwrap();
    c.publish_batch("chat", &[json!({"n": 2})]).await.unwrap();
    c.join("news", rmds::Role::Rw).await.unwrap();
    c.leave("news").await.unwrap();
    // curl-like: JSON bodies, NDJSON, a bodiless DELETE, GETs.
    let (status, v) = request(
        &net,
        "POST",
        "/v1/channels/chat/messages",
        &[("content-type", "application/json")],
        Some("{\"n\":3}"),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = request(
        &net,
        "POST",
        "/v1/channels/chat/messages:batch",
        &[("content-type", "application/x-ndjson")],
        Some("{\"n\":4}\n"),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = request(&net, "DELETE", "/v1/channels/never-joined", &[], None).await;
    assert_eq!(status, 404, "an ordinary answer, not a refusal: {v}");
    let (status, _) = request(&net, "GET", "/v1/channels", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(stat(&net, "published").await, 5);
    for key in [
        "api_refused_origin",
        "api_refused_host",
        "api_refused_content_type",
    ] {
        assert_eq!(stat(&net, key).await, 0, "{key}");
    }
    net.assert_healthy().unwrap();
}
