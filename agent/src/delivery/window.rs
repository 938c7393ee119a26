//! The sending window of one stream as a pure state machine: no I/O, no clock of its
//! own (callers pass `now`), unit-tested.
//!
//! Go-back-N: up to `window` sequences after the last cumulative ACK are in flight.
//! When the oldest outstanding send is not acknowledged within `ack_timeout` (plus an
//! exponential backoff that grows with each failed round), the whole window is sent
//! again from the first unacknowledged sequence. Rounds only time out while sending is
//! possible (NATS up, receiver online); after `max_attempts` failed rounds the head is
//! dead-lettered and the stream moves on.
//!
//! Two rules keep a crash or a full disk from turning into dead letters:
//! - A window built at start treats every sequence already assigned as possibly sent
//!   in an earlier life of the process: the receiver may have committed and
//!   acknowledged more than the sender's stored ACK says, and that ACK must move the
//!   stream, not be refused as "never sent".
//! - A refusal (the receiver could not store) is never a failed attempt. The stream
//!   holds with its own backoff, and until an ACK shows progress again, rounds that
//!   time out are not counted either: the receiver is there but cannot take more, as
//!   if it were offline.

use std::time::{Duration, Instant};

/// Timing and size limits of a window.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Sequences in flight.
    pub window: u64,
    /// Wait for an ACK before a round fails.
    pub ack_timeout: Duration,
    /// First backoff step.
    pub retry_initial: Duration,
    /// Backoff multiplier.
    pub retry_factor: f64,
    /// Backoff ceiling.
    pub retry_max: Duration,
    /// Failed rounds before the head is dead-lettered.
    pub max_attempts: u32,
    /// Sends awaiting their ACK after which new sequences wait to fill a frame
    /// (0: no limit). Self-clocked batching: under load, what is published while
    /// frames are in flight leaves as one larger frame when an ACK comes back, or as
    /// soon as `fill` sequences are waiting; an idle stream sends at once.
    pub max_sends: usize,
    /// Waiting sequences that are sent even while `max_sends` are in flight (a full
    /// frame).
    pub fill: u64,
}

impl WindowConfig {
    /// Extra wait after `failed` failed rounds: 0, initial, initial*factor, ... capped.
    pub fn backoff(&self, failed: u32) -> Duration {
        if failed == 0 {
            return Duration::ZERO;
        }
        let secs = self.retry_initial.as_secs_f64() * self.retry_factor.powi(failed as i32 - 1);
        Duration::from_secs_f64(secs.min(self.retry_max.as_secs_f64()))
    }
}

/// What the actor must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read and publish sequences `from..=to`.
    Send {
        /// First sequence.
        from: u64,
        /// Last sequence.
        to: u64,
        /// Some of them were sent before.
        resend: bool,
    },
    /// The head failed `attempts` rounds: dead-letter the first live sequence after
    /// `acked`, then the window restarts from there.
    DeadLetter {
        /// Failed rounds.
        attempts: u32,
    },
}

/// How an ACK was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Progress: `from..=to` are now acknowledged.
    Advanced {
        /// First newly acknowledged.
        from: u64,
        /// Last newly acknowledged.
        to: u64,
    },
    /// Old or duplicate: nothing changes.
    Stale,
    /// For a sequence never sent: ignored.
    Invalid,
}

/// The window state of one stream.
#[derive(Debug, Clone)]
pub struct Window {
    cfg: WindowConfig,
    acked: u64,
    last_seq: u64,
    sent_upto: u64,
    high_sent: u64,
    failed: u32,
    deadline: Option<Instant>,
    /// Nothing is sent before this (after a refusal).
    hold: Option<Instant>,
    /// Refusals since the last progress; nonzero means the receiver cannot store and
    /// rounds do not count towards `max_attempts`.
    refusals: u32,
    /// A smaller window for now (a circuit breaker's probe).
    cap: Option<u64>,
    /// The last sequence of each send awaiting its ACK, oldest first.
    sends: std::collections::VecDeque<u64>,
}

impl Window {
    /// A window over a stream whose receiver acknowledged `acked` (as far as the
    /// store knows) and whose highest assigned sequence is `last_seq`. Sequences up to
    /// `prior` (those assigned before this process started) may have been sent by an
    /// earlier life, so ACKs up to there are valid; above it only what this window
    /// sent can be acknowledged.
    pub fn new(cfg: WindowConfig, acked: u64, last_seq: u64, prior: u64) -> Window {
        let last_seq = last_seq.max(acked);
        Window {
            cfg,
            acked,
            last_seq,
            sent_upto: acked,
            high_sent: prior.min(last_seq).max(acked),
            failed: 0,
            deadline: None,
            hold: None,
            refusals: 0,
            cap: None,
            sends: std::collections::VecDeque::new(),
        }
    }

