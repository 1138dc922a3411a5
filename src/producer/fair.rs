//! The rule that shares the ingest budget between ACLs: a reserve per ACL, and borrowing of
//! everything not reserved.
//!
//! A fraction of the queue (`kafka.producer.queue.reserved`, in calls and in bytes) is split
//! equally among the configured ACLs: each ACL's *reserve*. The rest is a common pool. An ACL
//! below its reserve is always admitted; above it, it borrows from whatever is left once every
//! other ACL's unused reserve is set aside. The invariant kept on every admission is
//!
//! ```text
//! total usage + Σ over ACLs of max(0, reserve − usage) ≤ limit        (calls and bytes alike)
//! ```
//!
//! so room reserved for an ACL is never given to another one, and an ACL within its reserve
//! always fits.
//!
//! Why this rule and not a plain cap per ACL: a cap of, say, half the queue lets two flooding
//! ACLs take all of it and leaves a third, quiet one with nothing; and a cap small enough for
//! many ACLs (1/n each) would stop a lone caller from using an idle queue to absorb a burst.
//! With reserves, a lone caller gets the pool plus its reserve, any number of flooders share
//! the pool, and a quiet ACL keeps its reserve however many others flood.

/// A quantity of the budget in both of its dimensions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    /// Calls.
    pub calls: u64,
    /// Record bytes.
    pub bytes: u64,
}

impl Amount {
    /// `calls` calls of `bytes` bytes in all.
    pub const fn new(calls: u64, bytes: u64) -> Self {
        Self { calls, bytes }
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Self) -> Self {
        Self::new(
            self.calls.saturating_add(other.calls),
            self.bytes.saturating_add(other.bytes),
        )
    }

    /// `max(0, self - other)` in each dimension: what is left of a reserve `self` after `other`.
    pub fn left_after(self, other: Self) -> Self {
        Self::new(
            self.calls.saturating_sub(other.calls),
            self.bytes.saturating_sub(other.bytes),
        )
    }

