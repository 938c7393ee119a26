//! `Config::validate`: every value checked, the first problem named by its key,
//! before any port is bound or any file is opened.

use super::{invalid, Config, ConfigError};
use crate::durations::{MAX_LIFETIME, MAX_TIMER};

impl Config {
    /// Checks every value; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() {
            return Err(invalid(
                "node_id",
                "required (set --node-id, RMDS_NODE_ID or node_id in the config file)",
            ));
        }
        self.node()?;
        if self.nats.urls.is_empty() {
            return Err(invalid("nats.urls", "at least one NATS URL is required"));
        }
        for url in &self.nats.urls {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| invalid("nats.urls", format!("{url:?}: {e}")))?;
        }
        let prefix_ok = !self.nats.prefix.is_empty()
            && self.nats.prefix.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !prefix_ok {
            return Err(invalid(
                "nats.prefix",
                "dot-separated segments of letters, digits, '_' and '-'",
            ));
        }
        if self.nats.max_payload < 1024 {
            return Err(invalid("nats.max_payload", "must be at least 1024 bytes"));
        }
        self.nats.validate_security()?;
        let positive = [
            ("nats.ping_interval", self.nats.ping_interval),
            ("nats.reconnect_max_delay", self.nats.reconnect_max_delay),
            ("keepalive_interval", self.discovery.keepalive_interval),
            ("node_offline_timeout", self.discovery.node_offline_timeout),
            ("node_expiry", self.discovery.node_expiry),
            ("ack_timeout", self.delivery.ack_timeout),
            ("retry_max", self.delivery.retry_max),
            ("message_expiry", self.delivery.message_expiry),
            ("sweep_interval", self.delivery.sweep_interval),
            ("stream_idle_release", self.delivery.stream_idle_release),
            ("groups.ack_wait", self.groups.ack_wait),
            ("groups.max_wait", self.groups.max_wait),
        ];
        for (key, d) in positive {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        self.check_bounds()?;
        self.api.validate()?;
        if !self.listen.ip().is_loopback() && !self.api.auth.enabled {
            return Err(invalid(
                "api.auth.enabled",
                format!(
                    "the API listens on {}, which is not a loopback address: turn on \
                     api.auth.enabled (then create credentials with POST /v1/auth/bootstrap, \
                     or set api.auth.admin_key) or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        self.stats.validate()?;
        if self.discovery.node_offline_timeout <= self.discovery.keepalive_interval {
            return Err(invalid(
                "node_offline_timeout",
                "must be longer than keepalive_interval",
            ));
        }
        if !(1.0..=100.0).contains(&self.delivery.retry_factor) {
            return Err(invalid("retry_factor", "must be between 1 and 100"));
        }
        if self.delivery.retry_initial > self.delivery.retry_max {
            return Err(invalid("retry_initial", "must not exceed retry_max"));
        }
        if self.delivery.max_retry_attempts == 0 {
            return Err(invalid("max_retry_attempts", "must be at least 1"));
        }
        if self.delivery.max_messages_per_receiver == 0 {
            return Err(invalid("max_messages_per_receiver", "must be at least 1"));
        }
        if !(1..=65_536).contains(&self.delivery.window) {
            return Err(invalid("window", "must be between 1 and 65536"));
        }
        if self.delivery.sends_in_flight > 1024 {
            return Err(invalid(
                "sends_in_flight",
                "must be at most 1024 (0: no limit)",
            ));
        }
        if self.groups.max_batch == 0 {
            return Err(invalid("groups.max_batch", "must be at least 1"));
        }
        if self.store.max_batch == 0
            || self.store.read_connections == 0
            || self.store.queue_capacity == 0
        {
            return Err(invalid(
                "store",
                "max_batch, read_connections and queue_capacity must be at least 1",
            ));
        }
        for d in &self.domains {
            crate::names::DomainName::new(d.name.clone())
                .map_err(|e| invalid("domains.name", e.to_string()))?;
            d.policy
                .validate()
                .map_err(|e| invalid("domains.policy", format!("{}: {e}", d.name)))?;
            if let Some(schema) = &d.schema {
                let full = crate::domains::normalize_schema(schema)
                    .map_err(|e| invalid("domains.schema", format!("{}: {e}", d.name)))?;
                jsonschema::validator_for(&full)
                    .map_err(|e| invalid("domains.schema", format!("{}: {e}", d.name)))?;
            }
        }
        for c in &self.channels {
            crate::names::Channel::new(c.name.clone())
                .map_err(|e| invalid("channels.name", e.to_string()))?;
            c.policy
                .validate()
                .map_err(|e| invalid("channels.policy", format!("{}: {e}", c.name)))?;
            if let Some(d) = &c.domain {
                if d != crate::domains::DEFAULT_DOMAIN && !self.domains.iter().any(|x| &x.name == d)
                {
                    return Err(invalid(
                        "channels.domain",
                        format!("{}: domain {d} is not declared in [[domains]]", c.name),
                    ));
                }
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        Ok(())
    }

    /// Every duration against its upper bound, so that no timer can overflow.
    fn check_bounds(&self) -> Result<(), ConfigError> {
        let (n, di, de, g) = (&self.nats, &self.discovery, &self.delivery, &self.groups);
        let bounded = [
            ("nats.ping_interval", n.ping_interval, MAX_TIMER),
            ("nats.reconnect_max_delay", n.reconnect_max_delay, MAX_TIMER),
            ("keepalive_interval", di.keepalive_interval, MAX_TIMER),
            (
                "node_offline_timeout",
                di.node_offline_timeout,
                MAX_LIFETIME,
            ),
            ("node_expiry", di.node_expiry, MAX_LIFETIME),
            ("ack_timeout", de.ack_timeout, MAX_TIMER),
            ("retry_initial", de.retry_initial, MAX_TIMER),
            ("retry_max", de.retry_max, MAX_TIMER),
            ("message_expiry", de.message_expiry, MAX_LIFETIME),
            (
                "delivered_message_retention",
                de.delivered_message_retention,
                MAX_LIFETIME,
            ),
            ("sweep_interval", de.sweep_interval, MAX_TIMER),
            ("stream_idle_release", de.stream_idle_release, MAX_LIFETIME),
            ("groups.ack_wait", g.ack_wait, MAX_TIMER),
            ("groups.max_wait", g.max_wait, MAX_TIMER),
            ("groups.idle_ttl", g.idle_ttl, MAX_LIFETIME),
        ];
        for (key, d, max) in bounded {
            crate::durations::check(key, d, max).map_err(|e| invalid(key, e))?;
        }
        Ok(())
    }
}
