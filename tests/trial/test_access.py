"""trial.access: the asking user's standing in a trial, in one query, with one refusal for every reason."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from trial import services
from trial.access import NO_ACCESS, access_for, access_to
from trial.models import Role


def test_one_query_gives_the_trial_and_every_role_of_the_user(trial, site, investigator, make_user,
                                                             django_assert_num_queries):
    services.add_member(trial=trial, by=investigator, user=investigator, role=Role.STATISTICIAN)
    with django_assert_num_queries(1):
        access = access_for(user=investigator, code=trial.code)
        assert access.trial.code == trial.code and access.trial.title == trial.title
        assert access.roles == {Role.INVESTIGATOR, Role.STATISTICIAN}
        assert access.has(Role.STATISTICIAN) and not access.has(Role.READER)
        assert access.require(Role.READER, Role.INVESTIGATOR) is access


def test_a_missing_trial_and_a_trial_without_a_role_are_refused_alike(trial, outsider, investigator):
    refusals = []
    for code, user in (("no-such-trial", investigator), (trial.code, outsider)):
        with pytest.raises(PermissionDenied) as refused:
            access_for(user=user, code=code)
        refusals.append(str(refused.value))
    assert refusals == [NO_ACCESS, NO_ACCESS]


def test_a_role_the_user_does_not_hold_is_refused_with_the_same_message(trial, investigator):
    with pytest.raises(PermissionDenied, match=NO_ACCESS):
        access_for(user=investigator, code=trial.code, roles=[Role.READER])
    with pytest.raises(PermissionDenied, match=NO_ACCESS):
        access_for(user=investigator, code=trial.code).membership(Role.EXPERT)


def test_an_anonymous_user_is_refused_without_a_query(trial, django_assert_num_queries):
    from django.contrib.auth.models import AnonymousUser

    with django_assert_num_queries(0), pytest.raises(PermissionDenied, match=NO_ACCESS):
        access_for(user=AnonymousUser(), code=trial.code)


def test_a_readers_membership_carries_its_site(trial, site, investigator, make_user):
    reader = make_user("rita")
    services.add_member(trial=trial, by=investigator, user=reader, role=Role.READER, site=site)
    access = access_to(user=reader, trial=trial, roles=[Role.READER])
    assert access.trial is trial and access.membership(Role.READER).site.code == site.code
