"""Interim looks on a running trial: who takes them, who sees what, what is kept and what is refused."""
from __future__ import annotations

import copy
import json

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from core.errors import Conflict, WrongStatus
from stats import plan as plan_schema
from stats import selectors, services
from stats.models import InterimLook
from tests.signing import move, proof
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    assert_masked,
    build_trial,
    complete_trial,
    run_now,
)
from trial import services as trial_services
from trial.access import access_to
from trial.models import AuditEvent, Role, Trial


def _interim_plan(sim, **section):
    content = plan_schema.default_plan(sim.trial.design)
    content["power"] = copy.deepcopy(plan_schema.POWER_DEFAULTS)
    content["interim"] = {"planned_cases": 32, **section}
    plan = services.create_plan_version(trial=sim.trial, by=sim.statistician, content=content)
    return services.freeze_plan(plan=plan, by=sim.statistician, proof=proof(sim.statistician))


@pytest.fixture
def running(complete_trial, make_user):
    """A trial in reading with every case scored by its 3 experts (16 of 32 planned cases), a frozen plan that plans
    every kind of look, and a data-monitoring committee member."""
    sim = complete_trial(lock=False, reader_sd=0.3, code="it")
    Trial.objects.filter(pk=sim.trial.pk).update(experts_per_item=3)
    sim.refresh()
    _interim_plan(sim, blinded_ssr={"fraction": 0.5}, safety={"fractions": [0.25, 0.5]},
                  efficacy={"fractions": [0.4, 0.7]})
    sim.monitor = make_user("it-monitor")
    trial_services.add_member(trial=sim.trial, by=sim.investigator, user=sim.monitor, role=Role.MONITOR)
    return sim


def _client(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_blinded_reestimation_is_the_statisticians_and_reveals_no_arm(running):
    sim = running
    look = services.take_interim_look(trial=sim.trial, by=sim.statistician, kind="blinded_ssr")
    assert (look.number, look.sequence, look.planned_fraction) == (1, 1, 0.5)
    assert look.information_fraction == 0.5 and look.cases_complete == 16
    results = look.results
    assert results["status"] == "ok" and results["power"]["re_estimated"]["status"] == "ok"
    assert results["n"]["readers"] == 4 and results["readers_per_arm_observed"] == 2
    assert_masked(json.dumps(results), "the blinded look's results")
    for user in (sim.statistician, sim.investigator):
        page = _client(user).get(f"/t/{sim.trial.code}/analysis/interim/{look.number}/")
        assert page.status_code == 200
        assert_masked(page.content.decode(), "the blinded look's page")
        assert results["advice"] in page.content.decode()
    event = AuditEvent.objects.get(action="interim_look.taken")
    assert event.payload["kind"] == "blinded_ssr" and "results" not in event.payload
    assert_masked(json.dumps(event.payload), "the look's audit event")
    with pytest.raises(PermissionError):
        look.save()
    with pytest.raises(Conflict, match="it has been taken"):
        services.take_interim_look(trial=sim.trial, by=sim.statistician, kind="blinded_ssr")
    with pytest.raises(PermissionDenied, match="statisticians"):
        services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="blinded_ssr")
    assert InterimLook.objects.count() == 1


@pytest.mark.django_db
def test_the_safety_look_is_the_committees_alone_before_unblinding(running, make_user):
    sim = running
    with pytest.raises(PermissionDenied, match="data-monitoring committee"):
        services.take_interim_look(trial=sim.trial, by=sim.statistician, kind="safety")
    look = services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="safety")
    assert set(look.results["by_arm"]) == {"assisted", "standard"}
    assert look.results["critical_findings"] == list(sim.trial.findings)   # the trial's findings by default
    url, api = f"/t/{sim.trial.code}/analysis/interim/{look.number}/", f"/api/trials/{sim.trial.code}/analysis/interim/"
    page = _client(sim.monitor).get(url)
    assert page.status_code == 200 and "assisted" in page.content.decode()
    assert _client(sim.monitor).get(f"{api}{look.number}/").json()["results"]["by_arm"]["assisted"]
    staff = make_user("it-staff", is_staff=True, is_superuser=True)
    trial_services.add_member(trial=sim.trial, by=sim.investigator, user=staff, role=Role.STATISTICIAN)
    for user in (sim.investigator, sim.statistician, staff):
        with pytest.raises(PermissionDenied, match="committee only"):
            selectors.look_for(access=access_to(user=user, trial=sim.trial), number=look.number)
        client = _client(user)
        assert client.get(url).status_code == 403
        assert client.get(f"{api}{look.number}/").status_code == 403
        # that the look happened is shown, and nothing of what it showed
        listing = client.get(f"/t/{sim.trial.code}/analysis/interim/")
        assert listing.status_code == 200 and "Safety" in listing.content.decode()
        assert_masked(listing.content.decode(), "the list of looks")
        rows = client.get(api).json()
        assert rows[0]["kind"] == "safety" and rows[0]["results_visible"] is False and "results" not in rows[0]
    for user in (sim.outsider, sim.readers[0], sim.experts[0]):
        assert _client(user).get(url).status_code == 403
        assert _client(user).get(f"/t/{sim.trial.code}/analysis/interim/").status_code == 403
    # safety looks beyond the planned ones may be taken (the committee meets when it must), marked unplanned
    services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="safety")
    third = services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="safety")
    assert third.planned_fraction is None and third.sequence == 3


