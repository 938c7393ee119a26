//! Why the agent is not connected to NATS, in words an operator can act on.
//!
//! async-nats reports a failed connection attempt as an event naming only its kind
//! ("authorization violation", "TLS error", ...). [`explain`] turns each kind into a
//! reason that names the settings to check; [`NatsStatus`] keeps the latest one until
//! the next successful connection, for `/healthz`, `/readyz` and the log (which
//! hears each reason once, not once per retry).

use std::sync::Mutex;

/// The last connection problem (its kind as async-nats reports it, and the reason
/// shown), cleared by a successful connection.
#[derive(Debug, Default)]
pub struct NatsStatus {
    last: Mutex<Option<(String, String)>>,
}

impl NatsStatus {
    /// Records a failed attempt of `kind`; true when the kind is new (worth a log
    /// line). A reason refined for the same kind is kept.
    pub fn failed(&self, kind: &str, reason: String) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_some_and(|(k, _)| k == kind) {
            return false;
        }
        *last = Some((kind.to_string(), reason));
        true
    }

    /// Replaces the reason for `kind` with a more precise one (from a diagnosis);
    /// true when it changed (worth a log line).
    pub fn refine(&self, kind: &str, reason: String) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_mut() {
            Some((k, r)) if k == kind && *r != reason => {
                *r = reason;
                true
            }
            _ => false,
        }
    }

    /// A connection is up: the problem is over.
    pub fn connected(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The current problem, if any.
    pub fn reason(&self) -> Option<String> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, r)| r.clone())
    }
}

/// A reason naming what to check, from the text of an async-nats client or server
/// error event. `auth` is the configured way of authenticating (`"none"`, `"token"`,
/// ...).
pub fn explain(event: &str, auth: &str) -> String {
    let e = event.to_ascii_lowercase();
    if e.contains("authorization violation") || e.contains("authentication expired") {
        if auth == "none" {
            return format!(
                "{event}: the server requires authentication and none is configured \
                 (set nats.user and nats.password, nats.token, nats.nkey_seed or nats.credentials)"
            );
        }
        return format!(
            "{event}: the server refused this agent's credentials ({auth}); check {}",
            settings(auth)
        );
    }
    if e.contains("signing nonce") || e.contains("authentication") {
        return format!(
            "{event}: could not answer the server's challenge; check {}",
            settings(auth)
        );
    }
    if e.contains("tls") {
        return format!(
            "{event}: the TLS handshake failed: the server's certificate is not signed by a \
             CA in nats.tls.ca (or the system's roots) or does not carry the expected name \
             (nats.tls.server_name), the server refused the client certificate \
             (nats.tls.cert, nats.tls.key), or one side does not speak TLS"
        );
    }
    if e.contains("permissions violation") {
        return format!(
            "{event}: the server does not allow this agent to publish or subscribe on rmds \
             subjects; check the user's permissions for the subject prefix (nats.prefix)"
        );
    }
    if e.contains("io error") || e.contains("timed out") || e.contains("dns") {
        return format!(
            "{event}: cannot reach any server in nats.urls, or the TLS handshake failed"
        );
    }
    event.to_string()
}

fn settings(auth: &str) -> &'static str {
    match auth {
        "user_password" => "nats.user and nats.password",
        "token" => "nats.token",
        "nkey" => "nats.nkey_seed (is its public key in the server's authorization?)",
        "credentials" => "nats.credentials (is the user or its account still valid?)",
        _ => "the NATS authentication settings",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_failure_kind_when_explained_then_the_settings_to_check_are_named() {
        let s = explain("authorization violation", "user_password");
        assert!(s.contains("nats.user and nats.password"), "{s}");
        let s = explain("authorization violation", "none");
        assert!(s.contains("none is configured"), "{s}");
        assert!(explain("authorization violation", "nkey").contains("nats.nkey_seed"));
        assert!(explain("authorization violation", "credentials").contains("nats.credentials"));
        assert!(explain("TLS error", "none").contains("nats.tls.ca"));
        assert!(explain("IO error", "none").contains("cannot reach"));
        assert_eq!(explain("something new", "none"), "something new");
    }

    #[test]
    fn given_the_same_kind_twice_when_recorded_then_only_the_first_is_new_and_a_refined_reason_stays(
    ) {
        let s = NatsStatus::default();
        assert!(s.failed("io", "generic".into()));
        assert!(s.refine("io", "precise".into()));
        assert!(!s.refine("io", "precise".into()));
        assert!(!s.failed("io", "generic".into()));
        assert_eq!(s.reason().as_deref(), Some("precise"));
        assert!(!s.refine("tls", "other kind".into()));
        assert!(s.failed("auth", "refused".into()));
        assert_eq!(s.reason().as_deref(), Some("refused"));
        s.connected();
        assert_eq!(s.reason(), None);
        assert!(s.failed("auth", "refused".into()));
    }
}
