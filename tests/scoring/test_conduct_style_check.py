"""The blinding-integrity check on the investigator's conduct page (reading's dashboard, scoring's section):
investigators only, aggregates only, about text style and never outcomes, and never which report is which."""
from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.test import Client

from reading import selectors as reading_selectors
from scoring import selectors
from trial.access import access_to
from trial.models import Case


@pytest.fixture
def reading_trial(scoring_trial):
    """Every report submitted, scoring not started: when the check is meant to be read. The reports of an arm share
    their wording (tests.scoring.conftest), so the style names the arm of every one."""
    def build(n_cases=24, **kwargs):
        return scoring_trial(n_cases=n_cases, move=False, **kwargs)
    return build


def _section(html: str) -> str:
    start = html.index('data-testid="style-check"')
    return html[start:html.index("</section>", start)]


def test_the_investigator_sees_how_well_the_style_names_the_arm_and_nothing_that_names_a_case(reading_trial,
                                                                                            investigator):
    trial, readers, experts, cases = reading_trial(code="sc")
    client = Client()
    client.force_login(investigator)
    html = client.get(f"/t/{trial.code}/reading/").content.decode()
    section = _section(html)
    assert "24 cases with both reports final (12 to train, 12 to test)" in section
    assert "about the text style of the reports the experts score, not about outcomes" in section.lower()
    accuracy = re.search(r'data-testid="style-check-accuracy">(\d+) %', section).group(1)
    assert accuracy == "100"
    assert 'data-testid="style-check-canonical"' in section and 'data-testid="style-check-as-written"' in section
    text = re.sub(r"<[^>]+>", " ", section).lower()
    assert not re.search(r"\b(?:assisted|standard)\b", text)  # no arm named, as on the rest of the page
    for case in Case.objects.filter(trial=trial):
        assert case.code.lower() not in text
    for reader in readers:
        assert reader.username.lower() not in text


def test_with_too_few_pairs_the_page_says_how_many_it_needs(reading_trial, investigator):
    trial, *_ = reading_trial(n_cases=3, code="sf")
    client = Client()
    client.force_login(investigator)
    section = _section(client.get(f"/t/{trial.code}/reading/").content.decode())
    assert "3 cases with both reports final so far; the check needs 20." in section


def test_a_design_without_pairs_has_nothing_to_compare(build_trial, investigator):
    trial, *_ = build_trial(design="case_randomized", readers_per_site=2, n_cases=2, code="sn")
    client = Client()
    client.force_login(investigator)
    section = _section(client.get(f"/t/{trial.code}/reading/").content.decode())
    assert "there are no report pairs to compare" in section


def test_only_investigators_get_the_check(reading_trial, investigator):
    trial, readers, experts, cases = reading_trial(n_cases=2, code="so")
    for user in (readers[0], experts[0]):
        with pytest.raises(PermissionDenied):
            selectors.style_check(access=access_to(user=user, trial=trial))
    assert selectors.style_check(access=access_to(user=investigator, trial=trial))["pairs"] == 2


def test_the_dashboard_gathers_the_section_through_the_app_registry(reading_trial, investigator):
    trial, *_ = reading_trial(n_cases=2, code="sr")
    dashboard = reading_selectors.dashboard(access=access_to(user=investigator, trial=trial))
    assert [s["template"] for s in dashboard["sections"]] == ["scoring/conduct_backlog.html",
                                                               "scoring/conduct_style_check.html"]


def test_the_check_is_computed_once_per_set_of_reports(reading_trial, investigator, monkeypatch):
    trial, *_ = reading_trial(n_cases=20, code="sk")
    cache.clear()
    calls = []
    run = selectors.run_style_check
    monkeypatch.setattr(selectors, "run_style_check", lambda *a, **k: calls.append(1) or run(*a, **k))
    access = access_to(user=investigator, trial=trial)
    first = selectors.style_check(access=access)
    assert len(calls) == 2  # the trial's presentation and the other one
    assert selectors.style_check(access=access) == first and len(calls) == 2
    assert first["results"][0]["canonical"] is False and first["results"][1]["canonical"] is True
    assert first["results"][0]["classifier"]["percent"] == 100.0


def test_a_large_trial_is_checked_on_a_fixed_sample_of_pairs(reading_trial, investigator, monkeypatch):
    trial, *_ = reading_trial(n_cases=22, code="sl")
    monkeypatch.setattr(selectors, "STYLE_CHECK_MAX_PAIRS", 20)
    client = Client()
    client.force_login(investigator)
    section = _section(client.get(f"/t/{trial.code}/reading/").content.decode())
    assert "22 cases with both reports final, a fixed sample of 20 of them used (10 to train, 10 to test)" in section
