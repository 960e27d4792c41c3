"""Reading under load: simulated readers against the platform under gunicorn on PostgreSQL, as docker/compose.yaml
runs it, and in Chromium the time from a click to the radiograph painted.

Run by hand from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth; Redis for sessions):

    python bench/reading.py                              # capacity at a radiologist's pace, then Chromium
    python bench/reading.py --baseline d6d7b83,e293722   # the same, beside the code of other commits, level by level
    python bench/reading.py --mode burst --levels 8,16,32 --no-browser   # readers back to back (a stress test)

Capacity (the goal, issue 12): readers at a radiologist's pace (bench/_reading_pace.py: a worklist click, the
reading page, the radiograph, events, an autosave every 3–8 s, a heartbeat every 15 s, a submit after 60–180 s,
the next case). For each level of concurrent readers, every step's p50/p95 over a window after a ramp, the
requests/s, and the CPU time gunicorn and PostgreSQL spent per request; beside it, /healthz (one `SELECT 1`) at
the same request rate: what the server costs before any reading code runs. The capacity is the largest level at
which every step's p95 is ≤ 100 ms with no failed request, in every round of it and of every level below. Goal:
≥ 500 concurrent readers on two cores. What this measures and what it does not: the simulated readers run on the
same two cores as the server (their own CPU is printed beside the server's); the radiographs are 256-px phantoms,
so a sync worker is held far less long than by a real megabyte film on a slow network; PostgreSQL's CPU is that of
the bench database's backends only.
With --baseline REV, the same levels run against a git worktree of REV (same readers, alternating server by server
so that the machine's noise falls on both); --baseline-psycopg2 DIR runs that server with psycopg2 (pip install
--target DIR psycopg2-binary) as it shipped, instead of psycopg 3. Each revision serves its own database
(`cxr_bench_reading_REV`), migrated by its own migrations and filled with the same trial by its own services
(bench/_reading_world.py run as a script in the revision's tree): an older revision's code does not match this
checkout's schema. A run in which any server answered HTTP ≥ 500 reports no comparison: the figures would measure a
failure, not the code.

Burst (--mode burst): each reader repeats on its own reads back to back (or with --think pauses): the worklist page,
the read API, its radiograph, autosave ×3, submit. The readers of a level start together; their first cycle
(--ramp) is load but not sample.

A configuration `wXtYcZ` is gunicorn with X workers and Y threads (gthread when Y > 1, else sync) and
CONN_MAX_AGE=Z (through DATABASE_URL's `?conn_max_age=Z`; c0 opens a connection per request). The default,
w3t1c60, is docker/compose.yaml's web service (3 sync workers, DB_CONN_MAX_AGE=60). The server gets CACHE_URL
(--cache, Redis by default, as in docker/compose.yaml), so sessions are read from the cache.

Chromium: p95 ≤ 300 ms from a worklist click, and from "next case", to the radiograph painted
(`data-image-shown-ms` on #read-app, set by static/js/reading/). The databases (`cxr_bench_reading`, one more per
baseline) are created, migrated and dropped by the script.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import close_django_connections, machine_cpu, pct, proc_cpu_seconds  # noqa: E402


def _cpu_with_children(pid: int) -> float:
    # with the children that exited: a PostgreSQL backend that came and went with its connection stays counted
    return proc_cpu_seconds(pid, children=True)

HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
STEPS = ["worklist", "open case", "radiograph", "autosave", "submit"]
THINK_MS = 0.0  # --think: mean pause between a reader's requests (0: back to back)
RAMP_CYCLES = 1  # --ramp: cycles of each reader, at the start of a level, left out of the percentiles
FLAGS = {}  # no finding ticked: the trial's finding list is read from the payload


# ------------------------------------------------------------------------------------------------ HTTP client


class Client:
    """One reader's HTTP client: a keep-alive connection (reopened when the server closes it) and cookies."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.cookies: dict[str, str] = {}

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
                continue
            for header in response.msg.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, data, response
        raise RuntimeError("unreachable")

    def timed(self, method: str, path: str, body=None, headers=None, expect=(200,)):
        t0 = time.perf_counter()
        status, data, _ = self.request(method, path, body, headers)
        ms = (time.perf_counter() - t0) * 1000
        if status not in expect:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:300]!r}")
        return ms, data

    def login(self, username: str, password: str):
        status, data, _ = self.request("GET", "/accounts/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', data)
        if status != 200 or not token:
            raise RuntimeError(f"login page: HTTP {status}")
        body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token.group(1).decode(),
                          "next": "/"}).encode()
        status, data, _ = self.request("POST", "/accounts/login/", body, {
            "Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://{HOST}:{self.port}/accounts/login/"})
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login of {username} failed: HTTP {status}")

    def json_headers(self):
        return {"Content-Type": "application/json", "Accept": "application/json",
                "X-CSRFToken": self.cookies.get("csrftoken", ""), "Referer": f"http://{HOST}:{self.port}/"}


# ------------------------------------------------------------------------------------------------ server


@dataclass
class Config:
    label: str
    workers: int
    threads: int
    conn_max_age: int


def parse_config(text: str) -> Config:
    m = re.fullmatch(r"w(\d+)t(\d+)(?:c(\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad configuration {text!r}: expected wXtY or wXtYcZ (e.g. w3t4c60)")
    return Config(text.strip(), int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, config: Config, env: dict, log_path: Path, root: Path = ROOT):
        self.config = config
        self.port = free_port()
        env = dict(env)
        if config.conn_max_age:
            env["DATABASE_URL"] = f"{env['DATABASE_URL']}?conn_max_age={config.conn_max_age}"
        cmd = [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi:application", "--bind", f"{HOST}:{self.port}",
               "--workers", str(config.workers), "--threads", str(config.threads), "--timeout", "60",
               "--keep-alive", "30", "--log-level", "warning"]
        if config.threads > 1:
            cmd += ["--worker-class", "gthread"]
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}); see {log_path}")
            try:
                c = Client(self.port)
                status, _, _ = c.request("GET", "/healthz")
                c.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within 60 s; see {log_path}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.log.close()


