//! One `Config` for the agent: TOML file < `RMDS_*` environment < command-line flags.
//!
//! Everything is validated here, before any port is bound or any file is opened, so a
//! bad setting fails fast with a message naming the key. `--generate-config` prints
//! [`Config::default`] as TOML, so every key appears there with its default.

pub mod api;
mod nats;
mod secret;
pub mod stats;
mod validate;

pub use api::{ApiConfig, AuthConfig};
pub use nats::{NatsConfig, NatsTls};
pub use secret::Secret;
pub use stats::StatsConfig;

use crate::names::{Channel, NodeId, Role};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration problem, named by key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// What to do when a receiver's backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Refuse the publish (HTTP 429), store nothing.
    Reject,
    /// Drop the receiver's oldest undelivered message (counted as dropped).
    DropOldest,
}

/// A channel joined at start (`--join chat:rw`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// The channel.
    pub channel: Channel,
    /// The role (default `rw`).
    pub role: Role,
}

impl std::str::FromStr for JoinSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ch, role) = match s.rsplit_once(':') {
            Some((ch, role)) => (ch, role.parse::<Role>()?),
            None => (s, Role::Rw),
        };
        Ok(JoinSpec {
            channel: Channel::new(ch).map_err(|e| e.to_string())?,
            role,
        })
    }
}

impl Serialize for JoinSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}:{}", self.channel, self.role.as_str()))
    }
}

impl<'de> Deserialize<'de> for JoinSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The whole agent configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id, unique in the cluster; names its NATS subjects.
    pub node_id: String,
    /// Where the SQLite database lives (`rmds.db`).
    pub data_dir: PathBuf,
    /// Local API address. On a non-loopback address `api.auth.enabled` is required.
    pub listen: SocketAddr,
    /// Channels joined at start, as `channel[:role]`.
    pub join: Vec<JoinSpec>,
    /// Local API: allowed web origins and host names.
    pub api: ApiConfig,
    /// NATS connection.
    pub nats: NatsConfig,
    /// Peer discovery.
    pub discovery: DiscoveryConfig,
    /// Sending side.
    pub delivery: DeliveryConfig,
    /// Local consumption.
    pub groups: GroupsConfig,
    /// SQLite.
    pub store: StoreConfig,
    /// Sampled history (`/v1/stats?period=`, `/v1/resources/history`).
    pub stats: StatsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Domains declared here (`[[domains]]`): created or updated at start.
    pub domains: Vec<crate::domains::DomainSpec>,
    /// Channel settings declared here (`[[channels]]`): domain and policy, at start.
    pub channels: Vec<crate::domains::ChannelSpec>,
}

/// Discovery settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// How often this node announces itself.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// A peer not heard from for this long (local clock) is offline: no attempts are spent on it.
    #[serde(with = "humantime_serde")]
    pub node_offline_timeout: Duration,
    /// A peer not seen for this long is forgotten, with its memberships.
    #[serde(with = "humantime_serde")]
    pub node_expiry: Duration,
}

/// Sending-side settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How long a sent window waits for an ACK before it is resent.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// First extra delay of the exponential backoff between resends.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Backoff multiplier.
    pub retry_factor: f64,
    /// Backoff ceiling.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Resends to an online receiver before the head message is dead-lettered.
    pub max_retry_attempts: u32,
    /// Default message TTL.
    #[serde(with = "humantime_serde")]
    pub message_expiry: Duration,
    /// Undelivered messages allowed per receiver node.
    pub max_messages_per_receiver: u64,
    /// What to do past `max_messages_per_receiver`.
    pub overflow: Overflow,
    /// Messages in flight per stream.
    pub window: u32,
    /// Sends (frames) awaiting their ACK per stream before newly published messages
    /// wait to leave together in a larger frame (when an ACK returns or a frame's
    /// worth is waiting); 0 sends every commit at once.
    pub sends_in_flight: u32,
    /// Snappy-compress payloads above `compression_threshold` bytes.
    pub enable_compression: bool,
    /// Payload size from which compression is tried.
    pub compression_threshold: usize,
    /// How long delivered messages are kept (for status queries) before deletion.
    #[serde(with = "humantime_serde")]
    pub delivered_message_retention: Duration,
    /// How often expiry and retention sweeps run.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// A sending stream idle this long releases its task and memory (it starts again
    /// from the store when its receiver has something new).
    #[serde(with = "humantime_serde")]
    pub stream_idle_release: Duration,
}

