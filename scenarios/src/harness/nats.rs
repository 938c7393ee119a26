//! A real `nats-server` process on a loopback port.

use super::{eventually, free_port, signal};
use anyhow::Context;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::{Child, Command};

/// One nats-server. Stopped and killed on drop.
pub struct NatsServer {
    port: u16,
    cluster_port: Option<u16>,
    routes: Vec<u16>,
    jetstream: Option<PathBuf>,
    max_payload: Option<usize>,
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

fn binary() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into())
}

impl NatsServer {
    /// A server on a fresh port; not started.
    pub fn new(dir: &std::path::Path, name: &str) -> NatsServer {
        NatsServer {
            port: free_port(),
            cluster_port: None,
            routes: Vec::new(),
            jetstream: None,
            max_payload: None,
            name: name.into(),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Makes this server part of a cluster: its route port and the peers' route ports.
    pub fn clustered(mut self, cluster_port: u16, routes: Vec<u16>) -> NatsServer {
        self.cluster_port = Some(cluster_port);
        self.routes = routes;
        self
    }

    /// Enables JetStream with its store in `dir` (for comparison benchmarks).
    pub fn jetstream(mut self, dir: PathBuf) -> NatsServer {
        self.jetstream = Some(dir);
        self
    }

    /// Sets the server's max payload (bytes), to test frames near the limit.
    pub fn max_payload(mut self, bytes: usize) -> NatsServer {
        self.max_payload = Some(bytes);
        self
    }

    /// Client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Process id, when running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Whether the process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(binary());
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-n",
            &self.name,
        ]);
        if let Some(dir) = &self.jetstream {
            cmd.arg("-js").arg("-sd").arg(dir);
        }
        if let Some(bytes) = self.max_payload {
            let conf = self.log.with_extension("conf");
            std::fs::write(&conf, format!("max_payload: {bytes}\n"))?;
            cmd.arg("-c").arg(conf);
        }
        if let Some(cp) = self.cluster_port {
            cmd.args([
                "--cluster_name",
                "rmds-test",
                "--cluster",
                &format!("nats://127.0.0.1:{cp}"),
            ]);
            if !self.routes.is_empty() {
                let routes: Vec<String> = self
                    .routes
                    .iter()
                    .map(|p| format!("nats://127.0.0.1:{p}"))
                    .collect();
                cmd.args(["--routes", &routes.join(",")]);
            }
        }
        cmd.stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} (install the nats-server package)",
                binary()
            )
        })?;
        self.child = Some(child);
        let port = self.port;
        eventually(
            Duration::from_secs(10),
            "nats-server to accept connections",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = signal(pid, Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                child.kill().await?;
            }
        }
        Ok(())
    }

    /// Kills the server (SIGKILL).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
