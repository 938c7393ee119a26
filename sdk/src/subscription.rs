//! [`Subscription`]: a stream of messages through a consumer group, with credit.
//!
//! A driver task feeds it: over the agent's WebSocket for a sidecar node (`ws.rs`,
//! reconnecting by itself), or straight from the agent's service for an embedded
//! node (`embedded.rs`). Both keep the same books ([`Hand`]): the messages the
//! application holds unsettled, each until its lease runs out. No more than `credit`
//! are held at once; a copy of a message the application still holds (sent again
//! after the agent restarted and forgot its leases) is not handed out twice.

use crate::message::SettleReq;
use crate::{Channel, Error, GroupOptions, GroupStart, Message, Result};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Options of [`Channel::subscribe`] and [`Channel::on_message_with`].
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Most messages held unsettled at once (1 to 10,000; default 100).
    pub credit: usize,
    /// [`Channel::on_message`] only: handlers running at once (default 1: one
    /// message after the other, in order).
    pub concurrency: usize,
    /// Where a group created by this subscription starts.
    pub start: GroupStart,
    /// Lease of a delivered message, for a group created by this subscription.
    pub ack_wait: Option<Duration>,
    /// Deliveries before the group's dead-letter queue, for a group created here.
    pub max_deliveries: Option<u32>,
    /// Waits before redelivery, for a group created here.
    pub backoff: Vec<Duration>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            credit: 100,
            concurrency: 1,
            start: GroupStart::Earliest,
            ack_wait: None,
            max_deliveries: None,
            backoff: Vec::new(),
        }
    }
}

impl SubscribeOptions {
    fn group_options(&self) -> GroupOptions {
        GroupOptions {
            start: self.start,
            ack_wait: self.ack_wait,
            max_deliveries: self.max_deliveries,
            backoff: self.backoff.clone(),
            ..GroupOptions::default()
        }
    }

    fn names_settings(&self) -> bool {
        !matches!(self.start, GroupStart::Earliest)
            || self.ack_wait.is_some()
            || self.max_deliveries.is_some()
            || !self.backoff.is_empty()
    }
}

/// The books of a subscription's driver: what the application holds, until when,
/// and what arrived but waits for credit.
pub(crate) struct Hand {
    credit: usize,
    held: HashMap<String, Instant>,
    queue: VecDeque<(Message, Instant)>,
}

impl Hand {
    pub(crate) fn new(credit: usize) -> Hand {
        Hand {
            credit,
            held: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        self.held.retain(|_, until| *until > now);
        self.queue.retain(|(_, until)| *until > now);
    }

    /// A message arrived, leased until `until`. A copy of one held or queued is
    /// dropped: the application settles the first one.
    pub(crate) fn arrived(&mut self, m: Message, until: Instant) {
        self.expire(Instant::now());
        if self.held.contains_key(&m.id) || self.queue.iter().any(|(q, _)| q.id == m.id) {
            return;
        }
        self.queue.push_back((m, until));
    }

    /// Messages the application may have now (credit left), in arrival order.
    pub(crate) fn hand_out(&mut self) -> Vec<Message> {
        self.expire(Instant::now());
        let mut out = Vec::new();
        while self.held.len() < self.credit {
            let Some((m, until)) = self.queue.pop_front() else {
                break;
            };
            self.held.insert(m.id.clone(), until);
            out.push(m);
        }
        out
    }

    /// The application gave these up (settled, or the agent does not know them).
    pub(crate) fn settled(&mut self, ids: &[String]) {
        for id in ids {
            self.held.remove(id);
        }
    }

    /// Leases renewed until `until`.
    pub(crate) fn extended(&mut self, ids: &[String], until: Instant) {
        for id in ids {
            if let Some(u) = self.held.get_mut(id) {
                *u = until;
            }
        }
    }

    /// Room for more from the agent: credit minus what is held or queued.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn free(&mut self) -> usize {
        self.expire(Instant::now());
        self.credit
            .saturating_sub(self.held.len() + self.queue.len())
    }

