//! One malloc arena for the agent's threads.
//!
//! glibc gives each new thread that allocates an arena of its own (up to
//! eight per core), and an arena keeps what it once held. The agent's work
//! runs on one thread; its blocking threads (disk writes, batch encoding)
//! are short and rare, yet with an arena each they held about 0.2 MiB apiece
//! at the end of a footprint run. Allocations are seldom contended here, so
//! one shared arena costs no measurable time.

/// Limits glibc to one arena; call before any thread is started. Elsewhere
/// (musl, other systems) it does nothing.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[expect(unsafe_code, reason = "mallopt is a C function")]
        // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes
        // any positive count, and it is called before other threads exist.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        if ok == 0 {
            tracing::debug!("mallopt(M_ARENA_MAX) refused; keeping glibc's default arenas");
        }
    }
}
