"""Two simulated weeks of a prospective trial, run through its services and a real Celery worker (PostgreSQL, Redis).

Images arrive at three sites (Poisson, seeded; a few ineligible), are screened, enrolled and routed at arrival to the
on-duty readers of their site; the worker drafts them (a few drafts fail: the model server refuses those cases); each
evening the readers read what their worklists hold, the sites' seniors sign, the worker builds the scoring items and
the experts answer. A reader is withdrawn on day 5 while holding an open read with typed text, another joins on day
8, one site pauses its enrolment for a day and one case is withdrawn. Then the trial is closed, locked (signed) and
its frozen analysis plan is run by the worker on the locked data.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count, Max, Q
from django.utils import timezone

from ai import services as ai_services
from ai.models import AIDraft, DraftStatus
from core import clock
from core.errors import Conflict, WrongStatus
from demo.simulation import SimulatedClock
from reading import selectors as reading_selectors
from reading import services as reading_services
from reading.models import Read, ReadStatus, Report, ReportDraft
from reading.tasks import route_open_trials
from scoring import radpeer
from scoring import services as scoring_services
from scoring.models import Assignment, Item, ItemKind
from stats import dataset as stats_dataset
from stats import services as stats_services
from stats.models import AnalysisRun
from stats.plan import default_plan
from tests import dicom_corpus as corpus
from tests.ai.conftest import FakeServer, completion
from tests.signing import move, proof
from trial import audit
from trial import services as trial_services
from trial.access import access_to
from trial.errors import NotEnrolled
from trial.models import Case, Deviation, Membership, Role, ScreeningEntry, SiteEnrolment, Status

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SEED = 20260214
DAYS = 14
SITES = ("site-a", "site-b", "site-c")
READERS_PER_SITE = 4           # randomized in blocks of 2 within the site: two per arm
ARRIVALS_PER_SITE_DAY = 1.3    # Poisson mean per site and day: about 50 arrivals in all
INELIGIBLE_SHARE = 0.05
AI_FAULT_SHARE = 0.02
OFF_DUTY_SHARE = 0.3
WITHDRAW_DAY, WITHDRAW_SITE, WITHDRAW_MINUTE = 5, "site-a", 14 * 60
JOIN_DAY, JOIN_SITE = 8, "site-a"
PAUSE_DAY, PAUSED_SITE = 10, "site-b"
CASE_WITHDRAW_DAY = 9
MODEL_FAULT = "[model-fault]"  # in the clinical history of a case the model server refuses
# How long the model works on an image before refusing it. 0: at once, which raced the arrival's routing into a
# deadlock before ai.services locked the draft row only (select_for_update(of=("self",))): kept at 0 to prove it.
MODEL_FAULT_SECONDS = float(os.environ.get("CXR_MODEL_FAULT_SECONDS", "0"))
TAB = "sim"
WAIT_SECONDS = 120  # the longest the worker may take for one evening's drafts or items


# ------------------------------------------------------------------------------------------ the simulator


@dataclass(frozen=True)
class Arrival:
    day: int
    minute: int          # after midnight of its day
    site: str
    kind: str            # "eligible", or the eligibility rule it breaks: "view_position" (lateral), "under_age"
    model_fault: bool    # the model server refuses this case's draft
    seed: int            # of its image (and so of its SOP Instance UID)


def arrival_schedule(seed: int) -> list[Arrival]:
    """Poisson arrivals at each site over the days, office hours; a few ineligible, a few the model fails on; plus
    the arrivals the scenario needs (two at the withdrawal site before the withdrawal, one at the paused site)."""
    rng = np.random.default_rng(seed)
    raw: list[tuple[int, int, str, str, bool]] = []
    for day in range(DAYS):
        for site in SITES:
            for _ in range(int(rng.poisson(ARRIVALS_PER_SITE_DAY))):
                minute = int(rng.integers(8 * 60, 18 * 60))
                kind = "eligible"
                if rng.random() < INELIGIBLE_SHARE and not (day == PAUSE_DAY and site == PAUSED_SITE):
                    kind = "view_position" if rng.random() < 0.5 else "under_age"
                raw.append((day, minute, site, kind, kind == "eligible" and bool(rng.random() < AI_FAULT_SHARE)))
    raw += [(WITHDRAW_DAY, 9 * 60, WITHDRAW_SITE, "eligible", False),
            (WITHDRAW_DAY, 10 * 60, WITHDRAW_SITE, "eligible", False),
            (PAUSE_DAY, 12 * 60, PAUSED_SITE, "eligible", False)]
    kinds = Counter(r[3] for r in raw)
    if not kinds["view_position"]:
        raw.append((2, 11 * 60, "site-c", "view_position", False))
    if not kinds["under_age"]:
        raw.append((6, 15 * 60, "site-b", "under_age", False))
    if not any(r[4] for r in raw):
        raw.append((3, 13 * 60, "site-b", "eligible", True))
    raw.sort(key=lambda r: (r[0], r[1], r[2]))
    return [Arrival(*r, seed=5000 + i) for i, r in enumerate(raw)]


def image_bytes(arrival: Arrival) -> bytes:
    """A small CR chest film whose header says what the arrival is: a lateral view, or a patient under age."""
    ds = corpus.radiograph_dataset(seed=arrival.seed, rows=160, columns=140)
    ds.ViewPosition = "LL" if arrival.kind == "view_position" else "PA"
    ds.PatientAge = "012Y" if arrival.kind == "under_age" else f"{40 + arrival.seed % 45:03d}Y"
    ds.PatientID = f"MRN{arrival.seed:08d}"
    return corpus.to_bytes(ds)


def model_answer(body: dict, n: int):
    """The model server: a report, yes/no for the finding questions, and a refusal (HTTP 400, a permanent error) for
    the cases whose clinical history carries MODEL_FAULT."""
    question = body["messages"][0]["content"][-1]["text"]
    if "Answer yes or no" in question:
        return 200, completion("Yes" if n % 9 == 0 else "No", tokens=1), 0
    if MODEL_FAULT in question:
        return 400, {"error": {"message": "The image could not be processed."}}, MODEL_FAULT_SECONDS
    return 200, completion(f"FINDINGS: Lungs clear, draft {n}. No pleural effusion.\n"
                           "IMPRESSION: No acute cardiopulmonary abnormality."), 0


# ------------------------------------------------------------------------------------------ the worker


def _require_services() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL (the database is {connection.vendor}): set DATABASE_URL=postgres://… to run "
                    "the two-week prospective trial")
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("needs a real broker: set CELERY_BROKER_URL (Redis) to run the two-week prospective trial")


def _purge_queues() -> None:
    """Tasks left on the broker by an earlier run would name rows of another database."""
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("default", "ai"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
                pass


def _start_worker(log: Path, media: Path) -> subprocess.Popen:
    env = {**os.environ, "CXR_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
           "CXR_MEDIA_ROOT": str(media), "CXR_AUDIT_ANCHOR_FILE": str(settings.AUDIT_ANCHOR_FILE),
           "CXR_VAR_DIR": str(settings.VAR_DIR), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.trial.worker_app", "worker", "-Q", "default,ai",
         "--concurrency", "1", "--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


class Waiter:
    def __init__(self, worker: subprocess.Popen, log: Path):
        self.worker, self.log = worker, log

    def until(self, predicate, what: str, timeout: float = WAIT_SECONDS) -> None:
        """Poll (bounded) for what the worker does; fail with its log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.worker.poll() is not None:
                break
            time.sleep(0.2)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        state = "exited" if self.worker.poll() is not None else "running"
        raise AssertionError(f"timed out waiting for {what} (worker {state}). Worker log:\n{text[-4000:]}")


