//! The `tenantry` binary; everything lives in the library (see `cli`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantry::cli::run().await
}
