//! `[api]`: who may reach the local API besides local programs. The checks
//! themselves live in `api/guard.rs`; this file owns the keys, their validation and
//! the normal form of hosts and origins that both compare.

use super::{invalid, ConfigError, Secret};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Local API settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Web origins (`http://host[:port]`) whose pages may use the API, besides the
    /// agent's own (`http://` + the Host it was asked as). Empty by default: browser
    /// pages on other origins are refused; programs that send no `Origin` are not.
    pub allowed_origins: Vec<String>,
    /// Host names the agent answers to besides `localhost`, loopback addresses and
    /// the listen address (DNS rebinding protection); without port.
    pub allowed_hosts: Vec<String>,
    /// Authentication and authorisation of API requests.
    pub auth: AuthConfig,
}

/// `[api.auth]`: off by default on loopback; required when `listen` is not a
/// loopback address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every request needs credentials (API key, JWT, or an HMAC-signed request),
    /// except the probes, the OpenAPI document, login, refresh and bootstrap.
    pub enabled: bool,
    /// Lifetime of a JWT access token.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Lifetime of a refresh token.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// How far a signed request's `X-Timestamp` may be from this node's clock.
    #[serde(with = "humantime_serde")]
    pub signature_window: Duration,
    /// An admin API key given by the operator (also `RMDS_API_ADMIN_KEY`), for
    /// provisioning without a bootstrap call; at least 16 characters.
    pub admin_key: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            token_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            signature_window: Duration::from_secs(300),
            admin_key: None,
        }
    }
}

impl ApiConfig {
    /// Checks every entry; the error names the key and the entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        for (key, d) in [
            ("api.auth.token_ttl", a.token_ttl),
            ("api.auth.refresh_ttl", a.refresh_ttl),
            ("api.auth.signature_window", a.signature_window),
        ] {
            if d.is_zero() || d > Duration::from_secs(365 * 24 * 3600) {
                return Err(invalid(key, "must be between 1s and 365days"));
            }
        }
        if a.admin_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
            return Err(invalid(
                "api.auth.admin_key",
                "must be at least 16 characters",
            ));
        }
        for o in &self.allowed_origins {
            if normalize_origin(o).is_none() {
                return Err(invalid(
                    "api.allowed_origins",
                    format!("{o:?}: write an origin as http://host[:port] or https://host[:port], without path"),
                ));
            }
        }
        for h in &self.allowed_hosts {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                return Err(invalid(
                    "api.allowed_hosts",
                    format!(
                        "{h:?}: a host name (letters, digits, '.', '-'), without scheme or port"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Splits `host[:port]` (lowercase, IPv6 in brackets, trailing dot dropped) into the
/// host name and the port. `None` when it is not a plausible host.
fn split_host(value: &str) -> Option<(String, Option<String>)> {
    let v = value.trim().to_ascii_lowercase();
    let (name, port) = if let Some(inner) = v.strip_prefix('[') {
        let (ip, rest) = inner.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':').filter(|p| is_port(p))?),
        };
        (format!("[{ip}]"), port)
    } else {
        let (name, port) = match v.split_once(':') {
            Some((name, port)) => (name, Some(Some(port).filter(|p| is_port(p))?)),
            None => (v.as_str(), None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return None;
        }
        (name.to_string(), port)
    };
    Some((name, port.map(String::from)))
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.chars().all(|c| c.is_ascii_digit())
}

/// The host name of a `Host` value: lowercase, without port or trailing dot, IPv6 in
/// brackets. `None` when it is not a plausible host.
pub fn host_name(value: &str) -> Option<String> {
    split_host(value).map(|(name, _)| name)
}

/// An origin as `scheme://host[:port]`, lowercase, with the scheme's default port
/// dropped. `None` for `null`, paths, or anything that is not http(s).
pub fn normalize_origin(value: &str) -> Option<String> {
    let v = value.trim().to_ascii_lowercase();
    let (scheme, rest) = v.split_once("://")?;
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let (host, port) = split_host(rest)?;
    Some(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}
