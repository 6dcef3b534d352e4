#!/usr/bin/env python3
"""Gives a Switchboard database (server stopped) a month of registration history for every
device of one account: each day a `registered` and, hours later, an `expired` event per device
(so the history holds devices x days x 2 events), every device's last outcome, and a state
sample every 5 minutes for 30 days. For bench/monitoring.sh."""
import random, sqlite3, sys, time

db, account, days = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 30
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=OFF")
devices = [row[0] for row in con.execute("SELECT id FROM devices WHERE account_id = ?", (account,))]
now = int(time.time() * 1000)
day = 86_400_000
start = now - days * day
rng = random.Random(7)
events = 0
for d in range(days):
    rows = []
    base = start + d * day
    for device in devices:
        at = base + rng.randrange(0, day // 2)
        address = f"198.51.100.{rng.randrange(1, 255)}:{rng.randrange(1024, 65535)}"
        rows.append((at, "registered", account, device, "c:sip:x", "sip:x", address, "udp", "Yealink SIP-T46S 66.86.0.15", None))
        rows.append((at + rng.randrange(3_600_000, 8 * 3_600_000), "expired", account, device, "c:sip:x", "sip:x", address, "udp", "Yealink SIP-T46S 66.86.0.15", "expired"))
    rows.sort()
    con.executemany(
        "INSERT INTO events (at_ms, kind, account_id, device_id, binding_key, contact, address, transport, user_agent, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
        rows)
    events += len(rows)
    con.commit()
con.executemany(
    "INSERT OR REPLACE INTO device_state (device_id, account_id, last_kind, last_at_ms, last_reason, last_registered_ms) VALUES (?,?,?,?,?,?)",
    [(device, account, "expired", now - 3_600_000, "expired", now - 2 * 3_600_000) for device in devices])
samples = []
n = len(devices)
for at in range(start, now, 300_000):
    registered = int(n * (0.80 + 0.15 * rng.random()))
    offline = rng.randrange(0, max(1, n // 100))
    samples.append((account, at, n, registered, offline, 0, n - registered - offline, 0, 0))
con.executemany(
    "INSERT OR REPLACE INTO state_samples (account_id, at_ms, total, registered, offline, expired, unregistered, invalid, provisioning) VALUES (?,?,?,?,?,?,?,?,?)",
    samples)
con.commit()
print(f"devices={n} events={events} samples={len(samples)}")
