"""Reading: routing by design, worklists, the arms, server-measured time, autosave, submit, corrections."""
from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from rest_framework.test import APIClient

from ai.models import AIDraft, DraftStatus
from core.errors import ServiceError, WrongStatus
from reading import selectors, services
from reading.models import Read, ReadEvent, Report, ReportDraft
from tests.reading.conftest import DRAFT_FINDINGS, DRAFT_IMPRESSION
from tests.signing import proof
from trial import services as trial_services
from trial.access import access_for
from trial.models import AuditEvent


def api_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _submit(read, user, impression="No acute cardiopulmonary abnormality.", **kw):
    return services.submit_report(read_id=read.pk, by=user, findings=kw.get("findings", "Clear lungs."),
                                  impression=impression, finding_flags=kw.get("flags", {}), tab_id="t1")


# -------------------------------------------------------------------------- the full paired-parallel trial


def test_full_paired_parallel_trial(build_trial, make_user):
    trial, readers, cases, _ = build_trial(readers_per_site=4, n_cases=12)
    reads = list(Read.objects.filter(trial=trial).select_related("reader__allocation"))
    # every case exactly once in each arm, by a reader randomized to that arm
    per_case = Counter((r.case_id, r.arm) for r in reads)
    assert len(per_case) == 24 and set(per_case.values()) == {1}
    assert all(r.reader.allocation.arm == r.arm for r in reads)
    arms = Counter(r.reader.allocation.arm for r in reads)
    assert arms == {"assisted": 12, "standard": 12}
    # two readers per arm (1:1 allocation of four readers), load balanced within each arm
    per_reader = Counter(r.reader_id for r in reads)
    assert sorted(per_reader.values()) == [6, 6, 6, 6]
    users = {u.pk: u for u in readers}
    for read in reads:
        user = users[read.reader.user_id]
        payload = api_for(user).get(f"/api/reads/{read.pk}/").json()
        if read.arm == "assisted":
            assert payload["draft"]["impression"] == DRAFT_IMPRESSION
        else:
            assert payload["draft"] is None and DRAFT_FINDINGS not in json.dumps(payload)
        services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t1")
        _submit(read, user)
    assert Read.objects.filter(trial=trial, status="submitted").count() == 24
    assert all(r.active_seconds is not None and r.wall_seconds is not None
               for r in Read.objects.filter(trial=trial))
    assert AuditEvent.objects.filter(action="report.submitted").count() == 24


def test_worklist_order_is_random_per_reader_and_stored(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=12)
    first = [r.case_code for r in selectors.worklist(access=access_for(user=readers[0], code=trial.code)).rows]
    again = [r.case_code for r in selectors.worklist(access=access_for(user=readers[0], code=trial.code)).rows]
    assert first == again and len(first) == 12
    assert (first != sorted(first)
            or [r.case_code for r in selectors.worklist(access=access_for(user=readers[1], code=trial.code)).rows]
            != sorted(first))
    keys = list(Read.objects.filter(reader__user=readers[0]).values_list("order_key", flat=True))
    assert len(set(keys)) == 12  # stored, distinct


def test_worklist_shows_nothing_of_other_readers(build_trial, client):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=4)
    client.force_login(readers[0])
    page = client.get(f"/t/{trial.code}/read/").content.decode()
    other = Read.objects.filter(trial=trial).exclude(reader__user=readers[0]).values_list("pk", flat=True)
    for pk in other:
        assert f"/read/{pk}/" not in page
    assert readers[1].username not in page


def test_reader_cannot_open_another_readers_read_by_page_or_api(build_trial, client):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=4)
    theirs = Read.objects.filter(trial=trial, reader__user=readers[1]).first()
    client.force_login(readers[0])
    assert client.get(f"/t/{trial.code}/read/{theirs.pk}/").status_code == 403
    for url in [f"/api/reads/{theirs.pk}/", f"/r/{theirs.pk}/display.png"]:
        r = client.get(url)
        assert r.status_code == 403 and theirs.case.code.encode() not in r.content
    r = api_for(readers[0]).post(f"/api/reads/{theirs.pk}/submit/", {"findings": "", "impression": "x"}, format="json")
    assert r.status_code == 403 and not Report.objects.exists()


