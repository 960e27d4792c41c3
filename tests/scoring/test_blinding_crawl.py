"""The blinding crawl: every URL of the project, as every role, by GET and HEAD.

(a) Each URL name has an explicit allow/deny row below (no wildcard): a new URL fails this test until
    someone decides, on purpose, who may reach it.
(b) No response that an expert (a panel expert, or the adjudicator) can get carries a blinded value:
    the arm names, reader usernames and pseudonyms, the AI draft text and model, the site code and name,
    the case codes (experts see item numbers), the enrolment and reading dates, other experts'
    usernames, pseudonyms and free-text answers.

Skipped, with the reason: /admin/ (Django's admin, for staff accounts only; no trial role reaches it,
and staff are not on the blinded side) and /static/ (package assets, served by whitenoise outside the
URL resolver, identical for everyone). The OpenAPI schema (api-schema) is static too: it is checked for
every blinded value except the arm names, which it must list as the allowed values of the "arm" field
of investigators' endpoints, and it is asserted byte-identical for an expert and an anonymous visitor
(so it carries no trial data at all).
"""
from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from ai.models import AIDraft
from reading.models import Read, ReadEvent, Report
from scoring import selectors, services
from scoring.models import Assignment
from stats import services as stats_services
from stats.models import AnalysisRun, InterimLook
from stats.plan import default_plan
from tests.reading.conftest import DRAFT_FINDINGS, DRAFT_IMPRESSION
from tests.scoring.conftest import add_experts, submit_all_reads
from tests.scoring.helpers import answer, mine
from tests.signing import proof
from tests.triggers import past_append_only_triggers
from trial import services as trial_services
from trial.access import access_to
from trial.models import Case, Membership, Role

ROLES = ["anonymous", "outsider", "investigator", "reader_assisted", "reader_standard", "senior", "expert",
         "adjudicator", "statistician", "monitor"]
BLINDED_ROLES = ("expert", "adjudicator")

