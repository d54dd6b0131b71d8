//! The process's allocator: mimalloc, with freed memory given back to the system at once.
//!
//! mimalloc rather than glibc's malloc: a message's life is dozens of small allocations on
//! several threads, and glibc spent about a seventh of the engine's CPU in them (measured,
//! ARCHITECTURE.md "Allocation"). Its v3 keeps freed pages for a second before it returns them
//! (`purge_delay` 1,000 ms), and every thread that allocates — the blocking pool's too — holds
//! its own: 16 connections × 8 in flight to RabbitMQ peaked at 100–114 MiB over 200,000
//! messages, and 1 MiB documents at 104–123 MiB, past the 100 MiB the engine is held to.
//! Given back at once, they peaked at 74–76 and 41–83 MiB, with no cost to CPU per message or
//! throughput beyond this machine's noise (alternated runs; the table is in ARCHITECTURE.md
//! "Allocation").

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in mimalloc v3's `mi_option_t` (include/mimalloc.h).
/// The test below checks it still names the option whose default is 1,000 ms.
const PURGE_DELAY: std::ffi::c_int = 15;
/// How long freed memory stays with its thread before it goes back to the system: not at all.
const PURGE_AFTER_MS: std::ffi::c_long = 0;

#[allow(unsafe_code)]
mod ffi {
    unsafe extern "C" {
        #[cfg(test)]
        pub safe fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
        pub fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }

    /// Sets an option. mimalloc's setter is not thread-safe: call it before any thread starts.
    pub fn set(option: std::ffi::c_int, value: std::ffi::c_long) {
        // SAFETY: plain integers passed by value; the caller runs before other threads exist.
        unsafe { mi_option_set(option, value) }
    }
}

/// Applies the process's allocator settings; call first in `main`, before any thread starts.
/// A purge delay set in the environment, read by mimalloc itself, still wins: mimalloc reads
/// `MIMALLOC_PURGE_DELAY` (or its old name `MIMALLOC_RESET_DELAY`) in any case.
pub fn tune() {
    let set_by_operator = std::env::vars_os().any(|(name, _)| {
        name.to_str().is_some_and(|n| {
            n.eq_ignore_ascii_case("MIMALLOC_PURGE_DELAY")
                || n.eq_ignore_ascii_case("MIMALLOC_RESET_DELAY")
        })
    });
    if !set_by_operator {
        ffi::set(PURGE_DELAY, PURGE_AFTER_MS);
    }
}

/// The purge delay in force, in milliseconds.
#[cfg(test)]
fn purge_delay_ms() -> std::ffi::c_long {
    ffi::mi_option_get(PURGE_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // Before `tune`, the option at this place holds v3's default purge delay: if mimalloc
        // renumbered its options, this names another one and `tune` would change the wrong
        // setting. (Test processes do not call `tune`, and CI sets no MIMALLOC_ variables.)
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1000);
        }
    }
}
