//! Exponential backoff with full jitter, as a small value type.
//!
//! Used wherever bigpipe retries on its own: produce errors, reconnects and
//! (later) delivery attempts. The randomness is injected so schedules can be
//! unit-tested.

use std::time::Duration;

use rand::Rng;

/// Backoff parameters: the `n`-th retry waits a uniformly random time in
/// `[0, min(max, initial * factor^n)]` ("full jitter", which spreads retries of
/// many callers that failed together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Upper bound of the first delay.
    pub initial: Duration,
    /// Cap of every delay.
    pub max: Duration,
    /// Growth of the upper bound per attempt.
    pub factor: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            factor: 2.0,
        }
    }
}

/// The state of one retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// Starts a sequence.
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The cap of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let exp = self
            .config
            .factor
            .max(1.0)
            .powi(i32::try_from(self.attempt).unwrap_or(i32::MAX));
        let secs = self.config.initial.as_secs_f64() * exp;
        if !secs.is_finite() || secs >= self.config.max.as_secs_f64() {
            self.config.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The next delay, drawn from `rng`.
    pub fn next_with<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rng.random_range(0.0..=1.0))
    }

    /// The next delay, drawn from the thread-local generator.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(&mut rand::rng())
    }

    /// How many delays were handed out.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Generators with fixed draws, for tests of anything that takes an `Rng`.
#[cfg(test)]
pub(crate) mod test_rng {
    /// Always yields zero bits: the smallest draw, so a jittered delay is zero.
    #[derive(Debug)]
    pub(crate) struct ZeroRng;

    impl rand::RngCore for ZeroRng {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(0);
        }
    }

    /// Always yields one bits: the largest draw, so a jittered delay equals its ceiling.
    #[derive(Debug)]
    pub(crate) struct OnesRng;

    impl rand::RngCore for OnesRng {
        fn next_u32(&mut self) -> u32 {
            u32::MAX
        }
        fn next_u64(&mut self) -> u64 {
            u64::MAX
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(0xff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_rng::ZeroRng;
    use super::*;

    #[test]
    fn ceiling_grows_then_caps() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            factor: 2.0,
        });
        let mut ceilings = vec![];
        for _ in 0..5 {
            ceilings.push(b.ceiling().as_millis());
            b.attempt += 1;
        }
        assert_eq!(ceilings, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_ceiling() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut rng = rand::rng();
        for _ in 0..50 {
            let ceiling = b.ceiling();
            assert!(b.next_with(&mut rng) <= ceiling);
        }
        assert_eq!(b.attempts(), 50);
    }

    #[test]
    fn zero_randomness_gives_zero_delay() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut rng = ZeroRng;
        assert_eq!(b.next_with(&mut rng), Duration::ZERO);
    }
}
