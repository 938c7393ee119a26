//! Domains and channel settings: namespaces with an optional schema and a default
//! channel policy, and each channel's own policy. Local to this agent; channel names
//! stay global. A channel not placed in a domain is in `default` (no schema).
//!
//! Schemas accept GoRTMS's shorthand `{"fields":{"name":"string"|"number"|"boolean"|
//! "object"|"array"}}` (every listed field required, of that type) or a full JSON
//! Schema. Publishes to a channel whose domain has a schema must be JSON documents
//! that pass it; a failure names the field.

use crate::config::Config;
use crate::names::{Channel, DomainName};
use crate::policy::{Effective, Policy};
use crate::store::{self, now_ms, Store};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// The domain every channel is in unless placed elsewhere.
pub const DEFAULT_DOMAIN: &str = "default";

/// A domain failure.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Store failure.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// No such domain.
    #[error("no domain {0}")]
    NotFound(String),
    /// Exists already.
    #[error("domain {0} already exists")]
    Exists(String),
    /// A bad schema or policy.
    #[error("{0}")]
    Invalid(String),
}

/// A domain as declared (config file or API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// Name.
    pub name: String,
    /// GoRTMS shorthand or JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Default policy of its channels.
    #[serde(default)]
    pub policy: Policy,
}

/// A channel's settings as declared (config file or API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Channel name.
    pub name: String,
    /// Its domain (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Its own policy.
    #[serde(default)]
    pub policy: Policy,
}

struct Domain {
    schema: Option<Value>,
    validator: Option<Arc<jsonschema::Validator>>,
    policy: Policy,
    created_at: i64,
}

#[derive(Default)]
struct State {
    domains: BTreeMap<String, Domain>,
    /// Channel → (domain, own policy).
    channels: HashMap<String, (Option<String>, Policy)>,
}

/// Handle to the domains and channel settings. Cheap to clone.
#[derive(Clone)]
pub struct Domains {
    store: Store,
    config: Arc<Config>,
    state: Arc<RwLock<State>>,
}

/// Turns GoRTMS's shorthand into JSON Schema; full schemas pass through.
pub fn normalize_schema(schema: &Value) -> Result<Value, String> {
    let Some(obj) = schema.as_object() else {
        return Err("schema must be a JSON object".into());
    };
    let shorthand = obj.len() == 1 && obj.get("fields").is_some_and(Value::is_object);
    if !shorthand {
        return Ok(schema.clone());
    }
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, ty) in obj["fields"].as_object().into_iter().flatten() {
        let t = ty.as_str().unwrap_or_default();
        if !["string", "number", "boolean", "object", "array"].contains(&t) {
            return Err(format!(
                "field {name:?}: type must be string, number, boolean, object or array, not {ty}"
            ));
        }
        properties.insert(name.clone(), json!({"type": t}));
        required.push(Value::String(name.clone()));
    }
    Ok(json!({"type": "object", "properties": properties, "required": required}))
}

fn compile(schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
    let full = normalize_schema(schema)?;
    jsonschema::validator_for(&full)
        .map(Arc::new)
        .map_err(|e| format!("invalid schema: {e}"))
}

