//! The route table: one list that builds both the router and the OpenAPI 3 document
//! served at `/v1/openapi.json`, so that the document cannot drift from the routes.

use super::{auth, cluster, dead, domains, groups, health, messages, mgmt, observe, ws, AppState};
use axum::routing::{delete, get, post, put, MethodRouter};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One operation: its method, path, documentation and handler.
pub struct Route {
    /// `get`, `post`, `put` or `delete`.
    pub method: &'static str,
    /// Path with `{param}` segments.
    pub path: &'static str,
    /// Tag (group in the document).
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// Request body: content type and an example.
    pub body: Option<(&'static str, Value)>,
    /// Success status and what it returns.
    pub ok: (u16, &'static str),
    /// Content type of the success answer.
    pub ok_type: &'static str,
    /// Error statuses a client may get (besides 503 when the store is unavailable).
    pub errors: &'static [u16],
    /// The handler.
    pub handler: MethodRouter<Arc<AppState>>,
}

fn r(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    handler: MethodRouter<Arc<AppState>>,
) -> Route {
    Route {
        method,
        path,
        tag,
        summary,
        query: &[],
        body: None,
        ok: (200, "OK"),
        ok_type: "application/json",
        errors: &[400],
        handler,
    }
}

impl Route {
    fn query(mut self, q: &'static [(&'static str, &'static str)]) -> Route {
        self.query = q;
        self
    }
    fn json(mut self, example: Value) -> Route {
        self.body = Some(("application/json", example));
        self
    }
    fn body(mut self, content_type: &'static str, example: Value) -> Route {
        self.body = Some((content_type, example));
        self
    }
    fn ok(mut self, status: u16, what: &'static str) -> Route {
        self.ok = (status, what);
        self
    }
    fn text(mut self) -> Route {
        self.ok_type = "text/plain";
        self
    }
    fn errors(mut self, e: &'static [u16]) -> Route {
        self.errors = e;
        self
    }
}

/// Every route of the API.
pub fn routes() -> Vec<Route> {
    vec![
        r("get", "/healthz", "observe", "Node id, NATS connection state and why it is not connected", get(health::healthz)).errors(&[]),
        r("get", "/livez", "observe", "Liveness: the process answers", get(health::livez)).errors(&[]),
        r("get", "/readyz", "observe", "Readiness: store writable, NATS connected, discovery done (503 naming what is not)", get(health::readyz)).errors(&[]),
        r("get", "/metrics", "observe", "Prometheus text format 0.0.4 (rmds_ prefix), every metric with HELP and TYPE", get(observe::metrics)).text().errors(&[]),
        r("get", "/v1/stats", "observe", "Counters with RMDS's keys and more; with period (and granularity) also `series`: their history in buckets", get(observe::stats))
            .query(&[("period", "length of the history, e.g. 1h (at most stats.retention); without it only the counters"), ("granularity", "bucket width, e.g. 1m (default: period/60, at least stats.sample_interval); at most 1440 buckets")]),
        r("get", "/v1/resources/current", "observe", "CPU, memory, open files, database and WAL size, disk free, read now", get(observe::resources_current)).errors(&[]),
        r("get", "/v1/resources/history", "observe", "The newest resource samples of the stats ring (bounded by stats.retention), oldest first", get(observe::resources_history))
            .query(&[("limit", "most samples, 1 to 10000 (default 60)")]),
        r("get", "/v1/openapi.json", "observe", "This document", get(openapi)).errors(&[]),
        r("get", "/v1/nodes", "cluster", "Known peers with liveness and memberships", get(cluster::nodes)).errors(&[]),
        r("post", "/v1/nodes/{id}/kick", "management", "Kick a node from every channel, on every agent (answers per node)", post(mgmt::kick))
            .query(&[("wait", "how long to gather answers, default 3s")])
            .errors(&[400]),
        r("post", "/v1/nodes/{id}/channels/{ch}/kick", "management", "Kick a node from one channel, on every agent (answers per node)", post(mgmt::kick_channel))
            .query(&[("wait", "how long to gather answers, default 3s")])
            .errors(&[400]),
        r("post", "/v1/purge", "management", "Purge outboxes: queued (dropped on purpose, receipts say purged), sent (records of delivered messages), or all; on this node, one node or all", post(mgmt::purge))
            .query(&[("wait", "how long to gather answers, default 3s")])
            .json(json!({"what": "queued", "scope": "self"}))
            .errors(&[400]),
        r("get", "/v1/audit", "management", "Management commands this node applied, newest first", get(mgmt::audit))
            .query(&[("limit", "most rows, default 100")])
            .errors(&[400]),
        r("post", "/v1/auth/bootstrap", "auth", "Create the first user, an admin (only while no user exists)", post(auth::bootstrap))
            .json(json!({"username": "admin", "password": "change-me-now"}))
            .ok(201, "Created")
            .errors(&[400, 409]),
        r("post", "/v1/auth/login", "auth", "Log in: a JWT access token and a refresh token", post(auth::login))
            .json(json!({"username": "admin", "password": "change-me-now"}))
            .errors(&[400, 401]),
        r("post", "/v1/auth/refresh", "auth", "New tokens for a refresh token", post(auth::refresh))
            .json(json!({"refresh_token": "eyJ..."}))
            .errors(&[400, 401]),
        r("get", "/v1/auth/whoami", "auth", "The principal of this request", get(auth::whoami)).errors(&[]),
        r("get", "/v1/auth/users", "auth", "Users (never their passwords)", get(auth::users)).errors(&[]),
        r("post", "/v1/auth/users", "auth", "Create a user", post(auth::add_user))
            .json(json!({"username": "ann", "password": "a long password", "role": "consumer", "grants": [{"channel": "orders*", "actions": ["consume"]}]}))
            .ok(201, "Created")
            .errors(&[400, 409]),
        r("delete", "/v1/auth/users/{id}", "auth", "Delete a user", delete(auth::delete_user)).ok(204, "Deleted").errors(&[404]),
        r("get", "/v1/auth/keys", "auth", "API keys (never the keys)", get(auth::keys)).errors(&[]),
        r("post", "/v1/auth/keys", "auth", "Create an API key; the key is in this answer only", post(auth::add_key))
            .json(json!({"name": "billing", "role": "publisher"}))
            .ok(201, "Created")
            .errors(&[400]),
        r("delete", "/v1/auth/keys/{id}", "auth", "Delete an API key", delete(auth::delete_key)).ok(204, "Deleted").errors(&[404]),
        r("get", "/v1/auth/service-accounts", "auth", "HMAC service accounts (never the secrets)", get(auth::services)).errors(&[]),
        r("post", "/v1/auth/service-accounts", "auth", "Create an HMAC service account; the secret is in this answer only", post(auth::add_service))
            .json(json!({"name": "etl", "role": "consumer"}))
            .ok(201, "Created")
            .errors(&[400]),
        r("delete", "/v1/auth/service-accounts/{id}", "auth", "Delete a service account", delete(auth::delete_service)).ok(204, "Deleted").errors(&[404]),
        r("get", "/v1/topology", "cluster", "Nodes and channels as a graph", get(cluster::topology)).errors(&[]),
        r("get", "/v1/channels", "cluster", "Channels known on the bus, with this node's role", get(cluster::channels)).errors(&[]),
        r("put", "/v1/channels/{ch}", "channels", "Join a channel (idempotent)", put(cluster::join))
            .json(json!({"role": "rw"})),
        r("delete", "/v1/channels/{ch}", "channels", "Leave a channel", delete(cluster::leave)).ok(200, "Left").errors(&[400, 404]),
        r("get", "/v1/channels/{ch}", "channels", "A channel's members", get(cluster::channel)).errors(&[400, 404]),
        r("get", "/v1/channels/{ch}/subscribers", "channels", "Reader nodes of a channel", get(cluster::subscribers)).errors(&[400]),
        r("get", "/v1/channels/{ch}/policy", "channels", "A channel's own policy, its domain and the effective policy", get(domains::get_policy)),
        r("put", "/v1/channels/{ch}/policy", "channels", "Set a channel's own policy", put(domains::put_policy))
            .json(json!({"ttl": "1h", "overflow": "reject", "retry": {"max_attempts": 10}})),
        r("post", "/v1/channels/{ch}/messages", "messages", "Publish the body as one message (durable before 201)", post(messages::publish))
            .query(&[("ttl", "time to live, e.g. 30s")])
            .body("application/json", json!({"text": "hello"}))
            .ok(201, "Stored: id and receivers")
            .errors(&[400, 403, 409, 413, 429]),
        r("post", "/v1/channels/{ch}/messages:batch", "messages", "Publish a JSON array or NDJSON of payloads; per-item results", post(messages::publish_batch))
            .query(&[("ttl", "time to live of every item")])
            .json(json!([{"n": 1}, {"n": 2}]))
            .ok(201, "Every item stored (207 when some failed)")
            .errors(&[400, 403, 409, 413]),
        r("get", "/v1/channels/{ch}/messages", "messages", "Pull through a consumer group with long polling; each message is leased", get(messages::pull))
            .query(&[("group", "consumer group (default: default)"), ("max", "most messages"), ("wait", "longest wait, e.g. 5s"), ("consumer", "consumer name")])
            .errors(&[400, 403, 404]),
        r("post", "/v1/channels/{ch}/acks", "messages", "Acknowledge leased messages", post(messages::ack))
            .json(json!({"group": "default", "ids": ["01M8ZZZZZZZZZZZZZZZZZZZZZZ"]}))
            .errors(&[400, 403, 404]),
        r("post", "/v1/channels/{ch}/nacks", "messages", "Give messages back for redelivery after an optional delay", post(messages::nack))
            .json(json!({"group": "default", "ids": ["01M8ZZZZZZZZZZZZZZZZZZZZZZ"], "delay": "5s", "error": "temporarily failed"}))
            .errors(&[400, 403, 404]),
        r("post", "/v1/channels/{ch}/terms", "messages", "Never deliver these messages to the group again", post(messages::term))
            .json(json!({"group": "default", "ids": ["01M8ZZZZZZZZZZZZZZZZZZZZZZ"]}))
            .errors(&[400, 403, 404]),
        r("post", "/v1/channels/{ch}/extends", "messages", "Renew leases for another ack_wait", post(messages::extend))
            .json(json!({"group": "default", "ids": ["01M8ZZZZZZZZZZZZZZZZZZZZZZ"]}))
            .errors(&[400, 403, 404]),
        r("get", "/v1/messages/{id}", "messages", "Per-receiver status at the sender: queued, sent, delivered, consumed, expired, dead, dropped", get(messages::status))
            .errors(&[400, 404]),
        r("get", "/v1/channels/{ch}/groups", "groups", "Consumer groups of a channel", get(groups::list)),
        r("post", "/v1/channels/{ch}/groups", "groups", "Create a consumer group", post(groups::create))
            .json(json!({"name": "workers", "start": "earliest", "ack_wait": "30s", "max_deliveries": 5, "max_in_flight": 0, "idle_ttl": "1d", "backoff": ["1s", "10s"]}))
            .ok(201, "Created")
            .errors(&[400, 403, 409]),
        r("get", "/v1/channels/{ch}/groups/{g}", "groups", "Position, backlog, in-flight, consumers, settings", get(groups::get)).errors(&[400, 404]),
        r("delete", "/v1/channels/{ch}/groups/{g}", "groups", "Delete a group", delete(groups::delete)).ok(204, "Deleted").errors(&[400, 404]),
        r("post", "/v1/channels/{ch}/groups/{g}/reset", "groups", "Move the position (replay)", post(groups::reset))
            .json(json!({"start": "earliest"}))
            .errors(&[400, 404]),
        r("get", "/v1/channels/{ch}/groups/{g}/dead-letters", "groups", "The group's dead-letter queue", get(groups::dead_letters))
            .query(&[("limit", "most rows")])
            .errors(&[400, 404]),
        r("get", "/v1/channels/{ch}/groups/{g}/dead-letters/{id}", "groups", "One dead letter with its message", get(groups::dead_letter)).errors(&[400, 404]),
        r("delete", "/v1/channels/{ch}/groups/{g}/dead-letters/{id}", "groups", "Delete a dead letter", delete(groups::delete_dead_letter)).ok(204, "Deleted").errors(&[400, 404]),
        r("post", "/v1/channels/{ch}/groups/{g}/dead-letters/{id}/redrive", "groups", "Deliver a dead letter again, once", post(groups::redrive)).errors(&[400, 404]),
        r("get", "/v1/dead-letters", "dead letters", "The sender's dead letters", get(dead::list))
            .query(&[("channel", "filter"), ("receiver", "filter"), ("limit", "most rows")]),
        r("get", "/v1/dead-letters/{id}", "dead letters", "A message's dead letters and status", get(dead::get)).errors(&[400, 404]),
        r("delete", "/v1/dead-letters/{id}", "dead letters", "Delete a message's dead letters", delete(dead::delete))
            .query(&[("receiver", "only this receiver's")])
            .ok(204, "Deleted")
            .errors(&[400, 404]),
        r("post", "/v1/dead-letters/{id}/redrive", "dead letters", "Queue a dead message again for the receivers it missed", post(dead::redrive))
            .query(&[("receiver", "only this receiver")])
            .errors(&[400, 404, 409]),
        r("get", "/v1/domains", "domains", "Domains, default first", get(domains::list)).errors(&[]),
        r("post", "/v1/domains", "domains", "Create a domain with an optional schema and default policy", post(domains::create))
            .json(json!({"name": "shop", "schema": {"fields": {"item": "string", "qty": "number"}}, "policy": {"ttl": "1h"}}))
            .ok(201, "Created")
            .errors(&[400, 409]),
        r("get", "/v1/domains/{d}", "domains", "A domain with its channels", get(domains::get)).errors(&[400, 404]),
        r("put", "/v1/domains/{d}", "domains", "Replace a domain's schema and policy", put(domains::replace))
            .json(json!({"schema": {"fields": {"item": "string"}}, "policy": {}}))
            .errors(&[400, 404]),
        r("delete", "/v1/domains/{d}", "domains", "Delete a domain; its channels go back to default", delete(domains::delete)).ok(204, "Deleted").errors(&[400, 404]),
        r("put", "/v1/domains/{d}/channels/{ch}", "domains", "Place a channel in the domain (and join it with a role)", put(domains::place))
            .json(json!({"role": "rw", "policy": {"overflow": "drop_oldest"}}))
            .errors(&[400, 404]),
        r("get", "/v1/domains/{d}/channels/{ch}", "domains", "A channel of the domain with its policies", get(domains::get_channel)).errors(&[400, 404]),
        r("post", "/v1/domains/{d}/channels/{ch}/messages", "domains", "Publish within the domain (schema checked)", post(domains::publish))
            .query(&[("ttl", "time to live")])
            .body("application/json", json!({"item": "tea", "qty": 2}))
            .ok(201, "Stored")
            .errors(&[400, 403, 404, 409, 413, 429]),
        r("post", "/v1/domains/{d}/channels/{ch}/messages:batch", "domains", "Batch publish within the domain", post(domains::publish_batch))
            .json(json!([{"item": "tea", "qty": 2}]))
            .ok(201, "Every item stored (207 when some failed)")
            .errors(&[400, 403, 404, 409, 413]),
        r("get", "/v1/domains/{d}/channels/{ch}/messages", "domains", "Pull within the domain", get(domains::pull))
            .query(&[("group", "consumer group"), ("max", "most messages"), ("wait", "longest wait"), ("consumer", "consumer name")])
            .errors(&[400, 403, 404]),
        r("get", "/v1/ws", "websocket", "WebSocket: publish, subscribe with credit, ack/nack/term/extend, ping (JSON frames with request_id)", get(ws::ws))
            .ok(101, "Switching protocols")
            .errors(&[400, 426]),
        r("get", "/v1/ws/tap", "websocket", "WebSocket live tap of publishes, deliveries and lifecycle events; consumes nothing", get(ws::tap))
            .query(&[("channel", "only this channel"), ("last_n", "replay this many recent events first")])
            .ok(101, "Switching protocols")
            .errors(&[400, 426]),
    ]
}

fn error_text(code: u16) -> &'static str {
    match code {
        400 => "Bad request: invalid name, body, query or value",
        401 => "Unauthorized (api.auth.enabled): no credentials, or invalid, expired or replayed ones",
        403 => "Forbidden: the principal's role or grants, or this node's role, do not allow it, or the cross-site guard refused the Host (forbidden_host) or Origin (forbidden_origin)",
        415 => "A request a web page could send cross-site (text or form body, or a POST without body) without the X-Rmds-Request header (forbidden_content_type)",
        404 => "Not found",
        409 => "Conflict (exists already, expired, or no readers by policy)",
        413 => "Payload too large for the cluster's NATS max payload",
        426 => "Upgrade required: a WebSocket handshake is expected",
        429 => "Back-pressure: a receiver's backlog is full (reject policy)",
        _ => "Error",
    }
}

/// The response schemas of every route (`schemas.json`: `responses` keyed by
/// `"<method> <path>"` and status, shared `components`); checked against a live agent
/// by `scripts/check_schemas.py` and by schemathesis (`scripts/schemathesis.sh`).
fn schemas() -> &'static Value {
    static S: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    S.get_or_init(|| serde_json::from_str(include_str!("schemas.json")).unwrap_or_default())
}

