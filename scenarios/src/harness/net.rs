//! A whole test network: NATS plus named agents with short intervals.

use super::{eventually, free_port, AgentProc, AgentSpec, NatsServer, Proxy};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Builds a [`TestNet`].
pub struct TestNetBuilder {
    agents: Vec<AgentSpec>,
    nats_up: bool,
    settings: Vec<(String, String, toml::Value)>,
    bin: Option<PathBuf>,
    proxied: Vec<String>,
    cluster: usize,
    max_payload: Option<usize>,
    nats_conf: String,
    api_key: Option<String>,
    /// Agent → leaf server index, when the net runs leaf nodes (see
    /// [`TestNetBuilder::nats_leaves`]).
    leaf_of: BTreeMap<String, usize>,
    leaves: usize,
}

/// NATS and agents on loopback, each agent with its own temp data dir.
pub struct TestNet {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
    /// The NATS server (the first one of a cluster).
    pub nats: NatsServer,
    /// The other servers of a cluster.
    pub cluster: Vec<NatsServer>,
    agents: BTreeMap<String, AgentProc>,
    proxies: BTreeMap<String, Proxy>,
    /// Leaf-node servers (each connected to the hub through a cuttable link).
    pub leaves: Vec<NatsServer>,
    leaf_links: Vec<Proxy>,
}

/// Where the agent binary is: `RMDS_AGENT_BIN`, else next to the running executable
/// (target/{profile}/ or its parent for test binaries in deps/).
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("RMDS_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from);
    while let Some(d) = dir {
        let candidate = d.join("rmds-agent");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(PathBuf::from);
        if dir.as_ref().is_some_and(|d| d.ends_with("target")) {
            break;
        }
    }
    anyhow::bail!(
        "rmds-agent binary not found; build it (cargo build -p rmds-agent) or set RMDS_AGENT_BIN"
    )
}

impl TestNet {
    /// A builder with test-friendly short intervals.
    pub fn builder() -> TestNetBuilder {
        TestNetBuilder {
            agents: Vec::new(),
            nats_up: true,
            settings: Vec::new(),
            bin: None,
            proxied: Vec::new(),
            cluster: 1,
            max_payload: None,
            nats_conf: String::new(),
            api_key: None,
            leaf_of: BTreeMap::new(),
            leaves: 0,
        }
    }

    /// Cuts leaf server `i`'s link to the hub: agents on that leaf keep their server
    /// (and each other), and lose every agent on the other side.
    pub fn cut_leaf(&self, i: usize) -> anyhow::Result<()> {
        self.leaf_links
            .get(i)
            .with_context(|| format!("no leaf {i}; build the net with .nats_leaves(..)"))?
            .cut();
        Ok(())
    }

    /// Restores leaf server `i`'s link to the hub.
    pub fn restore_leaf(&self, i: usize) -> anyhow::Result<()> {
        self.leaf_links
            .get(i)
            .with_context(|| format!("no leaf {i}"))?
            .restore();
        Ok(())
    }

    /// Cuts one agent off NATS (its proxy drops every connection) while the others
    /// keep it. The agent must have been built with [`TestNetBuilder::proxied`].
    pub fn partition(&self, id: &str) -> anyhow::Result<()> {
        self.proxies
            .get(id)
            .with_context(|| format!("{id} has no proxy; build the net with .proxied({id:?})"))?
            .cut();
        Ok(())
    }

    /// Reconnects a partitioned agent.
    pub fn heal(&self, id: &str) -> anyhow::Result<()> {
        self.proxies
            .get(id)
            .with_context(|| format!("{id} has no proxy"))?
            .restore();
        Ok(())
    }

    /// The temp directory holding every log and database.
    pub fn dir(&self) -> &std::path::Path {
        &self.path
    }

    /// An agent by node id.
    pub fn node(&mut self, id: &str) -> &mut AgentProc {
        self.agents
            .get_mut(id)
            .unwrap_or_else(|| panic!("no agent {id} in this net"))
    }

    /// An agent by node id, read-only (pid, data dir, log).
    pub fn agent(&self, id: &str) -> &AgentProc {
        self.agents
            .get(id)
            .unwrap_or_else(|| panic!("no agent {id} in this net"))
    }