impl Domains {
    /// Loads what the store holds, then applies the configuration file's declarations
    /// (which win, and are written back so that the API shows them).
    pub async fn load(store: Store, config: Arc<Config>) -> Result<Domains, DomainError> {
        let d = Domains {
            store,
            config: config.clone(),
            state: Arc::new(RwLock::new(State::default())),
        };
        for spec in &config.domains {
            match d.create(spec.clone()).await {
                Ok(()) | Err(DomainError::Exists(_)) => d.replace(spec.clone()).await?,
                Err(e) => return Err(e),
            }
        }
        let (domains, channels) = d
            .store
            .reads
            .read(|c| {
                let domains: Vec<(String, Option<String>, String, i64)> = c
                    .prepare("SELECT name, schema, policy, created_at FROM domains")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<_, _>>()?;
                let channels: Vec<(String, Option<String>, String)> = c
                    .prepare("SELECT channel, domain, policy FROM channel_settings")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                Ok((domains, channels))
            })
            .await?;
        {
            let mut st = d.write();
            for (name, schema, policy, created_at) in domains {
                let schema: Option<Value> = schema.and_then(|s| serde_json::from_str(&s).ok());
                let validator = match &schema {
                    Some(s) => compile(s).ok(),
                    None => None,
                };
                st.domains.insert(
                    name,
                    Domain {
                        schema,
                        validator,
                        policy: serde_json::from_str(&policy).unwrap_or_default(),
                        created_at,
                    },
                );
            }
            for (ch, domain, policy) in channels {
                st.channels.insert(
                    ch,
                    (domain, serde_json::from_str(&policy).unwrap_or_default()),
                );
            }
        }
        for c in &config.channels {
            let ch =
                Channel::new(c.name.clone()).map_err(|e| DomainError::Invalid(e.to_string()))?;
            let domain = c
                .domain
                .as_deref()
                .map(|s| DomainName::new(s).map_err(|e| DomainError::Invalid(e.to_string())))
                .transpose()?;
            d.set_channel(&ch, domain.as_ref(), c.policy.clone())
                .await?;
        }
        Ok(d)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        match self.state.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        match self.state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn check(spec: &DomainSpec) -> Result<Option<Arc<jsonschema::Validator>>, DomainError> {
        DomainName::new(spec.name.clone()).map_err(|e| DomainError::Invalid(e.to_string()))?;
        spec.policy
            .validate()
            .map_err(|e| DomainError::Invalid(format!("policy: {e}")))?;
        spec.schema
            .as_ref()
            .map(compile)
            .transpose()
            .map_err(DomainError::Invalid)
    }

    /// Creates a domain.
    pub async fn create(&self, spec: DomainSpec) -> Result<(), DomainError> {
        if spec.name == DEFAULT_DOMAIN {
            return Err(DomainError::Exists(spec.name));
        }
        let validator = Self::check(&spec)?;
        let (name, schema, policy) = (
            spec.name.clone(),
            spec.schema.as_ref().map(Value::to_string),
            serde_json::to_string(&spec.policy).unwrap_or_else(|_| "{}".into()),
        );
        let now = now_ms();
        let created = self
            .store
            .writer
            .run(move |c| {
                Ok(c.prepare_cached(
                    "INSERT INTO domains(name, schema, policy, created_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![name, schema, policy, now])?
                    == 1)
            })
            .await?;
        if !created {
            return Err(DomainError::Exists(spec.name));
        }
        self.write().domains.insert(
            spec.name,
            Domain {
                schema: spec.schema,
                validator,
                policy: spec.policy,
                created_at: now,
            },
        );
        Ok(())
    }

    /// Replaces a domain's schema and policy.
    pub async fn replace(&self, spec: DomainSpec) -> Result<(), DomainError> {
        if spec.name == DEFAULT_DOMAIN {
            return Err(DomainError::Invalid(
                "the default domain has no schema or policy; set them per channel".into(),
            ));
        }
        let validator = Self::check(&spec)?;
        let (name, schema, policy) = (
            spec.name.clone(),
            spec.schema.as_ref().map(Value::to_string),
            serde_json::to_string(&spec.policy).unwrap_or_else(|_| "{}".into()),
        );
        let created_at = self
            .store
            .writer
            .run(move |c| {
                c.prepare_cached("UPDATE domains SET schema = ?, policy = ? WHERE name = ?")?
                    .execute(params![schema, policy, name])?;
                Ok(
                    c.prepare_cached("SELECT created_at FROM domains WHERE name = ?")?
                        .query_row([&name], |r| r.get::<_, i64>(0))
                        .optional()?,
                )
            })
            .await?
            .ok_or_else(|| DomainError::NotFound(spec.name.clone()))?;
        self.write().domains.insert(
            spec.name,
            Domain {
                schema: spec.schema,
                validator,
                policy: spec.policy,
                created_at,
            },
        );
        Ok(())
    }

    /// Deletes a domain; its channels go back to `default`.
    pub async fn delete(&self, name: &DomainName) -> Result<(), DomainError> {
        let n = name.to_string();
        let deleted = self
            .store
            .writer
            .run(move |c| {
                c.prepare_cached("UPDATE channel_settings SET domain = NULL WHERE domain = ?")?
                    .execute([&n])?;
                Ok(c.prepare_cached("DELETE FROM domains WHERE name = ?")?
                    .execute([&n])?
                    == 1)
            })
            .await?;
        if !deleted {
            return Err(DomainError::NotFound(name.to_string()));
        }
        let mut st = self.write();
        st.domains.remove(name.as_str());
        for (d, _) in st.channels.values_mut() {
            if d.as_deref() == Some(name.as_str()) {
                *d = None;
            }
        }
        Ok(())
    }

    /// Whether a domain exists (`default` always does).
    pub fn exists(&self, name: &str) -> bool {
        name == DEFAULT_DOMAIN || self.read().domains.contains_key(name)
    }

    /// A domain as the API shows it.
    pub fn get(&self, name: &str) -> Option<Value> {
        let st = self.read();
        let channels: Vec<&String> = st
            .channels
            .iter()
            .filter(|(_, (d, _))| d.as_deref().unwrap_or(DEFAULT_DOMAIN) == name)
            .map(|(c, _)| c)
            .collect();
        let mut channels: Vec<String> = channels.into_iter().cloned().collect();
        channels.sort();
        if name == DEFAULT_DOMAIN {
            return Some(json!({"name": name, "schema": null, "policy": {}, "channels": channels}));
        }
        st.domains.get(name).map(|d| {
            json!({
                "name": name, "schema": d.schema, "policy": d.policy,
                "channels": channels, "created_at": d.created_at,
            })
        })
    }

    /// Every domain's name, `default` first.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(DEFAULT_DOMAIN.to_string())
            .chain(self.read().domains.keys().cloned())
            .collect()
    }

    /// The domain a channel is in.
    pub fn domain_of(&self, channel: &Channel) -> String {
        self.read()
            .channels
            .get(channel.as_str())
            .and_then(|(d, _)| d.clone())
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_string())
    }

