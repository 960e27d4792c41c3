"""Allocations: concealed sequence, taken under a lock, written once, audited; safe under concurrency."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from core.errors import WrongStatus
from trial import randomization, services
from trial.errors import DuplicateCode
from trial.models import Allocation, AuditEvent, Membership, Role


def test_allocation_follows_the_trials_concealed_sequence(enrolling_trial, site, investigator, make_user):
    members = [services.add_member(trial=enrolling_trial, by=investigator, user=make_user(f"r{i}"),
                                   role=Role.READER, site=site) for i in range(8)]
    expected = randomization.sequence(seed=bytes(enrolling_trial.randomization_seed), stratum="site-a",
                                      scheme=services.scheme_for(enrolling_trial), length=8)
    got = [Membership.objects.get(pk=m.pk).allocation for m in members]
    assert [a.arm for a in got] == [e.arm for e in expected]
    assert [a.position for a in got] == list(range(8))


def test_each_allocation_is_audited(enrolling_trial, site, investigator, make_user):
    services.add_member(trial=enrolling_trial, by=investigator, user=make_user("r1"), role=Role.READER, site=site)
    event = AuditEvent.objects.filter(action="allocation.made").get()
    assert event.payload["unit"] == "R01" and event.payload["position"] == 0


def test_allocation_refused_when_trial_not_enrolling(trial, site, investigator, make_user):
    membership = services.add_member(trial=trial, by=investigator, user=make_user("r1"), role=Role.READER, site=site)
    with pytest.raises(WrongStatus, match="only while the trial is enrolling"):
        services.allocate_reader(trial=trial, by=investigator, membership=membership)
    assert not Allocation.objects.exists()


def test_a_reader_is_allocated_only_once(enrolling_trial, site, investigator, make_user):
    membership = services.add_member(trial=enrolling_trial, by=investigator, user=make_user("r1"),
                                     role=Role.READER, site=site)
    with pytest.raises(DuplicateCode, match="already randomized"):
        services.allocate_reader(trial=enrolling_trial, by=investigator, membership=membership)
    assert Allocation.objects.count() == 1


def test_no_api_or_serializer_exposes_the_seed(enrolling_trial, investigator, client):
    from trial.serializers import TrialSerializer

    assert "randomization_seed" not in TrialSerializer(enrolling_trial).data
    client.force_login(investigator)
    body = client.get(f"/api/trials/{enrolling_trial.code}/").content.decode()
    assert "seed" not in body and bytes(enrolling_trial.randomization_seed).hex() not in body


N_PARALLEL = 24


@pytest.mark.django_db(transaction=True)
def test_parallel_allocations_have_no_duplicates_no_gaps_and_exact_block_balance(make_user):
    investigator = make_user("ines", can_create_trials=True)
    trial = services.create_trial(by=investigator, code="par", title="Parallel")
    site = services.add_site(trial=trial, by=investigator, code="s1", name="S1")
    trial = services.transition_trial(trial=trial, by=investigator, to="enrolling")
    readers = [make_user(f"reader{i}") for i in range(N_PARALLEL)]
    barrier = threading.Barrier(N_PARALLEL)
    errors: list[BaseException] = []

    def enrol(user):
        try:
            barrier.wait()
            services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=site)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enrol, args=(u,)) for u in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    allocations = list(Allocation.objects.filter(trial=trial).order_by("position"))
    assert [a.position for a in allocations] == list(range(N_PARALLEL))  # no gap, no duplicate
    assert len({a.membership_id for a in allocations}) == N_PARALLEL
    # The stored arms are exactly the concealed sequence, and balanced at every completed block.
    expected = randomization.sequence(seed=bytes(trial.randomization_seed), stratum="s1",
                                      scheme=services.scheme_for(trial), length=N_PARALLEL)
    assert [a.arm for a in allocations] == [e.arm for e in expected]
    counts: Counter = Counter()
    for a, e in zip(allocations, expected):
        counts[a.arm] += 1
        if e.position_in_block == e.block_size - 1:
            assert counts["assisted"] == counts["standard"], f"unbalanced at the end of block {e.block}"
    from trial import audit

    assert audit.verify().intact
    assert AuditEvent.objects.filter(action="allocation.made").count() == N_PARALLEL
