"""A trial ready for reading: readers randomized, cases enrolled, drafts ready (made directly, no model run)."""
from __future__ import annotations

import pytest

from ai.models import AIDraft, DraftStatus, ModelVersion, TrialModel
from tests import dicom_corpus as corpus
from trial import services as trial_services
from trial.models import Role

DRAFT_FINDINGS = "Small left pleural effusion. No pneumothorax."
DRAFT_IMPRESSION = "Small left pleural effusion."


def make_draft(case, model, status=DraftStatus.READY):
    """A draft as the AI worker leaves it, with the audit event the worker writes (so that verify_audit holds)."""
    from django.db import transaction

    from trial import audit

    with transaction.atomic():
        draft = AIDraft.objects.create(case=case, model_version=model, status=status, findings=DRAFT_FINDINGS,
                                       impression=DRAFT_IMPRESSION, text=f"FINDINGS: {DRAFT_FINDINGS}\nIMPRESSION: "
                                       f"{DRAFT_IMPRESSION}", finding_scores={"pleural effusion": 0.9})
        audit.record(actor=None, action=f"draft.{status}", obj=draft, trial=case.trial)
    return draft


@pytest.fixture
def build_trial(investigator, make_user, django_capture_on_commit_callbacks):
    def build(*, design="paired_parallel", readers_per_site=4, n_cases=12, drafts=True, start_reading=True,
              code="rt", sites=("site-a",), washout_days=28):
        # Blocks of 2: every pair of readers of a site is split 1:1, so the arms' sizes are known.
        trial = trial_services.create_trial(by=investigator, code=code, title="Reading trial", design=design,
                                            washout_days=washout_days, block_multiples=[1],
                                            fixed_block_reason="a block of 2 keeps every site in both arms")
        site_objs = [trial_services.add_site(trial=trial, by=investigator, code=s, name=s.title()) for s in sites]
        readers = []
        for site in site_objs:
            for i in range(readers_per_site):
                user = make_user(f"{code}-{site.code}-reader{i}")
                readers.append(user)
                trial_services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=site)
        with django_capture_on_commit_callbacks(execute=True):
            trial = trial_services.transition_trial(trial=trial, by=investigator, to="enrolling")
        cases = []
        for i in range(n_cases):
            with django_capture_on_commit_callbacks(execute=True):
                cases.append(trial_services.enrol_case(
                    trial=trial, site=site_objs[i % len(site_objs)], by=investigator,
                    data=corpus.radiograph_bytes(seed=1000 + i, rows=160, columns=140),
                    clinical_history=f"History {i}"))
        # The model is attached after enrolment so that no model runs here: drafts are written directly.
        model = ModelVersion.objects.create(name=f"m-{code}", backend="http", url="http://127.0.0.1:9/v1")
        TrialModel.objects.create(trial=trial, model_version=model, assigned_by=investigator)
        if drafts:
            for case in cases:
                if not AIDraft.objects.filter(case=case).exists():
                    make_draft(case, model)
        if start_reading:
            with django_capture_on_commit_callbacks(execute=True):
                trial = trial_services.transition_trial(trial=trial, by=investigator, to="reading")
        trial.refresh_from_db()
        return trial, readers, cases, model

    return build
