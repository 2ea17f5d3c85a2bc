//! The memory allocator's settings for a training process. A step allocates and frees each block's activations
//! (megabytes each, hundreds per step); glibc's malloc serves such sizes from fresh mappings, or gives the top of
//! its heap back once a free leaves enough there, so every step faulted in and zeroed the same pages again (a
//! tenth of a step on SmolLM2 with activations kept: page faults, `brk` and the kernel's zeroing). Keeping freed
//! memory in the heap removes that; the peak is what is live at once, as before.

/// Sets glibc's malloc to serve allocations up to 32 MiB from its heap and to keep up to 1 GiB of freed memory
/// there (with 64 MiB of slack per growth). Does nothing on other C libraries. Call it once, at the start of a
/// process that trains.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes malloc's tuning parameters; any values are accepted or refused (0).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
            mallopt(M_TOP_PAD, 64 << 20);
        }
    }
}