def test_standard_arm_never_receives_the_draft(build_trial, client):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=6)
    standard = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    user = standard.reader.user
    client.force_login(user)
    assert selectors.visible_draft(read=standard) is None
    for url in [f"/api/reads/{standard.pk}/", f"/t/{trial.code}/read/{standard.pk}/", f"/t/{trial.code}/read/",
                f"/api/trials/{trial.code}/worklist/"]:
        body = client.get(url).content.decode()
        assert DRAFT_FINDINGS not in body and DRAFT_IMPRESSION not in body
    # the ai app's own pages are for investigators only
    assert client.get(f"/t/{trial.code}/ai/").status_code == 403
    assert client.get(f"/api/trials/{trial.code}/drafts/").status_code == 403


def test_assisted_read_waits_for_its_draft(build_trial):
    trial, readers, cases, model = build_trial(readers_per_site=2, n_cases=4, drafts=False)
    AIDraft.objects.create(case=cases[0], model_version=model, status=DraftStatus.PENDING)
    assisted = Read.objects.filter(trial=trial, arm="assisted", case=cases[0]).select_related("reader__user").first()
    row = next(r for r in selectors.worklist(access=access_for(user=assisted.reader.user, code=trial.code)).rows
               if r.id == assisted.pk)
    assert row.available is False
    with pytest.raises(PermissionDenied, match="not available yet"):
        selectors.own_read(read_id=assisted.pk, user=assisted.reader.user)
    AIDraft.objects.filter(case=cases[0]).update(status=DraftStatus.READY, impression="Normal.")
    assert selectors.own_read(read_id=assisted.pk, user=assisted.reader.user) == assisted


# -------------------------------------------------------------------------- time, autosave, submit


