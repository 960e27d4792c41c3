"""A small, complete, simulated paired-parallel trial for the stats app's tests (fixtures only, no tests here).

Reads go through reading.services with a controlled clock (so active seconds are real event-log
times); the scoring rows are fabricated in the scoring app's analysis_rows format and stand in for
scoring.selectors.analysis_rows in the test, so these tests do not depend on the scoring screens.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ai.models import AIDraft
from core.clock import simulated as simulated_clock
from reading import services as reading_services
from reading.models import Read
from scoring import radpeer as radpeer_scale
from scoring import selectors as scoring_selectors
from tests.reading.conftest import build_trial  # noqa: F401  (a fixture, used by complete_trial)
from tests.signing import move, proof
from trial import services as trial_services
from trial.models import Role, Status, Trial


@dataclass
class SimTrial:
    trial: Trial
    investigator: object
    statistician: object
    readers: list
    experts: list
    outsider: object
    scoring: dict = field(default_factory=dict)

    def refresh(self) -> Trial:
        self.trial.refresh_from_db()
        return self.trial


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


def read_for(read: Read, user, *, seconds: float, flags: dict[str, bool], clock: Clock) -> None:
    """The reader opens the case, stays active (heartbeats every 10 s) and submits after `seconds`."""
    start = clock.now
    clock.now = start
    reading_services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="tab-1")
    t = 10.0
    while t < seconds:
        clock.now = start + timedelta(seconds=t)
        reading_services.record_event(read_id=read.pk, by=user, kind="heartbeat", tab_id="tab-1")
        t += 10.0
    clock.now = start + timedelta(seconds=seconds)
    reading_services.submit_report(read_id=read.pk, by=user, findings="Lungs and pleura described.",
                                   impression="Impression written by the reader.", finding_flags=flags, tab_id="tab-1")
    clock.now += timedelta(seconds=30)


def fabricate_scoring(trial: Trial, experts: list[str], truth: dict, rng: np.random.Generator, *,
                      reader_sd: float = 0.0, case_sd: float = 0.0, expert_sd: float = 0.0) -> dict:
    """Scoring rows in scoring.selectors.analysis_rows' format: quality per report and expert, preferences,
    reference standard. `reader_sd` and `case_sd` add reader and case effects to the report's latent quality,
    `expert_sd` an expert effect to each expert's score (0: none, as before)."""
    rows = {"quality": [], "preference": [], "finding_votes": [], "reference_standard": []}
    reads = list(Read.objects.filter(trial=trial).select_related("case", "reader").order_by("case__code", "arm"))
    reader_effect, case_effect = {}, {}
    if reader_sd > 0:
        reader_effect = {p: float(rng.normal(0, reader_sd)) for p in sorted({r.reader.pseudonym for r in reads})}
    if case_sd > 0:
        case_effect = {c: float(rng.normal(0, case_sd)) for c in sorted({r.case.code for r in reads})}
    expert_effect = {e: float(rng.normal(0, expert_sd)) for e in experts} if expert_sd > 0 else {}
    latent = {}
    for read in reads:
        base = 3.6 + (0.5 if read.arm == "assisted" else 0.0) + rng.normal(0, 0.4)
        base += reader_effect.get(read.reader.pseudonym, 0.0) + case_effect.get(read.case.code, 0.0)
        latent[(read.case.code, read.arm)] = base
        for e in experts:
            value = int(np.clip(np.rint(base + expert_effect.get(e, 0.0) + rng.normal(0, 0.7)), 1, 5))
            radpeer = int(np.clip(np.rint(base - 0.3 + rng.normal(0, 0.6)), 1, 5))
            rows["quality"].append({
                "trial": trial.code, "case": read.case.code, "site": "site-a", "item": 1, "expert": e, "position": 1,
                "version": 1, "corrected": False, "opened_at": None, "submitted_at": None,
                "seconds": float(round(rng.uniform(15, 80), 3)), "arm": read.arm, "reader": read.reader.pseudonym,
                "period": 1, "read": read.pk, "report": None, "report_version": 1, "overall": value,
                "radpeer": radpeer_scale.CODE_FOR_SCORE[radpeer], "comment": ""})
    reader_of = {(read.case.code, read.arm): read.reader.pseudonym for read in reads}
    for case in sorted({r.case.code for r in reads}):
        diff = latent[(case, "assisted")] - latent[(case, "standard")]
        for e in experts:
            u = rng.normal(diff, 0.8)
            preferred = "assisted" if u > 0.2 else "standard" if u < -0.2 else None
            left = "assisted" if rng.random() < 0.5 else "standard"
            rows["preference"].append({
                "trial": trial.code, "case": case, "expert": e, "left_arm": left, "assisted_side": "A" if left ==
                "assisted" else "B", "choice": "none" if preferred is None else ("A" if preferred == left else "B"),
                "reader_assisted": reader_of[(case, "assisted")], "reader_standard": reader_of[(case, "standard")],
                "preferred_arm": preferred, "seconds": float(round(rng.uniform(15, 80), 3))})
    for (case, finding), present in sorted(truth.items()):
        rows["reference_standard"].append({"trial": trial.code, "case": case, "site": "site-a", "finding": finding,
                                           "present": bool(present), "method": "majority"})
    return rows


