#!/usr/bin/env bash
# keepalive_register.sh -- does the keepalive pinger disturb REGISTER handling? (issue #4: "the
# pinger must scale: 100,000 bindings at 30 s is ~3,300 OPTIONS/s, and it must not disturb
# REGISTER handling").
#
# N devices register from one UDP port where a responder answers every OPTIONS; then SIPp
# registers LOAD other devices at RATE/s for DURATION s (answering stray OPTIONS itself, -aa),
# twice against the same data in one run: with the pinger at 30 s (N bindings pinged, ~N/30
# OPTIONS/s), and with keepalive off (the baseline). Prints, for both, the achieved rate,
# failed calls, SIPp's response time p50/p99 of the authenticated REGISTER, and the server's
# CPU, and their ratios.
#
# usage: bench/keepalive_register.sh [N=100000] [RATE=3000] [DURATION=30] [LOAD=20000]
# Needs sipp, python3 and the release build. 127.0.0.1 only; every wait is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIT="${SWITCHBOARD_SHARED_DIR:-$ROOT/../shared}/bench/reference"
N="${1:-100000}" RATE="${2:-3000}" DURATION="${3:-30}" LOAD="${4:-20000}"
PORT="${SB_PORT:-5086}" PHONES="${SB_PHONES_PORT:-5098}" LOADPORT="${SB_LOAD_PORT:-5097}"
BIN="$ROOT/target/release/switchboard"
[[ -x "$BIN" ]] || { echo "build first: cargo build --release -p switchboard" >&2; exit 1; }
DIR="$(mktemp -d /tmp/sb-keepreg.XXXXXX)"
cleanup() {
  [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null
  [[ -n "${RESPONDER:-}" ]] && kill "$RESPONDER" 2>/dev/null
  sleep 0.5; rm -rf "$DIR"
}
trap cleanup EXIT
TOTAL=$(( N + LOAD ))
ACCOUNT=$(env -u SWITCHBOARD_SHARED_DIR "$BIN" account create --data-dir "$DIR/data" --name bench --realm bench.local |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
awk -v n="$TOTAL" 'BEGIN{for(i=1;i<=n;i++) printf "user%06d,pw%06d\n", i, i}' > "$DIR/users.csv"
env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_STORAGE_SYNCHRONOUS=normal "$BIN" device import \
  --data-dir "$DIR/data" --account "$ACCOUNT" --csv "$DIR/users.csv" > /dev/null
"$KIT/sipp/mkcsv.sh" "$TOTAL" "$DIR/all.csv"
{ echo SEQUENTIAL; sed -n "2,$(( N + 1 ))p" "$DIR/all.csv"; } > "$DIR/phones.csv"
{ echo SEQUENTIAL; sed -n "$(( N + 2 )),\$p" "$DIR/all.csv"; } > "$DIR/load.csv"

start() { # $1 = keepalive interval
  env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_SECURITY_ALLOW=127.0.0.0/8 SWITCHBOARD_LOG=warn,switchboard=info \
    SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL="$1" \
    "$BIN" serve --data-dir "$DIR/data" --sip-listen "udp:127.0.0.1:$PORT" \
    --http-listen 127.0.0.1:0 >> "$DIR/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do
    grep -q "switchboard ready" "$DIR/server.log" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "server did not start" >&2; cat "$DIR/server.log" >&2; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)

load() { # $1 = label: SIPp registers the LOAD devices at RATE for DURATION s
  local calls=$(( RATE * DURATION )) t0 t1 s0 s1
  rm -f "$DIR"/load_*.csv
  t0=$(ticks); s0=$(date +%s.%N)
  ( cd "$DIR" && timeout $(( DURATION + 120 )) sipp -sf "$KIT/sipp/reg_auth.xml" -inf "$DIR/load.csv" \
      -i 127.0.0.1 -p "$LOADPORT" -r "$RATE" -m "$calls" -aa -nostdin -timeout "$(( DURATION + 60 ))s" \
      -buff_size 8388608 -trace_stat -stf "$DIR/load_$1.csv" -trace_rtt -rtt_freq 1000 \
      "127.0.0.1:$PORT" > "$DIR/sipp_$1.out" 2>&1 ) || true
  t1=$(ticks); s1=$(date +%s.%N)
  python3 - "$1" "$DIR" "$t0" "$t1" "$s0" "$s1" "$HZ" "$calls" <<'PY'
import csv, glob, statistics, sys
label, d, t0, t1, s0, s1, hz, calls = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
rows = list(csv.reader(open(f"{d}/load_{label}.csv"), delimiter=";"))
head, last = rows[0], rows[-1]
get = lambda name: float(last[head.index(name)])
ok, failed = get("SuccessfulCall(C)"), get("FailedCall(C)")
rtts = []
for path in glob.glob(f"{d}/*_rtt.csv"):
    for row in csv.reader(open(path), delimiter=";"):
        # Date_ms;response_time_ms;rtd_no -- rtd 2 is the authenticated REGISTER's answer.
        if len(row) >= 3 and row[2] == "2":
            rtts.append(float(row[1]))
rtts.sort()
p = lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))] if rtts else float("nan")
elapsed = s1 - s0
cores = (t1 - t0) / hz / elapsed
print(f"{label}: calls={int(calls)} ok={int(ok)} failed={int(failed)} achieved={ok / elapsed:.0f}/s "
      f"rtd2 p50={p(0.5):.2f} ms p99={p(0.99):.2f} ms server_cpu={cores * 100:.1f}% "
      f"({(t1 - t0) / hz / max(ok, 1) * 1e6:.0f} us per registration incl. pings)")
