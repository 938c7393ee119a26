//! Who may do what on the local API: principals (API keys, users with JWT sessions,
//! HMAC-signed service accounts), their roles and per-channel grants, and the access
//! each route needs. Pure rules with unit tests; `api/authn.rs` applies them to
//! requests and `store/auth.rs` keeps the principals.
//!
//! Roles: `admin` may do everything; `publisher` reads and publishes; `consumer`
//! reads and consumes (pull, ack, nack, term, extend, WebSocket subscribe);
//! `reader-only` reads. A principal may carry grants (`[{"channel": "orders*",
//! "actions": ["publish", "manage"]}]`): then its publishing, consuming and managing
//! are limited to the channels its grants name (a trailing `*` is a prefix), and
//! `manage` (join, leave, policy, groups, a group's dead letters) can be granted per
//! channel. Node-wide changes (kick, purge, domains, the sender's dead letters,
//! principals) are for admins only.

pub mod hmac_req;
pub mod password;
pub mod token;

use crate::names::Channel;
use serde::{Deserialize, Serialize};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Everything.
    #[serde(rename = "admin")]
    Admin,
    /// Read and publish.
    #[serde(rename = "publisher")]
    Publisher,
    /// Read and consume.
    #[serde(rename = "consumer")]
    Consumer,
    /// Read.
    #[serde(rename = "reader-only", alias = "reader_only")]
    ReaderOnly,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Anyone, without credentials (probes, the OpenAPI document, login).
    Public,
    /// Look (GET).
    Read,
    /// Publish to a channel.
    Publish,
    /// Consume from a channel.
    Consume,
    /// Manage a channel: join, leave, policy, groups, a group's dead letters.
    Manage,
    /// Node- and network-wide changes.
    Admin,
}

/// Permission for some actions on the channels a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A channel name, or a prefix ending in `*` (`*` alone: every channel).
    pub channel: String,
    /// `publish`, `consume`, `manage`.
    pub actions: Vec<Action>,
}

impl Grant {
    fn matches(&self, channel: &str) -> bool {
        match self.channel.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => self.channel == channel,
        }
    }

    /// Checks the pattern and the actions; the message names the problem.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.channel.strip_suffix('*').unwrap_or(&self.channel);
        if !name.is_empty() && Channel::new(name.trim_end_matches(['/', '.'])).is_err() {
            return Err(format!(
                "grant channel {:?} is not a channel name or prefix",
                self.channel
            ));
        }
        if self.actions.is_empty() {
            return Err("a grant needs at least one action".into());
        }
        for a in &self.actions {
            if !matches!(a, Action::Publish | Action::Consume | Action::Manage) {
                return Err(format!(
                    "grant action {a:?}: only publish, consume and manage are granted per channel"
                ));
            }
        }
        Ok(())
    }
}

/// Who is asking.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// `key`, `user` or `service`.
    pub kind: &'static str,
    /// Key id, user name or service id.
    pub id: String,
    /// The role.
    pub role: Role,
    /// Per-channel grants; `None`: the role applies to every channel.
    pub grants: Option<Vec<Grant>>,
}

impl Role {
    fn baseline(self, action: Action) -> bool {
        match self {
            Role::Admin => true,
            Role::Publisher => matches!(action, Action::Public | Action::Read | Action::Publish),
            Role::Consumer => matches!(action, Action::Public | Action::Read | Action::Consume),
            Role::ReaderOnly => matches!(action, Action::Public | Action::Read),
        }
    }
}

impl Principal {
    /// Whether this principal may do `action` (on `channel`, when the route names one).
    pub fn allows(&self, action: Action, channel: Option<&str>) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        match action {
            Action::Public | Action::Read => true,
            Action::Admin => false,
            Action::Publish | Action::Consume | Action::Manage => match &self.grants {
                None => self.role.baseline(action),
                Some(grants) => {
                    let granted = channel.is_some_and(|c| {
                        grants
                            .iter()
                            .any(|g| g.matches(c) && g.actions.contains(&action))
                    });
                    granted && (self.role.baseline(action) || action == Action::Manage)
                }
            },
        }
    }
}