# Expected status of a GET, per role in the order of ROLES. 200 allowed; 302 to the login page; 401/403
# refused; 405 a write-only URL (refused to every GET, whoever asks).
ANON_PAGE, ANON_API = "302", "401"
MATRIX: dict[str, str] = {
    # accounts and API documentation
    "login":                       "200 200 200 200 200 200 200 200 200 200",
    "logout":                      "405 405 405 405 405 405 405 405 405 405",  # POST only
    "api-schema":                  "200 200 200 200 200 200 200 200 200 200",  # static, no trial data
    "api-docs":                    "200 200 200 200 200 200 200 200 200 200",
    "healthz":                     "200 200 200 200 200 200 200 200 200 200",  # {"ok": true}, for load balancers
    "admin_login":                 "302 302 302 302 302 302 302 302 302 302",  # to the one login page
    "account":                     "302 200 200 200 200 200 200 200 200 200",  # one's own account and tokens
    "account_token_create":        "302 405 405 405 405 405 405 405 405 405",  # POST only
    "account_token_revoke":        "302 405 405 405 405 405 405 405 405 405",
    "second_factor_verify":        "302 302 302 302 302 302 302 302 302 302",  # no authenticator yet: to the set-up
    "second_factor_setup":         "302 200 200 200 200 200 200 200 200 200",
    "second_factor_recovery_codes": "302 200 200 200 200 200 200 200 200 200",
    "password_change":             "302 200 200 200 200 200 200 200 200 200",
    "password_change_done":        "302 200 200 200 200 200 200 200 200 200",
    "password_reset":              "200 200 200 200 200 200 200 200 200 200",
    "password_reset_done":         "200 200 200 200 200 200 200 200 200 200",
    "password_reset_confirm":      "200 200 200 200 200 200 200 200 200 200",  # "this link is not valid"
    "password_reset_complete":     "200 200 200 200 200 200 200 200 200 200",
    # trial app: pages
    "trial:home":                  "302 200 200 200 200 200 200 200 200 200",
    "trial:create":                "302 403 200 403 403 403 403 403 403 403",  # needs the add_trial permission
    "trial:accept_invitation":     "200 200 200 200 200 200 200 200 200 200",  # whoever holds the link
    "trial:detail":                "302 403 200 200 200 200 200 200 200 200",
    "trial:settings":              "302 403 200 403 403 403 403 403 403 403",
    "trial:transition":            "302 405 405 405 405 405 405 405 405 405",
    "trial:lock":                  "302 403 200 403 403 403 403 403 403 403",  # a signed act of an investigator
    "trial:unblinding":            "302 403 200 403 403 403 403 403 200 403",  # asked by one, approved by the other
    "api-trial-lock":              "401 405 405 405 405 405 405 405 405 405",
    "api-trial-unblinding":        "401 405 405 405 405 405 405 405 405 405",
    "trial:site_add":              "302 405 405 405 405 405 405 405 405 405",
    "trial:member_invite":         "302 405 405 405 405 405 405 405 405 405",
    "trial:case_list":             "302 403 200 403 403 403 403 403 403 403",
    "trial:case_upload":           "302 403 200 403 403 403 403 403 403 403",
    "trial:case_detail":           "302 403 200 403 403 403 403 403 403 403",
    "trial:case_image":            "302 403 200 403 403 403 403 403 403 403",
    "trial:case_study_image":      "302 403 200 403 403 403 403 403 403 403",  # an image of the study, by position
    "trial:audit_log":             "302 403 200 403 403 403 403 403 403 403",
    "trial:conduct":               "302 403 200 403 403 403 403 403 403 403",  # the live trial's conduct
    "trial:conduct_site":          "302 405 405 405 405 405 405 405 405 405",
    "trial:conduct_site_dicom":    "302 405 405 405 405 405 405 405 405 405",
    "trial:conduct_duty":          "302 405 405 405 405 405 405 405 405 405",
    "trial:conduct_withdraw":      "302 405 405 405 405 405 405 405 405 405",
    "trial:conduct_roster":        "302 405 405 405 405 405 405 405 405 405",
    "trial:conduct_deviation":     "302 405 405 405 405 405 405 405 405 405",
    "trial:hospital":              "302 403 200 403 403 403 403 403 403 403",  # wires and outbox: no text, no PHI
    "trial:hospital_destinations": "302 405 405 405 405 405 405 405 405 405",
    "trial:hospital_token_issue":  "302 405 405 405 405 405 405 405 405 405",
    "trial:hospital_token_revoke": "302 405 405 405 405 405 405 405 405 405",
    "trial:hospital_resend":       "302 405 405 405 405 405 405 405 405 405",
    "trial:hospital_fhir_download": "302 403 404 403 403 403 403 403 403 403",  # research only: nothing released
    # DICOMweb STOW-RS: POST only, with a site's sender token (a system, not a person)
    "dicomweb:stow":               "405 405 405 405 405 405 405 405 405 405",
    "dicomweb:stow_study":         "405 405 405 405 405 405 405 405 405 405",
    # trial app: API
    "api-trials":                  "401 200 200 200 200 200 200 200 200 200",
    "api-trial":                   "401 403 200 200 200 200 200 200 200 200",
    "api-trial-transition":        "401 405 405 405 405 405 405 405 405 405",
    "api-sites":                   "401 403 200 200 200 200 403 403 200 200",  # experts: the site is blinded
    "api-members":                 "401 403 200 403 403 403 403 403 403 403",
    "api-cases":                   "401 403 200 403 403 403 403 403 403 403",
    "api-case":                    "401 403 200 403 403 403 403 403 403 403",
    "api-allocations":             "401 403 200 403 403 403 403 403 403 403",
    # ai app
    "ai:drafts":                   "302 403 200 403 403 403 403 403 403 403",
    "ai:assign_model":             "302 405 405 405 405 405 405 405 405 405",
    "ai:backfill":                 "302 405 405 405 405 405 405 405 405 405",
    "ai:retry":                    "302 405 405 405 405 405 405 405 405 405",
    "api-trial-model":             "401 403 200 403 403 403 403 403 403 403",
    "api-drafts":                  "401 403 200 403 403 403 403 403 403 403",
    "api-drafts-progress":         "401 403 200 403 403 403 403 403 403 403",
    "api-drafts-backfill":         "401 405 405 405 405 405 405 405 405 405",
    "api-draft-retry":             "401 405 405 405 405 405 405 405 405 405",
    # reading app (the read and report belong to the assisted reader)
    "reading:worklist":            "302 403 403 200 200 403 403 403 403 403",
    "reading:read":                "302 403 403 200 403 403 403 403 403 403",
    "reading:read_image":          "302 403 403 200 403 403 403 403 403 403",
    "reading:study_image":         "302 403 403 200 403 403 403 403 403 403",  # an image of the study, by position
    "reading:duty":                "302 405 405 405 405 405 405 405 405 405",  # POST only: a reader goes on/off duty
    "reading:signoff_queue":       "302 403 403 403 403 200 403 403 403 403",
    "reading:signoff_report":      "302 403 403 403 403 200 403 403 403 403",
    # the report of record is the senior's to write only under release policy "senior" (this trial: research only)
    "reading:write_record":        "302 403 403 403 403 403 403 403 403 403",
    "reading:record_image":        "302 403 403 403 403 403 403 403 403 403",
    "reading:senior_image":        "302 403 403 403 403 200 403 403 403 403",
    "reading:senior_study_image":  "302 403 403 403 403 200 403 403 403 403",  # an image of the study, by position
    "reading:dashboard":           "302 403 200 403 403 403 403 403 403 403",
    "reading:route":               "302 405 405 405 405 405 405 405 405 405",
    "api-worklist":                "401 403 403 200 200 403 403 403 403 403",
    "api-read":                    "401 403 403 200 403 403 403 403 403 403",
    "api-read-events":             "401 405 405 405 405 405 405 405 405 405",
    "api-read-autosave":           "401 405 405 405 405 405 405 405 405 405",
    "api-read-submit":             "401 405 405 405 405 405 405 405 405 405",
    "api-read-correct":            "401 405 405 405 405 405 405 405 405 405",
    "api-signoff":                 "401 403 403 403 403 200 403 403 403 403",
    "api-sign":                    "401 405 405 405 405 405 405 405 405 405",
    # scoring app (the item key is the panel expert's own; the adjudication key is the adjudicator's)
    "scoring:worklist":            "302 403 403 403 403 403 200 200 403 403",
    "scoring:item":                "302 403 403 403 403 403 200 403 403 403",
    "scoring:item_image":          "302 403 403 403 403 403 200 403 403 403",
    "scoring:item_study_image":    "302 403 403 403 403 403 200 403 403 403",  # an image of the study, by position
    "scoring:adjudication":        "302 403 403 403 403 403 403 200 403 403",
    "scoring:adjudicate":          "302 403 403 403 403 403 403 200 403 403",
    "scoring:adjudication_image":  "302 403 403 403 403 403 403 200 403 403",
    "scoring:adjudication_study_image": "302 403 403 403 403 403 403 200 403 403",
    "scoring:progress":            "302 403 200 403 403 403 403 403 403 403",
    "scoring:build":               "302 405 405 405 405 405 405 405 405 405",
    "scoring:settings":            "302 403 200 403 403 403 403 403 403 403",
    "api-scoring-items":           "401 403 403 403 403 403 200 200 403 403",
    "api-scoring-item":            "401 403 403 403 403 403 200 403 403 403",
    "api-scoring-item-open":       "401 405 405 405 405 405 405 405 405 405",  # POST only: opening starts the time
    "api-scoring-quality":         "401 405 405 405 405 405 405 405 405 405",
    "api-scoring-pair":            "401 405 405 405 405 405 405 405 405 405",
    "api-scoring-reference":       "401 405 405 405 405 405 405 405 405 405",
    "api-scoring-progress":        "401 403 200 403 403 403 403 403 403 403",
    "api-scoring-build":           "401 405 405 405 405 405 405 405 405 405",
    "api-scoring-settings":        "401 403 200 403 403 403 403 403 403 403",
    "api-scoring-adjudication":    "401 403 403 403 403 403 403 200 403 403",
    "api-scoring-adjudicate":      "401 403 403 403 403 403 403 200 403 403",
    "api-scoring-results":         "401 403 403 403 403 403 403 403 403 403",  # until unblinding
    # stats app. The crawl trial has a frozen analysis plan (version 1) and a run (1) that is queued, before
    # unblinding: a masked run is for the statistician alone, never for whoever sees the allocations (the
    # investigator); the queued run has no report, plots or dataset yet (404; the page's export redirects back).
    "stats:home":                  "302 403 200 403 403 403 403 403 200 403",
    "stats:power":                 "302 403 200 403 403 403 403 403 200 403",  # a calculator for the analysts
    "stats:plan_edit":             "302 403 200 403 403 403 403 403 200 403",
    "stats:plan_freeze":           "302 405 405 405 405 405 405 405 405 405",
    "stats:plan_json":             "302 403 200 403 403 403 403 403 200 403",
    "stats:run_start":             "302 405 405 405 405 405 405 405 405 405",
    "stats:run":                   "302 403 403 403 403 403 403 403 200 403",
    "stats:report_file":           "302 403 403 403 403 403 403 403 404 403",
    "stats:export":                "302 403 403 403 403 403 403 403 302 403",
    "stats:plot":                  "302 403 403 403 403 403 403 403 404 403",
    "evaluation:page":             "302 403 403 403 403 403 403 403 403 403",  # analysts, after unblinding only
    "evaluation:csv":          "302 403 403 403 403 403 403 403 403 403",
    "api-analysis-plans":          "401 403 200 403 403 403 403 403 200 403",
    "api-analysis-plan":           "401 403 200 403 403 403 403 403 200 403",
    "api-analysis-plan-freeze":    "401 405 405 405 405 405 405 405 405 405",
    "api-analysis-runs":           "401 403 200 403 403 403 403 403 200 403",
    "api-analysis-run":            "401 403 403 403 403 403 403 403 200 403",
    "api-analysis-run-progress":   "401 403 403 403 403 403 403 403 200 403",
    "api-analysis-run-export":     "401 403 403 403 403 403 403 403 409 403",
    # interim looks: that a look happened is for the analysts (and the data-monitoring committee, not a role of this
    # crawl); look 1 is a safety look, whose results are the committee's alone before unblinding
    "stats:interim":               "302 403 200 403 403 403 403 403 200 200",
    "stats:interim_take":          "302 405 405 405 405 405 405 405 405 405",  # POST only
    "stats:interim_look":          "302 403 403 403 403 403 403 403 403 200",
    "api-analysis-interim-looks":  "401 403 200 403 403 403 403 403 200 200",
    "api-analysis-interim-look":   "401 403 403 403 403 403 403 403 403 200",
}
# HEAD gets what GET gets, except where a view allows GET alone (named here, to be fixed in that view).
HEAD_DIFFERS: dict = {}
SKIPPED_NAMESPACES = {"admin"}
THE_DATE = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)  # every enrolment and reading time


