//! Membership lists as digests and pages: pure, no I/O, unit-tested.
//!
//! A keepalive carries only a [`Digest`] of its sender's memberships. A peer that
//! sees a digest newer than what it knows, with a different hash, fetches the list
//! page by page ([`paginate`] on the answering side, [`Assembly`] on the asking side);
//! every page fits under the NATS max payload whatever the number of channels.

use crate::names::{Channel, NodeId, Role};
use crate::wire::{Digest, Stamp, StatePage};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Bytes a page frame adds around its memberships (header, ids, digest, signature).
pub const PAGE_OVERHEAD: usize = 512;

/// Upper bound of the encoded size of one membership besides its channel name.
const ENTRY_OVERHEAD: usize = 16;

/// Most pages a list may have (a bound against forged answers).
pub const MAX_PAGES: u32 = 100_000;

/// Times an assembly starts again because the list changed while it was read.
const MAX_RESTARTS: u32 = 3;

/// Hash of a membership list (sorted by channel, as a `BTreeMap` iterates).
pub fn hash(memberships: &BTreeMap<Channel, Role>) -> u64 {
    let mut h = Sha256::new();
    for (c, r) in memberships {
        h.update(c.as_str().as_bytes());
        h.update([0]);
        h.update(r.as_str().as_bytes());
        h.update([b'\n']);
    }
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_le_bytes(first)
}

/// The digest of `memberships` at `version`.
pub fn digest(version: Stamp, memberships: &BTreeMap<Channel, Role>) -> Digest {
    Digest {
        version,
        hash: hash(memberships),
        count: u32::try_from(memberships.len()).unwrap_or(u32::MAX),
    }
}

/// Splits `memberships` into pages whose frames fit in `max_payload` bytes; always at
/// least one page (an empty list is one empty page).
pub fn paginate(
    memberships: &BTreeMap<Channel, Role>,
    max_payload: usize,
) -> Vec<Vec<(Channel, Role)>> {
    let budget = max_payload.saturating_sub(PAGE_OVERHEAD);
    let mut pages = vec![Vec::new()];
    let mut used = 0usize;
    for (c, r) in memberships {
        let size = c.as_str().len() + ENTRY_OVERHEAD;
        let full = pages.last().is_some_and(|p| !p.is_empty()) && used + size > budget;
        if full {
            pages.push(Vec::new());
            used = 0;
        }
        if let Some(p) = pages.last_mut() {
            p.push((c.clone(), *r));
        }
        used += size;
    }
    pages
}

/// The next step of an [`Assembly`].
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Ask for this page next.
    Next(u32),
    /// The whole list, verified against its digest.
    Done(Digest, BTreeMap<Channel, Role>),
    /// Give up (the answer is stale, inconsistent or forged); try again later.
    Failed(&'static str),
}

/// Collects the pages of one node's membership list, at least as new as `want`.
#[derive(Debug)]
pub struct Assembly {
    /// The node whose list this is.
    node: NodeId,
    /// The version announced: an answer older than this is stale.
    want: Stamp,
    /// The digest of the pages collected so far.
    digest: Option<Digest>,
    /// How many pages that list has.
    pages: u32,
    /// Collected so far.
    got: Vec<(Channel, Role)>,
    /// Next page expected.
    next: u32,
    /// Times started again.
    restarts: u32,
}

impl Assembly {
    /// Starts collecting `node`'s list, announced at version `want`; ask for page 0.
    pub fn new(node: NodeId, want: Stamp) -> Assembly {
        Assembly {
            node,
            want,
            digest: None,
            pages: 0,
            got: Vec::new(),
            next: 0,
            restarts: 0,
        }
    }

