//! The docker-compose backend: the repository's `docker-compose.yml` (NATS and four
//! agents: alice writer, bob rw, lisa and andy readers on `chat`) driven with
//! `docker-compose` / `docker compose` and `docker network disconnect/connect`.

use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Host ports of the agents' APIs as published by `docker-compose.yml`.
pub const AGENT_PORTS: [(&str, u16); 4] = [
    ("alice", 7701),
    ("bob", 7702),
    ("lisa", 7703),
    ("andy", 7704),
];

/// A running compose project. `down -v` on drop.
pub struct ComposeNet {
    project: String,
    file: PathBuf,
    clients: BTreeMap<String, rmds::Client>,
}

/// `docker compose` when the plugin exists, else `docker-compose`.
fn compose_cmd() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if plugin {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

impl ComposeNet {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let cmd = compose_cmd();
        let out = Command::new(&cmd[0])
            .args(&cmd[1..])
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(args)
            .output()
            .with_context(|| format!("running {} {args:?}", cmd.join(" ")))?;
        if !out.status.success() {
            anyhow::bail!(
                "{} {:?} failed: {}",
                cmd.join(" "),
                args,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Brings the stack up from a clean state (volumes removed first) and waits until
    /// every agent answers.
    pub async fn up(file: PathBuf, project: &str) -> anyhow::Result<ComposeNet> {
        let net = ComposeNet {
            project: project.into(),
            file,
            clients: AGENT_PORTS
                .iter()
                .map(|(n, p)| {
                    (
                        n.to_string(),
                        rmds::Client::with_api_key(format!("http://127.0.0.1:{p}"), &admin_key()),
                    )
                })
                .collect(),
        };
        let _ = net.run(&["down", "-v", "--remove-orphans"]);
        net.run(&["up", "-d"])?;
        for (node, c) in &net.clients {
            super::harness::eventually(
                Duration::from_secs(60),
                &format!("{node} to answer"),
                || {
                    let c = c.clone();
                    async move { c.health().await.ok().map(|_| ()) }
                },
            )
            .await?;
        }
        Ok(net)
    }

    /// A client for an agent (host port).
    pub fn client(&self, node: &str) -> rmds::Client {
        self.clients
            .get(node)
            .unwrap_or_else(|| panic!("no agent {node} in docker-compose.yml"))
            .clone()
    }

    /// Node ids.
    pub fn nodes(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }

    /// `stop` a service (graceful).
    pub fn stop(&self, service: &str) -> anyhow::Result<()> {
        self.run(&["stop", "-t", "10", service]).map(|_| ())
    }

    /// `start` a service.
    pub fn start(&self, service: &str) -> anyhow::Result<()> {
        self.run(&["start", service]).map(|_| ())
    }

    /// `kill` a service (SIGKILL).
    pub fn kill(&self, service: &str) -> anyhow::Result<()> {
        self.run(&["kill", "-s", "SIGKILL", service]).map(|_| ())
    }

    /// `pause` a service (freezes its processes).
    pub fn pause(&self, service: &str) -> anyhow::Result<()> {
        self.run(&["pause", service]).map(|_| ())
    }

    /// `unpause` a service.
    pub fn unpause(&self, service: &str) -> anyhow::Result<()> {
        self.run(&["unpause", service]).map(|_| ())
    }

    fn container(&self, service: &str) -> anyhow::Result<String> {
        let id = self.run(&["ps", "-q", service])?;
        let id = id.trim();
        anyhow::ensure!(!id.is_empty(), "service {service} has no container");
        Ok(id.to_string())
    }

    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// Cuts a service off the project network (NATS unreachable for it).
    pub fn disconnect(&self, service: &str) -> anyhow::Result<()> {
        let c = self.container(service)?;
        docker(&["network", "disconnect", &self.network(), &c])
    }

    /// Reconnects a service, with its service name as DNS alias.
    pub fn connect(&self, service: &str) -> anyhow::Result<()> {
        let c = self.container(service)?;
        docker(&[
            "network",
            "connect",
            "--alias",
            service,
            &self.network(),
            &c,
        ])
    }
}

fn docker(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("docker").args(args).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Drop for ComposeNet {
    fn drop(&mut self) {
        if std::env::var_os("RMDS_KEEP_COMPOSE").is_none() {
            let _ = self.run(&["down", "-v", "--remove-orphans"]);
        }
    }
}

/// The agents' admin API key in the compose stack (they listen on 0.0.0.0 inside
/// their containers, so authentication is on): `RMDS_API_ADMIN_KEY`, or the stack's
/// default from docker-compose.yml.
pub fn admin_key() -> String {
    std::env::var("RMDS_API_ADMIN_KEY").unwrap_or_else(|_| "rmds-compose-demo-admin-key".into())
}
