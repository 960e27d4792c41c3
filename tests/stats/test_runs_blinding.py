"""Blinding of the analysis: arms masked as X/Y everywhere an analyst looks until unblinding; who may look at all."""
from __future__ import annotations

import io
import tempfile

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from stats.models import AnalysisRun
from tests.signing import move
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    arm_words,
    assert_masked,
    build_trial,
    complete_trial,
    csv_rows,
    freeze_default_plan,
    run_now,
    zip_members,
)
from trial import services as trial_services
from trial.models import AuditEvent, CaseIdentity


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _pages(trial, run) -> list[str]:
    base = f"/t/{trial.code}/analysis"
    return [f"{base}/", f"{base}/plan/", f"{base}/runs/{run.number}/", f"{base}/plan/1.json",
            f"{base}/runs/{run.number}/report.html"]


def _apis(trial, run) -> list[str]:
    base = f"/api/trials/{trial.code}/analysis"
    return [f"{base}/plans/", f"{base}/plans/1/", f"{base}/runs/", f"{base}/runs/{run.number}/",
            f"{base}/runs/{run.number}/progress/"]


def _statistics_files_text(name: str, data: bytes) -> str:
    """Every value, label and name of an SPSS or Stata file, as text."""
    import pyreadstat

    with tempfile.NamedTemporaryFile(suffix="." + name.rsplit(".", 1)[1]) as fh:
        fh.write(data)
        fh.flush()
        reader = pyreadstat.read_sav if name.endswith(".sav") else pyreadstat.read_dta
        frame, meta = reader(fh.name)
    return " ".join([frame.to_csv(index=False), " ".join(meta.column_names),
                     " ".join(str(v) for v in meta.column_labels), str(meta.file_label)])


def _zip_text(data: bytes) -> dict[str, str]:
    out = {}
    for name, member in zip_members(data).items():
        if name.endswith((".sav", ".dta")):
            out[name] = _statistics_files_text(name, member) + member.decode("latin-1")
        elif name.endswith(".xlsx"):
            out[name] = " ".join(x.decode("utf-8") for x in zip_members_flat(member).values())
        else:
            out[name] = member.decode("utf-8")
    return out


def zip_members_flat(data: bytes) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


