"""A trial ready for scoring: reads submitted in both arms, experts added, the trial moved to "scoring"
(which builds the items through scoring.tasks.trial_status_changed, run eagerly)."""
from __future__ import annotations

import pytest

from reading import services as reading_services
from reading.models import Read
from tests.reading.conftest import build_trial  # noqa: F401  (the reading app's fixture, reused)
from trial import services as trial_services
from trial.models import Role

ASSISTED_TEXT = ("Small left pleural effusion with basal atelectasis.", "Left effusion, small.")
STANDARD_TEXT = ("Blunting of the left costophrenic angle. Heart size normal.", "Probable small left effusion.")


def submit_all_reads(trial, *, user_of=None):
    """Every read of the trial submitted, in the order crossover washouts allow; texts differ by arm and case."""
    for period in (1, 2):
        for read in Read.objects.filter(trial=trial, period=period).select_related("reader__user", "case"):
            user = read.reader.user
            findings, impression = ASSISTED_TEXT if read.arm == "assisted" else STANDARD_TEXT
            reading_services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t1")
            reading_services.submit_report(read_id=read.pk, by=user, findings=f"{findings} Case {read.case.code[-2:]}.",
                                           impression=impression, finding_flags={}, tab_id="t1")


def add_experts(trial, investigator, make_user, n: int, prefix: str = "expert"):
    experts = []
    for i in range(n):
        user = make_user(f"{trial.code}-{prefix}{i}")
        trial_services.add_member(trial=trial, by=investigator, user=user, role=Role.EXPERT)
        experts.append(user)
    return experts


@pytest.fixture
def scoring_trial(build_trial, investigator, make_user, django_capture_on_commit_callbacks):  # noqa: F811
    def build(*, n_experts=5, experts_per_item=None, n_cases=4, design="paired_parallel", readers_per_site=2,
              code="st", move=True, **kwargs):
        trial, readers, cases, model = build_trial(design=design, readers_per_site=readers_per_site,
                                                   n_cases=n_cases, code=code, **kwargs)
        if experts_per_item is not None:  # a design setting, frozen after setup: set directly for the test
            type(trial).objects.filter(pk=trial.pk).update(experts_per_item=experts_per_item)
            trial.refresh_from_db()
        experts = add_experts(trial, investigator, make_user, n_experts)
        submit_all_reads(trial)
        if move:
            with django_capture_on_commit_callbacks(execute=True):
                trial = trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
        trial.refresh_from_db()
        return trial, readers, experts, cases

    return build
