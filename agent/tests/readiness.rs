//! `/livez` and `/readyz`: alive whenever the process answers; ready only while the
//! store takes writes, NATS is connected and discovery is done, and ready again by
//! itself once the cause is gone (NATS back, disk space back).

use rmds_scenarios::harness::TestNet;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn probe(net: &TestNet, node: &str, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", net.client(node).base());
    let r = reqwest::get(&url).await.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn until(net: &TestNet, node: &str, want: u16, what: &str) -> Value {
    for _ in 0..200 {
        let (code, body) = probe(net, node, "/readyz").await;
        if code == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = probe(net, node, "/readyz").await;
    panic!("{what}: /readyz still {code}: {body}");
}

#[tokio::test]
async fn given_nats_down_when_probing_then_unready_naming_nats_while_alive_and_ready_again_after() {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    let body = until(&net, "alice", 200, "ready at start").await;
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["store", "nats", "discovery"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    net.stop_nats().await.unwrap();
    let body = until(&net, "alice", 503, "unready without NATS").await;
    assert_eq!(body["checks"]["nats"]["ok"], false, "{body}");
    assert_eq!(body["checks"]["store"]["ok"], true, "{body}");
    assert!(body["checks"]["nats"]["reason"].is_string(), "{body}");
    let (live, _) = probe(&net, "alice", "/livez").await;
    assert_eq!(live, 200, "not alive while NATS is down");
    // Unready is not unavailable: publishes are still accepted durably.
    net.client("alice")
        .publish_json("chat", &json!({"n": 1}))
        .await
        .expect("publish while unready");
    net.start_nats().await.unwrap();
    until(&net, "alice", 200, "ready again after NATS returned").await;
    net.assert_healthy().unwrap();
}

/// A small tmpfs mounted for the test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn given_a_full_disk_when_probing_then_unready_naming_the_store_and_ready_again_when_space_returns(
) {
    let root = tempfile::tempdir().unwrap();
    let mount_at = root.path().join("disk");
    let Some(disk) = Tmpfs::mount(&mount_at, "24m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must run the full-disk test (mount -t tmpfs failed)"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    // Alice's store moves onto the small disk.
    net.node("alice").stop().await.unwrap();
    let path = net.node("alice").config_path().to_path_buf();
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let data = disk.0.join("data");
    t.insert(
        "data_dir".into(),
        toml::Value::String(data.display().to_string()),
    );
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    net.node("alice").start().await.unwrap();
    until(&net, "alice", 200, "ready on the small disk").await;
    // Bob is away: what alice accepts stays in her outbox.
    net.node("bob").stop().await.unwrap();
    let filler = disk.0.join("filler");
    fill(&filler);
    let alice = net.client("alice");
    let pad = "x".repeat(4000);
    let mut refused = false;
    for n in 0..5000u64 {
        if alice
            .publish_json("chat", &json!({"n": n, "pad": pad}))
            .await
            .is_err()
        {
            eprintln!("the full disk refused publish {n}");
            refused = true;
            break;
        }
    }
    assert!(refused, "a full disk never refused a publish");
    let body = until(&net, "alice", 503, "unready on a full disk").await;
    assert_eq!(body["checks"]["store"]["ok"], false, "{body}");
    assert!(
        body["checks"]["store"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("store")),
        "{body}"
    );
    let (live, _) = probe(&net, "alice", "/livez").await;
    assert_eq!(live, 200);
    std::fs::remove_file(&filler).unwrap();
    until(&net, "alice", 200, "ready again once space returned").await;
    alice
        .publish_json("chat", &json!({"n": "after"}))
        .await
        .expect("publish after space returned");
    net.assert_healthy().unwrap();
    net.node("alice").stop().await.unwrap();
    drop(net);
    drop(disk);
}