def _patterns(resolvers, prefix="", namespace=""):
    for entry in resolvers:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or ""
            if ns in SKIPPED_NAMESPACES:
                continue
            yield from _patterns(entry.url_patterns, prefix + str(entry.pattern),
                                 f"{namespace}{ns}:" if ns else namespace)
        elif isinstance(entry, URLPattern):
            yield (f"{namespace}{entry.name}" if entry.name else None), prefix + str(entry.pattern), entry


@pytest.fixture
def world(build_trial, investigator, make_user, outsider, django_capture_on_commit_callbacks):
    """A fully populated trial in scoring: every role, reads, reports, drafts, items, answers, a dispute."""
    trial, readers, cases, model = build_trial(readers_per_site=2, n_cases=3, code="cw")
    senior = make_user("cw-senior")
    statistician = make_user("cw-statistician")
    monitor = make_user("cw-monitor")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role=Role.SENIOR)
    trial_services.add_member(trial=trial, by=investigator, user=monitor, role=Role.MONITOR)
    trial_services.add_member(trial=trial, by=investigator, user=statistician, role=Role.STATISTICIAN)
    experts = add_experts(trial, investigator, make_user, 6)
    services.update_settings(trial=trial, by=investigator,
                             adjudicator=Membership.objects.get(trial=trial, user=experts[5], role=Role.EXPERT))
    submit_all_reads(trial)
    with django_capture_on_commit_callbacks(execute=True):
        trial = trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    # the seniors' pages are refused in a trial without sign-off: this one has it (asked for once the items exist,
    # so that they were built from the submitted reports)
    trial = trial_services.update_trial_settings(trial=trial, by=investigator, require_signoff=True)
    invitation = trial_services.invite_member(trial=trial, by=investigator, email="someone@example.org",
                                              role=Role.STATISTICIAN)
    # the analysis: a frozen plan, and a run waiting for a worker (made as start_run makes it; a run needs a locked
    # trial, and this one is still in scoring)
    plan = stats_services.create_plan_version(trial=trial, by=statistician, content=default_plan(trial.design))
    plan = stats_services.freeze_plan(plan=plan, by=statistician, proof=proof(statistician))
    AnalysisRun.objects.create(trial=trial, number=1, plan=plan, plan_version=plan.version, plan_sha256=plan.sha256,
                               trial_status=trial.status, arm_mapping={"X": "standard", "Y": "assisted"},
                               id_key="0" * 64, requested_by=statistician, requested_at=THE_DATE,
                               stage="Waiting for a worker")
    InterimLook.objects.create(trial=trial, number=1, kind="safety", sequence=1, plan=plan, plan_version=plan.version,
                               plan_sha256=plan.sha256, planned_fraction=0.5, information_fraction=0.5,
                               cases_complete=1, planned_cases=2, trial_status=trial.status, dataset_sha256="0" * 64,
                               results={"by_arm": {"assisted": {}, "standard": {}}}, performed_by=monitor,
                               performed_at=THE_DATE, seconds=0.1)
    panel = [u for u in experts if mine(u)]
    assert len(panel) == 5 and experts[5] not in panel
    case = cases[0]
    # Every panel expert answers every item of the first case, each with words only they wrote.
    for i, user in enumerate(panel):
        for assignment in mine(user, case=case):
            note = f"note-from-{user.username}"
            if assignment.item.kind == "quality":
                answer(assignment, user, overall=1 + i, radpeer="2b", comment=note)
            elif assignment.item.kind == "pair":
                answer(assignment, user, choice="AB"[i % 2], reason_text=note)
            else:
                mark = ["present", "present", "absent", "absent", "uncertain"][i]
                answer(assignment, user, marks={f: "absent" for f in trial.findings} | {"pneumothorax": mark})
    # Distinctive times: enrolment, routing, reading, reports, so that a leaked date can be found.
    Case.objects.filter(trial=trial).update(enrolled_at=THE_DATE)
    Read.objects.filter(trial=trial).update(routed_at=THE_DATE, opened_at=THE_DATE, submitted_at=THE_DATE)
    ReadEvent.objects.filter(read__trial=trial).update(server_time=THE_DATE)
    with past_append_only_triggers():  # set-up: reports are append-only (reading migration 0003)
        Report.objects.filter(read__trial=trial).update(created_at=THE_DATE)
    by_arm = {m.allocation.arm: m for m in Membership.objects.filter(trial=trial, role=Role.READER)}
    reader_user = {arm: m.user for arm, m in by_arm.items()}
    read = Read.objects.filter(case=case, arm="assisted").get()
    expert_pair = mine(panel[0], kind="pair", case=case)[0]
    adjudication_key = selectors.adjudication_queue(access=access_to(user=experts[5], trial=trial))[0]["key"]
    users = {"anonymous": None, "outsider": outsider, "investigator": investigator,
             "reader_assisted": reader_user["assisted"], "reader_standard": reader_user["standard"],
             "senior": senior, "expert": panel[0], "adjudicator": experts[5], "statistician": statistician,
             "monitor": monitor}
    params = {"code": trial.code, "case_code": case.code, "kind": "display", "token": invitation.token,
              "read_id": read.pk, "report_id": read.reports.get().pk,
              "draft_id": AIDraft.objects.get(case=case).pk, "key": expert_pair.key,
              "version": 1, "number": 1, "name": "quality", "uidb64": "MQ", "token_id": 1,
              "site_code": case.site.code, "pseudonym": by_arm["assisted"].pseudonym, "position": 1,
              "study_uid": "1.2.826.0.1.3680043.2.1", "delivery_id": 1}
    per_name = {name: {"key": adjudication_key}
                for name in ("scoring:adjudicate", "scoring:adjudication_image", "scoring:adjudication_study_image",
                             "api-scoring-adjudicate")}
    return {"trial": trial, "users": users, "params": params, "per_name": per_name, "experts": experts,
            "readers": readers, "cases": cases, "model": model, "senior": senior, "panel": panel}