/// The access a route needs, from its method and path pattern (as in the route
/// table). Every route of the API has an answer; unknown ones need admin.
pub fn route_access(method: &str, pattern: &str) -> Action {
    // A domain's channel routes need what the plain channel routes need.
    let p = match pattern.strip_prefix("/v1/domains/{d}") {
        Some(rest) if rest.starts_with("/channels/") => format!("/v1{rest}"),
        _ => pattern.to_string(),
    };
    let p = p.as_str();
    let channel = |tail: &str| {
        p.strip_prefix("/v1/channels/{ch}")
            .is_some_and(|t| t == tail)
    };
    match method {
        _ if matches!(p, "/healthz" | "/livez" | "/readyz" | "/v1/openapi.json") => Action::Public,
        // The dashboard's and the viewer's static files; their pages then call the
        // API with the user's credentials.
        "get"
            if matches!(
                p,
                "/" | "/ui" | "/ui/" | "/ui/{*path}" | "/docs" | "/docs/" | "/docs/{*path}"
            ) =>
        {
            Action::Public
        }
        "post"
            if matches!(
                p,
                "/v1/auth/login" | "/v1/auth/bootstrap" | "/v1/auth/refresh"
            ) =>
        {
            Action::Public
        }
        "get" if p == "/v1/auth/whoami" => Action::Read,
        _ if p.starts_with("/v1/auth/") => Action::Admin,
        "post" if channel("/messages") || channel("/messages:batch") => Action::Publish,
        "get" if channel("/messages") => Action::Consume,
        "post"
            if channel("/acks")
                || channel("/nacks")
                || channel("/terms")
                || channel("/extends") =>
        {
            Action::Consume
        }
        "put" | "delete" if channel("") => Action::Manage,
        "put" if channel("/policy") => Action::Manage,
        "post" if channel("/groups") || channel("/groups/{g}/reset") => Action::Manage,
        "delete" if channel("/groups/{g}") || channel("/groups/{g}/dead-letters/{id}") => {
            Action::Manage
        }
        "post" if channel("/groups/{g}/dead-letters/{id}/redrive") => Action::Manage,
        "get" => Action::Read,
        _ => Action::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, grants: Option<Vec<Grant>>) -> Principal {
        Principal {
            kind: "key",
            id: "k".into(),
            role,
            grants,
        }
    }

    #[test]
    fn given_each_role_when_asked_then_its_actions_and_no_more() {
        let cases = [
            (Role::Admin, [true, true, true, true, true]),
            (Role::Publisher, [true, true, false, false, false]),
            (Role::Consumer, [true, false, true, false, false]),
            (Role::ReaderOnly, [true, false, false, false, false]),
        ];
        let actions = [
            Action::Read,
            Action::Publish,
            Action::Consume,
            Action::Manage,
            Action::Admin,
        ];
        for (role, want) in cases {
            for (a, w) in actions.iter().zip(want) {
                assert_eq!(p(role, None).allows(*a, Some("chat")), w, "{role:?} {a:?}");
            }
        }
    }

    #[test]
    fn given_grants_when_asked_then_only_the_named_channels_and_manage_where_granted() {
        let g = vec![
            Grant {
                channel: "orders*".into(),
                actions: vec![Action::Publish, Action::Manage],
            },
            Grant {
                channel: "chat".into(),
                actions: vec![Action::Consume],
            },
        ];
        let pubr = p(Role::Publisher, Some(g.clone()));
        assert!(pubr.allows(Action::Publish, Some("orders/eu")));
        assert!(!pubr.allows(Action::Publish, Some("chat")));
        assert!(pubr.allows(Action::Manage, Some("orders")));
        assert!(
            !pubr.allows(Action::Consume, Some("chat")),
            "consume is not a publisher's"
        );
        assert!(!pubr.allows(Action::Publish, None));
        assert!(pubr.allows(Action::Read, Some("anything")));
        let cons = p(Role::Consumer, Some(g));
        assert!(cons.allows(Action::Consume, Some("chat")));
        assert!(
            !cons.allows(Action::Consume, Some("chatter")),
            "exact name, not a prefix"
        );
        assert!(!cons.allows(Action::Admin, None));
    }

    #[test]
    fn given_every_kind_of_route_when_mapped_then_the_access_fits() {
        use Action::*;
        let cases = [
            ("get", "/readyz", Public),
            ("post", "/v1/auth/login", Public),
            ("get", "/v1/auth/keys", Admin),
            ("post", "/v1/auth/keys", Admin),
            ("post", "/v1/channels/{ch}/messages", Publish),
            (
                "post",
                "/v1/domains/{d}/channels/{ch}/messages:batch",
                Publish,
            ),
            ("get", "/v1/domains/{d}/channels/{ch}/messages", Consume),
            ("post", "/v1/channels/{ch}/nacks", Consume),
            ("put", "/v1/channels/{ch}", Manage),
            ("put", "/v1/domains/{d}/channels/{ch}", Manage),
            ("post", "/v1/channels/{ch}/groups/{g}/reset", Manage),
            ("get", "/v1/channels/{ch}/groups", Read),
            ("get", "/v1/ws", Read),
            ("post", "/v1/purge", Admin),
            ("post", "/v1/nodes/{id}/kick", Admin),
            ("post", "/v1/domains", Admin),
            ("delete", "/v1/dead-letters/{id}", Admin),
            ("get", "/metrics", Read),
        ];
        for (m, path, want) in cases {
            assert_eq!(route_access(m, path), want, "{m} {path}");
        }
    }

    #[test]
    fn given_grants_when_validated_then_bad_ones_are_named() {
        let g = |c: &str, a: Vec<Action>| Grant {
            channel: c.into(),
            actions: a,
        };
        assert!(g("orders*", vec![Action::Publish]).validate().is_ok());
        assert!(g("*", vec![Action::Consume]).validate().is_ok());
        assert!(g("a b", vec![Action::Publish]).validate().is_err());
        assert!(g("chat", vec![]).validate().is_err());
        assert!(g("chat", vec![Action::Admin]).validate().is_err());
    }
}
