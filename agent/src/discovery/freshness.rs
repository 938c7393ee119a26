//! Replay protection for stamped frames: pure state, no I/O, unit-tested.
//!
//! Per peer it keeps the highest boot seen and, per scope, a sliding window of the
//! counters seen in that boot (the DTLS/IPsec anti-replay window): a frame is fresh
//! when its boot is newer, or its boot is the current one and its counter was never
//! seen and is not older than [`WINDOW`] behind the highest. Scopes are separate
//! because different frames reach different tasks, each in its own order.

use crate::wire::Stamp;

/// How far behind the highest counter a late, never-seen frame is still accepted.
pub const WINDOW: u64 = 64;

/// Which kind of frame a stamp protects; each has its own counter window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Hello, keepalive and bye (handled by discovery, in the order sent).
    Announce,
    /// Negative acknowledgements (handled by delivery).
    Nack,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    /// Highest counter seen.
    top: u64,
    /// Bit `i` set: counter `top - i` was seen.
    seen: u64,
}

impl Window {
    fn accept(&mut self, counter: u64) -> bool {
        if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = counter;
            return true;
        }
        let back = self.top - counter;
        if back >= WINDOW {
            return false;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// What one peer's stamped frames may still be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Highest boot seen (persisted with the peer, so it survives our restarts).
    boot: u64,
    /// Counter windows of that boot, one per [`Scope`].
    windows: [Window; 2],
}

impl Freshness {
    /// Freshness of a peer last known at `boot` (0 when never heard from).
    pub fn new(boot: u64) -> Freshness {
        Freshness {
            boot,
            windows: Default::default(),
        }
    }

    /// Highest boot seen.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// Whether a frame of `scope` stamped `stamp` is fresh; if so it is remembered, so
    /// the same frame is refused next time.
    pub fn accept(&mut self, scope: Scope, stamp: Stamp) -> bool {
        if stamp.boot < self.boot {
            return false;
        }
        if stamp.boot > self.boot {
            self.boot = stamp.boot;
            self.windows = Default::default();
        }
        let i = match scope {
            Scope::Announce => 0,
            Scope::Nack => 1,
        };
        self.windows[i].accept(stamp.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(boot: u64, counter: u64) -> Stamp {
        Stamp { boot, counter }
    }

    #[test]
    fn given_frames_in_order_when_each_is_seen_again_then_the_repeat_is_refused() {
        let mut f = Freshness::new(0);
        for c in 1..=200 {
            assert!(f.accept(Scope::Announce, s(3, c)));
            assert!(!f.accept(Scope::Announce, s(3, c)), "replay of {c}");
        }
        assert!(!f.accept(Scope::Announce, s(3, 1)));
        assert_eq!(f.boot(), 3);
    }

    #[test]
    fn given_a_newer_boot_when_a_frame_of_the_old_boot_arrives_then_refused() {
        let mut f = Freshness::new(5);
        assert!(!f.accept(Scope::Announce, s(4, 1_000)));
        assert!(f.accept(Scope::Announce, s(5, 1)));
        assert!(f.accept(Scope::Announce, s(6, 1)));
        assert!(
            !f.accept(Scope::Announce, s(5, 2)),
            "older boot after a restart"
        );
        assert!(
            !f.accept(Scope::Nack, s(5, 9)),
            "a boot is refused in every scope"
        );
    }

    #[test]
    fn given_reordered_frames_within_the_window_when_each_arrives_once_then_all_accepted() {
        let mut f = Freshness::new(1);
        assert!(f.accept(Scope::Nack, s(1, 10)));
        assert!(f.accept(Scope::Nack, s(1, 8)));
        assert!(f.accept(Scope::Nack, s(1, 9)));
        assert!(!f.accept(Scope::Nack, s(1, 8)));
        assert!(f.accept(Scope::Nack, s(1, 100)));
        assert!(
            !f.accept(Scope::Nack, s(1, 100 - WINDOW)),
            "behind the window"
        );
        assert!(f.accept(Scope::Nack, s(1, 100 - WINDOW + 1)));
    }

    #[test]
    fn given_two_scopes_when_counters_interleave_then_each_scope_is_checked_alone() {
        let mut f = Freshness::new(1);
        assert!(f.accept(Scope::Announce, s(1, 500)));
        assert!(
            f.accept(Scope::Nack, s(1, 3)),
            "nack counters are a separate window"
        );
        assert!(!f.accept(Scope::Nack, s(1, 3)));
    }
}
