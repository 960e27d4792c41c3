"""The audit trail proves the data (issue 13 item 6): each event binds the state of the record it wrote, verify names
every record edited in the database, the chain is keyed and anchored outside the database (re-hashing and
truncation are caught), the audit page shows no outcome before unblinding, and a failed nightly run alerts."""
from __future__ import annotations

import json
import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from reading.models import Read, Report
from tests.reading.conftest import build_trial  # noqa: F401  (the fixtures of a trial in reading and scoring)
from tests.scoring.conftest import scoring_trial  # noqa: F401
from tests.scoring.helpers import answer, answer_before, mine
from trial import audit, tasks
from trial import services as trial_services
from trial.models import Allocation, AuditEvent, AuditHead, Status


def _tamper(sql: str, params: list) -> None:
    """Bypass the application, as someone with the database's owner rights would: on PostgreSQL the append-only
    triggers are switched off first (replica role), which is what verify_audit is for."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = origin")


@pytest.fixture
def world(scoring_trial, investigator):  # noqa: F811
    """A paired trial in scoring: reports submitted, one quality score and one preference answered. The drafts of
    the reading fixture are written directly (no model run): a baseline event records them."""
    trial, readers, experts, cases = scoring_trial(n_cases=2, n_experts=5)
    quality = mine(experts[0], kind="quality")[0]
    answer_before(quality, experts[0])
    score = answer(quality, experts[0], overall=4)
    pair = mine(experts[1], kind="pair")[0]
    answer_before(pair, experts[1])
    preference = answer(pair, experts[1], choice="A")
    audit.baseline_states()
    report = audit.verify()
    assert report.intact, str(report)
    return trial, score, preference


def _named(report) -> set[tuple[str, str]]:
    return {(row.model, row.pk) for row in report.rows}


# ------------------------------------------------------------------------------------------ records


def test_every_write_of_a_registered_record_carries_its_state_hash(world):
    trial, score, preference = world
    for action in ("allocation.made", "report.submitted", "scoring.quality_submitted", "scoring.pair_submitted"):
        event = AuditEvent.objects.filter(action=action).latest("id")
        assert event.scheme == audit.SCHEME_HMAC and len(event.state_hash) == 64, action
        assert event.state_hash == audit.state_hash(_object_of(event))


def _object_of(event):
    from django.apps import apps

    return apps.get_model(event.object_type)._base_manager.get(pk=event.object_id)


def test_verify_names_a_report_whose_text_was_edited_in_the_database(world):
    report = Report.objects.order_by("id").first()
    _tamper("UPDATE reading_report SET impression = %s WHERE id = %s", ["No acute findings.", report.pk])
    result = audit.verify()
    assert not result.intact
    assert _named(result) == {("reading.Report", str(report.pk))}
    with pytest.raises(CommandError, match=rf"reading\.Report {report.pk} \(trial \d+\): its content differs"):
        call_command("verify_audit")


def test_verify_names_the_reports_of_a_read_whose_reading_time_was_edited(world):
    report = Report.objects.order_by("id").last()
    _tamper("UPDATE reading_read SET active_seconds = %s WHERE id = %s", [3.0, report.read_id])
    assert _named(audit.verify()) == {("reading.Report", str(pk))
                                      for pk in Report.objects.filter(read_id=report.read_id).values_list("pk",
                                                                                                          flat=True)}


def test_verify_names_an_expert_score_edited_in_the_database(world):
    trial, score, preference = world
    _tamper("UPDATE scoring_qualityscore SET overall = %s WHERE id = %s", [1, score.pk])
    assert _named(audit.verify()) == {("scoring.QualityScore", str(score.pk))}


def test_verify_names_a_preference_edited_in_the_database(world):
    trial, score, preference = world
    _tamper("UPDATE scoring_preference SET choice = %s WHERE id = %s", ["B", preference.pk])
    assert _named(audit.verify()) == {("scoring.Preference", str(preference.pk))}


def test_verify_names_an_allocation_whose_arm_was_changed(world):
    allocation = Allocation.objects.order_by("id").first()
    other = "standard" if allocation.arm == "assisted" else "assisted"
    Allocation.objects.filter(pk=allocation.pk).update(arm=other)  # a queryset update: past the service
    result = audit.verify()
    assert _named(result) == {("trial.Allocation", str(allocation.pk))}
    assert "trial.Allocation" in str(result) and f"{allocation.pk}" in str(result)


def test_verify_names_every_edited_row_and_rows_written_past_the_services(world):
    trial, score, preference = world
    report = Report.objects.order_by("id").first()
    _tamper("UPDATE reading_report SET findings = %s WHERE id = %s", ["", report.pk])
    _tamper("UPDATE scoring_preference SET choice = %s WHERE id = %s", ["B", preference.pk])
    read = Read.objects.filter(reports__isnull=True).first() or Read.objects.first()
    forged = Report.objects.create(read=read, version=99, impression="Inserted.", author=score.assignment.expert.user,
                                   created_at=report.created_at)
    result = audit.verify()
    assert _named(result) == {("reading.Report", str(report.pk)), ("scoring.Preference", str(preference.pk)),
                              ("reading.Report", str(forged.pk))}
    forged_row = next(row for row in result.rows if row.pk == str(forged.pk))
    assert forged_row.event_id is None and "no audit event" in forged_row.reason


# ------------------------------------------------------------------------------------------ the chain and its anchor


def _anchor(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return audit.anchor_head()


def test_anchor_head_writes_the_head_to_the_anchor_file_and_returns_it(trial, site, settings,
                                                                       django_capture_on_commit_callbacks):
    head = _anchor(django_capture_on_commit_callbacks)
    assert (head.count, head.hash) == tuple(AuditHead.objects.values_list("count", "last_hash").get())
    assert head.as_dict()["count"] == 3 and head.at.tzinfo is not None
    lines = open(settings.AUDIT_ANCHOR_FILE).read().splitlines()
    assert json.loads(lines[-1])["hash"] == head.hash and json.loads(lines[-1])["mac"]
    assert audit.verify().anchors == 1 and audit.verify().intact


def test_an_anchor_in_a_rolled_back_transaction_is_never_written(trial, site, settings):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.anchor_head()
        raise RuntimeError("rolled back")
    assert audit.verify().anchors == 0


def _rehash_from(first_id: int, *, keyed: bool) -> None:
    """Recompute every hash from `first_id` on, as an attacker would after editing an event, and move the head."""
    prev = AuditEvent.objects.get(pk=first_id - 1).hash if first_id > 1 else audit.GENESIS_HASH
    for event in AuditEvent.objects.filter(pk__gte=first_id).order_by("id"):
        event.prev_hash = prev
        if not keyed:  # without the key: the plain scheme of the first events
            event.scheme = audit.SCHEME_SHA256
        event.hash = audit.compute_hash(event)
        _tamper("UPDATE trial_auditevent SET prev_hash = %s, hash = %s, scheme = %s WHERE id = %s",
                [event.prev_hash, event.hash, event.scheme, event.pk])
        prev = event.hash
    AuditHead.objects.filter(pk=1).update(last_hash=prev)


@pytest.mark.parametrize("keyed", [False, True], ids=["without-the-key", "with-the-key"])
def test_a_rehashed_chain_is_caught_by_its_anchor(trial, site, investigator, django_capture_on_commit_callbacks,
                                                  keyed):
    _anchor(django_capture_on_commit_callbacks)
    target = AuditEvent.objects.get(action="member.added")
    _tamper("UPDATE trial_auditevent SET payload = %s WHERE id = %s", ['{"role": "expert"}', target.pk])
    _rehash_from(target.pk, keyed=keyed)
    result = audit.verify()
    assert not result.intact
    assert any("re-hashed" in problem for problem in result.anchor_problems) or "re-hashed" in result.reason
    with pytest.raises(CommandError, match="re-hashed"):
        call_command("verify_audit")


def test_a_chain_rehashed_without_the_key_is_caught_even_before_an_anchor(trial, site):
    target = AuditEvent.objects.get(action="member.added")
    _rehash_from(target.pk, keyed=False)
    result = audit.verify()
    assert result.first_broken_id == target.pk and "without the key" in result.reason


def test_a_truncated_chain_with_its_head_moved_back_is_caught_by_its_anchor(trial, site, investigator,
                                                                            django_capture_on_commit_callbacks):
    trial_services.add_site(trial=trial, by=investigator, code="site-b", name="Hospital B")
    _anchor(django_capture_on_commit_callbacks)
    last = AuditEvent.objects.latest("id")
    _tamper("DELETE FROM trial_auditevent WHERE id = %s", [last.pk])
    before = AuditEvent.objects.get(pk=last.pk - 1)
    AuditHead.objects.filter(pk=1).update(count=before.pk, last_hash=before.hash)
    result = audit.verify()
    assert not result.intact and result.first_broken_id is None  # the chain itself holds: only the anchor knows
    assert any("truncated" in problem for problem in result.anchor_problems)


def test_an_anchor_line_written_without_the_key_is_refused(trial, site, settings):
    head = AuditHead.objects.get(pk=1)
    with open(settings.AUDIT_ANCHOR_FILE, "a") as handle:
        handle.write(json.dumps({"count": head.count, "hash": head.last_hash, "at": "2026-01-01T00:00:00+00:00",
                                 "mac": "0" * 64}) + "\n")
    result = audit.verify()
    assert not result.intact and "not written with the audit key" in result.anchor_problems[0]


def test_events_written_before_the_key_still_verify(trial, site, investigator):
    # An event of the first scheme (plain SHA-256, no state hash) at the end of today's chain would be a downgrade;
    # at the start of a chain, before any keyed event, it is an old deployment's history and verifies.
    first = AuditEvent.objects.order_by("id").first()
    first.scheme, first.state_hash = audit.SCHEME_SHA256, ""
    first.hash = audit.compute_hash(first)
    _tamper("UPDATE trial_auditevent SET scheme = %s, state_hash = '', hash = %s WHERE id = %s",
            [first.scheme, first.hash, first.pk])
    _rehash_from(first.pk + 1, keyed=True)
    assert audit.verify().intact


# ------------------------------------------------------------------------------------------ the audit page


def test_the_audit_page_shows_no_outcome_before_unblinding(world, client, investigator):
    trial, score, preference = world
    read = Read.objects.filter(wall_seconds__isnull=False).first()
    # an event of the old kind, with outcome values in its payload
    with transaction.atomic():
        audit.record(actor=investigator, action="report.submitted", obj=read.reports.first(), trial=trial,
                     payload={"read": read.pk, "wall_seconds": 123.456, "active_seconds": 78.9, "arm": read.arm,
                              "reason": "Missed the effusion."})
    client.force_login(investigator)
    body = client.get(f"/t/{trial.code}/audit/").content.decode()
    for value in ("wall_seconds", "active_seconds", "123.456", "78.9", "Missed the effusion", "&#x27;arm&#x27;"):
        assert value not in body, value
    # no time of day on reading and scoring events: an "opened" and a "submitted" seconds apart are a reading time
    rows = re.findall(r"<tr><td>\d+</td><td>([^<]*)</td>\s*<td>[^<]*</td><td>([^<]*)</td>", body)
    assert {action for _, action in rows} >= {"report.submitted", "read.opened", "scoring.quality_submitted"}
    assert all(":" not in when for when, action in rows if action.startswith(("read.", "report.", "scoring.")))
    assert any(":" in when for when, action in rows if action == "allocation.made")
    assert "report.submitted" in body and "allocation.made" in body
    assert "The trial is blinded" in body

    type(trial).objects.filter(pk=trial.pk).update(status=Status.UNBLINDED)
    body = client.get(f"/t/{trial.code}/audit/").content.decode()
    assert "123.456" in body and "Missed the effusion" in body


def test_no_outcome_value_is_written_into_an_audit_payload(world):
    outcome_keys = audit.OUTCOME_KEYS | {"reason"}
    for action, payload in AuditEvent.objects.filter(
            action__in=["report.submitted", "report.corrected", "allocation.made", "scoring.quality_submitted",
                        "scoring.pair_submitted", "scoring.reference_submitted"]).values_list("action", "payload"):
        assert not set(payload) & outcome_keys, (action, payload)


# ------------------------------------------------------------------------------------------ the nightly run


def test_a_failed_nightly_verification_emails_the_investigators_and_shows_a_notice(world, investigator, make_user,
                                                                                   client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    trial, score, preference = world
    other_investigator = make_user("ivan", can_create_trials=True)
    trial_services.create_trial(by=other_investigator, code="other-1", title="Another trial")
    _tamper("UPDATE scoring_qualityscore SET overall = %s WHERE id = %s", [1, score.pk])

    result = tasks.verify_audit_chain()

    assert result["intact"] is False and result["rows"] == 1
    assert [message.to for message in mail.outbox] == [[investigator.email]]  # the trial's investigators only
    message = mail.outbox[0]
    assert "FAILED" in message.subject and trial.code in message.body
    assert f"scoring.QualityScore {score.pk}" in message.body and "overall" not in message.body
    client.force_login(investigator)
    body = client.get(f"/t/{trial.code}/audit/").content.decode()
    assert "failed its last verification" in body


def test_a_broken_chain_that_cannot_be_tied_to_a_trial_alerts_every_investigator(trial, site, investigator,
                                                                                make_user, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    other_investigator = make_user("ivan", can_create_trials=True)
    trial_services.create_trial(by=other_investigator, code="other-1", title="Another trial")
    _tamper("DELETE FROM trial_auditevent WHERE id = %s", [2])
    assert tasks.verify_audit_chain()["intact"] is False
    assert sorted(m.to[0] for m in mail.outbox) == sorted([investigator.email, other_investigator.email])


def test_an_intact_nightly_verification_sends_nothing_and_anchors_the_head(trial, site, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert tasks.verify_audit_chain()["intact"] is True
    assert mail.outbox == []
    assert AuditHead.objects.get(pk=1).verified_intact is True


# ------------------------------------------------------------------------------------------ PostgreSQL


def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the triggers and roles are PostgreSQL's; SQLite relies on the models' guards and the state hashes")


@pytest.mark.parametrize("sql", ["UPDATE reading_report SET impression = 'forged'", "DELETE FROM reading_report",
                                 "UPDATE scoring_qualityscore SET overall = 1", "DELETE FROM scoring_preference",
                                 "UPDATE scoring_preference SET choice = 'B'"])
def test_database_triggers_refuse_changes_to_reports_and_answers(world, sql):
    _postgresql_only()
    from django.db.utils import DatabaseError

    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)


def test_the_trigger_lets_a_report_be_signed_once(world):
    _postgresql_only()
    from django.db.utils import DatabaseError

    report = Report.objects.first()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE reading_report SET signed_at = now() WHERE id = %s", [report.pk])
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE reading_report SET signed_at = now() WHERE id = %s", [report.pk])


def test_the_application_role_owns_nothing_and_cannot_change_the_append_only_tables(world):
    _postgresql_only()
    from django.db.utils import DatabaseError

    from trial.management.commands.grant_app_role import statements

    with connection.cursor() as cursor:  # CREATE ROLE is transactional: the test's rollback removes it
        cursor.execute("CREATE ROLE cxr_test_app NOLOGIN")
        for sql in statements("cxr_test_app"):
            cursor.execute(sql)
        cursor.execute("SET ROLE cxr_test_app")
        try:
            cursor.execute("SELECT count(*) FROM trial_auditevent")
            for sql in ("UPDATE trial_auditevent SET action = 'x'", "DELETE FROM trial_auditevent",
                        "UPDATE reading_report SET impression = 'x'", "DELETE FROM scoring_qualityscore",
                        "ALTER TABLE trial_auditevent DISABLE TRIGGER ALL", "TRUNCATE trial_auditevent"):
                with pytest.raises(DatabaseError, match="permission denied|must be owner"):
                    with transaction.atomic():
                        cursor.execute(sql)
        finally:
            cursor.execute("RESET ROLE")
