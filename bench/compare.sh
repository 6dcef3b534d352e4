#!/usr/bin/env bash
# compare.sh -- Switchboard and Kamailio (the reference registrar) under the same SIPp load, in
# one run, with the kit in ../shared/bench/reference. Prints one table of both.
#
# usage: bench/compare.sh [PHASE ...]      (default: kamailio-mem kamailio-sqlite switchboard latency mem100k)
#   kamailio-mem      Kamailio 5.6, usrloc in memory, 4 MiB UDP buffer: --find-max
#   kamailio-sqlite   Kamailio 5.6, usrloc write-through to SQLite (+busy-timeout shim): --find-max
#   switchboard       Switchboard (durable: 200 only after the SQLite commit): --find-max
#   latency           Switchboard wire latency (pcap) at fixed rates (LATENCY_RATES)
#   mem100k           Switchboard RSS per binding with 100,000 registered users
# Environment: SB_BIN (this tree's release build), USERS (10000), RATES ("1000 2000 5000 10000 20000"), REPEAT (1), DURATION (10),
#   LATENCY_RATES ("1000 5000"), SB_PORT (5080), ANCHOR_RUN (/tmp/sb-bench), SB_SYNCHRONOUS (full).
# Only 127.0.0.1 is ever a target. Every sipp run is bounded by bench.sh (-timeout, timeout).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SWITCHBOARD_SHARED_DIR:-$ROOT/../shared}"
KIT="$SHARED/bench/reference"
[[ -x "$KIT/bench.sh" ]] || { echo "no reference kit at $KIT (set SWITCHBOARD_SHARED_DIR)" >&2; exit 2; }
export ANCHOR_RUN="${ANCHOR_RUN:-/tmp/sb-bench}"
USERS="${USERS:-10000}" RATES="${RATES:-1000 2000 5000 10000 20000}" REPEAT="${REPEAT:-1}"
DURATION="${DURATION:-10}" LATENCY_RATES="${LATENCY_RATES:-1000 5000}" SB_PORT="${SB_PORT:-5080}"
SB_SYNCHRONOUS="${SB_SYNCHRONOUS:-full}"
PHASES=("$@"); (( ${#PHASES[@]} )) || PHASES=(kamailio-mem kamailio-sqlite switchboard latency mem100k)
mkdir -p "$ANCHOR_RUN/results"
STAMP="$(date +%Y%m%d-%H%M%S)"
SUMMARY="$ANCHOR_RUN/results/compare-$STAMP.md"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

need() {
  command -v sipp >/dev/null || { log "installing sip-tester"; apt-get install -y -qq sip-tester >/dev/null; }
  command -v kamailio >/dev/null || { log "installing kamailio"; apt-get install -y -qq kamailio kamailio-sqlite-modules >/dev/null; }
  command -v dumpcap >/dev/null || { log "installing tshark (dumpcap for --pcap)"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; }
}

# SB_BIN: run another build (e.g. an older commit's, as a baseline in the same run); then
# nothing is built here.
SB_BIN="${SB_BIN:-}"
SB_PID=""
if [[ -n "$SB_BIN" ]]; then
  sb_build() { :; }
else
  SB_BIN="$ROOT/target/release/switchboard"
  sb_build() { (cd "$ROOT" && cargo build --release -q -p switchboard --bins); }
fi
sb_start() {  # sb_start USERS
  local users="$1" data="$ANCHOR_RUN/sb-data-$1"
  if [[ ! -s "$data/ready-$users" ]]; then
    rm -rf "$data"; mkdir -p "$data"
    local acct
    acct=$("$SB_BIN" account create --data-dir "$data" --name bench --realm bench.local | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    awk -v n="$users" 'BEGIN{for(i=1;i<=n;i++) printf "user%06d,pw%06d\n", i, i}' > "$data/users.csv"
    SWITCHBOARD_STORAGE_SYNCHRONOUS=normal "$SB_BIN" device import --data-dir "$data" --account "$acct" --csv "$data/users.csv" >/dev/null
    echo "$acct" > "$data/ready-$users"
  fi
  # Keepalive pings off: the reference Kamailio config pings nothing, and SIPp would get
  # OPTIONS it does not expect.
  # The load generator is one address sending thousands of requests a second: exempt
  # loopback from the per-address rate limit and connection cap.
  # Builds older than the [security] section refuse its variable, so it is set only if known.
  local allow=()
  grep -q SWITCHBOARD_SECURITY_ALLOW "$SB_BIN" && allow=(SWITCHBOARD_SECURITY_ALLOW=127.0.0.0/8)
  env "${allow[@]}" SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL=0 SWITCHBOARD_STORAGE_SYNCHRONOUS="$SB_SYNCHRONOUS" SWITCHBOARD_LOG=warn,switchboard=info "$SB_BIN" serve --data-dir "$data" \
    --sip-listen "udp:127.0.0.1:$SB_PORT" --sip-listen "tcp:127.0.0.1:$SB_PORT" \
    --http-listen 127.0.0.1:0 > "$ANCHOR_RUN/switchboard.log" 2>&1 &
  SB_PID=$!
  for _ in $(seq 1 100); do
    grep -q "switchboard ready" "$ANCHOR_RUN/switchboard.log" 2>/dev/null && return 0
    kill -0 "$SB_PID" 2>/dev/null || { cat "$ANCHOR_RUN/switchboard.log" >&2; return 1; }
    sleep 0.1
  done
  log "switchboard did not become ready"; return 1
}
sb_stop() {
  [[ -n "$SB_PID" ]] || return 0
  kill -TERM "$SB_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SB_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SB_PID" 2>/dev/null || true
  SB_PID=""
}
trap 'sb_stop; "$KIT/kamailio/stop.sh" >/dev/null 2>&1 || true' EXIT

bench() {  # bench LABEL TARGET_PORT PID [bench.sh options...]
  local label="$1" port="$2" pid="$3"; shift 3
  local out="$ANCHOR_RUN/results/$label-$STAMP"
  log "bench $label -> $out"
  "$KIT/bench.sh" "127.0.0.1:$port" --pid "$pid" --label "$label" --out "$out" \
    --duration "$DURATION" --wait-idle 60 "$@" 2>&1 | grep --line-buffered -E "^\[|^  [a-z]" >&2 || true
  echo "$out" >> "$ANCHOR_RUN/results/compare-$STAMP.dirs"
}

need
for phase in "${PHASES[@]}"; do
  case "$phase" in
    kamailio-mem)
      "$KIT/kamailio/stop.sh" >/dev/null 2>&1 || true
      "$KIT/kamailio/start.sh" --mode mem --maxbuffer 4194304 --users "$USERS" >&2
      bench kamailio-mem 5070 "$(cat "$ANCHOR_RUN/kamailio.pid")" --users "$USERS" --rates "$RATES" --find-max --repeat "$REPEAT"
      "$KIT/kamailio/stop.sh" >&2 ;;
    kamailio-sqlite)
      "$KIT/kamailio/stop.sh" >/dev/null 2>&1 || true
      "$KIT/kamailio/start.sh" --mode sqlite --busy-timeout 5000 --maxbuffer 4194304 --users "$USERS" >&2
      bench kamailio-sqlite 5070 "$(cat "$ANCHOR_RUN/kamailio.pid")" --users "$USERS" --prime 1000 --rates "500 1000 2000 5000" --find-max --repeat "$REPEAT"
      "$KIT/kamailio/stop.sh" >&2 ;;
    switchboard)
      sb_build; sb_start "$USERS"
      bench switchboard "$SB_PORT" "$SB_PID" --users "$USERS" --rates "$RATES" --find-max --repeat "$REPEAT"
      sb_stop ;;
    latency)
      sb_build; sb_start "$USERS"
      bench switchboard-latency "$SB_PORT" "$SB_PID" --users "$USERS" --prime 0 --rates "$LATENCY_RATES" --pcap --stop-after-fail 9
      sb_stop ;;
    mem100k)
      sb_build; sb_start 100000
      bench switchboard-mem100k "$SB_PORT" "$SB_PID" --users 100000 --prime 5000 --rates "1000" --duration 2
      sb_stop ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
python3 "$ROOT/bench/summarize_compare.py" "$ANCHOR_RUN/results/compare-$STAMP.dirs" | tee "$SUMMARY"
log "summary -> $SUMMARY"
