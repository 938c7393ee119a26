//! Delivery invariants over what applications received: per (sender, reader, channel)
//! stream, which messages were lost, which were delivered more than once, and which
//! arrived out of order.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The verdict for one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// Sending node.
    pub sender: String,
    /// Reading node.
    pub reader: String,
    /// Channel.
    pub channel: String,
    /// Messages the sender published (and that were not expected to expire).
    pub expected: usize,
    /// Messages the reader's application received (duplicates included).
    pub received: usize,
    /// Numbers never received.
    pub lost: Vec<u64>,
    /// Numbers received more than once.
    pub duplicated: Vec<u64>,
    /// (previous, next) pairs where a smaller number followed a larger one.
    pub out_of_order: Vec<(u64, u64)>,
    /// Numbers received that were never sent.
    pub unexpected: Vec<u64>,
}

impl StreamReport {
    /// True when nothing was lost, duplicated, reordered or invented.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.out_of_order.is_empty()
            && self.unexpected.is_empty()
    }

    /// One line naming the stream and every problem with its message numbers.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.lost.is_empty() {
            parts.push(format!("lost {:?}", self.lost));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!("duplicated {:?}", self.duplicated));
        }
        if !self.out_of_order.is_empty() {
            parts.push(format!("out of order {:?}", self.out_of_order));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("never sent {:?}", self.unexpected));
        }
        if parts.is_empty() {
            parts.push("ok".into());
        }
        format!(
            "{} -> {} on {}: expected {}, received {}: {}",
            self.sender,
            self.reader,
            self.channel,
            self.expected,
            self.received,
            parts.join("; ")
        )
    }
}

/// Checks one stream: `sent` in publish order, `received` in delivery order.
pub fn check_stream(
    sender: &str,
    reader: &str,
    channel: &str,
    sent: &[u64],
    received: &[u64],
) -> StreamReport {
    let sent_set: BTreeSet<u64> = sent.iter().copied().collect();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for &n in received {
        *counts.entry(n).or_default() += 1;
    }
    let lost = sent
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(n))
        .collect();
    let duplicated = counts
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&n, _)| n)
        .collect();
    let unexpected = counts
        .keys()
        .copied()
        .filter(|n| !sent_set.contains(n))
        .collect();
    // Order is judged by publish position, on first occurrences only.
    let pos: BTreeMap<u64, usize> = sent.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut seen = BTreeSet::new();
    let mut out_of_order = Vec::new();
    let mut last: Option<u64> = None;
    for &n in received {
        if !seen.insert(n) {
            continue;
        }
        if let (Some(prev), Some(&p), Some(&q)) =
            (last, last.and_then(|l| pos.get(&l)), pos.get(&n))
        {
            if q < p {
                out_of_order.push((prev, n));
            }
        }
        if pos.contains_key(&n) {
            last = Some(n);
        }
    }
    StreamReport {
        sender: sender.into(),
        reader: reader.into(),
        channel: channel.into(),
        expected: sent.len(),
        received: received.len(),
        lost,
        duplicated,
        out_of_order,
        unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_perfect_delivery_then_ok() {
        let r = check_stream("a", "b", "c", &[1, 2, 3], &[1, 2, 3]);
        assert!(r.ok(), "{}", r.describe());
    }

    #[test]
    fn given_faulty_consumer_then_exact_messages_named() {
        // skips 3, repeats 2, swaps 5 and 4, invents 9
        let r = check_stream(
            "alice",
            "bob",
            "chat",
            &[1, 2, 3, 4, 5],
            &[1, 2, 2, 5, 4, 9],
        );
        assert!(!r.ok());
        assert_eq!(r.lost, vec![3]);
        assert_eq!(r.duplicated, vec![2]);
        assert_eq!(r.out_of_order, vec![(5, 4)]);
        assert_eq!(r.unexpected, vec![9]);
        let d = r.describe();
        assert!(d.contains("alice -> bob on chat"), "{d}");
        assert!(
            d.contains("lost [3]") && d.contains("duplicated [2]"),
            "{d}"
        );
    }
}
