//! Circuit breaker of one stream, as a pure state machine (callers pass `now`).
//!
//! Closed: rounds go out; the outcome of each round (ACK progress, or a refusal or
//! timeout from a receiver that is online) is recorded over the last rounds. When at
//! least `min_requests` were recorded and the failed share reaches `error_threshold`,
//! the circuit opens. Open: nothing is sent until `open_timeout` has passed. Half-open:
//! one message at a time is sent as a probe; `success_threshold` successes close the
//! circuit, a failure opens it again. Messages are never dropped by the breaker: they
//! wait, like for an offline receiver.

use crate::policy::Breaker as Settings;
use std::collections::VecDeque;
use std::time::Instant;

/// Where the circuit stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Sending normally.
    Closed,
    /// Not sending until the instant.
    Open(Instant),
    /// Probing; the count of successful probes so far.
    HalfOpen(u32),
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    None,
    /// The circuit opened.
    Opened,
    /// The circuit closed.
    Closed,
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    settings: Settings,
    state: State,
    /// Recent outcomes, true = failure.
    recent: VecDeque<bool>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: Settings) -> CircuitBreaker {
        CircuitBreaker {
            settings,
            state: State::Closed,
            recent: VecDeque::new(),
        }
    }

    /// New settings (policy changed); the state is kept.
    pub fn update(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The state at `now` (open turns half-open once its time is up).
    pub fn state(&mut self, now: Instant) -> State {
        if let State::Open(until) = self.state {
            if now >= until {
                self.state = State::HalfOpen(0);
            }
        }
        self.state
    }

    /// Whether anything may be sent at `now`.
    pub fn allows(&mut self, now: Instant) -> bool {
        !matches!(self.state(now), State::Open(_))
    }

    /// Whether only one probe message may be in flight.
    pub fn probing(&mut self, now: Instant) -> bool {
        matches!(self.state(now), State::HalfOpen(_))
    }

    /// When an open circuit turns half-open.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            State::Open(until) => Some(until),
            _ => None,
        }
    }

    /// A round succeeded (the receiver acknowledged progress).
    pub fn success(&mut self, now: Instant) -> Transition {
        match self.state(now) {
            State::HalfOpen(n) => {
                if n + 1 >= self.settings.success_threshold {
                    self.state = State::Closed;
                    self.recent.clear();
                    Transition::Closed
                } else {
                    self.state = State::HalfOpen(n + 1);
                    Transition::None
                }
            }
            State::Closed => {
                self.record(false);
                Transition::None
            }
            State::Open(_) => Transition::None,
        }
    }

    /// A round failed while the receiver was online (refused, or timed out).
    pub fn failure(&mut self, now: Instant) -> Transition {
        match self.state(now) {
            State::HalfOpen(_) => {
                self.state = State::Open(now + self.settings.open_timeout);
                Transition::Opened
            }
            State::Closed => {
                self.record(true);
                let n = self.recent.len() as u32;
                let failed = self.recent.iter().filter(|f| **f).count() as f64;
                if n >= self.settings.min_requests
                    && failed / n as f64 >= self.settings.error_threshold
                {
                    self.state = State::Open(now + self.settings.open_timeout);
                    self.recent.clear();
                    Transition::Opened
                } else {
                    Transition::None
                }
            }
            State::Open(_) => Transition::None,
        }
    }

    fn record(&mut self, failed: bool) {
        let keep = (self.settings.min_requests as usize).max(10);
        self.recent.push_back(failed);
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            error_threshold: 0.5,
            min_requests: 4,
            success_threshold: 2,
            open_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn given_failures_past_the_threshold_then_it_opens_probes_and_closes() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(settings());
        assert_eq!(b.success(t), Transition::None);
        assert_eq!(b.failure(t), Transition::None);
        assert_eq!(b.failure(t), Transition::None); // 2 of 3: below min_requests
        assert_eq!(b.failure(t), Transition::Opened); // 3 of 4 failed
        assert!(!b.allows(t + Duration::from_secs(9)));
        assert_eq!(b.reopens_at(), Some(t + Duration::from_secs(10)));
        let later = t + Duration::from_secs(10);
        assert!(b.allows(later));
        assert!(b.probing(later));
        assert_eq!(b.success(later), Transition::None);
        assert!(b.probing(later));
        assert_eq!(b.success(later), Transition::Closed);
        assert!(!b.probing(later));
    }

    #[test]
    fn given_a_failed_probe_then_it_opens_again() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(settings());
        for _ in 0..4 {
            b.failure(t);
        }
        let later = t + Duration::from_secs(11);
        assert!(b.probing(later));
        assert_eq!(b.failure(later), Transition::Opened);
        assert!(!b.allows(later + Duration::from_secs(5)));
        assert!(b.allows(later + Duration::from_secs(10)));
    }

    #[test]
    fn given_mostly_successes_then_it_stays_closed() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(settings());
        for i in 0..100 {
            if i % 4 == 3 {
                assert_eq!(b.failure(t), Transition::None);
            } else {
                b.success(t);
            }
        }
        assert_eq!(b.state(t), State::Closed);
    }
}