class ReceiverFailures(logging.Handler):
    """The domain events' receivers that failed (trial.events logs them and goes on): an arrival not routed."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        cause = record.exc_info[1] if record.exc_info else None
        self.messages.append(f"{record.getMessage()}: {type(cause).__name__}: {str(cause).splitlines()[0]}"
                             if cause else record.getMessage())


# ------------------------------------------------------------------------------------------ routing checks


OPEN = (ReadStatus.ASSIGNED, ReadStatus.IN_PROGRESS)


def _open_loads(trial) -> Counter:
    return Counter(Read.objects.filter(trial=trial, status__in=OPEN).values_list("reader_id", flat=True))


def _arm(member: Membership) -> str | None:
    allocation = getattr(member, "allocation", None)
    return allocation.arm if allocation is not None else None


class RoutingLedger:
    """Wraps every act after which the platform routes (an arrival, a roster change, a withdrawal, a join, the beat's
    sweep) and checks each read it made: a reader of the case's site and arm, on duty, not withdrawn, with the fewest
    open reads of those at that moment; and after it, open reads within one of each other among the on-duty readers
    of each arm and site it routed to. (Readers read in the evening, so every day starts level; a withdrawn case
    closes its reads mid-day, which the next routing to that arm and site levels again.)"""

    def __init__(self, trial):
        self.trial = trial
        self.reads_checked = 0
        self.problems: list[str] = []

    def _readers(self) -> list[Membership]:
        return list(Membership.objects.filter(trial=self.trial, role=Role.READER).select_related("allocation"))

    def around(self, what: str, act):
        last = Read.objects.filter(trial=self.trial).aggregate(m=Max("id"))["m"] or 0
        loads = _open_loads(self.trial)
        result = act()
        readers = self._readers()
        touched: set[tuple[int, str]] = set()
        for read in Read.objects.filter(trial=self.trial, id__gt=last).select_related("case").order_by("id"):
            touched.add((read.case.site_id, read.arm))
            pool = [m for m in readers if m.site_id == read.case.site_id and _arm(m) == read.arm and m.on_duty
                    and m.withdrawn_at is None]
            where = f"{what}: {read.case.code} ({read.arm})"
            if read.reader_id not in {m.pk for m in pool}:
                self.problems.append(f"{where} went to reader {read.reader_id}, not an on-duty reader of its site "
                                     f"and arm {[m.pk for m in pool]}")
            elif loads[read.reader_id] != min(loads[m.pk] for m in pool):
                self.problems.append(f"{where} went to a reader with {loads[read.reader_id]} open reads; the pool "
                                     f"had {sorted(loads[m.pk] for m in pool)}")
            loads[read.reader_id] += 1
            self.reads_checked += 1
        now = _open_loads(self.trial)
        groups: dict[tuple[int, str], list[int]] = defaultdict(list)
        for m in readers:
            if m.on_duty and m.withdrawn_at is None and (m.site_id, _arm(m)) in touched:
                groups[(m.site_id, _arm(m))].append(now[m.pk])
        for (site_id, arm), counts in groups.items():
            if max(counts) - min(counts) > 1:
                self.problems.append(f"{what}: open reads of the on-duty {arm} readers of site {site_id} are "
                                     f"{sorted(counts)} (more than one apart)")
        return result


# ------------------------------------------------------------------------------------------ the test


@pytest.mark.django_db(transaction=True)
def test_two_weeks_of_a_prospective_trial_with_a_real_worker(make_user, investigator, _eager_celery, _media):
    _require_services()
    started = time.monotonic()
    _eager_celery.conf.task_always_eager = False  # the real broker, the real worker
    _purge_queues()
    log = _media.parent / "worker.log"
    server = FakeServer(model_answer)
    worker = _start_worker(log, _media)
    wait = Waiter(worker, log)
    failures = ReceiverFailures()
    logging.getLogger("trial.events").addHandler(failures)
    try:
        _run_two_weeks(make_user=make_user, inv=investigator, server=server, wait=wait, started=started,
                       failures=failures)
    finally:
        logging.getLogger("trial.events").removeHandler(failures)
        _stop_worker(worker)
        server.close()


def _run_two_weeks(*, make_user, inv, server, wait: Waiter, started: float, failures: ReceiverFailures) -> None:
    rng = np.random.default_rng(SEED + 1)
    start = (timezone.now() - timedelta(days=DAYS + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    clk = SimulatedClock(start)

    # ---- set-up: the trial, its sites and people, the model, the frozen plan
    trial = trial_services.create_trial(
        by=inv, code="prosp-2w", title="Two weeks in clinical practice", mode="prospective", require_signoff=True,
        draft_rule="read_without", experts_per_item=3, block_multiples=[1],
        settle_seconds=0,  # its laterals are studies of a lateral alone: judged at once (a study's window elsewhere)
        fixed_block_reason="four readers per site: blocks of 2 keep two per arm at every site")
    sites = {code: trial_services.add_site(trial=trial, by=inv, code=code, name=code.title()) for code in SITES}
    for code, site in sites.items():
        for i in range(READERS_PER_SITE):
            trial_services.add_member(trial=trial, by=inv, user=make_user(f"{code}-reader{i}"), role=Role.READER,
                                      site=site)
        trial_services.add_member(trial=trial, by=inv, user=make_user(f"{code}-senior"), role=Role.SENIOR, site=site)
    for i in range(3):
        trial_services.add_member(trial=trial, by=inv, user=make_user(f"expert{i}"), role=Role.EXPERT)
    statistician = make_user("stat")
    trial_services.add_member(trial=trial, by=inv, user=statistician, role=Role.STATISTICIAN)
    model = ai_services.register_model(by=inv, name="sim-model", backend="http", url=server.url,
                                       generation={"include_history": True, "max_new_tokens": 64})
    ai_services.assign_model(trial=trial, by=inv, model_version=model)
    plan = stats_services.save_plan(trial=trial, by=statistician, content=default_plan(trial.design))
    stats_services.freeze_plan(plan=plan, by=statistician, proof=proof(statistician))
    trial = trial_services.transition_trial(trial=trial, by=inv, to=Status.OPEN)
    ledger = RoutingLedger(trial)

    readers = list(Membership.objects.filter(trial=trial, role=Role.READER).select_related("allocation", "user"))
    assert all(_arm(m) for m in readers), "readers who joined in setup are randomized when the trial opens"
    for code, site in sites.items():
        arms = Counter(_arm(m) for m in readers if m.site_id == site.pk)
        assert arms == {"assisted": 2, "standard": 2}, f"{code}: {arms}"
    withdrawn = min((m for m in readers if m.site_id == sites[WITHDRAW_SITE].pk and _arm(m) == "standard"),
                    key=lambda m: m.pk)
    seniors = list(Membership.objects.filter(trial=trial, role=Role.SENIOR).select_related("user", "site"))
    experts = list(Membership.objects.filter(trial=trial, role=Role.EXPERT).select_related("user"))

    arrivals = arrival_schedule(SEED)
    expected_codes: Counter = Counter()
    enrolled: dict[str, Arrival] = {}  # case code → its arrival
    faulted_cases: set[str] = set()
    typed: dict = {}
    joiner = withdrawn_case = None
    not_routed_at_arrival: list[str] = []

    with clock.simulated(clk):
        for day in range(DAYS):
            day_start = start + timedelta(days=day)
            clk.now = day_start + timedelta(hours=7)

            # ---- the morning: who joins, which site pauses, the roster
            if day == JOIN_DAY:
                joiner = ledger.around("join", lambda: trial_services.add_member(
                    trial=trial, by=inv, user=make_user("late-reader"), role=Role.READER, site=sites[JOIN_SITE]))
                joiner = Membership.objects.select_related("allocation").get(pk=joiner.pk)
                assert _arm(joiner) in ("assisted", "standard"), "a reader joining an open trial is randomized at once"
            if day == PAUSE_DAY:
                trial_services.set_site_enrolment(site=sites[PAUSED_SITE], by=inv, state=SiteEnrolment.PAUSED,
                                                  reason="PACS maintenance")
            if day == PAUSE_DAY + 1:
                trial_services.set_site_enrolment(site=sites[PAUSED_SITE], by=inv, state=SiteEnrolment.OPEN)
            _roster(trial, day, rng, ledger)

            # ---- the day: arrivals, screened and routed as they come; the withdrawal in the afternoon
            for arrival in (a for a in arrivals if a.day == day):
                if day == WITHDRAW_DAY and not typed and arrival.minute >= WITHDRAW_MINUTE:
                    typed = _withdraw_while_typing(trial, withdrawn, inv, clk, day_start, ledger)
                clk.now = day_start + timedelta(minutes=arrival.minute)
                history = "Cough for three days." + (f" {MODEL_FAULT}" if arrival.model_fault else "")
                paused = day == PAUSE_DAY and arrival.site == PAUSED_SITE
                try:
                    case = ledger.around(f"day {day} arrival", lambda a=arrival, h=history: _arrive(trial, sites, a, h))
                except NotEnrolled as exc:
                    expected = "site_paused" if paused else arrival.kind
                    assert exc.code == expected, f"{arrival}: not enrolled as {exc.code}, expected {expected}"
                    expected_codes[exc.code] += 1
                    continue
                assert arrival.kind == "eligible" and not paused, f"{arrival} was enrolled as {case.code}"
                enrolled[case.code] = arrival
                # one reader of each arm is on duty at every site all day: the case is on two worklists at once
                if Read.objects.filter(case=case).count() != 2:
                    not_routed_at_arrival.append(case.code)
                if arrival.model_fault:
                    faulted_cases.add(case.code)
                elif day == CASE_WITHDRAW_DAY and withdrawn_case is None:
                    withdrawn_case = trial_services.withdraw_case(case=case, by=inv, reason="Consent withdrawn.")
            if day == WITHDRAW_DAY and not typed:
                typed = _withdraw_while_typing(trial, withdrawn, inv, clk, day_start, ledger)

            # ---- the evening: drafts in, every worklist read, every report signed, items built and answered
            clk.now = day_start + timedelta(hours=19)
            _evening(trial, clk, rng, wait, seniors, experts, day, ledger)

        # ---- the end of enrolment
        trial = trial_services.transition_trial(trial=trial, by=inv, to=Status.CLOSED)

    simulated_seconds = time.monotonic() - started
    cases = {c.code: c for c in Case.objects.filter(trial=trial).select_related("site")}
    live_cases = {code: c for code, c in cases.items() if c.withdrawn_at is None}
    assert set(cases) == set(enrolled)
    assert 40 <= len(cases) <= 65, f"{len(cases)} cases: the simulation is meant to stay small"
    assert faulted_cases and withdrawn_case is not None and joiner is not None and typed

    # ---- routing: every check made at every routing held
    assert ledger.reads_checked >= 2 * len(cases), ledger.reads_checked
    assert not ledger.problems, "\n".join(ledger.problems[:20])

    # ---- every enrolled, non-withdrawn case: read once in each arm by readers of its site, signed and scored
    for code, case in live_cases.items():
        reads = list(Read.objects.filter(case=case).exclude(status=ReadStatus.REROUTED).select_related(
            "reader__allocation"))
        assert sorted(r.arm for r in reads) == ["assisted", "standard"], (code, [(r.arm, r.status) for r in reads])
        for read in reads:
            assert read.status == ReadStatus.SUBMITTED, (code, read.arm, read.status)
            assert read.reader.site_id == case.site_id and _arm(read.reader) == read.arm, (code, read.arm)
            report = read.reports.order_by("-version").first()
            assert report is not None and report.signed_at is not None, (code, read.arm)
        items = Item.objects.filter(case=case, superseded_at__isnull=True).annotate(
            answered=Count("assignments", filter=Q(assignments__qualityscores__isnull=False)
                           | Q(assignments__preferences__isnull=False) | Q(assignments__findingvotes__isnull=False),
                           distinct=True))
        assert sorted(i.kind for i in items) == sorted([ItemKind.REFERENCE, ItemKind.QUALITY, ItemKind.QUALITY,
                                                        ItemKind.PAIR]), code
        assert all(i.answered == trial.experts_per_item for i in items), (code, [(i.kind, i.answered) for i in items])
    assert not Item.objects.filter(case=withdrawn_case).exists(), "a withdrawn case is scored no further"

    # ---- the withdrawn reader: the typed read re-routed with its text kept, nothing routed to them afterwards
    typed_read = Read.objects.get(pk=typed["read"])
    assert typed_read.status == ReadStatus.REROUTED
    assert ReportDraft.objects.get(read=typed_read).impression == typed["impression"], "nothing typed is lost"
    replacement = Read.objects.filter(case=typed_read.case, arm=typed_read.arm).exclude(pk=typed_read.pk).get()
    assert replacement.reader_id != withdrawn.pk and replacement.reader.site_id == withdrawn.site_id
    assert replacement.status == ReadStatus.SUBMITTED
    withdrawn.refresh_from_db()
    assert withdrawn.withdrawn_at is not None and not withdrawn.on_duty
    later = Read.objects.filter(reader=withdrawn, case__arrived_at__gt=withdrawn.withdrawn_at)
    assert not later.exists(), "no case arriving after the withdrawal goes to the withdrawn reader"
    assert Read.objects.filter(reader=withdrawn, status=ReadStatus.SUBMITTED).exists(), "their finished reads stay"
    assert not Read.objects.filter(reader=withdrawn, status__in=OPEN).exists()
    # the reader who joined on day 8 was routed cases from then on and read them
    assert Read.objects.filter(reader=joiner, status=ReadStatus.SUBMITTED).exists(), "the late reader read nothing"

    # ---- the AI drafts: made by the worker, failed where the model server refused
    drafts = dict(AIDraft.objects.filter(case__trial=trial).values_list("case__code", "status"))
    assert set(drafts) == set(cases)
    assert {code for code, status in drafts.items() if status == DraftStatus.FAILED} == faulted_cases
    assert {code for code, status in drafts.items() if status == DraftStatus.READY} == set(cases) - faulted_cases

    # ---- the screening log adds up exactly
    entries = ScreeningEntry.objects.filter(trial=trial)
    assert entries.count() == len(arrivals)
    outcomes = Counter(entries.values_list("outcome", flat=True))
    codes = Counter(entries.filter(outcome=ScreeningEntry.Outcome.NOT_ENROLLED).values_list("code", flat=True))
    assert outcomes[ScreeningEntry.Outcome.ENROLLED] == len(cases)
    assert entries.count() == outcomes[ScreeningEntry.Outcome.ENROLLED] + sum(codes.values())
    assert codes == expected_codes
    sent_ineligible = Counter(a.kind for a in arrivals if a.kind != "eligible")
    assert {k: codes[k] for k in sent_ineligible} == dict(sent_ineligible), "ineligible: as many as the simulator sent"
    assert codes["site_paused"] == sum(a.day == PAUSE_DAY and a.site == PAUSED_SITE for a in arrivals) >= 1
    assert not entries.filter(outcome=ScreeningEntry.Outcome.ENROLLED, case__isnull=True).exists()
    for code, site in sites.items():
        per_site = entries.filter(site=site)
        assert per_site.count() == sum(a.site == code for a in arrivals)
        assert per_site.filter(outcome=ScreeningEntry.Outcome.ENROLLED).count() == site.cases.count()

    # ---- deviations and intercurrent events, as the platform logged them
    deviations = Counter(Deviation.objects.filter(trial=trial).values_list("kind", flat=True))
    assert deviations == {Deviation.Kind.DRAFT_NOT_SHOWN: len(faulted_cases),
                          Deviation.Kind.READER_WITHDRAWN: 1, Deviation.Kind.CASE_WITHDRAWN: 1}, deviations
    without_draft = Deviation.objects.filter(trial=trial, kind=Deviation.Kind.DRAFT_NOT_SHOWN)
    assert {d.case.code for d in without_draft} == faulted_cases
    assert all(d.intercurrent and Read.objects.get(pk=d.read_id).arm == "assisted" for d in without_draft)
    assert Deviation.objects.get(trial=trial, kind=Deviation.Kind.READER_WITHDRAWN).reader_id == withdrawn.pk
    assert Deviation.objects.get(trial=trial, kind=Deviation.Kind.CASE_WITHDRAWN).case_id == withdrawn_case.pk

    # ---- closed, locked (signed), analysed by the worker on the locked data
    trial = move(trial, by=inv, to=Status.LOCKED)
    assert trial.status == Status.LOCKED
    run = stats_services.start_run(trial=trial, by=statistician)
    wait.until(lambda: AnalysisRun.objects.get(pk=run.pk).status in ("done", "failed"), "the analysis run", timeout=300)
    run.refresh_from_db()
    assert run.status == "done", run.error
    assert run.trial_status == Status.LOCKED and run.results["analyses"]

    # ---- the dataset snapshot of the run, and its export
    with default_storage.open(run.dataset.name, "rb") as fh:
        snapshot = json.loads(fh.read())
    snap_cases = {r["case"] for r in stats_dataset.records(snapshot, "cases")}
    assert snap_cases == set(cases)
    snap_reads = stats_dataset.records(snapshot, "reads")
    assert [r["status"] for r in snap_reads if r["read"] == typed_read.pk] == ["rerouted"], \
        "the withdrawn reader's re-routed read is in the dataset"
    scored_cases = {r["case"] for r in stats_dataset.records(snapshot, "ai_scores")}
    assert scored_cases == set(cases) - faulted_cases
    events = run.results["estimands"]["events"]
    assert events["draft_unavailable"]["determinable"] and events["draft_unavailable"]["cases"] == len(faulted_cases)
    # the intercurrent events from the deviations log: the draft not shown and the withdrawn case by case, the read
    # that replaced the withdrawn reader's
    assert events["draft_late"]["cases"] == len(faulted_cases) and events["case_withdrawn"]["cases"] == 1
    assert events["reader_withdrawn"]["n"] == 1
    # ---- the CONSORT flow of the run adds up exactly: screened, excluded by reason, enrolled, withdrawn, read,
    # signed and scored, deviations
    flow = run.results["flow"]
    assert flow["screened"] == len(arrivals) == flow["enrolled"] + sum(e["n"] for e in flow["not_enrolled"])
    assert {e["code"]: e["n"] for e in flow["not_enrolled"]} == expected_codes
    assert flow["enrolled"] == len(cases) and flow["cases_withdrawn"] == 1 and flow["readers_withdrawn"] == 1
    assert flow["deviations"] == dict(deviations) and flow["intercurrent_events"] == sum(deviations.values())
    finished = len(cases) - 1  # every case but the withdrawn one, read in both arms, signed and scored
    assert flow["cases_read_complete"] == flow["cases_signed_complete"] == flow["cases_scored_complete"] == finished
    assert sum(a["reads_rerouted"] for a in flow["arms"].values()) == 1
    assert flow["cases_without_ai_draft"] == len(faulted_cases)
    tables = snapshot["tables"]
    assert {"deviations", "screening"} <= set(tables), "the dataset holds the deviations and the screening log"
    exported = stats_dataset.records(snapshot, "deviations")
    assert Counter(r["kind"] for r in exported) == deviations
    assert all(r["intercurrent"] == 1 for r in exported)
    assert {r["case"] for r in exported if r["kind"] == Deviation.Kind.DRAFT_NOT_SHOWN} == faulted_cases
    assert [r["reader"] for r in exported if r["kind"] == Deviation.Kind.READER_WITHDRAWN] == [withdrawn.pseudonym]
    assert [r["case"] for r in exported if r["kind"] == Deviation.Kind.CASE_WITHDRAWN] == [withdrawn_case.code]
    log_rows = stats_dataset.records(snapshot, "screening")
    assert len(log_rows) == len(arrivals)
    assert Counter(r["code"] for r in log_rows if r["outcome"] == "not_enrolled") == expected_codes
    assert {r["case"] for r in log_rows if r["outcome"] == "enrolled"} == set(cases)
    _, data = stats_services.export_run(run=run, by=statistician)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # masked: the trial is locked, not unblinded
        files = {name.split("/csv/")[-1]: name for name in archive.namelist() if "/csv/" in name}
        assert "rerouted" in archive.read(files["reads.csv"]).decode()
        for entity in ("deviations", "screening"):
            text = archive.read(files[f"{entity}.csv"]).decode()
            assert len(text.strip().splitlines()) == 1 + len(tables[entity]), entity

    # ---- the audit trail: chain, anchors and every recorded row intact
    chain = audit.verify()
    assert chain.intact, str(chain)

    print(f"\n{len(arrivals)} arrivals, {len(cases)} cases ({len(faulted_cases)} without a draft), "
          f"{ledger.reads_checked} routed reads checked, {sum(codes.values())} not enrolled {dict(codes)}, "
          f"deviations {dict(deviations)}, intercurrent events in the run "
          f"{ {k: v.get('n', v.get('cases')) for k, v in events.items()} }; simulation {simulated_seconds:.0f} s, "
          f"in all {time.monotonic() - started:.0f} s. The withdrawn reader typing was told: {typed['refusal']!r}; "
          f"the withdrawn case's reads: {list(withdrawn_case.reads.values_list('arm', 'status'))}")

    # ---- routed at arrival: every enrolled case went on two worklists in the request that enrolled it, and no
    # receiver of a domain event failed
    assert not not_routed_at_arrival and not failures.messages, (not_routed_at_arrival, failures.messages)


# ------------------------------------------------------------------------------------------ a day's pieces


def _arrive(trial, sites, arrival: Arrival, history: str) -> Case:
    """An image from the site's PACS (no person): screened, enrolled and routed, or logged as not enrolled."""
    return trial_services.receive_image(trial=trial, site=sites[arrival.site], data=image_bytes(arrival),
                                        source="simulator", clinical_history=history)


