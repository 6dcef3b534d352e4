#!/usr/bin/env bash
# memory.sh -- RSS per binding, measured so start-up garbage and transient transaction state
# do not count: RSS idle with N devices and no bindings, then after N authenticated
# registrations and Timer J (32 s, when the transaction markers are gone).
#
# usage: bench/memory.sh [N=100000] [RATE=5000]
# Needs sipp and the release binary (cargo build --release -p switchboard). 127.0.0.1 only;
# sipp is bounded by -m, -timeout and timeout(1).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIT="${SWITCHBOARD_SHARED_DIR:-$ROOT/../shared}/bench/reference"
N="${1:-100000}" RATE="${2:-5000}" PORT="${SB_PORT:-5083}"
BIN="$ROOT/target/release/switchboard"
DIR="$(mktemp -d /tmp/sb-memory.XXXXXX)"
trap '[[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null; rm -rf "$DIR"' EXIT
ACCOUNT=$("$BIN" account create --data-dir "$DIR/data" --name bench --realm bench.local |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
awk -v n="$N" 'BEGIN{for(i=1;i<=n;i++) printf "user%06d,pw%06d\n", i, i}' > "$DIR/users.csv"
SWITCHBOARD_STORAGE_SYNCHRONOUS=normal "$BIN" device import --data-dir "$DIR/data" \
  --account "$ACCOUNT" --csv "$DIR/users.csv" > /dev/null
"$KIT/sipp/mkcsv.sh" "$N" "$DIR/sipp.csv"
# Let the import age past the directory refresh look-back (10 s), as a real directory would
# be: otherwise its tail is re-read once at start and that garbage pads the baseline.
sleep 12
env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_SECURITY_ALLOW=127.0.0.0/8 SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL=0 SWITCHBOARD_LOG=warn \
  "$BIN" serve --data-dir "$DIR/data" --sip-listen "udp:127.0.0.1:$PORT" \
  --http-listen 127.0.0.1:0 > "$DIR/server.log" 2>&1 &
PID=$!
sleep 6
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
IDLE=$(rss)
( cd "$DIR" && timeout $(( N / RATE + 120 )) sipp -sf "$KIT/sipp/reg_auth.xml" -inf "$DIR/sipp.csv" \
    -i 127.0.0.1 -p 5099 -r "$RATE" -m "$N" -l "$RATE" -nostdin -timeout "$(( N / RATE + 60 ))s" \
    -buff_size 4194304 "127.0.0.1:$PORT" > /dev/null 2>&1 ) || { echo "sipp failed" >&2; exit 1; }
PRIMED=$(rss)
sleep 36
SETTLED=$(rss)
echo "devices=$N idle_rss_kb=$IDLE primed_rss_kb=$PRIMED settled_rss_kb=$SETTLED"
echo "rss_per_binding_bytes: right after priming $(( (PRIMED - IDLE) * 1024 / N )), after Timer J $(( (SETTLED - IDLE) * 1024 / N ))"
