//! The local HTTP API (axum): applications, management and observability.
//!
//! Every error is `{"error":{"code","message"}}` with a 4xx for client mistakes; 4xx
//! answers are counted in `rmds_api_client_errors_total`. Handlers validate names
//! first, then call the components; they never touch SQL or NATS directly.
//!
//! Every request first passes the cross-site guard (`guard.rs`): a foreign `Host`,
//! a foreign `Origin` or a state-changing "simple request" is refused before any
//! handler runs.

mod auth;
pub mod authn;
mod batch;
mod cluster;
mod dead;
mod domains;
mod error;
mod groups;
pub mod guard;
mod health;
mod messages;
mod mgmt;
mod observe;
mod render;
pub mod spec;
mod ui;
mod ws;

pub use error::ApiError;
pub use render::message_json;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::sync::Arc;

/// What every handler can reach: the application service and API authentication.
/// Handlers reach the components through the service (`state.store`, …).
#[derive(Clone)]
pub struct AppState {
    /// The application service (and through it every component).
    pub service: crate::service::Service,
    /// API authentication.
    pub auth: Arc<authn::AuthCtx>,
}

impl std::ops::Deref for AppState {
    type Target = crate::service::Service;
    fn deref(&self) -> &crate::service::Service {
        &self.service
    }
}

async fn count_errors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status().is_client_error() {
        state.metrics.api_client_errors.inc();
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see README.md for the API")
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    // Bodies are checked against the NATS max payload by the handlers (413 with a clear
    // message); this outer limit only stops absurd uploads.
    let limit = state.config.nats.max_payload.max(8 * 1024 * 1024) * 4;
    let api = &state.config.api;
    let guard = guard::Guard {
        policy: Arc::new(guard::GuardPolicy::new(
            &api.allowed_origins,
            &api.allowed_hosts,
            state.config.listen.ip(),
        )),
        metrics: state.metrics.clone(),
    };
    // Every route comes from the one table that also writes /v1/openapi.json.
    let mut by_path: std::collections::BTreeMap<&str, axum::routing::MethodRouter<Arc<AppState>>> =
        std::collections::BTreeMap::new();
    for route in spec::routes() {
        let m = by_path.remove(route.path).unwrap_or_default();
        by_path.insert(route.path, m.merge(route.handler));
    }
    let mut router = Router::new();
    for (path, m) in by_path {
        router = router.route(path, m);
    }
    // The dashboard and the API viewer: static pages, not part of the API document.
    use axum::routing::get;
    router = router
        .route("/", get(ui::to_ui))
        .route("/ui", get(ui::to_ui))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .route("/docs", get(ui::to_docs))
        .route("/docs/", get(ui::docs_index))
        .route("/docs/{*path}", get(ui::docs_file));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), authn::authn))
        .layer(middleware::from_fn_with_state(guard, guard::guard))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .with_state(state)
}
