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
    jetstream_sync: Option<String>,
    max_payload: Option<usize>,
    extra_conf: String,
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
            jetstream_sync: None,
            max_payload: None,
            extra_conf: String::new(),
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

    /// Sets JetStream's `sync_interval` (`"always"`: fsync before every publish ack;
    /// a duration such as `"2m"`). Needs nats-server 2.10 or newer (see
    /// [`NatsServer::config_valid`]); only with [`NatsServer::jetstream`].
    pub fn jetstream_sync(mut self, interval: &str) -> NatsServer {
        self.jetstream_sync = Some(interval.into());
        self
    }

    /// Whether the installed nats-server accepts this config text (`nats-server -t`).
    pub fn config_valid(conf: &str) -> anyhow::Result<bool> {
        let dir = tempfile::Builder::new()
            .prefix("rmds-nats-conf-")
            .tempdir()?;
        let path = dir.path().join("test.conf");
        std::fs::write(&path, conf)?;
        let out = std::process::Command::new(binary())
            .arg("-c")
            .arg(&path)
            .arg("-t")
            .output()
            .with_context(|| format!("cannot run {}", binary()))?;
        Ok(out.status.success())
    }

    /// The installed nats-server's version (`nats-server v2.9.10`).
    pub fn version() -> anyhow::Result<String> {
        let out = std::process::Command::new(binary())
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {}", binary()))?;
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(line.replacen("nats-server: ", "nats-server ", 1))
    }

    /// Adds server configuration text (an `authorization { .. }` or `tls { .. }`
    /// block, an operator and resolver, ...), written to the server's config file.
    pub fn conf(mut self, text: &str) -> NatsServer {
        self.extra_conf.push_str(text);
        self.extra_conf.push('\n');
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
        let mut conf = String::new();
        match (&self.jetstream, &self.jetstream_sync) {
            (Some(dir), Some(sync)) => conf.push_str(&format!(
                "jetstream {{\n  store_dir: {:?}\n  sync_interval: {sync}\n}}\n",
                dir.display().to_string()
            )),
            (Some(dir), None) => {
                cmd.arg("-js").arg("-sd").arg(dir);
            }
            _ => {}
        }
        if let Some(bytes) = self.max_payload {
            conf.push_str(&format!("max_payload: {bytes}\n"));
        }
        conf.push_str(&self.extra_conf);
        if !conf.is_empty() {
            let path = self.log.with_extension("conf");
            std::fs::write(&path, conf)?;
            cmd.arg("-c").arg(path);
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
