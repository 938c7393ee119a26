//! The only code that knows async-nats: one connection, its state, subjects, publish
//! and subscribe.
//!
//! The connection is opened once and reconnects forever (`retry_on_initial_connect`,
//! no reconnect limit); async-nats re-subscribes by itself after a reconnect, so no
//! second connection is ever opened. A short ping interval notices a dead link in
//! seconds. Publishing while disconnected fails at once instead of queueing inside the
//! client: callers keep their data in SQLite and resend when the state flips back.

mod diagnose;
mod secure;
mod status;

pub use secure::SecureError;

use crate::config::NatsConfig;
use crate::metrics::Metrics;
use crate::names::NodeId;
use crate::wire::{Codec, DecodeError, Packet, Stamp, Stamper};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Not connected to NATS right now.
    #[error("not connected to NATS")]
    NotConnected,
    /// The frame is larger than the server accepts.
    #[error("frame of {0} bytes exceeds NATS max payload {1}")]
    TooLarge(usize, usize),
    /// The client refused or timed out.
    #[error("publish failed: {0}")]
    Failed(String),
}

/// Handle to the NATS connection. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    client: async_nats::Client,
    prefix: Arc<str>,
    codec: Codec,
    state: watch::Receiver<bool>,
    fallback_max_payload: usize,
    metrics: Arc<Metrics>,
    /// Freshness stamps of this boot, shared by every sender of stamped frames.
    stamper: Arc<Stamper>,
    /// Why the last connection attempt failed, until one succeeds.
    status: Arc<status::NatsStatus>,
    /// How this agent authenticates (never the secret).
    auth: &'static str,
}

