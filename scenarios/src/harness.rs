//! Real processes for tests, scenarios and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rmds_scenarios::harness::TestNet;
//! let mut net = TestNet::builder()
//!     .agent("alice", &["chat:writer"])
//!     .agent("bob", &["chat:rw"])
//!     .start()
//!     .await?;
//! net.wait_discovered("alice", "chat", &["bob"]).await?;
//! net.client("alice").publish_text("chat", "hi").await?;
//! net.stop_nats().await?;
//! # Ok(()) }
//! ```

mod agent;
mod browser;
mod consumer;
mod nats;
mod net;
mod proxy;

pub use agent::{AgentProc, AgentSpec};
pub use browser::Browser;
pub use consumer::{drain, pull_some, wait_pending, Received};
pub use nats::NatsServer;
pub use net::{agent_binary, TestNet, TestNetBuilder};
pub use proxy::Proxy;

use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound then released).
///
/// A port is free when asked for but only bound later by the process it is for: this
/// process never hands the same port out twice, so two servers started in one test
/// (a hub's leaf port and a proxy, say) cannot be given the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..64 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if port != 0 && given.insert(port) {
            return port;
        }
    }
    0
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the agent behind `client` (named `node` in errors) knows each of
/// `readers` as an online reader of `channel`.
pub async fn wait_readers(
    client: &rmds::Client,
    node: &str,
    channel: &str,
    readers: &[&str],
    timeout: Duration,
) -> anyhow::Result<()> {
    let path = format!("/v1/channels/{channel}/subscribers");
    eventually(
        timeout,
        &format!("{node} to discover readers {readers:?} of {channel}"),
        || {
            let (c, path) = (client.clone(), path.clone());
            async move {
                let v = c.get_json(&path).await.ok()?;
                let subs = v["subscribers"].as_array()?;
                readers
                    .iter()
                    .all(|w| {
                        subs.iter().any(|s| {
                            s["node"] == *w && s["online"] == true && s["role"] != "writer"
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await
}

/// Sends a signal to a process id.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)?;
    Ok(())
}