    /// Places a channel in a domain (None: `default`) with its own policy.
    pub async fn set_channel(
        &self,
        channel: &Channel,
        domain: Option<&DomainName>,
        policy: Policy,
    ) -> Result<(), DomainError> {
        policy
            .validate()
            .map_err(|e| DomainError::Invalid(format!("policy: {e}")))?;
        let domain = domain
            .map(|d| d.to_string())
            .filter(|d| d != DEFAULT_DOMAIN);
        if let Some(d) = &domain {
            if !self.exists(d) {
                return Err(DomainError::NotFound(d.clone()));
            }
        }
        let (c, d, p) = (
            channel.to_string(),
            domain.clone(),
            serde_json::to_string(&policy).unwrap_or_else(|_| "{}".into()),
        );
        self.store
            .writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO channel_settings(channel, domain, policy) VALUES (?, ?, ?)
                     ON CONFLICT(channel) DO UPDATE SET domain = excluded.domain, policy = excluded.policy",
                )?
                .execute(params![c, d, p])?;
                Ok(())
            })
            .await?;
        self.write()
            .channels
            .insert(channel.to_string(), (domain, policy));
        Ok(())
    }

    /// A channel's own policy.
    pub fn channel_policy(&self, channel: &Channel) -> Policy {
        self.read()
            .channels
            .get(channel.as_str())
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    /// The policy in force for a channel: its own, over its domain's, over the
    /// configuration file's.
    pub fn effective(&self, channel: &Channel) -> Effective {
        let st = self.read();
        let (domain, own) = st
            .channels
            .get(channel.as_str())
            .cloned()
            .unwrap_or_default();
        let base = domain
            .and_then(|d| st.domains.get(&d).map(|d| d.policy.clone()))
            .unwrap_or_default();
        own.over(&base).resolve(&self.config.delivery)
    }

    /// Checks a payload against the channel's domain schema. Err names the problem
    /// (the failing field first).
    pub fn validate(
        &self,
        channel: &Channel,
        content_type: &str,
        payload: &[u8],
    ) -> Result<(), String> {
        let validator = {
            let st = self.read();
            let Some(Some(domain)) = st.channels.get(channel.as_str()).map(|(d, _)| d.clone())
            else {
                return Ok(());
            };
            match st.domains.get(&domain).and_then(|d| d.validator.clone()) {
                Some(v) => v,
                None => return Ok(()),
            }
        };
        if !content_type.starts_with("application/json") {
            return Err(format!(
                "channel {channel} has a schema: publish JSON with Content-Type application/json"
            ));
        }
        let doc: Value =
            serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                let field = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                format!("field {field}: {e}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("schema validation failed: {}", errors.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_shorthand_then_every_field_is_required_with_its_type() {
        let s = normalize_schema(&json!({"fields": {"name": "string", "age": "number"}})).unwrap();
        let v = jsonschema::validator_for(&s).unwrap();
        assert!(v.is_valid(&json!({"name": "x", "age": 3})));
        assert!(!v.is_valid(&json!({"name": "x"})));
        assert!(!v.is_valid(&json!({"name": 1, "age": 3})));
        assert!(normalize_schema(&json!({"fields": {"a": "date"}})).is_err());
        // A full schema that happens to have other keys passes through.
        let full = json!({"type": "object", "properties": {"fields": {"type": "object"}}});
        assert_eq!(normalize_schema(&full).unwrap(), full);
    }
}
