"""From an image's arrival to its assisted read on the reader's worklist, with the demo model drafting on this CPU
in a real Celery worker: p50/p95 of arrival → AI draft ready → read available on the assisted reader's worklist.

Run by hand from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth; Redis on
127.0.0.1:6379, database 12 as the Celery broker, its queues emptied at the end):

    python bench/arrival_to_worklist.py                          # 20 arrivals, one every ~4 s, untrained tiny model
    python bench/arrival_to_worklist.py --arrivals 8 --interval 2     # a short run
    python bench/arrival_to_worklist.py --model trained          # the trained demo model (var/models/demo-janus-v2,
                                                                 # made by `make demo`), 160-token guided drafts
    python bench/arrival_to_worklist.py --model /path/to/checkpoint --max-new-tokens 64

The database (`cxr_bench_worklist`, DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxr_bench_worklist) is created,
migrated and dropped by the script (--keep leaves it). The script starts the worker itself, as scripts/run-demo.sh
does: `celery -A config worker -Q default,ai --concurrency 1` on the same database, media folder and broker (its
log is printed if it fails), and stops it at the end.

The world: a prospective paired-parallel trial with the demo sites (3) and one reader per arm per site, on duty;
the model registered and assigned as demo/management/commands/setup_demo.py does (the untrained tiny model of
demo.model.build_tiny_model by default, with its 24-token limit; --model trained: demo.model.GUIDED with 160
tokens). Images (256-px phantoms, made before the timed part) arrive through trial.services.receive_image (source
"simulator") at a random site, one every --interval seconds on average (exponential gaps, kept within half and twice
the mean: a clinical stream, as demo/arrivals.py sends it). The first arrival warms the worker up (the model is
loaded at its first task) and is reported apart.

Legs, per arrival: arrival (receive_image returned: the case is enrolled and routed, the draft requested) → draft
ready (AIDraft.finished_at, stamped as the worker stores it) → on the worklist (the first look at the assisted
reader's worklist, reading.selectors.worklist with the reader's Access, that shows the read available); and, within
arrival → draft ready: waiting in the queue (→ AIDraft.started_at, the worker's claim) and the model itself
(AIDraft.seconds; the draft's task is sent as the case commits, before the arrival is routed, so the worker may
claim it before receive_image returns: that leg is then negative, and the model's time may exceed arrival → draft
ready). Side by side, the baseline: the model's own time, and the ratio of arrival → worklist to it
(what the platform adds around the model). The worklists are looked at every --poll seconds (the resolution of the
last leg) by a thread of this process, which also checks that no assisted read is available before its draft is
ready and that the standard arm's read is on its reader's worklist as soon as receive_image returns.

What it does not measure: the web request that carries an image in (the PACS bridge calls receive_image in its
process) and a reader's browser (the worklist page polls the worklist API); the worker, PostgreSQL and this process
share the machine's cores, as in the demo.

Measured 2026-12-06 (defaults: 20 arrivals ~4 s apart, the untrained tiny model, 24 tokens; a shared development
machine of two Xeon cores at 2.8 GHz, other people's test runs busy on it meanwhile):
    receive_image p50 0.15 s, p95 0.25 s; arrival → draft ready p50 0.78 s, p95 1.46 s (the model 0.82 / 1.44 s:
    the worker claims the draft before receive_image returns); draft ready → on the worklist p50 0.05 s, p95 0.09 s
    (the 50-ms looks); arrival → on the assisted reader's worklist p50 0.86 s, p95 1.50 s, 1.05× the model's own
    time. The first draft (the model loading in the worker) took 8.9 s. No assisted read available before its draft.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import close_django_connections, pct, purge_broker  # noqa: E402

HOST, PORT, PG_USER = "127.0.0.1", 5432, "postgres"
SITES = (("site-a", "Hospital A"), ("site-b", "Hospital B"), ("site-c", "Hospital C"))
TRAINED = ROOT / "var" / "models" / "demo-janus-v2"


@dataclass
class Arrival:
    index: int
    site: str
    case_id: int | None = None
    start: float = 0.0            # receive_image called (wall)
    returned: float = 0.0         # receive_image returned
    error: str = ""
    draft_seen: float | None = None      # the poller saw the draft ready
    draft_created: float | None = None
    draft_started: float | None = None
    draft_finished: float | None = None
    model_seconds: float | None = None
    tokens: int | None = None
    draft_failed: str = ""
    listed: float | None = None          # the assisted read first seen available on its reader's worklist
    standard_listed: float | None = None
    early: bool = False                  # the assisted read was available before its draft was ready
    standard_missing_at_return: bool = False


@dataclass
class World:
    trial_id: int
    model_name: str
    assisted: dict = field(default_factory=dict)   # site code → Access of the assisted reader
    standard: dict = field(default_factory=dict)   # site code → Access of the standard reader
    sites: dict = field(default_factory=dict)      # site code → Site


# ------------------------------------------------------------------------------------------------ the world


def build_world(model_arg: str, max_new_tokens: int | None, tmp: Path) -> World:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Permission

    from ai import services as ai_services
    from demo import model as demo_model
    from trial import services
    from trial.access import access_to
    from trial.models import Membership, Role

    User = get_user_model()
    encoded = make_password("bench-worklist-password-1")
    investigator = User.objects.create(username="bench-investigator", email="inv@example.org", password=encoded)
    investigator.user_permissions.add(Permission.objects.get(codename="add_trial"))
    investigator = User.objects.get(pk=investigator.pk)
    admin = User.objects.create(username="bench-admin", email="admin@example.org", password=encoded, is_staff=True,
                                is_superuser=True)

    if model_arg == "untrained":
        path = tmp / "models" / "demo-janus-untrained"
        t = time.perf_counter()
        demo_model.build_tiny_model(path)
        print(f"Untrained tiny demo model built in {time.perf_counter() - t:.1f} s ({path}).")
        generation = {"max_new_tokens": max_new_tokens or 24}  # as setup_demo: an untrained model rambles
    else:
        path = TRAINED if model_arg == "trained" else Path(model_arg)
        if not (path / "config.json").exists():
            raise SystemExit(f"No model at {path}: train the demo model first (`make demo`, or `python -m demo.model "
                             "train`), or use --model untrained.")
        generation = {**demo_model.GUIDED.to_dict(), "max_new_tokens": max_new_tokens or 160}
    t = time.perf_counter()
    model = ai_services.register_model(by=admin, name="bench-demo-model", backend="janus", path=str(path),
                                       is_demo=True, generation=generation,
                                       description="Demo model, benchmark. Never for clinical use.")
    print(f"Model registered (loaded once and checked by a draft of a blank image) in {time.perf_counter() - t:.1f} s"
          f"; generation {generation}.")

    trial = services.create_trial(by=investigator, code="bench-worklist", title="Arrival to worklist benchmark",
                                  mode="prospective", block_multiples=[1],
                                  fixed_block_reason="one reader per arm per site: a block of 2")
    sites = [services.add_site(trial=trial, by=investigator, code=c, name=n) for c, n in SITES]
    readers = User.objects.bulk_create([User(username=f"bench-reader{i}", email=f"reader{i}@example.org",
                                             password=encoded) for i in range(2 * len(sites))])
    for i, user in enumerate(readers):
        services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=sites[i // 2])
    ai_services.assign_model(trial=trial, by=investigator, model_version=model)
    trial = services.transition_trial(trial=trial, by=investigator, to="open")
    world = World(trial.pk, model.name, sites={s.code: s for s in sites})
    for m in Membership.objects.filter(trial=trial, role=Role.READER).select_related("site", "allocation", "user"):
        assert m.on_duty
        access = access_to(user=m.user, trial=trial, roles=[Role.READER])
        (world.assisted if m.allocation.arm == "assisted" else world.standard)[m.site.code] = access
    assert len(world.assisted) == len(world.standard) == len(sites)
    return world


def films(n: int, *, size: int, seed: int) -> list[tuple[bytes, str]]:
    """`n` phantoms (each another patient and SOP Instance UID), with their clinical history."""
    from demo.phantoms import make_phantom, random_findings

    rng = __import__("numpy").random.default_rng(seed)
    out = []
    for i in range(n):
        phantom = make_phantom(findings=random_findings(rng), seed=seed * 1000 + i, size=size)
        out.append((phantom.dicom, phantom.clinical_history))
    return out


# ------------------------------------------------------------------------------------------------ the worker


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,ai", "--concurrency", "1",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "--hostname", f"bench-worklist-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        if " ready." in log.read_text(errors="replace"):
            return proc
        time.sleep(0.2)
    stop_worker(proc)
    raise RuntimeError(f"the worker was not ready in 180 s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_worker(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------------ the poller


class Poller(threading.Thread):
    """Looks, every `every` seconds, at the drafts of the cases still pending and at the worklists of their assisted
    readers (one query each); stamps when the draft is first ready and when the assisted read is first available."""

    def __init__(self, world: World, every: float):
        super().__init__(daemon=True)
        self.world, self.every = world, every
        self.pending: dict[int, Arrival] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.looks = 0
        self.cpu = 0.0
        self.error: str = ""

    def add(self, arrival: Arrival) -> None:
        with self.lock:
            self.pending[arrival.case_id] = arrival

    def run(self) -> None:
        from django.db import connection

        from ai.models import AIDraft, DraftStatus
        from reading.selectors import worklist
        from trial.models import Case

        try:
            while not self.stop.is_set():
                t0 = time.thread_time()
                with self.lock:
                    pending = dict(self.pending)
                if pending:
                    now = time.time()
                    for case_id, status, started, finished, seconds, tokens, error, created in (
                            AIDraft.objects.filter(case_id__in=list(pending)).values_list(
                                "case_id", "status", "started_at", "finished_at", "seconds", "generated_tokens",
                                "error", "created_at")):
                        a = pending[case_id]
                        a.draft_created = created.timestamp()
                        if status == DraftStatus.READY and a.draft_seen is None:
                            a.draft_seen, a.draft_started, a.draft_finished = now, started.timestamp(), \
                                finished.timestamp()
                            a.model_seconds, a.tokens = seconds, tokens
                        elif status == DraftStatus.FAILED:
                            a.draft_failed = error or "failed"
                    codes = dict(Case.objects.filter(pk__in=list(pending)).values_list("pk", "code"))
                    for site in {a.site for a in pending.values()}:
                        rows = {r.case_code: r for r in worklist(access=self.world.assisted[site]).rows}
                        seen = time.time()
                        for case_id, a in pending.items():
                            row = rows.get(codes[case_id]) if a.site == site else None
                            if row is not None and row.available and a.listed is None:
                                a.listed = seen
                                if a.draft_seen is None:
                                    # ready between the two looks, or available without a ready draft: ask again
                                    a.early = not AIDraft.objects.filter(case_id=case_id,
                                                                         status=DraftStatus.READY).exists()
                    self.looks += 1
                    with self.lock:
                        for case_id, a in pending.items():
                            if a.listed is not None and (a.draft_seen is not None or a.early) or a.draft_failed:
                                self.pending.pop(case_id, None)
                self.cpu += time.thread_time() - t0
                self.stop.wait(self.every)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            import traceback

            self.error = f"{exc}\n{traceback.format_exc()}"
        finally:
            connection.close()

    def idle(self) -> bool:
        with self.lock:
            return not self.pending


def fill_in_drafts(arrivals: list[Arrival]) -> None:
    """Drafts seen ready by the worklist look before the draft look: their stamps, from the database."""
    from ai.models import AIDraft, DraftStatus

    missing = {a.case_id: a for a in arrivals if a.case_id and a.draft_finished is None and not a.draft_failed}
    for case_id, started, finished, seconds, tokens in AIDraft.objects.filter(
            case_id__in=list(missing), status=DraftStatus.READY).values_list(
            "case_id", "started_at", "finished_at", "seconds", "generated_tokens"):
        a = missing[case_id]
        a.draft_started, a.draft_finished, a.model_seconds, a.tokens = (started.timestamp(), finished.timestamp(),
                                                                        seconds, tokens)


# ------------------------------------------------------------------------------------------------ main


def leg(name: str, values: list[float], unit: str = "s") -> str:
    return (f"  {name:<46} n={len(values):>3}  p50 {pct(values, .5):7.2f} {unit}  p95 {pct(values, .95):7.2f} {unit}"
            f"  max {max(values, default=float('nan')):7.2f} {unit}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrivals", type=int, default=20, help="arrivals measured (after one warm-up; default 20)")
    parser.add_argument("--interval", type=float, default=4.0, help="mean seconds between arrivals (default 4)")
    parser.add_argument("--even", action="store_true", help="evenly spaced arrivals instead of exponential gaps")
    parser.add_argument("--model", default="untrained",
                        help="untrained (default: demo.model.build_tiny_model), trained (var/models/demo-janus-v2), "
                             "or the path of a janus checkpoint folder")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="draft length limit (default: 24 untrained, 160 trained, as setup_demo)")
    parser.add_argument("--size", type=int, default=256, help="phantom side in pixels (default 256)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between looks at the worklists")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the last draft")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", default="cxr_bench_worklist")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep", action="store_true", help="keep the database, the media folder and the worker's log")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-worklist-"))
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://{PG_USER}@{HOST}:{PORT}/{args.db}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CXR_DEVELOPMENT": "1",
        "DJANGO_DEBUG": "0",
        "CXR_VAR_DIR": str(tmp / "var"),
        "CXR_MEDIA_ROOT": str(tmp / "media"),
        "CELERY_BROKER_URL": args.broker,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("CXR_PRODUCTION", None)
    os.environ.update(env)
    from bench import _reading_world as world_mod

    created, worker, poller = False, None, None
    log = tmp / "worker.log"
    try:
        world_mod.create_database(host=HOST, port=PORT, user=PG_USER, name=args.db)
        created = True
        import django

        django.setup()
        import logging

        logging.getLogger("trial.audit.anchor").setLevel(logging.WARNING)
        purge_broker(args.broker)  # nothing left from an earlier, interrupted run
        t = time.perf_counter()
        world_mod.migrate()
        print(f"Database {args.db} created and migrated ({time.perf_counter() - t:.0f} s); {os.cpu_count()} cores.")
        world = build_world(args.model, args.max_new_tokens, tmp)
        t = time.perf_counter()
        data = films(args.arrivals + 1, size=args.size, seed=args.seed)
        print(f"{len(data)} phantoms ({args.size} px) made in {time.perf_counter() - t:.1f} s.")
        from django.db import connections

        connections.close_all()
        t = time.perf_counter()
        worker = start_worker(env, log)
        print(f"Celery worker (queues default,ai, concurrency 1) ready in {time.perf_counter() - t:.1f} s; "
              f"log {log}.")

        from reading.models import Read
        from reading.selectors import worklist
        from trial import services
        from trial.models import Trial

        trial = Trial.objects.get(pk=world.trial_id)
        rng = random.Random(args.seed)
        poller = Poller(world, args.poll)
        poller.start()
        arrivals: list[Arrival] = []
        site_codes = list(world.sites)
        cpu0 = time.process_time()
        print(f"Arrivals: 1 warm-up + {args.arrivals}, one every ~{args.interval:g} s "
              f"({'even' if args.even else 'exponential gaps within ½–2× the mean'}); worklists looked at every "
              f"{args.poll * 1000:.0f} ms.")
        next_at = time.time()
        for i, (dicom, history) in enumerate(data):
            if i:
                gap = args.interval if args.even else min(2 * args.interval,
                                                          max(args.interval / 2, rng.expovariate(1 / args.interval)))
                next_at += gap
                time.sleep(max(0.0, next_at - time.time()))
            a = Arrival(i, site_codes[rng.randrange(len(site_codes))])
            a.start = time.time()
            try:
                case = services.receive_image(trial=trial, site=world.sites[a.site], data=dicom, source="simulator",
                                              filename=f"arrival-{i}.dcm", clinical_history=history)
                a.returned = time.time()
                a.case_id = case.pk
                reads = dict(Read.objects.filter(case=case).values_list("arm", "id"))
                standard_rows = {r.id: r for r in worklist(access=world.standard[a.site]).rows}
                row = standard_rows.get(reads.get("standard"))
                a.standard_missing_at_return = "assisted" not in reads or row is None or not row.available
                poller.add(a)
            except Exception as exc:  # noqa: BLE001 - shown
                a.returned, a.error = time.time(), f"{type(exc).__name__}: {exc}"
            arrivals.append(a)
            status = "warm-up (the model loads in the worker)" if i == 0 else f"{i}/{args.arrivals}"
            print(f"  arrival {status} at {a.site}: receive_image {(a.returned - a.start) * 1000:.0f} ms"
                  + (f" — {a.error}" if a.error else ""), flush=True)
            if i == 0:  # the measured stream starts on a warm worker, its queue empty
                deadline = time.time() + args.timeout
                while not poller.idle() and time.time() < deadline and not poller.error:
                    time.sleep(0.1)
                time.sleep(1.0)  # the viewer image of the warm-up case, if it was queued behind the draft
                next_at = time.time()
        deadline = time.time() + args.timeout
        while not poller.idle() and time.time() < deadline and not poller.error:
            time.sleep(0.2)
        poller.stop.set()
        poller.join(timeout=10)
        if poller.error:
            raise RuntimeError(f"the poller failed: {poller.error}")
        fill_in_drafts(arrivals)
        bench_cpu = time.process_time() - cpu0
        report(arrivals, poller, bench_cpu, args)
        return 0
    finally:
        if poller is not None:
            poller.stop.set()
        stop_worker(worker)
        close_django_connections()
        purge_broker(args.broker)
        if created and not args.keep:
            world_mod.drop_database(host=HOST, port=PORT, user=PG_USER, name=args.db)
        elif created:
            print(f"Database kept: psql -h {HOST} -U {PG_USER} {args.db}; files and the worker's log: {tmp}")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(arrivals: list[Arrival], poller: Poller, bench_cpu: float, args) -> None:
    warm, measured = arrivals[0], arrivals[1:]
    done = [a for a in measured if a.listed is not None and a.draft_finished is not None]
    failed = [a for a in measured if a.draft_failed]
    errors = [a for a in measured if a.error]
    unfinished = [a for a in measured if a not in done and a not in failed and a not in errors]
    print()
    if warm.listed is not None and warm.draft_finished is not None:
        print(f"Warm-up arrival: arrival → draft ready {warm.draft_finished - warm.returned:.2f} s (model "
              f"{warm.model_seconds:.2f} s), → on the worklist {warm.listed - warm.returned:.2f} s.")
    print(f"Measured: {len(measured)} arrivals; {len(done)} drafted and listed, {len(failed)} drafts failed, "
          f"{len(errors)} arrivals refused or failed, {len(unfinished)} unfinished after {args.timeout:.0f} s.")
    for a in failed[:3]:
        print(f"  draft failed (arrival {a.index}): {a.draft_failed[:200]}")
    for a in errors[:3]:
        print(f"  arrival {a.index}: {a.error[:200]}")
    print()
    print("Legs (seconds; wall clock; p50 / p95 / max):")
    print(leg("receive_image (enrol + route + request draft)", [a.returned - a.start for a in measured if a.returned
                                                                and not a.error]))
    print(leg("arrival → draft ready", [a.draft_finished - a.returned for a in done]))
    print(leg("   → the worker's claim (<0: before return)", [a.draft_started - a.returned for a in done]))
    print(leg("   of which: the model (AIDraft.seconds)", [a.model_seconds for a in done if a.model_seconds]))
    print(leg("   of which: claim, image read, store", [a.draft_finished - a.draft_started - (a.model_seconds or 0)
                                                        for a in done]))
    print(leg("draft ready → on the assisted worklist", [a.listed - a.draft_finished for a in done]))
    print(leg("arrival → on the assisted reader's worklist", [a.listed - a.returned for a in done]))
    model = [a.model_seconds for a in done if a.model_seconds]
    total = [a.listed - a.returned for a in done]
    if model and total:
        print()
        print("Side by side: the model alone vs arrival → on the worklist")
        print(f"  model p50 {pct(model, .5):.2f} s, p95 {pct(model, .95):.2f} s; arrival → worklist p50 "
              f"{pct(total, .5):.2f} s, p95 {pct(total, .95):.2f} s; ratio p50 {pct(total, .5) / pct(model, .5):.2f}, "
              f"p95 {pct(total, .95) / pct(model, .95):.2f}  (platform + queue overhead p50 "
              f"{pct(total, .5) - pct(model, .5):.2f} s)")
        tokens = [a.tokens for a in done if a.tokens]
        if tokens:
            print(f"  tokens per draft: {min(tokens)}–{max(tokens)} (median {pct(tokens, .5):.0f})")
    early = [a.index for a in measured if a.early]
    standard = [a.index for a in measured if a.standard_missing_at_return and not a.error]
    print()
    print(f"Checks: assisted reads available before their draft was ready: {len(early)}{f' {early}' if early else ''};"
          f" cases without both reads, or with the standard read not available to its reader, when receive_image "
          f"returned: {len(standard)}{f' {standard}' if standard else ''}  → "
          f"{'PASS' if not early and not standard else 'FAIL'}")
    print(f"Looks at the worklists: {poller.looks} ({poller.cpu:.1f} s of CPU in this process's poller; the whole "
          f"bench process {bench_cpu:.1f} s, arrivals included).")


if __name__ == "__main__":
    sys.exit(main())