def _roster(trial, day: int, rng, ledger: RoutingLedger) -> None:
    """Each morning some readers are off duty; at least one reader of each arm at each site stays on (so no case
    waits), and both readers of the withdrawal's arm and site are on on the day of the withdrawal."""
    readers = list(Membership.objects.filter(trial=trial, role=Role.READER, withdrawn_at__isnull=True)
                   .select_related("allocation", "site", "user").order_by("pk"))
    groups: dict[tuple[str, str], list[Membership]] = defaultdict(list)
    for m in readers:
        groups[(m.site.code, _arm(m))].append(m)
    for (site, _), group in sorted(groups.items()):
        on = {m.pk: bool(rng.random() >= OFF_DUTY_SHARE) or day == 0 for m in group}
        if day == WITHDRAW_DAY and site == WITHDRAW_SITE:
            on = dict.fromkeys(on, True)
        if not any(on.values()):
            on[group[0].pk] = True
        for m in group:
            if m.on_duty != on[m.pk]:
                ledger.around(f"day {day} roster", lambda m=m, state=on[m.pk]: _set_on_duty(m, state))


def _set_on_duty(member: Membership, on_duty: bool) -> Membership:
    """A reader marks themselves on or off duty (they hold no open read: their worklist was read last evening)."""
    assert not Read.objects.filter(reader=member, status__in=OPEN).exists() or on_duty
    return trial_services.set_on_duty(membership=member, by=member.user, on_duty=on_duty)


