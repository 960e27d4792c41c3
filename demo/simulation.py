"""The demo: a complete trial with results and a live one to try by hand, simulated through the services.

Everything is written by the same services a real trial uses (so the audit log, the blinding and the
statistics see ordinary data); only the clocks of reading and scoring are simulated, so that reading
times are realistic. The simulated effects follow the Janus-Pro-CXR paper: assisted reads about 18 %
faster, reports scored about a quarter point higher, the assisted report preferred somewhat more often.
Never for clinical use: the images are phantoms and the model is a demo model trained on them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from ai.labeler import label_report
from ai.models import AIDraft, DraftStatus
from core.clock import now as clock_now
from core.clock import simulated as simulated_clock
from demo import phantoms
from reading import services as reading_services
from reading.models import Read, ReadStatus, Report
from scoring import radpeer
from scoring import services as scoring_services
from scoring.models import Assignment, ItemKind
from trial import signatures
from trial.models import Role


class SimulatedClock:
    """Stands in for the services' clock: time moves only when the simulation says so."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=float(seconds))


@dataclass
class Phantom:
    labels: dict[str, bool]
    report: str


def enrol_phantoms(*, trial, sites, by, count: int, seed: int, enrol: Callable) -> dict[str, Phantom]:
    """Enrol `count` phantom radiographs across the sites; returns case code → true labels and report."""
    rng = np.random.default_rng(seed)
    truth: dict[str, Phantom] = {}
    for i in range(count):
        findings = phantoms.random_findings(rng)
        phantom = phantoms.make_phantom(findings=findings, seed=seed * 1000 + i, size=512)
        case = enrol(trial=trial, site=sites[i % len(sites)], by=by, data=phantom.dicom,
                     filename=f"phantom-{i:03d}.dcm", clinical_history=phantom.clinical_history)
        truth[case.code] = Phantom(dict(phantom.labels), phantom.report.text)
    return truth


def wait_for(condition: Callable[[], tuple[int, int]], *, what: str, timeout: float, progress) -> None:
    """Poll until condition() says done == total; fail clearly if nothing moves for a minute."""
    last, last_change, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while True:
        done, total = condition()
        progress(what, done, total)
        if done >= total:
            return
        if done != last:
            last, last_change = done, time.monotonic()
        if time.monotonic() - last_change > 120 or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: stuck at {done} of {total}. Is the Celery worker running "
                               f"(celery -A config worker -Q default,ai)? See var/worker.log.")
        time.sleep(1)


def _standard_report(labels: dict[str, bool], rng) -> tuple[str, str, dict[str, bool]]:
    """A reader without AI: sees most findings, misses some, now and then over-calls one."""
    seen = {f: (present and rng.random() < 0.78) or (not present and rng.random() < 0.04)
            for f, present in labels.items()}
    positives = [f for f, v in seen.items() if v]
    if not positives:
        return "The lungs are clear. Heart size is normal. No pleural effusion or pneumothorax.", \
            "No acute cardiopulmonary abnormality.", seen
    findings = " ".join(f"There is {f}." for f in positives)
    return findings, ", ".join(positives).capitalize() + ".", seen


def _assisted_report(draft: AIDraft, labels: dict[str, bool], rng) -> tuple[str, str, dict[str, bool]]:
    """A reader with the draft: keeps most of it, corrects what they see is wrong (not always)."""
    called = {f: s == "present" for f, s in label_report(f"{draft.findings}\n{draft.impression}", list(labels)).items()}
    seen = {}
    for f, present in labels.items():
        if called.get(f) == present:
            seen[f] = present if rng.random() < 0.97 else not present
        else:
            # a vigilant reader catches most of the draft's errors (the paper's better reports)
            seen[f] = present if rng.random() < 0.9 else called.get(f, False)
    findings, impression = draft.findings, draft.impression
    missed = [f for f, v in seen.items() if v and not called.get(f)]
    if missed:
        findings += " " + " ".join(f"There is also {f}." for f in missed)
        impression += " Also " + ", ".join(missed) + "."
    return findings, impression or "No acute cardiopulmonary abnormality.", seen


def simulate_reading(*, trial, truth: dict[str, Phantom], leave_per_reader: int, seed: int,
                     clock: SimulatedClock, progress) -> int:
    """Each reader reads their worklist in order, with log-normal reading times (assisted ~18 % faster)."""
    rng = np.random.default_rng(seed)
    submitted = 0
    readers = trial.memberships.filter(role=Role.READER).select_related("user")
    reads_by_reader = {m.pk: list(Read.objects.filter(reader=m).exclude(status=ReadStatus.SUBMITTED)
                                  .select_related("case").order_by("order_key")) for m in readers}
    total = sum(max(0, len(v) - leave_per_reader) for v in reads_by_reader.values())
    reader_speed = {m.pk: rng.lognormal(0, 0.2) for m in readers}
    with simulated_clock(clock):
        for membership in readers:
            for read in reads_by_reader[membership.pk][:max(0, len(reads_by_reader[membership.pk]) - leave_per_reader)]:
                labels = truth[read.case.code].labels if read.case.code in truth else {}
                labels = {f: bool(labels.get(f, False)) for f in trial.findings}
                draft = AIDraft.objects.filter(case=read.case, status=DraftStatus.READY).first()
                if read.arm == "assisted" and draft is not None:
                    findings, impression, flags = _assisted_report(draft, labels, rng)
                    seconds = rng.lognormal(np.log(120 * 0.82), 0.35)
                else:
                    findings, impression, flags = _standard_report(labels, rng)
                    seconds = rng.lognormal(np.log(120), 0.35)
                seconds *= reader_speed[membership.pk]
                user = membership.user
                reading_services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="demo")
                t = 0.0
                while t + 15 < seconds:
                    clock.advance(15)
                    t += 15
                    reading_services.record_event(read_id=read.pk, by=user, kind="heartbeat", tab_id="demo")
                clock.advance(seconds - t)
                reading_services.submit_report(read_id=read.pk, by=user, findings=findings, impression=impression,
                                               finding_flags=flags, tab_id="demo")
                clock.advance(rng.uniform(20, 90))  # the next case is opened a little later
                submitted += 1
                progress("simulated reads", submitted, total)
    return submitted