def _forbidden(world, role) -> dict[str, re.Pattern]:
    """Blinded values, each as a pattern (whole words where a value could be part of another word)."""
    me = world["users"][role]
    trial = world["trial"]
    words = {"arm: assisted": r"assisted", "arm: standard": r"standard"}
    for member in Membership.objects.filter(trial=trial, role=Role.READER).select_related("user"):
        words[f"reader {member.pseudonym}"] = re.escape(member.pseudonym)
        words[f"reader {member.user.username}"] = re.escape(member.user.username)
    for member in Membership.objects.filter(trial=trial, role=Role.EXPERT).exclude(user=me).select_related("user"):
        words[f"other expert {member.pseudonym}"] = re.escape(member.pseudonym)
        words[f"other expert {member.user.username}"] = re.escape(member.user.username)
        words[f"other expert's answer {member.user.username}"] = re.escape(f"note-from-{member.user.username}")
    for site in trial.sites.all():
        words[f"site {site.code}"] = re.escape(site.code)
        words[f"site name {site.name}"] = re.escape(site.name)
    for case in world["cases"]:
        words[f"case {case.code}"] = re.escape(case.code)
    words["draft findings"] = re.escape(DRAFT_FINDINGS)
    words["draft impression"] = re.escape(DRAFT_IMPRESSION)
    words["draft label"] = r"AI draft"
    words["model"] = re.escape(world["model"].name)
    for label, text in {"date ISO": "2025-03-14", "date EU": "14/03/2025", "date US": "03/14/2025",
                        "date words": "March 14, 2025", "date short": "Mar. 14, 2025", "time": "09:26"}.items():
        words[label] = re.escape(text)
    # Whole words: "R01" inside a random token, or "assisted" inside the field name "ratio_assisted", is not a value.
    return {label: re.compile(rf"(?<![A-Za-z0-9_]){pattern}(?![A-Za-z0-9_])", re.IGNORECASE)
            for label, pattern in words.items()}


