//! Management kicks in this node's view: a peer removed from a channel (or from all)
//! here, persisted, so that neither its next keepalive nor a restart brings the
//! membership back; and this node kicked itself (it leaves, and says so).

use super::{Discovery, MembershipError};
use crate::names::{Channel, NodeId};
use crate::store::{self, now_ms};

impl Discovery {
    /// Removes `node`'s membership of `channel` (or every membership) from this view
    /// and the store. The channels it no longer belongs to; empty when it was not a
    /// member (a repeated kick changes nothing).
    pub async fn kick_peer(
        &self,
        node: &NodeId,
        channel: Option<&Channel>,
    ) -> Result<Vec<Channel>, MembershipError> {
        let before: Vec<Channel> = self.read(|v| {
            v.snapshot()
                .into_iter()
                .find(|p| p.node_id == node.as_str())
                .map(|p| {
                    p.memberships
                        .keys()
                        .filter_map(|c| Channel::new(c.clone()).ok())
                        .collect()
                })
                .unwrap_or_default()
        });
        let Some(change) = self.write(|v| v.kick(node, channel)) else {
            return Ok(Vec::new());
        };
        let (epoch, api) = self.read(|v| v.identity(node)).unwrap_or_default();
        let seen = store::PeerSeen {
            epoch,
            boot: change.boot,
            version: change.version,
            api,
        };
        let ms: Vec<(String, String)> = change
            .memberships
            .iter()
            .map(|(c, r)| (c.to_string(), r.as_str().to_string()))
            .collect();
        let id = node.to_string();
        let now = now_ms();
        self.store
            .writer
            .run(move |c| store::peers::upsert_peer(c, &id, &seen, now, Some(&ms)))
            .await?;
        let kept: Vec<&Channel> = change.memberships.iter().map(|(c, _)| c).collect();
        Ok(before.into_iter().filter(|c| !kept.contains(&c)).collect())
    }

    /// This node was kicked from `channel` (or from every channel): it leaves them
    /// and announces its new list. The channels it left.
    pub async fn kicked_self(
        &self,
        channel: Option<&Channel>,
    ) -> Result<Vec<Channel>, MembershipError> {
        let own: Vec<Channel> = self
            .own_memberships()
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| channel.is_none_or(|k| k == c))
            .collect();
        let mut left = Vec::new();
        for c in own {
            if self.leave(&c).await? {
                left.push(c);
            }
        }
        Ok(left)
    }
}
