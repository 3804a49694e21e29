#!/usr/bin/env bash
# Runs every test layer of Ferrocast, from any working directory, on a clean clone:
#   formatting, clippy, the rust-version check, the release build, the Rust workspace tests
#   (unit, simulator scenarios for one node and for a cluster, conformance vectors, property
#   tests, the Redis bus against a real redis-server, the metrics listener scraped by a real
#   Prometheus), the loom models, the fuzz smoke run, the end-to-end suites in which pusher-js
#   (under Node and in Chromium), Laravel Echo and the `pusher` SDKs talk to the real
#   `ferrocast` binary (three nodes over Redis included), the black-box conformance runner
#   against one server and against a three-node cluster, and Autobahn|Testsuite against the
#   echo build.
# Installs what it needs itself (npm packages from the committed lock file, a Python venv,
# cargo-fuzz, Debian's redis-server, openssl, prometheus, chromium, postgresql and
# mariadb-server packages when they are missing). Every layer runs even when an earlier one
# failed (except the end-to-end layers, which need a fresh build); the script exits non-zero if
# any layer failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

CLIENTS="$ROOT/spec/clients"
export FERROCAST_BIN="$ROOT/target/release/ferrocast"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

declare -a RESULTS=()
FAILED=0

# step NAME COMMAND...: runs one layer, records its outcome and duration, never aborts the script.
step() {
  local name="$1"
  shift
  local start=$SECONDS
  printf '\n==> %s: %s\n' "$name" "$*"
  if "$@"; then
    RESULTS+=("ok      ${name} ($((SECONDS - start)) s)")
    return 0
  else
    local rc=$?
    RESULTS+=("FAILED  ${name} (exit ${rc}, $((SECONDS - start)) s)")
    FAILED=1
    return "$rc"
  fi
}

skip() {
  RESULTS+=("skipped ${1} (${2})")
  printf '\n==> %s: skipped (%s)\n' "$1" "$2"
}

step "rustfmt" cargo fmt --all -- --check || true
step "clippy" cargo clippy --workspace --all-targets --all-features -- -D warnings || true
# The declared rust-version is no older than what any dependency needs (clippy's
# incompatible_msrv, above, checks our own use of std against it).
step "rust-version" "$ROOT/.ci/check-rust-version.py" || true
step "rust-version (fuzz)" "$ROOT/.ci/check-rust-version.py" --manifest-path "$ROOT/fuzz/Cargo.toml" || true

BUILT=0
step "release build" cargo build --release -p ferrocast --bin ferrocast && BUILT=1 || true

