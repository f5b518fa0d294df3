//! The `manning` binary: parse the command line, set up logging, run one role.
//!
//! Everything lives in the library crate (`src/lib.rs`) so integration tests and benchmarks
//! can use the same code; this file only hands control to [`manning::cli::main`].

use mimalloc::MiMalloc;

/// musl's allocator takes a global lock and is slow under threads; the proxy and forwarder
/// allocate per connection on several worker threads, so the static build uses mimalloc.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 2.x's `mi_option_e` (the Rust bindings name
/// no constant for it). Its default (2: eager on overcommitting systems) commits each
/// thread's arena up front, about 2 MiB per thread; with it off, memory is committed as it
/// is used. The supervisor's idle resident set drops from ~16 MB to ~9 MB this way.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs from `.init_array`, before `main` and before the Rust runtime's first allocation
/// creates mimalloc's first arena (setting the option in `main` is too late for it).
extern "C" fn lazy_arena_commit() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; no other thread
    // exists yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[used]
#[unsafe(link_section = ".init_array")]
static LAZY_ARENA_COMMIT: extern "C" fn() = lazy_arena_commit;

fn main() -> std::process::ExitCode {
    manning::cli::main()
}
