//! The program's allocator: mimalloc, told to keep the memory it frees.
//!
//! A training step allocates and frees several hundred MB of activations (a 16 x 12 x 256 x 256
//! attention tensor alone is 50 MB). mimalloc (v3) hands freed pages back to the OS a second later
//! by default, and the kernel then zeroes every page again at its next first touch: 29% of a step
//! in a profile. Keeping them (purge delay -1) made the MiniLM training step 26% faster
//! (docs/benchmarks.md) for about 10% more peak memory. `MIMALLOC_PURGE_DELAY`, when set, wins.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in mimalloc.h (the same position in mimalloc v2 and v3); the crate
/// exports no constant for it. The test below checks the position against the option's default.
const PURGE_DELAY: mi_option_t = 15;

/// Never give freed memory back to the OS during this process, unless the user set
/// `MIMALLOC_PURGE_DELAY`.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores an integer in mimalloc's option table; the program calls
        // it once, at the start of main, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            mi_option_set(PURGE_DELAY, -1)
        };
    }
}

/// The purge delay in milliseconds now in force (-1: never).
pub fn purge_delay() -> i64 {
    // SAFETY: mi_option_get reads one entry of mimalloc's option table.
    #[allow(unsafe_code)]
    let value = unsafe { mi_option_get(PURGE_DELAY) };
    #[allow(clippy::useless_conversion)] // c_long is 64 bits here, 32 on Windows
    i64::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // purge_delay defaults to 1000 ms in mimalloc v3 (10 ms in v2); the options around it
        // default to 0, 1, 2 or 100.
        assert!([1000, 10].contains(&purge_delay()), "option {PURGE_DELAY} reads {}", purge_delay());
        keep_freed_memory();
        assert_eq!(purge_delay(), -1);
    }
}
