#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short while and fails on any crash.
#
#   fuzz/smoke.sh                    # each target for FUZZ_SECONDS (default 20)
#   FUZZ_SECONDS=300 fuzz/smoke.sh   # longer
#   FUZZ_TARGETS="engine_ops config" fuzz/smoke.sh
#
# Installs cargo-fuzz when missing. Builds with the default toolchain and RUSTC_BOOTSTRAP=1
# (cargo-fuzz needs `-Z` flags); FUZZ_TOOLCHAIN=nightly uses a nightly instead. No sanitizer:
# the fuzzed crates have no `unsafe`, and without ASan each target runs several times faster. New inputs libFuzzer finds go to a scratch
# directory under fuzz/target, so the committed seeds in fuzz/corpus stay as they are. A crash
# leaves its input in fuzz/artifacts/<target>/; replay it with
# `cargo fuzz run <target> fuzz/artifacts/<target>/crash-...`, and keep it as a regression by
# copying it to fuzz/regressions/<target>/ (replayed by `cargo test -p ferrocast-proptests`).
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"
targets="${FUZZ_TARGETS:-client_message config engine_ops ws_frame http_request bus_message app_store}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

toolchain=()
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    toolchain=("+${FUZZ_TOOLCHAIN}")
else
    export RUSTC_BOOTSTRAP=1
fi

echo "smoke: building ${targets}"
cargo "${toolchain[@]}" fuzz build -O -s none

failed=()
for target in $targets; do
    scratch="target/smoke-corpus/${target}"
    mkdir -p "$scratch" "corpus/${target}"
    echo "smoke: ${target} for ${seconds}s"
    if ! cargo "${toolchain[@]}" fuzz run -O -s none "$target" "$scratch" "corpus/${target}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"target/smoke-${target}.log" 2>&1; then
        echo "smoke: ${target} FAILED; last lines of fuzz/target/smoke-${target}.log:"
        tail -n 40 "target/smoke-${target}.log"
        failed+=("$target")
    else
        grep -E '^stat::number_of_executed_units' "target/smoke-${target}.log" |
            sed "s/^/smoke: ${target} /" || true
    fi
done

if ((${#failed[@]})); then
    echo "smoke: crashes in: ${failed[*]}"
    exit 1
fi
echo "smoke: all targets ran ${seconds}s without a crash"
