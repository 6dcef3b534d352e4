#!/usr/bin/env python3
"""One table for a compare.sh run: every registrar's max sustained rate, CPU per 1k
registrations by rate, latency and memory per binding, plus Switchboard/Kamailio ratios.
usage: summarize_compare.py DIRS_FILE   (one bench.sh results directory per line)"""
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except OSError:
        return []


def main():
    dirs = [l.strip() for l in open(sys.argv[1]) if l.strip()]
    rows = {}
    for d in dirs:
        label = os.path.basename(d).rsplit("-", 2)[0]
        steps = [load(p) for p in sorted(glob.glob(os.path.join(d, "step-*", "step.json")))]
        steps = [s for s in steps if s]
        maxes = [m["max_sustained_cps"] for m in lines(os.path.join(d, "max.jsonl"))]
        before, after = load(os.path.join(d, "mem_before_prime.json")), load(os.path.join(d, "mem_after_prime.json"))
        users = None
        meta = [load(p) for p in glob.glob(os.path.join(d, "step-*", "meta.json"))]
        for m in meta:
            if m:
                users = m.get("users")
        per_binding = None
        if before and after and users:
            per_binding = {k: round((after[k] - before[k]) * 1024 / users) for k in ("rss_kb", "pss_kb") if k in after and k in before}
        rows[label] = {"max": maxes, "steps": steps, "per_binding": per_binding, "dir": d}

    print("# Switchboard vs Kamailio, one run\n")
    print("| registrar | max sustained calls/s (each rep) | CPU-s per 1k registrations by rate | memory per binding |")
    print("|---|---|---|---|")
    for label, r in rows.items():
        cpu = ", ".join(f"{s['rate']}: {s.get('target_cpu_s_per_1k_calls')}" for s in r["steps"]
                        if s.get("pass") and s.get("name", "").startswith("rep"))
        mem = r["per_binding"]
        mem_text = ", ".join(f"{k.split('_')[0]} {v} B" for k, v in mem.items()) if mem else "-"
        print(f"| {label} | {r['max'] or '-'} | {cpu or '-'} | {mem_text} |")
    print("\nLatency (authenticated REGISTER -> 200):\n")
    print("| registrar | rate | sipp rtd2 p50/p99 ms | wire p50/p99 us | pass |")
    print("|---|---|---|---|---|")
    for label, r in rows.items():
        for s in r["steps"]:
            if s.get("name") in ("check", "prime"):
                continue
            rtd = s.get("rtd", {}).get("2", {})
            lat = (s.get("pcap_latency") or {}).get("all", {})
            wire = f"{lat.get('p50_us')}/{lat.get('p99_us')}" if lat else "-"
            print(f"| {label} | {s['rate']} | {rtd.get('p50_ms')}/{rtd.get('p99_ms')} | {wire} | {'PASS' if s.get('pass') else 'FAIL'} |")

    def best(label):
        m = rows.get(label, {}).get("max") or []
        return max(m) if m else None

    def cpu_at(label, rate):
        for s in rows.get(label, {}).get("steps", []):
            if s.get("rate") == rate and s.get("pass") and s.get("name", "").startswith("rep"):
                return s.get("target_cpu_s_per_1k_calls")
        return None

    sb, km, ks = best("switchboard"), best("kamailio-mem"), best("kamailio-sqlite")
    print("\nRatios (same run):\n")
    if sb and km:
        print(f"- max rate, switchboard / kamailio in-memory: {sb / km:.2f}x (target >= 2x)")
    if sb and ks:
        print(f"- max rate, switchboard / kamailio SQLite write-through: {sb / ks:.2f}x (target >= 5x)")
    for rate in (1000, 2000, 5000, 10000):
        a, b = cpu_at("switchboard", rate), cpu_at("kamailio-mem", rate)
        if a and b:
            print(f"- CPU per registration at {rate}/s, switchboard / kamailio in-memory: {a / b:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
