//! [`Mgmt`]: management and observation of this node and the network, typed.

use crate::client::enc;
use crate::model::*;
use crate::{Client, Error, GroupOptions, GroupStart, Message, Result};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Management of this node and of the whole network, from [`Node::mgmt`](crate::Node::mgmt):
/// every call answers typed data, field for field as the REST API has it.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
/// let mgmt = node.mgmt();
/// let t = mgmt.topology().await?;
/// for (ch, m) in &t.channels {
///     println!("{ch}: readers {:?}, writers {:?}", m.readers, m.writers);
/// }
/// # Ok(()) });
/// ```
#[derive(Clone, Debug)]
pub struct Mgmt {
    client: Client,
}

fn field<T: DeserializeOwned>(mut v: Value, key: &str) -> Result<T> {
    serde_json::from_value(v[key].take()).map_err(Error::decode)
}

fn whole<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(Error::decode)
}

fn group_path(channel: &str, group: &str) -> String {
    format!("/v1/channels/{}/groups/{}", enc(channel), enc(group))
}

impl Mgmt {
    pub(crate) fn new(client: Client) -> Mgmt {
        Mgmt { client }
    }

    /// `GET /healthz`: node id, NATS state and why it is not connected.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// println!("NATS is {}", m.health().await?.nats);
    /// # Ok(()) });
    /// ```
    pub async fn health(&self) -> Result<Health> {
        whole(self.client.health().await?)
    }

    /// `GET /v1/topology`: nodes with liveness, channels with readers and writers.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// let t = m.topology().await?;
    /// println!("{} nodes", t.nodes.len());
    /// # Ok(()) });
    /// ```
    pub async fn topology(&self) -> Result<Topology> {
        whole(self.client.get_json("/v1/topology").await?)
    }

