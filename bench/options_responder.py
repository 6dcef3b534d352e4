#!/usr/bin/env python3
"""Answers every SIP OPTIONS (and NOTIFY) arriving on one UDP port with 200 OK: the phones of
bench/monitoring.sh, which all registered from this port. Counts what it answered and writes
the count to --count-file on SIGTERM. Loopback only."""
import argparse, asyncio, signal

def header(lines, name, compact=None):
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == name or (compact and key == compact):
            return value.strip()
    return ""

class Responder(asyncio.DatagramProtocol):
    def __init__(self):
        self.answered = 0
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        text = data.decode("utf-8", "replace")
        if not (text.startswith("OPTIONS ") or text.startswith("NOTIFY ")):
            return
        lines = text.split("\r\n")
        vias = [l.partition(":")[2].strip() for l in lines if l.lower().startswith(("via:", "v:"))]
        answer = "SIP/2.0 200 OK\r\n" + "".join(f"Via: {v}\r\n" for v in vias) + (
            f"From: {header(lines, 'from', 'f')}\r\nTo: {header(lines, 'to', 't')};tag=bench\r\n"
            f"Call-ID: {header(lines, 'call-id', 'i')}\r\nCSeq: {header(lines, 'cseq')}\r\n"
            "Content-Length: 0\r\n\r\n")
        self.transport.sendto(answer.encode(), addr)
        self.answered += 1

async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count-file", required=True)
    parser.add_argument("--seconds", type=int, default=3600, help="stop after this long at most")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Responder, local_addr=("127.0.0.1", args.port))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: open(args.count_file, "w").write(str(protocol.answered)))
    try:
        await asyncio.wait_for(stop.wait(), args.seconds)
    except asyncio.TimeoutError:
        pass
    open(args.count_file, "w").write(str(protocol.answered))
    transport.close()

asyncio.run(main())
