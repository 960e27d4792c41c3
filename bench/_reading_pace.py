"""Readers at a radiologist's pace, for bench/reading.py: how many can two cores serve with every step's p95 ≤ 100 ms?

Each simulated reader does what the reading screen does for a person: clicks a case on the worklist (the worklist
page, then the reading page with its read embedded, then the radiograph and its window/level values), reports
"opened" and "image shown", autosaves every 3–8 s while "typing", sends a heartbeat every 15 s, submits after
60–180 s, and opens the next case. At the start of a level every reader is somewhere in a case already (a random
point of it), and the readers start over the first seconds (`ramp`), as a reading room fills up; only the requests
of the window after the ramp are sampled. A reader keeps its place between levels: an abandoned case is resumed.
"""
from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field

STEPS = ["worklist", "read page", "radiograph", "event", "autosave", "submit"]
EMBEDDED = re.compile(rb'<script id="read-data" type="application/json">(.*?)</script>', re.S)


@dataclass(frozen=True)
class Pace:
    autosave_seconds: tuple[float, float] = (3.0, 8.0)
    case_seconds: tuple[float, float] = (60.0, 180.0)
    heartbeat_seconds: float = 15.0


@dataclass
class PacedReader:
    """One reader's signed-in session and place in its worklist on each server, keyed by the server's label: each
    revision serves its own database (its own schema, its own sign-in), so read ids and progress are per server;
    lives across levels."""
    name: str
    sessions: dict[str, str]
    reads: dict[str, list[int]]
    rng: random.Random = field(default_factory=random.Random)
    errors: list[str] = field(default_factory=list)


class Samples:
    """(step, ms, time) of every request, kept per level, and the server's failures (HTTP ≥ 500: a bug or a schema
    that the code does not match, never the load's doing, so they void a comparison); thread-safe appends."""

    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []
        self.server_errors: list[str] = []
        self.lock = threading.Lock()

    def add(self, step: str, ms: float) -> None:
        with self.lock:
            self.rows.append((step, ms, time.monotonic()))

    def server_error(self, message: str) -> None:
        with self.lock:
            self.server_errors.append(message)

    def window(self, start: float, end: float) -> dict[str, list[float]]:
        out = {step: [] for step in STEPS}
        for step, ms, t in self.rows:
            if start <= t <= end:
                out[step].append(ms)
        return out


def _timed(client, samples: Samples, step: str, method: str, path: str, body=None, headers=None,
           expect=(200,)) -> bytes:
    t0 = time.perf_counter()
    status, data, _ = client.request(method, path, body, headers)
    samples.add(step, (time.perf_counter() - t0) * 1000)
    if status not in expect:
        message = f"{step}: {method} {path}: HTTP {status}: {data[:200]!r}"
        if status >= 500:
            samples.server_error(message)
        raise RuntimeError(message)
    return data


def read_one(reader: PacedReader, client, code: str, samples: Samples, stop: threading.Event, pace: Pace,
             first: bool, reads: list[int]) -> bool:
    """Open the reader's next case of `reads` (its worklist on this server), type, submit; False when stopped (the
    case is left open, resumed later)."""
    rng = reader.rng
    read_id = reads[0]
    _timed(client, samples, "worklist", "GET", f"/t/{code}/read/")
    page = _timed(client, samples, "read page", "GET", f"/t/{code}/read/{read_id}/")
    payload = json.loads(EMBEDDED.search(page).group(1))
    _timed(client, samples, "radiograph", "GET", payload["image"]["display_url"])
    if payload["image"].get("values_url"):
        _timed(client, samples, "radiograph", "GET", payload["image"]["values_url"])
    headers = client.json_headers()
    tab = f"pace-{reader.name}"
    for kind in ("opened", "image_shown"):
        _timed(client, samples, "event", "POST", payload["urls"]["events"],
               json.dumps({"kind": kind, "tab_id": tab}).encode(), headers, expect=(201,))
    draft = payload["draft"] or {"findings": "", "impression": ""}
    saved = payload["saved"]
    findings = saved["findings"] if saved else draft["findings"]
    impression = (saved["impression"] if saved else draft["impression"]) or "No acute finding."
    base = saved["version"] if saved else None
    length = rng.uniform(*pace.case_seconds)
    now = time.monotonic()
    end = now + (rng.uniform(0, length) if first else length)  # a level starts with every reader mid-case
    next_save, next_beat = now + rng.uniform(*pace.autosave_seconds), now + pace.heartbeat_seconds
    while True:
        due = min(next_save, next_beat, end)
        if stop.wait(max(0.0, due - time.monotonic())):
            return False
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_save:
            findings += rng.choice([" Normal heart size.", " No effusion.", " Lungs clear.", " Stable."])
            body = json.dumps({"findings": findings, "impression": impression, "finding_flags": {},
                               "base_version": base, "tab_id": tab}).encode()
            base = json.loads(_timed(client, samples, "autosave", "PUT", payload["urls"]["autosave"], body,
                                     headers))["version"]
            next_save = now + rng.uniform(*pace.autosave_seconds)
        if now >= next_beat:
            _timed(client, samples, "event", "POST", payload["urls"]["events"],
                   json.dumps({"kind": "heartbeat", "tab_id": tab}).encode(), headers, expect=(201,))
            next_beat = now + pace.heartbeat_seconds
    body = json.dumps({"findings": findings, "impression": impression, "finding_flags": {}, "base_version": base,
                       "tab_id": tab}).encode()
    _timed(client, samples, "submit", "POST", payload["urls"]["submit"], body, headers, expect=(201,))
    reads.pop(0)
    return True


