//! # rmds-agent
//!
//! The reliable message delivery agent: one per node, next to its applications.
//! Applications talk to it over HTTP on localhost; agents talk to each other over core
//! NATS; everything accepted is in SQLite before anyone hears "ok".
//!
//! ```text
//! api/         axum REST: app API, management, observability      (api.rs)
//!              behind a cross-site guard (Host, Origin)          (api/guard.rs)
//! groups/      consumer groups: pure lease state + one actor each  (groups.rs)
//! delivery/    one sender per (receiver, channel): window, retries (delivery.rs)
//! inbox        receive: verify, dedupe, commit, then acknowledge   (inbox.rs)
//! discovery/   peers and memberships: hello, keepalive, bye        (discovery.rs)
//! transport    the only code that knows async-nats                 (transport.rs)
//! store/       SQLite: writer thread with group commit, read pool  (store.rs)
//! wire/        frames: rmp-serde, snappy, version, HMAC signature  (wire.rs)
//! config       one Config: file < env < flags, validated first     (config.rs)
//! durations    upper bounds on every duration a person can set   (durations.rs)
//! metrics      every metric name in one place                      (metrics.rs)
//! names        validated node, channel and group names             (names.rs)
//! stats/       sampled history of counters, backlogs, resources    (stats.rs)
//! service/     publish, pull, settle: one service for REST, WS, SDK (service.rs)
//! ```
//!
//! Dependencies point downwards. [`Agent::start`] opens the store, connects NATS in
//! the background, spawns every task and binds the API; [`Agent::shutdown`] stops
//! them in order: API first, then bye, senders, receivers, and finally the store is
//! flushed and checkpointed.

pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod discovery;
pub mod domains;
pub mod durations;
pub mod events;
pub mod groups;
pub mod inbox;
pub mod metrics;
pub mod mgmt;
pub mod names;
pub mod policy;
pub mod receipts;
pub mod service;
pub mod stats;
pub mod store;
pub mod transport;
pub mod wire;

use config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The database could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] store::Error),
    /// NATS options were refused.
    #[error("cannot set up NATS: {0}")]
    Nats(String),
    /// The API address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Declared domains or channel settings could not be applied.
    #[error("cannot apply declared domains and channels: {0}")]
    Domains(String),
    /// A configured channel could not be joined.
    #[error("cannot join configured channels: {0}")]
    Join(String),
}

/// A running agent.
pub struct Agent {
    addr: SocketAddr,
    api_stop: CancellationToken,
    tasks_stop: CancellationToken,
    api_task: tokio::task::JoinHandle<()>,
    tracker: TaskTracker,
    store: store::Store,
    service: service::Service,
}

