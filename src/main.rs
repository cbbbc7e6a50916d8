//! The `portcullis` binary: everything lives in the library; see `portcullis --help`.

/// mimalloc: the request path allocates many small, short-lived buffers (headers, bodies);
/// measured in BENCHMARKS.md against the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::run()
}
