//! The `manning` binary: parse the command line, set up logging, run one role.
//!
//! Everything lives in the library crate (`src/lib.rs`) so integration tests and benchmarks
//! can use the same code; this file only hands control to [`manning::cli::main`].

use mimalloc::MiMalloc;

/// musl's allocator takes a global lock and is slow under threads; the proxy and forwarder
/// allocate per connection on several worker threads, so the static build uses mimalloc.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    manning::cli::main()
}