impl Agent {
    /// Starts every component and binds the API.
    pub async fn start(config: Config) -> Result<Agent, StartError> {
        config.validate()?;
        let me = config.node()?;
        let config = Arc::new(config);
        let store = store::Store::open(&config.data_dir, me.as_str(), &config.store)?;
        let metrics = metrics::Metrics::new();
        let transport =
            transport::Transport::connect(&config.nats, &me, store.boot, metrics.clone())
                .await
                .map_err(|e| StartError::Nats(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (discovery, discovery_task) = discovery::Discovery::new(
            me.clone(),
            store.clone(),
            transport.clone(),
            metrics.clone(),
            config.discovery.clone(),
            addr.to_string(),
        )?;
        let kicked = store.reads.read_now(store::audit::kicked)?;
        for j in &config.join {
            if let Some(k) = &kicked {
                let this = serde_json::json!(j.channel.as_str());
                let all = k["all"].as_bool() == Some(true);
                if all || k["channels"].as_array().is_some_and(|c| c.contains(&this)) {
                    tracing::warn!(channel = %j.channel, by = %k["by"], "kicked: the configured join is skipped until the node joins again through the API (PUT /v1/channels/{{ch}})");
                    continue;
                }
            }
            discovery
                .join(j.channel.clone(), j.role)
                .await
                .map_err(|e| StartError::Join(e.to_string()))?;
        }
        let heads = inbox::LogHeads::default();
        let inbox = inbox::Inbox::new(
            me.clone(),
            store.clone(),
            transport.clone(),
            metrics.clone(),
            heads.clone(),
        );
        let domains = domains::Domains::load(store.clone(), config.clone())
            .await
            .map_err(|e| StartError::Domains(e.to_string()))?;
        let (delivery, delivery_task) = delivery::Delivery::new(
            me.clone(),
            store.clone(),
            transport.clone(),
            discovery.clone(),
            metrics.clone(),
            config.delivery.clone(),
            domains.clone(),
        );
        let groups =
            groups::Groups::new(store.clone(), heads, metrics.clone(), config.groups.clone());
        let tasks_stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mgmt = mgmt::Mgmt::new(
            me.clone(),
            transport.clone(),
            discovery.clone(),
            delivery.clone(),
            store.clone(),
            metrics.clone(),
        );
        tracker.spawn(mgmt.clone().run(tasks_stop.clone()));
        tracker.spawn(discovery_task.run(tasks_stop.clone()));
        tracker.spawn(inbox.run(tasks_stop.clone()));
        tracker.spawn(delivery_task.run(tasks_stop.clone()));
        tracker.spawn(receipts::run(
            me.clone(),
            store.clone(),
            transport.clone(),
            metrics.clone(),
            std::time::Duration::from_millis(500),
            config.delivery.delivered_message_retention,
            tasks_stop.clone(),
        ));
        tracker.spawn(
            groups
                .clone()
                .run_sweeper(config.delivery.sweep_interval, tasks_stop.clone()),
        );
        let stats = stats::Stats::new(config.stats.clone(), &config.data_dir);
        tracker.spawn(stats::run(
            stats.clone(),
            store.clone(),
            metrics.clone(),
            tasks_stop.clone(),
        ));
        tracker.close();

        let jwt_key = store.writer.run(store::auth::jwt_key).await?;
        let auth = Arc::new(api::authn::AuthCtx {
            config: config.api.auth.clone(),
            jwt_key,
            nonces: auth::hmac_req::Nonces::new(100_000),
            admin_key: config.api.auth.admin_key.as_ref().map(|k| {
                use sha2::Digest;
                sha2::Sha256::digest(k.expose().as_bytes()).into()
            }),
            body_limit: config.nats.max_payload.max(8 * 1024 * 1024) * 4,
        });
        let service = service::Service {
            config: config.clone(),
            store: store.clone(),
            discovery,
            delivery,
            groups,
            metrics,
            transport,
            domains,
            mgmt,
            stats,
        };
        let state = api::AppState {
            service: service.clone(),
            auth,
        };
        let api_stop = CancellationToken::new();
        let stop = api_stop.clone();
        let app = api::router(state);
        // Small answers (WebSocket frames, long-poll results) go out at once instead of
        // waiting behind the client's delayed ACK (Nagle).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on an API connection");
            }
        });
        let api_task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "API server failed");
            }
        });
        tracing::info!(node = %me, listen = %addr, epoch = store.epoch, "agent started");
        Ok(Agent {
            addr,
            api_stop,
            tasks_stop,
            api_task,
            tracker,
            store,
            service,
        })
    }

    /// The application service: publish, pull and settle in this process, with the
    /// same rules as the API (the embedded SDK uses it).
    pub fn service(&self) -> &service::Service {
        &self.service
    }

    /// The bound API address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops in order: API, then bye and every task, then flush and checkpoint.
    pub async fn shutdown(self) {
        self.api_stop.cancel();
        // Long polls may hold connections; do not wait for them forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.api_task).await;
        self.tasks_stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.tracker.wait()).await;
        if let Err(e) = self.store.writer.flush().await {
            tracing::warn!(error = %e, "final flush failed");
        }
        if let Err(e) = self.store.reads.checkpoint().await {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        tracing::info!("agent stopped");
    }
}

/// Runs an agent until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let agent = Agent::start(config).await?;
    shutdown.cancelled().await;
    agent.shutdown().await;
    Ok(())
}
