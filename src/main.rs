//! The `tenantry` binary; everything lives in the library (see `cli`).

/// `--features mimalloc` swaps the system allocator for mimalloc; the tuning
/// bench (benches/tuning.sh) measures whether it pays.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantry::cli::run().await
}