    /// `GET /v1/nodes`: this node first, then every known peer.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// let offline: Vec<_> = m.nodes().await?.into_iter().filter(|n| !n.online).collect();
    /// assert!(offline.is_empty());
    /// # Ok(()) });
    /// ```
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        field(self.client.get_json("/v1/nodes").await?, "nodes")
    }

    /// `GET /v1/channels`: every known channel with this node's role.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for c in m.channels().await? { println!("{} {} readers", c.channel, c.readers); }
    /// # Ok(()) });
    /// ```
    pub async fn channels(&self) -> Result<Vec<ChannelSummary>> {
        field(self.client.get_json("/v1/channels").await?, "channels")
    }

    /// `GET /v1/channels/{ch}`: a channel's members.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// println!("{:?}", m.channel("chat").await?.members);
    /// # Ok(()) });
    /// ```
    pub async fn channel(&self, channel: &str) -> Result<ChannelInfo> {
        whole(
            self.client
                .get_json(&format!("/v1/channels/{}", enc(channel)))
                .await?,
        )
    }

    /// `GET /v1/channels/{ch}/subscribers`: the nodes of a channel and their roles.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// let readers: Vec<_> = m.subscribers("chat").await?.into_iter().filter(|s| s.role.reads()).collect();
    /// assert_eq!(readers.len(), 2);
    /// # Ok(()) });
    /// ```
    pub async fn subscribers(&self, channel: &str) -> Result<Vec<Member>> {
        field(
            self.client
                .get_json(&format!("/v1/channels/{}/subscribers", enc(channel)))
                .await?,
            "subscribers",
        )
    }

    /// `GET /v1/stats`: the node's counters.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// let s = m.stats().await?;
    /// println!("published {}, delivered {}, duplicates {}", s.published, s.delivered, s.counters["duplicates"]);
    /// # Ok(()) });
    /// ```
    pub async fn stats(&self) -> Result<Stats> {
        whole(self.client.get_json("/v1/stats").await?)
    }

    /// `GET /v1/messages/{id}`: where a message published here stands per receiver.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt(); let id = d.chat.send_text("hi").await?.id;
    /// for r in m.message(&id).await?.receivers { println!("{}: {}", r.receiver, r.state); }
    /// # Ok(()) });
    /// ```
    pub async fn message(&self, id: &str) -> Result<MessageStatus> {
        whole(self.client.status(id).await?)
    }

    async fn command(&self, path: &str, body: Value) -> Result<MgmtAnswer> {
        whole(self.client.post_json(path, &body).await?)
    }

    /// Kicks `node` from every channel, on every agent; answers per node.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// let a = m.kick("mallory").await?;
    /// println!("applied on {:?}", a.applied.iter().map(|n| &n.node).collect::<Vec<_>>());
    /// # Ok(()) });
    /// ```
    pub async fn kick(&self, node: &str) -> Result<MgmtAnswer> {
        self.command(&format!("/v1/nodes/{}/kick", enc(node)), json!({}))
            .await
    }

    /// Kicks `node` from one channel, on every agent.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// m.kick_channel("mallory", "chat").await?;
    /// # Ok(()) });
    /// ```
    pub async fn kick_channel(&self, node: &str, channel: &str) -> Result<MgmtAnswer> {
        self.command(
            &format!("/v1/nodes/{}/channels/{}/kick", enc(node), enc(channel)),
            json!({}),
        )
        .await
    }

    /// Purges outboxes: `what` on the nodes of `scope`.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// use rmds::model::{PurgeWhat, Scope};
    /// m.purge(PurgeWhat::Sent, Scope::Node("bob".into())).await?;
    /// # Ok(()) });
    /// ```
    pub async fn purge(&self, what: PurgeWhat, scope: Scope) -> Result<MgmtAnswer> {
        self.command("/v1/purge", json!({"what": what, "scope": scope.wire()}))
            .await
    }

    /// Purges queued messages and records of delivered ones.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// m.purge_all(rmds::model::Scope::This).await?;
    /// # Ok(()) });
    /// ```
    pub async fn purge_all(&self, scope: Scope) -> Result<MgmtAnswer> {
        self.purge(PurgeWhat::All, scope).await
    }

    /// Deletes records of delivered messages.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// m.purge_sent(rmds::model::Scope::All).await?;
    /// # Ok(()) });
    /// ```
    pub async fn purge_sent(&self, scope: Scope) -> Result<MgmtAnswer> {
        self.purge(PurgeWhat::Sent, scope).await
    }

    /// Drops, on purpose, what no receiver has acknowledged yet.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// m.purge_queue(rmds::model::Scope::This).await?;
    /// # Ok(()) });
    /// ```
    pub async fn purge_queue(&self, scope: Scope) -> Result<MgmtAnswer> {
        self.purge(PurgeWhat::Queued, scope).await
    }

    /// `GET /v1/audit`: management commands this node applied, newest first.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for e in m.audit().await? { println!("{} by {}: {}", e.kind, e.issuer, e.detail); }
    /// # Ok(()) });
    /// ```
    pub async fn audit(&self) -> Result<Vec<AuditEntry>> {
        field(self.client.get_json("/v1/audit").await?, "audit")
    }

    /// The sender's dead letters (deliveries given up on), oldest first.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for d in m.dead_letters().await? { println!("{} to {}: {}", d.id, d.receiver, d.reason); }
    /// # Ok(()) });
    /// ```
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        field(
            self.client.get_json("/v1/dead-letters").await?,
            "dead_letters",
        )
    }

    /// One message's dead letters, with its status.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for d in m.dead_letters().await? {
    ///     let (dead, status) = m.dead_letter(&d.id).await?;
    ///     println!("{} dead letters, {} receivers", dead.len(), status.receivers.len());
    /// }
    /// # Ok(()) });
    /// ```
    pub async fn dead_letter(&self, id: &str) -> Result<(Vec<DeadLetter>, MessageStatus)> {
        let v = self
            .client
            .get_json(&format!("/v1/dead-letters/{}", enc(id)))
            .await?;
        Ok((field(v.clone(), "dead_letters")?, field(v, "message")?))
    }

    /// Queues a dead message again for the receivers it missed; answers them.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for d in m.dead_letters().await? {
    ///     println!("{} queued again for {:?}", d.id, m.redrive(&d.id).await?);
    /// }
    /// # Ok(()) });
    /// ```
    pub async fn redrive(&self, id: &str) -> Result<Vec<String>> {
        let v = self
            .client
            .post_json(&format!("/v1/dead-letters/{}/redrive", enc(id)), &json!({}))
            .await?;
        field(v, "receivers")
    }

    /// Deletes a message's dead letters.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for d in m.dead_letters().await? {
    ///     m.delete_dead_letter(&d.id).await?;
    /// }
    /// # Ok(()) });
    /// ```
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        self.client
            .delete(&format!("/v1/dead-letters/{}", enc(id)))
            .await
    }

    /// The consumer groups of a channel.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// for g in m.groups("chat").await? { println!("{}: {} pending", g.name, g.pending); }
    /// # Ok(()) });
    /// ```
    pub async fn groups(&self, channel: &str) -> Result<Vec<GroupInfo>> {
        field(
            self.client
                .get_json(&format!("/v1/channels/{}/groups", enc(channel)))
                .await?,
            "groups",
        )
    }

    /// A group's position, backlog, in-flight messages, consumers and settings.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// # m.create_group("chat", "default", &Default::default()).await.ok();
    /// let g = m.group("chat", "default").await?;
    /// println!("acknowledged up to {}", g.ack_floor);
    /// # Ok(()) });
    /// ```
    pub async fn group(&self, channel: &str, group: &str) -> Result<GroupInfo> {
        whole(self.client.get_json(&group_path(channel, group)).await?)
    }

    /// Creates a group ([`ErrorKind::Conflict`](crate::ErrorKind::Conflict) when it exists).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// let opts = rmds::GroupOptions { max_deliveries: Some(5), ..Default::default() };
    /// m.create_group("chat", "billing", &opts).await?;
    /// # Ok(()) });
    /// ```
    pub async fn create_group(
        &self,
        channel: &str,
        group: &str,
        opts: &GroupOptions,
    ) -> Result<GroupInfo> {
        whole(self.client.create_group(channel, group, opts).await?)
    }

    /// Moves a group's position (replay from `start`).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// # m.create_group("chat", "billing", &Default::default()).await?;
    /// m.reset_group("chat", "billing", rmds::GroupStart::Earliest).await?;
    /// # Ok(()) });
    /// ```
    pub async fn reset_group(
        &self,
        channel: &str,
        group: &str,
        start: GroupStart,
    ) -> Result<GroupInfo> {
        whole(self.client.reset_group(channel, group, start).await?)
    }

    /// Deletes a group.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.alice.mgmt();
    /// # m.create_group("chat", "billing", &Default::default()).await?;
    /// m.delete_group("chat", "billing").await?;
    /// # Ok(()) });
    /// ```
    pub async fn delete_group(&self, channel: &str, group: &str) -> Result<()> {
        self.client.delete_group(channel, group).await
    }

    /// A group's dead letters.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.bob.mgmt(); d.group_dead_letter().await;
    /// for d in m.group_dead_letters("chat", "dlq").await? { println!("{}: {}", d.id, d.reason); }
    /// # Ok(()) });
    /// ```
    pub async fn group_dead_letters(
        &self,
        channel: &str,
        group: &str,
    ) -> Result<Vec<GroupDeadLetter>> {
        field(
            self.client
                .get_json(&format!("{}/dead-letters", group_path(channel, group)))
                .await?,
            "dead_letters",
        )
    }

    /// One dead letter of a group, with its message.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.bob.mgmt(); let id = d.group_dead_letter().await;
    /// let (dead, msg) = m.group_dead_letter("chat", "dlq", &id).await?;
    /// println!("{} after {} deliveries: {}", msg.id, dead.deliveries, dead.reason);
    /// # Ok(()) });
    /// ```
    pub async fn group_dead_letter(
        &self,
        channel: &str,
        group: &str,
        id: &str,
    ) -> Result<(GroupDeadLetter, Message)> {
        let v = self
            .client
            .get_json(&format!(
                "{}/dead-letters/{}",
                group_path(channel, group),
                enc(id)
            ))
            .await?;
        Ok((field(v.clone(), "dead_letter")?, field(v, "message")?))
    }

    /// Delivers a group's dead letter again, once.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.bob.mgmt(); let id = d.group_dead_letter().await;
    /// m.redrive_group_dead_letter("chat", "dlq", &id).await?;
    /// # Ok(()) });
    /// ```
    pub async fn redrive_group_dead_letter(
        &self,
        channel: &str,
        group: &str,
        id: &str,
    ) -> Result<()> {
        self.client
            .redrive_group_dead_letter(channel, group, id)
            .await
            .map(|_| ())
    }

    /// Deletes a group's dead letter.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let m = d.bob.mgmt(); let id = d.group_dead_letter().await;
    /// m.delete_group_dead_letter("chat", "dlq", &id).await?;
    /// # Ok(()) });
    /// ```
    pub async fn delete_group_dead_letter(
        &self,
        channel: &str,
        group: &str,
        id: &str,
    ) -> Result<()> {
        self.client
            .delete(&format!(
                "{}/dead-letters/{}",
                group_path(channel, group),
                enc(id)
            ))
            .await
    }
}
