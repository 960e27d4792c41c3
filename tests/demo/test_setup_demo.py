"""The demo set-up end to end (tasks run in-process here; `make demo` runs them in a real worker)."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from ai.models import AIDraft
from reading.models import Read, Report
from scoring.models import Preference, QualityScore
from stats.models import AnalysisRun
from trial import audit
from trial.models import Trial


@pytest.mark.django_db(transaction=True)
def test_setup_demo_makes_a_trial_with_results_and_a_live_one(tmp_path, settings, capsys):
    settings.VAR_DIR = tmp_path
    call_command("setup_demo", "--untrained-model", "--cases", "6", "--live-cases", "12", "--timeout", "600")
    results, live = Trial.objects.get(code="demo-cxr-results"), Trial.objects.get(code="demo-cxr")
    assert results.status == "unblinded" and results.mode == "reader_study"
    # the live trial is a prospective one, open: films arrived (a few not eligible, in the screening log), each
    # routed at arrival to a reader of each arm at its site
    assert live.status == "open" and live.mode == "prospective"
    assert live.screening.count() > live.cases.count() == live.screening.filter(outcome="enrolled").count()
    for case in live.cases.all():
        assert sorted(case.reads.values_list("arm", flat=True)) == ["assisted", "standard"]
        assert set(case.reads.values_list("reader__site", flat=True)) == {case.site_id}
    assert AIDraft.objects.filter(case__trial=results, status="ready").count() == 6
    assert not Read.objects.filter(trial=results).exclude(status="submitted").exists()
    assert Read.objects.filter(trial=live).exclude(status="submitted").count() > 0  # left for a person
    # every report checked by the senior before release, as in the paper; a few left to sign by hand in the live one
    assert results.require_signoff and not Report.objects.filter(read__trial=results, signed_at__isnull=True).exists()
    assert Report.objects.filter(read__trial=live, signed_at__isnull=True).exists()
    assert QualityScore.objects.filter(assignment__item__trial=results).exists()
    assert Preference.objects.filter(assignment__item__trial=results).exists()
    assert AnalysisRun.objects.get(trial=results).status == "done"
    assert audit.verify().intact
    out = capsys.readouterr().out
    assert "investigator" in out and "demo-password-2026" in out
    call_command("setup_demo", "--untrained-model")  # idempotent: nothing new
    assert Trial.objects.filter(code__startswith="demo-cxr").count() == 2