    /// New limits (the channel's policy changed).
    pub fn set_config(&mut self, cfg: WindowConfig) {
        self.cfg = cfg;
    }

    /// Caps the sequences in flight below the configured window (None: no cap).
    pub fn set_cap(&mut self, cap: Option<u64>) {
        self.cap = cap;
    }

    /// When a held stream may send again.
    pub fn held_until(&self) -> Option<Instant> {
        self.hold
    }

    /// The receiver refused the round (it could not store it): resend from the
    /// first unacknowledged sequence after a backoff that grows with each refusal.
    /// A refusal never counts towards `max_attempts`.
    pub fn on_refused(&mut self, now: Instant) {
        if self.sent_upto == self.acked && self.hold.is_some_and(|h| now < h) {
            // Another refusal of the same round (several batches were in flight).
            return;
        }
        self.refusals = self.refusals.saturating_add(1);
        self.restart();
        let wait = self.cfg.backoff(self.refusals);
        self.hold = Some(now.checked_add(wait).unwrap_or(now));
    }

    /// Whether the receiver refused since the last progress.
    pub fn refusing(&self) -> bool {
        self.refusals > 0
    }

    /// Highest cumulative ACK.
    pub fn acked(&self) -> u64 {
        self.acked
    }
    /// Highest sequence assigned.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
    /// Failed rounds of the current head.
    pub fn failed_rounds(&self) -> u32 {
        self.failed
    }
    /// When the outstanding round times out, if one is outstanding.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// Whether everything assigned is acknowledged.
    pub fn idle(&self) -> bool {
        self.acked >= self.last_seq
    }

    /// New sequences were assigned up to `seq`.
    pub fn on_new(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }

    /// Sequences up to `to` were published at `now`.
    pub fn on_sent(&mut self, to: u64, now: Instant) {
        if to > self.sent_upto {
            self.sends.push_back(to);
        }
        self.sent_upto = self.sent_upto.max(to);
        self.high_sent = self.high_sent.max(to);
        if self.deadline.is_none() && self.sent_upto > self.acked {
            let wait = self
                .cfg
                .ack_timeout
                .saturating_add(self.cfg.backoff(self.failed));
            self.deadline = Some(now.checked_add(wait).unwrap_or(now));
        }
    }

    /// A cumulative ACK for `seq` arrived at `now`.
    pub fn on_ack(&mut self, seq: u64, now: Instant) -> AckOutcome {
        if seq <= self.acked {
            return AckOutcome::Stale;
        }
        if seq > self.high_sent {
            return AckOutcome::Invalid;
        }
        let from = self.acked + 1;
        self.acked = seq;
        self.sent_upto = self.sent_upto.max(seq);
        while self.sends.front().is_some_and(|&to| to <= seq) {
            self.sends.pop_front();
        }
        self.failed = 0;
        self.refusals = 0;
        self.deadline = (self.sent_upto > self.acked)
            .then(|| now.checked_add(self.cfg.ack_timeout).unwrap_or(now));
        AckOutcome::Advanced { from, to: seq }
    }

    /// Start the round again from the first unacknowledged sequence, now, without
    /// counting a failure (the receiver came back, or NATS reconnected).
    pub fn restart(&mut self) {
        self.sent_upto = self.acked;
        self.deadline = None;
        self.sends.clear();
    }

    /// Sends awaiting their ACK.
    pub fn sends_in_flight(&self) -> usize {
        self.sends.len()
    }

    /// The head was dead-lettered: restart the round with a fresh attempt count.
    pub fn on_dead_lettered(&mut self) {
        self.failed = 0;
        self.restart();
    }

    /// The next thing to do at `now`; `can_send` is false while NATS is down or the
    /// receiver is offline, and then no round fails.
    pub fn poll(&mut self, now: Instant, can_send: bool) -> Option<Action> {
        if !can_send {
            return None;
        }
        if let Some(h) = self.hold {
            if now < h {
                return None;
            }
            self.hold = None;
        }
        if self.failed >= self.cfg.max_attempts
            && self.deadline.is_none()
            && self.sent_upto == self.acked
            && self.last_seq > self.acked
        {
            // A dead-letter action that was not carried out (the store refused): again.
            let attempts = self.failed;
            return Some(Action::DeadLetter { attempts });
        }
        if let Some(d) = self.deadline {
            if now >= d && self.sent_upto > self.acked {
                if self.refusals > 0 {
                    // A refusing receiver: wait as for an offline one, count nothing.
                    self.restart();
                    self.hold = Some(
                        now.checked_add(self.cfg.backoff(self.refusals))
                            .unwrap_or(now),
                    );
                    return None;
                }
                self.failed += 1;
                if self.failed >= self.cfg.max_attempts {
                    let attempts = self.failed;
                    // Restarted, so that the head is dead-lettered even if this action
                    // is not carried out now (the check at the top fires again).
                    self.restart();
                    return Some(Action::DeadLetter { attempts });
                }
                self.restart();
            }
        }
        let window = self.cap.map_or(self.cfg.window, |c| c.min(self.cfg.window));
        let limit = self.last_seq.min(self.acked.saturating_add(window));
        if self.sent_upto < limit {
            let from = self.sent_upto + 1;
            let resend = from <= self.high_sent;
            let waiting = limit - self.sent_upto;
            if !resend
                && self.cfg.max_sends > 0
                && self.sends.len() >= self.cfg.max_sends
                && waiting < self.cfg.fill.max(1)
            {
                // Enough is in flight: let new sequences gather into a larger frame
                // until an ACK comes back or a frame's worth is waiting.
                return None;
            }
            return Some(Action::Send {
                from,
                to: limit,
                resend,
            });
        }
        None
    }
}

