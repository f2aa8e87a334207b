//! Allocator settings applied before any thread starts.
//!
//! glibc's malloc gives busy threads their own arenas (up to 8 per core) and
//! keeps freed memory in each, so a broker whose tokio workers, RocksDB
//! background jobs and snapshot streams all allocate grows its resident
//! memory well past what it uses. Capping the arenas keeps it near the
//! memory budget: a follower catching up 1 GiB with a 128 MiB budget peaked
//! at 121 MiB with glibc's default, 106 MiB with 4 arenas and 102 MiB with 2
//! (docs/configuration.md, `malloc_arenas`).

/// Caps glibc malloc's arenas at `arenas` (0 = leave glibc's default). An
/// explicit `MALLOC_ARENA_MAX` in the environment wins: glibc already read
/// it. Returns whether the cap was set. Does nothing on other C libraries.
pub fn limit_malloc_arenas(arenas: usize) -> bool {
    if arenas == 0 || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    set_arena_max(arenas)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: usize) -> bool {
    let arenas = i32::try_from(arenas).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before the runtime's threads exist.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_leaves_the_default() {
        assert!(!limit_malloc_arenas(0));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_cap_is_accepted_by_glibc() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            assert!(limit_malloc_arenas(8));
        }
    }
}