@pytest.fixture
def complete_trial(build_trial, make_user, investigator, monkeypatch, django_capture_on_commit_callbacks):
    """A locked paired-parallel trial: 16 cases, 4 readers (2 per arm), 3 experts' scores, AI scores, a statistician."""

    def make(*, n_cases: int = 16, lock: bool = True, code: str = "st", seed: int = 7, readers_per_site: int = 4,
             sites: tuple[str, ...] = ("site-a",), reader_sd: float = 0.0, case_sd: float = 0.0,
             expert_sd: float = 0.0) -> SimTrial:
        rng = np.random.default_rng(seed)
        trial, readers, cases, model = build_trial(readers_per_site=readers_per_site, n_cases=n_cases, code=code,
                                                   sites=sites)
        statistician = make_user(f"{code}-tina")
        trial_services.add_member(trial=trial, by=investigator, user=statistician, role=Role.STATISTICIAN)
        experts = []
        for i in range(3):
            user = make_user(f"{code}-expert{i}")
            trial_services.add_member(trial=trial, by=investigator, user=user, role=Role.EXPERT)
            experts.append(user)
        outsider = make_user(f"{code}-oscar")
        findings = list(trial.findings)
        prevalence = np.linspace(0.25, 0.55, len(findings))
        truth = {}
        for case in cases:
            scores = {}
            for f, p in zip(findings, prevalence):
                t = int(rng.random() < p)
                truth[(case.code, f)] = t
                scores[f] = round(float(1 / (1 + np.exp(-(rng.normal(0, 1.2) + 1.8 * (2 * t - 1))))), 6)
            AIDraft.objects.filter(case=case).update(finding_scores=scores)
        clock = Clock()
        users = {u.pk: u for u in readers}
        with simulated_clock(clock):
            for read in Read.objects.filter(trial=trial).select_related("case", "reader").order_by("case__code", "arm"):
                base = rng.lognormal(np.log(90), 0.3) * (0.8 if read.arm == "assisted" else 1.0)
                sens = 0.8 if read.arm == "assisted" else 0.65
                flags = {f: bool(rng.random() < (sens if truth[(read.case.code, f)] else 0.1)) for f in findings}
                read_for(read, users[read.reader.user_id], seconds=float(round(base)), flags=flags, clock=clock)
        expert_codes = list(trial.memberships.filter(role=Role.EXPERT).order_by("pseudonym")
                            .values_list("pseudonym", flat=True))
        scoring = fabricate_scoring(trial, expert_codes, truth, rng, reader_sd=reader_sd, case_sd=case_sd,
                                    expert_sd=expert_sd)
        real_rows = scoring_selectors.analysis_rows
        monkeypatch.setattr(scoring_selectors, "analysis_rows",
                            lambda t, **kw: scoring if t.pk == trial.pk else real_rows(t, **kw))
        if lock:
            for status in (Status.SCORING, Status.LOCKED):
                with django_capture_on_commit_callbacks(execute=True):
                    move(trial, by=investigator, to=status)
        trial.refresh_from_db()
        return SimTrial(trial=trial, investigator=investigator, statistician=statistician, readers=readers,
                        experts=experts, outsider=outsider, scoring=scoring)

    return make


# ------------------------------------------------------------------------------------------ helpers


_STANDARD_OK = re.compile(r"reference[ _]standard", re.I)


def arm_words(text: str) -> list[str]:
    """Every place where a real arm name appears ("reference standard" is a domain term, not an arm)."""
    lowered = _STANDARD_OK.sub("reference-std", text.lower())
    hits = []
    for word in ("assisted", "standard"):
        for m in re.finditer(word, lowered):
            hits.append(lowered[max(0, m.start() - 60): m.end() + 40])
    return hits


def assert_masked(text: str, where: str = "") -> None:
    hits = arm_words(text)
    assert not hits, f"a real arm name is visible before unblinding{(' in ' + where) if where else ''}: {hits[:3]}"


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def freeze_default_plan(sim: SimTrial, by=None):
    from stats import plan as plan_schema
    from stats import services

    by = by or sim.statistician
    plan = services.create_plan_version(trial=sim.trial, by=by,
                                        content=plan_schema.default_plan(sim.trial.design))
    return services.freeze_plan(plan=plan, by=by, proof=proof(by))


def run_now(sim: SimTrial, django_capture_on_commit_callbacks, by=None):
    from stats import services

    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(trial=sim.trial, by=by or sim.statistician)
    run.refresh_from_db()
    return run