    /// Process id of an agent, when running.
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.agent(id).pid()
    }

    /// A client for an agent.
    pub fn client(&self, id: &str) -> rmds::Client {
        self.agents
            .get(id)
            .unwrap_or_else(|| panic!("no agent {id} in this net"))
            .client()
            .clone()
    }

    /// Node ids.
    pub fn nodes(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// Stops NATS gracefully.
    pub async fn stop_nats(&mut self) -> anyhow::Result<()> {
        self.nats.stop().await
    }

    /// Kills NATS.
    pub async fn kill_nats(&mut self) -> anyhow::Result<()> {
        self.nats.kill().await
    }

    /// Starts NATS (same port).
    pub async fn start_nats(&mut self) -> anyhow::Result<()> {
        self.nats.start().await
    }

    /// Server `i` of the NATS cluster (0 is [`TestNet::nats`]).
    pub fn nats_server(&mut self, i: usize) -> &mut NatsServer {
        if i == 0 {
            &mut self.nats
        } else {
            &mut self.cluster[i - 1]
        }
    }

    /// Waits until `node` knows each of `readers` as a reader of `channel` and online.
    pub async fn wait_discovered(
        &self,
        node: &str,
        channel: &str,
        readers: &[&str],
    ) -> anyhow::Result<()> {
        super::wait_readers(
            &self.client(node),
            node,
            channel,
            readers,
            Duration::from_secs(20),
        )
        .await
    }

    /// Fails if any agent's log shows a panic, or any agent process died on its own.
    pub fn assert_healthy(&mut self) -> anyhow::Result<()> {
        for (id, a) in self.agents.iter_mut() {
            let log = std::fs::read_to_string(a.log_path()).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
                anyhow::bail!("agent {id} panicked: {line}");
            }
            if let Some(code) = a.exited()? {
                anyhow::bail!("agent {id} exited on its own with {code}");
            }
        }
        Ok(())
    }

    /// Waits until every delivery of `node` is acknowledged (pending 0).
    pub async fn wait_drained(&self, node: &str, timeout: Duration) -> anyhow::Result<()> {
        let c = self.client(node);
        eventually(
            timeout,
            &format!("{node} to have no pending deliveries"),
            || {
                let c = c.clone();
                async move {
                    let s = c.stats().await.ok()?;
                    (s["pending_messages"].as_u64()? == 0).then_some(())
                }
            },
        )
        .await
    }
}