/// Why the transport could not start (the agent does not start either).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The security settings could not be applied.
    #[error(transparent)]
    Secure(#[from] SecureError),
    /// The client refused the options.
    #[error(transparent)]
    Client(#[from] async_nats::ConnectError),
}

/// Runs a diagnosis of the failed connection on a blocking thread, at most once
/// every 5 s, and shows its finding instead of async-nats's bare kind.
fn diagnose_later(
    kind: String,
    urls: Vec<String>,
    probe: diagnose::TlsProbe,
    status: Arc<status::NatsStatus>,
    last: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
) {
    {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    tokio::task::spawn_blocking(move || {
        let found = urls.iter().find_map(|u| diagnose::diagnose(u, &probe));
        if let Some(reason) = found {
            let reason = format!("{kind}: {reason}");
            if status.refine(&kind, reason.clone()) {
                tracing::warn!(reason = %reason, "cannot connect to NATS; retrying");
            }
        }
    });
}

impl Transport {
    /// Starts the connection in the background; returns at once even if NATS is down.
    /// `boot` is this process's boot counter, already committed to the store.
    pub async fn connect(
        config: &NatsConfig,
        node: &NodeId,
        boot: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Transport, ConnectError> {
        let (state_tx, state) = watch::channel(false);
        let state_tx = Arc::new(state_tx);
        let cb_state = state_tx.clone();
        let cb_metrics = metrics.clone();
        let max_delay = config.reconnect_max_delay;
        let addrs: Vec<async_nats::ServerAddr> =
            config.urls.iter().filter_map(|u| u.parse().ok()).collect();
        let auth = secure::auth_method(config);
        let status = Arc::new(status::NatsStatus::default());
        let cb_status = status.clone();
        let options = secure::apply(config, async_nats::ConnectOptions::new())?;
        let probe = secure::tls_probe(config)?;
        let urls = config.urls.clone();
        let last_diagnosis = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
        let client = options
            .name(format!("rmds-agent/{node}"))
            .ping_interval(config.ping_interval)
            .connection_timeout(Duration::from_secs(2))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .subscription_capacity(256 * 1024)
            .client_capacity(8192)
            .reconnect_delay_callback(move |attempts| {
                let ms = 50u64.saturating_mul(1u64 << attempts.min(10));
                Duration::from_millis(ms).min(max_delay)
            })
            .event_callback(move |event| {
                let state = cb_state.clone();
                let metrics = cb_metrics.clone();
                let status = cb_status.clone();
                let probe = probe.clone();
                let urls = urls.clone();
                let last_diagnosis = last_diagnosis.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            status.connected();
                            tracing::info!("connected to NATS");
                            metrics.nats_connected.set(1);
                            state.send_replace(true);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS");
                            metrics.nats_connected.set(0);
                            metrics.reconnects.inc();
                            state.send_replace(false);
                        }
                        async_nats::Event::ClientError(e) => {
                            metrics.nats_connect_errors.inc();
                            let kind = e.to_string();
                            let reason = status::explain(&kind, auth);
                            if status.failed(&kind, reason.clone()) {
                                tracing::warn!(reason = %reason, "cannot connect to NATS; retrying");
                            }
                            let lower = kind.to_ascii_lowercase();
                            if lower.contains("io error") || lower.contains("tls") {
                                diagnose_later(kind, urls, probe, status, last_diagnosis);
                            }
                        }
                        async_nats::Event::ServerError(e) => {
                            let kind = e.to_string();
                            let reason = status::explain(&kind, auth);
                            if status.failed(&kind, reason.clone()) {
                                tracing::warn!(reason = %reason, "NATS server error");
                            }
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(addrs)
            .await?;
        Ok(Transport {
            client,
            prefix: config.prefix.clone().into(),
            codec: Codec::new(config.cluster_key.as_ref().map(|k| k.expose())),
            state,
            fallback_max_payload: config.max_payload,
            metrics,
            stamper: Arc::new(Stamper::new(boot)),
            status,
            auth,
        })
    }

    /// Why the agent is not connected, when a connection attempt failed and none has
    /// succeeded since.
    pub fn problem(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        self.status.reason()
    }

    /// How this agent authenticates to NATS (`none`, `user_password`, `token`, `nkey`,
    /// `credentials`).
    pub fn auth_method(&self) -> &'static str {
        self.auth
    }

    /// A freshness stamp newer than every one handed out before in this process.
    pub fn stamp(&self) -> Stamp {
        self.stamper.next()
    }

    /// This process's boot counter.
    pub fn boot(&self) -> u64 {
        self.stamper.boot()
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        *self.state.borrow()
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// A receiver that changes whenever the connection goes up or down.
    pub fn watch_state(&self) -> watch::Receiver<bool> {
        let mut r = self.state.clone();
        // Changes from now on: the current state is where the caller starts (a clone of
        // a receiver that never looked would report the first connect as a change, and
        // every new stream would resend its first round at once).
        r.mark_unchanged();
        r
    }

    /// Largest NATS message this agent may publish.
    pub fn max_payload(&self) -> usize {
        match self.client.server_info().max_payload {
            0 => self.fallback_max_payload,
            n => n,
        }
    }

    /// `{p}.node.{id}.data`
    pub fn data_subject(&self, node: &NodeId) -> String {
        format!("{}.node.{node}.data", self.prefix)
    }
    /// `{p}.node.{id}.ack`
    pub fn ack_subject(&self, node: &NodeId) -> String {
        format!("{}.node.{node}.ack", self.prefix)
    }
    /// `{p}.node.{id}.state`: requests for a node's membership pages.
    pub fn state_subject(&self, node: &NodeId) -> String {
        format!("{}.node.{node}.state", self.prefix)
    }
    /// `{p}.node.{id}.mgmt`: management commands for one node.
    pub fn node_mgmt_subject(&self, node: &NodeId) -> String {
        format!("{}.node.{node}.mgmt", self.prefix)
    }
    /// `{p}.mgmt`: management commands for every node.
    pub fn mgmt_subject(&self) -> String {
        format!("{}.mgmt", self.prefix)
    }
    /// `{p}.hello`
    pub fn hello_subject(&self) -> String {
        format!("{}.hello", self.prefix)
    }
    /// `{p}.keepalive`: heard by every node. Writers' periodic keepalives, and every
    /// node's announcement of a membership change.
    pub fn keepalive_subject(&self) -> String {
        format!("{}.keepalive", self.prefix)
    }
    /// `{p}.keepalive.reader`: the periodic keepalives of nodes that write no channel,
    /// heard only by nodes that write one (their senders), so that what a reader-only
    /// node receives does not grow with the number of other readers.
    pub fn reader_keepalive_subject(&self) -> String {
        format!("{}.keepalive.reader", self.prefix)
    }
    /// `{p}.node.{id}.announce`: answers to a node's hello, for it alone.
    pub fn announce_subject(&self, node: &NodeId) -> String {
        format!("{}.node.{node}.announce", self.prefix)
    }
    /// `{p}.bye`
    pub fn bye_subject(&self) -> String {
        format!("{}.bye", self.prefix)
    }

    /// Encodes a packet into a frame (signed when a cluster key is set).
    pub fn encode(&self, packet: &Packet) -> Vec<u8> {
        self.codec.encode(packet)
    }

    /// Decodes a frame, counting what is dropped.
    pub fn decode(&self, frame: &[u8]) -> Result<Packet, DecodeError> {
        let r = self.codec.decode(frame);
        match &r {
            Err(DecodeError::Unsigned | DecodeError::BadSignature) => {
                self.metrics.bad_signatures.inc();
            }
            Err(_) => {
                self.metrics.malformed_frames.inc();
            }
            Ok(_) => {}
        }
        r
    }

    /// Publishes an already encoded frame. Fails at once when disconnected.
    pub async fn publish_frame(&self, subject: String, frame: Vec<u8>) -> Result<(), SendError> {
        if !self.is_connected() {
            return Err(SendError::NotConnected);
        }
        let max = self.max_payload();
        if frame.len() > max {
            return Err(SendError::TooLarge(frame.len(), max));
        }
        match tokio::time::timeout(
            Duration::from_secs(2),
            self.client.publish(subject, Bytes::from(frame)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::Failed(e.to_string())),
            Err(_) => Err(SendError::Failed("publish timed out".into())),
        }
    }

    /// Encodes and publishes a packet.
    pub async fn publish(&self, subject: String, packet: &Packet) -> Result<(), SendError> {
        let frame = self.encode(packet);
        self.publish_frame(subject, frame).await
    }

    /// Sends a packet as a request and decodes the answer (bounded by `timeout`).
    pub async fn request(
        &self,
        subject: String,
        packet: &Packet,
        timeout: Duration,
    ) -> Result<Packet, SendError> {
        if !self.is_connected() {
            return Err(SendError::NotConnected);
        }
        let frame = self.encode(packet);
        let max = self.max_payload();
        if frame.len() > max {
            return Err(SendError::TooLarge(frame.len(), max));
        }
        match tokio::time::timeout(timeout, self.client.request(subject, Bytes::from(frame))).await
        {
            Ok(Ok(msg)) => self
                .decode(&msg.payload)
                .map_err(|e| SendError::Failed(format!("bad answer: {e}"))),
            Ok(Err(e)) => Err(SendError::Failed(e.to_string())),
            Err(_) => Err(SendError::Failed("request timed out".into())),
        }
    }

    /// Publishes `packet` as a request and gathers every answer that arrives within
    /// `wait`, stopping early once `enough` says so. Answers that do not decode are
    /// counted and skipped.
    pub async fn gather(
        &self,
        subject: String,
        packet: &Packet,
        wait: Duration,
        mut enough: impl FnMut(&[Packet]) -> bool,
    ) -> Result<Vec<Packet>, SendError> {
        use futures::StreamExt;
        if !self.is_connected() {
            return Err(SendError::NotConnected);
        }
        let frame = self.encode(packet);
        let max = self.max_payload();
        if frame.len() > max {
            return Err(SendError::TooLarge(frame.len(), max));
        }
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        self.client
            .publish_with_reply(subject, inbox, Bytes::from(frame))
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut answers = Vec::new();
        while !enough(&answers) {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(msg)) => {
                    if let Ok(p) = self.decode(&msg.payload) {
                        answers.push(p);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(answers)
    }

    /// Answers a request (`reply` is the request's reply subject).
    pub async fn answer(&self, reply: String, packet: &Packet) -> Result<(), SendError> {
        self.publish(reply, packet).await
    }

    /// Subscribes to a subject; the subscription survives reconnects.
    pub async fn subscribe(
        &self,
        subject: String,
    ) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
        self.client.subscribe(subject).await
    }

    /// Subscribes, retrying with backoff until it works or `cancel` fires (then
    /// `None`). Long-lived tasks use this both at start and when a subscription ends,
    /// so that no task stops for good because one subscribe failed.
    pub async fn subscribe_until(
        &self,
        subject: String,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Option<async_nats::Subscriber> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.client.subscribe(subject.clone()).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    self.metrics.subscribe_failures.inc();
                    tracing::warn!(subject = %subject, error = %e, retry_in = ?wait, "cannot subscribe; retrying");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Flushes buffered publishes (best effort, bounded).
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }
}
