//! The discovery actor: announces this node, applies what peers say, follows their
//! liveness, serves and fetches membership lists.

use super::view::Change;
use super::{sync, DiscoveryEvent, DiscoveryTask};
use crate::events::EventKind;
use crate::names::{Channel, NodeId, Role};
use crate::store::{self, now_ms};
use crate::wire::{Announce, Bye, Digest, Packet, Stamp};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The next message of an optional subscription (never, without one).
async fn next(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl DiscoveryTask {
    fn announce(&self) -> Announce {
        Announce {
            node: self.handle.me.clone(),
            epoch: self.handle.store.epoch,
            stamp: self.transport.stamp(),
            digest: self.handle.read(|v| v.own_digest),
            pending: self.metrics.pending_messages.get().max(0) as u64,
            api: self.api.clone(),
        }
    }

    async fn send(&self, subject: String, packet: Packet) -> bool {
        match self.transport.publish(subject, &packet).await {
            Ok(()) => {
                self.metrics.sent_keepalives.inc();
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "announcement not sent");
                false
            }
        }
    }

    /// Sends the periodic keepalive: to everyone when this node writes a channel, to
    /// the writers only otherwise.
    async fn keepalive(&self) {
        let t = &self.transport;
        let subject = if self.handle.read(|v| v.writes()) {
            t.keepalive_subject()
        } else {
            t.reader_keepalive_subject()
        };
        self.send(subject, Packet::Keepalive(self.announce())).await;
    }

    /// Sends this node's hello; a hello that went out makes discovery done.
    async fn hello(&self) {
        let t = &self.transport;
        let sent = self
            .send(t.hello_subject(), Packet::Hello(self.announce()))
            .await;
        if sent {
            self.handle
                .announced
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Runs until cancelled, then says bye.
    pub async fn run(mut self, cancel: CancellationToken) {
        let t = self.transport.clone();
        let me = self.handle.me.clone();
        // Subscriptions are retried until they work: discovery never stops for good
        // because NATS refused a subscribe once.
        let subjects = [
            t.hello_subject(),
            t.keepalive_subject(),
            t.bye_subject(),
            t.state_subject(&me),
            t.announce_subject(&me),
        ];
        let mut subs = Vec::with_capacity(subjects.len());
        for subject in subjects {
            match t.subscribe_until(subject, &cancel).await {
                Some(s) => subs.push(s),
                None => return,
            }
        }
        let Ok([mut hello, mut keepalive, mut bye, mut state, mut answers]) =
            <[async_nats::Subscriber; 5]>::try_from(subs)
        else {
            return;
        };
        // The reader-only nodes' keepalives, followed while this node writes a channel.
        let mut readers: Option<async_nats::Subscriber> = None;
        let mut writes = false;
        let mut nats = self.transport.watch_state();
        let mut tick = tokio::time::interval(self.config.keepalive_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let check_every = (self.config.node_offline_timeout / 10).max(Duration::from_millis(100));
        let mut check = tokio::time::interval(check_every);
        let mut expiry_check = tokio::time::interval(Duration::from_secs(60));
        self.follow_readers(&mut readers, &mut writes, &cancel)
            .await;
        self.hello().await;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = nats.changed() => {
                    if changed.is_err() { break; }
                    if *nats.borrow_and_update() {
                        // Reconnected: ask every peer to answer at once.
                        self.hello().await;
                    } else {
                        self.handle.announced.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Some(()) = self.announce_rx.recv() => {
                    if self.follow_readers(&mut readers, &mut writes, &cancel).await {
                        // Started to write: ask every peer (readers too) to answer now,
                        // rather than learn the readers' changes at their next keepalive.
                        self.hello().await;
                    } else {
                        // A change is announced to everyone, whatever the role.
                        self.send(t.keepalive_subject(), Packet::Keepalive(self.announce())).await;
                    }
                }
                Some(msg) = hello.next() => {
                    self.count(&msg);
                    if let Ok(Packet::Hello(a)) = t.decode(&msg.payload) {
                        if a.node != me {
                            let node = a.node.clone();
                            let (tracked, online) = self.handle.read(|v| (v.tracks(&node), v.online(&node)));
                            if self.apply(a).await {
                                self.handle.write(|v| v.reannounced(&node));
                                if !tracked && online {
                                    // Not timed out here, so it did not "come online": its
                                    // hello is the sign that it restarted or reconnected.
                                    let _ = self.handle.events.send(DiscoveryEvent::Online(node.clone()));
                                }
                                self.send(t.announce_subject(&node), Packet::Keepalive(self.announce())).await;
                            }
                        } else if a.stamp.boot != t.boot() {
                            tracing::error!(node = %a.node, "another agent announces this node id");
                        }
                    }
                }
                Some(msg) = state.next() => self.serve_page(msg).await,
                Some(done) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    if let Ok((node, result)) = done {
                        self.fetched(node, result).await;
                    }
                }
                Some(msg) = keepalive.next() => self.heard(&msg).await,
                Some(msg) = answers.next() => self.heard(&msg).await,
                Some(msg) = next(&mut readers) => self.heard(&msg).await,
                Some(msg) = bye.next() => {
                    self.count(&msg);
                    if let Ok(Packet::Bye(b)) = t.decode(&msg.payload) {
                        let offline = self.handle.write(|v| v.bye(&b.node, b.stamp));
                        if offline.is_none() {
                            self.metrics.replayed_frames.inc();
                            tracing::debug!(peer = %b.node, "stale or replayed bye dropped");
                        }
                        if offline == Some(true) {
                            tracing::info!(peer = %b.node, "peer said bye");
                            self.metrics.events.emit(EventKind::PeerDown, None, None, Some(b.node.as_str()), serde_json::json!({"reason": "bye"}));
                        }
                        self.update_gauges();
                    }
                }
                _ = tick.tick() => {
                    if self.handle.announced() {
                        self.keepalive().await;
                    } else {
                        // The hello after the last connect did not go out: say hello
                        // again, so peers answer and discovery completes.
                        self.hello().await;
                    }
                }
                _ = check.tick() => {
                    let gone = self.handle.write(|v| v.mark_offline(Instant::now(), self.config.node_offline_timeout));
                    for node in gone {
                        tracing::info!(peer = %node, "peer offline (no keepalive)");
                        self.metrics.events.emit(EventKind::PeerDown, None, None, Some(node.as_str()), serde_json::json!({"reason": "no keepalive"}));
                    }
                    self.update_gauges();
                }
                _ = expiry_check.tick() => self.expire_nodes().await,
            }
        }
        self.fetches.shutdown().await;
        let bye = Packet::Bye(Bye {
            node: self.handle.me.clone(),
            stamp: t.stamp(),
        });
        self.send(t.bye_subject(), bye).await;
        self.transport.flush().await;
    }

    /// Counts a received discovery frame's bytes (what liveness scoping bounds).
    fn count(&self, msg: &async_nats::Message) {
        let n = msg.subject.len() + msg.payload.len();
        self.metrics.discovery_bytes_received.inc_by(n as u64);
    }

    /// Applies a keepalive (or an answer to this node's hello) from a peer.
    async fn heard(&mut self, msg: &async_nats::Message) {
        self.count(msg);
        match self.transport.decode(&msg.payload) {
            Ok(Packet::Keepalive(a)) if a.node != self.handle.me => {
                self.apply(a).await;
            }
            Ok(Packet::Keepalive(_)) => {}
            Ok(_) => {
                self.metrics.misrouted_frames.inc();
            }
            // Counted by the transport.
            Err(_) => {}
        }
    }

    /// Subscribes to the reader-only nodes' keepalives when this node writes a channel,
    /// and drops that subscription when it writes none; true when it started to write.
    async fn follow_readers(
        &self,
        readers: &mut Option<async_nats::Subscriber>,
        writes: &mut bool,
        cancel: &CancellationToken,
    ) -> bool {
        let now = self.handle.read(|v| v.writes());
        if now == *writes {
            return false;
        }
        *writes = now;
        if now {
            let t = &self.transport;
            *readers = t
                .subscribe_until(t.reader_keepalive_subject(), cancel)
                .await;
        } else if let Some(mut sub) = readers.take() {
            let _ = sub.unsubscribe().await;
        }
        now
    }

    fn update_gauges(&self) {
        let (online, known) = self.handle.read(|v| v.counts());
        self.metrics.peers_online.set(online as i64);
        self.metrics.peers_known.set(known as i64);
    }

    /// Applies a peer's hello or keepalive; false when it was not fresh (dropped).
    async fn apply(&mut self, a: Announce) -> bool {
        let now = now_ms();
        let Some(change) = self.handle.write(|v| v.apply(&a, Instant::now(), now)) else {
            self.metrics.replayed_frames.inc();
            tracing::debug!(peer = %a.node, "stale or replayed announce dropped");
            return false;
        };
        self.metrics.received_keepalives.inc();
        if change.came_online {
            tracing::info!(peer = %a.node, "peer online");
            let _ = self
                .handle
                .events
                .send(DiscoveryEvent::Online(a.node.clone()));
            self.metrics.events.emit(
                EventKind::PeerUp,
                None,
                None,
                Some(a.node.as_str()),
                serde_json::Value::Null,
            );
        }
        self.update_gauges();
        self.record(&a.node, a.epoch, a.api.clone(), change).await;
        true
    }

    /// Persists and reports what applying an announce or a list changed, and starts
    /// the fetch it asks for.
    async fn record(&mut self, node: &NodeId, epoch: u64, api: String, change: Change) {
        if change.persist {
            let id = node.to_string();
            let seen = store::PeerSeen {
                epoch,
                boot: change.boot,
                version: change.version,
                api,
            };
            let ms: Option<Vec<(String, String)>> = change.memberships_changed.then(|| {
                change
                    .memberships
                    .iter()
                    .map(|(c, r)| (c.to_string(), r.as_str().to_string()))
                    .collect()
            });
            let now = now_ms();
            let r = self
                .handle
                .store
                .writer
                .run(move |c| store::peers::upsert_peer(c, &id, &seen, now, ms.as_deref()))
                .await;
            if let Err(e) = r {
                self.metrics.store_errors.inc();
                tracing::warn!(peer = %node, error = %e, "cannot persist peer");
            }
        }
        for channel in change.new_reader_channels {
            let _ = self.handle.events.send(DiscoveryEvent::NewReader {
                node: node.clone(),
                channel,
            });
        }
        if let Some(want) = change.fetch {
            self.start_fetch(node.clone(), want);
        }
    }

    fn start_fetch(&mut self, node: NodeId, want: Stamp) {
        if !self.fetching.insert(node.clone()) {
            // One fetch per peer at a time; a newer digest is fetched when it lands.
            return;
        }
        let (t, me) = (self.transport.clone(), self.handle.me.clone());
        self.fetches.spawn(async move {
            let r = sync::fetch(t, me, node.clone(), want).await;
            (node, r)
        });
    }

    async fn fetched(
        &mut self,
        node: NodeId,
        result: Result<(Digest, BTreeMap<Channel, Role>), sync::FetchError>,
    ) {
        self.fetching.remove(&node);
        match result {
            Ok((digest, list)) => {
                self.metrics.state_fetches.inc();
                let Some(change) = self.handle.write(|v| v.apply_state(&node, digest, list)) else {
                    return;
                };
                let (epoch, api) = self.handle.read(|v| v.identity(&node)).unwrap_or_default();
                self.record(&node, epoch, api, change).await;
            }
            Err(e) => {
                self.metrics.state_fetch_failures.inc();
                tracing::debug!(peer = %node, error = %e, "cannot fetch memberships; retrying at the next keepalive");
            }
        }
    }

    /// Answers a peer's request for one page of this node's memberships.
    async fn serve_page(&mut self, msg: async_nats::Message) {
        let t = self.transport.clone();
        let req = match t.decode(&msg.payload) {
            Ok(Packet::StateRequest(req)) => req,
            Ok(_) => {
                self.metrics.misrouted_frames.inc();
                return;
            }
            // Counted by the transport.
            Err(_) => return,
        };
        let Some(reply) = msg.reply else {
            self.metrics.misrouted_frames.inc();
            return;
        };
        if req.node != self.handle.me {
            self.metrics.misrouted_frames.inc();
            return;
        }
        let current = self.handle.read(|v| v.own_digest);
        let handle = &self.handle;
        let load = || handle.read(|v| (v.own_digest, v.own.clone()));
        let page = self
            .pages
            .page(&handle.me, current, load, t.max_payload(), req.page);
        if let Some(p) = page {
            match t.publish(reply.to_string(), &Packet::State(p)).await {
                Ok(()) => {
                    self.metrics.state_pages_served.inc();
                }
                Err(e) => {
                    tracing::debug!(peer = %req.asker, error = %e, "membership page not sent")
                }
            }
        }
    }

    async fn expire_nodes(&self) {
        let expiry = self.config.node_expiry.as_millis() as i64;
        let gone = self.handle.write(|v| v.expire(now_ms(), expiry));
        for node in gone {
            tracing::info!(peer = %node, "peer expired; forgetting it");
            let id = node.to_string();
            if let Err(e) = self
                .handle
                .store
                .writer
                .run(move |c| store::peers::delete_peer(c, &id))
                .await
            {
                tracing::warn!(error = %e, "cannot delete expired peer");
            }
        }
        self.update_gauges();
    }
}