/// Consumer-group settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Default lease on a pulled message before it is redelivered.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Longest long-poll wait a client may ask for.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Most messages one pull may return.
    pub max_batch: usize,
    /// Default deliveries before a message goes to the group's dead-letter queue
    /// (0: no limit).
    pub max_deliveries: u32,
    /// Default idle TTL: a group without pulls or acks for this long is deleted
    /// (0s: never).
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// Send consumption receipts: a group's first ack of a message is reported to its
    /// sender, whose message status then reads `consumed`.
    pub receipts: bool,
}

/// SQLite durability setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit (survives power loss).
    Full,
    /// fsync at checkpoints (survives process crashes, not power loss).
    Normal,
}

/// SQLite settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `full` (default) or `normal`.
    pub synchronous: Synchronous,
    /// Most write jobs sharing one transaction (group commit).
    pub max_batch: usize,
    /// Read connections in the pool.
    pub read_connections: usize,
    /// Pending write jobs before callers wait.
    pub queue_capacity: usize,
    /// Largest database size in MiB (0: no limit). Past it, writes fail cleanly:
    /// publishes get 503 and received messages are refused with a negative ACK
    /// (senders keep them and resend later).
    pub max_size_mb: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `rmds_agent=debug`, ...).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: String::new(),
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            join: Vec::new(),
            api: ApiConfig::default(),
            nats: NatsConfig::default(),
            discovery: DiscoveryConfig::default(),
            delivery: DeliveryConfig::default(),
            groups: GroupsConfig::default(),
            store: StoreConfig::default(),
            stats: StatsConfig::default(),
            log: LogConfig::default(),
            domains: Vec::new(),
            channels: Vec::new(),
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            keepalive_interval: Duration::from_secs(10),
            node_offline_timeout: Duration::from_secs(30),
            node_expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            ack_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_factor: 2.0,
            retry_max: Duration::from_secs(30),
            max_retry_attempts: 10,
            message_expiry: Duration::from_secs(24 * 3600),
            max_messages_per_receiver: 10_000,
            overflow: Overflow::Reject,
            window: 1024,
            sends_in_flight: 2,
            enable_compression: true,
            compression_threshold: 256,
            delivered_message_retention: Duration::from_secs(3 * 24 * 3600),
            sweep_interval: Duration::from_secs(5),
            stream_idle_release: Duration::from_secs(60),
        }
    }
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            ack_wait: Duration::from_secs(30),
            max_wait: Duration::from_secs(60),
            max_batch: 1000,
            max_deliveries: 0,
            idle_ttl: Duration::ZERO,
            receipts: true,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            synchronous: Synchronous::Full,
            max_batch: 1024,
            read_connections: 4,
            queue_capacity: 8192,
            max_size_mb: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info,async_nats=warn".into(),
            format: LogFormat::Text,
        }
    }
}

