//! The cross-site guard: one middleware in front of every route that refuses what a
//! web page could do to the agent from the user's browser.
//!
//! - `Host` must be a name the agent answers to (DNS rebinding): `localhost`, a
//!   loopback address, the listen address (any IP address when listening on
//!   `0.0.0.0`/`::`), or a name in `[api] allowed_hosts`. The port is not compared
//!   (port mappings change it). Requests without `Host` (HTTP/1.0) pass: browsers
//!   always send it.
//! - `Origin`, when present, must be the agent's own (`http://` + the `Host` asked
//!   for) or in `[api] allowed_origins`. Requests without `Origin` (curl, the SDK,
//!   local programs) pass. This covers the WebSocket upgrades, which browsers send
//!   cross-site with no preflight.
//! - A POST, PUT, PATCH or DELETE must not look like a browser's "simple request":
//!   it carries `X-Rmds-Request` (any value), or a Content-Type other than
//!   `text/plain`, `application/x-www-form-urlencoded` and `multipart/form-data`. A
//!   POST without Content-Type needs the header too; a PUT, PATCH or DELETE without a
//!   body passes (a browser never sends those cross-site without a preflight, which
//!   the agent does not grant).
//!
//! The decision is the pure [`decide`]; the middleware only gathers the headers,
//! counts refusals (`rmds_api_refused_total{reason}`) and answers with the error.
//! What it does not do: authenticate anyone. Any local program can use the API.

use super::ApiError;
use crate::config::api::{host_name, normalize_origin};
use crate::metrics::Metrics;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;

/// The header that marks a request as coming from a program, not a web page (a
/// browser cannot add it cross-site without a preflight).
pub const MARKER: &str = "x-rmds-request";

/// Content types a browser sends cross-site without asking first (CORS-safelisted).
const SIMPLE_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// What the guard allows, built once from the configuration.
#[derive(Debug, Clone)]
pub struct GuardPolicy {
    /// Normalized origins (`scheme://host[:port]`, lowercase, default port dropped).
    origins: Vec<String>,
    /// Extra host names, lowercase, without port.
    hosts: Vec<String>,
    /// The listen IP: an unspecified one admits every IP address as `Host`.
    listen: IpAddr,
}

impl GuardPolicy {
    /// Builds the policy from already validated configuration values; entries that do
    /// not normalize are left out.
    pub fn new(origins: &[String], hosts: &[String], listen: IpAddr) -> GuardPolicy {
        GuardPolicy {
            origins: origins.iter().filter_map(|o| normalize_origin(o)).collect(),
            hosts: hosts.iter().filter_map(|h| host_name(h)).collect(),
            listen,
        }
    }

    fn host_allowed(&self, name: &str) -> bool {
        if name == "localhost" || self.hosts.iter().any(|h| h == name) {
            return true;
        }
        let ip = name
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(name)
            .parse::<IpAddr>();
        match ip {
            Ok(ip) => ip.is_loopback() || ip == self.listen || self.listen.is_unspecified(),
            Err(_) => false,
        }
    }
}

