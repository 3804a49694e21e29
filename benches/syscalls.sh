#!/usr/bin/env bash
# System calls per connection of the sequential scenario (one handshake in flight: connect,
# upgrade, welcome, subscribe, subscribed; then every client is reset), for the server and
# for the accept floor, each under `strace -f -c`.
#
# Each side serves two runs of different sizes in fresh processes; the difference of the
# counts divided by the difference of the sizes cancels start-up and shutdown, so what is
# left is what one connection costs. Counts, not times: the figures are the same from run to
# run up to a few calls per thousand connections (e.g. an epoll_wait that found two events).
#
#   benches/syscalls.sh [SMALL LARGE]        # default 200 1200
#   FERROCAST=path/to/ferrocast LOADGEN=path/to/loadgen benches/syscalls.sh
set -euo pipefail

small=${1:-200}
large=${2:-1200}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
ferrocast=${FERROCAST:-$target/release/ferrocast}
loadgen=${LOADGEN:-$target/release/loadgen}
for bin in "$ferrocast" "$loadgen"; do
    [ -x "$bin" ] || { echo "missing $bin: cargo build --release -p ferrocast -p ferrocast-benches" >&2; exit 2; }
done
if ! command -v strace >/dev/null; then
    echo "strace is missing; installing the Debian package" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y strace >&2; else sudo apt-get install -y strace >&2; fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/apps.toml" <<'EOF'
[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
EOF

# Waits until FILE has a line starting with PREFIX; prints the rest of it.
await_line() {
    local file=$1 prefix=$2
    for _ in $(seq 1 500); do
        if line=$(grep -m1 "^$prefix" "$file" 2>/dev/null); then
            echo "${line#"$prefix"}"
            return 0
        fi
        sleep 0.02
    done
    echo "no '$prefix' line in $file" >&2
    return 1
}

# The sequential scenario with N clients against ADDR.
drive() {
    "$loadgen" --ws-url "ws://$1" --scenarios sequential --sequential "$2" --repeats 1 \
        --no-floors >"$work/loadgen.out" 2>&1 ||
        { cat "$work/loadgen.out" >&2; return 1; }
}

# Waits for strace (pid $1) to write its summary after the traced process ended.
reap() {
    wait "$1" 2>/dev/null || true
}

# The server, pinned to CPU 0 as loadgen pins it (so it runs one I/O worker), N clients.
server_run() {
    local n=$1 out=$work/server-$1.strace
    taskset -c 0 strace -f -c -o "$out" "$ferrocast" --host 127.0.0.1 --port 0 \
        --config "$work/apps.toml" --rate-limit false >"$work/server.out" 2>/dev/null &
    local tracer=$!
    local addr
    addr=$(await_line "$work/server.out" "ferrocast listening on ")
    drive "$addr" "$n"
    # The server is strace's child: a graceful SIGTERM to it, by its process id.
    kill -TERM "$(ps -o pid= --ppid "$tracer" | head -n1)"
    reap "$tracer"
    rm -f "$work/server.out"
}

# The accept floor (loadgen --floor-server), which exits when its stdin closes.
floor_run() {
    local n=$1 out=$work/floor-$1.strace
    mkfifo "$work/floor.in"
    taskset -c 0 strace -f -c -o "$out" "$loadgen" --floor-server <"$work/floor.in" \
        >"$work/floor.out" 2>/dev/null &
    local tracer=$!
    exec 3>"$work/floor.in"
    local addr
    addr=$(await_line "$work/floor.out" "floor listening on ")
    drive "$addr" "$n"
    exec 3>&-
    reap "$tracer"
    rm -f "$work/floor.in" "$work/floor.out"
}

# `syscall calls errors` lines of one strace -c summary.
calls() {
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {
        errors = (NF == 6) ? $5 : 0; print $NF, $4, errors }' "$1"
}

server_run "$small"
server_run "$large"
floor_run "$small"
floor_run "$large"

span=$((large - small))
# Joins the four summaries: per connection = (large - small) / span, calls and errors.
{
    calls "$work/server-$small.strace" | sed 's/^/S0 /'
    calls "$work/server-$large.strace" | sed 's/^/S1 /'
    calls "$work/floor-$small.strace" | sed 's/^/F0 /'
    calls "$work/floor-$large.strace" | sed 's/^/F1 /'
} | awk -v span="$span" -v small="$small" -v large="$large" '
    { key = $1 SUBSEP $2; c[key] = $3; e[key] = $4; names[$2] = 1 }
    END {
        printf "system calls per connection, sequential, (%d - %d connections) / %d\n", large, small, span
        printf "| %-16s | %14s | %14s |\n", "syscall", "server", "accept floor"
        printf "|%s|%s|%s|\n", "------------------", "----------------", "----------------"
        for (n in names) {
            s = (c["S1", n] - c["S0", n]) / span; se = (e["S1", n] - e["S0", n]) / span
            f = (c["F1", n] - c["F0", n]) / span; fe = (e["F1", n] - e["F0", n]) / span
            if (s < 0.05 && f < 0.05) continue
            ss = sprintf("%.2f", s); if (se >= 0.05) ss = ss sprintf(" (%.2f err)", se)
            fs = sprintf("%.2f", f); if (fe >= 0.05) fs = fs sprintf(" (%.2f err)", fe)
            printf "| %-16s | %14s | %14s |\n", n, ss, fs | "sort"
            ts += s; tf += f
        }
        close("sort")
        printf "| %-16s | %14.2f | %14.2f |\n", "total", ts, tf
    }'