#[cfg(test)]
mod coalesce_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of this process's life with `n` sequences assigned, none sent yet.
    fn fresh(n: u64) -> Window {
        let mut w = Window::new(cfg(), 0, 0, 0);
        w.on_new(n);
        w
    }

    pub(super) fn cfg() -> WindowConfig {
        WindowConfig {
            window: 4,
            ack_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_factor: 2.0,
            retry_max: Duration::from_secs(30),
            max_attempts: 3,
            max_sends: 0,
            fill: 128,
        }
    }

    #[test]
    fn given_refusals_then_resends_after_a_growing_backoff_and_never_dead_letters() {
        let t = Instant::now();
        let mut w = fresh(2);
        assert!(w.poll(t, true).is_some());
        w.on_sent(2, t);
        w.on_refused(t);
        assert!(w.refusing());
        assert_eq!(w.poll(t, true), None, "held during the backoff");
        let later = w.held_until().unwrap();
        assert_eq!(later, t + Duration::from_secs(1));
        assert_eq!(
            w.poll(later, true),
            Some(Action::Send {
                from: 1,
                to: 2,
                resend: true
            })
        );
        w.on_sent(2, later);
        w.on_refused(later);
        // A second refusal of the same round (another batch of it) does not count.
        w.on_refused(later);
        assert_eq!(w.held_until(), Some(later + Duration::from_secs(2)));
        let mut now = w.held_until().unwrap();
        for _ in 0..50 {
            match w.poll(now, true) {
                Some(Action::Send { to, .. }) => {
                    w.on_sent(to, now);
                    w.on_refused(now);
                }
                other => assert_eq!(other, None, "a refusal must never dead-letter"),
            }
            now = w.held_until().unwrap_or(now + Duration::from_secs(1));
        }
        assert_eq!(w.failed_rounds(), 0);
        assert_eq!(w.held_until().map(|h| h - now), Some(Duration::ZERO));
        // Progress ends the refusal mode.
        assert!(matches!(w.poll(now, true), Some(Action::Send { .. })));
        w.on_sent(2, now);
        assert_eq!(w.on_ack(1, now), AckOutcome::Advanced { from: 1, to: 1 });
        assert!(!w.refusing());
    }

    #[test]
    fn given_a_refusing_receiver_when_rounds_time_out_then_no_attempt_is_counted() {
        let t = Instant::now();
        let mut w = fresh(1);
        w.poll(t, true);
        w.on_sent(1, t);
        w.on_refused(t);
        let mut now = w.held_until().unwrap();
        for _ in 0..20 {
            if let Some(Action::Send { to, .. }) = w.poll(now, true) {
                w.on_sent(to, now);
            }
            // No answer at all this round: it times out.
            now += Duration::from_secs(60);
        }
        assert_eq!(w.failed_rounds(), 0);
    }

    #[test]
    fn given_a_restarted_sender_when_the_receiver_acks_more_than_the_stored_ack_then_the_stream_moves(
    ) {
        let t = Instant::now();
        // Stored ACK 10, sequences up to 500 assigned before the crash; the receiver
        // had committed 300 of them.
        let mut w = Window::new(cfg(), 10, 500, 500);
        assert_eq!(
            w.poll(t, true),
            Some(Action::Send {
                from: 11,
                to: 14,
                resend: true
            })
        );
        w.on_sent(14, t);
        assert_eq!(w.on_ack(300, t), AckOutcome::Advanced { from: 11, to: 300 });
        assert_eq!(w.on_ack(501, t), AckOutcome::Invalid);
        // Sequences assigned in this life only count once sent.
        let mut w2 = Window::new(cfg(), 10, 500, 200);
        assert_eq!(
            w2.on_ack(200, t),
            AckOutcome::Advanced { from: 11, to: 200 }
        );
        assert_eq!(w2.on_ack(300, t), AckOutcome::Invalid);
        assert_eq!(
            w.poll(t, true),
            Some(Action::Send {
                from: 301,
                to: 304,
                resend: true
            })
        );
    }

    #[test]
    fn given_a_cap_then_one_message_at_a_time() {
        let t = Instant::now();
        let mut w2 = fresh(3);
        w2.set_cap(Some(1));
        assert_eq!(
            w2.poll(t, true),
            Some(Action::Send {
                from: 1,
                to: 1,
                resend: false
            })
        );
    }

    #[test]
    fn given_backlog_when_polled_then_sends_at_most_window() {
        let t = Instant::now();
        let mut w = fresh(10);
        assert_eq!(
            w.poll(t, true),
            Some(Action::Send {
                from: 1,
                to: 4,
                resend: false
            })
        );
        w.on_sent(4, t);
        assert_eq!(w.poll(t, true), None);
        assert_eq!(w.on_ack(2, t), AckOutcome::Advanced { from: 1, to: 2 });
        assert_eq!(
            w.poll(t, true),
            Some(Action::Send {
                from: 5,
                to: 6,
                resend: false
            })
        );
    }

    #[test]
    fn given_stale_duplicate_or_unsent_acks_then_nothing_moves() {
        let t = Instant::now();
        let mut w = fresh(10);
        w.poll(t, true);
        w.on_sent(4, t);
        assert_eq!(w.on_ack(3, t), AckOutcome::Advanced { from: 1, to: 3 });
        assert_eq!(w.on_ack(3, t), AckOutcome::Stale);
        assert_eq!(w.on_ack(1, t), AckOutcome::Stale);
        assert_eq!(w.on_ack(9, t), AckOutcome::Invalid);
        assert_eq!(w.acked(), 3);
    }

    #[test]
    fn given_no_ack_when_timeout_passes_then_go_back_n_with_backoff() {
        let t = Instant::now();
        let mut w = fresh(2);
        w.poll(t, true);
        w.on_sent(2, t);
        assert_eq!(w.deadline(), Some(t + Duration::from_secs(10)));
        assert_eq!(w.poll(t + Duration::from_secs(9), true), None);
        let t1 = t + Duration::from_secs(10);
        assert_eq!(
            w.poll(t1, true),
            Some(Action::Send {
                from: 1,
                to: 2,
                resend: true
            })
        );
        w.on_sent(2, t1);
        // Second round waits ack_timeout + 1 s of backoff.
        assert_eq!(w.deadline(), Some(t1 + Duration::from_secs(11)));
        assert_eq!(cfg().backoff(3), Duration::from_secs(4));
        assert_eq!(cfg().backoff(20), Duration::from_secs(30));
    }

    #[test]
    fn given_offline_receiver_when_time_passes_then_no_attempt_is_spent() {
        let t = Instant::now();
        let mut w = fresh(1);
        w.poll(t, true);
        w.on_sent(1, t);
        for s in 1..100 {
            assert_eq!(w.poll(t + Duration::from_secs(s * 60), false), None);
        }
        assert_eq!(w.failed_rounds(), 0);
        // Back online: resend at once.
        w.restart();
        assert_eq!(
            w.poll(t + Duration::from_secs(6000), true),
            Some(Action::Send {
                from: 1,
                to: 1,
                resend: true
            })
        );
        assert_eq!(w.failed_rounds(), 0);
    }

    #[test]
    fn given_dead_receiver_when_max_attempts_fail_then_dead_letter_and_move_on() {
        let mut t = Instant::now();
        let mut w = fresh(2);
        let mut rounds = 0;
        loop {
            match w.poll(t, true) {
                Some(Action::Send { to, .. }) => {
                    rounds += 1;
                    w.on_sent(to, t);
                }
                Some(Action::DeadLetter { attempts }) => {
                    assert_eq!(attempts, 3);
                    break;
                }
                None => {}
            }
            t += Duration::from_secs(1);
            assert!(rounds < 10, "never dead-lettered");
        }
        assert_eq!(rounds, 3);
        w.on_dead_lettered();
        assert_eq!(
            w.poll(t, true),
            Some(Action::Send {
                from: 1,
                to: 2,
                resend: true
            })
        );
        assert_eq!(w.failed_rounds(), 0);
    }

    #[test]
    fn given_progress_when_ack_arrives_then_failures_reset() {
        let t = Instant::now();
        let mut w = fresh(3);
        w.poll(t, true);
        w.on_sent(3, t);
        let t1 = t + Duration::from_secs(11);
        w.poll(t1, true);
        w.on_sent(3, t1);
        assert_eq!(w.failed_rounds(), 1);
        w.on_ack(1, t1);
        assert_eq!(w.failed_rounds(), 0);
        assert_eq!(w.deadline(), Some(t1 + Duration::from_secs(10)));
        w.on_ack(3, t1);
        assert_eq!(w.deadline(), None);
        assert!(w.idle());
    }
}
