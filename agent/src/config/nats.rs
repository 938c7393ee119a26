//! `[nats]`: where the bus is, how the agent signs its traffic, and how it
//! authenticates to a secured nats-server (user/password, token, nkey, credentials
//! file, TLS with a CA and a client certificate).

use super::{invalid, ConfigError, Secret};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// NATS connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs; the client fails over between them.
    pub urls: Vec<String>,
    /// Subject prefix (`{prefix}.node.{id}.data`, ...).
    pub prefix: String,
    /// PING interval: a dead link is noticed after two missed PONGs.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Longest wait between reconnect attempts (reconnects go on forever).
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
    /// Shared cluster key: when set, every rmds message is HMAC-SHA256 signed and
    /// unsigned or badly signed traffic is dropped and counted.
    pub cluster_key: Option<Secret>,
    /// Largest NATS message to send, when the server's limit is not known yet (the
    /// server's own limit wins once connected).
    pub max_payload: usize,
    /// User name for a server with user/password authorization (with `password`).
    pub user: Option<String>,
    /// Password for `user` (also `RMDS_NATS_PASSWORD`).
    pub password: Option<Secret>,
    /// Token for a server with token authorization (also `RMDS_NATS_TOKEN`).
    pub token: Option<Secret>,
    /// File holding this node's NKey seed (`SU...`), for nkey authorization.
    pub nkey_seed: Option<PathBuf>,
    /// A `.creds` file (user JWT and seed) for decentralized JWT authorization.
    pub credentials: Option<PathBuf>,
    /// TLS to the server.
    pub tls: NatsTls,
}

/// `[nats.tls]`: TLS to the server. TLS is used when the server asks for it, when a
/// URL is `tls://`, or when `required` is set; these settings say whom to trust and
/// how to prove who this agent is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsTls {
    /// Refuse to talk to a server without TLS.
    pub required: bool,
    /// PEM file of the CA(s) that signed the server's certificate (instead of the
    /// system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain), for servers that verify clients (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the URL's
    /// host (for example when the URL is an IP address).
    pub server_name: Option<String>,
}

impl NatsTls {
    /// Whether any TLS setting asks the agent to build its own TLS configuration.
    pub fn configured(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.server_name.is_some()
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            prefix: "rmds".into(),
            ping_interval: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(2),
            cluster_key: None,
            max_payload: 1024 * 1024,
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            credentials: None,
            tls: NatsTls::default(),
        }
    }
}

fn readable(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

impl NatsConfig {
    /// Checks the authentication and TLS settings: one way of authenticating, each
    /// half of a pair present, every file readable and well-formed. Runs at start,
    /// so a typo fails fast instead of as an endless reconnect loop.
    pub fn validate_security(&self) -> Result<(), ConfigError> {
        if self.cluster_key.as_ref().is_some_and(Secret::is_empty) {
            return Err(invalid("nats.cluster_key", "must not be empty when set"));
        }
        let methods = [
            ("nats.user", self.user.is_some() || self.password.is_some()),
            ("nats.token", self.token.is_some()),
            ("nats.nkey_seed", self.nkey_seed.is_some()),
            ("nats.credentials", self.credentials.is_some()),
        ];
        let chosen: Vec<&str> = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
        if chosen.len() > 1 {
            return Err(invalid(
                "nats",
                format!(
                    "choose one way to authenticate to NATS, not {}",
                    chosen.join(" and ")
                ),
            ));
        }
        match (&self.user, &self.password) {
            (Some(u), Some(_)) if u.is_empty() => {
                return Err(invalid("nats.user", "must not be empty"))
            }
            (Some(_), None) => return Err(invalid("nats.password", "required with nats.user")),
            (None, Some(_)) => return Err(invalid("nats.user", "required with nats.password")),
            _ => {}
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            return Err(invalid("nats.token", "must not be empty"));
        }
        if let Some(path) = &self.nkey_seed {
            let seed = readable("nats.nkey_seed", path)?;
            nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| {
                invalid(
                    "nats.nkey_seed",
                    format!("{} does not hold an NKey seed: {e}", path.display()),
                )
            })?;
        }
        if let Some(path) = &self.credentials {
            let text = readable("nats.credentials", path)?;
            async_nats::ConnectOptions::with_credentials(&text).map_err(|e| {
                invalid(
                    "nats.credentials",
                    format!("{} is not a NATS credentials file: {e}", path.display()),
                )
            })?;
        }
        let tls = &self.tls;
        match (&tls.cert, &tls.key) {
            (Some(_), None) => return Err(invalid("nats.tls.key", "required with nats.tls.cert")),
            (None, Some(_)) => return Err(invalid("nats.tls.cert", "required with nats.tls.key")),
            _ => {}
        }
        for (key, path) in [
            ("nats.tls.ca", &tls.ca),
            ("nats.tls.cert", &tls.cert),
            ("nats.tls.key", &tls.key),
        ] {
            if let Some(path) = path {
                let text = readable(key, path)?;
                if !text.contains("-----BEGIN ") {
                    return Err(invalid(
                        key,
                        format!("{} is not a PEM file", path.display()),
                    ));
                }
            }
        }
        if let Some(name) = &tls.server_name {
            async_nats::rustls::pki_types::ServerName::try_from(name.as_str())
                .map_err(|e| invalid("nats.tls.server_name", format!("{name:?}: {e}")))?;
        }
        Ok(())
    }
}
