//! How the process asks the allocator for memory.

/// Pieces in transit are buffers of 4-64 MiB. glibc serves such sizes with `mmap` at first, but
/// raises its mmap threshold to the size of every mmapped block freed, so from the first freed
/// piece on, pieces come from the heap arenas, which keep the memory after the free (one arena
/// per thread that touched them): a downloading peer's resident memory grew to several times the
/// pieces in flight. A fixed threshold keeps large buffers mmapped, so a freed piece goes back to
/// the system at once. Call before the first large allocation.
pub fn keep_large_buffers_mmapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it has no memory-safety preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