def run_level(readers: list[PacedReader], *, server: str, port: int, code: str, client_class, ramp: float,
              window: float, pace: Pace = Pace(), on_window=None) -> tuple[Samples, float, float, int]:
    """Every reader of `readers` at pace for ramp + window seconds against `server` (the sessions' key). `on_window`
    is called at the window's start and end (e.g. to read CPU counters). (samples, window start, end, errors)."""
    samples, stop = Samples(), threading.Event()
    errors_before = sum(len(r.errors) for r in readers)

    def work(reader: PacedReader, delay: float):
        if stop.wait(delay):
            return
        client = client_class(port)
        client.cookies["sessionid"] = reader.sessions[server]
        first = True
        reads = reader.reads[server]
        try:
            while not stop.is_set():
                if not reads:
                    reader.errors.append("no reads left")
                    return
                try:
                    if not read_one(reader, client, code, samples, stop, pace, first, reads):
                        return
                except (RuntimeError, OSError, ValueError, AttributeError) as exc:
                    reader.errors.append(str(exc)[:200])
                    if stop.wait(1.0):  # as a browser would retry: a moment later
                        return
                first = False
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(r, ramp * i / max(1, len(readers))), daemon=True)
               for i, r in enumerate(readers)]
    for t in threads:
        t.start()
    time.sleep(ramp)
    if on_window:
        on_window("start")
    window_start = time.monotonic()
    time.sleep(window)
    window_end = time.monotonic()
    if on_window:
        on_window("end")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    return samples, window_start, window_end, sum(len(r.errors) for r in readers) - errors_before


def open_loop(port: int, path: str, rate: float, seconds: float, client_class, threads: int = 16,
              server_errors: list[str] | None = None) -> list[float]:
    """`rate` requests a second of GET `path` for `seconds` (Poisson arrivals over `threads` clients): latencies.
    Answers with HTTP ≥ 500 are appended to `server_errors`."""
    out: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def work(i):
        rng = random.Random(i)
        client = client_class(port)
        mine = []
        while True:
            pause = rng.expovariate(rate / threads)
            if time.monotonic() + pause > end:
                break
            time.sleep(pause)
            t0 = time.perf_counter()
            status, data, _ = client.request("GET", path)
            mine.append((time.perf_counter() - t0) * 1000)
            if status >= 500 and server_errors is not None:
                with lock:
                    server_errors.append(f"GET {path}: HTTP {status}: {data[:200]!r}")
        client.close()
        with lock:
            out.extend(mine)

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return out


def reads_needed(levels: list[int], window: float, ramp: float, pace: Pace = Pace(), servers: int = 1) -> int:
    """Reads each reader may submit over the run (with a margin): a case lasts case_seconds on average."""
    mean = sum(pace.case_seconds) / 2
    per_level = (window + ramp) / mean + 1
    return math.ceil((len(levels) + 1) * servers * per_level * 1.5) + 2  # + 1: the warm-up