def _png_texts(body: bytes) -> bytes:
    """The text chunks of a PNG (tEXt, zTXt, iTXt): the only place a PNG could carry words."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    texts, i = b"", 8
    while i < len(body):
        length, kind = struct.unpack(">I4s", body[i:i + 8])
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            texts += body[i + 8:i + 8 + length] + b"\n"
        i += 12 + length
    return texts


def _leaks(response, forbidden, *, skip=()) -> list[str]:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items() if k.lower() != "set-cookie")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = _png_texts(body) if response.headers.get("Content-Type") == "image/png" else body
    haystack = headers + "\n" + text.decode("utf-8", "replace")
    return [label for label, pattern in forbidden.items() if label not in skip and pattern.search(haystack)]


def _client(user):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def test_every_url_has_an_explicit_row_and_every_row_a_url():
    names = [name for name, route, _ in _patterns(get_resolver().url_patterns)]
    unnamed = [route for name, route, _ in _patterns(get_resolver().url_patterns) if name is None]
    assert not unnamed, f"URL patterns without a name cannot be in the matrix: {unnamed}"
    missing = sorted(set(names) - set(MATRIX))
    assert not missing, f"Decide who may GET these URLs and add them to MATRIX: {missing}"
    stale = sorted(set(MATRIX) - set(names))
    assert not stale, f"MATRIX rows for URLs that no longer exist: {stale}"
    assert all(len(row.split()) == len(ROLES) for row in MATRIX.values())


def test_crawl_every_url_as_every_role(world):
    failures, leaks, crawled = [], [], 0
    schema_bodies = {}
    for name, _route, pattern in _patterns(get_resolver().url_patterns):
        expected = dict(zip(ROLES, MATRIX[name].split()))
        kwargs = {k: (world["per_name"].get(name, {}).get(k, world["params"][k])) for k in pattern.pattern.converters}
        url = reverse(name, kwargs=kwargs)
        for role in ROLES:
            user = world["users"][role]
            response = _client(user).get(url)
            crawled += 1
            if str(response.status_code) != expected[role]:
                failures.append(f"GET {url} ({name}) as {role}: {response.status_code}, expected {expected[role]}")
            head = _client(user).head(url)
            if head.status_code != HEAD_DIFFERS.get((name, role), response.status_code):
                failures.append(f"HEAD {url} ({name}) as {role}: {head.status_code}, GET gave {response.status_code}")
            if name == "api-schema" and role in ("anonymous", "expert"):
                schema_bodies[role] = response.content
            if name in ("trial:case_list", "api-read") and str(response.status_code) == "200":
                # The detector itself works: these pages, rightly, name the site, the case, the arm or the date.
                assert _leaks(response, _forbidden(world, "expert")), f"{name}: the leak detector found nothing"
            if role in BLINDED_ROLES:
                skip = ("arm: assisted", "arm: standard") if name == "api-schema" else ()
                found = _leaks(response, _forbidden(world, role), skip=skip)
                if found:
                    leaks.append(f"{url} ({name}) as {role} carries: {', '.join(found)}")
    assert not failures, "\n".join(failures)
    assert not leaks, "\n".join(leaks)
    assert schema_bodies["anonymous"] == schema_bodies["expert"]
    assert crawled == len(MATRIX) * len(ROLES)


def test_every_item_page_image_and_api_response_of_an_expert_is_blind(world):
    """Beyond one key per URL: every one of the panel expert's items, every image, the answer responses,
    and the adjudicator's pages for every disputed case."""
    trial, expert, adjudicator = world["trial"], world["users"]["expert"], world["users"]["adjudicator"]
    client = _client(expert)
    forbidden = _forbidden(world, "expert")
    found = []
    assignments = Assignment.objects.filter(expert__user=expert).select_related("item")
    assert {a.item.kind for a in assignments} == {"reference", "quality", "pair"}
    for a in assignments:
        urls = [reverse("scoring:item", args=[trial.code, a.key]), reverse("api-scoring-item", args=[a.key]),
                reverse("scoring:worklist", args=[trial.code]), reverse("api-scoring-items", args=[trial.code])]
        urls += [reverse("scoring:item_image", args=[trial.code, a.key, kind]) for kind in ("display", "values")]
        for url in urls:
            response = client.get(url)
            assert response.status_code in (200, 403), (url, response.status_code)
            found += [f"{url}: {label}" for label in _leaks(response, forbidden)]
    # an answer's response, and a refusal's
    quality = next(a for a in assignments if a.item.kind == "quality" and a.item.case == world["cases"][0])
    r = client.post(reverse("api-scoring-quality", args=[quality.key]),
                    {"overall": 3, "radpeer": "1", "correction_reason": "Second look."}, format="json")
    assert r.status_code == 201
    found += [f"correction response: {label}" for label in _leaks(r, forbidden)]
    r = client.post(reverse("api-scoring-quality", args=[quality.key]), {"overall": 3, "radpeer": "1"}, format="json")
    assert r.status_code == 409
    found += [f"refusal response: {label}" for label in _leaks(r, forbidden)]
    client = _client(adjudicator)
    forbidden = _forbidden(world, "adjudicator")
    for row in selectors.adjudication_queue(access=access_to(user=adjudicator, trial=trial)):
        for url in [reverse("scoring:adjudicate", args=[trial.code, row["key"]]),
                    reverse("api-scoring-adjudicate", args=[trial.code, row["key"]]),
                    reverse("scoring:adjudication_image", args=[trial.code, row["key"], "display"])]:
            response = client.get(url)
            assert response.status_code == 200
            found += [f"{url}: {label}" for label in _leaks(response, forbidden)]
    assert not found, "\n".join(found)


