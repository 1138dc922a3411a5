//! What `/rpc/call` adds to the server counters: acceptances and refusals per ACL.

use super::acl::AclCounters;
use super::classes::{Refusal, index};

/// Calls accepted and refused per ACL (kept on `ServerStats`).
#[derive(Debug, Default)]
pub struct IntakeMetrics {
    /// Accepted calls per ACL.
    pub accepted: AclCounters,
    /// Refused calls per reason (in `Refusal::ALL` order), then per ACL ("" when the
    /// caller had not passed the ACL check).
    refused: [AclCounters; Refusal::ALL.len()],
}

impl IntakeMetrics {
    /// Counts one refusal.
    pub fn refused(&self, reason: Refusal, acl: &str) {
        if let Some(c) = self.refused.get(index(&Refusal::ALL, &reason)) {
            c.inc(acl);
        }
    }

    /// Refusals per (reason, ACL).
    pub fn refusals(&self) -> Vec<(Refusal, String, u64)> {
        Refusal::ALL
            .iter()
            .zip(&self.refused)
            .flat_map(|(r, c)| c.snapshot().into_iter().map(move |(acl, n)| (*r, acl, n)))
            .collect()
    }
}
