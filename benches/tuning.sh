#!/usr/bin/env bash
# Release-profile and pool-size tuning (docs/BENCHMARKS.md: "Build and pool tuning").
#
#   benches/tuning.sh
#
# 1. Builds `tenantry` four ways, each in its own target directory under
#    target/tuning/: `default` (Cargo's release profile: no LTO, 16 codegen
#    units), `thin` (thin LTO), `fat` (the profile in Cargo.toml: fat LTO, one
#    codegen unit) and `fat-mimalloc` (the same with `--features mimalloc`).
# 2. Runs `cargo bench --bench tuning` over the four builds with the default
#    pool size and the throughput bench's 8 clients, then over pool sizes
#    (BENCH_POOL_SWEEP, default 2,4,8,10,16,32) with the shipped build and
#    32 clients (more requests in flight than connections, as on Cloud Run).
#    The pool sweep needs the `fat` build.
# Everything else (BENCH_TENANTS, BENCH_NOTES, BENCH_SECONDS, BENCH_REPEATS,
# TEST_DATABASE_URL) passes through to the bench. The reports land in
# target/bench/tuning-builds.md and target/bench/tuning-pools.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/target/tuning"

builds=()
build() {
    local label=$1 lto=$2 units=$3 features=$4
    echo "building $label (lto=$lto, codegen-units=$units${features:+, features $features})" >&2
    CARGO_TARGET_DIR="$out/$label" \
        CARGO_PROFILE_RELEASE_LTO="$lto" \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS="$units" \
        cargo build --release --locked --bin tenantry ${features:+--features "$features"}
    builds+=("$label=$out/$label/release/tenantry")
}

# TUNING_BUILDS picks a subset (each full build takes minutes).
for label in ${TUNING_BUILDS:-default thin fat fat-mimalloc}; do
    case "$label" in
        default) build default false 16 "" ;;
        thin) build thin thin 16 "" ;;
        fat) build fat fat 1 "" ;;
        fat-mimalloc) build fat-mimalloc fat 1 mimalloc ;;
        *) echo "TUNING_BUILDS: unknown build $label (default, thin, fat, fat-mimalloc)" >&2; exit 2 ;;
    esac
done

# The load generator itself: optimised, without the long LTO link, in its
# own target directory so that it does not disturb target/release.
bench() {
    CARGO_TARGET_DIR="$out/runner" \
        CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
        cargo bench --locked --bench tuning
}

joined=$(IFS=,; echo "${builds[*]}")
BENCH_BUILDS="$joined" BENCH_POOL_SIZES=10 BENCH_CLIENTS="${BENCH_CLIENTS:-8}" bench
mv target/bench/tuning.md target/bench/tuning-builds.md

BENCH_BUILDS="fat=$out/fat/release/tenantry" \
    BENCH_POOL_SIZES="${BENCH_POOL_SWEEP:-2,4,8,10,16,32}" BENCH_CLIENTS=32 bench
mv target/bench/tuning.md target/bench/tuning-pools.md
echo "wrote target/bench/tuning-builds.md and target/bench/tuning-pools.md" >&2