# The cluster bus tests start their own redis-server (a free loopback port, a temporary
# directory, no persistence), so a Redis the package may start as a system service on 6379 is
# never used and does not matter; the rediss:// test makes its certificates with openssl.
# The metrics test starts a real prometheus the same way (a free loopback port, a temporary
# storage directory), never the system service the package may start.
# Install Debian's packages when they are missing (CI runs as root on a fresh machine); a
# failure here fails the layer loudly, and the tests that need them then fail too.
ensure_bus_tools() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  if [[ ${#missing[@]} == 0 ]]; then
    echo "redis-server: $(command -v redis-server), $(redis-server --version)"
    echo "openssl: $(openssl version)"
    echo "prometheus: $(prometheus --version 2>&1 | head -n 1)"
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "missing ${missing[*]}; installing needs root (apt-get install -y ${missing[*]})" >&2
      return 1
    fi
    sudo=(sudo -n)
  fi
  echo "not on PATH: ${missing[*]}; running apt-get update && apt-get install -y ${missing[*]}"
  "${sudo[@]}" apt-get update &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" &&
  command -v redis-server >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 &&
  command -v prometheus >/dev/null 2>&1 &&
  echo "installed: $(redis-server --version); $(openssl version); $(prometheus --version 2>&1 | head -n 1)"
}
step "redis-server, openssl and prometheus for the tests" ensure_bus_tools || true

# The app-store tests start their own PostgreSQL and MariaDB (shell/tests/support/postgres.rs
# and mariadb.rs): a fresh cluster or data directory in a temporary directory, a free loopback
# port, PostgreSQL run as `nobody` since it refuses root. Install Debian's packages when they
# are missing, with a policy-rc.d forbidding their system services to start meanwhile, so no
# server is left on 5432 or 3306. A failed install fails this layer loudly; the tests that need
# the servers then fail too, they never skip.
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && command -v psql >/dev/null 2>&1; }
have_mariadb() {
  { command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; } &&
  command -v mariadb-install-db >/dev/null 2>&1 && command -v mariadb >/dev/null 2>&1
}
report_databases() {
  local ok=0
  if have_postgres; then
    echo "postgresql: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | tr '\n' ' ')($(psql --version))"
  else
    echo "postgresql: no /usr/lib/postgresql/*/bin/initdb or no psql" >&2
    ok=1
  fi
  if have_mariadb; then
    echo "mariadb: $(PATH="$PATH:/usr/sbin" mariadbd --version)"
  else
    echo "mariadb: no mariadbd, mariadb-install-db or mariadb client" >&2
    ok=1
  fi
  return "$ok"
}
ensure_databases() {
  local missing=()
  have_postgres || missing+=(postgresql)
  have_mariadb || missing+=(mariadb-server mariadb-client)
  if [[ ${#missing[@]} == 0 ]]; then
    report_databases
    return
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "missing ${missing[*]}; installing needs root (apt-get install -y ${missing[*]})" >&2
      return 1
    fi
    sudo=(sudo -n)
  fi
  # Exit code 101 tells invoke-rc.d (and deb-systemd-invoke) not to start the services.
  local policy=/usr/sbin/policy-rc.d placed=0 rc=0
  if [[ ! -e "$policy" ]]; then
    "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && placed=1
  fi
  echo "missing: ${missing[*]}; running apt-get update && apt-get install -y ${missing[*]}"
  { "${sudo[@]}" apt-get update &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } || rc=$?
  if [[ $placed == 1 ]]; then
    "${sudo[@]}" rm -f "$policy"
  fi
  if [[ $rc != 0 ]]; then
    echo "apt-get failed ($rc) installing ${missing[*]}" >&2
    return "$rc"
  fi
  report_databases
}
step "PostgreSQL and MariaDB for the app-store tests" ensure_databases || true

# The browser tests (spec/clients/test/browser.test.mjs) drive Debian's Chromium through
# playwright-core, which downloads no browser of its own. Install the package when it is
# missing, as for the bus tools; without it the browser tests fail, they never skip.
ensure_chromium() {
  if [[ -x /usr/bin/chromium ]]; then
    /usr/bin/chromium --version 2>/dev/null
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "missing /usr/bin/chromium; installing needs root (apt-get install -y chromium)" >&2
      return 1
    fi
    sudo=(sudo -n)
  fi
  echo "no /usr/bin/chromium; running apt-get update && apt-get install -y chromium"
  "${sudo[@]}" apt-get update &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium &&
  [[ -x /usr/bin/chromium ]] && echo "installed: $(/usr/bin/chromium --version 2>/dev/null)"
}
step "Chromium for the browser tests" ensure_chromium || true

step "cargo test" cargo test --workspace --all-features --no-fail-fast || true

# Loom checks every interleaving of the shell's cross-thread hand-offs. It needs its own
# build (--cfg loom swaps the sync primitives), kept apart so the main build cache survives.
step "loom models" env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$ROOT/target/loom" \
  cargo test -p ferrocast --release --test 'loom_*' || true

# Every cargo-fuzz target for a short run (FUZZ_SECONDS each) from the committed seeds; the
# script installs cargo-fuzz itself. The seeds also replay as ordinary tests in `cargo test`.
step "fuzz smoke" env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" "$ROOT/fuzz/smoke.sh" || true

# Commands inside a function run by `step` are in an `if` condition, where `set -e` is off:
# chain them with && so a failure stops the layer.
e2e() {
  npm ci --prefix "$CLIENTS" --no-audit --no-fund --loglevel=error &&
  # Each test starts its own server on an ephemeral port; files run two at a time.
  node --test --test-reporter=spec --test-concurrency=2 --test-timeout=180000 "$CLIENTS"/test/*.test.mjs
}

# The official Python server SDK (`pusher` from PyPI) against the binary: a venv under
# spec/clients/python/.venv (gitignored) from the pinned requirements.txt.
python_sdk() {
  local dir="$CLIENTS/python"
  python3 -m venv "$dir/.venv" &&
  "$dir/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" &&
  "$dir/.venv/bin/python" "$dir/trigger_test.py"
}

# Autobahn|Testsuite (cases 1–10 and, with permessage-deflate, 12–13; Python 2.7, installed by
# the script) against the shell with an echo protocol in place of Pusher's: a build of its own,
# with the `echo` feature.
ECHO_BIN="$ROOT/target/release/ferrocast-echo"
autobahn() {
  "$ROOT/spec/autobahn/run.sh" "$ECHO_BIN" "$ROOT/target/autobahn"
}

CONFORMANCE="$ROOT/target/release/ferrocast-conformance"
# The conformance vectors with every vector's clients spread over three nodes sharing one
# redis-server.
cluster_conformance() {
  "$CONFORMANCE" --server-bin "$FERROCAST_BIN" --cluster 3
}

# Layers that mostly wait (servers starting, quiet windows, a Python client pacing itself) run
# in the background beside the end-to-end layers, their output kept for the end.
declare -a BG_NAMES=() BG_PIDS=() BG_LOGS=() BG_STARTS=()
background() {
  local name="$1"
  shift
  local log
  log="$(mktemp)"
  printf '\n==> %s: %s (in the background)\n' "$name" "$*"
  "$@" >"$log" 2>&1 &
  BG_NAMES+=("$name")
  BG_PIDS+=("$!")
  BG_LOGS+=("$log")
  BG_STARTS+=("$SECONDS")
}

# Waits for every background layer, prints its output and records its outcome.
collect() {
  local i rc
  for i in "${!BG_PIDS[@]}"; do
    rc=0
    wait "${BG_PIDS[$i]}" || rc=$?
    printf '\n==> %s (ran in the background)\n' "${BG_NAMES[$i]}"
    cat "${BG_LOGS[$i]}"
    rm -f "${BG_LOGS[$i]}"
    if [[ "$rc" == 0 ]]; then
      RESULTS+=("ok      ${BG_NAMES[$i]} ($((SECONDS - BG_STARTS[$i])) s)")
    else
      RESULTS+=("FAILED  ${BG_NAMES[$i]} (exit ${rc}, $((SECONDS - BG_STARTS[$i])) s)")
      FAILED=1
    fi
  done
}

if [[ "$BUILT" == 1 ]] &&
  step "conformance runner build" cargo build --release -q -p ferrocast-spec --bin ferrocast-conformance; then
  background "conformance (black-box, 3-node cluster)" cluster_conformance
  if step "echo build" cargo build --release -q -p ferrocast --features echo --bin ferrocast-echo; then
    background "Autobahn|Testsuite (echo build)" autobahn
  else
    skip "Autobahn|Testsuite (echo build)" "the echo build failed"
  fi
  step "end-to-end (pusher-js, Laravel Echo, Chromium, pusher SDK)" e2e || true
  step "end-to-end (Python SDK)" python_sdk || true
  # The conformance vectors over real sockets, one fresh server per vector configuration.
  step "conformance (black-box)" "$CONFORMANCE" --server-bin "$FERROCAST_BIN" || true
  collect
else
  skip "end-to-end (pusher-js, Laravel Echo, Chromium, pusher SDK)" "a release build failed"
  skip "end-to-end (Python SDK)" "a release build failed"
  skip "conformance (black-box)" "a release build failed"
  skip "conformance (black-box, 3-node cluster)" "a release build failed"
  skip "Autobahn|Testsuite (echo build)" "a release build failed"
  FAILED=1
fi

printf '\n==> summary (%d s in all)\n' "$SECONDS"
printf '  %s\n' "${RESULTS[@]}"
if [[ "$FAILED" != 0 ]]; then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all layers passed"
