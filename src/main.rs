//! The `stagecast` binary: see `stagecast --help`.

/// See Cargo.toml: the system allocator dominated the profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc v3 (include/mimalloc.h, `mi_option_e`); libmimalloc-sys
/// exports no constant for it. The test below pins the index to the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc v3 keeps freed pages resident for 1 s before it purges them (`purge_delay`
/// 1000 ms). Tasks migrate between the runtime's threads, so a burst of claims, contexts and
/// requests frees memory on one thread while another maps fresh pages: peak RSS of a worker
/// with 4,000 jobs in flight 140–160 MB with the delay, 85–112 MB without, at the same
/// events/s (docs/performance.md). `MIMALLOC_PURGE_DELAY` still overrides it.
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it when it schedules a purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
}

fn main() -> std::process::ExitCode {
    purge_freed_memory_at_once();
    stagecast::cli::main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc v3's default purge delay is 1000 ms; another index would read another option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(delay, 1000);
        }
    }
}
