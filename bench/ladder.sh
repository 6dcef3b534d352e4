#!/usr/bin/env bash
# ladder.sh -- one build of Switchboard under the reference kit's SIPp ladder (bench.sh) at fixed
# rates, one line per step: target rate, calls, failed, unfinished, retransmissions, achieved
# rate, server cores, CPU-s per 1000 registrations, SIPp rtd2 p50/p99 ms. Run two builds
# alternately to compare them in one session (a same-run baseline):
#
#   for b in new base new base; do bench/ladder.sh /tmp/sb-$b $b "10000 11000 12000 13000"; done
#
# usage: bench/ladder.sh BINARY LABEL "RATES" [USERS=10000]
# Data: /tmp/sb-ladder-LABEL (made once: one account, USERS devices). The server runs with
# keepalive off and loopback allow-listed, as in compare.sh. 127.0.0.1 only; bench.sh bounds
# every SIPp run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIT="${SWITCHBOARD_SHARED_DIR:-$ROOT/../shared}/bench/reference"
BIN="$1" LABEL="$2" RATES="$3" USERS="${4:-10000}"
DATA="/tmp/sb-ladder-$LABEL"
if [[ ! -s "$DATA/ready-$USERS" ]]; then
  rm -rf "$DATA"; mkdir -p "$DATA"
  acct=$("$BIN" account create --data-dir "$DATA" --name bench --realm bench.local |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  awk -v n="$USERS" 'BEGIN{for(i=1;i<=n;i++) printf "user%06d,pw%06d\n", i, i}' > "$DATA/users.csv"
  SWITCHBOARD_STORAGE_SYNCHRONOUS=normal "$BIN" device import --data-dir "$DATA" --account "$acct" \
    --csv "$DATA/users.csv" > /dev/null
  echo "$acct" > "$DATA/ready-$USERS"
fi
# Builds older than the [security] section refuse its variable, so it is set only if known.
allow=()
grep -q SWITCHBOARD_SECURITY_ALLOW "$BIN" && allow=(SWITCHBOARD_SECURITY_ALLOW=127.0.0.0/8)
env "${allow[@]}" SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL=0 SWITCHBOARD_LOG=warn "$BIN" serve \
  --data-dir "$DATA" --sip-listen udp:127.0.0.1:5080 --http-listen 127.0.0.1:0 > "$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
sleep 1
"$KIT/bench.sh" 127.0.0.1:5080 --pid "$PID" --label "$LABEL" --out "$DATA/out-$(date +%H%M%S)" \
  --users "$USERS" --prime 2000 --rates "$RATES" --duration 10 --stop-after-fail 5 --wait-idle 30 2>&1 |
  grep -E "^  rep" | sed "s/^/$LABEL /" | awk '{print $1,$2,$4,$6,$8,$10,$12,$14,$17,$18,$19,$28,$29}'
