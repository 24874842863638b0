#!/usr/bin/env python3
"""Connection figures for scripts/load.sh against an exporter already running on PORT as PID:
scrape latency while 1000 idle and 200 slowloris connections are held, then RSS across 8000
connections opened and closed. Figures are printed, not asserted (scripts/torture.py asserts).

    connection_load.py PORT PID
"""
import http.client
import os
import resource
import socket
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def scrape(port):
    """Seconds a full /metrics took, or None when it got no answer."""
    start = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        conn.close()
        return time.monotonic() - start if response.status == 200 else None
    except OSError:
        return None


def hold(port, count):
    """Up to count open connections to port (fewer if the exporter or this process runs out)."""
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return held


def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    idle, slowloris = hold(port, 1000), hold(port, 200)
    for s in slowloris:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-a: ")
    took = []
    for _ in range(10):
        for s in slowloris:
            try:
                s.sendall(b"a")
            except OSError:
                pass  # evicted for a newer connection: what the cap is for
        took.append(scrape(port))
        time.sleep(0.2)
    for s in idle + slowloris:
        s.close()
    answered = sorted(t for t in took if t is not None)
    print(f"{len(idle)} idle + {len(slowloris)} slowloris held: {len(answered)}/10 scrapes "
          f"answered" + (f", p50 {answered[len(answered) // 2] * 1000:.0f} ms, max "
                         f"{answered[-1] * 1000:.0f} ms" if answered else ""))

    time.sleep(1)
    scrape(port)
    start = rss_mb(pid)
    opened = 0
    for _ in range(4):
        batch = hold(port, 2000)
        opened += len(batch)
        for s in batch:
            s.close()
    time.sleep(2)
    answered = scrape(port) is not None
    print(f"{opened} connections opened and closed: RSS {start:.1f} -> {rss_mb(pid):.1f} MB "
          f"(a scrape after: {'answered' if answered else 'NO ANSWER'})")


if __name__ == "__main__":
    main()