def _withdraw_while_typing(trial, member: Membership, inv, clk: SimulatedClock, day_start, ledger) -> dict:
    """The reader opens a read and types (autosaved), then is withdrawn: the read is re-routed, its text kept."""
    clk.now = day_start + timedelta(minutes=WITHDRAW_MINUTE)
    rows = reading_selectors.worklist(access=access_to(user=member.user, trial=trial)).rows
    open_rows = [r for r in rows if r.status in OPEN and r.available]
    assert open_rows, "the reader to withdraw holds an open read"
    read_id = open_rows[0].id
    reading_services.record_event(read_id=read_id, by=member.user, kind="opened", tab_id=TAB)
    clk.advance(90)
    saved = reading_services.autosave(read_id=read_id, by=member.user, findings="Possible left basal opacity.",
                                      impression="Half-written: compare with the prior", finding_flags={},
                                      base_version=None, tab_id=TAB)
    clk.advance(60)
    ledger.around("withdrawal", lambda: trial_services.withdraw_reader(membership=member, by=inv,
                                                                        reason="Left the hospital."))
    # what the withdrawn reader types now is refused, and nothing is saved over the text kept
    with pytest.raises((PermissionDenied, Conflict)) as refusal:
        reading_services.autosave(read_id=read_id, by=member.user, findings="more", impression="more",
                                  finding_flags={}, base_version=saved.version, tab_id=TAB)
    with pytest.raises(WrongStatus):
        trial_services.set_on_duty(membership=Membership.objects.get(pk=member.pk), by=member.user, on_duty=True)
    assert ReportDraft.objects.get(read_id=read_id).version == saved.version
    return {"read": read_id, "impression": saved.impression, "refusal": str(refusal.value)}


