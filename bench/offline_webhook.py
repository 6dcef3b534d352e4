#!/usr/bin/env python3
"""Time from a device going silent to its `device.offline` webhook, end to end.

Starts the release binary, creates an account, devices and one webhook (device.offline) to a
receiver in this script, then:
  udp  -- phones (raw UDP, digest MD5) register and answer OPTIONS; at T0 each stops
          answering; the figure is webhook arrival - T0. Expected: up to one interval until
          the next ping, then `failures` pings `timeout` apart... see the printed config.
  tcp  -- phones register over TCP and close the connection at T0 (offline at once).
Loopback only; every wait bounded. usage: bench/offline_webhook.py [--interval 30]
[--failures 3] [--timeout-ms 5000] [--phones 3]"""
import argparse, hashlib, http.server, json, os, socket, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "switchboard")
REALM = "offline.bench"
KEY = "bench-offline-webhook-key-0123456789abcdef"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

arrivals = {}
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("event") == "device.offline":
            arrivals.setdefault(body["data"]["deviceId"], time.monotonic())
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass

def md5(text): return hashlib.md5(text.encode()).hexdigest()

def header(message, name):
    for line in message.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name: return value.strip()
    return ""

class Phone:
    def __init__(self, user, sip_port, transport):
        self.user, self.transport, self.cseq, self.answering = user, transport, 0, True
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0)); self.sock.connect(("127.0.0.1", sip_port))
        else:
            self.sock = socket.create_connection(("127.0.0.1", sip_port))
        self.sock.settimeout(0.2); self.port = self.sock.getsockname()[1]; self.buf = b""
    def send(self, text): self.sock.send(text.encode())
    def recv(self):
        if self.transport == "udp":
            return self.sock.recv(65535).decode()
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65535)
            if not chunk: raise ConnectionError
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(header(head.decode(), "content-length") or 0)
        self.buf = rest[length:]
        return head.decode() + "\r\n\r\n"
    def request(self, auth=None):
        self.cseq += 1; t = self.transport.upper()
        auth = f"Authorization: {auth}\r\n" if auth else ""
        return (f"REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/{t} 127.0.0.1:{self.port};branch=z9hG4bK{self.user}{self.cseq};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{self.user}@{REALM}>;tag=b\r\nTo: <sip:{self.user}@{REALM}>\r\nCall-ID: {self.user}-bench\r\n"
                f"CSeq: {self.cseq} REGISTER\r\nContact: <sip:{self.user}@127.0.0.1:{self.port};transport={self.transport}>\r\nExpires: 3600\r\n{auth}Content-Length: 0\r\n\r\n")
    def register(self):
        self.send(self.request()); deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try: message = self.recv()
            except socket.timeout: continue
            if message.startswith("SIP/2.0 401"):
                challenge = next(l for l in message.split("\r\n") if l.startswith("WWW-Authenticate:") and "SHA-256" not in l)
                get = lambda name: challenge.split(f'{name}="')[1].split('"')[0]
                realm, nonce, uri = get("realm"), get("nonce"), f"sip:{REALM}"
                ha1 = md5(f"{self.user}:{realm}:{self.user}-pw"); ha2 = md5(f"REGISTER:{uri}")
                response = md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
                self.send(self.request(f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"'))
            elif message.startswith("SIP/2.0 200"):
                return
            elif message.startswith("OPTIONS"):
                self.answer(message)
        sys.exit(f"{self.user} did not register")
    def answer(self, message):
        vias = "".join(f"Via: {l.partition(':')[2].strip()}\r\n" for l in message.split("\r\n") if l.lower().startswith("via:"))
        self.send(f"SIP/2.0 200 OK\r\n{vias}From: {header(message, 'from')}\r\nTo: {header(message, 'to')};tag=p\r\n"
                  f"Call-ID: {header(message, 'call-id')}\r\nCSeq: {header(message, 'cseq')}\r\nContent-Length: 0\r\n\r\n")
    def serve(self, stop):
        while not stop.is_set():
            try: message = self.recv()
            except (socket.timeout, OSError, ConnectionError): continue
            if message.startswith("OPTIONS") and self.answering: self.answer(message)

def api(port, method, path, body=None, token=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token: headers["X-Auth-Token"] = token
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse(); data = response.read()
    return response.status, json.loads(data) if data else None

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--timeout-ms", type=int, default=5000)
    parser.add_argument("--phones", type=int, default=3)
    args = parser.parse_args()
    if not os.access(BINARY, os.X_OK): sys.exit("build first: cargo build --release -p switchboard")
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    data, sip, http_port = tempfile.mkdtemp(prefix="sb-offline-"), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_BOOTSTRAP_API_KEY=KEY, SWITCHBOARD_SECURITY_ALLOW="127.0.0.0/8", SWITCHBOARD_LOG="warn", SWITCHBOARD_API_RATE_LIMIT="false",
               SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL=str(args.interval),
               SWITCHBOARD_REGISTRAR_KEEPALIVE_FAILURES=str(args.failures),
               SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS=str(args.timeout_ms))
    server = subprocess.Popen([BINARY, "serve", "--data-dir", data, "--http-listen", f"127.0.0.1:{http_port}",
                               "--sip-listen", f"udp:127.0.0.1:{sip}", "--sip-listen", f"tcp:127.0.0.1:{sip}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        for _ in range(100):
            try: status, body = api(http_port, "PUT", "/v2/api_auth", {"data": {"api_key": KEY}}); break
            except OSError: time.sleep(0.1)
        token, admin = body["auth_token"], body["data"]["account_id"]
        status, body = api(http_port, "PUT", f"/v2/accounts/{admin}", {"data": {"name": "bench", "realm": REALM}}, token)
        account = body["data"]["id"]
        status, body = api(http_port, "POST", f"/v2/accounts/{account}/webhooks",
                           {"url": f"http://127.0.0.1:{receiver.server_port}/hook", "events": ["device.offline"]}, token)
        assert status in (200, 201), body
        phones = {}
        for transport in ("udp", "tcp"):
            for i in range(args.phones):
                user = f"{transport}{i}"
                status, body = api(http_port, "PUT", f"/v2/accounts/{account}/devices",
                                   {"data": {"name": user, "sip": {"username": user, "password": f"{user}-pw", "expire_seconds": 3600}}}, token)
                phone = Phone(user, sip, transport); phone.register(); phones[body["data"]["id"]] = phone
                threading.Thread(target=phone.serve, args=(stop,), daemon=True).start()
        time.sleep(min(args.interval, 10) + 1)  # let pings flow
        silent = {}
        for device, phone in phones.items():
            silent[device] = time.monotonic()
            if phone.transport == "udp": phone.answering = False
            else: phone.sock.close()
        deadline = time.monotonic() + args.interval * (args.failures + 2) + args.timeout_ms / 1000 * args.failures + 10
        while time.monotonic() < deadline and len(arrivals) < len(phones): time.sleep(0.05)
        print(f"keepalive interval={args.interval}s failures={args.failures} timeout={args.timeout_ms}ms; webhook poll 200 ms")
        for transport in ("udp", "tcp"):
            lags = [arrivals[d] - silent[d] for d, p in phones.items() if p.transport == transport and d in arrivals]
            missing = sum(1 for d, p in phones.items() if p.transport == transport and d not in arrivals)
            if lags:
                print(f"{transport}: silent -> device.offline webhook: median {statistics.median(lags):.2f} s, "
                      f"min {min(lags):.2f} s, max {max(lags):.2f} s (n={len(lags)}, missing {missing})")
            else:
                print(f"{transport}: no webhook within the deadline (missing {missing})")
    finally:
        stop.set(); server.terminate(); server.wait(10); receiver.shutdown()

main()
