//! The local API with `api.auth.enabled`: every route and the WebSocket refuse a
//! request without credentials (401), a principal without the right role or channel
//! grant (403), an expired JWT and a replayed or stale signed request (401); with the
//! right credentials they work; the OpenAPI document declares the schemes; secrets are
//! shown once and never again.

use futures::{SinkExt, StreamExt};
use rmds_agent::auth::hmac_req;
use rmds_scenarios::harness::TestNet;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "test-admin-key-0123456789";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn secured(token_ttl: &str) -> TestNet {
    let mut auth = toml::Table::new();
    auth.insert("enabled".into(), true.into());
    auth.insert("admin_key".into(), ADMIN.into());
    auth.insert("token_ttl".into(), token_ttl.into());
    let net = TestNet::builder()
        .binary(bin())
        .set("api", "auth", toml::Value::Table(auth))
        .api_key(ADMIN)
        .agent("alice", &["chat:writer", "news:writer"])
        .agent("bob", &["chat:rw", "news:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net
}

/// One request with raw headers; (status, JSON body or Null).
async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut r = http
        .request(method.to_uppercase().parse().unwrap(), url)
        .header("x-rmds-request", "1");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn key(k: &str) -> Vec<(&'static str, String)> {
    vec![("x-api-key", k.to_string())]
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {t}"))]
}

async fn new_key(base: &str, role: &str, grants: Option<Value>) -> String {
    let mut b = json!({"name": format!("{role}-key"), "role": role});
    if let Some(g) = grants {
        b["grants"] = g;
    }
    let (s, v) = call(
        "post",
        &format!("{base}/v1/auth/keys"),
        &key(ADMIN),
        Some(&b),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

fn auth_refusal(status: u16, body: &Value) -> bool {
    status == 401
        || (status == 403
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(" may not ")))
}

#[tokio::test]
async fn given_auth_on_when_every_route_is_called_then_401_without_credentials_and_served_with_an_admin_key(
) {
    let net = secured("1h").await;
    let base = net.client("bob").base().to_string();
    let (s, doc) = call("get", &format!("{base}/v1/openapi.json"), &[], None).await;
    assert_eq!(s, 200, "the document is public");
    for scheme in ["apiKey", "bearerToken", "serviceSignature"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops.sort_by_key(|(m, _, _)| (m == "delete", m.clone()));
    let url = |p: &str| {
        format!(
            "{base}{}",
            p.replace("{ch}", "chat")
                .replace("{g}", "default")
                .replace("{d}", "default")
                .replace("{id}", "01M8ZZZZZZZZZZZZZZZZZZZZZZ")
        )
    };
    let mut protected = 0;
    for (method, path, op) in &ops {
        let example = op["requestBody"]["content"]["application/json"]["example"].clone();
        let body = (!example.is_null()).then_some(&example);
        let (s, v) = call(method, &url(path), &[], body).await;
        if op["x-rmds-access"] == "public" {
            // Public: it may refuse bad input (a malformed refresh token is 401), but
            // never for want of credentials.
            let asked = v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("credentials required"));
            assert!(!asked, "{method} {path} is public: {v}");
            continue;
        }
        protected += 1;
        assert_eq!(s, 401, "{method} {path} without credentials: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}: {v}");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path}: 401 undocumented"
        );
        let (s, v) = call(method, &url(path), &key("not-a-key"), body).await;
        assert_eq!(s, 401, "{method} {path} with a wrong key: {v}");
    }
    assert!(protected >= 50, "{protected} protected operations");
    // The same sweep with the admin key: served, as documented, never a 5xx.
    for (method, path, op) in &ops {
        let example = op["requestBody"]["content"]["application/json"]["example"].clone();
        let body = (!example.is_null()).then_some(&example);
        let (s, v) = call(method, &url(path), &key(ADMIN), body).await;
        let public = op["x-rmds-access"] == "public";
        assert!(
            public || !auth_refusal(s, &v),
            "{method} {path} refused the admin: {s} {v}"
        );
        assert!(s < 500 || s == 503, "{method} {path}: {s} {v}");
        assert!(
            op["responses"][s.to_string()].is_object(),
            "{method} {path} answered {s}, undocumented: {v}"
        );
    }
    let s = rmds::Client::new(&base).stats().await;
    assert!(s.is_err(), "the SDK without a key is refused too");
    let stats = rmds::Client::with_api_key(&base, ADMIN)
        .stats()
        .await
        .unwrap();
    assert!(
        stats["auth_unauthenticated"].as_u64().unwrap() >= 100,
        "{stats}"
    );
}

#[tokio::test]
async fn given_roles_and_grants_when_acting_then_403_outside_them_and_secrets_shown_once() {
    let net = secured("1h").await;
    let alice = net.client("alice").base().to_string();
    let bob = net.client("bob").base().to_string();
    let publisher = new_key(&alice, "publisher", None).await;
    let reader = new_key(&alice, "reader-only", None).await;
    let consumer = new_key(
        &bob,
        "consumer",
        Some(json!([{"channel": "chat", "actions": ["consume"]}])),
    )
    .await;
    let msg = json!({"n": 1});
    let publish = format!("{alice}/v1/channels/chat/messages");
    let (s, v) = call("post", &publish, &key(&publisher), Some(&msg)).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call("post", &publish, &key(&reader), Some(&msg)).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not Publish"),
        "{v}"
    );
    let (s, _) = call("get", &format!("{alice}/v1/stats"), &key(&reader), None).await;
    assert_eq!(s, 200, "reading is every role's");
    let (s, _) = call(
        "post",
        &format!("{alice}/v1/purge"),
        &key(&publisher),
        Some(&json!({"what": "queued"})),
    )
    .await;
    assert_eq!(s, 403, "purge is for admins");
    // The consumer's grant covers chat, not news.
    let (s, v) = call(
        "get",
        &format!("{bob}/v1/channels/chat/messages?wait=3s"),
        &bearer(&consumer),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"][0]["data"], msg, "{v}");
    let (s, _) = call(
        "get",
        &format!("{bob}/v1/channels/news/messages"),
        &key(&consumer),
        None,
    )
    .await;
    assert_eq!(s, 403, "no grant on news");
    let (s, _) = call(
        "post",
        &format!("{bob}/v1/channels/chat/messages"),
        &key(&consumer),
        Some(&msg),
    )
    .await;
    assert_eq!(s, 403, "a consumer does not publish");
    // Keys are listed without their secrets.
    let (s, v) = call("get", &format!("{alice}/v1/auth/keys"), &key(ADMIN), None).await;
    assert_eq!(s, 200);
    let text = v.to_string();
    assert_eq!(v["principals"].as_array().unwrap().len(), 2, "{v}");
    for k in [&publisher, &reader] {
        let secret = k.split_once('.').unwrap().1;
        assert!(!text.contains(secret), "a key is shown again: {text}");
    }
    let (s, _) = call(
        "get",
        &format!("{alice}/v1/auth/keys"),
        &key(&publisher),
        None,
    )
    .await;
    assert_eq!(s, 403, "only admins list principals");
    let log = std::fs::read_to_string(net.agent("alice").log_path()).unwrap();
    assert!(
        !log.contains(publisher.split_once('.').unwrap().1),
        "a key in the log"
    );
    assert!(!log.contains(ADMIN), "the admin key in the log");
    let stats = rmds::Client::with_api_key(&alice, ADMIN)
        .stats()
        .await
        .unwrap();
    assert!(stats["auth_forbidden"].as_u64().unwrap() >= 3, "{stats}");
}

#[tokio::test]
async fn given_users_when_logging_in_then_jwt_works_refreshes_and_expires() {
    let net = secured("2s").await;
    let bob = net.client("bob").base().to_string();
    let creds = json!({"username": "root", "password": "root-password-1"});
    let (s, v) = call(
        "post",
        &format!("{bob}/v1/auth/bootstrap"),
        &[],
        Some(&creds),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = call(
        "post",
        &format!("{bob}/v1/auth/bootstrap"),
        &[],
        Some(&creds),
    )
    .await;
    assert_eq!(s, 409, "bootstrap only while no user exists");
    let login = |c: Value| {
        let bob = bob.clone();
        async move { call("post", &format!("{bob}/v1/auth/login"), &[], Some(&c)).await }
    };
    let (s, v) = login(json!({"username": "root", "password": "wrong-password"})).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = login(creds.clone()).await;
    assert_eq!(s, 200, "{v}");
    let root = v["access_token"].as_str().unwrap().to_string();
    let (s, v) = call(
        "post",
        &format!("{bob}/v1/auth/users"),
        &bearer(&root),
        Some(&json!({"username": "ann", "password": "ann-password-1", "role": "consumer"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call("get", &format!("{bob}/v1/auth/users"), &bearer(&root), None).await;
    assert_eq!(s, 200);
    assert!(
        !v.to_string().contains("argon2"),
        "password hashes are not returned: {v}"
    );
    let (_, v) = login(json!({"username": "ann", "password": "ann-password-1"})).await;
    let ann = v["access_token"].as_str().unwrap().to_string();
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    let pull = format!("{bob}/v1/channels/chat/messages");
    let (s, v) = call("get", &pull, &bearer(&ann), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call("get", &format!("{bob}/v1/auth/whoami"), &bearer(&ann), None).await;
    assert_eq!((s, v["principal"]["id"].clone()), (200, json!("ann")));
    let (s, _) = call(
        "post",
        &format!("{bob}/v1/auth/users"),
        &bearer(&ann),
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 403, "a consumer creates no users");
    let (s, _) = call("get", &pull, &bearer(&refresh), None).await;
    assert_eq!(s, 401, "a refresh token is not an access token");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (s, v) = call("get", &pull, &bearer(&ann), None).await;
    assert_eq!(s, 401, "expired: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    let (s, v) = call(
        "post",
        &format!("{bob}/v1/auth/refresh"),
        &[],
        Some(&json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let fresh = v["access_token"].as_str().unwrap();
    let (s, _) = call("get", &pull, &bearer(fresh), None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn given_a_service_account_when_signing_then_valid_requests_pass_and_replays_or_stale_ones_do_not(
) {
    let net = secured("1h").await;
    let alice = net.client("alice").base().to_string();
    let (s, v) = call(
        "post",
        &format!("{alice}/v1/auth/service-accounts"),
        &key(ADMIN),
        Some(&json!({"name": "etl", "role": "publisher", "grants": [{"channel": "chat", "actions": ["publish"]}]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let secret = v["secret"].as_str().unwrap().to_string();
    let path = "/v1/channels/chat/messages?ttl=1m";
    let body = json!({"n": 7}).to_string();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let signed = |ts: i64, nonce: &str, body: &str, path: &str| {
        let c = hmac_req::canonical("POST", path, &ts.to_string(), nonce, body.as_bytes());
        vec![
            ("x-service-id", id.clone()),
            ("x-timestamp", ts.to_string()),
            ("x-nonce", nonce.to_string()),
            ("x-signature", hmac_req::sign(secret.as_bytes(), &c)),
        ]
    };
    let send = |h: Vec<(&'static str, String)>, path: &str, body: &str| {
        let url = format!("{alice}{path}");
        let body: Value = serde_json::from_str(body).unwrap();
        async move { call("post", &url, &h, Some(&body)).await }
    };
    let h = signed(now(), "nonce-0001", &body, path);
    let (s, v) = send(h.clone(), path, &body).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = send(h, path, &body).await;
    assert_eq!(s, 401, "a replay: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("replayed"),
        "{v}"
    );
    let (s, v) = send(signed(now() - 3600, "nonce-0002", &body, path), path, &body).await;
    assert_eq!(s, 401, "stale: {v}");
    // Signed for another body: refused.
    let h = signed(now(), "nonce-0003", r#"{"n":8}"#, path);
    let (s, _) = send(h, path, &body).await;
    assert_eq!(s, 401);
    // Valid signature, but no grant on news: 403.
    let news = "/v1/channels/news/messages";
    let (s, _) = send(signed(now(), "nonce-0004", &body, news), news, &body).await;
    assert_eq!(s, 403);
    let stats = rmds::Client::with_api_key(&alice, ADMIN)
        .stats()
        .await
        .unwrap();
    assert_eq!(stats["auth_replayed"], 1, "{stats}");
}

#[tokio::test]
async fn given_auth_on_when_using_the_websocket_then_the_handshake_needs_credentials_and_frames_need_rights(
) {
    let net = secured("1h").await;
    let bob = net.client("bob").base().to_string();
    let ws_url = format!("{}/v1/ws", bob.replacen("http", "ws", 1));
    let refused = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("handshake without credentials: {other:?}"),
    }
    let consumer = new_key(&bob, "consumer", None).await;
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("x-api-key", consumer.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let v = ask(
        &mut ws,
        json!({"op": "publish", "request_id": 1, "channel": "chat", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "forbidden", "{v}");
    let v = ask(&mut ws, json!({"op": "subscribe", "request_id": 2, "channel": "chat", "group": "default", "credit": 1})).await;
    assert_eq!(v["type"], "subscribed", "{v}");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a frame and returns the answer with the same request id.
async fn ask(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("socket closed")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["request_id"] == frame["request_id"] {
            return v;
        }
    }
}

#[test]
fn given_a_non_loopback_listen_without_auth_when_starting_then_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "node_id = \"x\"\nlisten = \"0.0.0.0:0\"\ndata_dir = {:?}\n",
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
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`api.auth.enabled`") && err.contains("not a loopback"),
        "{err}"
    );
}