    /// When the next held lease runs out (the books change then).
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.held
            .values()
            .chain(self.queue.iter().map(|(_, u)| u))
            .min()
            .copied()
    }
}

/// What a driver needs: where messages go, where settlements come from, when to stop.
pub(crate) struct DriverIo {
    pub out: mpsc::UnboundedSender<Result<Message>>,
    pub reqs: mpsc::UnboundedReceiver<SettleReq>,
    pub settle_tx: mpsc::UnboundedSender<SettleReq>,
    pub stop: watch::Receiver<bool>,
    pub ready: oneshot::Sender<Result<()>>,
}

/// Messages of a channel through a consumer group: a [`Stream`](futures::Stream)
/// that yields each message with its lease; settle each with [`Message::ack`] (or
/// nack, term). At most `credit` are unsettled at once. A sidecar subscription
/// reconnects by itself when its agent restarts: nothing acknowledged is delivered
/// again, nothing unacknowledged is lost. Dropping it (or
/// [`unsubscribe`](Subscription::unsubscribe)) ends it; leases of messages not settled
/// then run out and they are delivered again.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let chat = d.bob_chat.clone();
/// use futures::StreamExt;
/// let mut sub = chat.subscribe("default", Default::default()).await?;
/// # d.chat.send_text("hi bob").await?;
/// if let Some(m) = sub.next().await {
///     m?.ack().await?;
/// }
/// sub.unsubscribe().await;
/// # Ok(()) });
/// ```
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Result<Message>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    channel: String,
    group: String,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("group", &self.group)
            .finish()
    }
}

impl Subscription {
    pub(crate) async fn start(
        ch: Channel,
        group: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription> {
        if opts.credit == 0 || opts.credit > 10_000 {
            return Err(Error::new(
                crate::ErrorKind::BadRequest,
                "credit must be between 1 and 10000",
            ));
        }
        let client = ch.node().client().clone();
        if group != "default" || opts.names_settings() {
            client
                .ensure_group(ch.name(), group, &opts.group_options())
                .await?;
        }
        let (out, rx) = mpsc::unbounded_channel();
        let (settle_tx, reqs) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let (ready, ready_rx) = oneshot::channel();
        let io = DriverIo {
            out,
            reqs,
            settle_tx,
            stop: stop_rx,
            ready,
        };
        let task = {
            #[cfg(feature = "embedded")]
            let embedded = ch
                .node()
                .inner
                .embedded
                .as_ref()
                .map(|e| e.service().clone());
            #[cfg(not(feature = "embedded"))]
            let embedded: Option<()> = None;
            match embedded {
                #[cfg(feature = "embedded")]
                Some(service) => tokio::spawn(crate::embedded::drive(
                    service,
                    ch.name().to_string(),
                    group.to_string(),
                    opts.credit,
                    io,
                )),
                _ => tokio::spawn(crate::ws::drive(
                    client,
                    ch.name().to_string(),
                    group.to_string(),
                    opts.credit,
                    io,
                )),
            }
        };
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::closed("the subscription")),
        }
        Ok(Subscription {
            rx,
            stop,
            task: Some(task),
            channel: ch.name().to_string(),
            group: group.to_string(),
        })
    }

    /// The channel.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let sub = d.subscription().await;
    /// assert_eq!(sub.channel(), "chat");
    /// # Ok(()) });
    /// ```
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The consumer group.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let sub = d.subscription().await;
    /// assert_eq!(sub.group(), "default");
    /// # Ok(()) });
    /// ```
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Ends the subscription and waits for its driver to stop. Messages not yet
    /// settled can no longer be settled through it; their leases run out.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let sub = d.subscription().await;
    /// sub.unsubscribe().await;
    /// # Ok(()) });
    /// ```
    pub async fn unsubscribe(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl futures::Stream for Subscription {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
