#!/usr/bin/env python3
"""API benchmark: device listing with N devices in one account (first page vs a deep page,
filtered and not) and device create throughput, against a running `switchboard serve`.

usage: bench/api.py [--devices 100000] [--seconds 10]
It builds nothing and installs nothing: it starts the release binary on 127.0.0.1 in a fresh
data directory, imports the devices with `switchboard device import`, and measures over plain
HTTP (Python's http.client, one keep-alive connection). Every loop is bounded in count and time.
Figures are reported as ratios to the first page measured in the same run.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "switchboard")
KEY = "b" * 64


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else None


def timed(conn, method, path, token, count, deadline):
    samples = []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        status, _ = request(conn, method, path, token)
        samples.append((time.perf_counter() - start) * 1000)
        assert status == 200, (status, path)
    samples.sort()
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"build first: cargo build --release -p switchboard ({BINARY})")
    data = tempfile.mkdtemp(prefix="sb-api-bench-")
    # The per-client rate limit would (rightly) stop a benchmark client: off here.
    env = dict(os.environ, SWITCHBOARD_BOOTSTRAP_API_KEY=KEY, SWITCHBOARD_LOG="warn",
               SWITCHBOARD_API_RATE_LIMIT="false")
    env.pop("SWITCHBOARD_SHARED_DIR", None)
    account = json.loads(subprocess.check_output(
        [BINARY, "account", "create", "--data-dir", data, "--name", "bench", "--realm", "bench.local"], env=env))["id"]
    csv = os.path.join(data, "devices.csv")
    with open(csv, "w") as out:
        for i in range(1, args.devices + 1):
            out.write(f"user{i:06d},pw{i:06d}\n")
    started = time.monotonic()
    subprocess.check_output([BINARY, "device", "import", "--data-dir", data, "--account", account, "--csv", csv],
                            env=dict(env, SWITCHBOARD_STORAGE_SYNCHRONOUS="normal"))
    import_s = time.monotonic() - started
    http_port, sip_port = free_port(), free_port()
    server = subprocess.Popen([BINARY, "serve", "--data-dir", data, "--http-listen", f"127.0.0.1:{http_port}",
                               "--sip-listen", f"udp:127.0.0.1:{sip_port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = None
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
                status, body = request(conn, "PUT", "/v2/api_auth", body={"data": {"api_key": KEY}})
                if status in (200, 201):
                    token = body["auth_token"]
                    break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("server did not start")
        base = f"/v2/accounts/{account}/devices"
        deadline = time.monotonic() + args.seconds * 6
        first = timed(conn, "GET", f"{base}?page_size=50", token, 200, deadline)
        # A deep page: walk to the middle once to learn its start key, then time it.
        status, body = request(conn, "GET", f"{base}?page_size=1000", token)
        key = None
        for _ in range(args.devices // 2000):
            key = body.get("next_start_key")
            if not key:
                break
            status, body = request(conn, "GET", f"{base}?page_size=1000&start_key={key}", token)
        deep = timed(conn, "GET", f"{base}?page_size=50&start_key={key}", token, 200, deadline)
        filtered = timed(conn, "GET", f"{base}?page_size=50&filter_device_type=sip_device", token, 100, deadline)
        created = 0
        create_deadline = time.monotonic() + args.seconds
        started = time.perf_counter()
        while time.monotonic() < create_deadline and created < 1_000_000:
            status, _ = request(conn, "PUT", base, token, {"data": {
                "name": f"new{created}", "sip": {"username": f"new{created:07d}", "password": "secret-pass"}}})
            assert status == 201, status
            created += 1
        create_rate = created / (time.perf_counter() - started)
        result = {
            "devices": args.devices,
            "import_s": round(import_s, 1),
            "first_page": first,
            "deep_page": deep,
            "filtered_first_page": filtered,
            "deep_over_first_p50": round(deep["p50_ms"] / first["p50_ms"], 2),
            "creates_per_s": round(create_rate, 1),
        }
        print(json.dumps(result, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
