//! Every metric in one place: names, help texts, and the `/v1/stats` view.
//!
//! Counters are `prometheus-client` counters (the exporter appends `_total`); gauges
//! that describe current state are set right before each scrape, and per-stream,
//! per-peer and resource gauges are read at scrape time (`scrape.rs`). The two
//! latency histograms are lock-free (`histogram.rs`). `/metrics` is served in the
//! Prometheus text format 0.0.4 (`exposition.rs`), every metric with HELP and TYPE.

mod exposition;
pub mod histogram;
pub mod scrape;

pub use histogram::Histogram;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// Recent events kept for taps that ask for history (`last_n`, at most
/// `api::ws::MAX_TAP_HISTORY` = 1,000). Twice that leaves room for a channel or kind
/// filter; each event holds about 1 KB (a publish event lists its receivers), so 10,000
/// of them were ~10 MB of a busy agent's RSS.
pub const TAP_HISTORY: usize = 2_000;

macro_rules! metrics {
    (counters { $($c:ident: $cdoc:literal,)* } gauges { $($g:ident: $gdoc:literal,)* }) => {
        /// The agent's metrics. Cheap to share behind an `Arc`.
        pub struct Metrics {
            $(#[doc = $cdoc] pub $c: Counter,)*
            $(#[doc = $gdoc] pub $g: Gauge,)*
            /// API requests refused by the cross-site guard, by reason.
            pub api_refused: Family<[(&'static str, &'static str); 1], Counter>,
            /// Seconds from a publish reaching the store to its commit, per message.
            pub publish_commit: Histogram,
            /// Seconds from a message's last send to the ACK that covered it.
            pub send_ack: Histogram,
            /// Gauges read at scrape time.
            pub scrape: Arc<scrape::ScrapeGauges>,
            registry: Registry,
            started: Instant,
            /// The live event stream (tap) travels with the metrics.
            pub events: crate::events::Events,
        }

        impl Metrics {
            /// Creates and registers every metric.
            pub fn new() -> Arc<Metrics> {
                let mut registry = Registry::with_prefix("rmds");
                $(let $c = Counter::default(); registry.register(stringify!($c), $cdoc, $c.clone());)*
                $(let $g = Gauge::default(); registry.register(stringify!($g), $gdoc, $g.clone());)*
                let api_refused: Family<[(&'static str, &'static str); 1], Counter> =
                    Family::default();
                for reason in REFUSAL_REASONS {
                    // Every reason shows from the start, at 0.
                    let _ = api_refused.get_or_create(&[("reason", reason)]);
                }
                registry.register(
                    "api_refused",
                    "API requests refused by the cross-site guard (reason: host, origin, content_type)",
                    api_refused.clone(),
                );
                let publish_commit = Histogram::new(histogram::COMMIT_BUCKETS);
                registry.register(
                    "publish_commit_seconds",
                    "Seconds from a publish reaching the store to its commit (durable), per message",
                    publish_commit.clone(),
                );
                let send_ack = Histogram::new(histogram::ACK_BUCKETS);
                registry.register(
                    "send_ack_seconds",
                    "Seconds from the last send of a message to the receiver's ACK that covered it, per message",
                    send_ack.clone(),
                );
                let scrape = Arc::new(scrape::ScrapeGauges::default());
                registry.register_collector(Box::new(scrape.clone()));
                Arc::new(Metrics {
                    $($c,)* $($g,)*
                    api_refused,
                    publish_commit,
                    send_ack,
                    scrape,
                    registry,
                    started: Instant::now(),
                    events: crate::events::Events::new(TAP_HISTORY),
                })
            }
        }
    };
}

metrics! {
    counters {
        published: "Messages accepted from local applications",
        delivered: "Deliveries acknowledged by their receiver",
        dropped: "Deliveries dropped by the drop_oldest overflow policy",
        expired: "Deliveries and unrouted messages whose TTL ran out before delivery",
        dead_lettered: "Deliveries moved to the dead-letter store",
        rejected_publishes: "Publishes refused because a receiver backlog was full",
        processed: "Messages received from peers and appended to a channel log",
        duplicates: "Received envelopes already committed (re-acknowledged, not appended)",
        out_of_order: "Received envelopes ahead of the next expected sequence (dropped)",
        sent_messages: "Envelopes published to NATS, resends included",
        resent_messages: "Envelopes published again after a timeout or reconnect",
        sent_batches: "NATS messages carrying envelopes",
        sent_acks: "Acknowledgements published",
        received_acks: "Acknowledgements received and applied",
        invalid_acks: "Acknowledgements ignored: stale, wrong epoch, or for sequences never sent",
        sent_keepalives: "Keepalives and hellos published",
        received_keepalives: "Keepalives and hellos received from peers",
        discovery_bytes_received: "Bytes of discovery frames received (hellos, keepalives, answers, byes; subject and payload)",
        malformed_frames: "NATS messages dropped because they could not be decoded",
        bad_signatures: "NATS messages dropped because they were unsigned or badly signed",
        misrouted_frames: "Decoded NATS messages dropped because they named another node",
        reconnects: "NATS reconnections",
        auth_unauthenticated: "API requests refused for missing, invalid or expired credentials (401)",
        auth_forbidden: "API requests refused because the principal lacks the right (403)",
        auth_replayed: "Signed API requests refused as replays (nonce seen before)",
        auth_logins_failed: "Failed logins",
        mgmt_issued: "Management commands issued on this node's API",
        mgmt_applied: "Management commands this node applied",
        mgmt_refused: "Management commands this node refused (stale) or failed to apply",
        purged: "Undelivered messages dropped on purpose by a management purge",
        nats_connect_errors: "Failed attempts to connect to NATS (refused credentials, TLS, unreachable)",
        api_client_errors: "HTTP requests answered with a 4xx",
        store_errors: "Store operations that failed",
        group_acks: "Messages acknowledged by a consumer group",
        group_terms: "Messages terminated (never to be delivered again) by a consumer group",
        group_skipped: "Log entries a consumer group skipped because they expired unread",
        group_redeliveries: "Messages handed to a consumer group again (lease ran out or nack)",
        group_dead_lettered: "Messages moved to a consumer group's dead-letter queue",
        groups_expired: "Consumer groups deleted after their idle TTL",
        ws_connections: "WebSocket connections accepted (API and tap)",
        ws_slow_consumers: "WebSocket clients disconnected because they did not read fast enough",
        schema_rejections: "Publishes refused because the payload failed the domain's schema",
        circuit_opened: "Times a receiver's circuit breaker opened",
        circuit_closed: "Times a receiver's circuit breaker closed again after probing",
        sent_nacks: "Negative acknowledgements sent (this node could not store what it received)",
        received_nacks: "Negative acknowledgements received from receivers",
        streams_released: "Idle sending streams whose task and memory were released",
        inbox_cache_pruned: "Times the inbox forgot idle stream state to stay within its bound",
        corrected_statuses: "Deliveries recorded as dead, expired or dropped that the receiver turned out to have (now delivered)",
        repeated_ids: "Received messages not appended because the log already has their id (another stream carried them)",
        subscribe_failures: "NATS subscribe attempts that failed (retried with backoff)",
        refused_rounds: "Rounds a receiver refused (could not store); the stream waits, no attempt is spent",
        replayed_frames: "Signed frames dropped because they were not fresh (replayed, or from an earlier run)",
        state_fetches: "Peer membership lists fetched after an unknown digest",
        state_fetch_failures: "Peer membership list fetches that failed or were refused (retried at the next keepalive)",
        state_pages_served: "Pages of this node's membership list sent to peers that asked",
        stats_sample_failures: "Stats samples that could not be stored (their counts go into the next sample)",
    }
    gauges {
        pending_messages: "Deliveries not yet acknowledged (all receivers)",
        unrouted_messages: "Messages waiting for a reader to be discovered",
        peers_online: "Peers currently online",
        peers_known: "Peers known (online or not)",
        nats_connected: "1 when connected to NATS",
        uptime_seconds: "Seconds since the agent started",
    }
}

/// The reasons `api_refused` is labelled with (a bounded set).
pub const REFUSAL_REASONS: [&str; 3] = ["host", "origin", "content_type"];

impl Metrics {
    /// Counts one API request refused by the guard.
    pub fn refused(&self, reason: &'static str) {
        self.api_refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Refused API requests for one reason.
    pub fn refused_count(&self, reason: &'static str) -> u64 {
        self.api_refused.get_or_create(&[("reason", reason)]).get()
    }

    /// Seconds since start.
    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        self.uptime_seconds.set(self.uptime() as i64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        exposition::to_prometheus_text(&out)
    }

    /// The `/v1/stats` object, with RMDS's keys.
    pub fn stats(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "delivered": self.delivered.get(),
            "queued": self.pending_messages.get().max(0),
            "dropped": self.dropped.get(),
            "expired": self.expired.get(),
            "processed": self.processed.get(),
            "sent_acks": self.sent_acks.get(),
            "received_acks": self.received_acks.get(),
            "sent_keepalives": self.sent_keepalives.get(),
            "received_keepalives": self.received_keepalives.get(),
            "discovery_bytes_received": self.discovery_bytes_received.get(),
            "reconnects": self.reconnects.get(),
            "nats_connect_errors": self.nats_connect_errors.get(),
            "mgmt_issued": self.mgmt_issued.get(),
            "auth_unauthenticated": self.auth_unauthenticated.get(),
            "auth_forbidden": self.auth_forbidden.get(),
            "auth_replayed": self.auth_replayed.get(),
            "auth_logins_failed": self.auth_logins_failed.get(),
            "mgmt_applied": self.mgmt_applied.get(),
            "mgmt_refused": self.mgmt_refused.get(),
            "purged": self.purged.get(),
            "uptime_seconds": self.uptime(),
            "pending_messages": self.pending_messages.get().max(0),
            "sent_messages": self.sent_messages.get(),
            "acknowledged_messages": self.delivered.get(),
            "nats_connected": self.nats_connected.get() == 1,
            "published": self.published.get(),
            "dead_lettered": self.dead_lettered.get(),
            "rejected_publishes": self.rejected_publishes.get(),
            "resent_messages": self.resent_messages.get(),
            "duplicates": self.duplicates.get(),
            "out_of_order": self.out_of_order.get(),
            "invalid_acks": self.invalid_acks.get(),
            "malformed_frames": self.malformed_frames.get(),
            "bad_signatures": self.bad_signatures.get(),
            "misrouted_frames": self.misrouted_frames.get(),
            "api_client_errors": self.api_client_errors.get(),
            "store_errors": self.store_errors.get(),
            "sent_batches": self.sent_batches.get(),
            "unrouted_messages": self.unrouted_messages.get(),
            "peers_online": self.peers_online.get(),
        });
        let more = serde_json::json!({
            "group_acks": self.group_acks.get(),
            "group_terms": self.group_terms.get(),
            "group_skipped": self.group_skipped.get(),
            "group_redeliveries": self.group_redeliveries.get(),
            "group_dead_lettered": self.group_dead_lettered.get(),
            "groups_expired": self.groups_expired.get(),
            "ws_connections": self.ws_connections.get(),
            "ws_slow_consumers": self.ws_slow_consumers.get(),
            "schema_rejections": self.schema_rejections.get(),
            "circuit_opened": self.circuit_opened.get(),
            "circuit_closed": self.circuit_closed.get(),
            "sent_nacks": self.sent_nacks.get(),
            "received_nacks": self.received_nacks.get(),
            "refused_rounds": self.refused_rounds.get(),
            "streams_released": self.streams_released.get(),
            "subscribe_failures": self.subscribe_failures.get(),
            "corrected_statuses": self.corrected_statuses.get(),
            "repeated_ids": self.repeated_ids.get(),
            "api_refused_host": self.refused_count("host"),
            "api_refused_origin": self.refused_count("origin"),
            "api_refused_content_type": self.refused_count("content_type"),
            "replayed_frames": self.replayed_frames.get(),
            "state_fetches": self.state_fetches.get(),
            "state_fetch_failures": self.state_fetch_failures.get(),
            "state_pages_served": self.state_pages_served.get(),
        });
        if let (Some(a), serde_json::Value::Object(b)) = (v.as_object_mut(), more) {
            a.extend(b);
        }
        v
    }
}
