"""What clients of the site see: GET /api/health through nginx of each web host (127.0.0.1 only).

``Probe`` asks both hosts every ``interval`` seconds until stopped or its deadline; an outage is
the time from the first non-200 answer (or error) of a host to its next 200. Bounded: one request
per host per round, a 2 s timeout each, a deadline for the whole loop.
"""

from __future__ import annotations

import http.client
import threading
import time

HTTP = (("web1", 8101), ("web2", 8102))  # nginx of the web hosts, published on 127.0.0.1


def health() -> dict[str, str]:
    out = {}
    for name, port in HTTP:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/api/health")
            resp = conn.getresponse()
            resp.read()
            out[name] = str(resp.status)
        except (OSError, http.client.HTTPException) as exc:
            out[name] = type(exc).__name__
        finally:
            conn.close()
    return out


class Probe:
    def __init__(self, deadline_s: float, interval: float = 0.2):
        self.records: list[tuple[float, str, str]] = []  # (s from start, host, status or error class)
        self.interval = interval
        self._stop = threading.Event()
        self._deadline = time.monotonic() + deadline_s
        self._thread = threading.Thread(target=self._run, daemon=True, name="probe")
        self.t0 = time.monotonic()

    def __enter__(self) -> Probe:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conns: dict[str, http.client.HTTPConnection] = {}
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for name, port in HTTP:
                t = time.monotonic() - self.t0
                try:
                    conn = conns.get(name) or http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conns[name] = conn
                    conn.request("GET", "/api/health")
                    resp = conn.getresponse()
                    resp.read()
                    status = str(resp.status)
                    if resp.will_close:
                        conn.close()
                        conns.pop(name, None)
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    conns.pop(name, None)
                self.records.append((t, name, status))
            self._stop.wait(self.interval)

    def outages(self, host: str) -> list[tuple[float, float]]:
        """(start, end) of each run of non-200 answers: first bad sample to the next 200 (or the last sample)."""
        out, start = [], None
        recs = [r for r in self.records if r[1] == host]
        for t, _, status in recs:
            if status != "200" and start is None:
                start = t
            elif status == "200" and start is not None:
                out.append((start, t))
                start = None
        if start is not None:
            out.append((start, recs[-1][0]))
        return out

    def unavailable_seconds(self, host: str) -> float:
        return sum(b - a for a, b in self.outages(host))

    def rows(self) -> list[list[str]]:
        rows = []
        for name, _ in HTTP:
            recs = [r for r in self.records if r[1] == name]
            bad = [r for r in recs if r[2] != "200"]
            spans = self.outages(name)
            rows.append([name, str(len(recs)), str(len(bad)), ", ".join(sorted({r[2] for r in bad})) or "-",
                         "; ".join(f"{a:.1f} .. {b:.1f}" for a, b in spans) or "-",
                         f"{self.unavailable_seconds(name):.1f}"])
        return rows
