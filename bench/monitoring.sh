#!/usr/bin/env bash
# monitoring.sh -- issue #4's figures, in one run:
#  1. keepalive CPU at N bindings: N devices registered with SIPp (digest) from one UDP port,
#     a responder on that port answering every OPTIONS; the server's CPU over WINDOW seconds
#     with the pinger at 30 s, against the same server and data with keepalive off (baseline,
#     same run);
#  2. monitoring API latency with N devices and a month of history (seed_history.py: a
#     registered and an expired event per device per day, a state sample every 5 minutes),
#     against GET /devices?page_size=50 measured in the same run (baseline).
#
# usage: bench/monitoring.sh [N=100000] [RATE=4000] [WINDOW=60]
# Needs sipp, python3 and the release binary (cargo build --release -p switchboard).
# 127.0.0.1 only; every wait is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIT="${SWITCHBOARD_SHARED_DIR:-$ROOT/../shared}/bench/reference"
N="${1:-100000}" RATE="${2:-4000}" WINDOW="${3:-60}"
PORT="${SB_PORT:-5085}" PHONES="${SB_PHONES_PORT:-5099}" HTTP="${SB_HTTP_PORT:-8085}"
BIN="$ROOT/target/release/switchboard"
[[ -x "$BIN" ]] || { echo "build first: cargo build --release -p switchboard" >&2; exit 1; }
DIR="$(mktemp -d /tmp/sb-monitoring.XXXXXX)"
cleanup() {
  [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null
  [[ -n "${RESPONDER:-}" ]] && kill "$RESPONDER" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
export SWITCHBOARD_BOOTSTRAP_API_KEY="bench-monitoring-key-0123456789abcdef"
ACCOUNT=$(env -u SWITCHBOARD_SHARED_DIR "$BIN" account create --data-dir "$DIR/data" --name bench --realm bench.local |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
awk -v n="$N" 'BEGIN{for(i=1;i<=n;i++) printf "user%06d,pw%06d\n", i, i}' > "$DIR/users.csv"
env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_STORAGE_SYNCHRONOUS=normal "$BIN" device import \
  --data-dir "$DIR/data" --account "$ACCOUNT" --csv "$DIR/users.csv" > /dev/null
echo "seeding a month of history..."
python3 "$ROOT/bench/seed_history.py" "$DIR/data/switchboard.db" "$ACCOUNT" 30
"$KIT/sipp/mkcsv.sh" "$N" "$DIR/sipp.csv"

start() { # $1 = keepalive interval
  env -u SWITCHBOARD_SHARED_DIR SWITCHBOARD_SECURITY_ALLOW=127.0.0.0/8 SWITCHBOARD_LOG=warn SWITCHBOARD_API_RATE_LIMIT=false \
    SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL="$1" \
    "$BIN" serve --data-dir "$DIR/data" --sip-listen "udp:127.0.0.1:$PORT" \
    --http-listen "127.0.0.1:$HTTP" >> "$DIR/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    curl -fs "127.0.0.1:$HTTP/healthz" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server did not start" >&2; cat "$DIR/server.log" >&2; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
answered() { kill -USR1 "$RESPONDER"; sleep 0.2; cat "$DIR/answered"; }
HZ=$(getconf CLK_TCK)

start 30
( cd "$DIR" && timeout $(( N / RATE + 120 )) sipp -sf "$KIT/sipp/reg_auth.xml" -inf "$DIR/sipp.csv" \
    -i 127.0.0.1 -p "$PHONES" -r "$RATE" -m "$N" -l "$RATE" -nostdin -timeout "$(( N / RATE + 60 ))s" \
    -buff_size 8388608 -trace_err -error_file "$DIR/sipp-errors.log" "127.0.0.1:$PORT" \
    > "$DIR/sipp.out" 2>&1 ) || {
  echo "sipp failed:" >&2; tail -n 20 "$DIR/sipp.out" "$DIR/sipp-errors.log" "$DIR/server.log" >&2; exit 1; }
python3 "$ROOT/bench/options_responder.py" --port "$PHONES" --count-file "$DIR/answered" \
  --seconds $(( WINDOW * 3 + 300 )) &
RESPONDER=$!
echo "registered $N; letting a full ping cycle pass..."
sleep 35
T0=$(ticks); A0=$(answered); S0=$(date +%s.%N)
sleep "$WINDOW"
T1=$(ticks); A1=$(answered); S1=$(date +%s.%N)
echo "api latency (pinger running)..."
python3 - "$HTTP" "$ACCOUNT" "$SWITCHBOARD_BOOTSTRAP_API_KEY" > "$DIR/latency.txt" <<'PY'
import http.client, json, random, statistics, sys, time
port, account, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def call(method, path, body=None, headers={}):
    conn.request(method, path, body=json.dumps(body) if body else None,
                 headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse(); data = response.read()
    return response.status, data
status, body = call("PUT", "/v2/api_auth", {"data": {"api_key": key}})
token = json.loads(body)["auth_token"]
auth = {"X-Auth-Token": token}
status, body = call("GET", f"/v2/accounts/{account}/devices?page_size=1000", headers=auth)
devices = [row["id"] for row in json.loads(body)["data"]]
base = f"/v2/accounts/{account}/devices"
def measure(name, paths, repeat):
    times = []
    for i in range(repeat):
        path = paths[i % len(paths)]
        started = time.perf_counter(); status, data = call("GET", path, headers=auth)
        times.append((time.perf_counter() - started) * 1000)
        assert status == 200, (path, status, data[:300])
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"{name:44s} n={repeat:4d} median_ms={statistics.median(times):9.2f} p95_ms={p95:9.2f} max_ms={times[-1]:9.2f}")
    return statistics.median(times)
random.seed(3)
picks = random.sample(devices, min(200, len(devices)))
baseline = measure("baseline GET /devices?page_size=50", [f"{base}?page_size=50"], 50)
rows = [
    ("GET registration/dashboard", [f"{base}/registration/dashboard"], 10),
    ("GET registration/status?limit=100", [f"{base}/registration/status?limit=100"], 10),
    ("GET registration/status?status=offline", [f"{base}/registration/status?status=offline&limit=100"], 10),
    ("GET registration/analytics?period=30d", [f"{base}/registration/analytics?period=30d"], 10),
    ("GET registration/analytics?period=24h", [f"{base}/registration/analytics?period=24h"], 10),
    ("GET {device}/registration", [f"{base}/{d}/registration" for d in picks], 200),
    ("GET {device}/logs?lines=50", [f"{base}/{d}/logs?lines=50" for d in picks], 200),
]
for name, paths, repeat in rows:
    median = measure(name, paths, repeat)
    print(f"{'':44s} ratio to baseline median: {median / baseline:.1f}x")
started = time.perf_counter(); conn2 = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
conn2.request("GET", "/metrics"); r = conn2.getresponse(); r.read()
print(f"{'GET /metrics (unauthenticated)':44s} once      ms={(time.perf_counter() - started) * 1000:9.2f}")
PY
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
start 0
sleep 35
B0=$(ticks); BS0=$(date +%s.%N)
sleep "$WINDOW"
B1=$(ticks); BS1=$(date +%s.%N)
python3 - "$T0" "$T1" "$S0" "$S1" "$A0" "$A1" "$B0" "$B1" "$BS0" "$BS1" "$HZ" "$N" <<'PY'
import sys
t0, t1, s0, s1, a0, a1, b0, b1, bs0, bs1, hz, n = map(float, sys.argv[1:])
ping_cores = (t1 - t0) / hz / (s1 - s0)
idle_cores = (b1 - b0) / hz / (bs1 - bs0)
pings = (a1 - a0) / (s1 - s0)
print(f"bindings={int(n)} keepalive_interval=30s")
print(f"OPTIONS answered per second: {pings:.0f} (expected ~{n / 30:.0f})")
print(f"server CPU with the pinger: {ping_cores * 100:.1f}% of one core")
print(f"server CPU, keepalive off (baseline, same data): {idle_cores * 100:.1f}% of one core")
extra = ping_cores - idle_cores
print(f"keepalive cost: {extra * 100:.1f}% of one core, {extra / pings * 1e6 if pings else 0:.1f} us CPU per ping")
PY
cat "$DIR/latency.txt"
