//! The I/O of membership lists: answering page requests and fetching a peer's list.
//!
//! The logic (pages, assembly, verification) is in [`super::state`]; this file only
//! sends requests and answers over the transport.

use super::state::{self, Assembly, Step};
use crate::names::{Channel, NodeId, Role};
use crate::transport::Transport;
use crate::wire::{Digest, Packet, StatePage, StateRequest};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one page request waits for its answer.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a fetch gave up (it is tried again at the peer's next keepalive).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be sent or was not answered.
    #[error("no answer: {0}")]
    Transport(#[from] crate::transport::SendError),
    /// The answer was not a page.
    #[error("answer is not a membership page")]
    NotAPage,
    /// The pages were stale, inconsistent or did not match their digest.
    #[error("refused pages: {0}")]
    Refused(&'static str),
}

/// This node's list cut into pages at one digest, kept until the list changes.
#[derive(Debug, Default)]
pub struct Pages {
    /// Digest and max payload the pages were cut for.
    cut_for: Option<(Digest, usize)>,
    pages: Vec<Vec<(Channel, Role)>>,
}

impl Pages {
    /// Page `page` (page 0 when past the end) of this node's list, whose digest is
    /// `current` now; `load` reads the digest and list together when they must be
    /// cut again.
    pub fn page(
        &mut self,
        me: &NodeId,
        current: Digest,
        load: impl FnOnce() -> (Digest, BTreeMap<Channel, Role>),
        max_payload: usize,
        page: u32,
    ) -> Option<StatePage> {
        let digest = match self.cut_for {
            Some((d, m)) if d == current && m == max_payload => d,
            _ => {
                let (d, own) = load();
                self.pages = state::paginate(&own, max_payload);
                self.cut_for = Some((d, max_payload));
                d
            }
        };
        let index = if (page as usize) < self.pages.len() {
            page
        } else {
            0
        };
        let memberships = self.pages.get(index as usize)?.clone();
        Some(StatePage {
            node: me.clone(),
            digest,
            page: index,
            pages: u32::try_from(self.pages.len()).unwrap_or(u32::MAX),
            memberships,
        })
    }
}

/// Fetches `node`'s whole list, at least as new as the announced `want`, page by page.
pub async fn fetch(
    transport: Transport,
    me: NodeId,
    node: NodeId,
    want: crate::wire::Stamp,
) -> Result<(Digest, BTreeMap<Channel, Role>), FetchError> {
    let mut assembly = Assembly::new(node.clone(), want);
    let mut page = 0;
    let subject = transport.state_subject(&node);
    loop {
        let req = Packet::StateRequest(StateRequest {
            asker: me.clone(),
            node: node.clone(),
            page,
        });
        let answer = transport
            .request(subject.clone(), &req, PAGE_TIMEOUT)
            .await?;
        let Packet::State(p) = answer else {
            return Err(FetchError::NotAPage);
        };
        match assembly.accept(p) {
            Step::Next(n) => page = n,
            Step::Done(d, list) => return Ok((d, list)),
            Step::Failed(why) => return Err(FetchError::Refused(why)),
        }
    }
}