# ------------------------------------------------------------------------------------------------ load


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, name) of every process."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            out.append((int(entry), int(text.rsplit(")", 1)[1].split()[1]), name))
    return out


def server_cpu(master_pid: int) -> dict[str, float]:
    """CPU seconds so far of the gunicorn master and its workers, and of all PostgreSQL processes (the
    server's share of the machine; a busy machine slows a request but does not add to these)."""
    procs = _processes()
    gunicorn = [master_pid] + [pid for pid, ppid, _ in procs if ppid == master_pid]
    postgres = [pid for pid, _, name in procs if name.startswith("postgres")]
    return {"gunicorn": sum(map(_cpu_with_children, gunicorn)), "postgres": sum(map(_cpu_with_children, postgres))}


class Reader:
    def __init__(self, name: str, reads: list[int], port: int):
        self.name = name
        self.todo = list(reads)
        self.client = Client(port)
        self.tab = f"bench-{name}"
        self.rng = random.Random(name)

    def pause(self):
        if THINK_MS:
            time.sleep(self.rng.uniform(0.5, 1.5) * THINK_MS / 1000)

    def cycle(self, code: str, samples: dict[str, list[float]]):
        read_id = self.todo.pop(0)
        c = self.client
        self.pause()
        ms, _ = c.timed("GET", f"/t/{code}/read/")
        samples["worklist"].append(ms)
        self.pause()
        ms, data = c.timed("GET", f"/api/reads/{read_id}/", headers={"Accept": "application/json"})
        samples["open case"].append(ms)
        payload = json.loads(data)
        if payload["status"] == "submitted":
            raise RuntimeError(f"read {read_id} is already submitted")
        ms, _ = c.timed("GET", payload["image"]["display_url"])
        samples["radiograph"].append(ms)
        self.pause()
        draft = payload["draft"] or {"findings": "", "impression": ""}
        base = payload["saved"]["version"] if payload["saved"] else None
        findings = draft["findings"]
        for i in range(3):
            findings += f" Typed {i}."
            body = json.dumps({"findings": findings, "impression": draft["impression"] or "No acute finding.",
                               "finding_flags": FLAGS, "base_version": base, "tab_id": self.tab}).encode()
            ms, data = c.timed("PUT", payload["urls"]["autosave"], body, c.json_headers())
            samples["autosave"].append(ms)
            self.pause()
            base = json.loads(data)["version"]
        body = json.dumps({"findings": findings, "impression": draft["impression"] or "No acute finding.",
                           "finding_flags": FLAGS, "base_version": base, "tab_id": self.tab}).encode()
        ms, _ = c.timed("POST", payload["urls"]["submit"], body, c.json_headers(), expect=(201,))
        samples["submit"].append(ms)


def run_threads(n: int, target) -> float:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrapped(i):
        try:
            barrier.wait(timeout=60)
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,), daemon=True) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a simulated reader did not finish within 10 minutes")
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def healthz_load(port: int, n: int, per_thread: int) -> list[float]:
    samples: list[float] = []
    lock = threading.Lock()

    def work(i):
        c = Client(port)
        rng = random.Random(i)
        mine = []
        for _ in range(per_thread):
            if THINK_MS:
                time.sleep(rng.uniform(0.5, 1.5) * THINK_MS / 1000)
            mine.append(c.timed("GET", "/healthz")[0])
        c.close()
        with lock:
            samples.extend(mine)

    run_threads(n, work)
    return samples


def reading_load(readers: list[Reader], code: str, rounds: int, ramp: int = 0) -> tuple[dict[str, list[float]], float]:
    """Every reader `rounds` cycles, all starting together; the first `ramp` cycles of each are not sampled (at the
    start every reader asks for its worklist in the same millisecond, a burst no real reading room makes)."""
    samples = {step: [] for step in STEPS}
    lock = threading.Lock()

    def work(i):
        mine = {step: [] for step in STEPS}
        for r in range(rounds):
            readers[i].cycle(code, mine if r >= ramp else {step: [] for step in STEPS})
        with lock:
            for step, values in mine.items():
                samples[step].extend(values)

    seconds = run_threads(len(readers), work)
    return samples, seconds


def pick(readers: list[Reader], n: int, rounds: int) -> list[Reader]:
    """The n readers with the most reads left (so that the levels share the reads out evenly)."""
    chosen = sorted(readers, key=lambda r: -len(r.todo))[:n]
    if len(chosen) < n or any(len(r.todo) < rounds for r in chosen):
        raise RuntimeError("not enough reads left: raise --cases")
    return chosen