@pytest.mark.django_db
def test_efficacy_looks_follow_the_plan_and_stop_at_its_number(running):
    sim = running
    first = services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="efficacy")
    r = first.results
    assert r["look"]["look"] == 1 and r["look"]["fraction"] == 0.5 and r["arms"] == {"X": "assisted", "Y": "standard"}
    assert r["crossed"] == (r["tested_pvalue"] < r["look"]["nominal_p"])
    with pytest.raises(Conflict, match="No new information"):
        services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="efficacy")
    assert InterimLook.objects.filter(kind="efficacy").count() == 1
    with pytest.raises(PermissionDenied):
        services.take_interim_look(trial=sim.trial, by=sim.investigator, kind="efficacy")


@pytest.mark.django_db
def test_looks_are_refused_without_a_planned_look_and_once_the_trial_is_locked(complete_trial, make_user):
    sim = complete_trial(lock=False, code="iu")
    _interim_plan(sim, safety={"fractions": [0.5]})
    monitor = make_user("iu-monitor")
    trial_services.add_member(trial=sim.trial, by=sim.investigator, user=monitor, role=Role.MONITOR)
    with pytest.raises(Conflict, match="plans no efficacy look"):
        services.take_interim_look(trial=sim.trial, by=monitor, kind="efficacy")
    with pytest.raises(Conflict, match="No case is completely scored"):   # 5 experts per item asked, 3 scored
        services.take_interim_look(trial=sim.trial, by=monitor, kind="safety")
    trial_services.transition_trial(trial=sim.trial, by=sim.investigator, to="scoring")
    move(sim.trial, by=sim.investigator, to="locked")
    with pytest.raises(WrongStatus, match="while the trial runs"):
        services.take_interim_look(trial=sim.refresh(), by=monitor, kind="safety")
    assert not InterimLook.objects.exists()
    assert not AuditEvent.objects.filter(action="interim_look.taken").exists()


@pytest.mark.django_db
def test_the_report_lists_every_look_and_after_unblinding_the_analysts_see_them(running,
                                                                              django_capture_on_commit_callbacks):
    sim = running
    services.take_interim_look(trial=sim.trial, by=sim.statistician, kind="blinded_ssr")
    safety = services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="safety")
    efficacy = services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="efficacy")
    trial_services.transition_trial(trial=sim.trial, by=sim.investigator, to="scoring")
    move(sim.trial, by=sim.investigator, to="locked")
    run = run_now(sim, django_capture_on_commit_callbacks)
    assert run.status == "done", run.error
    page = _client(sim.statistician).get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/")
    html = page.content.decode()
    assert page.status_code == 200 and 'id="interim"' in html
    assert "Efficacy looks: 1 taken" in html and "seen by the data-monitoring committee only" in html
    assert_masked(html, "the masked report with its interim looks")
    doc = selectors.interim_for_report(run)
    assert [row["number"] for row in doc["looks"]] == [1, 2, 3]
    assert doc["final"]["fractions"] == [0.5, 1.0]
    move(sim.trial, by=sim.investigator, to="unblinded", statistician=sim.statistician)
    sim.refresh()
    for user in (sim.investigator, sim.statistician):
        assert _client(user).get(f"/t/{sim.trial.code}/analysis/interim/{safety.number}/").status_code == 200
    run = type(run).objects.select_related("trial", "plan").get(pk=run.pk)
    assert selectors.interim_for_report(run)["looks"][2]["outcome"] == efficacy.results["decision"]


def test_a_look_edited_after_it_was_taken_is_named_by_the_audit_check(running):
    from trial import audit

    sim = running
    look = services.take_interim_look(trial=sim.trial, by=sim.monitor, kind="safety")

    def looks_named():  # (the fixture's fabricated data were written past the services: only looks matter here)
        return [r.pk for r in audit.verify().rows if r.model == "stats.InterimLook"]

    assert looks_named() == []
    InterimLook.objects.filter(pk=look.pk).update(results={**look.results, "signal": not look.results.get("signal")})
    assert looks_named() == [str(look.pk)]


def test_the_monitor_finds_the_looks_from_the_trial_page(running):
    sim = running
    page = _client(sim.monitor).get(f"/t/{sim.trial.code}/").content.decode()
    assert f"/t/{sim.trial.code}/analysis/interim/" in page
    assert f"/t/{sim.trial.code}/analysis/interim/" not in _client(sim.readers[0]).get(f"/t/{sim.trial.code}/")\
        .content.decode()