    fn fits(self, limit: Self) -> bool {
        self.calls <= limit.calls && self.bytes <= limit.bytes
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The whole queue is full, in calls or in bytes.
    #[error("ingest queue is full")]
    QueueFull,
    /// There is room, but it is reserved for other ACLs: this ACL is over its share.
    #[error("the ACL's share of the ingest queue is used up")]
    AclShare,
}

/// Each ACL's reserve: `reserved` (0 to 1) of `limits`, split equally among `acls` ACLs.
/// Rounded down, so the reserves never add up to more than the limits.
pub fn reserve(limits: Amount, reserved: f64, acls: usize) -> Amount {
    if acls == 0 {
        return Amount::default();
    }
    let share = |limit: u64| {
        // f64 has 53 bits of mantissa; limits are far below (config caps bytes at 1 TiB).
        let part = (limit as f64 * reserved.clamp(0.0, 1.0)) as u64;
        part / acls as u64
    };
    Amount::new(share(limits.calls), share(limits.bytes))
}

/// Decides whether one more call `want` of an ACL fits.
///
/// - `limits`: the queue's limits;
/// - `total`: what every ACL uses now;
/// - `mine`, `my_reserve`: what this ACL uses now and its reserve (zero for an ACL that is no
///   longer configured: it may only borrow);
/// - `others_unused`: the sum over the *other* configured ACLs of their unused reserve.
///
/// # Errors
/// [`Refusal::QueueFull`] when the call does not fit the limits at all;
/// [`Refusal::AclShare`] when it only fits by taking room reserved for other ACLs.
pub fn admit(
    limits: Amount,
    total: Amount,
    mine: Amount,
    my_reserve: Amount,
    others_unused: Amount,
    want: Amount,
) -> Result<(), Refusal> {
    let after = total.plus(want);
    if !after.fits(limits) {
        return Err(Refusal::QueueFull);
    }
    // What must stay free after this call: the others' unused reserves and what remains of
    // mine (zero once the call takes me past it).
    let my_unused_after = my_reserve.left_after(mine.plus(want));
    if !after.plus(others_unused).plus(my_unused_after).fits(limits) {
        return Err(Refusal::AclShare);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Amount = Amount::new(30, 3000);

    /// A tiny model of the budget: usage per ACL, with the reserves of `acls` ACLs.
    struct Model {
        used: Vec<Amount>,
        reserve: Amount,
    }

    impl Model {
        fn new(acls: usize, reserved: f64) -> Self {
            Self {
                used: vec![Amount::default(); acls],
                reserve: reserve(LIMITS, reserved, acls),
            }
        }

        fn total(&self) -> Amount {
            self.used.iter().fold(Amount::default(), |a, u| a.plus(*u))
        }

        fn try_call(&mut self, acl: usize, bytes: u64) -> Result<(), Refusal> {
            let want = Amount::new(1, bytes);
            let others_unused = self
                .used
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != acl)
                .fold(Amount::default(), |a, (_, u)| a.plus(self.reserve.left_after(*u)));
            admit(
                LIMITS,
                self.total(),
                self.used[acl],
                self.reserve,
                others_unused,
                want,
            )?;
            self.used[acl] = self.used[acl].plus(want);
            Ok(())
        }

        /// Calls `acl` until refused; returns how many got in and why the next did not.
        fn flood(&mut self, acl: usize, bytes: u64) -> (u64, Refusal) {
            let mut n = 0;
            loop {
                match self.try_call(acl, bytes) {
                    Ok(()) => n += 1,
                    Err(why) => return (n, why),
                }
            }
        }
    }

    #[test]
    fn reserves_split_the_reserved_fraction_and_round_down() {
        assert_eq!(reserve(LIMITS, 0.5, 3), Amount::new(5, 500));
        assert_eq!(reserve(LIMITS, 1.0, 4), Amount::new(7, 750));
        assert_eq!(reserve(LIMITS, 0.0, 4), Amount::default());
        assert_eq!(reserve(LIMITS, 0.5, 0), Amount::default());
        assert_eq!(reserve(LIMITS, 7.0, 1), LIMITS, "clamped to the whole queue");
    }

    #[test]
    fn a_lone_caller_gets_the_pool_plus_its_reserve() {
        let mut m = Model::new(2, 0.5);
        // pool 15 + own reserve 7; the other ACL's 7 stay free.
        assert_eq!(m.flood(0, 1), (23, Refusal::AclShare));
    }

    #[test]
    fn one_flooder_cannot_take_the_quiet_acls_reserve() {
        let mut m = Model::new(2, 0.5);
        m.flood(0, 1);
        for _ in 0..7 {
            assert_eq!(m.try_call(1, 1), Ok(()));
        }
        // The quiet ACL past its reserve is now the one refused; the queue is full.
        assert_eq!(m.try_call(1, 1), Err(Refusal::QueueFull));
    }

    #[test]
    fn two_flooders_share_the_pool_and_the_quiet_acl_keeps_its_reserve() {
        let mut m = Model::new(3, 0.5);
        let (a, why_a) = m.flood(0, 10);
        let (b, why_b) = m.flood(1, 10);
        assert_eq!((why_a, why_b), (Refusal::AclShare, Refusal::AclShare));
        // The pool (15) went to the first flooder, each flooder keeps its own reserve (5).
        assert_eq!((a, b), (20, 5));
        for _ in 0..5 {
            assert_eq!(m.try_call(2, 10), Ok(()));
        }
        assert_eq!(m.total(), Amount::new(30, 300));
    }

    #[test]
    fn the_byte_dimension_is_shared_the_same_way() {
        let mut m = Model::new(2, 0.5);
        // Big calls: the flooder stops on bytes (1500 pool + 750 reserve) long before calls.
        assert_eq!(m.flood(0, 250), (9, Refusal::AclShare));
        assert_eq!(m.try_call(1, 750), Ok(()));
        assert_eq!(m.try_call(1, 1), Err(Refusal::QueueFull));
    }

    #[test]
    fn a_call_bigger_than_the_reserve_borrows_from_the_pool() {
        let mut m = Model::new(2, 0.5);
        assert_eq!(m.try_call(1, 1000), Ok(()), "750 reserve + 250 from the pool");
        assert_eq!(m.flood(0, 1).1, Refusal::AclShare);
    }

    #[test]
    fn no_reserve_is_first_come_first_served() {
        let mut m = Model::new(2, 0.0);
        assert_eq!(m.flood(0, 1), (30, Refusal::QueueFull));
        assert_eq!(m.try_call(1, 1), Err(Refusal::QueueFull));
    }

    #[test]
    fn an_unconfigured_acl_only_borrows() {
        let want = Amount::new(1, 1);
        let r = reserve(LIMITS, 1.0, 2);
        // Everything is reserved for the two configured ACLs, which use nothing.
        let unused_of_both = r.plus(r);
        assert_eq!(
            admit(
                LIMITS,
                Amount::default(),
                Amount::default(),
                Amount::default(),
                unused_of_both,
                want
            ),
            Err(Refusal::AclShare)
        );
    }
}