    /// Takes one answer.
    pub fn accept(&mut self, page: StatePage) -> Step {
        if page.node != self.node {
            return Step::Failed("page of another node");
        }
        if page.digest.version < self.want {
            return Step::Failed("page older than the announced version");
        }
        if page.pages == 0 || page.pages > MAX_PAGES || page.page >= page.pages {
            return Step::Failed("bad page numbers");
        }
        if self.digest != Some(page.digest) {
            // First page, or the list changed while it was read: start over.
            if self.digest.is_some() {
                self.restarts += 1;
                if self.restarts > MAX_RESTARTS {
                    return Step::Failed("list keeps changing");
                }
            }
            self.digest = Some(page.digest);
            self.pages = page.pages;
            self.got.clear();
            self.next = 0;
            if page.page != 0 {
                return Step::Next(0);
            }
        } else if page.page != self.next {
            return Step::Failed("unexpected page");
        }
        self.got.extend(page.memberships);
        if self.got.len() > page.digest.count as usize {
            return Step::Failed("more memberships than the digest counts");
        }
        self.next = page.page + 1;
        if self.next < self.pages {
            return Step::Next(self.next);
        }
        let list: BTreeMap<Channel, Role> = self.got.drain(..).collect();
        let d = page.digest;
        if list.len() != d.count as usize || hash(&list) != d.hash {
            return Step::Failed("pages do not match their digest");
        }
        Step::Done(d, list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Codec, Packet};

    fn list(n: usize) -> BTreeMap<Channel, Role> {
        (0..n)
            .map(|i| {
                let name = format!("{i:05}-{}", "x".repeat(58));
                (Channel::new(name).unwrap(), Role::Reader)
            })
            .collect()
    }

    fn pages_of(node: &str, ms: &BTreeMap<Channel, Role>, max: usize, v: Stamp) -> Vec<StatePage> {
        let d = digest(v, ms);
        let pages = paginate(ms, max);
        let n = pages.len() as u32;
        pages
            .into_iter()
            .enumerate()
            .map(|(i, memberships)| StatePage {
                node: NodeId::new(node).unwrap(),
                digest: d,
                page: i as u32,
                pages: n,
                memberships,
            })
            .collect()
    }

    fn v(boot: u64, counter: u64) -> Stamp {
        Stamp { boot, counter }
    }

    #[test]
    fn given_many_long_channels_when_paginated_then_every_signed_frame_fits() {
        let ms = list(3000);
        let codec = Codec::new(Some("key"));
        let pages = pages_of("bob", &ms, 4096, v(1, 2));
        assert!(pages.len() > 40);
        for p in &pages {
            let frame = codec.encode(&Packet::State(p.clone()));
            assert!(frame.len() <= 4096, "page of {} bytes", frame.len());
        }
        assert_eq!(
            pages.iter().map(|p| p.memberships.len()).sum::<usize>(),
            3000
        );
    }

    #[test]
    fn given_every_page_when_assembled_then_the_list_matches_its_digest() {
        let ms = list(500);
        let pages = pages_of("bob", &ms, 2048, v(1, 5));
        let mut a = Assembly::new(NodeId::new("bob").unwrap(), v(1, 5));
        let mut last = None;
        for (i, p) in pages.into_iter().enumerate() {
            match a.accept(p) {
                Step::Next(n) => assert_eq!(n as usize, i + 1),
                done => last = Some(done),
            }
        }
        assert_eq!(last, Some(Step::Done(digest(v(1, 5), &ms), ms)));
    }

    #[test]
    fn given_an_empty_list_when_paginated_then_one_empty_page_assembles() {
        let ms = BTreeMap::new();
        let mut pages = pages_of("bob", &ms, 1024, v(2, 0));
        assert_eq!(pages.len(), 1);
        let mut a = Assembly::new(NodeId::new("bob").unwrap(), v(2, 0));
        assert_eq!(
            a.accept(pages.remove(0)),
            Step::Done(digest(v(2, 0), &ms), ms)
        );
    }

    #[test]
    fn given_an_answer_older_than_announced_when_accepted_then_failed() {
        let ms = list(3);
        let mut pages = pages_of("bob", &ms, 4096, v(1, 4));
        let mut a = Assembly::new(NodeId::new("bob").unwrap(), v(1, 5));
        assert!(matches!(a.accept(pages.remove(0)), Step::Failed(_)));
    }

    #[test]
    fn given_the_list_changes_mid_read_when_a_newer_page_arrives_then_start_over() {
        let old = list(200);
        let new = list(201);
        let old_pages = pages_of("bob", &old, 2048, v(1, 5));
        let new_pages = pages_of("bob", &new, 2048, v(1, 6));
        let mut a = Assembly::new(NodeId::new("bob").unwrap(), v(1, 5));
        assert_eq!(a.accept(old_pages[0].clone()), Step::Next(1));
        assert_eq!(a.accept(new_pages[1].clone()), Step::Next(0));
        let mut last = None;
        for p in new_pages {
            last = Some(a.accept(p));
        }
        assert_eq!(last, Some(Step::Done(digest(v(1, 6), &new), new)));
    }

    #[test]
    fn given_tampered_pages_when_assembled_then_failed() {
        let ms = list(10);
        let mut pages = pages_of("bob", &ms, 1 << 20, v(1, 1));
        pages[0].memberships[0].1 = Role::Writer;
        let mut a = Assembly::new(NodeId::new("bob").unwrap(), v(1, 1));
        assert!(matches!(a.accept(pages.remove(0)), Step::Failed(_)));
        let mut other = pages_of("eve", &ms, 1 << 20, v(1, 1));
        let mut a = Assembly::new(NodeId::new("bob").unwrap(), v(1, 1));
        assert!(matches!(a.accept(other.remove(0)), Step::Failed(_)));
    }
}
