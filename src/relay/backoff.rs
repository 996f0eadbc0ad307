//! Reconnect delays: exponential, capped, with jitter so that many
//! dvmtop instances (or many relays of one) do not retry in lockstep.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: ChaCha8Rng,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next delay: uniformly in [½·d, d] with d = min(cap, base·2ⁿ).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        let d = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.random_range(0..=nanos))
    }

    /// After a healthy connection: start again from the base delay.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    #[cfg(test)]
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_grow_are_jittered_and_capped(seed in any::<u64>(), base_ms in 1u64..5_000, cap_s in 1u64..120) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_secs(cap_s).max(base);
            let mut b = Backoff::new(base, cap, seed);
            let mut ceiling = base;
            for _ in 0..40 {
                let d = b.next_delay();
                prop_assert!(d <= ceiling.min(cap), "{d:?} > {ceiling:?}");
                prop_assert!(d >= ceiling.min(cap) / 2, "{d:?} < half of {ceiling:?}");
                ceiling = ceiling.saturating_mul(2);
            }
            b.reset();
            prop_assert_eq!(b.attempts(), 0);
            prop_assert!(b.next_delay() <= base);
        }
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let a: Vec<_> = {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
            (0..8).map(|_| b.next_delay()).collect()
        };
        let c: Vec<_> = {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 2);
            (0..8).map(|_| b.next_delay()).collect()
        };
        assert_ne!(a, c);
    }
}
