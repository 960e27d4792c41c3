"""An investigator, in a real browser: invites members from the trial page, watches the AI drafts and the
reading progress; neither page says anything by arm."""
from __future__ import annotations

import pytest

from ai.models import AIDraft, DraftStatus
from reading import services as reading_services
from reading.models import Read
from tests.conftest import PASSWORD
from tests.e2e.conftest import ARTIFACTS, login
from tests.reading.conftest import build_trial, make_draft  # noqa: F401 - the fixture
from trial.models import Invitation, Membership, Role


def _main_text(page) -> str:
    return page.inner_text("main") if page.locator("main").count() else page.inner_text("body")


def _says_nothing_by_arm(page) -> None:
    text = _main_text(page).lower()
    assert "assisted" not in text and "standard" not in text


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_investigator_invites_a_new_person_and_adds_a_known_user(page, build_trial, investigator, make_user,
                                                                 mailoutbox):
    trial, *_ = build_trial(readers_per_site=2, n_cases=1, code="e2e-inv", start_reading=False)
    known = make_user("kim")
    login(page, investigator.username, PASSWORD)
    page.goto(f"/t/{trial.code}/")

    page.fill("#id_email", "new.senior@example.org")
    page.select_option("#id_role", Role.SENIOR)
    page.get_by_role("button", name="Invite").click()
    page.wait_for_selector("text=Invitation sent to new.senior@example.org.")
    assert page.locator("td", has_text="new.senior@example.org (invited)").count() == 1
    invitation = Invitation.objects.get(trial=trial, email="new.senior@example.org")
    assert invitation.role == Role.SENIOR and invitation.accepted_at is None
    assert len(mailoutbox) == 1 and invitation.token in mailoutbox[0].body

    page.fill("#id_email", known.email)
    page.select_option("#id_role", Role.EXPERT)
    page.get_by_role("button", name="Invite").click()
    page.wait_for_selector(f"text={known.username} added as {Role.EXPERT}")
    membership = Membership.objects.get(trial=trial, user=known)
    assert membership.role == Role.EXPERT
    assert page.locator("td", has_text=membership.pseudonym).count() == 1
    assert len(mailoutbox) == 1  # a known user is added, not mailed

    # a refusal: the same invitation twice says why and writes nothing
    page.fill("#id_email", "new.senior@example.org")
    page.select_option("#id_role", Role.SENIOR)
    page.get_by_role("button", name="Invite").click()
    page.wait_for_selector("text=already has an open invitation")
    assert Invitation.objects.filter(trial=trial, email="new.senior@example.org").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "investigator-invite.png"), full_page=True)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_investigator_sees_the_ai_drafts_with_their_counts(page, build_trial, investigator):
    trial, _, cases, model = build_trial(readers_per_site=2, n_cases=5, code="e2e-ai", drafts=False,
                                         start_reading=False)
    make_draft(cases[0], model)
    make_draft(cases[1], model)
    make_draft(cases[2], model, status=DraftStatus.FAILED)
    AIDraft.objects.filter(case=cases[2]).update(error="The model server did not answer.", attempts=3)
    # cases[3] and cases[4] have no draft
    login(page, investigator.username, PASSWORD)
    page.goto(f"/t/{trial.code}/ai/")
    assert page.inner_text("[data-testid=trial-model]") == model.name
    # the polled text (draft-progress.js) agrees with the server-rendered one
    page.wait_for_selector("#draft-progress-bar:has-text('40 %')")
    assert page.inner_text("#draft-progress-text") == (
        "2 ready, 0 pending, 0 running, 1 failed, 2 without a draft, of 5 cases.")
    rows = page.locator("table tbody tr")
    assert rows.count() == 3
    failed = page.locator("tr", has_text=cases[2].code)
    assert "Failed" in failed.inner_text() and "The model server did not answer." in failed.inner_text()
    assert failed.get_by_role("button", name="Retry").count() == 1
    assert page.get_by_role("button", name="Retry").count() == 1  # only the failed draft
    _says_nothing_by_arm(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "investigator-drafts.png"), full_page=True)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_investigator_sees_reading_progress_by_reader_and_nothing_by_arm(page, build_trial, investigator):
    trial, readers, cases, _ = build_trial(readers_per_site=2, n_cases=3, code="e2e-dash")
    reads = Read.objects.filter(trial=trial).select_related("reader__user", "case").order_by("reader__pseudonym", "pk")
    by_reader: dict[str, list[Read]] = {}
    for read in reads:
        by_reader.setdefault(read.reader.pseudonym, []).append(read)
    (first_name, first_reads), (second_name, second_reads) = sorted(by_reader.items())
    assert len(first_reads) == len(second_reads) == 3
    for read in first_reads[:2]:
        reading_services.submit_report(read_id=read.pk, by=read.reader.user, findings="", impression="Normal.",
                                       finding_flags={})
    opened = second_reads[0]
    reading_services.record_event(read_id=opened.pk, by=opened.reader.user, kind="opened", tab_id="t1")

    login(page, investigator.username, PASSWORD)
    page.goto(f"/t/{trial.code}/reading/")
    page.wait_for_selector("text=Readers (backlog 4)")
    row = page.locator("tr", has_text=first_name).first
    # done, open (of which started), total
    assert [c.strip() for c in row.locator("td").all_inner_texts()] == [first_name, "site-a", "2", "1 (0)", "3"]
    row = page.locator("tr", has_text=second_name).first
    assert [c.strip() for c in row.locator("td").all_inner_texts()] == [second_name, "site-a", "0", "3 (1)", "3"]
    assert "3 ready, 0 failed, 0 queued of 3." in _main_text(page)
    enrolment = page.locator("h2:has-text('Enrolment by site') + table tr")
    assert [c.strip() for c in enrolment.first.locator("td").all_inner_texts()] == ["site-a", "3"]
    # the two reads submitted in no time are listed one by one, by reader and case, not by arm
    outliers = page.locator("h2:has-text('Reading-time outliers') ~ table tbody tr")
    assert outliers.count() == 2
    assert all(first_name in t for t in outliers.all_inner_texts())
    _says_nothing_by_arm(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "investigator-dashboard.png"), full_page=True)