open(f"{d}/result_{label}", "w").write(f"{ok / elapsed} {p(0.5)} {p(0.99)} {cores} {failed}\n")
PY
  rm -f "$DIR"/*_rtt.csv
}

start 30
echo "registering $N phones (pinged at 30 s) ..."
( cd "$DIR" && timeout $(( N / 3000 + 120 )) sipp -sf "$KIT/sipp/reg_auth.xml" -inf "$DIR/phones.csv" \
    -i 127.0.0.1 -p "$PHONES" -r 3000 -m "$N" -nostdin -timeout "$(( N / 3000 + 60 ))s" \
    -buff_size 8388608 "127.0.0.1:$PORT" > "$DIR/phones.out" 2>&1 ) || {
  echo "registering the phones failed:" >&2; tail -n 20 "$DIR/phones.out" "$DIR/server.log" >&2; exit 1; }
python3 "$ROOT/bench/options_responder.py" --port "$PHONES" --count-file "$DIR/answered" \
  --seconds $(( DURATION * 2 + 400 )) &
RESPONDER=$!
echo "letting a full ping cycle pass (35 s) ..."
sleep 35
answered() { kill -USR1 "$RESPONDER"; sleep 0.2; cat "$DIR/answered"; }
A0=$(answered); P0=$(date +%s.%N)
load pinger
A1=$(answered); P1=$(date +%s.%N)
python3 -c "import sys; a0,a1,p0,p1=map(float,sys.argv[1:]); print(f'OPTIONS answered during the pinger run: {(a1-a0)/(p1-p0):.0f}/s (expected ~{$N/30:.0f}/s)')" "$A0" "$A1" "$P0" "$P1"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
start 0
sleep 5
load baseline
python3 - "$DIR" <<'PY'
import sys
d = sys.argv[1]
on = list(map(float, open(f"{d}/result_pinger").read().split()))
off = list(map(float, open(f"{d}/result_baseline").read().split()))
print(f"ratios pinger/baseline: achieved {on[0] / off[0]:.3f}, rtd2 p50 {on[1] / off[1] if off[1] else float('nan'):.2f}, "
      f"p99 {on[2] / off[2] if off[2] else float('nan'):.2f}, server cpu {on[3] / off[3]:.2f}")
PY