def test_time_is_measured_by_the_server_and_client_clock_is_only_recorded(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    user = read.reader.user
    far = timezone.now() - timedelta(days=3)
    event = services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t1", client_time=far)
    assert abs((event.server_time - timezone.now()).total_seconds()) < 5
    assert event.clock_skew_seconds < -3 * 86400 + 10
    ReadEvent.objects.filter(pk=event.pk).update(server_time=timezone.now() - timedelta(seconds=40))
    ReadEvent.objects.create(read=read, kind="heartbeat", tab_id="t1",
                             server_time=timezone.now() - timedelta(seconds=25))
    ReadEvent.objects.create(read=read, kind="heartbeat", tab_id="t1",
                             server_time=timezone.now() - timedelta(seconds=10))
    _submit(read, user)
    read.refresh_from_db()
    assert 39 <= read.wall_seconds <= 45 and 39 <= read.active_seconds <= 45


def test_autosave_restores_text_and_refuses_a_stale_tab(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    user = read.reader.user
    v1 = services.autosave(read_id=read.pk, by=user, findings="Tab A text", impression="", finding_flags={},
                           base_version=None, tab_id="A")
    v2 = services.autosave(read_id=read.pk, by=user, findings="Tab A more", impression="", finding_flags={},
                           base_version=v1.version, tab_id="A")
    assert v2.version == 2
    r = api_for(user).put(f"/api/reads/{read.pk}/autosave/", {"findings": "Tab B old", "impression": "",
                          "base_version": 1, "tab_id": "B"}, format="json")
    assert r.status_code == 409 and r.json()["current"]["findings"] == "Tab A more"
    assert ReportDraft.objects.get(read=read).findings == "Tab A more"
    payload = api_for(user).get(f"/api/reads/{read.pk}/").json()
    assert payload["saved"]["findings"] == "Tab A more" and payload["saved"]["version"] == 2


def test_autosave_by_beacon_post_is_accepted(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    r = api_for(read.reader.user).post(f"/api/reads/{read.pk}/autosave/",
                                       {"findings": "typed", "impression": "imp", "tab_id": "A"}, format="json")
    assert r.status_code == 200 and ReportDraft.objects.get(read=read).impression == "imp"


def test_empty_impression_is_refused_and_nothing_is_written(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    r = api_for(read.reader.user).post(f"/api/reads/{read.pk}/submit/", {"findings": "x", "impression": "  "},
                                       format="json")
    assert r.status_code == 400 and r.json()["detail"] == "An impression is required."
    read.refresh_from_db()
    assert read.status != "submitted" and not Report.objects.exists()


def test_submitting_twice_is_refused(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    _submit(read, read.reader.user)
    r = api_for(read.reader.user).post(f"/api/reads/{read.pk}/submit/", {"findings": "", "impression": "again"},
                                       format="json")
    assert r.status_code == 409 and "already submitted" in r.json()["detail"]
    assert Report.objects.filter(read=read).count() == 1


def test_submitting_after_reading_ended_is_refused(build_trial, investigator):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    with pytest.raises(WrongStatus, match="not in its reading phase"):
        _submit(read, read.reader.user)
    assert not Report.objects.exists()


def test_submitted_report_is_immutable_and_a_correction_is_a_new_version(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    report = _submit(read, read.reader.user, impression="First impression.")
    report.impression = "Changed"
    with pytest.raises(PermissionError):
        report.save()
    with pytest.raises(ServiceError, match="needs a reason"):
        services.correct_report(read_id=read.pk, by=read.reader.user, findings="", impression="Second.",
                                finding_flags={}, reason=" ")
    v2 = services.correct_report(read_id=read.pk, by=read.reader.user, findings="", impression="Second.",
                                 finding_flags={}, reason="Missed a nodule")
    assert v2.version == 2 and Report.objects.get(read=read, version=1).impression == "First impression."


def test_draft_survival_is_recorded_in_the_assisted_arm_only(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    assisted = Read.objects.filter(trial=trial, arm="assisted").select_related("reader__user").first()
    standard = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    a = _submit(assisted, assisted.reader.user, findings=DRAFT_FINDINGS, impression=DRAFT_IMPRESSION)
    s = _submit(standard, standard.reader.user)
    assert a.draft_edit_distance == 0 and a.draft_kept_share == 1
    assert s.draft_edit_distance is None and s.draft_kept_share is None


def test_unknown_finding_flag_is_refused(build_trial):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    with pytest.raises(ServiceError, match="Unknown finding"):
        _submit(read, read.reader.user, flags={"rib fracture": True})


# -------------------------------------------------------------------------- senior, designs, queries


def test_senior_signs_or_edits_and_signs(build_trial, investigator, make_user):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    senior = make_user("sid")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role="senior")
    reads = list(Read.objects.filter(trial=trial).select_related("reader__user")[:2])
    r1, r2 = (_submit(r, r.reader.user) for r in reads)
    queue = list(selectors.signoff_queue(access=access_for(user=senior, code=trial.code)))
    assert {r.pk for r in queue} == {r1.pk, r2.pk}
    services.sign_report(report=r1, by=senior, proof=proof(senior))
    with pytest.raises(PermissionDenied):  # a senior edits only at sign-off, never by the reader's route
        services.correct_report(read_id=reads[1].pk, by=senior, findings="", impression="Edited.",
                                finding_flags={}, reason="Clarified")
    # an edit whose signature is refused leaves no unsigned correction behind (one transaction)
    trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=False)
    with pytest.raises(WrongStatus):
        services.correct_and_sign(read_id=reads[1].pk, by=senior, findings="", impression="Edited.",
                                  finding_flags={}, reason="Clarified", proof=proof(senior))
    assert Report.objects.filter(read=reads[1]).count() == 1
    trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    v2 = services.correct_and_sign(read_id=reads[1].pk, by=senior, findings="", impression="Edited by senior.",
                                   finding_flags={}, reason="Clarified", proof=proof(senior))
    assert v2.version == 2 and v2.signed_by == senior and v2.reason == "Clarified"
    assert not selectors.signoff_queue(access=access_for(user=senior, code=trial.code)).exists()
    with pytest.raises(PermissionDenied):
        selectors.signoff_queue(access=access_for(user=readers[0], code=trial.code))


def test_the_api_answers_have_the_shapes_they_declare(build_trial, investigator, make_user, client):
    """The read API's answer (embedded in the reading page too) and the submit's validate against the output
    serializers the OpenAPI schema shows."""
    from reading.serializers import ReadPayloadSerializer, ReportSerializer, SubmittedSerializer

    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    senior = make_user("sue")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role="senior")
    read = Read.objects.filter(trial=trial, arm="assisted").select_related("reader__user").first()
    client.force_login(read.reader.user)
    payload = client.get(f"/api/reads/{read.pk}/").json()
    assert ReadPayloadSerializer(data=payload).is_valid(), ReadPayloadSerializer(data=payload).errors
    r = client.post(f"/api/reads/{read.pk}/submit/", data=json.dumps({"findings": "x", "impression": "y",
                                                                     "finding_flags": {"pneumothorax": True}}),
                    content_type="application/json")
    assert r.status_code == 201 and SubmittedSerializer(data=r.json()).is_valid()
    stored = Report.objects.get(read=read)
    assert r.json()["report"] == ReportSerializer(stored).data
    assert stored.finding_flags["pneumothorax"] is True and stored.author_id == read.reader.user_id
    signed = services.sign_report(report=stored, by=senior, proof=proof(senior))
    assert ReportSerializer(signed).data["signed_at"] is not None


def test_crossover_reads_every_case_in_both_arms_with_washout(build_trial):
    trial, readers, cases, _ = build_trial(design="crossover", readers_per_site=2, n_cases=3, washout_days=14)
    reads = Read.objects.filter(trial=trial)
    assert reads.count() == 2 * 3 * 2
    firsts = Counter(r.arm for r in reads.filter(period=1, case=cases[0]))
    assert firsts == {"assisted": 1, "standard": 1}  # counterbalanced: half the readers start assisted
    user = readers[0]
    first = reads.filter(reader__user=user, case=cases[0], period=1).get()
    second = reads.filter(reader__user=user, case=cases[0], period=2).get()
    available = {r.id for r in selectors.worklist(access=access_for(user=user, code=trial.code)).rows if r.available}
    assert first.pk in available and second.pk not in available
    _submit(first, user)
    second.refresh_from_db()
    assert (second.available_from - timezone.now()).days in (13, 14)
    assert second.pk not in {r.id for r in selectors.worklist(access=access_for(user=user, code=trial.code)).rows
                             if r.available}


def test_case_randomized_trial_reads_each_case_once_in_its_arm(build_trial):
    trial, readers, cases, _ = build_trial(design="case_randomized", readers_per_site=2, n_cases=6)
    reads = Read.objects.filter(trial=trial).select_related("case__allocation")
    assert reads.count() == 6
    assert all(r.arm == r.case.allocation.arm for r in reads)


def test_routing_twice_routes_nothing_more(build_trial):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=4)
    assert services.route_trial(trial=trial) == 0
    assert Read.objects.filter(trial=trial).count() == 8


def _queries(client, urls):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for url in urls:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        counts.append(len(ctx))
    return counts


def test_worklist_and_reading_queries_do_not_grow_with_cases(build_trial, client):
    small, readers_small, _, _ = build_trial(readers_per_site=2, n_cases=2, code="small")
    big, readers_big, _, _ = build_trial(readers_per_site=2, n_cases=14, code="big")
    counts = []
    for trial in (small, big):
        # the same arm in both trials: the assisted arm's page also fetches the draft
        read = (Read.objects.filter(trial=trial, arm="assisted").select_related("reader__user")
                .order_by("order_key").first())
        user = read.reader.user
        client.force_login(user)
        counts.append(_queries(client, [f"/t/{trial.code}/read/", f"/t/{trial.code}/read/{read.pk}/",
                                        f"/api/reads/{read.pk}/", f"/api/trials/{trial.code}/worklist/"]))
    assert counts[0] == counts[1], counts


# -------------------------------------------------------------------------- the reading page


def _embedded_read(html: str) -> dict:
    import re

    match = re.search(r'<script id="read-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the reading page embeds its read"
    return json.loads(match.group(1))


@pytest.mark.parametrize("arm", ["assisted", "standard"])
def test_reading_page_embeds_the_read_the_api_gives(build_trial, client, arm):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=4)
    read = Read.objects.filter(trial=trial, arm=arm).select_related("reader__user").first()
    client.force_login(read.reader.user)
    services.autosave(read_id=read.pk, by=read.reader.user, findings="typed", impression="", finding_flags={},
                      base_version=None, tab_id="A")
    page = client.get(f"/t/{trial.code}/read/{read.pk}/")
    embedded = _embedded_read(page.content.decode())
    assert embedded == client.get(f"/api/reads/{read.pk}/").json()
    assert embedded["saved"]["findings"] == "typed"
    assert (embedded["draft"] is not None) == (arm == "assisted")
    # the radiograph is asked for from the head, and "back" never shows an old copy of the saved text
    assert (f'<link rel="preload" href="{embedded["image"]["display_url"]}" as="fetch" crossorigin>'
            in page.content.decode())
    assert "no-store" in page["Cache-Control"]


def test_reading_page_of_a_case_not_yet_available_is_refused(build_trial, client):
    trial, _, cases, model = build_trial(readers_per_site=2, n_cases=2, drafts=False)
    assisted = Read.objects.filter(trial=trial, arm="assisted").select_related("reader__user").first()
    client.force_login(assisted.reader.user)
    for url in [f"/t/{trial.code}/read/{assisted.pk}/", f"/api/reads/{assisted.pk}/", f"/r/{assisted.pk}/display.png"]:
        r = client.get(url)
        assert r.status_code == 403 and b"read-data" not in r.content
    r = api_for(assisted.reader.user).put(f"/api/reads/{assisted.pk}/autosave/", {"findings": "x", "impression": "y",
                                                                                  "tab_id": "A"}, format="json")
    assert r.status_code == 403 and not ReportDraft.objects.exists()


def test_reading_page_of_another_trial_says_nothing_more(build_trial, client):
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2, code="one")
    other, _, _, _ = build_trial(readers_per_site=2, n_cases=2, code="two")
    read = Read.objects.filter(trial=trial, reader__user=readers[0]).first()
    client.force_login(readers[0])
    r = client.get(f"/t/{other.code}/read/{read.pk}/")  # not a reader of "two": the trial's refusal
    assert r.status_code == 403 and read.case.code.encode() not in r.content


# -------------------------------------------------------------------------- queries per reading step


# Every step of a reader (bench/reading.py), through the ORM, with its session and user (both from the database
# here; sessions from the shared cache in production): a write is BEGIN, the locked read (with its trial and case),
# its saved text (read after the lock is granted: reading.selectors.saved_text), its rows and COMMIT; the first
# "opened" and the submit also append to the audit chain (3). In the assisted arm a read not started yet also asks
# for its draft, and the submit reads the draft to measure how much of it survived. The page's trial and role come
# from one query (trial.access). (The hand-written SQL of session 3 took the same counts, one fewer for the
# heartbeat; session 1: worklist 8, read API 11-14, autosave 12, submit 19-22.)
# The first delivery of a read (here the read page) also stamps it (reading time starts there): one UPDATE, once; an
# assisted read's also stamps its case's draft (from then on never made again): one more UPDATE, once.
# The submit's audit event reads the report back (with its read's times) for its state hash: one SELECT (trial.audit;
# after the commit, in production, one more reads the head for the anchor file).
STEP_QUERIES = {
    "standard": {"worklist": 4, "worklist api": 4, "read page": 5, "read api": 4, "image": 3, "opened": 10,
                 "heartbeat": 6, "autosave": 8, "submit": 14},
    "assisted": {"worklist": 4, "worklist api": 4, "read page": 7, "read api": 5, "image": 4, "opened": 11,
                 "heartbeat": 6, "autosave": 8, "submit": 15},
}


@pytest.mark.parametrize("arm", ["assisted", "standard"])
def test_each_reading_step_takes_few_queries(build_trial, client, arm):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=6)
    read = Read.objects.filter(trial=trial, arm=arm).select_related("reader__user").order_by("order_key").first()
    client.force_login(read.reader.user)

    def step(name, method, url, body=None):
        with CaptureQueriesContext(connection) as ctx:
            r = getattr(client, method)(url, **({} if body is None else {
                "data": json.dumps(body), "content_type": "application/json"}))
            b"".join(r.streaming_content) if r.streaming else r.content
        assert r.status_code < 400, r.content[:300]
        assert len(ctx) <= STEP_QUERIES[arm][name], (name, [q["sql"][:120] for q in ctx.captured_queries])
        return r

    step("worklist", "get", f"/t/{trial.code}/read/")
    step("worklist api", "get", f"/api/trials/{trial.code}/worklist/")
    step("read page", "get", f"/t/{trial.code}/read/{read.pk}/")
    step("read api", "get", f"/api/reads/{read.pk}/")
    step("image", "get", f"/r/{read.pk}/display.png")
    step("opened", "post", f"/api/reads/{read.pk}/events/", {"kind": "opened", "tab_id": "t"})
    step("heartbeat", "post", f"/api/reads/{read.pk}/events/", {"kind": "heartbeat", "tab_id": "t"})
    base = None
    for i in range(3):
        base = step("autosave", "put", f"/api/reads/{read.pk}/autosave/", {
            "findings": f"typed {i}", "impression": "y", "base_version": base, "tab_id": "t"}).json()["version"]
    step("submit", "post", f"/api/reads/{read.pk}/submit/", {"findings": "x", "impression": "y",
                                                             "base_version": base, "tab_id": "t"})
    assert Report.objects.filter(read=read).count() == 1


@pytest.mark.parametrize("arm", ["assisted", "standard"])
def test_reading_steps_on_persistent_postgresql_connections(persistent_postgresql, build_trial, client, arm):
    """What production runs (DB_CONN_MAX_AGE=60, psycopg preparing repeated statements): the same steps, the same
    answers, on one kept connection."""
    from core import db

    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=4)
    read = Read.objects.filter(trial=trial, arm=arm).select_related("reader__user").order_by("order_key").first()
    client.force_login(read.reader.user)
    for _ in range(6):  # psycopg prepares a statement from its fifth run on a connection
        assert client.get(f"/t/{trial.code}/read/").status_code == 200
    payload = client.get(f"/api/reads/{read.pk}/").json()
    assert (payload["draft"] is not None) == (arm == "assisted")
    assert client.post(f"/api/reads/{read.pk}/events/", data=json.dumps({"kind": "opened", "tab_id": "t"}),
                       content_type="application/json").status_code == 201
    base = None
    for i in range(2):
        r = client.put(f"/api/reads/{read.pk}/autosave/", data=json.dumps(
            {"findings": f"typed {i}", "impression": "y", "base_version": base, "tab_id": "t"}),
            content_type="application/json")
        assert r.status_code == 200, r.content
        base = r.json()["version"]
    r = client.post(f"/api/reads/{read.pk}/submit/", data=json.dumps(
        {"findings": "x", "impression": "y", "base_version": base, "tab_id": "t"}), content_type="application/json")
    assert r.status_code == 201, r.content
    assert any("reading_read" in statement for statement in db.prepared_statements())
    assert Report.objects.get(read=read).findings == "x"