def http_bench(config: Config, port: int, world, reader_names: list[str], levels: list[int], rounds: dict[int, int],
               healthz_per_thread: int, readers_cache: dict, master_pid: int) -> list[dict]:
    from bench._reading_world import PASSWORD

    readers = []
    for name in reader_names:
        r = readers_cache.get(name) or Reader(name, world.reads[name], port)
        readers_cache[name] = r
        r.client = Client(port)
        readers.append(r)
    t0 = time.perf_counter()
    run_threads(4, lambda i: [r.client.login(r.name, PASSWORD) for r in readers[i::4]])
    print(f"  {len(readers)} readers logged in ({time.perf_counter() - t0:.1f} s)")
    # warm-up: every reader one cycle, and /healthz, at the highest concurrency; not counted
    healthz_load(port, max(levels), 5)
    reading_load(pick(readers, min(len(readers), max(levels)), 1), world.code, 1)
    rows = []
    for n in levels:
        for attempt in range(3):
            try:
                base = healthz_load(port, n, healthz_per_thread)
                chosen = pick(readers, n, rounds[n])
                load = os.getloadavg()[0]
                cpu_before = server_cpu(master_pid)
                cpu_before["bench client"] = time.process_time()
                samples, seconds = reading_load(chosen, world.code, rounds[n], RAMP_CYCLES)
                cpu_after = server_cpu(master_pid)
                cpu_after["bench client"] = time.process_time()
                break
            except (RuntimeError, OSError) as exc:
                # e.g. PostgreSQL restarted by someone else: wait, then run this level again on fresh reads
                if attempt == 2 or "not enough reads" in str(exc):
                    raise
                print(f"  {config.label}: {n} readers failed ({str(exc)[:120]}); again in 15 s")
                time.sleep(15)
                for r in readers:  # a read left half done is skipped: its successor starts clean
                    r.client.close()
        # the load is all the requests (the ramp's too): throughput and CPU per request count them all
        requests = n * rounds[n] * (len(STEPS) + 2)  # per cycle: worklist, open, radiograph, autosave x3, submit
        cpu_ms = {k: (cpu_after[k] - cpu_before[k]) * 1000 / requests for k in cpu_after}
        rows.append({"config": config.label, "readers": n, "samples": samples, "healthz": base,
                     "rps": requests / seconds, "cycles": n * rounds[n], "load": load, "cpu_ms": cpu_ms})
        print(f"  {config.label}: {n} readers, {n * rounds[n]} reads, {requests} requests in {seconds:.1f} s "
              f"({requests / seconds:.0f}/s; load average before: {load:.1f}); CPU per request: gunicorn "
              f"{cpu_ms['gunicorn']:.1f} ms, PostgreSQL {cpu_ms['postgres']:.1f} ms, the simulated readers "
              f"{cpu_ms['bench client']:.1f} ms")
    for r in readers:
        r.client.close()
    return rows


def print_table(rows: list[dict]):
    print()
    print(f"Per step latency, ms (p50 / p95), closed loop, think time {THINK_MS:.0f} ms; baseline /healthz (SELECT 1) "
          "under the same concurrency; CPU ms/req: gunicorn + PostgreSQL CPU time over the reading requests "
          "of the level")
    head = (f"{'config':<10} {'readers':>7} " + " ".join(f"{s:>17}" for s in STEPS + ["/healthz"])
            + f" {'req/s':>6} {'CPU ms/req':>10}")
    print(head)
    print("-" * len(head))
    for row in rows:
        cells = [f"{pct(row['samples'][s], .5):7.1f} /{pct(row['samples'][s], .95):7.1f}" for s in STEPS]
        cells.append(f"{pct(row['healthz'], .5):7.1f} /{pct(row['healthz'], .95):7.1f}")
        cpu = row["cpu_ms"]["gunicorn"] + row["cpu_ms"]["postgres"]
        print(f"{row['config']:<10} {row['readers']:>7} " + " ".join(f"{c:>17}" for c in cells) + f" {row['rps']:6.0f}"
              + f" {cpu:10.1f}")
    print()
    for row in rows:
        worst = max(STEPS, key=lambda s: pct(row["samples"][s], .95))
        # a stress test, not the goal (the goal is the capacity at a radiologist's pace: --mode capacity)
        print(f"{row['config']}: {row['readers']} readers back to back: worst p95 {worst} "
              f"{pct(row['samples'][worst], .95):.0f} ms")


# ------------------------------------------------------------------------------------------------ queries


