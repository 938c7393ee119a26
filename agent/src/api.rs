//! The local HTTP API (axum): applications, management and observability.
//!
//! Every error is `{"error":{"code","message"}}` with a 4xx for client mistakes; 4xx
//! answers are counted in `rmds_api_client_errors_total`. Handlers validate names
//! first, then call the components; they never touch SQL or NATS directly.

mod cluster;
mod dead;
mod domains;
mod error;
mod groups;
mod messages;
mod ws;

pub use error::ApiError;

use crate::delivery::Delivery;
use crate::discovery::Discovery;
use crate::groups::Groups;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::transport::Transport;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<crate::config::Config>,
    /// Store.
    pub store: Store,
    /// Peers and memberships.
    pub discovery: Discovery,
    /// Sending side.
    pub delivery: Delivery,
    /// Consumer groups.
    pub groups: Groups,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// NATS.
    pub transport: Transport,
    /// Domains, schemas and channel policies.
    pub domains: crate::domains::Domains,
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
    Router::new()
        .route("/healthz", get(cluster::healthz))
        .route("/metrics", get(cluster::metrics))
        .route("/v1/stats", get(cluster::stats))
        .route("/v1/nodes", get(cluster::nodes))
        .route("/v1/topology", get(cluster::topology))
        .route("/v1/channels", get(cluster::channels))
        .route(
            "/v1/channels/{ch}",
            put(cluster::join)
                .delete(cluster::leave)
                .get(cluster::channel),
        )
        .route("/v1/channels/{ch}/subscribers", get(cluster::subscribers))
        .route(
            "/v1/channels/{ch}/messages",
            post(messages::publish).get(messages::pull),
        )
        .route(
            "/v1/channels/{ch}/messages:batch",
            post(messages::publish_batch),
        )
        .route("/v1/channels/{ch}/acks", post(messages::ack))
        .route("/v1/channels/{ch}/nacks", post(messages::nack))
        .route("/v1/channels/{ch}/terms", post(messages::term))
        .route("/v1/channels/{ch}/extends", post(messages::extend))
        .route(
            "/v1/channels/{ch}/groups",
            get(groups::list).post(groups::create),
        )
        .route(
            "/v1/channels/{ch}/groups/{g}",
            get(groups::get).delete(groups::delete),
        )
        .route("/v1/channels/{ch}/groups/{g}/reset", post(groups::reset))
        .route(
            "/v1/channels/{ch}/groups/{g}/dead-letters",
            get(groups::dead_letters),
        )
        .route(
            "/v1/channels/{ch}/groups/{g}/dead-letters/{id}",
            get(groups::dead_letter).delete(groups::delete_dead_letter),
        )
        .route(
            "/v1/channels/{ch}/groups/{g}/dead-letters/{id}/redrive",
            post(groups::redrive),
        )
        .route("/v1/messages/{id}", get(messages::status))
        .route("/v1/domains", get(domains::list).post(domains::create))
        .route(
            "/v1/domains/{d}",
            get(domains::get)
                .put(domains::replace)
                .delete(domains::delete),
        )
        .route(
            "/v1/domains/{d}/channels/{ch}",
            put(domains::place).get(domains::get_channel),
        )
        .route(
            "/v1/domains/{d}/channels/{ch}/messages",
            post(domains::publish).get(domains::pull),
        )
        .route(
            "/v1/domains/{d}/channels/{ch}/messages:batch",
            post(domains::publish_batch),
        )
        .route(
            "/v1/channels/{ch}/policy",
            get(domains::get_policy).put(domains::put_policy),
        )
        .route("/v1/ws", get(ws::ws))
        .route("/v1/ws/tap", get(ws::tap))
        .route("/v1/dead-letters", get(dead::list))
        .route("/v1/dead-letters/{id}", get(dead::get).delete(dead::delete))
        .route("/v1/dead-letters/{id}/redrive", post(dead::redrive))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .with_state(state)
}
