//! The OpenAPI document is generated from the route table: every operation in it
//! answers as documented (a documented status, JSON error shape for errors, never a
//! 500 for the documented example or for bad input).

use rmds_scenarios::harness::TestNet;
use serde_json::Value;
use std::path::PathBuf;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

#[tokio::test]
async fn given_the_openapi_document_then_every_operation_answers_as_documented() {
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
    let bob = net.client("bob");
    let doc = bob.get_json("/v1/openapi.json").await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for must in [
        "/v1/channels/{ch}/messages",
        "/v1/channels/{ch}/groups/{g}/dead-letters/{id}/redrive",
        "/v1/domains/{d}/channels/{ch}/messages",
        "/v1/ws/tap",
        "/v1/openapi.json",
    ] {
        assert!(paths.contains_key(must), "{must} missing");
    }
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    assert!(ops.len() >= 45, "{} operations", ops.len());
    // Deletions last, so that the other calls find what they need.
    ops.sort_by_key(|(m, _, _)| (m == "delete", m.clone()));
    let http = reqwest::Client::new();
    let mut succeeded = 0;
    for (method, path, op) in &ops {
        let url_path = path
            .replace("{ch}", "chat")
            .replace("{g}", "default")
            .replace("{d}", "default")
            .replace("{id}", "01M8ZZZZZZZZZZZZZZZZZZZZZZ");
        let url = format!("{}{url_path}", bob.base());
        let mut req = http.request(method.to_uppercase().parse().unwrap(), &url);
        if let Some(content) = op["requestBody"]["content"].as_object() {
            let (ct, media) = content.iter().next().unwrap();
            req = req
                .header("content-type", ct)
                .body(media["example"].to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.text().await.unwrap();
        let documented = op["responses"].as_object().unwrap();
        assert!(
            documented.contains_key(&status.to_string()),
            "{method} {path} answered {status}, documented {:?}: {body}",
            documented.keys().collect::<Vec<_>>()
        );
        assert_ne!(status, 500, "{method} {path}: {body}");
        if status >= 400 {
            let v: Value = serde_json::from_str(&body)
                .unwrap_or_else(|_| panic!("{method} {path}: error body is not JSON: {body}"));
            assert!(v["error"]["code"].is_string(), "{method} {path}: {v}");
            assert!(v["error"]["message"].is_string(), "{method} {path}: {v}");
            assert!(
                !v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no such route"),
                "{method} {path} is not routed"
            );
        } else {
            succeeded += 1;
            let declared = documented[&status.to_string()]["content"]
                .as_object()
                .and_then(|c| c.keys().next().cloned());
            if let Some(declared) = declared {
                assert!(
                    ct.starts_with(&declared),
                    "{method} {path}: {ct} vs {declared}"
                );
                if declared == "application/json" {
                    serde_json::from_str::<Value>(&body)
                        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
                }
            }
        }
    }
    assert!(
        succeeded >= 25,
        "only {succeeded} of {} operations succeeded with their examples",
        ops.len()
    );
    // Outside the table: JSON errors too.
    let r = http
        .get(format!("{}/v1/nope", bob.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .patch(format!("{}/v1/stats", bob.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
    net.assert_healthy().unwrap();
}
