//! Nodes for the SDK tests: sidecar agents (real `rmds-agent` processes) or embedded
//! agents (in this test process), on one real nats-server.

#![allow(dead_code)]

use rmds::{Node, Role};
use rmds_scenarios::harness::{eventually, TestNet};
use std::time::Duration;

/// How a test reaches its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sidecar,
    Embedded,
}

/// The same short intervals as the harness gives its agent processes.
pub fn embedded_config(net: &TestNet, id: &str) -> rmds::agent::config::Config {
    let data = net.dir().join(id).join("data");
    let text = format!(
        r#"
node_id = "{id}"
data_dir = "{data}"
listen = "127.0.0.1:0"
[nats]
urls = ["{nats}"]
ping_interval = "500ms"
reconnect_max_delay = "200ms"
[discovery]
keepalive_interval = "250ms"
node_offline_timeout = "1500ms"
[delivery]
ack_timeout = "1s"
retry_initial = "100ms"
retry_max = "1s"
sweep_interval = "300ms"
[groups]
ack_wait = "5s"
"#,
        data = data.display(),
        nats = net.nats.url(),
    );
    rmds::agent::config::Config::from_toml(&text, std::path::Path::new("test.toml"))
        .expect("embedded test config")
}

/// A net with one NATS and, in sidecar mode, an agent process per id.
pub async fn net(mode: Mode, ids: &[&str]) -> TestNet {
    let mut b = TestNet::builder();
    if mode == Mode::Sidecar {
        for id in ids {
            b = b.agent(id, &[]);
        }
    }
    b.start().await.expect("test net")
}

/// The node `id` of `net`: connected to its agent, or started in this process.
pub async fn node(net: &TestNet, mode: Mode, id: &str) -> Node {
    match mode {
        Mode::Sidecar => Node::connect(net.agent(id).client().base())
            .await
            .expect("connect"),
        Mode::Embedded => Node::embedded(embedded_config(net, id))
            .await
            .expect("embedded node"),
    }
}

/// Waits until `node` knows `peer` as an online reader of `channel`.
pub async fn wait_reader(node: &Node, channel: &str, peer: &str) {
    let mgmt = node.mgmt();
    eventually(
        Duration::from_secs(20),
        &format!("{peer} reads {channel}"),
        || {
            let mgmt = mgmt.clone();
            async move {
                let subs = mgmt.subscribers(channel).await.ok()?;
                subs.iter()
                    .any(|s| s.node == peer && s.online && s.role != Role::Writer)
                    .then_some(())
            }
        },
    )
    .await
    .expect("reader discovered");
}
