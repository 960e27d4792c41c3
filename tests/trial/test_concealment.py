"""Allocation concealment while enrolment is open (issue 13 item 2), and the committee's independence."""
from __future__ import annotations

import pytest

from trial import services
from trial.errors import RoleConflict
from trial.models import Role, Status, Trial

pytestmark = pytest.mark.django_db


def test_a_single_block_size_is_refused_unless_the_reason_is_stated(investigator):
    with pytest.raises(services.ServiceError, match="at least two block sizes"):
        services.create_trial(by=investigator, code="one-size", title="T", block_multiples=[2])
    assert not Trial.objects.filter(code="one-size").exists()
    trial = services.create_trial(by=investigator, code="one-size", title="T", block_multiples=[1],
                                  fixed_block_reason="two readers per site")
    assert trial.fixed_block_reason == "two readers per site"
    with pytest.raises(services.ServiceError, match="at least two block sizes"):
        services.update_trial_settings(trial=trial, by=investigator, fixed_block_reason="")
    trial.refresh_from_db()
    assert trial.fixed_block_reason == "two readers per site"


def test_the_arm_balance_is_hidden_while_enrolment_is_open(client, enrolling_trial, site, investigator, make_user):
    for i in range(3):
        services.add_member(trial=enrolling_trial, by=investigator, user=make_user(f"r{i}"), role=Role.READER,
                            site=site)
    client.force_login(investigator)
    page = client.get(f"/t/{enrolling_trial.code}/").content.decode()
    assert "Hidden while enrolment is open" in page and "<td>Assisted" not in page
    Trial.objects.filter(pk=enrolling_trial.pk).update(status=Status.READING)
    page = client.get(f"/t/{enrolling_trial.code}/").content.decode()
    assert "Hidden while enrolment is open" not in page and f"<td>{site.code}</td>" in page


def test_a_monitor_holds_no_other_role_in_the_trial(trial, investigator, make_user):
    member = make_user("dmc-dora")
    services.add_member(trial=trial, by=investigator, user=member, role=Role.MONITOR)
    for role in (Role.STATISTICIAN, Role.INVESTIGATOR, Role.EXPERT):
        with pytest.raises(RoleConflict, match="data-monitoring committee"):
            services.add_member(trial=trial, by=investigator, user=member, role=role)
    with pytest.raises(RoleConflict, match="independent"):
        services.add_member(trial=trial, by=investigator, user=investigator, role=Role.MONITOR)
