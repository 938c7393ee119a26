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
mod consumer;
mod nats;
mod net;
mod proxy;

pub use agent::{AgentProc, AgentSpec};
pub use consumer::{drain, Received};
pub use nats::NatsServer;
pub use net::{TestNet, TestNetBuilder};
pub use proxy::Proxy;

use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
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

/// Sends a signal to a process id.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)?;
    Ok(())
}