def test_a_read_id_beyond_64_bits_is_refused_like_any_other(build_trial, client):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    client.force_login(read.reader.user)
    huge = 10**20
    body = {"data": json.dumps({"findings": "", "impression": "y", "kind": "opened", "tab_id": "t"}),
            "content_type": "application/json"}
    assert client.get(f"/t/{trial.code}/read/{huge}/").status_code == 403
    assert client.get(f"/r/{huge}/display.png").status_code == 403
    assert client.get(f"/api/reads/{huge}/").status_code == 403
    assert client.post(f"/api/reads/{huge}/events/", **body).status_code == 403
    assert client.put(f"/api/reads/{huge}/autosave/", **body).status_code == 403
    assert client.post(f"/api/reads/{huge}/submit/", **body).status_code == 403


# -------------------------------------------------------------------------- blinding of ids, sign-off, the clock


def test_the_reads_of_a_case_are_created_in_random_arm_order(build_trial):
    """In a masked export the lower read id of a case must not tell its arm (it did in 60 of 60 cases)."""
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=40)
    first_arms = Counter()
    for case_id in set(Read.objects.filter(trial=trial).values_list("case_id", flat=True)):
        first_arms[Read.objects.filter(case_id=case_id).order_by("id").first().arm] += 1
    # 40 fair coins: all but about one run in a million land between 6 and 34 (both arms first in some cases)
    assert 6 <= first_arms["assisted"] <= 34, first_arms


