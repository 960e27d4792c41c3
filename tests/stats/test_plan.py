"""The analysis plan: versions, validation, freezing (who, when, hash), immutability, and the refusals."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from stats import plan as plan_schema
from stats import services
from stats.errors import Conflict, PlanFrozen, WrongStatus
from stats.models import AnalysisPlan
from tests.signing import credentials, proof
from trial import services as trial_services
from trial.models import AuditEvent, Role, Signature, Trial

DATA = Path(__file__).parent / "data"


@pytest.fixture
def statistician(trial, investigator, make_user):
    user = make_user("tina")
    trial_services.add_member(trial=trial, by=investigator, user=user, role=Role.STATISTICIAN)
    return user


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_default_plan_is_reader_aware_and_valid_for_every_design():
    # changed on purpose with schema 2 (issue 14): the LMM is the primary of every design (it was the
    # paired case-level t, which treats the randomized readers as fixed), the key secondaries are
    # gated by the primary, and a case-randomized trial has no preference (no two reports of a case)
    for design in ("paired_parallel", "case_randomized", "crossover"):
        plan = plan_schema.validate(plan_schema.default_plan(design))
        assert plan["schema"] == 3 and plan["primary"] == {"endpoint": "quality", "test": "lmm"}
        expected = ["reading_time", "radpeer"] if design == "case_randomized" else \
            ["reading_time", "preference", "radpeer"]
        assert [e["endpoint"] for e in plan["secondary"]] == expected
        assert all(e["test"] in ("lmm", "glmm") for e in plan["secondary"])
        assert plan["secondary_adjustment"] == "holm" and plan["exploratory_adjustment"] == "bh"
        assert plan["gatekeeping"] is True and plan["subgroup_adjustment"] == "bh"
        assert plan["covariates"]["quality"][0] == "site" and "reader" in plan["random_effects"]["quality"]
        # every analysis that treats the readers as fixed is a sensitivity, never a planned test
        fixed = [e for family in ("secondary", "exploratory") for e in plan[family]
                 if e["test"] in plan_schema.FIXED_READERS]
        assert not fixed
    paired = plan_schema.default_plan("paired_parallel")
    assert paired["random_effects"]["quality"] == ["case", "reader", "expert", "case:arm"]
    assert {"endpoint": "quality", "test": "paired"} in paired["sensitivity"]
    assert {"endpoint": "quality", "test": "ordinal_glmm"} in paired["sensitivity"]
    assert {"endpoint": "preference", "test": "binomial"} in paired["sensitivity"]
    crossover = plan_schema.default_plan("crossover")
    assert crossover["exploratory"][0] == {"endpoint": "detection", "test": "mrmc"}
    assert "reader:arm" in crossover["random_effects"]["quality"] and "period" in crossover["covariates"]["quality"]
    assert "reader:arm" in plan_schema.default_plan("case_randomized")["random_effects"]["quality"]


def test_every_fixed_reader_analysis_says_so_in_its_label():
    for endpoint, spec in plan_schema.ENDPOINTS.items():
        for test in spec["tests"]:
            label = plan_schema.label_of(endpoint, test)
            assert ("fixed readers — not a test of the AI effect" in label) == (test in plan_schema.FIXED_READERS)


def _schema1():
    with open(DATA / "plans_schema1.json", encoding="utf-8") as fh:
        return json.load(fh)


def test_a_frozen_schema_1_plan_keeps_its_hash_and_is_read_as_it_was_meant():
    stored = _schema1()
    for design, content in stored["plans"].items():
        before = json.dumps(content, sort_keys=True)
        # the hash of the frozen document is computed from the stored content, which nothing rewrites
        assert plan_schema.plan_sha256(trial_code="demo", version=1, content=content) == stored["sha256"][design]
        read = plan_schema.read_plan(content)
        assert json.dumps(content, sort_keys=True) == before            # reading does not touch the stored plan
        assert read["schema"] == 3
        # every analysis it names stays as planned: a paired primary is still the primary
        for family in ("primary", "secondary", "exploratory", "sensitivity"):
            assert read[family] == content[family]
        assert read["random_effects"] == content["random_effects"]
        # the new settings reproduce schema 1: no covariates, no gate, subgroups adjusted like the exploratory
        # family, a majority from any number of votes
        assert read["covariates"] == {} and read["gatekeeping"] is False
        assert read["subgroup_adjustment"] == content["exploratory_adjustment"]
        assert read["preference_min_votes"] == 1
        # and, read through schema 2, no estimands (rows as recorded), no tipping point, no power section
        assert read["estimands"] is None and read["tipping_point"] is False and read["power"] is None
        assert plan_schema.validate(read) == read                        # idempotent


def test_a_schema_the_platform_does_not_know_is_refused():
    with pytest.raises(plan_schema.PlanError, match="reads plan schemas 1, 2, 3, not 4"):
        plan_schema.validate({**plan_schema.default_plan(), "schema": 4})


def test_the_hash_is_the_sha256_of_the_canonical_json_and_ignores_key_order():
    content = plan_schema.validate(plan_schema.default_plan())
    shuffled = json.loads(json.dumps(content, sort_keys=False))
    shuffled = dict(reversed(list(shuffled.items())))
    expected = hashlib.sha256(json.dumps({"trial": "t1", "version": 2, "plan": content}, sort_keys=True,
                                         separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    assert plan_schema.plan_sha256(trial_code="t1", version=2, content=shuffled) == expected
    assert plan_schema.plan_sha256(trial_code="t1", version=3, content=content) != expected


@pytest.mark.parametrize("change, message", [
    ({"primary": {"endpoint": "happiness", "test": "paired"}}, "unknown endpoint"),
    ({"primary": {"endpoint": "preference", "test": "lmm"}}, "takes the test glmm or binomial"),
    ({"covariates": {"quality": ["experience"]}}, "unknown covariate experience"),
    ({"preference_min_votes": 0}, "preference_min_votes must be a whole number"),
    ({"gatekeeping": "yes"}, "gatekeeping must be true or false"),
    ({"subgroups": [{"name": "s", "by": "site", "endpoints": ["detection"]}]}, "subgroup endpoints are"),
    ({"alpha": 0.9}, "alpha must lie strictly between"),
    ({"secondary": [{"endpoint": "quality", "test": "paired"}]}, "already in the plan"),
    ({"random_effects": {"reading_time": ["expert"]}}, "experts do not read"),
    ({"random_effects": {"quality": ["surgeon"]}}, "unknown term"),
    ({"subgroups": [{"name": "big", "by": "weather", "min_findings": 3}]}, "“by” must be one of"),
    ({"typo_field": 1}, "Unknown plan settings"),
])
def test_a_bad_plan_is_refused_with_a_message(change, message):
    with pytest.raises(plan_schema.PlanError, match=message):
        plan_schema.validate({**plan_schema.default_plan(), **change})


@pytest.mark.django_db
def test_freezing_records_who_when_and_the_hash_of_the_plan_file(trial, statistician, client):
    plan = services.create_plan_version(trial=trial, by=statistician, content=plan_schema.default_plan())
    assert plan.version == 1 and not plan.is_frozen and plan.sha256 == ""
    frozen = services.freeze_plan(plan=plan, by=statistician, proof=proof(statistician))
    assert frozen.frozen_by == statistician and frozen.frozen_at is not None
    client.force_login(statistician)
    document = client.get(f"/t/{trial.code}/analysis/plan/1.json").content
    assert hashlib.sha256(document).hexdigest() == frozen.sha256
    assert json.loads(document)["plan"] == frozen.content
    event = AuditEvent.objects.filter(action="analysis_plan.frozen").get()
    assert event.payload == {"version": 1, "sha256": frozen.sha256} and event.actor == statistician


@pytest.mark.django_db
def test_a_frozen_plan_cannot_be_edited_or_frozen_again_and_nothing_changes(trial, statistician):
    plan = services.freeze_plan(plan=services.create_plan_version(trial=trial, by=statistician,
                                                                  content=plan_schema.default_plan()),
                                by=statistician, proof=proof(statistician))
    before = (AnalysisPlan.objects.get(pk=plan.pk).content, plan.sha256, AuditEvent.objects.count())
    changed = {**plan_schema.default_plan(), "alpha": 0.01}
    with pytest.raises(PlanFrozen, match="frozen on .* it cannot change"):
        services.edit_plan(plan=plan, by=statistician, content=changed)
    with pytest.raises(PlanFrozen, match="already frozen"):
        services.freeze_plan(plan=plan, by=statistician, proof=proof(statistician))
    plan.content = changed
    with pytest.raises(PermissionError, match="immutable"):
        plan.save()
    with pytest.raises(PermissionError):
        plan.delete()
    stored = AnalysisPlan.objects.get(pk=plan.pk)
    assert (stored.content, stored.sha256, AuditEvent.objects.count()) == before


@pytest.mark.django_db
def test_an_amendment_is_a_new_version_and_the_old_one_stays(trial, statistician, client):
    v1 = services.freeze_plan(plan=services.create_plan_version(trial=trial, by=statistician,
                                                                content=plan_schema.default_plan()), by=statistician,
                              proof=proof(statistician))
    client.force_login(statistician)
    form = client.get(f"/t/{trial.code}/analysis/plan/")
    assert form.status_code == 200 and "version 2" in form.content.decode()
    response = client.post(f"/t/{trial.code}/analysis/plan/", {
        "primary": "quality.lmm", "secondary": ["reading_time.lmm"], "secondary_adjustment": "holm",
        "exploratory": [], "exploratory_adjustment": "bh", "sensitivity": ["quality.clmm"], "alpha": "0.05",
        "confidence_level": "0.95", "random_quality": ["case", "reader", "expert"], "random_radpeer": ["case"],
        "random_time": ["case", "reader"], "subgroup_reference_min": "3", "ai_threshold": "0.5",
        "subgroup_endpoints": ["reading_time"], "notes": "Amended: LMM primary."})
    assert response.status_code == 302
    v2 = AnalysisPlan.objects.get(trial=trial, version=2)
    assert v2.content["primary"] == {"endpoint": "quality", "test": "lmm"} and not v2.is_frozen
    assert v2.content["subgroups"] == [{"name": "complex_reference", "by": "reference", "min_findings": 3,
                                        "endpoints": ["reading_time"]}]
    assert AnalysisPlan.objects.get(pk=v1.pk).content == v1.content
    # editing the draft keeps its version number
    services.save_plan(trial=trial, by=statistician, content={**v2.content, "alpha": 0.025})
    assert AnalysisPlan.objects.filter(trial=trial).count() == 2
    assert AnalysisPlan.objects.get(trial=trial, version=2).content["alpha"] == 0.025
    # a draft that is no longer the latest version can be neither edited nor frozen
    services.create_plan_version(trial=trial, by=statistician, content=plan_schema.default_plan())
    old_draft = AnalysisPlan.objects.get(trial=trial, version=2)
    with pytest.raises(Conflict, match="not the latest version"):
        services.edit_plan(plan=old_draft, by=statistician, content=plan_schema.default_plan())
    with pytest.raises(Conflict, match="not the latest version"):
        services.freeze_plan(plan=old_draft, by=statistician, proof=proof(statistician))


@pytest.mark.django_db
def test_freezing_is_refused_once_the_trial_is_unblinded(trial, statistician):
    plan = services.create_plan_version(trial=trial, by=statistician, content=plan_schema.default_plan())
    Trial.objects.filter(pk=trial.pk).update(status="unblinded")  # the path there is tested in trial/
    events = AuditEvent.objects.count()
    with pytest.raises(WrongStatus, match="unblinded"):
        services.freeze_plan(plan=plan, by=statistician, proof=proof(statistician))
    with pytest.raises(WrongStatus, match="unblinded"):
        services.create_plan_version(trial=trial, by=statistician, content=plan_schema.default_plan())
    assert not AnalysisPlan.objects.get(pk=plan.pk).is_frozen and AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_the_api_refuses_a_bad_plan_an_edit_of_a_frozen_plan_and_a_second_freeze(trial, statistician):
    api = _api(statistician)
    url = f"/api/trials/{trial.code}/analysis/plans/"
    bad = api.post(url, {"content": {**plan_schema.default_plan(), "alpha": 2}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_plan" and "alpha" in bad.json()["detail"]
    assert AnalysisPlan.objects.count() == 0
    created = api.post(url, {"content": plan_schema.default_plan()}, format="json")
    assert created.status_code == 201 and created.json()["version"] == 1
    edited = api.put(f"{url}1/", {"content": {**plan_schema.default_plan(), "notes": "draft 2"}}, format="json")
    assert edited.status_code == 200 and edited.json()["content"]["notes"] == "draft 2"
    unsigned = api.post(f"{url}1/freeze/")
    assert unsigned.status_code == 400 and "password" in unsigned.json()
    wrong = api.post(f"{url}1/freeze/", {"password": "not it", "code": "123456"}, format="json")
    assert wrong.status_code == 403 and wrong.json()["code"] == "signature_refused"
    assert not AnalysisPlan.objects.get(version=1).is_frozen
    frozen = api.post(f"{url}1/freeze/", vars(credentials(statistician)), format="json")
    assert frozen.status_code == 200 and len(frozen.json()["sha256"]) == 64
    signature = Signature.objects.get(meaning="freeze_plan")
    assert signature.content_hash == frozen.json()["sha256"] and signature.signer == statistician
    assert signature.method == "password+second factor"
    again = api.post(f"{url}1/freeze/", vars(credentials(statistician)), format="json")
    assert again.status_code == 409 and again.json()["code"] == "plan_frozen"
    edit = api.put(f"{url}1/", {"content": plan_schema.default_plan()}, format="json")
    assert edit.status_code == 409 and "cannot change" in edit.json()["detail"]
    assert AnalysisPlan.objects.get(version=1).content["notes"] == "draft 2"


@pytest.mark.django_db
def test_only_investigators_and_statisticians_write_or_freeze_plans(trial, investigator, make_user):
    reader = make_user("rita")
    plan = services.create_plan_version(trial=trial, by=investigator, content=plan_schema.default_plan())
    for user in (reader, make_user("oscar")):
        with pytest.raises(PermissionDenied):
            services.create_plan_version(trial=trial, by=user, content=plan_schema.default_plan())
        with pytest.raises(PermissionDenied):
            services.freeze_plan(plan=plan, by=user, proof=proof(user))
        assert _api(user).get(f"/api/trials/{trial.code}/analysis/plans/").status_code == 403
    assert services.freeze_plan(plan=plan, by=investigator, proof=proof(investigator)).is_frozen