def _evening(trial, clk: SimulatedClock, rng, wait: Waiter, seniors, experts, day: int, ledger) -> None:
    drafts = AIDraft.objects.filter(case__trial=trial)
    wait.until(lambda: drafts.count() == trial.cases.count() and not drafts.exclude(
        status__in=(DraftStatus.READY, DraftStatus.FAILED)).exists(), f"day {day}: the AI drafts")
    # celery beat's sweep (config.settings: route-waiting-cases, every minute) runs at least once before the evening
    ledger.around(f"day {day} beat", route_open_trials)

    for member in Membership.objects.filter(trial=trial, role=Role.READER, withdrawn_at__isnull=True) \
            .select_related("user").order_by("pk"):
        rows = reading_selectors.worklist(access=access_to(user=member.user, trial=trial)).rows
        for row in rows:
            if row.status in OPEN:
                assert row.available, f"day {day}: {row.case_code} is on {member.pseudonym}'s worklist, not available"
                _read(trial, Read.objects.get(pk=row.id), member.user, clk, rng)

    for senior in seniors:
        queue = reading_selectors.signoff_queue(access=access_to(user=senior.user, trial=trial))
        for report in queue.filter(read__case__site=senior.site):
            clk.advance(float(rng.uniform(20, 60)))
            reading_services.sign_report(report=report, by=senior.user, proof=proof(senior.user))
    assert not Report.objects.filter(read__trial=trial, signed_at__isnull=True).exists(), f"day {day}: unsigned"

    # the worker builds a case's items once both its reports are signed
    ready = [c.pk for c in trial.cases.filter(withdrawn_at__isnull=True)
             if Read.objects.filter(case=c, status=ReadStatus.SUBMITTED).count() == 2]

    def items_built() -> bool:
        built = Counter(Item.objects.filter(trial=trial, superseded_at__isnull=True, case_id__in=ready)
                        .values_list("case_id", flat=True))
        return all(built[pk] == 4 for pk in ready)

    wait.until(items_built, f"day {day}: the scoring items of {len(ready)} cases")

    for expert in experts:
        todo = (Assignment.objects.filter(expert=expert, item__trial=trial, item__superseded_at__isnull=True,
                                          qualityscores__isnull=True, preferences__isnull=True,
                                          findingvotes__isnull=True)
                .select_related("item").order_by("item__phase", "order_key"))
        for assignment in todo:
            _answer(trial, assignment, expert.user, clk, rng)