/// Overrides from the environment and the command line (flags win over env, both over the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--node-id` / `RMDS_NODE_ID`.
    pub node_id: Option<String>,
    /// `--nats` / `RMDS_NATS`, comma-separated.
    pub nats: Option<String>,
    /// `--data-dir` / `RMDS_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `RMDS_LISTEN`.
    pub listen: Option<String>,
    /// `--join` / `RMDS_JOIN` (comma-separated in env).
    pub join: Vec<String>,
    /// `--log-level` / `RMDS_LOG`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--nats-user` / `RMDS_NATS_USER`.
    pub nats_user: Option<String>,
    /// `RMDS_NATS_PASSWORD` (environment only: flags show in process lists).
    pub nats_password: Option<Secret>,
    /// `RMDS_NATS_TOKEN` (environment only).
    pub nats_token: Option<Secret>,
    /// `RMDS_API_ADMIN_KEY` (environment only).
    pub api_admin_key: Option<Secret>,
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Loads the optional file, applies overrides and validates.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, path)?
            }
            None => Config::default(),
        };
        config.apply(overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies env/flag overrides.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(v) = &o.node_id {
            self.node_id = v.clone();
        }
        if let Some(v) = &o.nats {
            self.nats.urls = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = &o.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = &o.listen {
            self.listen = v
                .parse()
                .map_err(|e| invalid("listen", format!("{v:?}: {e}")))?;
        }
        for spec in o.join.iter().flat_map(|s| s.split(',')) {
            let spec = spec.trim();
            if spec.is_empty() {
                continue;
            }
            let js: JoinSpec = spec.parse().map_err(|e| invalid("join", e))?;
            self.join.retain(|j| j.channel != js.channel);
            self.join.push(js);
        }
        if let Some(v) = &o.log_level {
            self.log.level = v.clone();
        }
        if let Some(v) = o.log_format {
            self.log.format = v;
        }
        if let Some(v) = &o.nats_user {
            self.nats.user = Some(v.clone());
        }
        if let Some(v) = &o.nats_password {
            self.nats.password = Some(v.clone());
        }
        if let Some(v) = &o.nats_token {
            self.nats.token = Some(v.clone());
        }
        if let Some(v) = &o.api_admin_key {
            self.api.auth.admin_key = Some(v.clone());
        }
        Ok(())
    }

    /// The node id, checked.
    pub fn node(&self) -> Result<NodeId, ConfigError> {
        NodeId::new(self.node_id.clone()).map_err(|e| invalid("node_id", e.to_string()))
    }

    /// The default configuration as TOML, every key with its default value.
    pub fn default_toml() -> String {
        let c = Config {
            node_id: "node-1".into(),
            ..Config::default()
        };
        let body = toml::to_string_pretty(&c)
            .unwrap_or_default()
            .replacen(
                "max_payload = ",
                "# Shared HMAC key; unset by default. Set the same value on every node to sign\n\
                 # all traffic and drop anything unsigned or forged.\n\
                 # cluster_key = \"change-me\"\n\
                 max_payload = ",
                1,
            )
            .replacen(
                "[nats.tls]",
                "# A secured nats-server: set one of user + password, token, nkey_seed (a file\n\
                 # holding the seed) or credentials (a .creds file). Passwords and tokens may\n\
                 # come from RMDS_NATS_PASSWORD / RMDS_NATS_TOKEN instead of this file.\n\
                 # user = \"rmds\"\n\
                 # password = \"change-me\"\n\
                 # token = \"change-me\"\n\
                 # nkey_seed = \"/etc/rmds/node.nk\"\n\
                 # credentials = \"/etc/rmds/node.creds\"\n\n\
                 # TLS: used when the server asks for it or a URL is tls://. ca, cert and key\n\
                 # are PEM files; server_name overrides the name checked in the certificate.\n\
                 # ca = \"/etc/rmds/ca.pem\"\n\
                 # cert = \"/etc/rmds/node.pem\"\n\
                 # key = \"/etc/rmds/node-key.pem\"\n\
                 # server_name = \"nats.internal\"\n\
                 [nats.tls]",
                1,
            )
            .replacen(
                "allowed_origins = ",
                "# Web pages on these origins (http://host[:port]) may use the API; others are\n\
                 # refused. Programs that send no Origin header (curl, the SDK) always may.\n\
                 allowed_origins = ",
                1,
            )
            .replacen(
                "allowed_hosts = ",
                "# Host names the API answers to besides localhost and IP addresses\n\
                 # (DNS rebinding protection).\n\
                 allowed_hosts = ",
                1,
            );
        format!(
            "# rmds-agent configuration. Precedence: this file < RMDS_* env < flags.\n\
             # Durations are written like \"10s\", \"5m\", \"24h\", \"7days\".\n\n{body}"
        )
    }
}

#[cfg(test)]
mod tests;
