//! A real `rmds-agent` process with its own data dir, port and config file.

use super::{eventually, signal};
use anyhow::Context;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// How to start one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Node id.
    pub node_id: String,
    /// Channels joined at start (`chat:writer`).
    pub join: Vec<String>,
}

/// One agent process. Killed on drop.
pub struct AgentProc {
    /// Node id.
    pub node_id: String,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    paused: bool,
    env: Vec<(String, String)>,
    client: rmds::Client,
}

impl AgentProc {
    pub(crate) fn new(
        bin: &Path,
        root: &Path,
        node_id: &str,
        port: u16,
        config_toml: &str,
    ) -> anyhow::Result<AgentProc> {
        let dir = root.join(node_id);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("agent.toml");
        std::fs::write(&config, config_toml)?;
        Ok(AgentProc {
            node_id: node_id.into(),
            port,
            log: dir.join("agent.log"),
            dir,
            config,
            bin: bin.to_path_buf(),
            child: None,
            paused: false,
            env: Vec::new(),
            client: rmds::Client::new(format!("http://127.0.0.1:{port}")),
        })
    }

    /// Makes this agent's client send an API key (for `api.auth.enabled`).
    pub fn set_api_key(&mut self, key: &str) {
        self.client = rmds::Client::with_api_key(format!("http://127.0.0.1:{}", self.port), key);
    }

    /// API port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent's data directory (`data_dir` of its config file; the database lives
    /// there). Falls back to `dir()/data`, where [`super::TestNet`] puts it.
    pub fn data_dir(&self) -> PathBuf {
        std::fs::read_to_string(&self.config)
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
            .and_then(|t| {
                t.get("data_dir")
                    .and_then(|v| v.as_str())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| self.dir.join("data"))
    }

    /// The config file (rewrite it, then restart, to change settings).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A client for this agent.
    pub fn client(&self) -> &rmds::Client {
        &self.client
    }

    /// Environment variables for the next starts (e.g. libfaketime's `LD_PRELOAD` and
    /// `FAKETIME`); an empty list starts the agent with the inherited environment only.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Whether the process is running (paused counts as running).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Process id, when running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Starts the process and waits until `/healthz` answers.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        let client = self.client.clone();
        let r = eventually(Duration::from_secs(20), "agent /healthz", || {
            let c = client.clone();
            async move { c.health().await.ok() }
        })
        .await;
        if r.is_err() {
            let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            anyhow::bail!(
                "agent {} did not become healthy; log tail:\n{tail}",
                self.node_id
            );
        }
        Ok(())
    }

    /// If the process exited by itself, its status.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    /// Graceful stop (SIGTERM): the agent says bye and checkpoints.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                if self.paused {
                    let _ = signal(pid, Signal::SIGCONT);
                }
                let _ = signal(pid, Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .is_err()
            {
                child.kill().await?;
            }
        }
        self.paused = false;
        Ok(())
    }

    /// `kill -9`.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        self.paused = false;
        Ok(())
    }

    /// SIGSTOP: the process freezes (no keepalives, no acks).
    pub fn pause(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().context("agent not running")?;
        signal(pid, Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().context("agent not running")?;
        signal(pid, Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// Kill -9 and start again on the same data dir and port.
    pub async fn crash_restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.start().await
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if self.paused {
                if let Some(pid) = child.id() {
                    let _ = signal(pid, Signal::SIGCONT);
                }
            }
            let _ = child.start_kill();
        }
    }
}
