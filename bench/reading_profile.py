"""Where a reading request's time goes, step by step, beside the code of another revision: the server's CPU per
request of each reading step (the worklist, the reading page with its read embedded, the read's JSON, the radiograph
and its window/level values, the reading events, autosave, submit), in the web process and in its PostgreSQL backend,
the queries it sends and the time spent waiting on them; then where the web process's time goes (cProfile) and how
long concurrent requests wait on the audit log's head lock. A few minutes on two cores, not the 17-minute capacity run
of bench/reading.py: what this finds says where bench/reading.py's CPU per request goes.

Run by hand from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth; Redis for sessions):

    python bench/reading_profile.py                              # this checkout beside d6d7b83
    python bench/reading_profile.py --baseline d6d7b83 --cycles 50 --autosaves 4 --profile 10 --concurrency 3,8
    python bench/reading_profile.py --variants nobind,noprepare,noanchor   # this checkout with one setting changed

Each revision serves its own database, migrated by its own migrations and filled with the same trial by its own
services (bench/_reading_world.py run as a script in the revision's tree, as bench/reading.py --baseline does), and
is measured in a process of its own with that revision's tree first on its path: a "worker" that calls the
revision's WSGI application (config.wsgi, the one gunicorn serves) directly, as a signed-in reader with a session in
the cache, a CSRF cookie and CONN_MAX_AGE=60, as docker/compose.yaml's web service runs it. What it measures per
request: the web process's own CPU (time.process_time around the WSGI call: middleware, view, rendering, the
driver), the CPU of its PostgreSQL backend (/proc/PID/schedstat, nanoseconds), the wall time, the time spent inside
the driver's execute (round trip and PostgreSQL's work) and the queries sent. Not measured: gunicorn's own HTTP
parsing (the same for every revision; /healthz beside the steps shows the floor of a request). The revisions run in
turns (--rounds), so that the machine's noise falls on both; the table gives this checkout's figure, the baseline's,
and their ratio.

Variants (--variants) run this checkout's code on its own database with one setting changed, through a settings
module of the run's own (no application code changes): `nobind` (psycopg's client-side binding, as Django's default
and as d6d7b83 ran), `noprepare` (no prepared statements), `noanchor` (CXR_AUDIT_ANCHOR_ON_COMMIT=0: no anchor line
and fsync after each commit that wrote audit events).

--concurrency N,M: N (then M) threads, each a reader of its own, open and submit reads back to back (the steps that
write audit events) against each revision; the time spent getting the audit head's row lock (trial.audit
`_locked_head`, timed by wrapping it in the worker), the time of the anchor's append (fsync included), and what
PostgreSQL's backends of the database were waiting on (pg_stat_activity, sampled every 5 ms). gunicorn's three sync
workers never run more than three requests at once: N=3 is the production case, a larger N a stress test.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["healthz", "worklist", "read page", "read JSON", "radiograph", "values", "event opened", "event",
         "autosave", "submit"]
VARIANTS = {
    # psycopg 3 as Django uses it by default (and as d6d7b83 ran): parameters interpolated on the client
    "nobind": "DATABASES['default']['OPTIONS'].update({'server_side_binding': False, 'prepare_threshold': None})\n",
    "noprepare": "DATABASES['default']['OPTIONS'].update({'prepare_threshold': None})\n",
    "noanchor": "AUDIT_ANCHOR_ON_COMMIT = False\n",
    # not a setting: gc.freeze() once the application is loaded and warm (as a gunicorn post_fork hook would), so
    # that a full collection no longer walks the objects of the imported modules
    "gcfreeze": "",
}
PASSWORD_CSRF = "benchcsrfsecret0123456789abcdefA"  # 32 characters: a CSRF secret, sent as cookie and header


def _measure_module():
    """bench/_measure.py, loaded by its path: in a worker, sys.path[0] is the revision's tree, whose bench folder
    may not have it."""
    spec = importlib.util.spec_from_file_location("_bench_measure", ROOT / "bench" / "_measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sched_ns(pid: int) -> int:
    """CPU nanoseconds of a process so far (/proc/PID/schedstat: exact, where /proc/PID/stat counts 10 ms ticks)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


# ------------------------------------------------------------------------------------------------ worker


