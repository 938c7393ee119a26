//! What the documentation examples run against: a real nats-server and two embedded
//! agents, `alice` and `bob`, both members of `chat`. Not part of the API.

use crate::{Channel, Message, Node, Result, Role, SubscribeOptions, Subscription};
use futures::StreamExt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// Two connected nodes for an example.
pub struct Demo {
    /// An embedded node, `rw` on `chat`.
    pub alice: Node,
    /// Another embedded node, `rw` on `chat`.
    pub bob: Node,
    /// Alice's `chat`.
    pub chat: Channel,
    /// Bob's `chat`.
    pub bob_chat: Channel,
    subs: Mutex<Vec<Subscription>>,
    dir: std::path::PathBuf,
    nats: String,
}

impl Demo {
    /// A fresh data directory for another node.
    pub fn data_dir(&self, node: &str) -> std::path::PathBuf {
        self.dir.join(node)
    }

    /// The NATS URL.
    pub fn nats_url(&self) -> String {
        self.nats.clone()
    }

    /// A dead letter of bob's group `dlq` on `chat` (one delivery, not acknowledged):
    /// its message id.
    pub async fn group_dead_letter(&self) -> String {
        let m = self.bob.mgmt();
        let opts = crate::GroupOptions {
            ack_wait: Some(Duration::from_millis(300)),
            max_deliveries: Some(1),
            ..Default::default()
        };
        m.create_group("chat", "dlq", &opts).await.expect("group");
        let id = self.chat.send_text("poison").await.expect("send").id;
        for _ in 0..200 {
            let _ = self
                .bob
                .client()
                .pull("chat", "dlq", 10, Duration::ZERO)
                .await;
            if m.group_dead_letters("chat", "dlq")
                .await
                .expect("list")
                .iter()
                .any(|d| d.id == id)
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no dead letter within 20 s");
    }

    /// The URL of alice's API (an embedded agent serves it too): for `Node::connect`.
    pub fn url(&self) -> String {
        self.alice.client().base().to_string()
    }

    /// A message alice sent (`{"text":"hello"}`), as bob's group `doc` received it.
    pub async fn message(&self) -> Message {
        self.chat
            .send(&serde_json::json!({"text": "hello"}))
            .await
            .expect("send");
        let mut sub = self
            .bob_chat
            .subscribe("doc", SubscribeOptions::default())
            .await
            .expect("subscribe");
        let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("a message within 20 s")
            .expect("open")
            .expect("no error");
        self.subs.lock().expect("lock").push(sub);
        m
    }

    /// A subscription of bob's with one message waiting.
    pub async fn subscription(&self) -> Subscription {
        self.chat
            .send(&serde_json::json!({"text": "hello"}))
            .await
            .expect("send");
        self.bob_chat
            .subscribe("default", SubscribeOptions::default())
            .await
            .expect("subscribe")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(id: &str, dir: &std::path::Path, nats: &str) -> rmds_agent::config::Config {
    let text = format!(
        "node_id = \"{id}\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n[nats]\nurls = [\"{nats}\"]\nreconnect_max_delay = \"200ms\"\n[discovery]\nkeepalive_interval = \"250ms\"\nnode_offline_timeout = \"1500ms\"\n[delivery]\nack_timeout = \"1s\"\nretry_initial = \"100ms\"\n[groups]\nack_wait = \"5s\"\n[log]\nlevel = \"warn\"\n",
        dir.join(id).display()
    );
    rmds_agent::config::Config::from_toml(&text, std::path::Path::new("doc.toml")).expect("config")
}

async fn wait_reader(node: &Node, peer: &str) {
    for _ in 0..400 {
        if let Ok(subs) = node.mgmt().subscribers("chat").await {
            if subs.iter().any(|s| s.node == peer && s.online) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{peer} not discovered by {} within 20 s", node.id());
}

/// Runs `example` against a fresh nats-server and two embedded agents; panics on
/// an error (the example failed).
pub fn run<F, Fut>(example: F)
where
    F: FnOnce(Demo) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut nats = tokio::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server on PATH (scripts/install-deps.sh installs it)");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let url = format!("nats://127.0.0.1:{port}");
        let alice = Node::embedded(config("alice", dir.path(), &url))
            .await
            .expect("alice");
        let bob = Node::embedded(config("bob", dir.path(), &url))
            .await
            .expect("bob");
        let chat = alice.join("chat", Role::ReadWrite).await.expect("join");
        let bob_chat = bob.join("chat", Role::ReadWrite).await.expect("join");
        wait_reader(&alice, "bob").await;
        wait_reader(&bob, "alice").await;
        let demo = Demo {
            alice: alice.clone(),
            bob: bob.clone(),
            chat,
            bob_chat,
            subs: Mutex::new(Vec::new()),
            dir: dir.path().to_path_buf(),
            nats: url.clone(),
        };
        let r = tokio::time::timeout(Duration::from_secs(60), example(demo)).await;
        alice.shutdown().await;
        bob.shutdown().await;
        let _ = nats.kill().await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the example failed: {e}"),
            Err(_) => panic!("the example did not finish within 60 s"),
        }
    });
}