def simulate_signoff(*, trial, leave: int, seed: int, clock: SimulatedClock, progress) -> int:
    """The senior signs the submitted reports, as written, oldest first (in the paper every report was checked by a
    senior before release); the last `leave` are left for a person to sign."""
    rng = np.random.default_rng(seed)
    senior = trial.memberships.select_related("user").get(role=Role.SENIOR).user
    reports = list(Report.objects.filter(read__trial=trial, signed_at__isnull=True).order_by("created_at", "pk"))
    todo = reports[:max(0, len(reports) - leave)]
    with simulated_clock(clock):
        for done, report in enumerate(todo, start=1):
            clock.advance(rng.uniform(20, 60))
            reading_services.sign_report(report=report, by=senior,
                                         proof=signatures.simulated(senior, by_what="the demo"))
            progress("simulated sign-offs", done, len(todo))
    return len(todo)


def _quality_of(assignment: Assignment, truth: dict[str, Phantom], rng) -> int:
    shown = assignment.item.shown_reports.first()
    labels = truth.get(assignment.item.case.code)
    base = 4.1
    if labels is not None:
        called = label_report(f"{shown.findings}\n{shown.impression}", list(labels.labels))
        errors = sum((called[f] == "present") != present for f, present in labels.labels.items())
        base = 4.6 - 0.55 * errors
    if shown.arm == "assisted":
        base += 0.25  # the paper's effect on the writing itself (structure, completeness): Δ ≈ 0.24
    return int(np.clip(np.rint(base + rng.normal(0, 0.6)), 1, 5))


def simulate_scoring(*, trial, truth: dict[str, Phantom], leave_per_expert: int, seed: int,
                     clock: SimulatedClock, progress) -> int:
    """Every expert answers their items in their stored order: image alone, each report, then the pair."""
    rng = np.random.default_rng(seed)
    experts = trial.memberships.filter(role=Role.EXPERT).select_related("user")
    plans = {}
    for expert in experts:
        # the order the server enforces: images alone, then reports alone, then pairs; what is left for a
        # person to try comes from the end (pairs), so no later phase is answered before an earlier one
        open_items = list(Assignment.objects.filter(expert=expert, item__superseded_at__isnull=True)
                          .select_related("item__case").order_by("item__phase", "order_key"))
        open_items = [a for a in open_items if not _answered(a)]
        plans[expert.pk] = open_items[:max(0, len(open_items) - leave_per_expert)]
    total, done = sum(len(v) for v in plans.values()), 0
    with simulated_clock(clock):
        for expert in experts:
            quality: dict[tuple[int, str], int] = {}
            for assignment in plans[expert.pk]:
                user = expert.user
                scoring_services.open_assignment(assignment=assignment, by=user)
                clock.advance(rng.uniform(20, 70))
                kind, case = assignment.item.kind, assignment.item.case
                if kind == ItemKind.REFERENCE:
                    labels = truth.get(case.code)
                    marks = {f: ("present" if (labels and labels.labels.get(f)) ^ (rng.random() < 0.06) else "absent")
                             for f in trial.findings}
                    scoring_services.submit_findings(assignment=assignment, by=user, marks=marks)
                elif kind == ItemKind.QUALITY:
                    score = _quality_of(assignment, truth, rng)
                    quality[(case.pk, assignment.item.shown_reports.first().arm)] = score
                    scoring_services.submit_quality_score(assignment=assignment, by=user, overall=score,
                                                          radpeer=radpeer.CODE_FOR_SCORE[score])
                else:
                    a = quality.get((case.pk, "assisted"), 4) + rng.normal(0.1, 0.7)
                    s = quality.get((case.pk, "standard"), 4) + rng.normal(0, 0.7)
                    if abs(a - s) < 0.3 and trial.allow_no_preference:
                        choice = "none"
                    else:
                        assisted_wins = a > s
                        choice = (assignment.assisted_side if assisted_wins
                                  else ("B" if assignment.assisted_side == "A" else "A"))
                    scoring_services.submit_preference(assignment=assignment, by=user, choice=choice)
                done += 1
                progress("simulated expert answers", done, total)
    return done


def _answered(assignment: Assignment) -> bool:
    return (assignment.qualityscores.exists() or assignment.preferences.exists()
            or assignment.findingvotes.exists())


def start_clock() -> SimulatedClock:
    return SimulatedClock(clock_now() - timedelta(days=20))
