"""DICOM C-STORE into the platform against DCMTK's storescp, side by side: films per second, CPU per film, and the
round trip of each C-STORE (p50/p95) at 1, 4 and 8 concurrent associations.

Run by hand from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth; Redis on
127.0.0.1:6379, database 12 as the Celery broker the listener's viewer-image tasks go to — nothing consumes them
here, they are deleted at the end; DCMTK's storescp on the PATH):

    python bench/cstore.py                                  # 64 films per run, concurrency 1,4,8, 3 repeats
    python bench/cstore.py --films 20 --concurrency 1,4 --repeats 1            # a short run
    python bench/cstore.py --size 2048                      # full-size films (2048 × 1774, 7.3 MB each)
    python bench/cstore.py --database-url sqlite:////tmp/cstore.sqlite3        # SQLite instead (no PG CPU then)
    python bench/cstore.py --db-conn-max-age 60             # the listener keeps its PostgreSQL connections

The database (--database-url, default postgres://postgres@127.0.0.1:5432/cxr_bench_cstore) is created afresh,
migrated and dropped by the script (--keep leaves it, and the files).

The two servers, each started once and kept for the whole run, as a long-running service is:
  ours      `manage.py dicom_listener` (trial.listener: pynetdicom, a thread per association), a process of its own
            on the bench's database, media folder and broker, with the project's settings (DB_CONN_MAX_AGE as in
            production unless --db-conn-max-age is given). Its Success answer comes only after
            trial.services.receive_image has validated the film, de-identified it, rendered the display image and
            thumbnail, stored the files, committed the case, and routed it to a reader of each arm (the commit's
            case_enrolled receiver runs in the listener before the answer goes back).
  storescp  DCMTK's `storescp --fork` (a process per association, as our listener has a thread per association),
            writing every film to a folder (-od), no host name look-ups (-dhl), its largest PDU (-pdu 131072; ours
            accepts 256 KiB, settings.CXR_DICOM_MAX_PDU), Nagle's algorithm off (TCP_NODELAY=1 in its environment,
            DCMTK's switch: without it every answer waits ~40-90 ms for a delayed ACK, and the baseline would measure
            that timer). What any DICOM archive does at the least: take the bytes and write them down. The baseline.

The world (ours): a prospective paired-parallel trial, open, with three sites, one reader per arm at each (routing
at arrival has someone to route to), each site naming its own sender (trial.services.set_site_dicom_senders:
BENCH_PACS_A, _B, _C). Association k calls with the title of site k mod 3; storescp is called with the same titles.

The films: CR chest radiographs from tests/dicom_corpus.py (radiograph_dataset: 12-bit, the PHI a hospital's header
carries, eligible under the default rules), --size rows (default 1024 × 886, 1.8 MB; tests/live.py image(n) is
160 × 140), each film its own patient, study, accession and SOP Instance UID, made before the timed part and
written to files. Every film is sent once to each server (ours would answer a second copy as a duplicate, at once).

The sender (the same for both): pynetdicom's SCU in this process, a thread per association, each sending its share of
the run's films back to back (send_c_store with the file's path: the bytes go as written, not re-encoded). Chosen
over DCMTK's storescu because it times every C-STORE from request to answer, holds `c` associations open at once
from one process, and lets the CPU of both servers be read between "all associations established" and "every film
answered" (the associations wait at a barrier before and after, so neither association set-up, nor storescp's fork,
nor the release is in the figures). Its own CPU per film is printed: on a small machine it competes with the server
for the cores, and with storescp it is the larger part of the work (the baseline is then sender-bound: the ratios
understate how much faster storescp itself is).

Each repeat runs, for each concurrency, storescp and ours back to back (their order alternating by repeat), each on
--films new films. Figures per run: films/s (films ÷ from the first send to the last answer), the round trip of
each C-STORE, CPU per film of the server (ours: the listener process; PostgreSQL's backends of the bench database
apart, read from /proc by a 20-ms sampler — with DB_CONN_MAX_AGE 0 each film opens its own connection, and the CPU
of a backend in its last 20 ms before it closes may be missed; storescp: its process and its forked children), the
sender's CPU per film, and the cores other processes used meanwhile (the machine is shared: /proc/stat less this
bench's processes). Ratios: ours ÷ storescp, of each repeat's pair, median over the repeats. Checks, ours: every
answer Success, as many cases enrolled, with their stored DICOM, display image and thumbnail, and two reads each, as
films sent; the original patient ID absent from a stored file; storescp: every answer Success and as many files.

What it does not measure: a network (loopback only), TLS, the viewer's 16-bit values image (made later by a worker
from the task the commit sends; nothing consumes it here), Redis's CPU for that task, a PACS's retries.

Measured 2026-12-06 on a shared development machine of two Xeon cores (other people's test runs used 0.75 of a core
on average meanwhile: every figure is noisy; the ratios, from pairs run back to back, less so), PostgreSQL 15:
  Defaults (64 films per run of 1024 × 887 px, 1.8 MB; 3 repeats)      ours       storescp   ours ÷ storescp
    c=1  films/s 7.5 vs 72.7 (0.086); CPU per film 111 vs 4.8 ms (23×); round trip p50 131 vs 12 ms, p95 261 vs 21 ms
    c=4  films/s 8.7 vs 102 (0.085); CPU 124 vs 5.3 ms (23×); p50 406 vs 32 ms, p95 597 vs 62 ms
    c=8  films/s 9.5 vs 96 (0.088); CPU 127 vs 5.5 ms (22×); p50 745 vs 63 ms, p95 1370 vs 128 ms
    Ours: the listener ~90–105 ms of CPU per film, its PostgreSQL backends ~18–23 ms; CPU-bound at ~16 films/s on two
    idle cores (storescp ~380/s). The sender took 13 ms per film sending to ours, 6 ms to storescp.
  --size 2048 (2048 × 1774 px, 7.3 MB; 50 films, 1 repeat): films/s 2.4 / 4.4 / 4.0 vs 25.5 / 30.4 / 30.9 at
    c=1/4/8 (0.09–0.15); CPU 235 / 225 / 275 vs 13 / 11 / 19 ms; p95 0.54 / 1.28 / 3.0 s vs 55 / 187 / 468 ms.
  In one earlier full run, one valid film (at c=4) was answered 0xC000 "The image data is damaged: the decoder
  reported '<psycopg.Connec…": a psycopg ResourceWarning — the connection an ended association's thread left open,
  collected by the garbage collector in whatever thread runs next — recorded by trial.dicom.validate's process-wide
  warnings.catch_warnings while that film was being decoded. A PACS does not retry 0xC000.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import close_django_connections, machine_cpu, pct, proc_cpu_seconds, purge_broker  # noqa: E402

SITES = (("site-a", "Hospital A", "BENCH_PACS_A"), ("site-b", "Hospital B", "BENCH_PACS_B"),
         ("site-c", "Hospital C", "BENCH_PACS_C"))
OURS_AET, STORESCP_AET = "CXRTRIAL", "STORESCP"
WARM_UP = 3  # films each server takes before the first measured run (ours imports and opens its lazy parts then)
SERVERS = ("storescp", "ours")
PATIENT_PREFIX = "BCSX"  # of every film's patient ID and accession number: none may remain in a stored file


# ------------------------------------------------------------------------------------------------ small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The children of `pid` (its main thread's), live or not yet reaped; none when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def run_seconds(pid: int) -> float:
    """Seconds on a CPU of one single-threaded process, to the nanosecond (/proc/PID/schedstat; /proc/PID/stat counts
    10-ms ticks, coarse for a process that spends a millisecond on a film); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def state(pid: int) -> str:
    """R, S, Z… (/proc/PID/stat); "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


@dataclass
class Database:
    url: str
    engine: str                 # "postgresql" or "sqlite"
    name: str                   # the database's name, or the SQLite file's path
    host: str = ""
    port: int = 5432
    user: str = "postgres"

    @classmethod
    def parse(cls, url: str) -> Database:
        u = urlparse(url)
        if u.scheme in ("postgres", "postgresql", "pgsql"):
            return cls(url, "postgresql", unquote(u.path.lstrip("/")), u.hostname or "127.0.0.1", u.port or 5432,
                       unquote(u.username or "postgres"))
        if u.scheme == "sqlite":
            return cls(url, "sqlite", unquote(u.path))
        raise SystemExit(f"--database-url: PostgreSQL or SQLite only, not {u.scheme!r}")

    def create(self) -> None:
        if self.engine == "sqlite":
            Path(self.name).unlink(missing_ok=True)
            return
        from bench import _reading_world as world_mod

        world_mod.create_database(host=self.host, port=self.port, user=self.user, name=self.name)

    def drop(self) -> None:
        if self.engine == "sqlite":
            Path(self.name).unlink(missing_ok=True)
            return
        from bench import _reading_world as world_mod

        world_mod.drop_database(host=self.host, port=self.port, user=self.user, name=self.name)


# ------------------------------------------------------------------------------------------------ the world


def build_world() -> int:
    """The open prospective trial of the docstring; returns its id."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Permission

    from trial import services
    from trial.models import Role

    User = get_user_model()
    encoded = make_password("bench-cstore-password-1")
    investigator = User.objects.create(username="bench-investigator", email="inv@example.org", password=encoded)
    investigator.user_permissions.add(Permission.objects.get(codename="add_trial"))
    investigator = User.objects.get(pk=investigator.pk)
    trial = services.create_trial(by=investigator, code="bench-cstore", title="C-STORE benchmark",
                                  mode="prospective", block_multiples=[1],
                                  fixed_block_reason="one reader per arm per site: a block of 2")
    for code, name, title in SITES:
        site = services.add_site(trial=trial, by=investigator, code=code, name=name)
        services.set_site_dicom_senders(site=site, by=investigator, ae_titles=[title])
        for i in range(2):
            reader = User.objects.create(username=f"bench-{code}-r{i}", email=f"{code}-r{i}@example.org",
                                         password=encoded)
            services.add_member(trial=trial, by=investigator, user=reader, role=Role.READER, site=site)
    trial = services.transition_trial(trial=trial, by=investigator, to="open")
    return trial.pk


