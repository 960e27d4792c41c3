"""A page asks the database who the user is in the trial once (trial.access.access_for), whatever it shows.

Before the per-request access object these pages looked the trial and the user's roles up again in every
selector: the trial detail page 8 times in 16 queries, the expert's list 4 times in 8, an item 2 times in 11."""
from __future__ import annotations

import re

import pytest

from tests.scoring.helpers import answer_before, mine


def _role_lookups(queries, user) -> list[str]:
    """Queries that ask for the user's memberships, or for the trial by its code."""
    mine_ = re.compile(rf'"trial_membership"\."user_id" = {user.pk}\b')
    return [q["sql"] for q in queries
            if ('FROM "trial_membership"' in q["sql"] and mine_.search(q["sql"]))
            or ('FROM "trial_trial"' in q["sql"] and '"trial_trial"."code" =' in q["sql"])]


@pytest.fixture
def world(scoring_trial):
    return scoring_trial(n_cases=2, code="qc")


def _get(client, url, budget, user, django_assert_max_num_queries):
    client.get(url)  # warm: the session's first use, the CSRF cookie
    with django_assert_max_num_queries(budget) as captured:
        response = client.get(url)
    assert response.status_code == 200
    lookups = _role_lookups(captured.captured_queries, user)
    assert len(lookups) == 1, lookups
    return response


def test_the_trial_page_of_an_investigator_looks_the_roles_up_once(world, investigator, client,
                                                                   django_assert_max_num_queries):
    trial = world[0]
    client.force_login(investigator)
    response = _get(client, f"/t/{trial.code}/", 9, investigator, django_assert_max_num_queries)
    assert b"Members" in response.content  # the investigator's full page, members and all


def test_the_expert_list_looks_the_roles_up_once(world, client, django_assert_max_num_queries):
    trial, _, experts, _ = world
    client.force_login(experts[0])
    _get(client, f"/t/{trial.code}/", 3, experts[0], django_assert_max_num_queries)
    _get(client, f"/t/{trial.code}/score/", 5, experts[0], django_assert_max_num_queries)
    _get(client, f"/api/trials/{trial.code}/scoring/items/", 4, experts[0], django_assert_max_num_queries)


def test_an_expert_item_page_looks_the_roles_up_once(world, client, django_assert_max_num_queries):
    trial, _, experts, _ = world
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    client.force_login(experts[0])
    _get(client, f"/t/{trial.code}/score/{quality.key}/", 8, experts[0], django_assert_max_num_queries)