impl TestNetBuilder {
    /// Adds an agent joining the given `channel:role` specs at start.
    pub fn agent(mut self, id: &str, join: &[&str]) -> Self {
        self.agents.push(AgentSpec {
            node_id: id.into(),
            join: join.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// Connects this agent to NATS through a cuttable proxy (see [`TestNet::partition`]).
    pub fn proxied(mut self, id: &str) -> Self {
        self.proxied.push(id.into());
        self
    }

    /// Runs `n` clustered nats-servers; every agent knows all of them.
    pub fn nats_cluster(mut self, n: usize) -> Self {
        self.cluster = n.max(1);
        self
    }

    /// Runs leaf-node servers in front of the hub (the cluster of
    /// [`TestNetBuilder::nats_cluster`], or the single server): leaf `i` connects to
    /// hub server `i % hubs` through a cuttable link, and each agent of `placement`
    /// (node id, leaf index) connects to its leaf only. Agents not placed connect to
    /// the hub.
    pub fn nats_leaves(mut self, leaves: usize, placement: &[(&str, usize)]) -> Self {
        self.leaves = leaves;
        for (id, leaf) in placement {
            self.leaf_of.insert(id.to_string(), *leaf);
        }
        self
    }

    /// Starts every nats-server with this max payload (bytes).
    pub fn nats_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Every agent's client sends this API key (agents with `api.auth.enabled` and
    /// this key as `api.auth.admin_key`).
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Adds configuration text to every nats-server (see [`NatsServer::conf`]).
    pub fn nats_conf(mut self, text: &str) -> Self {
        self.nats_conf.push_str(text);
        self.nats_conf.push('\n');
        self
    }

    /// Leaves NATS stopped at start.
    pub fn nats_down(mut self) -> Self {
        self.nats_up = false;
        self
    }

    /// Sets a config key for every agent, e.g. `("delivery", "max_retry_attempts", 3)`;
    /// an empty section sets a top-level key.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.settings
            .push((section.into(), key.into(), value.into()));
        self
    }

    /// Uses this agent binary.
    pub fn binary(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    fn config(
        &self,
        spec: &AgentSpec,
        port: u16,
        data: &std::path::Path,
        nats: &[String],
    ) -> String {
        let mut t: toml::Table = toml::from_str(&format!(
            r#"
node_id = "{id}"
data_dir = "{data}"
listen = "127.0.0.1:{port}"
[nats]
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
[log]
level = "info,async_nats=warn"
"#,
            id = spec.node_id,
            data = data.display(),
        ))
        .unwrap_or_default();
        if let Some(toml::Value::Table(n)) = t.get_mut("nats") {
            n.insert(
                "urls".into(),
                toml::Value::Array(
                    nats.iter()
                        .map(|u| toml::Value::String(u.clone()))
                        .collect(),
                ),
            );
        }
        t.insert(
            "join".into(),
            toml::Value::Array(
                spec.join
                    .iter()
                    .map(|j| toml::Value::String(j.clone()))
                    .collect(),
            ),
        );
        for (section, key, value) in &self.settings {
            if section.is_empty() {
                t.insert(key.clone(), value.clone());
            } else if let Some(toml::Value::Table(s)) = t.get_mut(section) {
                s.insert(key.clone(), value.clone());
            } else {
                let mut s = toml::Table::new();
                s.insert(key.clone(), value.clone());
                t.insert(section.clone(), toml::Value::Table(s));
            }
        }
        toml::to_string(&t).unwrap_or_default()
    }

    /// Starts NATS (unless `nats_down`) and every agent.
    pub async fn start(self) -> anyhow::Result<TestNet> {
        let dir = tempfile::Builder::new().prefix("rmds-test-").tempdir()?;
        let bin = match &self.bin {
            Some(b) => b.clone(),
            None => agent_binary()?,
        };
        let mut servers: Vec<NatsServer> = Vec::new();
        if self.cluster > 1 {
            let route_ports: Vec<u16> = (0..self.cluster).map(|_| free_port()).collect();
            for i in 0..self.cluster {
                let others: Vec<u16> = route_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| *p)
                    .collect();
                servers.push(
                    NatsServer::new(dir.path(), &format!("nats-{i}"))
                        .clustered(route_ports[i], others),
                );
            }
        } else {
            servers.push(NatsServer::new(dir.path(), "nats"));
        }
        // Hub servers listen for leaf connections on a port of their own. Leaf `i`
        // reaches hub server `i % hubs` through a cuttable link, and that hub
        // advertises the link's address, not its own: a leaf that learns URLs from the
        // hub must still go through its link.
        let hub_leaf_ports: Vec<u16> = (0..servers.len()).map(|_| free_port()).collect();
        let mut leaf_links = Vec::new();
        for i in 0..self.leaves {
            leaf_links.push(Proxy::start(hub_leaf_ports[i % hub_leaf_ports.len()]).await?);
        }
        if self.leaves > 0 {
            servers = servers
                .into_iter()
                .enumerate()
                .map(|(j, s)| {
                    let advertise = leaf_links
                        .iter()
                        .enumerate()
                        .find(|(i, _)| i % hub_leaf_ports.len() == j)
                        .map_or(hub_leaf_ports[j], |(_, l)| l.port());
                    s.conf(&format!(
                        "leafnodes {{ listen: \"127.0.0.1:{}\", advertise: \"127.0.0.1:{advertise}\", no_advertise: true }}",
                        hub_leaf_ports[j]
                    ))
                })
                .collect();
        }
        if let Some(bytes) = self.max_payload {
            servers = servers.into_iter().map(|s| s.max_payload(bytes)).collect();
        }
        if !self.nats_conf.is_empty() {
            servers = servers
                .into_iter()
                .map(|s| s.conf(&self.nats_conf))
                .collect();
        }
        if self.nats_up {
            for s in servers.iter_mut() {
                s.start().await?;
            }
        }
        let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
        let mut leaves = Vec::new();
        for (i, link) in leaf_links.iter().enumerate() {
            let mut leaf = NatsServer::new(dir.path(), &format!("leaf-{i}")).conf(&format!(
                "leafnodes {{ reconnect: 1, remotes: [ {{ url: \"nats-leaf://127.0.0.1:{}\" }} ] }}",
                link.port()
            ));
            if self.nats_up {
                leaf.start().await?;
            }
            leaves.push(leaf);
        }
        let mut proxies = BTreeMap::new();
        for id in &self.proxied {
            proxies.insert(id.clone(), Proxy::start(servers[0].port()).await?);
        }
        let mut servers = servers.into_iter();
        let nats = servers.next().context("no nats server")?;
        let cluster: Vec<NatsServer> = servers.collect();
        let mut agents = BTreeMap::new();
        for spec in &self.agents {
            let port = free_port();
            let data = dir.path().join(&spec.node_id).join("data");
            let via = match (proxies.get(&spec.node_id), self.leaf_of.get(&spec.node_id)) {
                (Some(p), _) => vec![p.url()],
                (None, Some(&leaf)) => vec![leaves
                    .get(leaf)
                    .with_context(|| {
                        format!(
                            "{} placed on leaf {leaf}, which does not exist",
                            spec.node_id
                        )
                    })?
                    .url()],
                (None, None) => urls.clone(),
            };
            let toml = self.config(spec, port, &data, &via);
            let mut a = AgentProc::new(&bin, dir.path(), &spec.node_id, port, &toml)?;
            if let Some(k) = &self.api_key {
                a.set_api_key(k);
            }
            a.start()
                .await
                .with_context(|| format!("starting {}", spec.node_id))?;
            agents.insert(spec.node_id.clone(), a);
        }
        let path = dir.path().to_path_buf();
        // RMDS_KEEP_TEST_DIRS=1 keeps logs and databases for a post-mortem.
        let dir = if std::env::var_os("RMDS_KEEP_TEST_DIRS").is_some() {
            eprintln!("test net directory (kept): {}", path.display());
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Ok(TestNet {
            path,
            _dir: dir,
            nats,
            cluster,
            agents,
            proxies,
            leaves,
            leaf_links,
        })
    }
}
