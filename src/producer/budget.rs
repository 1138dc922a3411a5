//! Admission control for the ingest queue: limits in calls and in bytes, shared fairly
//! between ACLs (see [`super::fair`] for the rule).
//!
//! A call holds a [`Permit`] from the moment it is accepted until Kafka has
//! acknowledged it (or it finally failed), so the limits bound all the memory
//! that accepted-but-unwritten calls use, wherever they are in the pipeline.
//! Acquiring never waits: a full budget is answered at once with overload, the
//! Go version's "never block the caller".

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fair::{self, Amount, Refusal};

/// The budget's limits, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLimits {
    /// Most calls held in memory.
    pub calls: usize,
    /// Most record bytes held in memory.
    pub bytes: usize,
    /// Fraction (0 to 1) of both limits reserved, split equally among `acls`.
    pub reserved: f64,
    /// The configured ACL names; each gets a reserve.
    pub acls: Vec<String>,
}

/// Shared limits and usage. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One lock for the limits and every ACL's usage: admitting a call reads the usage of all
    /// ACLs (their unused reserves) and changes two of the figures at once, which separate
    /// atomics could not do without races. The critical section is a few additions per
    /// configured ACL, taken once per call and once per acknowledgement.
    state: Mutex<State>,
    /// The `/stats` gauges, written under the lock so they always match `State::total`.
    calls: Arc<AtomicI64>,
    bytes: Arc<AtomicI64>,
}

#[derive(Debug, Default)]
struct State {
    limits: Amount,
    /// Each configured ACL's reserve.
    reserve: Amount,
    /// Configured ACLs (only they have a reserve).
    acls: Vec<Arc<str>>,
    total: Amount,
    /// Usage of ACLs holding permits; an entry goes when its usage drops to zero.
    used: HashMap<Arc<str>, Amount>,
}

impl State {
    fn used(&self, acl: &str) -> Amount {
        self.used.get(acl).copied().unwrap_or_default()
    }

    fn is_configured(&self, acl: &str) -> bool {
        self.acls.iter().any(|a| &**a == acl)
    }

    /// The sum of the unused reserves of every configured ACL but `acl`.
    fn others_unused(&self, acl: &str) -> Amount {
        self.acls
            .iter()
            .filter(|a| &***a != acl)
            .fold(Amount::default(), |sum, a| {
                sum.plus(self.reserve.left_after(self.used(a)))
            })
    }
}

/// One accepted call's share of the budget, given back on drop.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    acl: Arc<str>,
    bytes: u64,
}

impl QueueBudget {
    /// Creates a budget. `calls` and `bytes` are the gauges it keeps up to date
    /// (the `/stats` queue gauges).
    pub fn new(limits: &BudgetLimits, calls: Arc<AtomicI64>, bytes: Arc<AtomicI64>) -> Self {
        let inner = Inner {
            state: Mutex::new(State::default()),
            calls,
            bytes,
        };
        let budget = Self {
            inner: Arc::new(inner),
        };
        budget.set_limits(limits);
        budget
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// Changes the limits and the ACLs with a reserve. Calls already admitted keep their
    /// permits; a lower limit only refuses new calls until usage drops below it.
    pub fn set_limits(&self, limits: &BudgetLimits) {
        let to_u64 = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        let amount = Amount::new(to_u64(limits.calls), to_u64(limits.bytes));
        let mut state = self.lock();
        state.limits = amount;
        state.reserve = fair::reserve(amount, limits.reserved, limits.acls.len());
        state.acls = limits.acls.iter().map(|a| Arc::from(a.as_str())).collect();
    }

    /// Takes room for one call of `bytes` bytes from `acl`'s share.
    ///
    /// A single call larger than the whole byte limit is refused too; the HTTP
    /// body limit and the record size check normally stop such calls first.
    ///
    /// # Errors
    /// The [`Refusal`] when the call does not fit.
    pub fn try_acquire(&self, acl: &str, bytes: usize) -> Result<Permit, Refusal> {
        let want = Amount::new(1, u64::try_from(bytes).unwrap_or(u64::MAX));
        let mut state = self.lock();
        let mine = state.used(acl);
        let my_reserve = if state.is_configured(acl) {
            state.reserve
        } else {
            Amount::default()
        };
        let others_unused = state.others_unused(acl);
        fair::admit(state.limits, state.total, mine, my_reserve, others_unused, want)?;
        let acl: Arc<str> = match state.used.get_key_value(acl) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(acl),
        };
        state.used.insert(Arc::clone(&acl), mine.plus(want));
        state.total = state.total.plus(want);
        self.inner.publish(&state);
        Ok(Permit {
            inner: Arc::clone(&self.inner),
            acl,
            bytes: want.bytes,
        })
    }

