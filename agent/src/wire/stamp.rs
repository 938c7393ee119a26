//! Hands out freshness stamps for this process: one boot, one growing counter.

use super::Stamp;
use std::sync::atomic::{AtomicU64, Ordering};

/// Issues [`Stamp`]s of one boot; shared by every task that sends stamped frames.
#[derive(Debug)]
pub struct Stamper {
    /// This process's boot counter, committed to the node's database before any
    /// frame is sent.
    boot: u64,
    /// The last counter handed out.
    counter: AtomicU64,
}

impl Stamper {
    /// A stamper for `boot`; the first stamp has counter 1.
    pub fn new(boot: u64) -> Stamper {
        Stamper {
            boot,
            counter: AtomicU64::new(0),
        }
    }

    /// This process's boot counter.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// A stamp newer than every stamp handed out before.
    pub fn next(&self) -> Stamp {
        Stamp {
            boot: self.boot,
            counter: self.counter.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_stamper_when_stamping_then_every_stamp_is_newer() {
        let s = Stamper::new(7);
        let a = s.next();
        let b = s.next();
        assert_eq!(
            a,
            Stamp {
                boot: 7,
                counter: 1
            }
        );
        assert!(b > a);
        assert!(
            Stamp {
                boot: 8,
                counter: 0
            } > b
        );
    }
}