def _read(trial, read: Read, user, clk: SimulatedClock, rng) -> None:
    reading_services.record_event(read_id=read.pk, by=user, kind="opened", tab_id=TAB)
    seconds, spent = float(rng.lognormal(np.log(100), 0.3)), 0.0
    while spent + 30 < seconds:
        clk.advance(30)
        spent += 30
        reading_services.record_event(read_id=read.pk, by=user, kind="heartbeat", tab_id=TAB)
    clk.advance(seconds - spent)
    draft = reading_selectors.visible_draft(read=read)
    if draft is not None:
        findings, impression = draft.findings, f"{draft.impression} Reviewed."
    else:
        findings, impression = "The lungs are clear. Heart size normal.", "No acute cardiopulmonary abnormality."
    flags = {f: bool(rng.random() < 0.15) for f in trial.findings}
    saved = reading_services.autosave(read_id=read.pk, by=user, findings=findings, impression=impression,
                                      finding_flags=flags, base_version=None, tab_id=TAB)
    reading_services.submit_report(read_id=read.pk, by=user, findings=findings, impression=impression,
                                   finding_flags=flags, base_version=saved.version, tab_id=TAB)
    clk.advance(float(rng.uniform(20, 90)))


def _answer(trial, assignment: Assignment, user, clk: SimulatedClock, rng) -> None:
    scoring_services.open_assignment(assignment=assignment, by=user)
    clk.advance(float(rng.uniform(20, 70)))
    kind = assignment.item.kind
    if kind == ItemKind.REFERENCE:
        marks = {f: "present" if rng.random() < 0.1 else "absent" for f in trial.findings}
        scoring_services.submit_findings(assignment=assignment, by=user, marks=marks)
    elif kind == ItemKind.QUALITY:
        score = int(rng.integers(2, 6))
        scoring_services.submit_quality_score(assignment=assignment, by=user, overall=score,
                                              radpeer=radpeer.CODE_FOR_SCORE[score])
    else:
        scoring_services.submit_preference(assignment=assignment, by=user, choice=str(rng.choice(["A", "B", "none"])))