    /// Calls currently holding a permit.
    pub fn calls(&self) -> i64 {
        self.inner.calls.load(Ordering::Acquire)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; should it ever, the figures are still whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, state: &State) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.calls.store(gauge(state.total.calls), Ordering::Release);
        self.bytes.store(gauge(state.total.bytes), Ordering::Release);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let give_back = Amount::new(1, self.bytes);
        let mut state = self.inner.lock();
        state.total = state.total.left_after(give_back);
        let left = state.used(&self.acl).left_after(give_back);
        if left == Amount::default() {
            state.used.remove(&*self.acl);
        } else {
            state.used.insert(Arc::clone(&self.acl), left);
        }
        self.inner.publish(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(calls: usize, bytes: usize, reserved: f64, acls: &[&str]) -> BudgetLimits {
        BudgetLimits {
            calls,
            bytes,
            reserved,
            acls: acls.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn budget(calls: usize, bytes: usize) -> QueueBudget {
        QueueBudget::new(&limits(calls, bytes, 0.0, &["a"]), Arc::default(), Arc::default())
    }

    #[test]
    fn call_limit_is_exact_and_permits_give_back() {
        let b = budget(2, 1000);
        let p1 = b.try_acquire("a", 10).unwrap();
        let _p2 = b.try_acquire("a", 10).unwrap();
        assert_eq!(b.try_acquire("a", 10).unwrap_err(), Refusal::QueueFull);
        drop(p1);
        assert!(b.try_acquire("a", 10).is_ok());
    }

    #[test]
    fn byte_limit_refuses_without_leaking_a_call_slot() {
        let b = budget(10, 100);
        let _p = b.try_acquire("a", 60).unwrap();
        assert!(b.try_acquire("a", 50).is_err());
        assert_eq!(b.calls(), 1);
        assert!(b.try_acquire("a", 40).is_ok());
    }

    #[test]
    fn limits_change_at_run_time() {
        let b = budget(1, 1000);
        let _p = b.try_acquire("a", 1).unwrap();
        assert!(b.try_acquire("a", 1).is_err());
        b.set_limits(&limits(2, 1000, 0.0, &["a"]));
        assert!(b.try_acquire("a", 1).is_ok());
    }

    #[test]
    fn gauges_follow_permits() {
        let calls = Arc::new(AtomicI64::new(0));
        let bytes = Arc::new(AtomicI64::new(0));
        let b = QueueBudget::new(
            &limits(5, 500, 0.5, &["a", "b"]),
            Arc::clone(&calls),
            Arc::clone(&bytes),
        );
        let p = b.try_acquire("a", 123).unwrap();
        let q = b.try_acquire("b", 7).unwrap();
        assert_eq!(
            (calls.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)),
            (2, 130)
        );
        drop(p);
        drop(q);
        assert_eq!(
            (calls.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)),
            (0, 0)
        );
    }

    #[test]
    fn a_flooding_acl_is_refused_while_another_still_gets_in() {
        let b = QueueBudget::new(
            &limits(10, 10_000, 0.5, &["a", "b"]),
            Arc::default(),
            Arc::default(),
        );
        let mut held = vec![];
        let refusal = loop {
            match b.try_acquire("a", 10) {
                Ok(p) => held.push(p),
                Err(why) => break why,
            }
        };
        // Reserves: half of 10 calls split between 2 ACLs, 2 each (rounded down); pool 6.
        assert_eq!((held.len(), refusal), (8, Refusal::AclShare));
        assert!(b.try_acquire("b", 10).is_ok());
        // Giving one back lets the flooder in again.
        held.pop();
        assert!(b.try_acquire("a", 10).is_ok());
    }

    #[test]
    fn a_reload_that_removes_an_acl_keeps_its_permits_valid() {
        let b = QueueBudget::new(&limits(4, 100, 1.0, &["a", "b"]), Arc::default(), Arc::default());
        let p = b.try_acquire("b", 1).unwrap();
        b.set_limits(&limits(4, 100, 1.0, &["a"]));
        // "b" has no reserve any more and "a" has all of it.
        assert_eq!(b.try_acquire("b", 1).unwrap_err(), Refusal::AclShare);
        drop(p);
        assert_eq!(b.calls(), 0);
        for _ in 0..4 {
            assert!(b.try_acquire("a", 1).is_ok());
        }
    }
}
