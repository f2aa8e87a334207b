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

/// The glibc tunable sizing each thread's cache of freed small blocks.
const THREAD_CACHE_TUNABLE: &str = "glibc.malloc.tcache_count";
/// glibc's upper limit for it.
pub const MAX_THREAD_CACHE: u32 = 65_535;

/// The `GLIBC_TUNABLES` value that sets the thread cache to `count`, given
/// the current one; `None` when there is nothing to do (0 = glibc's default,
/// or the environment already names the tunable: the operator's choice wins).
pub fn thread_cache_tunables(count: u32, current: Option<&str>) -> Option<String> {
    if count == 0 {
        return None;
    }
    let setting = format!("{THREAD_CACHE_TUNABLE}={count}");
    match current {
        Some(current) if current.contains(THREAD_CACHE_TUNABLE) => None,
        Some(current) if !current.is_empty() => Some(format!("{current}:{setting}")),
        _ => Some(setting),
    }
}

/// Sizes glibc's per-thread cache of freed small blocks (see
/// `malloc_thread_cache` in docs/configuration.md). The replicated write
/// path frees many small blocks on one thread that another allocated; with
/// glibc's default of 7 per size most of them go through the shared arena,
/// which cost about a fifth of the brokers' CPU under pipelined produce.
///
/// glibc reads the setting only from the environment at start, so the
/// process image is started again (`exec`: same process id, arguments and
/// open files) with `GLIBC_TUNABLES` set; the new image finds it set and
/// carries on. Call before any thread starts. Returns only when nothing
/// had to be done or the exec failed (the broker then runs with glibc's
/// default, and says so).
pub fn apply_thread_cache(count: u32) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let current = std::env::var("GLIBC_TUNABLES").ok();
    let Some(tunables) = thread_cache_tunables(count, current.as_deref()) else {
        return;
    };
    let error = restart_with(&tunables);
    eprintln!("flymq: cannot apply malloc_thread_cache ({error}); running with glibc's default");
}

#[cfg(unix)]
fn restart_with(tunables: &str) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    // The executable's own path, not `/proc/self/exe`: the kernel names the
    // process after the file executed, and `ps`/`pkill` should see `flymq`.
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec()
}

#[cfg(not(unix))]
fn restart_with(_tunables: &str) -> std::io::Error {
    std::io::Error::other("not supported on this platform")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cache_tunable_is_added_unless_already_chosen() {
        assert_eq!(
            thread_cache_tunables(2000, None).as_deref(),
            Some("glibc.malloc.tcache_count=2000")
        );
        assert_eq!(
            thread_cache_tunables(2000, Some("")).as_deref(),
            Some("glibc.malloc.tcache_count=2000")
        );
        assert_eq!(
            thread_cache_tunables(64, Some("glibc.malloc.mxfast=0")).as_deref(),
            Some("glibc.malloc.mxfast=0:glibc.malloc.tcache_count=64")
        );
        // Already set (by the operator, or by the exec itself): left alone,
        // so the restarted image does not restart again.
        assert_eq!(thread_cache_tunables(2000, Some("glibc.malloc.tcache_count=7")), None);
        assert_eq!(thread_cache_tunables(0, None), None);
    }

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