/// The request as the guard sees it.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Method.
    pub method: &'a Method,
    /// `Host` (or the URI authority); `None` when absent.
    pub host: Option<&'a str>,
    /// `Origin`; `None` when absent.
    pub origin: Option<&'a str>,
    /// `Content-Type`; `None` when absent.
    pub content_type: Option<&'a str>,
    /// Whether `X-Rmds-Request` is present.
    pub marked: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` is not a name the agent answers to.
    Host,
    /// `Origin` is foreign.
    Origin,
    /// A state-changing request a web page could send without a preflight.
    ContentType,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::ContentType => "content_type",
        }
    }

    fn error(self, f: &Facts<'_>) -> ApiError {
        match self {
            Refusal::Host => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!(
                    "Host {:?} is not a name this agent answers to (DNS rebinding protection); \
                     add it to [api] allowed_hosts if it is yours",
                    f.host.unwrap_or_default()
                ),
            ),
            Refusal::Origin => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "requests from the web origin {:?} are refused (cross-site protection); \
                     add it to [api] allowed_origins if it is yours",
                    f.origin.unwrap_or_default()
                ),
            ),
            Refusal::ContentType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "forbidden_content_type",
                format!(
                    "a {} with {} could come from any web page; send JSON \
                     (Content-Type: application/json) or add the header X-Rmds-Request: 1",
                    f.method,
                    match f.content_type {
                        Some(ct) => format!("Content-Type {ct:?}"),
                        None => "no Content-Type".to_string(),
                    }
                ),
            ),
        }
    }
}

/// Whether a request may go on. Checks `Host`, then `Origin`, then the content type.
pub fn decide(p: &GuardPolicy, f: &Facts<'_>) -> Result<(), Refusal> {
    if let Some(h) = f.host {
        let name = host_name(h).ok_or(Refusal::Host)?;
        if !p.host_allowed(&name) {
            return Err(Refusal::Host);
        }
    }
    if let Some(o) = f.origin {
        let origin = normalize_origin(o).ok_or(Refusal::Origin)?;
        let own = f
            .host
            .and_then(|h| normalize_origin(&format!("http://{}", h.trim())));
        if own.as_deref() != Some(origin.as_str()) && !p.origins.contains(&origin) {
            return Err(Refusal::Origin);
        }
    }
    let changes = matches!(
        *f.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if changes && !f.marked {
        match f.content_type {
            Some(ct) => {
                let essence = ct.split(';').next().unwrap_or_default().trim();
                if SIMPLE_TYPES.iter().any(|s| essence.eq_ignore_ascii_case(s)) {
                    return Err(Refusal::ContentType);
                }
            }
            None if *f.method == Method::POST => return Err(Refusal::ContentType),
            None => {}
        }
    }
    Ok(())
}

/// What the middleware needs: the policy and where to count.
#[derive(Clone)]
pub struct Guard {
    /// What is allowed.
    pub policy: Arc<GuardPolicy>,
    /// Refusals are counted here.
    pub metrics: Arc<Metrics>,
}

/// A header as text; one that is not valid UTF-8 becomes a value no check accepts.
fn text(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The middleware: refuses, counts and answers, or passes the request on.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let facts = Facts {
        method: req.method(),
        host: text(h, header::HOST).or(req.uri().authority().map(|a| a.as_str())),
        origin: text(h, header::ORIGIN),
        content_type: text(h, header::CONTENT_TYPE),
        marked: h.contains_key(MARKER),
    };
    match decide(&g.policy, &facts) {
        Ok(()) => next.run(req).await,
        Err(r) => {
            g.metrics.refused(r.reason());
            tracing::debug!(reason = r.reason(), host = ?facts.host, origin = ?facts.origin, "api request refused");
            r.error(&facts).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy::new(
            &[
                "http://dash.example:8080".into(),
                "https://app.example".into(),
            ],
            &["agent.internal".into()],
            "127.0.0.1".parse().unwrap(),
        )
    }

    fn get<'a>(host: Option<&'a str>, origin: Option<&'a str>) -> Facts<'a> {
        Facts {
            method: &Method::GET,
            host,
            origin,
            content_type: None,
            marked: false,
        }
    }

    fn post<'a>(content_type: Option<&'a str>, marked: bool) -> Facts<'a> {
        Facts {
            method: &Method::POST,
            host: Some("127.0.0.1:7700"),
            origin: None,
            content_type,
            marked,
        }
    }

    #[test]
    fn given_local_and_configured_hosts_when_deciding_then_they_pass_with_any_port() {
        let p = policy();
        for host in [
            "localhost",
            "LocalHost:7700",
            "localhost.",
            "127.0.0.1",
            "127.0.0.2:1",
            "[::1]",
            "[::1]:7700",
            "agent.internal:80",
        ] {
            assert_eq!(decide(&p, &get(Some(host), None)), Ok(()), "{host}");
        }
        assert_eq!(decide(&p, &get(None, None)), Ok(()), "no Host (HTTP/1.0)");
    }

    #[test]
    fn given_a_foreign_or_malformed_host_when_deciding_then_it_is_refused() {
        let p = policy();
        for host in [
            "evil.example",
            "evil.example:7700",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]",
            "a b",
            "localhost:x",
            "[::1",
            "\u{fffd}",
            "",
        ] {
            assert_eq!(
                decide(&p, &get(Some(host), None)),
                Err(Refusal::Host),
                "{host:?}"
            );
        }
    }

    #[test]
    fn given_an_unspecified_listen_address_when_deciding_then_ip_hosts_pass_and_names_do_not() {
        let p = GuardPolicy::new(&[], &[], "0.0.0.0".parse().unwrap());
        assert_eq!(decide(&p, &get(Some("172.17.0.2:7700"), None)), Ok(()));
        assert_eq!(
            decide(&p, &get(Some("evil.example"), None)),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn given_origins_when_deciding_then_own_and_allowed_pass_and_others_are_refused() {
        let p = policy();
        let ok = [
            ("127.0.0.1:7700", "http://127.0.0.1:7700"),
            ("localhost", "http://LOCALHOST:80"),
            ("localhost:7700", "http://dash.example:8080"),
            ("localhost:7700", "https://app.example:443"),
        ];
        for (host, origin) in ok {
            assert_eq!(
                decide(&p, &get(Some(host), Some(origin))),
                Ok(()),
                "{origin}"
            );
        }
        let refused = [
            (Some("localhost:7700"), "http://evil.example"),
            (Some("localhost:7700"), "http://localhost:3000"),
            (Some("localhost:7700"), "https://localhost:7700"),
            (Some("localhost:7700"), "http://dash.example"),
            (Some("localhost:7700"), "null"),
            (Some("localhost:7700"), "file://"),
            (None, "http://localhost"),
        ];
        for (host, origin) in refused {
            assert_eq!(
                decide(&p, &get(host, Some(origin))),
                Err(Refusal::Origin),
                "{host:?} {origin}"
            );
        }
    }

    #[test]
    fn given_a_simple_request_shape_when_changing_state_then_it_needs_json_or_the_marker() {
        let p = policy();
        for ct in [
            "text/plain",
            "Text/Plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                decide(&p, &post(Some(ct), false)),
                Err(Refusal::ContentType),
                "{ct}"
            );
            assert_eq!(
                decide(&p, &post(Some(ct), true)),
                Ok(()),
                "{ct} with marker"
            );
        }
        assert_eq!(decide(&p, &post(None, false)), Err(Refusal::ContentType));
        assert_eq!(decide(&p, &post(None, true)), Ok(()));
        for ct in [
            "application/json",
            "application/x-ndjson",
            "application/octet-stream",
            "image/png",
        ] {
            assert_eq!(decide(&p, &post(Some(ct), false)), Ok(()), "{ct}");
        }
    }

    #[test]
    fn given_other_methods_when_deciding_then_only_simple_bodies_are_refused() {
        let p = policy();
        for m in [Method::PUT, Method::DELETE, Method::PATCH] {
            let f = Facts {
                method: &m,
                ..post(None, false)
            };
            assert_eq!(decide(&p, &f), Ok(()), "{m} without body");
            let f = Facts {
                content_type: Some("text/plain"),
                ..f
            };
            assert_eq!(decide(&p, &f), Err(Refusal::ContentType), "{m} text/plain");
        }
        let f = Facts {
            method: &Method::GET,
            ..post(Some("text/plain"), false)
        };
        assert_eq!(
            decide(&p, &f),
            Ok(()),
            "GET is never checked for content type"
        );
    }
}
