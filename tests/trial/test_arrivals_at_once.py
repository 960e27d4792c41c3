"""Arrivals at the same moment, in separate connections (threads), on the real database: the same image sent twice
at once (a PACS retry) makes one case and two screening rows; arrivals at several sites at once are each routed
once, to readers of their own site, and the workload stays within one open read. On SQLite the threads take turns
(its database lock), which is still a valid run of the same checks."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from reading.models import Read
from tests.live import image, open_trial
from trial import services
from trial.errors import DuplicateImage
from trial.models import Case, Membership, ScreeningEntry


def _at_once(calls) -> tuple[list, list[BaseException]]:
    barrier = threading.Barrier(len(calls))
    results, errors = [], []

    def run(call):
        try:
            barrier.wait()
            results.append(call())
        except BaseException as exc:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_the_same_image_arriving_twice_at_once_makes_one_case(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, code="twice")
    data = image(7)
    cases, errors = _at_once([lambda: services.receive_image(trial=live.trial, site=live.sites[0], data=data,
                                                             source="dicom")] * 2)
    assert len(cases) == 1 and len(errors) == 1 and isinstance(errors[0], DuplicateImage), errors
    assert Case.objects.filter(trial=live.trial).count() == 1
    assert sorted(ScreeningEntry.objects.filter(trial=live.trial).values_list("outcome", "code")) == [
        ("enrolled", ""), ("not_enrolled", "duplicate")]


@pytest.mark.django_db(transaction=True)
def test_arrivals_at_several_sites_at_once_are_each_routed_once_within_their_site(investigator, make_user):
    live = open_trial(investigator=investigator, make_user=make_user, code="burst", sites=("a", "b"),
                      readers_per_site=4)
    calls = [lambda i=i: services.receive_image(trial=live.trial, site=live.sites[i % 2], data=image(100 + i),
                                                source="dicom") for i in range(12)]
    cases, errors = _at_once(calls)
    assert not errors, errors
    assert len(cases) == 12
    reads = list(Read.objects.filter(trial=live.trial).select_related("case", "reader__allocation"))
    # every case once in each arm, by a reader of its site and of that arm
    assert Counter((r.case_id, r.arm) for r in reads) == {(c.pk, arm): 1 for c in cases
                                                           for arm in ("assisted", "standard")}
    assert all(r.reader.site_id == r.case.site_id and r.reader.allocation.arm == r.arm for r in reads)
    # nobody submits: each reader of an arm at a site holds as many open reads as the others, within one
    held = Counter(r.reader_id for r in reads)
    for site in live.sites:
        for arm in ("assisted", "standard"):
            readers = Membership.objects.filter(trial=live.trial, role="reader", site=site, allocation__arm=arm)
            load = [held[m.pk] for m in readers]
            assert len(load) == 2 and max(load) - min(load) <= 1, (site.code, arm, load)