def query_profile(world, name: str, cycles: int = 2) -> None:
    """One reader's cycles in process (Django's test client, no server): queries and their time per step."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    client = DjangoClient(HTTP_HOST="127.0.0.1", enforce_csrf_checks=False)
    client.force_login(get_user_model().objects.get(username=name))
    rows: dict[str, list[tuple[int, float, float]]] = {}
    slowest: dict[str, list[tuple[float, str]]] = {}

    def step(label, method, path, **kw):
        t0 = time.perf_counter()
        with CaptureQueriesContext(connection) as q:
            response = getattr(client, method)(path, **kw)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
        ms = (time.perf_counter() - t0) * 1000
        sql_ms = sum(float(x["time"]) for x in q.captured_queries) * 1000
        rows.setdefault(label, []).append((len(q.captured_queries), sql_ms, ms))
        slowest.setdefault(label, []).extend((float(x["time"]) * 1000, x["sql"]) for x in q.captured_queries)
        if response.status_code >= 400:
            raise RuntimeError(f"{label}: HTTP {response.status_code}")
        return response

    for read_id in world.reads[name][:cycles]:
        step("worklist", "get", f"/t/{world.code}/read/")
        step("read page", "get", f"/t/{world.code}/read/{read_id}/")  # a worklist click: the read comes embedded
        payload = step("open case", "get", f"/api/reads/{read_id}/").json()
        step("radiograph", "get", payload["image"]["display_url"])
        base = None
        for i in range(3):
            body = {"findings": f"Typed {i}.", "impression": "No acute finding.", "finding_flags": {},
                    "base_version": base, "tab_id": "profile"}
            base = step("autosave", "put", payload["urls"]["autosave"], data=json.dumps(body),
                        content_type="application/json").json()["version"]
        body = {"findings": "Typed.", "impression": "No acute finding.", "finding_flags": {}, "base_version": base,
                "tab_id": "profile"}
        step("submit", "post", payload["urls"]["submit"], data=json.dumps(body), content_type="application/json")
    print("\nQueries per request (in process, one reader alone, last of "
          f"{cycles} cycles; first-cycle warm-up not shown): count, SQL ms, total ms")
    for label, values in rows.items():
        n, sql_ms, ms = values[-1]
        print(f"  {label:<11} {n:>3} queries  {sql_ms:6.1f} ms SQL  {ms:6.1f} ms in all")
    for label in ("open case", "submit"):
        top = sorted(slowest[label], reverse=True)[:3]
        for t, text in top:
            print(f"    slowest in {label}: {t:5.1f} ms  {text[:150]}")


# ------------------------------------------------------------------------------------------------ Chromium


def browser_bench(port: int, world, name: str, next_name: str, clicks: int, nexts: int) -> dict:
    from playwright.sync_api import sync_playwright

    from bench._reading_world import PASSWORD

    base = f"http://{HOST}:{port}"
    if len(world.reads[name]) < 2 * clicks + 1 or len(world.reads[next_name]) < nexts + 1:
        raise RuntimeError("the browser readers have too few reads; raise --cases")
    console: list[str] = []
    out = {"worklist click": [], "next case": [], "console": console}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            def context(name):
                ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
                page = ctx.new_page()
                page.set_default_timeout(20000)
                page.on("console", lambda m: console.append(m.text) if "[cxr-trial]" in m.text else None)
                page.goto(f"{base}/accounts/login/")
                page.fill("input[name=username]", name)
                page.fill("input[name=password]", PASSWORD)
                with page.expect_navigation():
                    page.click("form button[type=submit]")
                return ctx, page

            # Worklist clicks, in a fresh browser cache: every other row, so that the radiograph was not
            # prefetched by the previous case ("next case" prefetches the following one).
            ctx, page = context(name)
            page.goto(f"{base}/t/{world.code}/read/")  # warm-up: static files into the cache
            page.locator("#worklist tbody a[data-read-link]").first.click()
            page.wait_for_selector("#read-app[data-image-shown-ms]", state="attached")
            for k in range(clicks):
                page.goto(f"{base}/t/{world.code}/read/")
                link = page.locator("#worklist tbody a[data-read-link]").nth(2 + 2 * k)
                link.click()
                page.wait_for_selector("#read-app[data-image-shown-ms]", state="attached")
                out["worklist click"].append(float(page.get_attribute("#read-app", "data-image-shown-ms")))
            ctx.close()

            # "Next case": another reader, in another fresh context: from the first read, then next, next…
            ctx, page = context(next_name)
            start = world.reads[next_name][0]
            page.goto(f"{base}/t/{world.code}/read/{start}/")
            page.wait_for_selector("#read-app[data-image-shown-ms]", state="attached")
            for _ in range(nexts):
                before = page.get_attribute("#read-app", "data-read-id")
                page.wait_for_timeout(300)  # let the prefetch of the next radiograph finish, as a reader would
                page.click("#next-button")
                page.wait_for_function(
                    "b => { const a = document.getElementById('read-app');"
                    " return a.dataset.readId !== b && a.dataset.imageShownMs !== undefined; }", arg=before)
                out["next case"].append(float(page.get_attribute("#read-app", "data-image-shown-ms")))
            ctx.close()
        finally:
            browser.close()
    return out


# ------------------------------------------------------------------------------------------------ cache


def redis_answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:  # noqa: BLE001 - no Redis, or no client: fall back
        return False


def forget_sessions(url: str, prefixes: list[str] = ()) -> None:
    """Delete the sessions the run left in the cache (and its login-throttle counters), and every key under
    `prefixes` (the baselines' KEY_PREFIX, this run's alone): nothing else."""
    import redis

    client = redis.Redis.from_url(url)
    patterns = ["*django.contrib.sessions.cached_db*", "*login-failures:*"] + [f"{prefix}:*" for prefix in prefixes]
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


# ------------------------------------------------------------------------------------------------ capacity


def _baseline_tree(rev: str, tmp: Path) -> Path:
    """A git worktree of `rev` (removed at the end by the caller)."""
    path = tmp / f"baseline-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), rev], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def _psycopg2_env(folder: str, tmp: Path) -> dict:
    """PYTHONPATH that hides psycopg 3 and offers psycopg2 from `folder`: Django then uses psycopg2."""
    shim = tmp / "no-psycopg3" / "psycopg"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text("raise ImportError('hidden by bench/reading.py: use psycopg2')\n")
    return {"PYTHONPATH": f"{shim.parent}:{folder}"}


def _first_backend(root: Path) -> str:
    """The first of a revision's AUTHENTICATION_BACKENDS (Django's ModelBackend where its settings name none)."""
    found = re.search(r"AUTHENTICATION_BACKENDS\s*=\s*\[\s*[\"']([\w.]+)[\"']",
                      (root / "config" / "settings.py").read_text())
    return found.group(1) if found else "django.contrib.auth.backends.ModelBackend"


def _bench_db_cpu(db: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to the bench's database (not the rest of the
    server: other databases on it are other people's work). The web processes keep their connections for the run
    (CONN_MAX_AGE), so their backends live through a window."""
    import psycopg

    with psycopg.connect(host=HOST, user="postgres", dbname="postgres", autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [db])]
    return sum(map(_cpu_with_children, pids))


def _level_row(label: str, n: int, samples, start: float, end: float, cpu: dict, errors: int, healthz: list[float],
               healthz_cpu_ms: float) -> dict:
    from bench._reading_pace import STEPS as PACED

    window = samples.window(start, end)
    requests = sum(len(v) for v in window.values())
    seconds = end - start
    worst = max(PACED, key=lambda st: pct(window[st], .95) if window[st] else -1)
    p95 = pct(window[worst], .95)
    return {"server": label, "readers": n, "steps": window, "requests": requests, "rps": requests / seconds,
            "cpu_ms": (cpu["gunicorn"] + cpu["postgres"]) * 1000 / max(1, requests),
            "client_ms": cpu["client"] * 1000 / max(1, requests), "errors": errors,
            "healthz": healthz, "healthz_cpu_ms": healthz_cpu_ms, "worst": worst, "worst_p95": p95,
            "ok": errors == 0 and all(window[st] for st in PACED if st != "submit") and p95 <= 100}