def test_blinded_fields_cannot_be_asked_for_through_any_route(world):
    """Query strings and extra fields are ignored: no parameter makes a blinded field appear."""
    trial, expert = world["trial"], world["users"]["expert"]
    client = _client(expert)
    forbidden = _forbidden(world, "expert")
    key = world["params"]["key"]
    for url in [reverse("api-scoring-item", args=[key]), reverse("api-scoring-items", args=[trial.code]),
                reverse("scoring:item", args=[trial.code, key])]:
        for query in ("fields=arm,reader,case,site", "expand=reports.read", "include=arm&format=json",
                      "arm=assisted", "debug=1"):
            response = client.get(f"{url}?{query}")
            assert response.status_code == 200
            assert not _leaks(response, forbidden), (url, query)
    # Routes of other roles that would name the arm or the reader refuse an expert, by API and page alike.
    for url in [f"/api/trials/{trial.code}/allocations/", f"/api/trials/{trial.code}/members/",
                f"/api/trials/{trial.code}/scoring/results/", f"/api/trials/{trial.code}/drafts/",
                f"/api/trials/{trial.code}/signoff/", f"/t/{trial.code}/reading/", f"/t/{trial.code}/audit/"]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert not _leaks(response, forbidden), url
    body = json.dumps(client.get(reverse("api-scoring-item", args=[key])).json())
    assert "assisted_side" not in body and "arm" not in json.loads(body)
