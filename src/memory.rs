//! The allocator's side of the memory budget (glibc only; elsewhere these
//! do nothing). The pipeline's state is bounded by construction (README
//! "Memory"); what glibc keeps of freed memory is not, and on two cores
//! with tokio's worker threads it is spread over several arenas.

/// Large blocks (hash tables that double, a commit's column arrays) get
/// pages of their own, returned to the system when freed. glibc's default
/// moves this threshold up to 32 MB after the first large free, after which
/// every freed table stayed in the process's heap: with 370 k users (10×
/// DVMDash's peak month) a backtest peaked at 280 MiB instead of 221 MiB.
/// Setting it also stops that adjustment. Call before any other thread
/// exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_large_blocks() {
    // SAFETY: mallopt only changes a malloc tunable; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}

/// Gives the free pages of every arena back to the system. A commit frees
/// a whole group (tens of MB in blocks below the mmap threshold: per-day
/// id lists, activity cells, job facts) in the commit task's arena, where
/// glibc keeps them until that arena happens to shrink from its top; the
/// next group then grows in another thread's arena and both count in the
/// RSS. Called once per commit (a few milliseconds at most).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim is thread-safe (it locks each arena in turn).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