def _print_capacity(rows: list[dict], servers: list[str]) -> None:
    from bench._reading_pace import STEPS as PACED

    print()
    print("Readers at a radiologist's pace: p50 / p95 ms per step over the window; req/s; CPU ms per request "
          "(gunicorn + the bench database's PostgreSQL backends; the simulated readers' own beside); /healthz at the "
          "same rate (p95, CPU ms/req)")
    head = (f"{'server':<10} {'readers':>7} " + " ".join(f"{st:>15}" for st in PACED)
            + f" {'req/s':>6} {'CPU ms':>6} {'client':>6} {'/healthz p95':>12} {'CPU':>5} {'errors':>6} {'goal':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = [f"{pct(r['steps'][st], .5):6.1f} /{pct(r['steps'][st], .95):6.1f}" if r["steps"][st] else
                 f"{'–':>15}" for st in PACED]
        print(f"{r['server']:<10} {r['readers']:>7} " + " ".join(f"{c:>15}" for c in cells)
              + f" {r['rps']:6.0f} {r['cpu_ms']:6.1f} {r['client_ms']:6.1f} {pct(r['healthz'], .95):12.1f}"
              + f" {r['healthz_cpu_ms']:5.1f}"
              + f" {r['errors']:>6} {'met' if r['ok'] else 'no':>5}")
    print()
    for label in servers:
        mine = [r for r in rows if r["server"] == label]
        levels = sorted({r["readers"] for r in mine})
        # a level counts as met only if every repeat of it met the goal; the capacity is the last level met before
        # the first level missed (a lucky pass above a failure is not capacity)
        met = {n: all(r["ok"] for r in mine if r["readers"] == n) for n in levels}
        capacity = 0
        for n in levels:
            if not met[n]:
                break
            capacity = n
        limit = next((r for r in mine if r["readers"] > capacity and not r["ok"]), None)
        reason = (f"; first level over: {limit['readers']} readers ({limit['worst']} p95 {limit['worst_p95']:.0f} ms, "
                  f"{limit['errors']} errors)") if limit else ""
        print(f"capacity of {label}: {capacity} concurrent readers with every step's p95 ≤ 100 ms{reason}; "
              f"goal ≥ 500: {'met' if capacity >= 500 else 'MISSED'}")


class InvalidComparison(RuntimeError):
    """The servers' figures would not compare their code: they serve different worlds, or one answered HTTP ≥ 500
    (its figures measure a failure). The bench then prints why and no capacity table."""


def _baseline_database(db: str, label: str) -> str:
    """The database of a baseline revision: the bench's own name and the revision (e.g. cxr_bench_reading_d6d7b83)."""
    return f"{db}_{re.sub(r'[^a-z0-9_]', '_', label.lower())}"


def _cache_prefix(label: str, tmp: Path) -> str:
    """A baseline's KEY_PREFIX in the cache, new for every run (the run's temporary folder is in it)."""
    return f"bench-{label}-{tmp.name}"


def _baseline_env(env: dict, label: str, root: Path, database: str, tmp: Path, args) -> dict:
    """The environment of a baseline revision's server and of the set-up of its world: its own database (its schema),
    var and media folders; its own keys in the cache, new for each run (an older revision caches the signed-in user
    by id for 60 s: a user cached from another database, another revision's or a previous run's, has another
    password hash, and its sessions would be refused); psycopg2 where the revision shipped with it."""
    out = dict(env)
    out["DATABASE_URL"] = f"{env['DATABASE_URL'].rsplit('/', 1)[0]}/{database}"
    out["CXR_VAR_DIR"] = str(tmp / f"var-{label}")
    out["CXR_MEDIA_ROOT"] = str(tmp / f"media-{label}")
    paths = []
    if "CACHE_URL" in out:
        # The prefix cannot ride on CACHE_URL (`?key_prefix=`): django-environ hands it to Django's Redis backend in
        # lower case, which Django ignores. A settings module of the run's own sets it over the revision's settings.
        folder = tmp / "settings"
        folder.mkdir(exist_ok=True)
        module = "bench_settings_" + re.sub(r"\W", "_", label)
        (folder / f"{module}.py").write_text(
            f'"""{label}\'s settings with a cache KEY_PREFIX of this run\'s own (written by bench/reading.py)."""\n'
            "from config.settings import *  # noqa: F403\n\n"
            f"CACHES['default']['KEY_PREFIX'] = {_cache_prefix(label, tmp)!r}  # noqa: F405\n")
        out["DJANGO_SETTINGS_MODULE"] = module
        paths.append(str(folder))
    if args.baseline_psycopg2 and "psycopg2" in (root / "pyproject.toml").read_text():
        paths.append(_psycopg2_env(args.baseline_psycopg2, tmp)["PYTHONPATH"])
    if paths:
        out["PYTHONPATH"] = ":".join(paths)
    return out


def _baseline_world(label: str, root: Path, env: dict, tmp: Path, *, readers: int, cases: int, distinct: int,
                    sessions: int) -> dict:
    """The world of a baseline revision, built in its own (empty) database by its own code: bench/_reading_world.py
    run as a script in a process with the revision's tree first on its path and the revision's environment. This
    checkout's schema is not the revision's (its code fails on it: HTTP 500), and migrating a copy of this checkout's
    database backwards would leave rows that this checkout's code wrote (life-cycle statuses, the keyed audit chain,
    signatures) for code that never wrote them, so each revision migrates and fills its own."""
    out = tmp / f"world-{label}.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "_reading_world.py"), "--root", str(root), "--out", str(out),
                    "--readers", str(readers), "--cases", str(cases), "--distinct-images", str(distinct),
                    "--sessions", str(sessions)], cwd=root, env=env, check=True)
    return json.loads(out.read_text())


def _check_same_world(world, label: str, other: dict) -> None:
    """Refuse to compare servers that do not serve the same trial: the same readers with as many reads each (which
    case a reader gets is each revision's own concealed random draw, as it is between two runs of one revision)."""
    mine = sorted(len(reads) for reads in world.reads.values())
    theirs = sorted(len(reads) for reads in other["reads"].values())
    if world.readers != other["readers"] or world.code != other["code"] or mine != theirs:
        raise InvalidComparison(f"No comparison: the world of {label} is not this checkout's: "
                                f"{len(other['readers'])} readers, {sum(theirs)} reads against "
                                f"{len(world.readers)} readers, {sum(mine)} reads")