@pytest.mark.django_db
def test_nothing_a_statistician_sees_names_an_arm_before_unblinding(complete_trial, client,
                                                                     django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    client.force_login(sim.statistician)
    for url in _pages(sim.trial, run):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_masked(response.content.decode(), url)
    page = client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/").content.decode()
    assert "arm X" in page and "arm Y" in page and "Quality" in page and "Flow of cases" in page
    assert "Withheld" in page  # automation bias exists in one arm only: it would reveal the mapping
    for name in ("reading_time", "quality", "forest", "preference"):
        response = client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/plots/{name}.png")
        assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"
    api = _api(sim.statistician)
    for url in _apis(sim.trial, run):
        response = api.get(url)
        assert response.status_code == 200, url
        assert_masked(response.content.decode(), url)
    detail = api.get(f"/api/trials/{sim.trial.code}/analysis/runs/{run.number}/").json()
    assert detail["arm_mapping"] is None and detail["masked"] is True
    assert detail["results"]["automation_bias"]["status"] == "withheld"

    response = client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/export.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    texts = _zip_text(response.content)
    assert {"csv/reads.csv", "xlsx/cxr-trial-st-run001.xlsx", "spss/reads.sav", "stata/reads.dta",
            "data_dictionary.csv", "data_dictionary.md", "plan.json", "results.json", "README.md",
            "MANIFEST.sha256"} <= set(texts)
    assert "identities.csv" not in texts and "arms.csv" not in texts
    for name, text in texts.items():
        assert_masked(text, name)
    reports = csv_rows(zip_members(response.content)["csv/reports.csv"])
    assert "draft_kept_share" not in reports[0] and {r["arm"] for r in reports} == {"X", "Y"}
    # the investigator, who sees the allocations, gets no masked run at all (test_investigators_get_no_masked_run)
    client.force_login(sim.investigator)
    assert client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/").status_code == 403


@pytest.mark.django_db
def test_unblinding_reveals_the_mapping_and_the_investigator_alone_gets_the_accession_link(
        complete_trial, client, django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    case = sim.trial.cases.order_by("code").first()
    CaseIdentity.objects.update_or_create(case=case,
                                          defaults={"accession_number": "ACC-123", "sop_instance_uid": "1.2"})
    with django_capture_on_commit_callbacks(execute=True):
        move(sim.trial, by=sim.investigator, to="unblinded", statistician=sim.statistician)
    run = AnalysisRun.objects.get(pk=run.pk)
    real_x = run.arm_mapping["X"]
    client.force_login(sim.statistician)
    page = client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/").content.decode()
    assert f"{'AI-assisted' if real_x == 'assisted' else 'standard care'} (arm X)" in page
    assert "Reports written from a draft" in page  # automation bias now shown
    detail = _api(sim.statistician).get(f"/api/trials/{sim.trial.code}/analysis/runs/{run.number}/").json()
    assert detail["arm_mapping"] == run.arm_mapping and detail["masked"] is False
    files = zip_members(client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/export.zip").content)
    assert {r["arm"] for r in csv_rows(files["csv/reads.csv"])} == {"assisted", "standard"}
    assert csv_rows(files["arms.csv"]) == [{"code": "X", "arm": real_x},
                                           {"code": "Y", "arm": run.arm_mapping["Y"]}]
    assert "identities.csv" not in files and "ACC-123" not in " ".join(_zip_text(
        client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/export.zip").content).values())
    client.force_login(sim.investigator)
    files = zip_members(client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/export.zip").content)
    identities = csv_rows(files["identities.csv"])
    assert len(identities) == 16
    assert identities[0] == {**identities[0], "case": case.code, "accession_number": "ACC-123"}
    assert AuditEvent.objects.filter(action="analysis_run.exported", payload__identities=True).count() == 1
    # a run after unblinding: arm X is the assisted arm, and said so
    run2 = run_now(sim, django_capture_on_commit_callbacks)
    assert run2.arm_mapping == {"X": "assisted", "Y": "standard"} and run2.status == "done"


@pytest.mark.django_db
def test_only_investigators_and_statisticians_reach_the_analysis(complete_trial, client,
                                                                   django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    for user in (sim.readers[0], sim.experts[0], sim.outsider):
        client.force_login(user)
        for url in _pages(sim.trial, run) + [f"/t/{sim.trial.code}/analysis/runs/{run.number}/export.zip",
                                             f"/t/{sim.trial.code}/analysis/runs/{run.number}/plots/forest.png"]:
            assert client.get(url).status_code == 403, (user, url)
        assert client.post(f"/t/{sim.trial.code}/analysis/runs/").status_code == 403
        api = _api(user)
        for url in _apis(sim.trial, run) + [f"/api/trials/{sim.trial.code}/analysis/runs/{run.number}/export/"]:
            assert api.get(url).status_code == 403, (user, url)
        assert api.post(f"/api/trials/{sim.trial.code}/analysis/runs/").status_code == 403
    assert AnalysisRun.objects.count() == 1
    client.logout()
    assert client.get(f"/t/{sim.trial.code}/analysis/").status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_api_starts_a_run_and_reports_its_progress(complete_trial, django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    api = _api(sim.statistician)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/trials/{sim.trial.code}/analysis/runs/")
    assert response.status_code == 202 and response.json()["number"] == 1
    progress = api.get(f"/api/trials/{sim.trial.code}/analysis/runs/1/progress/").json()
    assert progress["status"] == "done" and progress["progress"] == 100 and progress["done"] is True
    export = api.get(f"/api/trials/{sim.trial.code}/analysis/runs/1/export/")
    assert export.status_code == 200 and export["Content-Disposition"].endswith('run001.zip"')
    assert not arm_words(" ".join(_zip_text(export.content).values()))


def _run_urls(trial, run) -> list[str]:
    base, api = f"/t/{trial.code}/analysis/runs/{run.number}", f"/api/trials/{trial.code}/analysis/runs/{run.number}"
    return [f"{base}/", f"{base}/report.html", f"{base}/export.zip", f"{base}/plots/forest.png",
            f"{base}/plots/quality.png", f"{api}/", f"{api}/progress/", f"{api}/export/",
            f"/t/{trial.code}/analysis/power/?from_run={run.number}"]


@pytest.mark.django_db
def test_investigators_get_no_masked_run_and_start_none(complete_trial, client, make_user,
                                                          django_capture_on_commit_callbacks):
    """Whoever can see the allocations would unmask X and Y at a glance: before unblinding, investigators (also one
    who is a statistician of the trial too) get no masked run's results, report, plots or dataset, and start no
    run; they keep the plan and the list of runs. After unblinding, they see everything."""
    from stats import selectors, services
    from trial.models import Role

    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    both = make_user("st-ivy")
    trial_services.add_member(trial=sim.trial, by=sim.investigator, user=both, role=Role.INVESTIGATOR)
    trial_services.add_member(trial=sim.trial, by=sim.investigator, user=both, role=Role.STATISTICIAN)
    exported = AuditEvent.objects.filter(action="analysis_run.exported").count()
    for user in (sim.investigator, both):
        client.force_login(user)
        api = _api(user)
        for url in _run_urls(sim.trial, run):
            response = (api if url.startswith("/api/") else client).get(url)
            assert response.status_code == 403, (user, url)
            assert_masked(response.content.decode("utf-8", "replace"), url)
        home = client.get(f"/t/{sim.trial.code}/analysis/")
        assert home.status_code == 200 and f'href="/t/{sim.trial.code}/analysis/runs/1/"' not in home.content.decode()
        assert "statisticians only" in home.content.decode() and 'data-testid="start-run"' not in home.content.decode()
        assert api.get(f"/api/trials/{sim.trial.code}/analysis/runs/").status_code == 200   # the list, no results
        with django_capture_on_commit_callbacks(execute=True):
            refused = api.post(f"/api/trials/{sim.trial.code}/analysis/runs/")
        assert refused.status_code == 403 and "statisticians only" in refused.json()["detail"]
        with pytest.raises(PermissionDenied, match="statisticians only"):
            services.start_run(trial=sim.trial, by=user)
        with pytest.raises(PermissionDenied):
            services.export_run(run=run, by=user)
    assert AnalysisRun.objects.count() == 1
    assert AuditEvent.objects.filter(action="analysis_run.exported").count() == exported
    # staff without the statistician role hold no trial role: refused like anyone else
    staff = make_user("st-admin")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    assert client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/").status_code == 403
    # after unblinding, the investigator sees the run and may start one
    with django_capture_on_commit_callbacks(execute=True):
        move(sim.trial, by=sim.investigator, to="unblinded", statistician=sim.statistician)
    client.force_login(sim.investigator)
    assert client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/").status_code == 200
    assert client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/export.zip").status_code == 200
    run2 = run_now(sim, django_capture_on_commit_callbacks, by=sim.investigator)
    assert run2.status == "done" and selectors.is_unblinded(run2.trial)