def make_films(folder: Path, count: int, *, size: int, seed: int) -> list[Path]:
    """`count` CR films written to `folder`, each its own patient, study, accession and SOP Instance UID."""
    from pydicom.uid import generate_uid

    from tests import dicom_corpus as corpus

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ds = corpus.radiograph_dataset(seed=seed * 100_000 + i, rows=size, columns=max(64, round(size * 0.866)))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID, ds.AccessionNumber = f"{PATIENT_PREFIX}{seed}-{i:06d}", f"{PATIENT_PREFIX}{seed}{i:07d}"
        path = folder / f"{i:06d}.dcm"
        path.write_bytes(corpus.to_bytes(ds))
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------ the servers


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    aet: str
    log: Path
    out: Path | None = None     # storescp's folder
    threads: int = 0            # ours: its threads when no association is open

    def cpu(self) -> dict[int, float]:
        """CPU seconds so far of each process that may work while the associations of a run are open: ours, the
        listener (all its threads, in ticks: seconds of CPU per run); storescp, its process and the children it forked,
        one per association, alive until the association is released (each single-threaded: to the nanosecond)."""
        if self.name == "ours":
            return {self.proc.pid: proc_cpu_seconds(self.proc.pid)}
        return {pid: run_seconds(pid) for pid in (self.proc.pid, *children(self.proc.pid))}

    def idle(self, timeout: float = 60) -> float:
        """Wait until the last run's associations are gone on the server's side (ours: its association threads have
        ended, or the next run could find its 8 places taken; storescp: its children have exited); seconds waited."""
        t = time.monotonic()
        while time.monotonic() - t < timeout and self.busy():
            time.sleep(0.05)
        return time.monotonic() - t

    def busy(self) -> bool:
        if self.name == "storescp":  # it reaps a child only when the next association comes: a zombie is done
            return any(state(pid) not in ("Z", "X", "") for pid in children(self.proc.pid))
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/task")) > self.threads
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_ours(tmp: Path) -> Server:
    port, log = free_port(), tmp / "listener.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "dicom_listener", "--host", "127.0.0.1", "--port",
                             str(port), "--ae-title", OURS_AET], cwd=ROOT, env=dict(os.environ),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return wait_ready(Server("ours", proc, port, OURS_AET, log))


