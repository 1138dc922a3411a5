//! The process's global allocator, chosen at build time.
//!
//! Every build uses rusty_alloc (a pure-Rust remake of mimalloc), chosen by measurement
//! (README, "Benchmarks"; issue 12):
//! - musl's own malloc takes one lock for every allocation and free, which cost the static musl
//!   build (the artifact for bare hosts) 1.6-1.75x the CPU per call of the glibc build;
//! - glibc's malloc keeps freed memory in per-thread arenas: after bursts of ingest the glibc
//!   build's peak RSS was 390 MiB, over its configured bound, where the same code on rusty_alloc
//!   peaked at 141 MiB.
//!
//! `system-allocator` gives the platform's malloc back (for comparison); `alloc-dlmalloc` is
//! another candidate, for measurement only.
//!
//! `alloc-stats` (bench-only) wraps the system allocator with counters, so `make bench` can
//! report allocations per call; the counts belong to the code, not to the allocator.

/// Allocation counters of the bench-only `alloc-stats` build, `None` in every other build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocCounts {
    /// Allocations (each `alloc`, including the new block of a moving `realloc`).
    pub allocations: u64,
    /// Reallocations (grow or shrink in place or by moving).
    pub reallocations: u64,
    /// Bytes requested by allocations.
    pub bytes: u64,
}

#[cfg(feature = "alloc-stats")]
#[global_allocator]
static GLOBAL: stats_alloc::StatsAlloc<std::alloc::System> = stats_alloc::StatsAlloc::system();

#[cfg(all(
    not(feature = "alloc-dlmalloc"),
    not(feature = "alloc-stats"),
    not(feature = "system-allocator")
))]
#[global_allocator]
static GLOBAL: rusty_alloc_api::RustyAlloc = rusty_alloc_api::RustyAlloc;

#[cfg(all(
    feature = "alloc-dlmalloc",
    not(feature = "alloc-stats"),
    not(feature = "system-allocator")
))]
#[global_allocator]
static GLOBAL: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The counters so far, in the `alloc-stats` build only.
pub fn counts() -> Option<AllocCounts> {
    #[cfg(feature = "alloc-stats")]
    {
        let s = GLOBAL.stats();
        Some(AllocCounts {
            allocations: s.allocations as u64,
            reallocations: s.reallocations as u64,
            bytes: s.bytes_allocated as u64,
        })
    }
    #[cfg(not(feature = "alloc-stats"))]
    None
}
