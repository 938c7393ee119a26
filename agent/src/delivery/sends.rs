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

    /// Forgets sends of sequences at or below `upto` (acknowledged).
    pub fn acked(&mut self, upto: u64) {
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
        log.acked(12);
        assert_eq!(log.len(), 1);
        assert!(log.history(11).is_empty());
        assert_eq!(log.history(13), vec![200]);
        log.acked(20);
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
}