/// The schema of a route's answer with `status`, if the file has one.
fn response_schema(method: &str, path: &str, status: u16) -> Option<Value> {
    let v = &schemas()["responses"][format!("{method} {path}")][status.to_string()];
    (!v.is_null()).then(|| v.clone())
}

/// The OpenAPI 3.0 document of [`routes`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        // The cross-site guard answers every route (403) and state-changing ones (415).
        let changes = matches!(route.method, "post" | "put" | "patch" | "delete");
        let guard: &[u16] = if changes { &[403, 415] } else { &[403] };
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.split('}').next()))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .chain(route.query.iter().map(|(name, d)| {
                json!({"name": name, "in": "query", "required": false, "description": d, "schema": {"type": "string"}})
            }))
            .chain(changes.then(|| json!({"name": "X-Rmds-Request", "in": "header", "required": false,
                "description": "any value: marks a program's request; needed for text or form bodies and bodiless POSTs",
                "schema": {"type": "string"}})))
            .collect();
        let mut responses = Map::new();
        let (ok, what) = route.ok;
        responses.insert(
            ok.to_string(),
            if ok == 204 || ok == 101 {
                json!({"description": what})
            } else {
                json!({"description": what, "content": {route.ok_type: {
                    "schema": response_schema(route.method, route.path, ok).unwrap_or_else(|| json!({}))
                }}})
            },
        );
        // Other answers with a body of their own (a duplicate publish, a partial
        // batch, readiness refused) come from the schema file.
        if let Some(extra) =
            schemas()["responses"][format!("{} {}", route.method, route.path)].as_object()
        {
            for (status, schema) in extra {
                if *status != ok.to_string() {
                    let what = match status.as_str() {
                        "200" => "Already stored under this idempotency key: that message",
                        "207" => "Some items refused: per-item results",
                        "503" => "Not ready: the failing checks",
                        _ => "See the schema",
                    };
                    responses.insert(status.clone(), json!({"description": what, "content": {"application/json": {"schema": schema}}}));
                }
            }
        }
        let err_ref = json!({"$ref": "#/components/schemas/Error"});
        let access = crate::auth::route_access(route.method, route.path);
        let public = access == crate::auth::Action::Public;
        // With api.auth.enabled, every route but the public ones answers 401 without
        // valid credentials and 403 when the principal lacks the right.
        let auth_codes: &[u16] = if public { &[] } else { &[401, 403] };
        for &e in route
            .errors
            .iter()
            .chain(guard)
            .chain(auth_codes)
            .chain([503u16].iter())
        {
            if responses.contains_key(&e.to_string()) {
                continue;
            }
            responses.insert(
                e.to_string(),
                json!({"description": if e == 503 { "Store or agent unavailable" } else { error_text(e) },
                       "content": {"application/json": {"schema": err_ref}}}),
            );
        }
        let mut op = json!({
            "tags": [route.tag],
            "summary": route.summary,
            "operationId": format!("{}_{}", route.method, route.path.trim_matches('/').replace(['/', '{', '}', ':', '.', '-'], "_")),
            "parameters": params,
            "responses": responses,
        });
        op["x-rmds-access"] = json!(access);
        if public {
            op["security"] = json!([]);
        }
        if let Some((ct, example)) = &route.body {
            op["requestBody"] =
                json!({"required": true, "content": {*ct: {"schema": {}, "example": example}}});
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rmds-agent local API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Reliable message delivery: the API an application uses on its own node. Every error is {\"error\":{\"code\",\"message\"}}."
        },
        "paths": paths,
        "security": [{"apiKey": []}, {"bearerToken": []}, {"serviceSignature": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "An API key (POST /v1/auth/keys), also accepted as Authorization: Bearer"},
                "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A JWT access token from POST /v1/auth/login (or an API key)"},
                "serviceSignature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                    "description": "A service account's HMAC-SHA256 (hex) over METHOD, PATH?QUERY, X-Timestamp, X-Nonce and the hex SHA-256 of the body, one per line; with X-Service-ID, X-Timestamp (seconds) and X-Nonce"}
            },
            "schemas": component_schemas(),
        }
    })
}

fn component_schemas() -> Value {
    let mut c = schemas()["components"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    c.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}
            }}}
        }),
    );
    Value::Object(c)
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> axum::Json<Value> {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    axum::Json(DOC.get_or_init(document).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_route_table_then_every_answer_with_a_body_has_a_schema() {
        let missing: Vec<String> = routes()
            .iter()
            .filter(|r| !matches!(r.ok.0, 101 | 204))
            .filter(|r| response_schema(r.method, r.path, r.ok.0).is_none())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(missing.is_empty(), "no response schema for {missing:?}");
    }

    #[test]
    fn given_the_document_then_every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let comps = doc["components"]["schemas"].as_object().unwrap();
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(comps.contains_key(name), "unresolved $ref {name}");
        }
    }
}
