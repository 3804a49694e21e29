#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (cases 1–10, and 12–13 for permessage-deflate)
# against the echo build of the server, and fails unless every case passed (OK, NON-STRICT or
# INFORMATIONAL; never FAILED or missing; UNIMPLEMENTED only where the server declines an offer
# on purpose: 13.3 and 13.5 ask for a compression window under 32 KiB).
#
#   spec/autobahn/run.sh ECHO_BINARY [REPORT_DIR]
#
# ECHO_BINARY is `cargo build --release -p ferrocast --features echo --bin ferrocast-echo`'s
# output. The suite needs Python 2.7: the first one of $AUTOBAHN_PYTHON, pyenv's 2.7 and
# python2.7 on the PATH; with none, this fails and says so. The suite is installed once
# into REPORT_DIR/../autobahn-site from the pinned requirements.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ECHO_BIN="${1:?usage: run.sh ECHO_BINARY [REPORT_DIR]}"
REPORT_DIR="${2:-$HERE/../../target/autobahn}"
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
SITE="$REPORT_DIR/../autobahn-site"

find_python() {
  local candidate
  for candidate in "${AUTOBAHN_PYTHON:-}" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 \
    "$(command -v python2.7 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! PYTHON="$(find_python)"; then
  echo "autobahn: Autobahn|Testsuite needs Python 2.7, and none was found (set AUTOBAHN_PYTHON," >&2
  echo "autobahn: or install 2.7 under pyenv: pyenv install 2.7.18)" >&2
  exit 1
fi

# Reinstalled whenever requirements.txt changes.
STAMP="$SITE/.requirements"
if ! cmp -s "$HERE/requirements.txt" "$STAMP" 2>/dev/null; then
  echo "autobahn: installing the suite for $PYTHON into $SITE"
  rm -rf "$SITE"
  "$PYTHON" -m pip install --disable-pip-version-check --no-warn-script-location -q \
    --target "$SITE" -r "$HERE/requirements.txt" 2>&1 | grep -v DEPRECATION || true
  [ -d "$SITE/autobahntestsuite" ] || { echo "autobahn: the install failed" >&2; exit 1; }
  cp "$HERE/requirements.txt" "$STAMP"
fi

SERVER_LOG="$REPORT_DIR/echo-server.log"
"$ECHO_BIN" 0 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT
ADDR=""
for _ in $(seq 100); do
  ADDR="$(sed -n 's/^ferrocast-echo listening on //p' "$SERVER_LOG")"
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "autobahn: the echo server did not start" >&2; exit 1; }

rm -rf "$REPORT_DIR/reports"
cat >"$REPORT_DIR/fuzzingclient.json" <<JSON
{
  "outdir": "$REPORT_DIR/reports",
  "servers": [{"agent": "ferrocast", "url": "ws://$ADDR"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
echo "autobahn: cases 1–10 and 12–13 against ws://$ADDR"
# A site directory, not PYTHONPATH: zope's namespace package needs its .pth file read.
(cd "$REPORT_DIR" && "$PYTHON" -c \
  'import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ["wstest"] + sys.argv[2:];
from autobahntestsuite.wstest import run; run()' \
  "$SITE" -m fuzzingclient -s fuzzingclient.json >"$REPORT_DIR/wstest.log" 2>&1) || {
  tail -20 "$REPORT_DIR/wstest.log" >&2
  exit 1
}
python3 "$HERE/summarize.py" "$REPORT_DIR/reports/index.json" "$REPORT_DIR/summary.md" \
  --expect-cases 517 --may-decline 13.3,13.5 --committed "$HERE/summary.md"
