"""The admin is no back door: allocation arms, blinded fields and audit payloads stay hidden until unblinding (no
column, no record field, no hand-written filter); nobody mints API tokens for others; authenticator keys are not
shown; every change to users, groups, permissions, second factors and tokens is an audit event."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django_otp.plugins.otp_totp.models import TOTPDevice

from trial import audit, services
from trial.models import Allocation, ApiToken, AuditEvent, Role, Trial

User = get_user_model()


@pytest.fixture
def staff(client, make_user):
    user = make_user("admin", is_staff=True, is_superuser=True)
    client.force_login(user)  # a complete login: password and second factor
    return user


@pytest.fixture
def allocated(enrolling_trial, site, investigator, make_user):
    for i in range(4):
        services.add_member(trial=enrolling_trial, by=investigator, user=make_user(f"reader-{i}"), role=Role.READER,
                            site=site)
    return enrolling_trial


def _arms_named(html: str) -> bool:
    return ">assisted<" in html or ">standard<" in html or "AI-assisted" in html or "Standard care" in html


def test_allocation_arms_are_hidden_until_unblinding(client, staff, allocated):
    listing = client.get("/admin/trial/allocation/").content.decode()
    assert "masked until unblinding" in listing and not _arms_named(listing)
    allocation = Allocation.objects.filter(trial=allocated).first()
    record = client.get(f"/admin/trial/allocation/{allocation.pk}/change/").content.decode()
    assert "masked until unblinding" in record and not _arms_named(record)
    Trial.objects.filter(pk=allocated.pk).update(status="unblinded")
    listing = client.get("/admin/trial/allocation/").content.decode()
    assert allocation.arm in listing and "masked" not in listing


@pytest.mark.parametrize("url", [
    "/admin/trial/allocation/?arm=assisted", "/admin/trial/allocation/?arm__exact=standard",
    "/admin/trial/allocation/?membership__allocation__arm=assisted", "/admin/trial/allocation/?block_size=2",
    "/admin/trial/auditevent/?payload__arm=assisted", "/admin/trial/auditevent/?payload__contains=assisted",
    "/admin/scoring/assignment/?assisted_side=A", "/admin/stats/analysisrun/?arm_mapping__X=assisted",
    "/admin/trial/membership/?allocation__arm=assisted", "/admin/ai/aidraft/?case__allocation__arm=assisted",
])
def test_a_hand_written_filter_cannot_count_a_blinded_value(client, staff, allocated, url):
    assert client.get(url).status_code == 400


def test_the_filters_the_page_offers_still_work(client, staff, allocated):
    assert client.get("/admin/trial/membership/?role__exact=reader").status_code == 200
    assert client.get("/admin/trial/auditevent/?action__exact=allocation.made").status_code == 200


def test_audit_payloads_are_hidden_until_unblinding_but_account_events_show(client, staff, allocated):
    # An allocation event as written before the arm left the payloads (trial.audit): the admin still masks those.
    allocation = Allocation.objects.filter(trial=allocated).first()
    event = audit.record(actor=staff, action="allocation.made", obj=allocation, trial=allocated,
                         payload={"stratum": allocation.stratum, "arm": allocation.arm})
    page = client.get(f"/admin/trial/auditevent/{event.pk}/change/").content.decode()
    assert "masked until unblinding" in page and not _arms_named(page) and event.payload["arm"] not in page
    Trial.objects.filter(pk=allocated.pk).update(status="unblinded")
    page = client.get(f"/admin/trial/auditevent/{event.pk}/change/").content.decode()
    assert event.payload["arm"] in page
    services.record_account_change(by=staff, action="account.test", obj=staff, payload={"shown": "yes-shown"})
    account_event = AuditEvent.objects.get(action="account.test")
    assert "yes-shown" in client.get(f"/admin/trial/auditevent/{account_event.pk}/change/").content.decode()


def test_nobody_mints_a_token_for_anyone_in_the_admin(client, staff, trial, investigator):
    assert client.get("/admin/authtoken/token/add/").status_code == 404  # DRF's authtoken admin is gone
    assert client.get("/admin/trial/apitoken/add/").status_code == 403
    token, key = services.issue_api_token(trial=trial, by=investigator)
    page = client.get(f"/admin/trial/apitoken/{token.pk}/change/").content.decode()
    assert token.key_hash not in page and key not in page
    r = client.post("/admin/trial/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert r.status_code == 302 and ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert AuditEvent.objects.get(action="token.revoked").actor == staff


def test_authenticator_keys_and_recovery_codes_are_not_in_the_admin(client, staff):
    from django_otp.plugins.otp_static.models import StaticDevice

    assert not admin.site.is_registered(TOTPDevice) and not admin.site.is_registered(StaticDevice)
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404


def test_creating_and_changing_a_user_in_the_admin_is_audited(client, staff):
    r = client.post("/admin/auth/user/add/", {"username": "newbie", "password1": "Long-Enough-Pass-11",
                                              "password2": "Long-Enough-Pass-11", "usable_password": "true"})
    assert r.status_code == 302, r.content.decode()[:2000]
    newbie = User.objects.get(username="newbie")
    created = AuditEvent.objects.get(action="account.user_created")
    assert created.actor == staff and created.object_id == str(newbie.pk)
    assert created.payload["after"]["username"] == "newbie" and "password" not in str(created.payload)
    group = Group.objects.create(name="monitors")
    permission = Permission.objects.get(codename="add_trial")
    r = client.post(f"/admin/auth/user/{newbie.pk}/change/", {
        "username": "newbie", "email": "newbie@example.org", "is_active": "on", "is_staff": "on",
        "groups": [group.pk], "user_permissions": [permission.pk],
        "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
    })
    assert r.status_code == 302, r.content.decode()[:3000]
    changed = AuditEvent.objects.get(action="account.user_changed")
    assert changed.payload["changes"]["is_staff"] == {"before": False, "after": True}
    assert changed.payload["changes"]["email"] == {"before": "", "after": "newbie@example.org"}
    rights = AuditEvent.objects.get(action="account.access_changed")
    assert rights.payload["changes"] == {"groups": {"added": ["monitors"], "removed": []},
                                         "user_permissions": {"added": ["trial.add_trial"], "removed": []}}


def test_a_password_set_in_the_admin_is_audited(client, staff, make_user):
    person = make_user("pat")
    r = client.post(f"/admin/auth/user/{person.pk}/password/", {
        "password1": "Brand-New-Pass-123", "password2": "Brand-New-Pass-123", "usable_password": "true"})
    assert r.status_code == 302
    event = AuditEvent.objects.get(action="account.password_set_by_admin")
    assert event.actor == staff and event.object_id == str(person.pk) and "Brand" not in str(event.payload)


def test_deleting_a_user_is_audited(client, staff, make_user):
    person = make_user("gone")
    r = client.post(f"/admin/auth/user/{person.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and not User.objects.filter(username="gone").exists()
    event = AuditEvent.objects.get(action="account.user_deleted")
    assert event.payload["before"]["username"] == "gone"


def test_groups_and_their_permissions_are_audited(client, staff):
    permission = Permission.objects.get(codename="add_trial")
    r = client.post("/admin/auth/group/add/", {"name": "creators", "permissions": [permission.pk]})
    assert r.status_code == 302
    group = Group.objects.get(name="creators")
    assert AuditEvent.objects.get(action="account.group_created").payload == {"name": "creators"}
    assert AuditEvent.objects.get(action="account.access_changed").payload["changes"] == {
        "permissions": {"added": ["trial.add_trial"], "removed": []}}
    r = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "trial-creators", "permissions": []})
    assert r.status_code == 302
    assert AuditEvent.objects.get(action="account.group_renamed").payload == {"before": "creators",
                                                                              "after": "trial-creators"}
    assert AuditEvent.objects.filter(action="account.access_changed").latest("id").payload["changes"] == {
        "permissions": {"added": [], "removed": ["trial.add_trial"]}}
    r = client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and AuditEvent.objects.filter(action="account.group_deleted").exists()


def test_staff_reset_a_second_factor_audited(client, staff, make_user):
    person = make_user("lost-phone")
    TOTPDevice.objects.create(user=person, name="app", confirmed=True)
    r = client.post("/admin/auth/user/", {"action": "reset_second_factor", "_selected_action": [person.pk]})
    assert r.status_code == 302 and not TOTPDevice.objects.filter(user=person).exists()
    event = AuditEvent.objects.get(action="account.second_factor_reset")
    assert event.actor == staff and event.object_id == str(person.pk)


def test_no_admin_of_the_project_offers_a_blinded_filter():
    """Every read-only admin of the project filters only on what its page offers (core.admin.ReadOnlyAdmin)."""
    from core.admin import ReadOnlyAdmin

    project = [ma for model, ma in admin.site._registry.items()
               if model._meta.app_label in ("trial", "ai", "reading", "scoring", "stats", "evaluation")]
    assert project and all(isinstance(ma, ReadOnlyAdmin) for ma in project)
    blinded = {"arm", "assisted_side", "payload", "arm_mapping", "results", "block", "block_size"}
    for model_admin in project:
        names = {f if isinstance(f, str) else f[0] for f in model_admin.list_filter}
        assert not names & blinded, model_admin
