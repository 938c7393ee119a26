//! Validated names: node ids, channel names and consumer-group names.
//!
//! Names end up inside NATS subjects and SQL rows, so they are checked once at the
//! edge (config, HTTP, wire) and carried as newtypes afterwards. A name never contains
//! a NATS wildcard (`*`, `>`) or whitespace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    /// What kind of name it was ("node id", "channel", "group").
    pub kind: &'static str,
    /// The offending value (truncated to 80 chars).
    pub value: String,
    /// A human-readable reason.
    pub reason: &'static str,
}

fn check(kind: &'static str, value: &str, extra: &[char]) -> Result<(), NameError> {
    let err = |reason| NameError {
        kind,
        value: value.chars().take(80).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(err("must not be empty"));
    }
    if value.len() > 64 {
        return Err(err("must be at most 64 characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
    {
        return Err(err(if extra.is_empty() {
            "only letters, digits, '_' and '-' are allowed"
        } else {
            "only letters, digits, '_', '-', '.' and '/' are allowed"
        }));
    }
    if !extra.is_empty() {
        let first = value.chars().next().unwrap_or('.');
        let last = value.chars().last().unwrap_or('.');
        if matches!(first, '.' | '/') || matches!(last, '.' | '/') {
            return Err(err("must not start or end with '.' or '/'"));
        }
        if value.contains("..") || value.contains("//") {
            return Err(err("must not contain empty hierarchy segments"));
        }
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps a name.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check($kind, &value, $extra)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A node id: 1–64 chars of `[A-Za-z0-9_-]`.
    NodeId,
    "node id",
    &[]
);
name_type!(
    /// A channel name: 1–64 chars of `[A-Za-z0-9_-./]`, no empty hierarchy segments.
    Channel,
    "channel",
    &['.', '/']
);
name_type!(
    /// A consumer-group name: 1–64 chars of `[A-Za-z0-9_-]`.
    GroupName,
    "group",
    &[]
);

name_type!(
    /// A domain name: 1–64 chars of `[A-Za-z0-9_-]`.
    DomainName,
    "domain",
    &[]
);

/// The role a node plays in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Receives every message of the channel.
    Reader,
    /// May publish, never receives.
    Writer,
    /// Both.
    Rw,
}

impl Role {
    /// Whether this role receives the channel's messages.
    pub fn reads(self) -> bool {
        matches!(self, Role::Reader | Role::Rw)
    }
    /// Whether this role may publish.
    pub fn writes(self) -> bool {
        matches!(self, Role::Writer | Role::Rw)
    }
    /// Lowercase name as used in the API and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Rw => "rw",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reader" | "read" | "r" => Ok(Role::Reader),
            "writer" | "write" | "w" => Ok(Role::Writer),
            "rw" | "readwrite" | "both" => Ok(Role::Rw),
            other => Err(format!(
                "invalid role {other:?}: expected reader, writer or rw"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_wildcards_or_spaces_when_validating_then_refused() {
        for bad in ["", "a b", "a*", "a>", "a.b", &"x".repeat(65)] {
            assert!(NodeId::new(bad).is_err(), "{bad:?} accepted as node id");
        }
        for bad in ["", "a*", ">", ".a", "a.", "a..b", "a//b", "a b"] {
            assert!(Channel::new(bad).is_err(), "{bad:?} accepted as channel");
        }
    }

    #[test]
    fn given_hierarchical_channel_when_validating_then_accepted() {
        assert!(Channel::new("chat/room-1.general").is_ok());
        assert!(NodeId::new("alice_01-x").is_ok());
        assert_eq!("rw".parse::<Role>(), Ok(Role::Rw));
        assert!("admin".parse::<Role>().is_err());
    }
}
