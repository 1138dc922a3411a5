//! Per-partition offset tracking: which offset is safe to commit.
//!
//! Deliveries inside a partition run in parallel and finish in any order, so
//! the committed offset is the lowest offset whose call is not finished: every
//! record below it is delivered or dead-lettered. Committing anything higher
//! could skip an unfinished call after a crash (the Go version committed at
//! read time and lost calls that way).

use std::collections::BTreeSet;

/// Offsets of one partition that were read but are not finished yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetTracker {
    /// Read and not finished.
    pending: BTreeSet<i64>,
    /// The next offset to read; everything below it was read.
    next: i64,
    /// The last position handed to a commit.
    committed: Option<i64>,
}

impl OffsetTracker {
    /// Starts at `position`, the first offset to consume.
    pub fn new(position: i64) -> Self {
        Self {
            pending: BTreeSet::new(),
            next: position,
            committed: None,
        }
    }

    /// Records that `offset` was read and its call started. Offsets arrive in
    /// increasing order; gaps (compacted or transaction markers) are fine.
    pub fn started(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.next = self.next.max(offset + 1);
    }

    /// Moves the read position past offsets that carried no call (e.g. control records).
    pub fn skipped_to(&mut self, next: i64) {
        self.next = self.next.max(next);
    }

    /// Records that the call at `offset` finished (delivered, dead-lettered or reported).
    pub fn finished(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The offset to commit: the lowest unfinished one, or the next to read when all are finished.
    pub fn committable(&self) -> i64 {
        self.pending.first().copied().unwrap_or(self.next)
    }

    /// The next offset to fetch.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Calls read and not finished.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The position to commit if it moved since the last commit.
    pub fn take_commit(&mut self) -> Option<i64> {
        let at = self.committable();
        (self.committed != Some(at)).then(|| {
            self.committed = Some(at);
            at
        })
    }

    /// Forgets the last commit, so the next [`take_commit`](Self::take_commit) sends it again
    /// (after a failed commit).
    pub fn commit_failed(&mut self) {
        self.committed = None;
    }

    /// The last position handed to a commit.
    pub fn last_committed(&self) -> Option<i64> {
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_read_commits_the_start() {
        let t = OffsetTracker::new(42);
        assert_eq!(t.committable(), 42);
    }

    #[test]
    fn out_of_order_completion_commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::new(10);
        for o in 10..15 {
            t.started(o);
        }
        t.finished(11);
        t.finished(13);
        assert_eq!(t.committable(), 10, "10 is still in flight");
        t.finished(10);
        assert_eq!(t.committable(), 12);
        t.finished(12);
        assert_eq!(t.committable(), 14);
        t.finished(14);
        assert_eq!(t.committable(), 15);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_block_commits() {
        let mut t = OffsetTracker::new(0);
        t.started(0);
        t.started(5);
        t.finished(0);
        assert_eq!(t.committable(), 5);
        t.finished(5);
        t.skipped_to(9);
        assert_eq!(t.committable(), 9);
    }

    #[test]
    fn take_commit_only_when_moved_and_again_after_failure() {
        let mut t = OffsetTracker::new(0);
        t.started(0);
        assert_eq!(t.take_commit(), Some(0));
        assert_eq!(t.take_commit(), None);
        t.finished(0);
        assert_eq!(t.take_commit(), Some(1));
        t.commit_failed();
        assert_eq!(t.take_commit(), Some(1));
        assert_eq!(t.last_committed(), Some(1));
    }

    #[test]
    fn finishing_an_unknown_offset_is_harmless() {
        let mut t = OffsetTracker::new(3);
        t.started(3);
        t.finished(99);
        assert_eq!(t.committable(), 3);
    }
}