def start_storescp(tmp: Path) -> Server:
    port, log, out = free_port(), tmp / "storescp.log", tmp / "storescp-out"
    out.mkdir()
    binary = shutil.which("storescp")
    if binary is None:
        raise SystemExit("storescp (DCMTK) is not on the PATH: apt-get install dcmtk")
    # TCP_NODELAY=1: DCMTK's own switch (dcmnet/docs/envvars.txt) to disable Nagle's algorithm. This build leaves it on
    # by default, and storescp writes each answer as a PDU header and then its body: every C-STORE then waits for the
    # sender's delayed ACK (40 ms or more on Linux; 20 small films took 1.9 s storescu → storescp, 0.02 s with it).
    proc = subprocess.Popen([binary, "--fork", "-aet", STORESCP_AET, "-od", str(out), "-dhl", "-pdu", "131072",
                             str(port)], env={**os.environ, "TCP_NODELAY": "1"}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    return wait_ready(Server("storescp", proc, port, STORESCP_AET, log, out))


def wait_ready(server: Server, timeout: float = 120) -> Server:
    """Until the server answers a C-ECHO from a known caller."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=SITES[0][2])
    ae.add_requested_context(Verification)
    deadline = time.monotonic() + timeout
    # Not a bare TCP connection to see whether it listens: pynetdicom would keep its thread, counted among the
    # listener's 8 associations, until the ACSE timeout (30 s). Refused associations meanwhile are not logged.
    quiet = logging.getLogger("pynetdicom")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return _wait_ready(server, ae, deadline, timeout)
    finally:
        quiet.setLevel(level)


def _wait_ready(server: Server, ae, deadline: float, timeout: float) -> Server:
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n"
                               f"{server.log.read_text(errors='replace')[-3000:]}")
        assoc = ae.associate("127.0.0.1", server.port, ae_title=server.aet)
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            if status and status.Status == 0:
                return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer a C-ECHO in {timeout:.0f} s:\n"
                       f"{server.log.read_text(errors='replace')[-3000:]}")


class PgSampler(threading.Thread):
    """The CPU of the bench database's PostgreSQL backends between begin() and end(): the postmaster's children whose
    process title names the database, read from /proc every `every` seconds (a backend that came and went between
    two looks is missed; one that closed meanwhile counts up to its last look)."""

    def __init__(self, postmaster: int, database: str, every: float = 0.02):
        super().__init__(daemon=True)
        self.postmaster, self.every = postmaster, every
        self.marker = f" {database} "
        self.ours: dict[int, bool] = {}          # pid → a backend of the bench database (False: another's)
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.lock = threading.Lock()
        self.active = threading.Event()
        self.stopped = threading.Event()
        self.cpu = 0.0                           # this thread's own CPU, which the bench process's figure leaves out

    def _look(self) -> None:
        for pid in children(self.postmaster):
            known = self.ours.get(pid)
            if known is None:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        title = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if not title.startswith("postgres: "):
                    continue  # just forked: its title is set once it has authenticated; look again next time
                known = self.ours[pid] = self.marker in title
            if known:
                cpu = run_seconds(pid)
                if cpu > self.last.get(pid, 0.0):
                    self.last[pid] = cpu

    def begin(self) -> None:
        with self.lock:
            self.last.clear()
            self._look()
            self.base = dict(self.last)
            self.active.set()

    def end(self) -> tuple[float, int]:
        """(CPU seconds, backends seen) since begin()."""
        with self.lock:
            self._look()
            self.active.clear()
            return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items()), len(self.last)

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.active.wait(0.2):
                t = time.thread_time()
                with self.lock:
                    if self.active.is_set():
                        self._look()
                self.cpu += time.thread_time() - t
                time.sleep(self.every)


def find_postmaster() -> int | None:
    """The postmaster of the bench's PostgreSQL, when it runs on this machine: the parent of this connection's
    backend."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    pm = parent(backend)
    return pm if pm and children(pm) else None


# ------------------------------------------------------------------------------------------------ one run


@dataclass
class Run:
    server: str
    concurrency: int
    repeat: int
    films: int
    wall: float = 0.0
    rtt: list[float] = field(default_factory=list)     # ms, every film answered
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cpu_server: float = 0.0
    cpu_pg: float = float("nan")
    pg_backends: int = 0
    cpu_sender: float = 0.0
    machine_busy: float = 0.0
    checks: str = ""
    ok: bool = True

    @property
    def rate(self) -> float:
        return self.statuses.get(0, 0) / self.wall if self.wall else float("nan")

    def per_film(self, seconds: float) -> float:
        return seconds * 1000 / max(1, self.films)

    @property
    def cpu_total(self) -> float:
        """ms per film: the server, and ours's PostgreSQL backends where they were measured."""
        pg = 0.0 if self.cpu_pg != self.cpu_pg else self.cpu_pg  # NaN: not measured
        return self.per_film(self.cpu_server + pg)

    @property
    def others(self) -> float:
        """Cores used by other processes than the server, its backends and this bench, on average over the run."""
        pg = 0.0 if self.cpu_pg != self.cpu_pg else self.cpu_pg
        return (self.machine_busy - self.cpu_server - pg - self.cpu_sender) / self.wall if self.wall else 0.0


def send(server: Server, films: list[Path], concurrency: int, *, sampler: PgSampler | None, run: Run) -> Run:
    """The run's films over `concurrency` associations (association k: films k, k + c, …, with the title of site
    k mod 3), back to back; the CPU of the server read once all are established and once every film is answered."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import ComputedRadiographyImageStorage

    ready = threading.Barrier(concurrency + 1, timeout=300)
    done = threading.Barrier(concurrency + 1, timeout=3600)
    go, release = threading.Event(), threading.Event()
    lock = threading.Lock()

    def association(k: int) -> None:
        ae = AE(ae_title=SITES[k % len(SITES)][2])
        ae.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 300
        assoc = None
        rtts, statuses, errors = [], Counter(), []
        try:
            assoc = ae.associate("127.0.0.1", server.port, ae_title=server.aet)
            if not assoc.is_established:
                errors.append(f"association {k} not established (rejected: {assoc.is_rejected})")
                assoc = None
        except Exception as exc:  # noqa: BLE001 - counted and shown
            errors.append(f"association {k}: {type(exc).__name__}: {exc}")
        try:
            ready.wait()
            go.wait()
            for path in films[k::concurrency] if assoc is not None else ():
                t = time.perf_counter()
                answer = assoc.send_c_store(path)
                rtt = (time.perf_counter() - t) * 1000
                status = answer.Status if answer is not None and "Status" in answer else -1
                statuses[status] += 1
                if status == 0:
                    rtts.append(rtt)
                elif len(errors) < 3:
                    comment = getattr(answer, "ErrorComment", "") if answer is not None else "no answer"
                    errors.append(f"{path.name}: status 0x{status & 0xFFFF:04X} {comment}")
                if not assoc.is_established:
                    errors.append(f"association {k} ended by the server after {sum(statuses.values())} films")
                    break
        finally:
            with lock:
                run.rtt += rtts
                run.statuses += statuses
                run.errors += errors
            try:
                done.wait()
                release.wait(600)
            finally:
                if assoc is not None and assoc.is_established:
                    assoc.release()

    threads = [threading.Thread(target=association, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    sampled = sampler.cpu if sampler else 0.0
    cpu0, sender0, machine0 = server.cpu(), time.process_time(), machine_cpu()[0]
    if sampler:
        sampler.begin()
    t0 = time.perf_counter()
    go.set()
    done.wait()
    run.wall = time.perf_counter() - t0
    if sampler:
        run.cpu_pg, run.pg_backends = sampler.end()
    # by process: a child of storescp reaped meanwhile (one of the last run's, not yet reaped at the start) drops out
    run.cpu_server = sum(cpu - cpu0.get(pid, 0.0) for pid, cpu in server.cpu().items())
    run.machine_busy = machine_cpu()[0] - machine0
    run.cpu_sender = time.process_time() - sender0 - ((sampler.cpu if sampler else 0.0) - sampled)
    release.set()
    for t in threads:
        t.join(timeout=60)
    return run


def settled_threads(pid: int, quiet_for: float = 1.0, timeout: float = 60) -> int:
    """The number of threads of `pid` once it has not changed for `quiet_for` seconds (the associations of the
    warm-up are gone: what the listener runs with when idle)."""
    def count() -> int:
        return len(os.listdir(f"/proc/{pid}/task"))

    last, since, start = count(), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet_for and time.monotonic() - start < timeout:
        time.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def marks(trial_id: int) -> tuple[int, int]:
    """The last case and the last screening-log row of the trial: what a run adds comes after them."""
    from trial.models import Case, ScreeningEntry

    last = (Case.objects.filter(trial_id=trial_id).order_by("-pk").values_list("pk", flat=True).first() or 0,
            ScreeningEntry.objects.filter(trial_id=trial_id).order_by("-pk").values_list("pk", flat=True).first() or 0)
    return last


def check_ours(trial_id: int, before: tuple[int, int], run: Run) -> None:
    """Every film a case, stored, de-identified, rendered and routed (module docstring); the screening log's reason
    for each film that was not (the DIMSE Error Comment holds 64 characters of it)."""
    from django.db.models import Count

    from trial.models import Case, ScreeningEntry

    cases = list(Case.objects.filter(trial_id=trial_id, pk__gt=before[0]).annotate(n_reads=Count("reads")))
    complete = [c for c in cases if c.dicom and c.display_image and c.thumbnail and c.n_reads == 2]
    identified = 0
    for case in cases:
        with case.dicom.open("rb") as fh:
            identified += PATIENT_PREFIX.encode() in fh.read()  # every sent patient ID and accession starts so
    refused = Counter(f"{code}: {reason}" for code, reason in ScreeningEntry.objects.filter(
        trial_id=trial_id, pk__gt=before[1]).exclude(outcome=ScreeningEntry.Outcome.ENROLLED)
        .values_list("code", "reason"))
    run.errors += [f"screening log, {n} × {what}" for what, n in refused.most_common(3)]
    run.ok = len(cases) == len(complete) == run.films == run.statuses.get(0, 0) and not identified
    run.checks = (f"{len(cases)} cases enrolled, {len(complete)} with DICOM, display image, thumbnail and 2 reads, of "
                  f"{run.films} films; stored files holding a sent patient ID or accession: {identified}")


def check_storescp(server: Server, run: Run) -> None:
    files = [p for p in server.out.iterdir() if p.is_file()]
    run.ok = len(files) == run.films == run.statuses.get(0, 0)
    run.checks = f"{len(files)} files written of {run.films} films"
    for p in files:
        p.unlink()


# ------------------------------------------------------------------------------------------------ report


def line(run: Run) -> str:
    pg = f" + PG {run.per_film(run.cpu_pg):5.1f}" if run.server == "ours" and run.cpu_pg == run.cpu_pg else ""
    return (f"  {run.server:<8} c={run.concurrency}  {run.rate:6.1f} films/s  rtt p50 {pct(run.rtt, .5):6.1f} ms "
            f"p95 {pct(run.rtt, .95):6.1f} ms  CPU/film server {run.per_film(run.cpu_server):5.1f}{pg} ms, sender "
            f"{run.per_film(run.cpu_sender):4.1f} ms  others {run.others:4.2f} cores  "
            f"{'ok' if run.ok else 'FAIL'}: {run.checks}")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(runs: list[Run], levels: list[int], repeats: int) -> None:
    print()
    print(f"Side by side (medians over {repeats} repeat(s); round trips pooled over the repeats; CPU ms per film: "
          "ours = listener + its PostgreSQL backends; ratio = ours ÷ storescp, median of the paired repeats)")
    head = (f"{'c':>2} | {'films/s ours':>12} {'storescp':>9} {'ratio':>6} | {'CPU ms ours':>11} {'storescp':>9} "
            f"{'ratio':>6} | {'p50 ms ours':>11} {'storescp':>9} | {'p95 ms ours':>11} {'storescp':>9} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for c in levels:
        pairs = []
        for r in range(repeats):
            got = {run.server: run for run in runs if run.concurrency == c and run.repeat == r}
            if len(got) == 2:
                pairs.append((got["ours"], got["storescp"]))
        if not pairs:
            continue
        ours = [p[0] for p in pairs]
        base = [p[1] for p in pairs]
        rtt_o = [x for run in ours for x in run.rtt]
        rtt_b = [x for run in base for x in run.rtt]
        r_rate = median(ratio(o.rate, b.rate) for o, b in pairs)
        r_cpu = median(ratio(o.cpu_total, b.cpu_total) for o, b in pairs)
        r_p95 = median(ratio(pct(o.rtt, .95), pct(b.rtt, .95)) for o, b in pairs)
        print(f"{c:>2} | {median(r.rate for r in ours):>12.1f} {median(r.rate for r in base):>9.1f} {r_rate:>6.3g} | "
              f"{median(r.cpu_total for r in ours):>11.1f} {median(r.cpu_total for r in base):>9.2f} {r_cpu:>6.3g} | "
              f"{pct(rtt_o, .5):>11.1f} {pct(rtt_b, .5):>9.2f} | {pct(rtt_o, .95):>11.1f} {pct(rtt_b, .95):>9.2f} "
              f"{r_p95:>6.3g}")
    cpu = {s: median(run.cpu_total for run in runs if run.server == s) for s in SERVERS}
    print(f"\nCPU-bound ceiling on {os.cpu_count()} otherwise idle cores (cores ÷ the server's CPU per film, median of "
          f"every run; the sender elsewhere): ours {os.cpu_count() * 1000 / cpu['ours']:.0f} films/s, storescp "
          f"{os.cpu_count() * 1000 / cpu['storescp']:.0f} films/s.")
    sender = {s: median(run.per_film(run.cpu_sender) for run in runs if run.server == s) for s in SERVERS}
    others = median(run.others for run in runs)
    print(f"The sender (pynetdicom SCU, this process): CPU per film {sender['ours']:.1f} ms to ours, "
          f"{sender['storescp']:.1f} ms to storescp. Other processes on the machine: {others:.2f} cores on average "
          f"(median over the runs) of {os.cpu_count()}.")


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=64, help="films per run (each server, each concurrency, each "
                                                              "repeat; default 64)")
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent associations, comma-separated (default "
                                                               "1,4,8; the listener takes up to "
                                                               "CXR_DICOM_MAX_ASSOCIATIONS, 8 by default)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every pair of runs (default 3)")
    parser.add_argument("--size", type=int, default=1024, help="film rows (columns 0.866 of them; default 1024)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cxr_bench_cstore",
                        help="the bench's own database, created afresh and dropped at the end (PostgreSQL with "
                             "trust auth, or sqlite:////path)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12",
                        help="Celery broker the listener's viewer-image tasks go to (emptied at the start and end)")
    parser.add_argument("--db-conn-max-age", type=int, default=None,
                        help="DB_CONN_MAX_AGE for the listener (default: the settings' default, 0)")
    parser.add_argument("--keep", action="store_true", help="keep the database, the films and the servers' logs")
    args = parser.parse_args()
    levels = list(dict.fromkeys(int(x) for x in args.concurrency.split(",") if x.strip()))
    if not levels or min(levels) < 1 or args.films < 1 or args.repeats < 1:
        parser.error("--films, --repeats and every --concurrency must be at least 1")

    db = Database.parse(args.database_url)
    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-cstore-"))
    os.environ.update({
        "DATABASE_URL": args.database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CXR_DEVELOPMENT": "1",
        "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory
        "CXR_VAR_DIR": str(tmp / "var"),
        "CXR_MEDIA_ROOT": str(tmp / "media"),
        "CELERY_BROKER_URL": args.broker,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PYTHONUNBUFFERED": "1",
    })
    os.environ.pop("CXR_PRODUCTION", None)
    if args.db_conn_max_age is not None:
        os.environ["DB_CONN_MAX_AGE"] = str(args.db_conn_max_age)

    created, servers, sampler = False, {}, None
    runs: list[Run] = []
    try:
        db.create()
        created = True
        import django

        django.setup()
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # the sender's; the listener logs as in production
        logging.getLogger("trial.audit.anchor").setLevel(logging.WARNING)
        from django.db import connections

        from bench import _reading_world as world_mod

        purge_broker(args.broker)  # nothing left from an earlier, interrupted run
        t = time.perf_counter()
        world_mod.migrate()
        trial_id = build_world()
        print(f"Database {db.name} ({db.engine}) created and migrated, trial opened ({time.perf_counter() - t:.0f} s)."
              f" Machine: {os.cpu_count()} cores.")
        postmaster = find_postmaster() if db.engine == "postgresql" else None
        if postmaster:
            sampler = PgSampler(postmaster, db.name)
            sampler.start()
        else:
            print("(the PostgreSQL backends' CPU is not measured: SQLite, or a server not on this machine)")

        t = time.perf_counter()
        total = WARM_UP + args.films * len(levels) * args.repeats
        films = make_films(tmp / "films", total, size=args.size, seed=1)
        size_mb = sum(p.stat().st_size for p in films) / len(films) / 1e6
        print(f"{total} films made ({args.size} × {max(64, round(args.size * 0.866))} px, {size_mb:.1f} MB each) in "
              f"{time.perf_counter() - t:.0f} s.")
        connections.close_all()  # the bench's own backend stays out of the listener's figures

        t = time.perf_counter()
        servers["storescp"] = start_storescp(tmp)
        servers["ours"] = start_ours(tmp)
        print(f"storescp (pid {servers['storescp'].proc.pid}) and `manage.py dicom_listener` (pid "
              f"{servers['ours'].proc.pid}) answering in {time.perf_counter() - t:.1f} s; warming each up with "
              f"{WARM_UP} films.")
        for name in SERVERS:
            warm = send(servers[name], films[:WARM_UP], 1, sampler=None, run=Run(name, 1, -1, WARM_UP))
            if warm.statuses.get(0, 0) != WARM_UP:
                raise RuntimeError(f"{name}'s warm-up films were not all stored: {dict(warm.statuses)} "
                                   f"{warm.errors}\n{servers[name].log.read_text(errors='replace')[-3000:]}")
            if name == "storescp":
                check_storescp(servers[name], warm)
        servers["ours"].threads = settled_threads(servers["ours"].proc.pid)
        connections.close_all()

        print(f"\nRuns: {args.films} films each, concurrency {', '.join(map(str, levels))}, {args.repeats} repeat(s).")
        batch = iter(range(len(levels) * args.repeats))
        for r in range(args.repeats):
            for c in levels:
                k = next(batch)
                part = films[WARM_UP + k * args.films: WARM_UP + (k + 1) * args.films]
                for name in (SERVERS if r % 2 == 0 else SERVERS[::-1]):
                    before = marks(trial_id) if name == "ours" else (0, 0)
                    connections.close_all()
                    waited = servers[name].idle()
                    if waited > 1:
                        print(f"      ({name}: {waited:.1f} s until the last run's associations were gone)")
                    run = send(servers[name], part, c, sampler=sampler if name == "ours" else None,
                               run=Run(name, c, r, len(part)))
                    if name == "ours":
                        check_ours(trial_id, before, run)
                    else:
                        check_storescp(servers[name], run)
                    runs.append(run)
                    print(f"[{r + 1}/{args.repeats}]" + line(run)
                          + (f"; PG backends seen {run.pg_backends}" if name == "ours" and sampler else ""))
                    for error in run.errors[:6]:
                        print(f"      {error}")
        table(runs, levels, args.repeats)
        failed = [run for run in runs if not run.ok]
        print(f"\nChecks: {len(runs) - len(failed)} of {len(runs)} runs complete → {'PASS' if not failed else 'FAIL'}")
        return 1 if failed else 0
    finally:
        for server in servers.values():
            server.stop()
        if sampler is not None:
            sampler.stopped.set()
        close_django_connections()
        purge_broker(args.broker)
        if created and not args.keep:
            db.drop()
        elif created:
            print(f"Kept: the database {db.url}; films, media and the servers' logs in {tmp}")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
