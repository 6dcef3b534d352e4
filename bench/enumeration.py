#!/usr/bin/env python3
"""enumeration.py -- does a REGISTER for a name that does not exist take longer to answer than
one for a real device with a wrong password? (Issue #6: "the answer for an unknown user is
indistinguishable from a wrong password: same code, same timing class".)

usage: bench/enumeration.py HOST:PORT REALM KNOWN_USER [ROUNDS] [THINK_MS]

Each round tries one attempt (REGISTER, 401, REGISTER with a wrong password's digest, 401)
for KNOWN_USER and one for a name never asked before (as an enumerator would), alternately,
from one UDP socket on 127.0.0.1, and times each answer. THINK_MS (default 0) waits between the
challenge and the answer to it, as a client one network round trip away would. Prints the median and p90 of the
challenge and of the refusal for both, their ratio, and the status codes seen. Only loopback
targets; every receive has a timeout; ROUNDS bounds the loop (default 500).
"""
import hashlib
import re
import socket
import statistics
import sys
import time


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def request(local, target, realm, user, n, auth=None):
    lines = [
        f"REGISTER sip:{realm} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bKenum{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{realm}>;tag=e{n}",
        f"To: <sip:{user}@{realm}>",
        f"Call-ID: enum-{user}-{n}",
        f"CSeq: {n} REGISTER",
        f"Contact: <sip:{user}@{local}>",
        "Expires: 60",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def exchange(sock, payload):
    started = time.perf_counter_ns()
    sock.send(payload)
    data = sock.recv(65535)
    return (time.perf_counter_ns() - started) / 1000.0, data.decode(errors="replace")


def attempt(sock, local, realm, user, n, think):
    us1, first = exchange(sock, request(local, None, realm, user, n))
    time.sleep(think)
    challenge = re.search(r"WWW-Authenticate: Digest (.*)\r\n", first)
    status1 = first.split(" ", 2)[1]
    if not challenge:
        return us1, status1, None, None
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.group(1)))
    uri = f"sip:{realm}"
    ha1 = md5(f"{user}:{params['realm']}:not-the-password")
    ha2 = md5(f"REGISTER:{uri}")
    cnonce, nc = "0a4f113b", "00000001"
    response = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    auth = (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"')
    us2, second = exchange(sock, request(local, None, realm, user, n + 1, auth))
    return us1, status1, us2, second.split(" ", 2)[1]


def summary(values):
    values = sorted(values)
    return statistics.median(values), values[int(len(values) * 0.9)]


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    assert host.startswith("127."), "loopback only"
    realm, known = sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 500
    think = float(sys.argv[5]) / 1000.0 if len(sys.argv) > 5 else 0.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.connect((host, int(port)))
    sock.settimeout(2.0)
    local = "%s:%d" % sock.getsockname()
    timings = {"known": ([], [], set()), "unknown": ([], [], set())}
    stamp = int(time.time())
    for i in range(rounds):
        for kind in ("known", "unknown") if i % 2 == 0 else ("unknown", "known"):
            user = known if kind == "known" else f"nobody{stamp}x{i}"
            us1, s1, us2, s2 = attempt(sock, local, realm, user, 10 * i + 1, think)
            challenge, refusal, codes = timings[kind]
            challenge.append(us1)
            codes.add((s1, s2))
            if us2 is not None:
                refusal.append(us2)
        time.sleep(0.002)
    print(f"{rounds} attempts each, think {think * 1000:.1f} ms; answers timed on the client (us)")
    base = {}
    for kind, (challenge, refusal, codes) in timings.items():
        c50, c90 = summary(challenge)
        r50, r90 = summary(refusal)
        base.setdefault("c", c50)
        base.setdefault("r", r50)
        print(f"{kind:8s} challenge p50 {c50:7.1f} p90 {c90:7.1f} | refusal p50 {r50:7.1f} "
              f"p90 {r90:7.1f} | codes {sorted(codes)} | ratio to known: challenge "
              f"{c50 / base['c']:.2f}, refusal {r50 / base['r']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
