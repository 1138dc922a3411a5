//! The process's global allocator, chosen at build time.
//!
//! The glibc build keeps glibc's malloc: it has per-thread arenas and was the faster build. The
//! static musl build (the artifact for bare hosts) does not use musl's own malloc: it takes one
//! lock for every allocation and free and returns memory to the kernel eagerly, which cost the
//! musl build 1.6-1.75x the CPU per call of the glibc one (issue 12). The replacement is chosen
//! by measurement among allocators that need no C compiler (README, "Benchmarks").
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
    target_env = "musl",
    not(feature = "alloc-dlmalloc"),
    not(feature = "alloc-stats"),
    not(feature = "system-allocator")
))]
#[global_allocator]
static GLOBAL: rusty_alloc_api::RustyAlloc = rusty_alloc_api::RustyAlloc;

#[cfg(all(
    target_env = "musl",
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