def _refuse_if_failed(server_errors: dict[str, list[str]], logs: dict[str, Path]) -> None:
    """InvalidComparison if any server answered HTTP ≥ 500, with an example and its gunicorn log's last lines."""
    failed = {label: errors for label, errors in server_errors.items() if errors}
    if not failed:
        return
    lines = []
    for label, errors in failed.items():
        lines.append(f"  {label}: {len(errors)} requests failed, e.g. {errors[0][:300]}")
        log = logs[label].read_text(errors="replace").strip().splitlines() if logs[label].exists() else []
        lines += [f"    | {line}" for line in log[-15:]]  # the traceback, before the folder goes
    raise InvalidComparison("No comparison: requests failed with HTTP ≥ 500 (a server error, not the load), so the "
                            "figures would not measure the code.\n" + "\n".join(lines))


def capacity(args, env: dict, tmp: Path, levels: list[int], pg: tuple[str, int, str]) -> int:
    from bench import _reading_pace as pace
    from bench import _reading_world as world_mod

    pg_host, pg_port, pg_user = pg
    config = args.configs[0]
    servers_wanted = [("this", ROOT)]
    baselines: list[Path] = []
    databases = {"this": args.db}  # each server's own database: its revision's schema, the same world
    created: list[str] = []
    servers, rows = {}, []
    server_errors: dict[str, list[str]] = {}  # HTTP ≥ 500 per server, warm-up and /healthz included
    logs = {}
    try:
        for rev in (args.baseline or "").split(","):
            if rev.strip():
                label = rev.strip()[:10]
                baselines.append(_baseline_tree(rev.strip(), tmp))
                servers_wanted.append((label, baselines[-1]))
                databases[label] = _baseline_database(args.db, label)
        server_env = {label: env if root == ROOT else _baseline_env(env, label, root, databases[label], tmp, args)
                      for label, root in servers_wanted}
        world_mod.create_database(host=pg_host, port=pg_port, user=pg_user, name=args.db)
        created.append(args.db)
        import django

        django.setup()
        import logging

        logging.getLogger("celery").setLevel(logging.WARNING)
        logging.getLogger("trial.audit.anchor").setLevel(logging.WARNING)  # a line per commit while building
        t0 = time.perf_counter()
        world_mod.migrate()
        from django.core.management import call_command

        call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG off: WhiteNoise serves STATIC_ROOT
        n_readers = max(levels) + 2  # + the two readers in Chromium; an even count keeps the arms equal
        per_reader = pace.reads_needed(levels * args.repeats, args.window, args.ramp_seconds,
                                       servers=len(servers_wanted))
        per_reader = max(per_reader, 2 * args.clicks + 3, args.nexts + 3)
        cases = args.cases or math.ceil(per_reader * n_readers / 2)
        distinct = 24
        print(f"Database {args.db} created and migrated ({time.perf_counter() - t0:.0f} s). Building the trial: "
              f"{n_readers} readers, {cases} cases ({min(cases, distinct)} enrolled, the rest copies)…")
        world = world_mod.build(readers=n_readers, cases=cases, distinct_images=distinct)
        print(f"Trial ready in {world.seconds:.0f} s; reads per reader: "
              f"{min(len(v) for v in world.reads.values())}–{max(len(v) for v in world.reads.values())}.")
        from django.db import connections

        connections.close_all()
        # each revision signs its readers in through its own first authentication backend (an older revision's
        # cached user included), each in its own sessions
        keys = {"this": world_mod.sessions(world.readers[:max(levels)], backend=_first_backend(ROOT))}
        reads = {"this": world.reads}
        connections.close_all()
        for label, root in servers_wanted[1:]:
            world_mod.create_database(host=pg_host, port=pg_port, user=pg_user, name=databases[label])
            created.append(databases[label])
            print(f"\nDatabase {databases[label]}: {label}'s schema and the same trial, built by {label}'s own "
                  "migrations and services…", flush=True)  # before the set-up's own lines
            other = _baseline_world(label, root, server_env[label], tmp, readers=n_readers, cases=cases,
                                    distinct=distinct, sessions=max(levels))
            _check_same_world(world, label, other)
            print(f"Trial of {label} ready in {other['seconds']:.0f} s.")
            keys[label], reads[label] = other["sessions"], other["reads"]
        readers = [pace.PacedReader(name, {label: keys[label][name] for label in keys},
                                    {label: list(reads[label][name]) for label in reads}, random.Random(name))
                   for name in world.readers[:max(levels)]]
        for label, root in servers_wanted:
            logs[label] = tmp / f"gunicorn-{label}.log"
            servers[label] = Server(config, server_env[label], logs[label], root=root)
            server_errors[label] = []
            print(f"gunicorn {config.label} of {label} ({root}) on port {servers[label].port}, database "
                  f"{databases[label]}")
        for label, server in servers.items():  # warm-up: every worker imports and renders once; not counted
            pace.open_loop(server.port, "/healthz", 50.0, 2.0, Client, server_errors=server_errors[label])
            samples, *_ = pace.run_level(readers[:12], server=label, port=server.port, code=world.code,
                                         client_class=Client, ramp=1.0, window=8.0)
            server_errors[label] += samples.server_errors
        _refuse_if_failed(server_errors, logs)
        rounds = [(n, r) for n in levels for r in range(args.repeats)]
        for index, (n, repeat) in enumerate(rounds):
            order = list(servers) if index % 2 == 0 else list(reversed(servers))
            for label in order:
                server = servers[label]
                chosen = readers[:n]
                counters = {}

                def read_counters(edge, server=server, counters=counters, database=databases[label]):
                    counters[edge] = {"gunicorn": server_cpu(server.proc.pid)["gunicorn"],
                                      "postgres": _bench_db_cpu(database), "client": time.process_time(),
                                      "machine": machine_cpu()[0]}

                samples, start, end, errors = pace.run_level(chosen, server=label, port=server.port,
                                                             code=world.code, client_class=Client,
                                                             ramp=args.ramp_seconds, window=args.window,
                                                             on_window=read_counters)
                server_errors[label] += samples.server_errors
                cpu = {k: counters["end"][k] - counters["start"][k] for k in counters["end"]}
                rate = sum(1 for _, _, t in samples.rows if start <= t <= end) / (end - start)
                h_before = server_cpu(server.proc.pid)
                healthz = pace.open_loop(server.port, "/healthz", rate, 20.0, Client,
                                         server_errors=server_errors[label])
                h_after = server_cpu(server.proc.pid)
                h_cpu = sum(h_after[k] - h_before[k] for k in h_after) * 1000 / max(1, len(healthz))
                row = _level_row(label, n, samples, start, end, cpu, errors, healthz, h_cpu)
                rows.append(row)
                # what the machine did besides this server, the bench database and the simulated readers (PostgreSQL's
                # own background processes, and anyone else's work): a round that others loaded is seen as such
                others = (cpu["machine"] - cpu["gunicorn"] - cpu["postgres"] - cpu["client"]) / (end - start)
                print(f"  {label}: {n} readers (round {repeat + 1}): {row['requests']} requests in {end - start:.0f} s "
                      f"({row['rps']:.0f}/s), CPU {row['cpu_ms']:.1f} ms/request, worst p95 {row['worst']} "
                      f"{row['worst_p95']:.0f} ms, other processes {others:.2f} cores, errors {errors}"
                      + (f" (e.g. {next(e for r in chosen for e in r.errors)[:120]})" if errors else ""))
            # a server error voids the comparison: stop here rather than measure a failure for minutes more
            _refuse_if_failed(server_errors, logs)
            if repeat == args.repeats - 1 and not any(r["ok"] for r in rows if r["readers"] == n):
                print(f"  no server met the goal at {n} readers: higher levels skipped")
                break
        _print_capacity(rows, list(servers))
        if not args.no_browser:
            label = next(iter(servers))
            print(f"\nChromium ({label}, one reader, server otherwise idle): click → radiograph painted, ms")
            result = browser_bench(servers[label].port, world, world.readers[-1], world.readers[-2], args.clicks,
                                   args.nexts)
            for what in ("worklist click", "next case"):
                values = result[what]
                p95 = pct(values, .95)
                print(f"  {what:<15} n={len(values):>2}  p50 {pct(values, .5):6.0f}  p95 {p95:6.0f}  "
                      f"max {max(values):6.0f}  goal p95 ≤ 300: {'met' if p95 <= 300 else 'MISSED'}")
        return 0
    except InvalidComparison as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    finally:
        for server in servers.values():
            server.stop()
        close_django_connections()
        for name in created:
            world_mod.drop_database(host=pg_host, port=pg_port, user=pg_user, name=name)
        if args.cache != "none":
            forget_sessions(args.cache, [_cache_prefix(label, tmp) for label in databases if label != "this"])
        for baseline in baselines:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("capacity", "burst"), default="capacity",
                        help="capacity: readers at a radiologist's pace, the largest level within the goal (default); "
                             "burst: readers back to back")
    parser.add_argument("--window", type=float, default=60.0, help="capacity: seconds sampled per level (default 60)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="capacity: rounds of each level per server, alternating the servers (default 2); a level "
                             "is met only if every round met it")
    parser.add_argument("--ramp-seconds", type=float, default=20.0,
                        help="capacity: seconds over which a level's readers start, not sampled (default 20)")
    parser.add_argument("--baseline", help="capacity: also run the code of these git revisions (comma-separated; a "
                                           "worktree each), level by level beside this checkout's")
    parser.add_argument("--baseline-psycopg2", help="capacity: a folder with psycopg2 (pip install --target) for the "
                                                    "baselines that shipped with psycopg2 (their pyproject.toml says "
                                                    "so), which then run on it instead of psycopg 3")
    parser.add_argument("--configs", type=lambda s: [parse_config(x) for x in s.split(",")], default="w3t1c60",
                        help="gunicorn configurations wXtY[cZ], comma-separated (default w3t1c60: docker's web)")
    parser.add_argument("--levels", help="concurrent readers (default: capacity 100,250,500,750,1000; burst 8,16,32)")
    parser.add_argument("--samples", type=int, default=160,
                        help="reads (cycles) per level, at least (default 160: 5 rounds of 32 readers, so that the "
                             "level's start, every reader at once, is not most of the sample)")
    parser.add_argument("--healthz", type=int, default=40, help="/healthz requests per thread per level")
    parser.add_argument("--cases", type=int, default=0, help="cases to enrol (default: enough for the runs)")
    parser.add_argument("--clicks", type=int, default=10, help="worklist clicks in Chromium")
    parser.add_argument("--nexts", type=int, default=10, help="'next case' clicks in Chromium")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean pause in ms before each request of a reader, uniform 0.5–1.5× (default 0: "
                             "back to back, the heaviest load; real readers pause for seconds)")
    parser.add_argument("--ramp", type=int, default=1,
                        help="cycles of each reader at the start of a level left out of the percentiles (default 1: "
                             "the burst of every reader starting at once; 0 keeps it)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--queries", action="store_true", help="also count queries per step, in process")
    parser.add_argument("--browser-config", help="configuration for the Chromium part (default: the first)")
    parser.add_argument("--db", default="cxr_bench_reading")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port of PostgreSQL")
    parser.add_argument("--debug", action="store_true", help="run the server with DJANGO_DEBUG=1 (default: off)")
    parser.add_argument("--cache", default="redis://127.0.0.1:6379/14",
                        help="CACHE_URL of the server, as in production: sessions are read from it (default "
                             "redis://127.0.0.1:6379/14; its session keys are deleted at the end); 'none': the "
                             "in-process default (sessions from the database)")
    args = parser.parse_args()
    if isinstance(args.configs, str):
        args.configs = [parse_config(args.configs)]
    levels = [int(x) for x in (args.levels or ("100,250,500,750,1000" if args.mode == "capacity" else "8,16,32"))
              .split(",")]
    global THINK_MS, RAMP_CYCLES
    THINK_MS = args.think
    pg_user, _, hostport = args.pg.partition("@")
    pg_host, _, pg_port = hostport.partition(":")
    if pg_host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("only a loopback PostgreSQL")
    pg_port = int(pg_port or 5432)

    http_readers = max(levels)
    # + 4: the query profile's reader, a spare, and the two readers in Chromium (worklist clicks; next case);
    # an even count keeps the arms equal
    n_readers = http_readers + 4
    RAMP_CYCLES = args.ramp
    rounds = {n: max(1, math.ceil(args.samples / n)) + RAMP_CYCLES for n in levels}
    per_config = sum(n * rounds[n] for n in levels) + http_readers  # + warm-up
    # + the largest rounds: the levels pick the readers with the most reads left, in whole rounds
    need_per_reader = math.ceil(per_config * len(args.configs) / http_readers) + max(rounds.values()) + 1
    need_per_reader = max(need_per_reader, 2 * args.clicks + 3, args.nexts + 3)
    cases = args.cases or math.ceil(need_per_reader * n_readers / 2)

    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-reading-"))
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://{pg_user}@{pg_host}:{pg_port}/{args.db}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CXR_DEVELOPMENT": "1",  # a development set-up (the baseline revisions ignore it)
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DEBUG": "1" if args.debug else "0",
        "CXR_VAR_DIR": str(tmp / "var"),
        "CXR_MEDIA_ROOT": str(tmp / "media"),
        "CELERY_TASK_ALWAYS_EAGER": "1",
    })
    env.pop("CXR_PRODUCTION", None)
    env.pop("CACHE_URL", None)
    if args.cache != "none" and not redis_answers(args.cache):
        print(f"No Redis at {args.cache}: sessions from the database (the in-process default cache).")
        args.cache = "none"
    if args.cache != "none":
        env["CACHE_URL"] = args.cache
    os.environ.update(env)

    from bench import _reading_world as world_mod

    if args.mode == "capacity":
        return capacity(args, env, tmp, levels, (pg_host, pg_port, pg_user))

    server = None
    created = False
    rows: list[dict] = []
    browser_results = None
    try:
        world_mod.create_database(host=pg_host, port=pg_port, user=pg_user, name=args.db)
        created = True
        import django

        django.setup()
        import logging

        logging.getLogger("celery").setLevel(logging.WARNING)  # eager tasks of the set-up: no line each
        logging.getLogger("trial.audit.anchor").setLevel(logging.WARNING)  # a line per commit while building
        t0 = time.perf_counter()
        world_mod.migrate()
        from django.core.management import call_command

        call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG off: WhiteNoise serves STATIC_ROOT
        print(f"Database {args.db} created and migrated ({time.perf_counter() - t0:.0f} s).")
        print(f"Building the trial: {n_readers} readers, {cases} cases (256 px phantoms)…")
        world = world_mod.build(readers=n_readers, cases=cases)
        print(f"Trial ready in {world.seconds:.0f} s; reads per reader: "
              f"{min(len(v) for v in world.reads.values())}–{max(len(v) for v in world.reads.values())}.")
        from django.db import connections

        connections.close_all()

        if args.queries:
            query_profile(world, world.readers[-4])
            connections.close_all()
        reader_names = world.readers[:http_readers]
        browser_names = world.readers[-1], world.readers[-2]
        cache: dict = {}
        for config in args.configs:
            mode = f"gthread, {config.threads} threads" if config.threads > 1 else "sync"
            print(f"\ngunicorn {config.label}: {config.workers} workers ({mode}), CONN_MAX_AGE={config.conn_max_age}, "
                  f"sessions {'cached (' + args.cache + ')' if args.cache != 'none' else 'in the database'}")
            server = Server(config, env, tmp / f"gunicorn-{config.label}.log")
            try:
                rows += http_bench(config, server.port, world, reader_names, levels, rounds, args.healthz, cache,
                                   server.proc.pid)
                if not args.no_browser and config.label == (args.browser_config or args.configs[0].label):
                    print("  Chromium: worklist clicks and 'next case'…")
                    browser_results = browser_bench(server.port, world, *browser_names, args.clicks, args.nexts)
            finally:
                server.stop()
                server = None
        print_table(rows)
        rows = []
        if browser_results:
            print()
            print(f"Chromium ({args.browser_config or args.configs[0].label}, one reader, server otherwise idle): "
                  "click → radiograph painted, ms (data-image-shown-ms)")
            for what in ("worklist click", "next case"):
                values = browser_results[what]
                p95 = pct(values, .95)
                print(f"  {what:<15} n={len(values):>2}  p50 {pct(values, .5):6.0f}  p95 {p95:6.0f}  "
                      f"max {max(values):6.0f}  goal p95 ≤ 300: {'met' if p95 <= 300 else 'MISSED'}")
            sources = {}
            for line in browser_results["console"]:
                m = re.search(r"after (.+)$", line)
                if m:
                    sources[m.group(1)] = sources.get(m.group(1), 0) + 1
            print(f"  console lines by source: {sources}")
        return 0
    finally:
        if rows:  # a failure part way: what was measured still counts
            print_table(rows)
        if server is not None:
            server.stop()
        close_django_connections()
        if created:
            world_mod.drop_database(host=pg_host, port=pg_port, user=pg_user, name=args.db)
        if args.cache != "none":
            forget_sessions(args.cache)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