def test_sign_off_is_refused_in_a_trial_without_it(build_trial, investigator, make_user, client):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    senior = make_user("sol")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role="senior")
    read = Read.objects.filter(trial=trial).select_related("reader__user").first()
    report = _submit(read, read.reader.user)
    with pytest.raises(PermissionDenied, match="no senior sign-off"):
        selectors.signoff_queue(access=access_for(user=senior, code=trial.code))
    with pytest.raises(WrongStatus, match="no senior sign-off"):
        services.sign_report(report=report, by=senior, proof=proof(senior))
    client.force_login(senior)
    assert client.get(f"/t/{trial.code}/signoff/").status_code == 403
    assert client.get(f"/api/trials/{trial.code}/signoff/").status_code == 403
    report.refresh_from_db()
    assert report.signed_at is None and not AuditEvent.objects.filter(action="report.signed").exists()


def test_the_sign_off_queue_names_no_arm_and_never_a_case_on_the_seniors_own_worklist(build_trial, investigator,
                                                                                      make_user, client):
    from trial.models import Membership

    trial, readers, _, _ = build_trial(readers_per_site=4, n_cases=6)  # two readers per arm: each reads some cases
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    reads = list(Read.objects.filter(trial=trial).select_related("reader__user", "case"))
    for read in reads:
        _submit(read, read.reader.user)
    # a senior who also reads (a membership made before role conflicts were refused): their cases stay out
    reader = readers[0]
    Membership.objects.create(trial=trial, user=reader, role="senior", pseudonym="S99")
    own_cases = {r.case_id for r in reads if r.reader.user_id == reader.pk}
    client.force_login(reader)
    listed = client.get(f"/api/trials/{trial.code}/signoff/").json()["results"]
    assert listed and all("arm" not in row for row in listed)
    shown = Report.objects.filter(pk__in=[row["id"] for row in listed]).values_list("read__case_id", flat=True)
    assert not set(shown) & own_cases
    other_case_report = Report.objects.filter(read__case_id__in=own_cases).exclude(read__reader__user=reader).first()
    with pytest.raises(ServiceError, match="own worklist"):
        services.sign_report(report=other_case_report, by=reader, proof=proof(reader))


