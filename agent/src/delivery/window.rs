//! The sending window of one stream as a pure state machine: no I/O, no clock of its
//! own (callers pass `now`), unit-tested.
//!
//! Go-back-N: up to `window` sequences after the last cumulative ACK are in flight.
//! When the oldest outstanding send is not acknowledged within `ack_timeout` (plus an
//! exponential backoff that grows with each failed round), the whole window is sent
//! again from the first unacknowledged sequence. Rounds only time out while sending is
//! possible (NATS up, receiver online); after `max_attempts` failed rounds the head is
//! dead-lettered and the stream moves on.

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
    /// A smaller window for now (a circuit breaker's probe).
    cap: Option<u64>,
}

impl Window {
    /// A window over a stream whose receiver acknowledged `acked` and whose highest
    /// assigned sequence is `last_seq`.
    pub fn new(cfg: WindowConfig, acked: u64, last_seq: u64) -> Window {
        Window {
            cfg,
            acked,
            last_seq: last_seq.max(acked),
            sent_upto: acked,
            high_sent: acked,
            failed: 0,
            deadline: None,
            hold: None,
            cap: None,
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
    /// first unacknowledged sequence after the backoff. With `count`, the refusal
    /// counts as a failed round towards `max_attempts`.
    pub fn on_refused(&mut self, now: Instant, count: bool) {
        if self.sent_upto == self.acked && self.hold.is_some_and(|h| now < h) {
            // Another refusal of the same round (several batches were in flight).
            return;
        }
        if count {
            self.failed += 1;
        }
        self.restart();
        let wait = self.cfg.backoff(self.failed.max(1));
        self.hold = Some(now + wait);
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
        self.sent_upto = self.sent_upto.max(to);
        self.high_sent = self.high_sent.max(to);
        if self.deadline.is_none() && self.sent_upto > self.acked {
            self.deadline = Some(now + self.cfg.ack_timeout + self.cfg.backoff(self.failed));
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
        self.failed = 0;
        self.deadline = (self.sent_upto > self.acked).then(|| now + self.cfg.ack_timeout);
        AckOutcome::Advanced { from, to: seq }
    }

    /// Start the round again from the first unacknowledged sequence, now, without
    /// counting a failure (the receiver came back, or NATS reconnected).
    pub fn restart(&mut self) {
        self.sent_upto = self.acked;
        self.deadline = None;
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
            // Refusals used up the attempts: the head goes to the dead-letter store.
            let attempts = self.failed;
            return Some(Action::DeadLetter { attempts });
        }
        if let Some(d) = self.deadline {
            if now >= d && self.sent_upto > self.acked {
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
        let limit = self.last_seq.min(self.acked + window);
        if self.sent_upto < limit {
            let from = self.sent_upto + 1;
            return Some(Action::Send {
                from,
                to: limit,
                resend: from <= self.high_sent,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WindowConfig {
        WindowConfig {
            window: 4,
            ack_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_factor: 2.0,
            retry_max: Duration::from_secs(30),
            max_attempts: 3,
        }
    }

    #[test]
    fn given_refusals_then_resends_after_backoff_and_dead_letters_when_counted_out() {
        let t = Instant::now();
        let mut w = Window::new(cfg(), 0, 2);
        assert!(w.poll(t, true).is_some());
        w.on_sent(2, t);
        w.on_refused(t, true);
        assert_eq!(w.poll(t, true), None, "held during the backoff");
        let later = w.held_until().unwrap();
        assert_eq!(
            w.poll(later, true),
            Some(Action::Send {
                from: 1,
                to: 2,
                resend: true
            })
        );
        w.on_sent(2, later);
        w.on_refused(later, true);
        // A second refusal of the same round (another batch of it) does not count.
        w.on_refused(later, true);
        assert_eq!(w.failed_rounds(), 2);
        let t2 = w.held_until().unwrap();
        assert!(matches!(w.poll(t2, true), Some(Action::Send { .. })));
        w.on_sent(2, t2);
        w.on_refused(t2, true);
        let after = w.held_until().unwrap();
        assert_eq!(
            w.poll(after, true),
            Some(Action::DeadLetter { attempts: 3 })
        );
        // Uncounted refusals (a circuit breaker governs) never dead-letter.
        let mut w = Window::new(cfg(), 0, 1);
        for _ in 0..10 {
            w.on_refused(t, false);
        }
        assert!(matches!(
            w.poll(w.held_until().unwrap(), true),
            Some(Action::Send { .. })
        ));
        // A cap of one sends one message at a time.
        w.set_cap(Some(1));
        let mut w2 = Window::new(cfg(), 0, 3);
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
        let mut w = Window::new(cfg(), 0, 10);
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
        let mut w = Window::new(cfg(), 0, 10);
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
        let mut w = Window::new(cfg(), 0, 2);
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
        let mut w = Window::new(cfg(), 0, 1);
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
        let mut w = Window::new(cfg(), 0, 2);
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
        let mut w = Window::new(cfg(), 0, 3);
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