class Wsgi:
    """One reader calling the revision's WSGI application: its session and CSRF cookies, the response's body read
    and closed (closing sends request_finished: Django's end-of-request connection handling, as under gunicorn)."""

    def __init__(self, application, session_key: str):
        self.application = application
        self.cookies = {"sessionid": session_key, "csrftoken": PASSWORD_CSRF}

    def __call__(self, method: str, path: str, body: bytes = b"", json_body: bool = False) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "bench/reading_profile",
            "HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "HTTP_ACCEPT": "application/json" if json_body else "text/html,*/*",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        if json_body:
            environ.update({"CONTENT_TYPE": "application/json", "HTTP_X_CSRFTOKEN": PASSWORD_CSRF,
                            "HTTP_REFERER": "http://127.0.0.1:8000/"})
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"] = int(status.split()[0])
            answer["headers"] = headers

        result = self.application(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        for name, value in answer["headers"]:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                if key.strip() in ("sessionid", "csrftoken"):
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
        return answer["status"], data


class Meter:
    """Per step: requests, web-process CPU, PostgreSQL backend CPU, wall, time inside execute, queries; and the
    wrapped audit functions' time. Thread-safe; `thread_cpu` for the concurrent runs (threads share the process)."""

    def __init__(self, thread_cpu: bool = False):
        self.rows: dict[str, list[list[float]]] = {}
        self.timers: dict[str, list[float]] = {}
        self.sql: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.local = threading.local()
        self.cpu = time.thread_time if thread_cpu else time.process_time

    def execute_wrapper(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            counters = getattr(self.local, "counters", None)
            if counters is not None:
                counters[0] += 1
                counters[1] += time.perf_counter() - t0
                counters[2].append(sql)

    def time_function(self, module, name: str, label: str) -> None:
        original = getattr(module, name, None)
        if original is None:
            return

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self.lock:
                    self.timers.setdefault(label, []).append(time.perf_counter() - t0)

        setattr(module, name, timed)

    def add(self, step: str, row: list[float], sql: list[str]) -> None:
        with self.lock:
            self.rows.setdefault(step, []).append(row)
            self.sql.setdefault(step, sql)  # the first request's statements, as an example


_GC = {"seconds": 0.0, "full": 0, "started": 0.0}  # the garbage collector's time so far, and its full collections


def _gc_callback(phase: str, info: dict) -> None:
    if phase == "start":
        _GC["started"] = time.perf_counter()
    else:
        _GC["seconds"] += time.perf_counter() - _GC["started"]
        _GC["full"] += info["generation"] == 2


def _backend_pid(connection) -> int:
    connection.ensure_connection()
    raw = connection.connection
    info = getattr(raw, "info", None)
    return info.backend_pid if info is not None else raw.get_backend_pid()


def _worker_request(meter: Meter, client: Wsgi, step: str, method: str, path: str, body: bytes = b"",
                    json_body: bool = False, expect: tuple[int, ...] = (200,), profiles: dict | None = None) -> bytes:
    from django.db import connection

    counters = [0, 0.0, []]
    meter.local.counters = counters
    pid = meter.local.backend_pid if getattr(meter.local, "backend_pid", None) else 0
    pg0 = _sched_ns(pid) if pid else 0
    profile = None
    if profiles is not None:
        import cProfile

        # CPU time, not wall: the waits on PostgreSQL are measured apart (execute, the backend's CPU)
        profile = profiles.setdefault(step, cProfile.Profile(time.process_time))
    gc0, full0 = _GC["seconds"], _GC["full"]
    c0, w0 = meter.cpu(), time.perf_counter()
    with connection.execute_wrapper(meter.execute_wrapper):
        if profile is not None:
            profile.enable()
        try:
            status, data = client(method, path, body, json_body)
        finally:
            if profile is not None:
                profile.disable()
    wall, cpu = time.perf_counter() - w0, meter.cpu() - c0
    meter.local.counters = None
    if status not in expect:
        raise RuntimeError(f"{step}: {method} {path}: HTTP {status}: {data[:300]!r}")
    if connection.connection is not None:
        now_pid = _backend_pid(connection)
        if now_pid != pid:  # the first request of this connection: its backend was not known before
            meter.local.backend_pid = now_pid
            pg = float("nan")
        else:
            pg = (_sched_ns(pid) - pg0) / 1e9
    else:
        pg = float("nan")
    # the collector's time and full collections during the request (a concurrent run's threads share them: there
    # they are the process's)
    meter.add(step, [cpu, pg, wall, counters[1], counters[0], _GC["seconds"] - gc0, _GC["full"] - full0],
              counters[2])
    return data


EMBEDDED = re.compile(rb'<script id="read-data" type="application/json">(.*?)</script>', re.S)


def _worker_cycle(meter: Meter, client: Wsgi, code: str, read_id: int, autosaves: int, tab: str,
                  profiles: dict | None = None, opening_only: bool = False) -> None:
    """One read as the reading screen does it (bench/_reading_pace.py), every step measured."""
    def req(step, method, path, body=b"", json_body=False, expect=(200,)):
        return _worker_request(meter, client, step, method, path, body, json_body, expect, profiles)

    if not opening_only:
        req("healthz", "GET", "/healthz")
        req("worklist", "GET", f"/t/{code}/read/")
    page = req("read page", "GET", f"/t/{code}/read/{read_id}/")
    payload = json.loads(EMBEDDED.search(page).group(1))
    if not opening_only:
        req("read JSON", "GET", f"/api/reads/{read_id}/", json_body=True)
        req("radiograph", "GET", payload["image"]["display_url"])
        if payload["image"].get("values_url"):
            req("values", "GET", payload["image"]["values_url"])
    req("event opened", "POST", payload["urls"]["events"], json.dumps({"kind": "opened", "tab_id": tab}).encode(),
        True, (201,))
    if not opening_only:
        req("event", "POST", payload["urls"]["events"], json.dumps({"kind": "image_shown", "tab_id": tab}).encode(),
            True, (201,))
    draft = payload["draft"] or {"findings": "", "impression": ""}
    findings, impression = draft["findings"], draft["impression"] or "No acute finding."
    base = payload["saved"]["version"] if payload["saved"] else None
    for i in range(autosaves):
        findings += [" Normal heart size.", " No effusion.", " Lungs clear.", " Stable."][i % 4]
        body = json.dumps({"findings": findings, "impression": impression, "finding_flags": {},
                           "base_version": base, "tab_id": tab}).encode()
        base = json.loads(req("autosave", "PUT", payload["urls"]["autosave"], body, True))["version"]
    if not opening_only:
        req("event", "POST", payload["urls"]["events"], json.dumps({"kind": "heartbeat", "tab_id": tab}).encode(),
            True, (201,))
    body = json.dumps({"findings": findings, "impression": impression, "finding_flags": {}, "base_version": base,
                       "tab_id": tab}).encode()
    req("submit", "POST", payload["urls"]["submit"], body, True, (201,))


def _pg_sampler(database: str, stop: threading.Event, out: dict) -> None:
    """What the database's other backends wait on, every 5 ms (wait_event_type:wait_event, or "CPU" when active
    and waiting on nothing)."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        me = conn.info.backend_pid
        while not stop.is_set():
            for state, kind, event in conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> %s AND backend_type = 'client backend'", [database, me]):
                if state == "idle":
                    key = "idle"
                elif state == "idle in transaction":
                    key = "idle in transaction (the web process's turn)"
                else:
                    key = f"{kind}:{event}" if kind else "active on CPU"
                out[key] = out.get(key, 0) + 1
            out["samples"] = out.get("samples", 0) + 1
            time.sleep(0.005)


AREAS = [  # (area, a pattern of the file name): the first that matches names the function's own time
    ("templates", r"django/template/|django/templatetags/|/templatetags/|jinja2/"),
    ("ORM (query building, model instances)", r"django/db/models/"),
    ("database backend (Django)", r"django/db/backends/|django/db/transaction|django/db/utils"),
    ("psycopg (adaptation, protocol)", r"/psycopg/|psycopg_binary|psycopg_c"),
    ("sessions, auth, CSRF, messages", r"django/contrib/(sessions|auth|messages)/|django/middleware/csrf"),
    ("cache client (Redis)", r"django/core/cache/|/redis/"),
    ("DRF (views, serializers, parsers)", r"rest_framework/"),
    ("request handling, middleware, URLs", r"django/(core/handlers|middleware|urls|http)/|whitenoise/"),
    ("other Django", r"django/"),
    ("json, hmac, hashlib", r"json/|hmac\.py|<built-in method _hashlib|<built-in method _json"),
]


def _areas(stats, root: str) -> dict[str, float]:
    """A profile's own time by area (ms): the project's code, the parts of Django and the libraries."""
    out: dict[str, float] = {}
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        where = f"{filename}:{name}"
        if where.startswith(root + "/") and not re.search(r"/bench/|/\.venv/|/site-packages/", where):
            area = "project code (" + where[len(root) + 1:].split("/", 1)[0] + ")"
        else:
            area = next((label for label, pattern in AREAS if re.search(pattern, where)), "other (builtins, stdlib)")
        out[area] = out.get(area, 0.0) + own * 1000
    return out


def worker(args) -> int:
    """Run in the revision's tree (cwd and sys.path[0]): measure the assigned reads, write JSON to --out."""
    sys.path[0] = str(Path(args.root).resolve())
    import django

    django.setup()
    import logging

    logging.getLogger("trial.audit.anchor").setLevel(logging.WARNING)
    logging.getLogger("celery").setLevel(logging.WARNING)
    from django.core.wsgi import get_wsgi_application
    from django.db import connection, connections

    application = get_wsgi_application()
    import gc

    gc.callbacks.append(_gc_callback)
    job = json.loads(Path(args.job).read_text())
    code, autosaves = job["code"], job["autosaves"]
    meter = Meter(thread_cpu=job["threads"] > 1)
    from trial import audit

    meter.time_function(audit, "_locked_head", "audit head lock (select for update)")
    meter.time_function(audit, "_append", "audit anchor append (write + fsync)")
    meter.time_function(audit, "state_hash", "audit state hash (query + HMAC)")
    out: dict = {"label": job["label"], "settings": os.environ.get("DJANGO_SETTINGS_MODULE", "")}
    if job["threads"] <= 1:
        client_of = {}
        for session, read_id in job["warmup"]:  # not measured: imports, first queries, prepared statements
            client_of.setdefault(session, Wsgi(application, session))
            _worker_cycle(Meter(), client_of[session], code, read_id, autosaves, f"prof-{session[:6]}")
        meter.local.backend_pid = _backend_pid(connection)  # the warm-up's connection, kept (CONN_MAX_AGE)
        profiles: dict | None = {} if job.get("profile") else None
        if job.get("gc_freeze"):
            gc.freeze()  # what a server would do once its application is loaded: see VARIANTS
        out["heap"] = {"objects": len(gc.get_objects()), "frozen": gc.get_freeze_count(),
                       "modules": len(sys.modules)}
        for session, read_id in job["cycles"]:
            client = client_of.setdefault(session, Wsgi(application, session))
            if profiles is not None:
                # a full collection (~100 ms) would land on whatever function runs then: none while profiling
                gc.collect()
                gc.disable()
            _worker_cycle(meter, client, code, read_id, autosaves, f"prof-{session[:6]}", profiles)
            if profiles is not None:
                gc.enable()
        t0 = time.perf_counter()
        gc.collect()
        out["heap"]["full_collection_ms"] = (time.perf_counter() - t0) * 1000
        if profiles:
            import pstats

            out["profiles"] = {}
            root = str(Path(args.root).resolve())
            for step, profile in profiles.items():
                texts = {}
                project = re.escape(root) + r"/(?!bench/|\.venv/)"  # the cumulative view: the project's functions
                for order, restriction in (("tottime", ()), ("cumulative", (project,))):
                    buffer = io.StringIO()
                    stats = pstats.Stats(profile, stream=buffer)
                    stats.sort_stats(order).print_stats(*restriction, 40)
                    texts[order] = buffer.getvalue()
                buffer = io.StringIO()
                pstats.Stats(profile, stream=buffer).sort_stats("tottime").print_callers(8)
                texts["callers"] = buffer.getvalue()
                texts["areas"] = _areas(pstats.Stats(profile), root)
                texts["n"] = len(meter.rows.get(step, []))
                out["profiles"][step] = texts
    else:
        stop, waits = threading.Event(), {}
        sampler = threading.Thread(target=_pg_sampler, args=(job["database"], stop, waits), daemon=True)
        errors: list[str] = []
        barrier = threading.Barrier(job["threads"])

        def work(i):
            try:
                mine = job["per_thread"][i]
                client = Wsgi(application, mine[0][0])
                # the first read of each thread warms its connection up (and this process's imports): not measured
                _worker_cycle(Meter(thread_cpu=True), client, code, mine[0][1], autosaves, f"conc-{i}",
                              opening_only=True)
                barrier.wait(timeout=60)
                for _session, read_id in mine[1:]:
                    _worker_cycle(meter, client, code, read_id, autosaves, f"conc-{i}", opening_only=True)
            except Exception as exc:  # noqa: BLE001 - reported in the JSON
                errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(job["threads"])]
        sampler.start()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["seconds"] = time.perf_counter() - t0
        stop.set()
        sampler.join()
        out["pg_waits"], out["errors"] = waits, errors
    out["steps"], out["timers"], out["sql"] = meter.rows, meter.timers, meter.sql
    connection.close()
    Path(args.out).write_text(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------------------------ the run


def _fsync_ms(folder: Path, n: int = 50) -> list[float]:
    """The latency of a one-line append and fsync in `folder` (what trial.audit's anchor does after each commit)."""
    path = folder / "fsync-probe"
    out = []
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b'{"count":1,"hash":"' + b"0" * 64 + b'"}\n')
            os.fsync(fd)
            out.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return out


class Reads:
    """Each reader's reads in worklist order on one database, handed out in order (a read is used once)."""

    def __init__(self, world: dict):
        self.sessions = world["sessions"]
        self.todo = {name: list(world["reads"][name]) for name in world["readers"] if name in self.sessions}
        self.names = sorted(self.todo)
        self.turn = 0

    def take(self, n: int, reader: str | None = None) -> list[tuple[str, int]]:
        out = []
        for _ in range(n):
            name = reader or self.names[self.turn % len(self.names)]
            self.turn += 0 if reader else 1
            if not self.todo[name]:
                raise RuntimeError("not enough reads left: raise --cases")
            out.append((self.sessions[name], self.todo[name].pop(0)))
        return out


def _settings_module(tmp: Path, label: str, prefix: str, extra: str = "") -> str:
    folder = tmp / "settings"
    folder.mkdir(exist_ok=True)
    module = "profile_settings_" + re.sub(r"\W", "_", label)
    (folder / f"{module}.py").write_text(
        f'"""{label}: the revision\'s settings with this run\'s cache prefix (bench/reading_profile.py)."""\n'
        "from config.settings import *  # noqa: F403\n\n"
        f"CACHES['default']['KEY_PREFIX'] = {prefix!r}  # noqa: F405\n" + extra)
    return module


def _env(base: dict, *, database: str, tmp: Path, label: str, world: str, settings_module: str,
         conn_max_age: bool) -> dict:
    env = dict(base)
    url = f"postgres://postgres@127.0.0.1:5432/{database}"
    env.update({"DATABASE_URL": url + ("?conn_max_age=60" if conn_max_age else ""),
                "CXR_VAR_DIR": str(tmp / f"var-{world}"), "CXR_MEDIA_ROOT": str(tmp / f"media-{world}"),
                "DJANGO_SETTINGS_MODULE": settings_module, "PYTHONPATH": str(tmp / "settings")})
    return env


def _summary(rows: list[list[float]]) -> dict:
    import math

    measure = _measure_module()
    cpu = [r[0] * 1000 for r in rows]
    pg = [r[1] * 1000 for r in rows if not math.isnan(r[1])]
    wall = [r[2] * 1000 for r in rows]
    return {"n": len(rows), "cpu": sum(cpu) / len(cpu), "pg": sum(pg) / len(pg) if pg else float("nan"),
            "wall": sum(wall) / len(wall), "wall_p50": measure.pct(wall, .5), "wall_p95": measure.pct(wall, .95),
            "db": sum(r[3] for r in rows) * 1000 / len(rows), "queries": sum(r[4] for r in rows) / len(rows),
            "cpu_p50": measure.pct(cpu, .5), "gc": sum(r[5] for r in rows) * 1000 / len(rows),
            "full_gc": sum(r[6] for r in rows)}


def _merge(results: list[dict]) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {}
    for result in results:
        for step, rows in result["steps"].items():
            out.setdefault(step, []).extend(rows)
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}" if b and b == b and a == a else "    –"


def _print_steps(labels: list[str], merged: dict[str, dict[str, list]], base: str) -> None:
    print("\nPer request, mean over the rounds (ms): web CPU (the WSGI call in the worker process; its median; of "
          "it the garbage collector's time, and the number of full collections in all), PostgreSQL CPU (its "
          "backend), the two added; wall (mean, p95); inside execute (round trips and PostgreSQL's work); queries. "
          f"× {base}: the ratio of each to the baseline's.")
    head = f"{'step':<13} {'server':<18} {'n':>4} {'web CPU':>8} {'p50':>5} {'GC':>5} {'full':>4} {'PG CPU':>7} " \
           f"{'CPU':>6} {'×':>5} {'wall':>6} {'p95':>6} {'execute':>8} {'queries':>7} {'×':>5}"
    print(head)
    print("-" * len(head))
    per_pace = {label: 0.0 for label in labels}
    # requests per read at a radiologist's pace (bench/_reading_pace.py: a 120 s read, an autosave every 5.5 s, a
    # heartbeat every 15 s): the weights of the steps in bench/reading.py's CPU per request
    weights = {"worklist": 1, "read page": 1, "radiograph": 1, "values": 1, "event opened": 1, "event": 9,
               "autosave": 22, "submit": 1}
    for step in STEPS:
        if not any(step in merged[label] for label in labels):
            continue
        base_row = _summary(merged[base][step]) if step in merged[base] else None
        for label in labels:
            if step not in merged[label]:
                continue
            s = _summary(merged[label][step])
            total = s["cpu"] + (s["pg"] if s["pg"] == s["pg"] else 0)
            per_pace[label] += weights.get(step, 0) * total
            b_total = base_row["cpu"] + base_row["pg"] if base_row else float("nan")
            print(f"{step:<13} {label:<18} {s['n']:>4} {s['cpu']:8.2f} {s['cpu_p50']:5.2f} {s['gc']:5.2f} "
                  f"{s['full_gc']:>4} {s['pg']:7.2f} {total:6.2f} "
                  f"{_ratio(total, b_total) if label != base else '':>5} {s['wall']:6.2f} {s['wall_p95']:6.2f} "
                  f"{s['db']:8.2f} {s['queries']:7.1f} "
                  f"{_ratio(s['queries'], base_row['queries']) if base_row and label != base else '':>5}")
    n = sum(weights.values())
    print(f"\nCPU per request at a radiologist's pace (the steps weighted as in one 120 s read: {n} requests), "
          "web + PostgreSQL:")
    for label in labels:
        print(f"  {label:<18} {per_pace[label] / n:6.2f} ms"
              + (f"  ({per_pace[label] / per_pace[base]:.2f} × {base})" if label != base else ""))


def _print_timers(labels: list[str], results: dict[str, list[dict]]) -> None:
    print("\nAudit functions, wrapped in the worker (count, mean ms, total ms):")
    for label in labels:
        timers: dict[str, list[float]] = {}
        for r in results[label]:
            for name, values in r["timers"].items():
                timers.setdefault(name, []).extend(values)
        for name, values in sorted(timers.items()):
            print(f"  {label:<18} {name:<40} {len(values):>5} {sum(values) * 1000 / len(values):7.2f} "
                  f"{sum(values) * 1000:8.1f}")


def _top(text: str, n: int) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), None)
    return lines[start:start + n + 1] if start is not None else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="d6d7b83", help="the revision to compare with (default d6d7b83)")
    parser.add_argument("--baseline-tree", help="an existing worktree of --baseline (default: one made and removed)")
    parser.add_argument("--variants", default="", help=f"this checkout with a setting changed: {','.join(VARIANTS)}")
    parser.add_argument("--cycles", type=int, default=25, help="reads per round per server (default 25)")
    parser.add_argument("--autosaves", type=int, default=4, help="autosaves per read (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of the servers (default 2)")
    parser.add_argument("--warmup", type=int, default=3, help="reads per worker before measuring (default 3)")
    parser.add_argument("--profile", type=int, default=8, help="reads profiled with cProfile per revision (0: none)")
    parser.add_argument("--top", type=int, default=12, help="profile lines printed per step")
    parser.add_argument("--concurrency", default="3,8", help="threads for the audit-lock runs ('' for none)")
    parser.add_argument("--concurrent-reads", type=int, default=4, help="reads per thread in those runs")
    parser.add_argument("--readers", type=int, default=24)
    parser.add_argument("--cases", type=int, default=480)
    parser.add_argument("--db", default="cxr_h_perf", help="database name prefix")
    parser.add_argument("--cache", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--save", help="folder for the full profiles (text) and the raw JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    sys.path.insert(0, str(ROOT))
    from bench import _reading_world as world_mod

    tmp = Path(tempfile.mkdtemp(prefix="cxr-reading-profile-"))
    base_env = dict(os.environ)
    base_env.update({"CXR_DEVELOPMENT": "1", "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_DEBUG": "0",
                     "CELERY_TASK_ALWAYS_EAGER": "1", "CACHE_URL": args.cache,
                     "CELERY_BROKER_URL": args.cache})
    base_env.pop("CXR_PRODUCTION", None)
    rev = args.baseline
    tree, made_tree = (Path(args.baseline_tree), False) if args.baseline_tree else (tmp / f"tree-{rev}", True)
    worlds = {"this": (ROOT, f"{args.db}_this"), rev: (tree, f"{args.db}_{re.sub(r'[^a-z0-9_]', '_', rev.lower())}")}
    prefixes = {w: f"profile-{w}-{tmp.name}" for w in worlds}
    created: list[str] = []
    saved = Path(args.save) if args.save else None
    if saved:
        saved.mkdir(parents=True, exist_ok=True)
    try:
        if made_tree:
            subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), rev], cwd=ROOT, check=True,
                           capture_output=True)
        data = {}
        modules = {w: _settings_module(tmp, w, prefixes[w]) for w in worlds}
        for w, (root, database) in worlds.items():
            world_mod.create_database(host="127.0.0.1", port=5432, user="postgres", name=database)
            created.append(database)
            t0 = time.perf_counter()
            env = _env(base_env, database=database, tmp=tmp, label=w, world=w, settings_module=modules[w],
                       conn_max_age=False)
            out = tmp / f"world-{w}.json"
            subprocess.run([sys.executable, str(ROOT / "bench" / "_reading_world.py"), "--root", str(root), "--out",
                            str(out), "--readers", str(args.readers), "--cases", str(args.cases),
                            "--distinct-images", "12", "--sessions", str(args.readers)],
                           cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
            data[w] = json.loads(out.read_text())
            print(f"world of {w}: {len(data[w]['readers'])} readers, "
                  f"{sum(len(v) for v in data[w]['reads'].values())} reads ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        mine = sorted(len(v) for v in data["this"]["reads"].values())
        theirs = sorted(len(v) for v in data[rev]["reads"].values())
        if mine != theirs or data["this"]["readers"] != data[rev]["readers"]:
            print("The two worlds differ: no comparison.", file=sys.stderr)
            return 1
        reads = {w: Reads(data[w]) for w in worlds}

        # servers: (label, world, settings module, extra env)
        servers = [("this", "this", modules["this"]), (rev, rev, modules[rev])]
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            servers.append((f"this:{variant}", "this",
                            _settings_module(tmp, f"this_{variant}", prefixes["this"], VARIANTS[variant])))

        def run_worker(label: str, w: str, module: str, job: dict) -> dict:
            root, database = worlds[w]
            job = dict(job, label=label, code=data[w]["code"], autosaves=args.autosaves, database=database)
            job_path, out_path = tmp / f"job-{label}.json", tmp / f"out-{label}.json"
            job_path.write_text(json.dumps(job))
            env = _env(base_env, database=database, tmp=tmp, label=label, world=w, settings_module=module,
                       conn_max_age=True)
            subprocess.run([sys.executable, str(ROOT / "bench" / "reading_profile.py"), "--worker", "--root",
                            str(root), "--job", str(job_path), "--out", str(out_path)], cwd=root, env=env,
                           check=True)
            return json.loads(out_path.read_text())

        results: dict[str, list[dict]] = {label: [] for label, _, _ in servers}
        for r in range(args.rounds):
            for label, w, module in (servers if r % 2 == 0 else list(reversed(servers))):
                t0 = time.perf_counter()
                job = {"threads": 1, "warmup": reads[w].take(args.warmup), "cycles": reads[w].take(args.cycles),
                       "gc_freeze": label.endswith(":gcfreeze")}
                results[label].append(run_worker(label, w, module, job))
                print(f"  round {r + 1}: {label} ({time.perf_counter() - t0:.0f} s)", flush=True)
        labels = [label for label, _, _ in servers]
        merged = {label: _merge(results[label]) for label in labels}
        _print_steps(labels, merged, rev)
        _print_timers(labels, results)
        print("\nThe worker process's heap after its warm-up (objects the garbage collector tracks, modules), and a "
              "full collection's time at the end:")
        for label in labels:
            heap = results[label][-1]["heap"]
            print(f"  {label:<18} {heap['objects']:>9,} objects ({heap['frozen']:,} frozen), {heap['modules']:>5} "
                  f"modules; gc.collect() {heap['full_collection_ms']:.1f} ms")

        if args.profile:
            print(f"\nWhere the web process's time goes (cProfile over {args.profile} reads; top {args.top} by own "
                  "time, then by cumulative time, of the steps whose CPU is furthest above the baseline's):")
            profiled = {}
            for label, w, module in servers[:2]:
                job = {"threads": 1, "warmup": reads[w].take(1), "cycles": reads[w].take(args.profile),
                       "profile": True}
                profiled[label] = run_worker(f"{label}-profile", w, module, job)["profiles"]
            ranked = sorted((s for s in STEPS if s in merged["this"] and s in merged[rev]),
                            key=lambda s: -(_summary(merged["this"][s])["cpu"] / _summary(merged[rev][s])["cpu"]))
            print("\nThe web process's CPU per request by area (cProfile's own time, ms per request; the profiler adds "
                  "its own overhead to both):")
            for step in ranked:
                mine, theirs = profiled["this"].get(step), profiled[rev].get(step)
                if not mine or not theirs:
                    continue
                areas = {}
                for label, prof in (("this", mine), (rev, theirs)):
                    for area, ms in prof["areas"].items():
                        areas.setdefault(area, {})[label] = ms / max(1, prof["n"])
                total = {label: sum(a.get(label, 0) for a in areas.values()) for label in ("this", rev)}
                print(f"  {step}: {total['this']:.2f} ms ({total[rev]:.2f} in {rev})")
                for area, ms in sorted(areas.items(), key=lambda kv: -kv[1].get("this", 0)):
                    a, b = ms.get("this", 0), ms.get(rev, 0)
                    if max(a, b) >= 0.05:
                        print(f"    {area:<44} {a:6.2f} {b:6.2f}  {a - b:+6.2f}")
            for step in ranked:
                for label in ("this", rev):
                    if saved:
                        for order in ("tottime", "cumulative", "callers"):
                            text = profiled[label].get(step, {}).get(order, "")
                            (saved / f"{label}-{step.replace(' ', '_')}-{order}.txt").write_text(text)
                    if step in ranked[:3]:
                        for order in ("tottime", "cumulative"):
                            print(f"\n  {step} — {label} — by {order}:")
                            for line in _top(profiled[label].get(step, {}).get(order, ""), args.top):
                                print("   " + line[:170])

        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
        if levels:
            probe = _fsync_ms(tmp)
            measure = _measure_module()
            print(f"\nfsync of a one-line append in {tmp} (as the audit anchor after each commit): p50 "
                  f"{measure.pct(probe, .5):.2f} ms, p95 {measure.pct(probe, .95):.2f} ms, max {max(probe):.2f} ms")
            print("\nConcurrent openings and submits (each thread a reader of its own: reading page, 'opened' event, "
                  f"{args.autosaves} autosaves, submit; {args.concurrent_reads} reads each): wall ms p50/p95, the "
                  "audit head lock's wait, and PostgreSQL's backends' waits (share of samples)")
            for n in levels:
                for label, w, module in servers[:2]:
                    names = reads[w].names[:n]
                    if len(names) < n:
                        raise RuntimeError("more threads than readers: raise --readers")
                    job = {"threads": n, "per_thread": [reads[w].take(args.concurrent_reads + 1, reader=name)
                                                        for name in names]}
                    result = run_worker(f"{label}-conc{n}", w, module, job)
                    if result["errors"]:
                        print(f"  {label}: {n} threads: errors: {result['errors'][:3]}")
                    cells = []
                    for step in ("read page", "event opened", "autosave", "submit"):
                        wall = [row[2] * 1000 for row in result["steps"].get(step, [])]
                        cells.append(f"{step} {measure.pct(wall, .5):5.1f}/{measure.pct(wall, .95):5.1f}")
                    lock = result["timers"].get("audit head lock (select for update)", [])
                    anchor = result["timers"].get("audit anchor append (write + fsync)", [])
                    print(f"  {label:<9} {n:>2} threads, {result['seconds']:5.1f} s: " + ", ".join(cells))
                    print(f"  {'':<9} head lock: {len(lock)} × mean {sum(lock) * 1000 / max(1, len(lock)):.2f} ms, "
                          f"p95 {measure.pct([x * 1000 for x in lock], .95):.2f} ms, max "
                          f"{max(lock, default=0) * 1000:.1f} ms; anchor append: {len(anchor)} × mean "
                          f"{sum(anchor) * 1000 / max(1, len(anchor)):.2f} ms")
                    waits = dict(result["pg_waits"])
                    samples = waits.pop("samples", 1)
                    busy = sorted(((k, v) for k, v in waits.items() if k != "idle"), key=lambda kv: -kv[1])
                    print(f"  {'':<9} backends (per sample): "
                          + ", ".join(f"{k} {v / samples:.2f}" for k, v in busy[:6]))
        if saved:
            (saved / "results.json").write_text(json.dumps(results))
            with (saved / "queries.txt").open("w") as f:
                for label in labels:
                    for step, statements in results[label][-1]["sql"].items():
                        f.write(f"\n== {label}: {step} ({len(statements)} queries)\n")
                        f.writelines(f"  {text[:400]}\n" for text in statements)
        return 0
    finally:
        for database in created:
            world_mod.drop_database(host="127.0.0.1", port=5432, user="postgres", name=database)
        try:
            import redis

            client = redis.Redis.from_url(args.cache)
            for prefix in prefixes.values():
                keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                if keys:
                    client.delete(*keys)
        except Exception as exc:  # noqa: BLE001 - best effort
            print(f"(could not delete this run's cache keys: {exc})")
        if made_tree:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