def test_the_first_delivery_to_the_assisted_reader_fixes_the_draft_they_are_shown(build_trial, client):
    """From the moment the case is first sent to its assisted reader, the ai app never makes its draft again (a
    lateral that comes later): the draft's delivered_at is stamped then, and not by the standard arm."""
    from ai.models import AIDraft
    from core import clock

    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    standard = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    client.force_login(standard.reader.user)
    assert client.get(f"/t/{trial.code}/read/{standard.pk}/").status_code == 200
    assert AIDraft.objects.get(case=standard.case).delivered_at is None
    assisted = Read.objects.get(trial=trial, arm="assisted", case=standard.case)
    client.force_login(assisted.reader.user)
    t0 = timezone.now()
    with clock.simulated(lambda: t0):
        assert client.get(f"/api/reads/{assisted.pk}/").status_code == 200
    with clock.simulated(lambda: t0 + timedelta(seconds=5)):
        assert client.get(f"/t/{trial.code}/read/{assisted.pk}/").status_code == 200
    assert AIDraft.objects.get(case=standard.case).delivered_at == t0
    other = AIDraft.objects.exclude(case=standard.case).get(case__trial=trial)
    assert other.delivered_at is None


def test_reading_time_starts_at_the_servers_first_delivery(build_trial, client):
    from core import clock

    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    user = read.reader.user
    client.force_login(user)
    t0 = timezone.now()
    with clock.simulated(lambda: t0):
        assert client.get(f"/t/{trial.code}/read/{read.pk}/").status_code == 200
    with clock.simulated(lambda: t0 + timedelta(seconds=5)):
        client.get(f"/api/reads/{read.pk}/")  # a second delivery changes nothing
    read.refresh_from_db()
    assert read.delivered_at == t0
    # the client reports "opened" 20 s late, then submits at 40 s: both times count from the delivery
    with clock.simulated(lambda: t0 + timedelta(seconds=20)):
        services.record_event(read_id=read.pk, by=user, kind="opened", tab_id="t")
    with clock.simulated(lambda: t0 + timedelta(seconds=35)):
        services.record_event(read_id=read.pk, by=user, kind="heartbeat", tab_id="t")
    with clock.simulated(lambda: t0 + timedelta(seconds=40)):
        _submit(read, user)
    read.refresh_from_db()
    assert read.wall_seconds == pytest.approx(40) and read.active_seconds == pytest.approx(40)
