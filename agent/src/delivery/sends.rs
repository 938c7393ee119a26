//! When each unacknowledged sequence of a stream was sent: one record per send of a
//! range rather than one entry per message, so that sending a window costs the same
//! whatever its size. Read only when a message is dead-lettered (its history).

use std::collections::VecDeque;

/// Most send times kept per sequence.
pub const MAX_PER_SEQ: usize = 64;
/// Most send records kept per stream (a receiver that never answers is resent to
/// for as long as it is retried; the oldest records go first).
const MAX_RECORDS: usize = 4096;

/// Send records of one stream, in send order.
#[derive(Debug, Default, Clone)]
pub struct SendLog {
    /// (from, to, at ms).
    sends: VecDeque<(u64, u64, i64)>,
}

impl SendLog {
    /// Records that `from..=to` was sent at `at`.
    pub fn sent(&mut self, from: u64, to: u64, at: i64) {
        if from <= to {
            self.sends.push_back((from, to, at));
            if self.sends.len() > MAX_RECORDS {
                self.sends.pop_front();
            }
        }
    }

    /// Forgets sends of sequences at or below `upto` (acknowledged), first calling
    /// `latest(at, n)` for the `n` of them whose last send was at `at` (ms), so that
    /// the caller can time send-to-ACK. Costs one pass over the records the ACK
    /// covers, not one step per message.
    pub fn acked(&mut self, upto: u64, mut latest: impl FnMut(i64, u64)) {
        // Newest records first: the part of a record that a newer one covers was
        // sent again later.
        let mut covered: Vec<(u64, u64)> = Vec::new();
        for &(from, to, at) in self.sends.iter().rev() {
            let to = to.min(upto);
            if from > to {
                continue;
            }
            let n = uncovered(&covered, from, to);
            if n > 0 {
                latest(at, n);
                covered.push((from, to));
            }
        }
        self.sends.retain_mut(|(from, to, _)| {
            if *to <= upto {
                return false;
            }
            *from = (*from).max(upto + 1);
            true
        });
    }

    /// Send times of `seq`, oldest first, at most [`MAX_PER_SEQ`] (the latest).
    pub fn history(&self, seq: u64) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .sends
            .iter()
            .filter(|(from, to, _)| (*from..=*to).contains(&seq))
            .map(|(_, _, at)| *at)
            .collect();
        if times.len() > MAX_PER_SEQ {
            times.drain(..times.len() - MAX_PER_SEQ);
        }
        times
    }

    /// Records kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sends.len()
    }

    /// No records.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }
}

/// How many of `from..=to` no range in `covered` holds (ranges may overlap).
fn uncovered(covered: &[(u64, u64)], from: u64, to: u64) -> u64 {
    let mut parts: Vec<(u64, u64)> = covered
        .iter()
        .filter(|(a, b)| *a <= to && *b >= from)
        .map(|(a, b)| ((*a).max(from), (*b).min(to)))
        .collect();
    parts.sort_unstable();
    let (mut held, mut next) = (0u64, from);
    for (a, b) in parts {
        let a = a.max(next);
        if a <= b {
            held += b - a + 1;
            next = b + 1;
        }
    }
    (to - from + 1) - held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_sends_and_resends_then_each_sequence_has_its_own_times() {
        let mut log = SendLog::default();
        log.sent(1, 10, 100);
        log.sent(5, 10, 200);
        log.sent(11, 12, 250);
        assert_eq!(log.history(3), vec![100]);
        assert_eq!(log.history(7), vec![100, 200]);
        assert_eq!(log.history(12), vec![250]);
        assert!(log.history(13).is_empty());
    }

    #[test]
    fn given_an_ack_then_records_below_it_go_and_partial_ones_shrink() {
        let mut log = SendLog::default();
        log.sent(1, 10, 100);
        log.sent(11, 20, 200);
        log.acked(12, |_, _| {});
        assert_eq!(log.len(), 1);
        assert!(log.history(11).is_empty());
        assert_eq!(log.history(13), vec![200]);
        log.acked(20, |_, _| {});
        assert!(log.is_empty());
    }

    #[test]
    fn given_many_resends_then_only_the_latest_times_are_kept_per_sequence() {
        let mut log = SendLog::default();
        for i in 0..100 {
            log.sent(1, 1, i);
        }
        let h = log.history(1);
        assert_eq!(h.len(), MAX_PER_SEQ);
        assert_eq!(h.last(), Some(&99));
        assert_eq!(h.first(), Some(&(100 - MAX_PER_SEQ as i64)));
    }

    #[test]
    fn given_resends_when_acked_then_each_message_is_timed_from_its_last_send() {
        let mut log = SendLog::default();
        log.sent(1, 10, 100);
        log.sent(1, 4, 200); // resent the head
        log.sent(11, 20, 300);
        log.sent(3, 6, 400); // and part of it again
        let mut seen = Vec::new();
        log.acked(15, |at, n| seen.push((at, n)));
        seen.sort_unstable();
        // 3..=6 at 400; 1, 2 at 200; 7..=10 at 100; 11..=15 at 300.
        assert_eq!(seen, vec![(100, 4), (200, 2), (300, 5), (400, 4)]);
        let total: u64 = seen.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 15);
        let mut again = Vec::new();
        log.acked(15, |at, n| again.push((at, n)));
        assert!(again.is_empty(), "acknowledged sends are forgotten");
    }

    #[test]
    fn given_overlapping_ranges_then_uncovered_counts_each_sequence_once() {
        assert_eq!(uncovered(&[], 1, 10), 10);
        assert_eq!(uncovered(&[(3, 6), (5, 8)], 1, 10), 4);
        assert_eq!(uncovered(&[(0, 20)], 1, 10), 0);
        assert_eq!(uncovered(&[(11, 20)], 1, 10), 10);
    }
}
