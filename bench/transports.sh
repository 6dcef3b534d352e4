#!/usr/bin/env bash
# transports.sh -- issue #5's figures, in one run, for TLS and WSS:
#  1. per-connection memory: the server's RSS with N registered TLS (then WSS) connections held
#     open, minus its RSS before they connected, divided by N;
#  2. REGISTER throughput: refresh REGISTERs (digest, reusing the nonce with a growing nc) sent
#     back to back on every connection for SECONDS, and the time to connect + register all N.
# The load client is crates/switchboard/examples/stream_load.rs; the certificate is made here
# with openssl. Heavy at the default N=10000 (ulimit -n must exceed N, the machine should be
# otherwise idle); try N=200 first.
#
# usage: bench/transports.sh [N=10000] [SECONDS=20]
# Needs openssl, python3 and release builds:
#   cargo build --release -p switchboard --bins --example stream_load
# 127.0.0.1 only; every wait is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:-10000}" SECONDS_LOAD="${2:-20}"
TLS_PORT="${SB_TLS_PORT:-5091}" WSS_PORT="${SB_WSS_PORT:-7491}" HTTP="${SB_HTTP_PORT:-8091}"
PROFILE="${SB_PROFILE:-release}"   # SB_PROFILE=debug: a smoke run on debug builds
BIN="$ROOT/target/$PROFILE/switchboard"
LOAD="$ROOT/target/$PROFILE/examples/stream_load"
[[ -x "$BIN" && -x "$LOAD" ]] || {
  echo "build first: cargo build --release -p switchboard --bins --example stream_load" >&2; exit 1; }
[[ "$(ulimit -n)" == unlimited || "$(ulimit -n)" -gt $(( N + 512 )) ]] || ulimit -n $(( N + 1024 ))
DIR="$(mktemp -d /tmp/sb-transports.XXXXXX)"
cleanup() {
  [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
export SWITCHBOARD_BOOTSTRAP_API_KEY="bench-transports-key-0123456789abcdef"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE -keyout "$DIR/server.key" -out "$DIR/server.crt" 2>/dev/null
ACCOUNT=$(env -u SWITCHBOARD_SHARED_DIR "$BIN" account create --data-dir "$DIR/data" --name bench \
  --realm load.test | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
awk -v n="$N" 'BEGIN{for(i=0;i<n;i++) printf "load%d,secret-pass\n", i}' > "$DIR/users.csv"
env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_STORAGE_SYNCHRONOUS=normal "$BIN" device import \
  --data-dir "$DIR/data" --account "$ACCOUNT" --csv "$DIR/users.csv" > /dev/null

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }

run() { # $1 = tls | wss, $2 = port
  env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_SECURITY_ALLOW=127.0.0.0/8 SWITCHBOARD_LOG=warn SWITCHBOARD_API_RATE_LIMIT=false \
    SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL=0 SWITCHBOARD_STORAGE_SYNCHRONOUS=normal \
    "$BIN" serve --data-dir "$DIR/data" --sip-listen "$1:127.0.0.1:$2" \
    --tls-cert "$DIR/server.crt" --tls-key "$DIR/server.key" \
    --http-listen "127.0.0.1:$HTTP" >> "$DIR/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    curl -fs "127.0.0.1:$HTTP/healthz" > /dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fs "127.0.0.1:$HTTP/healthz" > /dev/null || { echo "server did not start" >&2; cat "$DIR/server.log" >&2; exit 1; }
  local before; before=$(rss_kb)
  local hold=$(( N / 500 + 10 ))
  timeout $(( N / 20 + SECONDS_LOAD + hold + 120 )) "$LOAD" --server "127.0.0.1:$2" --transport "$1" \
    --ca "$DIR/server.crt" --realm load.test --prefix load --password secret-pass \
    --connections "$N" --hold "$hold" --seconds "$SECONDS_LOAD" > "$DIR/$1.out" &
  local client=$!
  for _ in $(seq 1 $(( N / 20 + 120 ))); do
    grep -q '^ready=1' "$DIR/$1.out" 2>/dev/null && break
    sleep 1
  done
  sleep 2
  local held; held=$(rss_kb)
  wait "$client"
  echo "== $1: N=$N"
  cat "$DIR/$1.out"
  echo "rss_before_kb=$before rss_with_connections_kb=$held"
  echo "bytes_per_connection=$(( (held - before) * 1024 / N ))"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

run tls "$TLS_PORT"
run wss "$WSS_PORT"
